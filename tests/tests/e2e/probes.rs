//! Probes end to end, the same checks for a Wasm pod and a container pod (as
//! `shared/acceptance/shared-layer.sh` does): both samples answer `/status/CODE` with that
//! status, so a liveness probe on `/status/500` restarts the pod, a readiness probe on
//! `/status/503` keeps it out of its Service without restarting it, and probes on
//! `/status/200` make it Ready and reachable through its NodePort.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wharf_e2e::{Wharf, eventually, run, samples_out};

use crate::volumes::events_of;

/// The one pod of Deployment `app`, once there is exactly one.
fn pod_of(wharf: &Wharf, app: &str) -> Option<Value> {
    let out = run(wharf
        .kubectl()
        .args(["get", "pods", "-l", &format!("app={app}"), "-o", "json"]))
    .ok()?;
    let list: Value = serde_json::from_str(&out).ok()?;
    match list["items"].as_array()?.as_slice() {
        [pod] => Some(pod.clone()),
        _ => None,
    }
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Status and body of a GET through the gateway; `None` if unreachable.
fn get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

/// A Deployment and NodePort Service of one sample with the given probe paths (`None` for no
/// such probe).
fn deployment(
    name: &str,
    image: &str,
    runtime_class: &str,
    startup: Option<&str>,
    liveness: Option<&str>,
    readiness: Option<&str>,
) -> String {
    let probe = |field: &str, path: Option<&str>, failures: u32| {
        path.map(|path| {
            format!(
                "        {field}: {{httpGet: {{path: {path}, port: 8080}}, periodSeconds: 1, failureThreshold: {failures}}}\n"
            )
        })
        .unwrap_or_default()
    };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: {runtime_class}
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 8080}}]
{}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{type: NodePort, selector: {{app: {name}}}, ports: [{{port: 80, targetPort: 8080}}]}}
",
        probe("startupProbe", startup, 10),
        probe("livenessProbe", liveness, 2),
        probe("readinessProbe", readiness, 3),
    )
}

/// A Deployment of one sample with one readiness probe given as YAML flow text.
fn with_readiness(name: &str, image: &str, runtime_class: &str, probe: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: {runtime_class}
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: {image}
        ports: [{{name: web, containerPort: 8080}}]
        readinessProbe: {probe}
"
    )
}

