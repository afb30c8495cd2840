//! Wasm pods end to end: the samples pushed with `wharf push`, applied with kubectl, run by the
//! node agent in the in-process wasmtime runtime, served through the gateway's NodePort, with
//! statuses, restarts and logs as Kubernetes users know them.

use std::time::Duration;

use serde_json::Value;
use wharf_e2e::{Wharf, eventually, run, samples_out, workspace_root};

fn kubectl_json(wharf: &Wharf, args: &[&str]) -> Value {
    let out = run(wharf.kubectl().args(args).args(["-o", "json"])).unwrap();
    serde_json::from_str(&out).unwrap()
}

/// A blocking HTTP GET (these tests are synchronous): status and body, `None` if unreachable.
fn get(url: &str) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

#[test]
fn the_hello_http_sample_applied_with_kubectl_answers_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-http")))
    .unwrap();
    let url = format!("http://{}:30080", wharf.gateway_ip);
    let pods = eventually("3 Running hello-http pods", 60, || {
        let list = kubectl_json(&wharf, &["get", "pods", "-l", "app=hello-http"]);
        let pods = list["items"].as_array()?.clone();
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["spec"]["nodeName"].is_string())
            .count();
        (pods.len() == 3 && running == 3).then_some(pods)
    });
    let (status, body) = eventually("a 200 through the NodePort", 30, || {
        get(&format!("{url}/")).filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200);
    assert!(body.contains("Hello from Wharf!"), "{body}");
    // Requests are balanced over the replicas: every pod's log shows some.
    for _ in 0..60 {
        assert_eq!(get(&format!("{url}/")).unwrap().0, 200);
    }
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let logs = run(wharf.kubectl().args(["logs", name])).unwrap();
        assert!(logs.contains("hello-http: GET / -> 200"), "{name}: {logs}");
    }
    // kubectl logs -f streams new lines; kubectl logs deploy/NAME picks a pod of it.
    let first = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let mut follow = wharf
        .kubectl()
        .args(["logs", "-f", &first])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..9 {
        get(&format!("{url}/status/202"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = follow.kill();
    let streamed = follow.wait_with_output().unwrap();
    let streamed = String::from_utf8_lossy(&streamed.stdout);
    assert!(streamed.contains("GET /status/202 -> 202"), "{streamed}");
    let by_deployment = run(wharf
        .kubectl()
        .args(["logs", "deploy/hello-http", "--tail=1"]))
    .unwrap();
    assert_eq!(by_deployment.lines().count(), 1, "{by_deployment}");
    // A panic fails its own request only.
    assert_eq!(get(&format!("{url}/panic")).unwrap().0, 500);
    assert_eq!(get(&format!("{url}/")).unwrap().0, 200);
    assert_eq!(get(&format!("{url}/status/418")).unwrap().0, 418);
    // Deleting the Deployment stops its pods; the Service has no endpoint left.
    run(wharf.kubectl().args(["delete", "deployment", "hello-http"])).unwrap();
    eventually("the pods to go", 60, || {
        let list = kubectl_json(&wharf, &["get", "pods", "-l", "app=hello-http"]);
        list["items"].as_array()?.is_empty().then_some(())
    });
    // The gateway drops the endpoints as soon as it sees the pods go.
    eventually("503 from a Service without endpoints", 10, || {
        (get(&format!("{url}/"))?.0 == 503).then_some(())
    });
}

fn job(name: &str, image: &str, policy: &str, exit_code: u8) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  runtimeClassName: wasmtime\n  containers:\n  - name: job\n    image: {image}\n    args: [\"one\", \"two\"]\n    env: [{{name: EXIT_CODE, value: \"{exit_code}\"}}]\n"
    )
}

fn pod_status(wharf: &Wharf, name: &str) -> Value {
    kubectl_json(wharf, &["get", "pod", name])["status"].clone()
}

#[test]
fn job_pods_succeed_fail_with_the_guest_exit_code_and_restart_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    wharf.push_sample("hello-job-p1.wasm", "hello-job-p1:latest");
    wharf.apply(&job("ok", "hello-job:latest", "Never", 0));
    wharf.apply(&job("ok-p1", "hello-job-p1:latest", "Never", 0));
    wharf.apply(&job("fails", "hello-job:latest", "Never", 3));
    wharf.apply(&job("retries", "hello-job:latest", "OnFailure", 2));
    for name in ["ok", "ok-p1"] {
        eventually(&format!("pod {name} to succeed"), 60, || {
            (pod_status(&wharf, name)["phase"] == "Succeeded").then_some(())
        });
    }
    let logs = run(wharf.kubectl().args(["logs", "ok"])).unwrap();
    assert!(
        logs.contains("hello-job:") && logs.contains("one"),
        "{logs}"
    );
    let failed = eventually("pod fails to fail", 60, || {
        let status = pod_status(&wharf, "fails");
        (status["phase"] == "Failed").then_some(status)
    });
    let terminated = &failed["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{failed}");
    assert_eq!(terminated["reason"], "Error");
    // OnFailure: restarted after a CrashLoopBackOff wait, restartCount counts up.
    let waiting = eventually("a CrashLoopBackOff wait", 60, || {
        let status = pod_status(&wharf, "retries");
        let container = status["containerStatuses"][0].clone();
        (container["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(container)
    });
    assert_eq!(
        waiting["lastState"]["terminated"]["exitCode"], 2,
        "{waiting}"
    );
    eventually("a restart after the backoff", 40, || {
        let status = pod_status(&wharf, "retries");
        (status["containerStatuses"][0]["restartCount"].as_u64()? >= 2).then_some(())
    });
    let previous = run(wharf.kubectl().args(["logs", "retries", "--previous"])).unwrap();
    assert!(previous.contains("exiting with code 2"), "{previous}");
}

#[test]
fn bad_images_and_unavailable_runtimes_show_clear_reasons_on_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.apply(&job("missing", "never-pushed:1", "Never", 0));
    let waiting = eventually("ErrImagePull", 30, || {
        let state =
            pod_status(&wharf, "missing")["containerStatuses"][0]["state"]["waiting"].clone();
        (state["reason"] == "ErrImagePull").then_some(state)
    });
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("wharf push"),
        "{waiting}"
    );
    wharf.apply(
        &job("container", "docker.io/library/nginx:1", "Never", 0).replace("wasmtime", "runc"),
    );
    // No node runs containers (--containerd off): the scheduler says so.
    let scheduled = eventually("PodScheduled=False for runtime class runc", 30, || {
        let status = pod_status(&wharf, "container");
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
            .filter(|c| c["status"] == "False")
            .cloned()
    });
    assert_eq!(scheduled["reason"], "Unschedulable", "{scheduled}");
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap_or("")
            .contains("didn't support runtime class runc"),
        "{scheduled}"
    );
    // Something that is not Wasm is refused at push, with a clear message.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"#!/bin/sh\necho not wasm\n").unwrap();
    let refused = wharf.cli().arg("push").arg(&junk).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not a WebAssembly module or component"),
        "{stderr}"
    );
}

