//! Container pods end to end through a Wharf-managed containerd: the container sample imported
//! with `wharf image import`, applied with kubectl, each replica in a network namespace of its
//! own with its own IP, answering through the gateway, restarted when its process dies, and
//! leaving nothing behind in containerd or in `ip netns` when deleted.

use std::process::Command;
use std::time::Duration;

use wharf_e2e::{Wharf, run, samples_out, until, workspace_root};

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
    wharf.import_image(&samples_out().join("hello-container.tar"));
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    let url = format!("http://{}:30082/", wharf.gateway_ip);
    until("the container sample to answer", 90, || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &url])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Hello")
            })
    });

    // A second replica on the same port: each pod has a network namespace and an IP of its
    // own in the node's pod range, and answers there.
    run(wharf
        .kubectl()
        .args(["scale", "deployment/hello-container", "--replicas=2"]))
    .unwrap();
    let pods_with_ips = || {
        run(wharf.kubectl().args([
            "get",
            "pods",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.podIP}{\"\\n\"}{end}",
        ]))
        .unwrap_or_default()
    };
    until("two running replicas", 90, || {
        pods_with_ips().lines().count() == 2
    });
    let listed = pods_with_ips();
    let pods: Vec<Vec<&str>> = listed.lines().map(|l| l.split(' ').collect()).collect();
    let octets: Vec<&str> = wharf.gateway_ip.split('.').collect();
    let range = format!("10.{}.{}.", octets[2], octets[3]);
    assert_ne!(pods[0][2], pods[1][2], "two pods, two IPs: {listed}");
    let netns = run(Command::new("ip").args(["netns", "list"])).unwrap();
    for pod in &pods {
        assert!(
            pod[2].starts_with(&range),
            "pod IP in {range}0/24: {listed}"
        );
        assert!(
            netns.contains(&format!("wharf-{}", pod[1])),
            "a namespace per pod: {netns}"
        );
        until("the replica to answer on its pod IP", 30, || {
            Command::new("curl")
                .args([
                    "-sf",
                    "-m",
                    "3",
                    &format!("http://{}:8080/env/HOSTNAME", pod[2]),
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(pod[0]))
        });
    }
    // The pod's /etc/hosts names it at its IP.
    let hosts = run(Command::new("curl").args([
        "-sf",
        "-m",
        "3",
        &format!("http://{}:8080/file/etc/hosts", pods[0][2]),
    ]))
    .unwrap();
    assert!(
        hosts.contains(&format!("{}\t{}", pods[0][2], pods[0][0])),
        "{hosts}"
    );
    let uids: Vec<String> = pods.iter().map(|p| p[1].to_owned()).collect();
    let (pod, uid) = (pods[0][0].to_owned(), pods[0][1].to_owned());
    let logs = run(wharf.kubectl().args(["logs", &pod])).unwrap();
    assert!(
        logs.contains("hello-container: GET /env/HOSTNAME -> 200"),
        "{logs}"
    );

    // Kill the container's process from the host: the agent restarts it.
    let before = restart_count(&wharf, &pod);
    let tasks = ctr(&wharf, &["tasks", "ls"]);
    let pid = tasks
        .lines()
        .skip(1)
        .find(|l| l.starts_with(&uid) && l.contains("RUNNING"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no running task of pod {uid}: {tasks}"))
        .to_owned();
    run(Command::new("kill").args(["-9", &pid])).unwrap();
    until("a restart after the kill", 60, || {
        restart_count(&wharf, &pod) > before
    });
    // And the restarted container serves again (after the CrashLoopBackOff wait), at the same
    // pod IP: the pod's network outlives its containers.
    let pod_url = format!("http://{}:8080/", pods[0][2]);
    until("the restarted container to answer", 60, || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &pod_url])
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
    until("containerd to be empty", 30, || {
        ctr(&wharf, &["containers", "ls", "-q"]).trim().is_empty()
            && ctr(&wharf, &["tasks", "ls", "-q"]).trim().is_empty()
    });
    let snapshots = ctr(&wharf, &["snapshots", "ls"]);
    assert!(
        !snapshots.lines().skip(1).any(|l| l.contains("Active")),
        "active snapshots left: {snapshots}"
    );
    let netns = run(Command::new("ip").args(["netns", "list"])).unwrap();
    for uid in &uids {
        assert!(
            !netns.contains(uid.as_str()),
            "network namespace of {uid} left: {netns}"
        );
    }
}

fn pod_field(wharf: &Wharf, path: &str) -> String {
    run(wharf.kubectl().args([
        "get",
        "pods",
        "-o",
        &format!("jsonpath={{.items[0]{path}}}"),
    ]))
    .unwrap_or_default()
}

#[test]
fn running_containers_survive_a_wharf_restart_and_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    until("the pod to run", 90, || {
        pod_field(&wharf, ".status.phase") == "Running"
    });
    let (pod, ip) = (
        pod_field(&wharf, ".metadata.name"),
        pod_field(&wharf, ".status.podIP"),
    );
    let container_id = pod_field(&wharf, ".status.containerStatuses[0].containerID");
    let pod_url = format!("http://{ip}:8080/");
    let answers = || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &pod_url])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    until("the pod to answer", 30, answers);
    let task_pid = |wharf: &Wharf| {
        let tasks = ctr(wharf, &["tasks", "ls"]);
        tasks
            .lines()
            .find(|l| l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no running task: {tasks}"))
    };
    let pid = task_pid(&wharf);

    // Wharf stops (its managed containerd with it) and starts again: the container went on
    // serving meanwhile, and is the same process, pod, IP and container afterwards.
    wharf.restart().unwrap();
    assert!(answers(), "the container answers right after the restart");
    assert_eq!(task_pid(&wharf), pid, "the same process runs");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_field(&wharf, ".status.phase"), "Running");
    assert_eq!(pod_field(&wharf, ".status.podIP"), ip);
    assert_eq!(
        pod_field(&wharf, ".status.containerStatuses[0].containerID"),
        container_id
    );
    assert_eq!(restart_count(&wharf, &pod), 0);
    let url = format!("http://{}:30082/", wharf.gateway_ip);
    until("the NodePort to answer after the restart", 30, || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &url])
            .output()
            .is_ok_and(|o| o.status.success())
    });

    // Wharf is killed (SIGKILL: its managed containerd is left running) and started again: it
    // adopts that containerd instead of starting a second one, and takes the pod over again.
    let containerd_pid = |wharf: &Wharf| {
        run(Command::new("pgrep").args([
            "-f",
            &format!(
                "containerd --config {}",
                wharf.data_dir.join("containerd").display()
            ),
        ]))
        .unwrap_or_default()
    };
    let daemon = containerd_pid(&wharf);
    assert!(!daemon.is_empty(), "the managed containerd runs");
    wharf.kill9();
    wharf.restart().unwrap();
    assert_eq!(
        containerd_pid(&wharf),
        daemon,
        "the same containerd, adopted"
    );
    assert!(wharf.log_tail().contains("adopted"), "{}", wharf.log_tail());
    assert!(
        answers(),
        "the container answers after the crash and restart"
    );
    assert_eq!(task_pid(&wharf), pid, "the same process runs");

    // The agent watches the taken-over container: killing it is noticed and restarts it.
    run(Command::new("kill").args(["-9", &pid])).unwrap();
    until("a restart after the kill", 60, || {
        restart_count(&wharf, &pod) == 1
    });
    until("the restarted container to answer", 60, answers);
    run(wharf
        .kubectl()
        .args(["delete", "-f"])
        .arg(workspace_root().join("samples/hello-container"))
        .args(["--wait=true", "--timeout=60s"]))
    .unwrap();
    until("containerd to be empty", 30, || {
        ctr(&wharf, &["containers", "ls", "-q"]).trim().is_empty()
    });
}

