//! One `wharf server` and `wharf agent` nodes as separate processes: the agents join over the
//! API's HTTP, run the pods bound to them, and every node's gateway reaches the Wasm pods of
//! every node; logs of a pod on an agent come through the server; requests routed to a replica
//! on a dead node go to another replica; an agent killed and started again takes its node back.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use wharf_e2e::{Agent, Wharf, run, samples_out, wharf_bin, workspace_root};

fn eventually(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "{what} did not happen within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ready_nodes(server: &Wharf) -> usize {
    run(server.kubectl().args(["get", "nodes", "--no-headers"]))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
        .count()
}

fn pod_on(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: hello-http}}\n\
         spec:\n  nodeName: {node}\n  containers:\n  - name: hello-http\n    image: hello-http:latest\n    \
         ports: [{{containerPort: 8080}}]\n"
    )
}

#[test]
fn agents_join_a_server_and_every_gateway_reaches_the_pods_of_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Wharf::start_server(&dir.path().join("server")).unwrap();
    let n1 = Agent::start(
        &server,
        "n1",
        &dir.path().join("n1"),
        &["--containerd", "off"],
    )
    .unwrap();
    let mut n2 = Agent::start(
        &server,
        "n2",
        &dir.path().join("n2"),
        &["--containerd", "off"],
    )
    .unwrap();
    eventually("two Ready nodes", 30, || ready_nodes(&server) == 2);

    run(Command::new(wharf_bin())
        .env("KUBECONFIG", server.kubeconfig())
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    let file = dir.path().join("pods.yaml");
    std::fs::write(
        &file,
        [pod_on("p1", "n1"), pod_on("p2", "n2")].join("---\n"),
    )
    .unwrap();
    run(server.kubectl().arg("apply").arg("-f").arg(&file)).unwrap();
    run(server
        .kubectl()
        .arg("apply")
        .arg("-f")
        .arg(workspace_root().join("samples/hello-http/service.yaml")))
    .unwrap();

    // Each node's gateway serves the Service from the pods of both nodes.
    let hosts = |agent: &Agent| -> BTreeSet<String> {
        (0..6)
            .map(|_| get(&format!("http://{}:30080/env/HOSTNAME", agent.gateway_ip)))
            .collect()
    };
    let both: BTreeSet<String> = ["p1".to_owned(), "p2".to_owned()].into();
    eventually("n1's gateway to reach both pods", 60, || hosts(&n1) == both);
    eventually("n2's gateway to reach both pods", 30, || hosts(&n2) == both);

    // A second agent on a data dir in use is refused.
    let second = Command::new(wharf_bin())
        .args([
            "agent",
            "--server",
            &server.url(),
            "--name",
            "n1-again",
            "--data-dir",
        ])
        .arg(&n1.data_dir)
        .args(["--gateway-addr", "127.0.0.1:0", "--containerd", "off"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another wharf agent"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // Logs of a pod on an agent, through the server.
    let logs = run(server.kubectl().args(["logs", "p2"])).unwrap();
    assert!(logs.contains("GET /env/HOSTNAME -> 200"), "{logs}");

    // The agent of n2 is killed and comes back: its node is Ready again and its pod runs and
    // answers through the other node's gateway.
    n2.kill9();
    // Meanwhile p2 still counts as ready (nothing has noticed the node is gone), and n1's
    // gateway still picks it in turn: the connection is refused, and the request is served
    // by p1 instead of failing.
    let only_p1: BTreeSet<String> = ["p1".to_owned()].into();
    assert_eq!(hosts(&n1), only_p1);
    n2.restart().unwrap();
    eventually("n2 to be Ready again", 30, || ready_nodes(&server) == 2);
    eventually("p2 to answer again through n1", 60, || hosts(&n1) == both);
    assert!(
        n2.log_tail().contains("node registered"),
        "{}",
        n2.log_tail()
    );
}
