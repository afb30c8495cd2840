//! The control plane as users meet it: kubectl apply/get/delete, the Python client, the wharf
//! CLI, bad input over a real socket, and process lifecycle (data-dir lock, SIGTERM).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wharf_e2e::{Wharf, python, run, wharf_bin, workspace_root};

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: bar-cm}
data: {color: blue}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bar-dep, labels: {app: bar}}
spec:
  replicas: 0
  selector: {matchLabels: {app: bar}}
  template:
    metadata: {labels: {app: bar}}
    spec: {containers: [{name: c, image: example/none:1}]}
";

#[test]
fn kubectl_applies_gets_and_deletes_a_configmap_and_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();

    // --validate=false until /openapi is served (the kubectl compatibility issue).
    let out = run(wharf
        .kubectl()
        .args(["apply", "--validate=false", "-f"])
        .arg(&manifest))
    .unwrap();
    assert!(out.contains("configmap/bar-cm created"), "{out}");
    assert!(out.contains("deployment.apps/bar-dep created"), "{out}");

    let color = run(wharf
        .kubectl()
        .args(["get", "cm", "bar-cm", "-o", "jsonpath={.data.color}"]))
    .unwrap();
    assert_eq!(color, "blue");

    let table = run(wharf.kubectl().args(["get", "deploy"])).unwrap();
    let header = table.lines().next().unwrap_or("");
    assert!(
        header.contains("NAME") && header.contains("READY") && header.contains("AGE"),
        "{table}"
    );
    assert!(table.contains("bar-dep"), "{table}");
    let all = run(wharf.kubectl().args(["get", "all"])).unwrap();
    assert!(all.contains("deployment.apps/bar-dep"), "{all}");

    // A second apply of a changed file updates in place (strategic merge patch).
    std::fs::write(&manifest, MANIFEST.replace("blue", "green")).unwrap();
    let out = run(wharf
        .kubectl()
        .args(["apply", "--validate=false", "-f"])
        .arg(&manifest))
    .unwrap();
    assert!(out.contains("configmap/bar-cm configured"), "{out}");
    assert!(out.contains("deployment.apps/bar-dep unchanged"), "{out}");
    let color = run(wharf
        .kubectl()
        .args(["get", "cm", "bar-cm", "-o", "jsonpath={.data.color}"]))
    .unwrap();
    assert_eq!(color, "green");

    let out = run(wharf
        .kubectl()
        .args(["scale", "deploy/bar-dep", "--replicas=3"]))
    .unwrap();
    assert!(out.contains("scaled"), "{out}");
    let replicas = run(wharf.kubectl().args([
        "get",
        "deploy",
        "bar-dep",
        "-o",
        "jsonpath={.spec.replicas}",
    ]))
    .unwrap();
    assert_eq!(replicas, "3");

    let out = run(wharf.kubectl().args(["delete", "-f"]).arg(&manifest)).unwrap();
    assert!(out.contains("deleted"), "{out}");
    let gone = wharf
        .kubectl()
        .args(["get", "cm", "bar-cm"])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );

    let namespaces = run(wharf.kubectl().args(["get", "ns", "-o", "name"])).unwrap();
    for ns in ["default", "kube-system"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{namespaces}"
        );
    }
    let classes = run(wharf.kubectl().args(["get", "runtimeclass", "-o", "name"])).unwrap();
    assert!(
        classes.contains("wasmtime") && classes.contains("runc"),
        "{classes}"
    );
}

#[test]
fn the_python_client_creates_lists_watches_resumes_and_scales() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    let script = workspace_root().join("tests/python/client_test.py");
    let out = run(Command::new(python())
        .arg(script)
        .env("KUBECONFIG", wharf.kubeconfig()))
    .unwrap();
    assert!(out.contains("python client: ok"), "{out}");
}

#[test]
fn the_wharf_cli_applies_gets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let cli = || {
        let mut command = Command::new(wharf_bin());
        command.env("KUBECONFIG", wharf.kubeconfig());
        command
    };
    let out = run(cli().args(["apply", "-f"]).arg(&manifest)).unwrap();
    assert!(out.contains("configmap/bar-cm created"), "{out}");
    assert!(out.contains("deployment.apps/bar-dep created"), "{out}");
    let out = run(cli().args(["apply", "-f"]).arg(&manifest)).unwrap();
    assert!(out.contains("configmap/bar-cm configured"), "{out}");

    let out = run(cli().args(["get", "cm"])).unwrap();
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("bar-cm"), "{out}");
    let out = run(cli().args(["get", "configmap", "bar-cm", "-o", "json"])).unwrap();
    let object: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(object["data"]["color"], "blue");

    let out = run(cli().args(["delete", "cm", "bar-cm"])).unwrap();
    assert!(out.contains("configmap/bar-cm deleted"), "{out}");
    let missing = cli().args(["get", "cm", "bar-cm"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // Malformed input is a clear error naming the file, and nothing is written.
    std::fs::write(&manifest, "kind: ConfigMap\nmetadata: {name: [broken\n").unwrap();
    let bad = cli().args(["apply", "-f"]).arg(&manifest).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("m.yaml"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn a_second_wharf_on_the_same_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _first = Wharf::start(&data).unwrap();
    let second = Command::new(wharf_bin())
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another wharf process"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_stops_wharf_cleanly_even_with_an_open_watch() {
    let dir = tempfile::tempdir().unwrap();
    let mut wharf = Wharf::start(&dir.path().join("data")).unwrap();
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true",
        wharf.url()
    );
    let response = reqwest::get(&url).await.unwrap();
    assert!(response.status().is_success());
    let status = tokio::task::spawn_blocking(move || wharf.terminate(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn bad_input_over_a_real_socket_gets_status_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/namespaces/default/configmaps", wharf.url());
    // The ConfigMaps with their resourceVersions: a rejected request must change none of them.
    // (The global revision moves on anyway: the node agent renews its Lease.)
    let configmaps = || async {
        let list: Value = http.get(&base).send().await.unwrap().json().await.unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                format!(
                    "{}@{}",
                    item["metadata"]["name"].as_str().unwrap(),
                    item["metadata"]["resourceVersion"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let before = configmaps().await;
    let huge = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(4 * 1024 * 1024)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("application/json", "{not json".into(), 400, "BadRequest"),
        (
            "application/yaml",
            "metadata: {name: [oops".into(),
            400,
            "BadRequest",
        ),
        (
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.into(),
            422,
            "Invalid",
        ),
        (
            "application/json",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.into(),
            400,
            "BadRequest",
        ),
        (
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}"#
                .into(),
            400,
            "BadRequest",
        ),
        (
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"not valid!"}}}"#
                .into(),
            422,
            "Invalid",
        ),
        ("application/json", huge, 413, "RequestEntityTooLarge"),
    ];
    for (content_type, body, code, reason) in cases {
        let response = http
            .post(&base)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            code,
            "{}",
            &body[..body.len().min(80)]
        );
        let status: Value = response.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], reason, "{status}");
        assert!(!status["message"].as_str().unwrap_or("").is_empty());
    }
    let unknown = http
        .get(format!("{}/api/v1/namespaces/default/widgets", wharf.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        configmaps().await,
        before,
        "a rejected request wrote something"
    );
}
