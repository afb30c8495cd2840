//! What the conformance suite does not cover: nothing is left behind in containerd after
//! delete, and a runtime that restarts finds its running containers again.

use std::time::Duration;

use wharf_containerd::ContainerdRuntime;
use wharf_runtime::conformance::config;
use wharf_runtime::{ContainerState, Runtime, Signal};

use crate::{FOREVER, HELLO, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_no_container_task_snapshot_or_lease_behind() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let logs = node.dir.path().join("logs");
    let runtime = &node.runtime;
    let before = node.ctr(&["snapshots", "ls"]);

    // One that ran to its end, one that was killed, one that never started.
    runtime.prepare(HELLO).await.unwrap();
    runtime
        .create(config("leak-done", HELLO, &logs))
        .await
        .unwrap();
    runtime.start("leak-done").await.unwrap();
    runtime.wait("leak-done").await.unwrap();

    runtime.prepare(FOREVER).await.unwrap();
    runtime
        .create(config("leak-killed", FOREVER, &logs))
        .await
        .unwrap();
    runtime.start("leak-killed").await.unwrap();
    assert_eq!(node.ctr(&["tasks", "ls", "-q"]), ["leak-killed"]);
    runtime.kill("leak-killed", Signal::Kill).await.unwrap();
    runtime.wait("leak-killed").await.unwrap();

    runtime
        .create(config("leak-created", FOREVER, &logs))
        .await
        .unwrap();
    let mut containers = node.ctr(&["containers", "ls", "-q"]);
    containers.sort();
    assert_eq!(containers, ["leak-created", "leak-done", "leak-killed"]);

    for id in ["leak-done", "leak-killed", "leak-created"] {
        runtime.delete(id).await.unwrap();
        assert_eq!(runtime.state(id), None);
    }
    assert!(runtime.list().is_empty());
    assert_eq!(node.ctr(&["containers", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["tasks", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());
    // Only the images' committed layers remain: no container's root file system.
    assert_eq!(node.ctr(&["snapshots", "ls"]), before);
    let fifos = node.dir.path().join("runtime/fifo");
    assert_eq!(std::fs::read_dir(&fifos).unwrap().count(), 0, "FIFOs left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_finds_running_and_ended_containers_again() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let logs = node.dir.path().join("logs");
    let runtime = &node.runtime;
    runtime.prepare(HELLO).await.unwrap();
    let mut ended = config("again-ended", HELLO, &logs);
    ended.env = vec![("EXIT_CODE".into(), "7".into())];
    runtime.create(ended).await.unwrap();
    runtime.start("again-ended").await.unwrap();
    let first_exit = runtime.wait("again-ended").await.unwrap();
    runtime.prepare(FOREVER).await.unwrap();
    let running = config("again-running", FOREVER, &logs);
    let log_path = running.log_path.clone();
    runtime.create(running).await.unwrap();
    runtime.start("again-running").await.unwrap();
    // runc keeps its state in the runtime's own directory, not the host-wide default.
    let runc_state = node.dir.path().join("runtime/runc/wharf/again-running");
    assert!(runc_state.exists(), "{} missing", runc_state.display());

    // A second runtime on the same containerd and state directory: the agent after a restart.
    let again = ContainerdRuntime::connect(Node::config(&node.containerd, node.dir.path()))
        .await
        .expect("connect again");
    assert_eq!(again.state("again-running"), Some(ContainerState::Running));
    assert_eq!(
        again.state("again-ended"),
        Some(ContainerState::Exited(first_exit.clone()))
    );
    assert_eq!(again.list().len(), 2);

    // The fixture prints its line once its SIGTERM handler is in place; before that, as PID 1,
    // it would ignore the signal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("forever: running until stopped")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "forever did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again
        .kill("again-running", Signal::Terminate)
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), again.wait("again-running"))
        .await
        .expect("SIGTERM stops the forever fixture")
        .unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (143, "Error"));
    for id in ["again-running", "again-ended"] {
        again.delete(id).await.unwrap();
    }
    assert_eq!(node.ctr(&["containers", "ls", "-q"]), Vec::<String>::new());
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("forever: running until stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let runtime = &node.runtime;
    let mut hungry = config("oom-hungry", FOREVER, &node.dir.path().join("logs"));
    hungry.env = vec![("ALLOCATE_MIB".into(), "256".into())];
    hungry.limits.memory_bytes = Some(32 << 20);
    runtime.prepare(FOREVER).await.unwrap();
    runtime.create(hungry).await.unwrap();
    runtime.start("oom-hungry").await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), runtime.wait("oom-hungry"))
        .await
        .expect("the OOM killer stops the container")
        .unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (137, "OOMKilled"));
    runtime.delete("oom-hungry").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_root_file_systems_survive_garbage_collection() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let logs = node.dir.path().join("logs");
    let runtime = &node.runtime;
    runtime.prepare(HELLO).await.unwrap();
    runtime
        .create(config("gc-kept", HELLO, &logs))
        .await
        .unwrap();
    let content = node.ctr(&["content", "ls", "-q"]);
    let snapshots = node.ctr(&["snapshots", "ls"]);

    // A blob nothing refers to, which the collector removes.
    let mut ingest = std::process::Command::new("ctr")
        .arg("--address")
        .arg(node.containerd.socket())
        .args(["--namespace", "wharf", "content", "ingest", "gc-orphan"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut ingest.stdin.take().unwrap(), b"orphan").unwrap();
    assert!(ingest.wait().unwrap().success());
    // (containerd may already collect the orphan on its own schedule, so its presence is not
    // asserted; the synchronous collection below is what the test is about.)

    // Deleting a lease with --sync runs containerd's garbage collector before it returns.
    node.ctr(&["leases", "create", "--id", "gc-now"]);
    node.ctr(&["leases", "rm", "--sync", "gc-now"]);

    assert_eq!(node.ctr(&["content", "ls", "-q"]), content);
    assert_eq!(node.ctr(&["snapshots", "ls"]), snapshots);
    runtime.start("gc-kept").await.unwrap();
    let exit = runtime.wait("gc-kept").await.unwrap();
    assert_eq!(exit.code, 0, "{exit:?}");
    runtime.delete("gc-kept").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_cannot_start_ends_with_start_error() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let runtime = &node.runtime;
    let mut broken = config("cannot-start", HELLO, &node.dir.path().join("logs"));
    broken.mounts = vec![wharf_runtime::Mount {
        host_path: "/nonexistent/wharf-test-volume".into(),
        container_path: "/data".into(),
        read_only: true,
    }];
    runtime.prepare(HELLO).await.unwrap();
    runtime.create(broken).await.unwrap();
    let err = runtime.start("cannot-start").await.expect_err("start");
    let mentions_volume = |m: &String| m.contains("wharf-test-volume");
    assert!(
        matches!(&err, wharf_runtime::RuntimeError::StartFailed(m) if mentions_volume(m)),
        "{err:?}"
    );
    let exit = runtime.wait("cannot-start").await.unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (128, "StartError"));
    assert!(exit.message.unwrap().contains("wharf-test-volume"));
    runtime.delete("cannot-start").await.unwrap();
    assert_eq!(node.ctr(&["tasks", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["containers", "ls", "-q"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_come_from_the_containers_cgroup_and_are_zero_once_it_is_gone() {
    use wharf_runtime::ContainerStats;
    use wharf_runtime::conformance::stats_until;
    let node = Node::start().await;
    node.import_fixtures().await;
    let logs = node.dir.path().join("logs");
    let runtime = &node.runtime;
    runtime.prepare(FOREVER).await.unwrap();
    let mut busy = config("stats-memory", FOREVER, &logs);
    busy.env = vec![
        ("ALLOCATE_MIB".into(), "32".into()),
        ("BURN_CPU".into(), "1".into()),
    ];
    runtime.create(busy).await.unwrap();
    assert_eq!(
        runtime.stats("stats-memory").await.unwrap(),
        ContainerStats::default(),
        "a created container has no cgroup yet"
    );
    runtime.start("stats-memory").await.unwrap();
    // The working set includes the 32 MiB the program touched.
    let limit = Duration::from_secs(20);
    let running = stats_until(runtime, "stats-memory", limit, |s| {
        s.memory_bytes >= 32 << 20
    })
    .await;
    assert!(
        running.memory_bytes < 256 << 20,
        "the working set of a 32 MiB program: {running:?}"
    );
    stats_until(runtime, "stats-memory", limit, |s| {
        s.cpu_usage_ns >= running.cpu_usage_ns + 200_000_000
    })
    .await;
    runtime.kill("stats-memory", Signal::Kill).await.unwrap();
    runtime.wait("stats-memory").await.unwrap();
    stats_until(runtime, "stats-memory", limit, |s| {
        *s == ContainerStats::default()
    })
    .await;
    runtime.delete("stats-memory").await.unwrap();
}
