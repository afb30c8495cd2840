//! Container pods end to end through a Wharf-managed containerd: the container sample imported
//! with `wharf image import`, applied with kubectl, answering through the gateway, restarted
//! when its process dies, and leaving nothing behind in containerd when deleted.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_e2e::{Wharf, run, samples_out, wharf_bin, workspace_root};

fn eventually(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "{what} did not happen within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ctr(wharf: &Wharf, args: &[&str]) -> String {
    let socket = wharf.data_dir.join("containerd/containerd.sock");
    run(Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "wharf"])
        .args(args))
    .unwrap()
}

fn restart_count(wharf: &Wharf, pod: &str) -> u64 {
    run(wharf.kubectl().args([
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]))
    .unwrap_or_default()
    .parse()
    .unwrap_or(0)
}

#[test]
fn the_container_sample_runs_through_managed_containerd_restarts_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", wharf.kubeconfig())
        .args(["image", "import"])
        .arg(samples_out().join("hello-container.tar")))
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    let url = format!("http://{}:30082/", wharf.gateway_ip);
    eventually("the container sample to answer", 90, || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &url])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Hello")
            })
    });
    let pod =
        run(wharf
            .kubectl()
            .args(["get", "pods", "-o", "jsonpath={.items[0].metadata.name}"]))
        .unwrap();
    let logs = run(wharf.kubectl().args(["logs", &pod])).unwrap();
    assert!(logs.contains("hello-container: GET / -> 200"), "{logs}");

    // Kill the container's process from the host: the agent restarts it.
    let before = restart_count(&wharf, &pod);
    let tasks = ctr(&wharf, &["tasks", "ls"]);
    let pid = tasks
        .lines()
        .skip(1)
        .find(|l| l.contains("RUNNING"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no running task: {tasks}"))
        .to_owned();
    run(Command::new("kill").args(["-9", &pid])).unwrap();
    eventually("a restart after the kill", 60, || {
        restart_count(&wharf, &pod) > before
    });
    // And the restarted container serves again (after the CrashLoopBackOff wait).
    eventually("the restarted container to answer", 60, || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &url])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let tasks = ctr(&wharf, &["tasks", "ls"]);
    assert!(
        !tasks.contains(&format!(" {pid} ")),
        "the killed process is gone: {tasks}"
    );

    // Deleting the Deployment leaves no container, task or container snapshot behind.
    run(wharf
        .kubectl()
        .args(["delete", "-f"])
        .arg(workspace_root().join("samples/hello-container"))
        .args(["--wait=true", "--timeout=60s"]))
    .unwrap();
    eventually("containerd to be empty", 30, || {
        ctr(&wharf, &["containers", "ls", "-q"]).trim().is_empty()
            && ctr(&wharf, &["tasks", "ls", "-q"]).trim().is_empty()
    });
    let snapshots = ctr(&wharf, &["snapshots", "ls"]);
    assert!(
        !snapshots.lines().skip(1).any(|l| l.contains("Active")),
        "active snapshots left: {snapshots}"
    );
}
