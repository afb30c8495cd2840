//! One `wharf server` and `wharf agent` nodes as separate processes: the agents join over the
//! API's HTTP, run the pods bound to them, and every node's gateway reaches the Wasm pods of
//! every node; logs of a pod on an agent come through the server; requests routed to a replica
//! on a dead node go to another replica; an agent killed and started again takes its node back.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use wharf_e2e::{Agent, Wharf, run, samples_out, until, wharf_bin, workspace_root};

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
    until("two Ready nodes", 30, || ready_nodes(&server) == 2);

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
    until("n1's gateway to reach both pods", 60, || hosts(&n1) == both);
    until("n2's gateway to reach both pods", 30, || hosts(&n2) == both);

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
    until("n2 to be Ready again", 30, || ready_nodes(&server) == 2);
    until("p2 to answer again through n1", 60, || hosts(&n1) == both);
    assert!(
        n2.log_tail().contains("node registered"),
        "{}",
        n2.log_tail()
    );
}

fn running_per_node(server: &Wharf) -> Vec<(String, String)> {
    run(server.kubectl().args([
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]))
    .unwrap_or_default()
    .lines()
    .filter_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.len() == 2 && fields[0] == "Running")
            .then(|| (fields[0].to_owned(), fields[1].to_owned()))
    })
    .collect()
}

#[test]
fn the_pods_of_a_dead_node_are_replaced_on_the_others_and_the_service_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Wharf::start_server_with(
        &dir.path().join("server"),
        &["--node-monitor-grace-period", "12"],
    )
    .unwrap();
    let mut agents: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(&server, n, &dir.path().join(n), &["--containerd", "off"]).unwrap())
        .collect();
    until("three Ready nodes", 30, || ready_nodes(&server) == 3);
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", server.kubeconfig())
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    run(server
        .kubectl()
        .arg("apply")
        .arg("-f")
        .arg(workspace_root().join("samples/hello-http")))
    .unwrap();
    run(server
        .kubectl()
        .args(["scale", "deployment/hello-http", "--replicas=6"]))
    .unwrap();
    // Fast failover, the Kubernetes way: short tolerations on the pod template.
    run(server.kubectl().args([
        "patch",
        "deployment/hello-http",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[
            {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":1},
            {"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":1}]}}}}"#,
    ]))
    .unwrap();
    until("six replicas running", 90, || {
        running_per_node(&server).len() == 6
    });
    run(server.kubectl().args([
        "rollout",
        "status",
        "deployment/hello-http",
        "--timeout=60s",
    ]))
    .unwrap();
    // Bin-packing: the replicas share the fullest node that fits rather than spreading.
    let placed = running_per_node(&server);
    let nodes: BTreeSet<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 1, "bin-packed onto one node: {placed:?}");
    let victim = placed[0].1.clone();
    let index = agents.iter().position(|a| a.name == victim).unwrap();
    let survivor = agents
        .iter()
        .find(|a| a.name != victim)
        .unwrap()
        .gateway_ip
        .clone();

    agents[index].kill9();
    let started = Instant::now();
    until("six replicas running on the other nodes", 90, || {
        let running = running_per_node(&server);
        running.len() >= 6 && running.iter().all(|(_, n)| *n != victim)
    });
    eprintln!("failover took {:?}", started.elapsed());
    let node_status = run(server
        .kubectl()
        .args(["get", "node", &victim, "--no-headers"]))
    .unwrap();
    assert!(node_status.contains("NotReady"), "{node_status}");
    until("the Service to answer through a surviving node", 30, || {
        get(&format!("http://{survivor}:30080/")).contains("Hello")
    });
    for _ in 0..20 {
        let answer = get(&format!("http://{survivor}:30080/"));
        assert!(answer.contains("Hello"), "{answer}");
    }

    // The node comes back and is Ready again.
    agents[index].restart().unwrap();
    until("the node to be Ready again", 30, || {
        ready_nodes(&server) == 3
    });
}