/// A containerd of the test's own (not Wharf's), to stop and start behind Wharf's back.
struct OwnContainerd {
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnContainerd {
    fn start(dir: &std::path::Path) -> OwnContainerd {
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
            ),
        )
        .unwrap();
        let mut own = OwnContainerd {
            dir: dir.to_path_buf(),
            child: None,
        };
        own.run();
        own
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("containerd.sock")
    }

    fn run(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        self.child = Some(
            Command::new("containerd")
                .arg("--config")
                .arg(self.dir.join("config.toml"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("containerd is installed by scripts/setup.sh"),
        );
        let socket = self.socket();
        until("containerd to listen", 20, || {
            Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnContainerd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn condition(wharf: &Wharf, kind: &str, name: &str, condition: &str) -> String {
    run(wharf.kubectl().args([
        "get",
        kind,
        name,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{condition}\")].status}}"),
    ]))
    .unwrap_or_default()
}

#[test]
fn a_containerd_that_dies_is_reported_on_the_node_and_pods_and_recovered_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut containerd = OwnContainerd::start(&dir.path().join("containerd"));
    let socket = containerd.socket().display().to_string();
    let wharf = Wharf::start_isolated_with(
        &dir.path().join("data"),
        &["--containerd", &socket, "--node-name", "node-a"],
    )
    .unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    until("the pod to run", 90, || {
        pod_field(&wharf, ".status.phase") == "Running"
    });
    let (pod, ip) = (
        pod_field(&wharf, ".metadata.name"),
        pod_field(&wharf, ".status.podIP"),
    );
    let pod_url = format!("http://{ip}:8080/");
    let answers = || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &pod_url])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    until("the pod to answer", 30, answers);
    assert_eq!(
        condition(&wharf, "node", "node-a", "ContainerRuntimeReady"),
        "True"
    );
    assert_eq!(
        condition(&wharf, "pod", &pod, "ContainerRuntimeReady"),
        "True"
    );

    // containerd dies: the node and the pod say so; the container itself goes on serving.
    containerd.kill();
    until("the node to report containerd down", 20, || {
        condition(&wharf, "node", "node-a", "ContainerRuntimeReady") == "False"
    });
    until("the pod to report containerd down", 20, || {
        condition(&wharf, "pod", &pod, "ContainerRuntimeReady") == "False"
    });
    let message = run(wharf.kubectl().args([
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"ContainerRuntimeReady\")].message}",
    ]))
    .unwrap();
    assert!(message.contains("containerd"), "{message}");
    assert!(answers(), "the container serves while containerd is down");
    // A new replica cannot start meanwhile, and says why.
    run(wharf
        .kubectl()
        .args(["scale", "deployment/hello-container", "--replicas=2"]))
    .unwrap();
    until("the new replica to wait for the runtime", 30, || {
        run(wharf.kubectl().args([
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[0].state.waiting.reason}",
        ]))
        .unwrap_or_default()
        .contains("RuntimeUnavailable")
    });

    // containerd returns: the conditions recover, the new replica starts, and the old one is
    // still watched (a kill is noticed and restarted).
    containerd.run();
    until("the node to report containerd ready", 20, || {
        condition(&wharf, "node", "node-a", "ContainerRuntimeReady") == "True"
    });
    until("the pod to report containerd ready", 20, || {
        condition(&wharf, "pod", &pod, "ContainerRuntimeReady") == "True"
    });
    until("both replicas to run", 90, || {
        run(wharf.kubectl().args([
            "get",
            "pods",
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ]))
        .unwrap_or_default()
        .lines()
        .count()
            == 2
    });
    let socket_arg = containerd.socket();
    let tasks = run(Command::new("ctr")
        .arg("--address")
        .arg(&socket_arg)
        .args(["-n", "wharf", "tasks", "ls"]))
    .unwrap();
    let pod_uid = run(wharf
        .kubectl()
        .args(["get", "pod", &pod, "-o", "jsonpath={.metadata.uid}"]))
    .unwrap();
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(&pod_uid) && l.contains("RUNNING"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no running task of {pod_uid}: {tasks}"))
        .to_owned();
    run(Command::new("kill").args(["-9", &pid])).unwrap();
    until("a restart after the kill", 60, || {
        restart_count(&wharf, &pod) == 1
    });
    run(wharf
        .kubectl()
        .args(["delete", "-f"])
        .arg(workspace_root().join("samples/hello-container"))
        .args(["--wait=true", "--timeout=60s"]))
    .unwrap();
    until("containerd to be empty", 30, || {
        run(Command::new("ctr").arg("--address").arg(&socket_arg).args([
            "-n",
            "wharf",
            "containers",
            "ls",
            "-q",
        ]))
        .unwrap_or_default()
        .trim()
        .is_empty()
    });
}

fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn wasm_and_container_pods_call_each_others_services_by_cluster_ip() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    let cli = |args: &[&str]| run(wharf.cli().args(args)).unwrap();
    let out = samples_out();
    cli(&[
        "image",
        "import",
        out.join("hello-container.tar").to_str().unwrap(),
    ]);
    cli(&[
        "push",
        out.join("hello-http.wasm").to_str().unwrap(),
        "--name",
        "hello-http:latest",
    ]);
    let samples = workspace_root().join("samples");
    // Services first, so the pods get their service links (as in Kubernetes).
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(samples.join("hello-http/service.yaml"))
        .arg("-f")
        .arg(samples.join("hello-container/service.yaml")))
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(samples.join("hello-http/deployment.yaml"))
        .arg("-f")
        .arg(samples.join("hello-container/deployment.yaml")))
    .unwrap();
    let cluster_ip = |service: &str| {
        run(wharf
            .kubectl()
            .args(["get", "svc", service, "-o", "jsonpath={.spec.clusterIP}"]))
        .unwrap()
    };
    let (wasm_ip, container_ip) = (cluster_ip("hello-http"), cluster_ip("hello-container"));
    let octets: Vec<&str> = wharf.gateway_ip.split('.').collect();
    let service_range = format!("10.{}.{}.", octets[2], octets[3]);
    assert!(
        wasm_ip.starts_with(&service_range),
        "{wasm_ip} from --service-cidr"
    );
    let wasm = format!("http://{}:30080", wharf.gateway_ip);
    let container = format!("http://{}:30082", wharf.gateway_ip);
    until("both samples to answer", 90, || {
        get(&format!("{wasm}/")).contains("Hello")
            && get(&format!("{container}/")).contains("Hello")
    });

    // Each side finds the other through Kubernetes' service links...
    assert_eq!(
        get(&format!("{wasm}/env/HELLO_CONTAINER_SERVICE_HOST")),
        container_ip
    );
    assert_eq!(
        get(&format!("{container}/env/HELLO_HTTP_SERVICE_HOST")),
        wasm_ip
    );
    assert_eq!(
        get(&format!("{container}/env/HELLO_HTTP_SERVICE_PORT")),
        "8080"
    );
    // ...and calls it on its cluster IP: a Wasm function reaches a container...
    let from_wasm = get(&format!(
        "{wasm}/fetch?url=http%3A%2F%2F{container_ip}%3A8080%2Fenv%2FHOSTNAME"
    ));
    assert!(from_wasm.starts_with("hello-container-"), "{from_wasm}");
    // ...and a container reaches a Wasm function.
    let from_container = get(&format!(
        "{container}/fetch?url=http%3A%2F%2F{wasm_ip}%3A8080%2Fenv%2FHOSTNAME"
    ));
    assert!(
        from_container.starts_with("hello-http-"),
        "{from_container}"
    );
    // The node reaches cluster IPs too.
    assert!(get(&format!("http://{wasm_ip}:8080/")).contains("Hello"));

    // A deleted Service's cluster IP is gone from the node.
    let bridge = format!("wt{}-{}-svc", octets[2], octets[3]);
    let addresses =
        || run(Command::new("ip").args(["-o", "addr", "show", "dev", &bridge])).unwrap_or_default();
    assert!(
        addresses().contains(&format!("{container_ip}/32")),
        "{}",
        addresses()
    );
    run(wharf.kubectl().args(["delete", "svc", "hello-container"])).unwrap();
    until("the cluster IP to be removed", 10, || {
        !addresses().contains(&format!("{container_ip}/32"))
    });
    run(wharf
        .kubectl()
        .args(["delete", "deployment", "hello-container", "hello-http"]))
    .unwrap();
    until("containerd to be empty", 60, || {
        ctr(&wharf, &["containers", "ls", "-q"]).trim().is_empty()
    });
}