/// The three probe behaviours for the sample `image` on `runtime_class`; names start with
/// `kind`.
fn probes_behave_like_kubernetes(wharf: &Wharf, kind: &str, image: &str, runtime_class: &str) {
    let (ok, dead, unready) = (
        format!("{kind}-ok"),
        format!("{kind}-dead"),
        format!("{kind}-unready"),
    );
    wharf.apply(
        &[
            deployment(
                &ok,
                image,
                runtime_class,
                Some("/status/200"),
                Some("/status/200"),
                Some("/status/200"),
            ),
            deployment(
                &dead,
                image,
                runtime_class,
                None,
                Some("/status/500"),
                Some("/status/200"),
            ),
            deployment(
                &unready,
                image,
                runtime_class,
                None,
                Some("/status/200"),
                Some("/status/503"),
            ),
        ]
        .join("---\n"),
    );

    // (c) Passing startup, liveness and readiness probes: Ready, and served.
    eventually(&format!("{ok} to become Ready"), 90, || {
        pod_of(wharf, &ok).filter(|pod| condition(pod, "Ready") == "True")
    });
    let url = format!("http://{}:{}/", wharf.gateway_ip, wharf.node_port(&ok));
    eventually(&format!("{ok} to answer through its NodePort"), 30, || {
        get(&url).filter(|(code, _)| *code == 200)
    });

    // (a) A failing liveness probe restarts the container, and lastState says why.
    let pod = eventually(
        &format!("{dead} to be restarted by its liveness probe"),
        60,
        || {
            pod_of(wharf, &dead).filter(|pod| {
                pod["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
        },
    );
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "Error", "{kind}: {last}");
    assert!(
        last["message"].as_str().is_some_and(
            |m| m.starts_with("Liveness probe failed: HTTP probe failed with statuscode: 500")
        ),
        "{kind}: {last}"
    );

    // (b) A failing readiness probe: running, not Ready, never restarted, not served.
    eventually(&format!("{unready} to run"), 60, || {
        pod_of(wharf, &unready)
            .filter(|pod| pod["status"]["containerStatuses"][0]["state"]["running"].is_object())
    });
    std::thread::sleep(Duration::from_secs(4));
    let pod = pod_of(wharf, &unready).unwrap();
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        condition(&pod, "Ready"),
        "False",
        "{kind}: {}",
        pod["status"]
    );
    assert_eq!(condition(&pod, "ContainersReady"), "False", "{kind}");
    assert_eq!(status["ready"], false, "{kind}: {status}");
    assert_eq!(status["restartCount"], 0, "{kind}: {status}");
    assert!(status["state"]["running"].is_object(), "{kind}: {status}");
    let endpoints = run(wharf.kubectl().args([
        "get",
        "endpoints",
        &unready,
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]))
    .unwrap_or_default();
    assert_eq!(
        endpoints.trim(),
        "",
        "{kind}: unready pod still in the endpoints"
    );
    let url = format!("http://{}:{}/", wharf.gateway_ip, wharf.node_port(&unready));
    let (code, body) = get(&url).expect("the gateway answers");
    assert_eq!(code, 503, "{kind}: {body}");
    assert!(body.contains("no ready endpoints"), "{kind}: {body}");

    // Events as the kubelet records them: one Unhealthy Event per failing probe, its count
    // bumped on every failure; a Killing Event when liveness restarts the container.
    let unready_pod = pod_of(wharf, &unready).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let unhealthy = eventually(
        &format!("{unready}: an Unhealthy Event counted more than once"),
        30,
        || {
            events_of(wharf, &unready_pod).into_iter().find(|e| {
                e["reason"] == "Unhealthy"
                    && e["count"].as_u64().is_some_and(|n| n > 1)
                    && e["message"]
                        == "Readiness probe failed: HTTP probe failed with statuscode: 503"
            })
        },
    );
    assert_eq!(unhealthy["type"], "Warning", "{kind}: {unhealthy}");
    assert_eq!(
        unhealthy["involvedObject"]["fieldPath"], "spec.containers{app}",
        "{kind}: {unhealthy}"
    );
    // (A container's first probe may also fail with "connection refused" before its server
    // listens: that is another message, so another Event, as in Kubernetes.)
    let unhealthy_events: Vec<_> = events_of(wharf, &unready_pod)
        .into_iter()
        .filter(|e| e["reason"] == "Unhealthy" && e["message"] == unhealthy["message"])
        .collect();
    assert_eq!(
        unhealthy_events.len(),
        1,
        "{kind}: repeats are aggregated: {unhealthy_events:?}"
    );
    let dead_pod = pod_of(wharf, &dead).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = events_of(wharf, &dead_pod);
    assert!(
        events.iter().any(|e| e["reason"] == "Killing"
            && e["message"] == "Container app failed liveness probe, will be restarted"),
        "{kind}: {events:?}"
    );
    assert!(
        events.iter().any(|e| e["reason"] == "Unhealthy"
            && e["message"] == "Liveness probe failed: HTTP probe failed with statuscode: 500"),
        "{kind}: {events:?}"
    );
}

#[test]
fn liveness_readiness_and_startup_probes_act_the_same_on_wasm_and_container_pods() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    run(wharf
        .cli()
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));
    probes_behave_like_kubernetes(&wharf, "wasm", "hello-http:latest", "wasmtime");
    probes_behave_like_kubernetes(&wharf, "ctr", "hello-container:latest", "runc");

    // tcpSocket (by port name) reaches a container at its pod IP.
    wharf.apply(&with_readiness(
        "ctr-tcp",
        "hello-container:latest",
        "runc",
        "{tcpSocket: {port: web}, periodSeconds: 1}",
    ));
    eventually("ctr-tcp to become Ready", 60, || {
        pod_of(&wharf, "ctr-tcp").filter(|pod| condition(pod, "Ready") == "True")
    });
    // A Wasm workload cannot exec: such a probe is refused when the Deployment is applied.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        with_readiness(
            "wasm-exec",
            "hello-http:latest",
            "wasmtime",
            "{exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}",
        ),
    )
    .unwrap();
    let refused = wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("readinessProbe.exec") && stderr.contains("no second program"),
        "{stderr}"
    );
}