#[test]
fn wharf_deploy_pushes_a_function_and_prints_a_url_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let out = run(wharf
        .cli()
        .arg("deploy")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "greeter"]))
    .unwrap();
    let url = out
        .lines()
        .find_map(|l| l.split("curl ").nth(1))
        .unwrap_or_else(|| panic!("no URL in {out}"))
        .trim()
        .to_owned();
    assert!(
        url.starts_with(&format!("http://{}:", wharf.gateway_ip)),
        "{url}"
    );
    let (status, body) = eventually("the deployed function to answer", 60, || {
        get(&url).filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200);
    assert!(body.contains("Hello from Wharf!"), "{body}");
}

/// A blocking GET with a Host header.
fn get_with_host(url: &str, host: &str) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .header("host", host)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

fn function(name: &str, greeting: &str, outgoing: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{wharf.dev/outgoing-http: {outgoing}}}
    spec:
      runtimeClassName: wasmtime
      containers:
      - name: web
        image: hello-http:latest
        ports: [{{containerPort: 8080}}]
        env: [{{name: GREETING, value: {greeting}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

#[test]
fn ingress_routes_by_host_and_path_and_outgoing_http_follows_the_pod_policy() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    wharf.apply(&function("shop", "from-shop", "allow"));
    wharf.apply(&function("api", "from-api", "deny"));
    wharf.apply(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: routes}
spec:
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
      - {path: /env, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
  - host: api.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
",
    );
    let base = format!("http://{}:{}", wharf.gateway_ip, wharf.gateway_port);
    let (_, body) = eventually("the shop function behind the Ingress", 60, || {
        get_with_host(&format!("{base}/"), "shop.example").filter(|(s, _)| *s == 200)
    });
    assert!(body.contains("from-shop"), "{body}");
    // The longest matching path wins: /env goes to the api function.
    let (_, body) = eventually("the api function behind the Ingress", 60, || {
        get_with_host(&format!("{base}/env/GREETING"), "shop.example").filter(|(s, _)| *s == 200)
    });
    assert_eq!(body, "from-api");
    assert_eq!(
        get_with_host(&format!("{base}/"), "other.example")
            .unwrap()
            .0,
        404
    );

    // Outgoing HTTP: allowed for shop (it reaches the API server's /healthz), denied for api.
    let target = format!("{}/healthz", wharf.url());
    let (status, body) =
        get_with_host(&format!("{base}/fetch?url={target}"), "shop.example").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) =
        get_with_host(&format!("{base}/fetch?url={target}"), "api.example").unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("fetching"), "{body}");
}