fn container_pod(name: &str, image: &str, command: Option<&str>) -> String {
    let command = command.map_or(String::new(), |c| format!("\n    command: [\"{c}\"]"));
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: runc\n  \
         containers:\n  - name: main\n    image: {image}{command}\n"
    )
}

fn waiting(wharf: &Wharf, pod: &str) -> (String, String) {
    let field = |path: &str| {
        run(wharf.kubectl().args([
            "get",
            "pod",
            pod,
            "-o",
            &format!("jsonpath={{.status.containerStatuses[0].{path}}}"),
        ]))
        .unwrap_or_default()
    };
    // A start that failed ends as a terminated StartError (kept as lastState while the
    // restart waits in CrashLoopBackOff).
    let last = field("lastState.terminated.reason");
    if last == "StartError" {
        return (last, field("lastState.terminated.message"));
    }
    (
        field("state.waiting.reason"),
        field("state.waiting.message"),
    )
}

#[test]
fn bad_container_images_and_commands_are_clear_pod_conditions_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    let cli = |args: &[&str]| wharf.cli().args(args).output().unwrap();
    let sample = samples_out().join("hello-container.tar");
    assert!(
        cli(&["image", "import", sample.to_str().unwrap()])
            .status
            .success()
    );
    // Garbage is refused at import; a damaged archive is accepted by the control plane (it
    // only looks at the container) and refused by the node when a pod needs it.
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"not an archive at all").unwrap();
    let refused = cli(&["image", "import", garbage.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("OCI image archive"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let bytes = std::fs::read(&sample).unwrap();
    let damaged = dir.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let pushed = cli(&[
        "image",
        "import",
        damaged.to_str().unwrap(),
        "--name",
        "damaged:1",
    ]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    let manifests = [
        container_pod("missing-image", "no-such-image:1", None),
        container_pod("damaged-image", "damaged:1", None),
        container_pod(
            "missing-command",
            "hello-container:latest",
            Some("/no/such/binary"),
        ),
        // The pod's securityContext and workingDir reach the process.
        container_pod("good", "hello-container:latest", None)
            + "  securityContext: {runAsUser: 1000, runAsGroup: 3000}\n",
    ]
    .join("---\n")
    .replace(
        "    image: hello-container:latest\n  securityContext",
        "    image: hello-container:latest\n    workingDir: /tmp\n  securityContext",
    );
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, manifests).unwrap();
    run(wharf.kubectl().arg("apply").arg("-f").arg(&file)).unwrap();

    until("the missing image to be reported", 60, || {
        let (reason, message) = waiting(&wharf, "missing-image");
        reason == "ErrImagePull" && message.contains("no-such-image:1")
    });
    until("the damaged archive to be reported", 60, || {
        let (reason, message) = waiting(&wharf, "damaged-image");
        reason == "ErrImagePull" && message.contains("damaged:1") && message.contains("damaged")
    });
    // What the pod showed on the way. Its image shares every blob with the damaged one: a
    // failed import of that must not take blobs away from this one's (an image error here).
    let mut seen: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let (reason, message) = waiting(&wharf, "missing-command");
        if reason == "StartError" && message.contains("/no/such/binary") {
            break;
        }
        assert_ne!(reason, "ErrImagePull", "{message}");
        let shown = format!("{reason}: {message}");
        if seen.last() != Some(&shown) {
            seen.push(shown);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the missing command was not reported within 60 s; the pod showed {seen:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The node is unharmed: a good pod next to them runs.
    until("the good pod to run", 60, || {
        run(wharf
            .kubectl()
            .args(["get", "pod", "good", "-o", "jsonpath={.status.phase}"]))
        .unwrap_or_default()
            == "Running"
    });
    assert_eq!(
        restart_count(&wharf, "good"),
        0,
        "the good pod started first time"
    );
    let good_ip =
        run(wharf
            .kubectl()
            .args(["get", "pod", "good", "-o", "jsonpath={.status.podIP}"]))
        .unwrap();
    let status = get(&format!("http://{good_ip}:8080/file/proc/self/status"));
    assert!(status.contains("Uid:\t1000\t"), "{status}");
    assert!(status.contains("Gid:\t3000\t"), "{status}");
    let cwd = std::fs::read_link(format!(
        "/proc/{}/cwd",
        ctr(&wharf, &["tasks", "ls"])
            .lines()
            .filter(|l| l.contains("RUNNING"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .next()
            .unwrap()
    ))
    .unwrap();
    assert_eq!(cwd, std::path::Path::new("/tmp"));
    for pod in ["missing-image", "damaged-image", "missing-command"] {
        let (reason, message) = waiting(&wharf, pod);
        println!("{pod}: {reason}: {message}");
    }
    run(wharf
        .kubectl()
        .args(["delete", "-f"])
        .arg(&file)
        .args(["--wait=true", "--timeout=60s"]))
    .unwrap();
    until("containerd to be empty", 30, || {
        ctr(&wharf, &["containers", "ls", "-q"]).trim().is_empty()
    });
}
