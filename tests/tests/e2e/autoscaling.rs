//! Metrics and autoscaling end to end, the same for a Wasm function and a container: usage
//! measured by the agent (host-side accounting for Wasm, cgroups for containers) is served as
//! `metrics.k8s.io` so `kubectl top` works; the HPA adds replicas under CPU load made through
//! the gateway (`GET /work/MS` burns MS ms of CPU in both samples), scales an idle workload
//! down to zero when `minReplicas` is 0, and the next request wakes it and is served.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::Value;
use wharf_e2e::{Wharf, eventually, run, samples_out};

/// A Deployment (1 replica, a CPU request of 100m) and NodePort Service of one sample.
fn workload(name: &str, image: &str, runtime_class: &str) -> String {
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{type: NodePort, selector: {{app: {name}}}, ports: [{{port: 80, targetPort: 8080}}]}}
"
    )
}

/// An HPA on CPU (50 % of the request) that may scale `name` to zero after `idle` seconds
/// without requests.
fn autoscaler(name: &str, idle: u32) -> String {
    format!(
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 0
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: {idle}}}
"
    )
}

/// Status and body of a GET; `None` if nothing answered.
fn get(url: &str, timeout_seconds: u32) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", &timeout_seconds.to_string()])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

fn replicas(wharf: &Wharf, name: &str) -> i64 {
    run(wharf
        .kubectl()
        .args(["get", "deploy", name, "-o", "jsonpath={.spec.replicas}"]))
    .ok()
    .and_then(|r| r.trim().parse().ok())
    .unwrap_or(-1)
}

/// Sends CPU-heavy requests from 4 threads until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = get(&url, 10);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `kubectl top pod NAME`'s CPU (millicores) and memory (Mi) of the pods of `app`.
fn top_pods(wharf: &Wharf, app: &str) -> Option<Vec<(String, u64, u64)>> {
    let out =
        run(wharf
            .kubectl()
            .args(["top", "pod", "-l", &format!("app={app}"), "--no-headers"]))
        .ok()?;
    let rows: Vec<(String, u64, u64)> = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let cpu = fields.get(1)?.strip_suffix('m')?.parse().ok()?;
            let memory = fields.get(2)?.strip_suffix("Mi")?.parse().ok()?;
            Some((fields[0].to_owned(), cpu, memory))
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// Usage, scale-up under load, scale to zero and wake-up for one sample.
fn autoscales_like_kubernetes(wharf: &Wharf, name: &str, image: &str, runtime_class: &str) {
    wharf.apply(&workload(name, image, runtime_class));
    let port = wharf.node_port(name);
    let base = format!("http://{}:{port}", wharf.gateway_ip);
    eventually(&format!("{name} to answer"), 90, || {
        get(&format!("{base}/"), 5).filter(|(code, _)| *code == 200)
    });

    // Usage under load shows in `kubectl top` and in the raw metrics.k8s.io API.
    let load = Load::start(format!("{base}/work/100"));
    let rows = eventually(&format!("kubectl top to show {name} busy"), 60, || {
        top_pods(wharf, name).filter(|rows| rows.iter().any(|(_, cpu, _)| *cpu >= 100))
    });
    eprintln!("{name}: kubectl top under load: {rows:?}");
    // A Wasm HTTP component holds memory only while it serves a request (a fresh instance per
    // request), so the working set sampled at one instant can be 0 between two requests:
    // under this load it is soon seen above 0.
    let pod = eventually(
        &format!("PodMetrics of {name} with memory in use"),
        30,
        || {
            let raw = run(wharf.kubectl().args([
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
            ]))
            .ok()?;
            let list: Value = serde_json::from_str(&raw).ok()?;
            list["items"]
                .as_array()?
                .iter()
                .find(|p| p["metadata"]["labels"]["app"] == name)
                .filter(|p| {
                    p["containers"][0]["usage"]["memory"]
                        .as_str()
                        .is_some_and(|m| m.ends_with("Ki") && m != "0Ki")
                })
                .cloned()
        },
    );
    assert_eq!(pod["containers"][0]["name"], "app", "{pod}");

    // And on /metrics, in the Prometheus format.
    let metrics = run(wharf.kubectl().args(["get", "--raw", "/metrics"])).unwrap();
    let pod_name = &rows[0].0;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("container_cpu_usage_cores{")
                && l.contains(&format!("pod=\"{pod_name}\""))),
        "{name}: no container_cpu_usage_cores of {pod_name} on /metrics"
    );

    // The HPA adds replicas under CPU load.
    wharf.apply(&autoscaler(name, 8));
    let scaled = eventually(
        &format!("the HPA to scale {name} up under load"),
        90,
        || Some(replicas(wharf, name)).filter(|r| *r > 1),
    );
    eprintln!("{name}: scaled to {scaled} under load");
    let hpa: Value = serde_json::from_str(
        &run(wharf.kubectl().args(["get", "hpa", name, "-o", "json"])).unwrap(),
    )
    .unwrap();
    assert!(
        hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
            .as_i64()
            .is_some_and(|u| u > 50),
        "{name}: the HPA reports the utilisation it acted on: {}",
        hpa["status"]
    );
    drop(load);

    // Idle: down to zero, no pod left.
    eventually(&format!("{name} to scale to zero when idle"), 120, || {
        Some(replicas(wharf, name)).filter(|r| *r == 0)
    });
    eventually(&format!("the pods of {name} to go"), 60, || {
        run(wharf
            .kubectl()
            .args(["get", "pods", "-l", &format!("app={name}"), "-o", "name"]))
        .ok()
        .filter(|out| out.trim().is_empty())
    });

    // The next request wakes it, waits for the replica and is served.
    let started = Instant::now();
    let (code, body) = get(&format!("{base}/env/HOSTNAME"), 90).expect("an answer");
    eprintln!(
        "{name}: first request from zero answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        code, 200,
        "{name}: the first request after scale to zero: {body}"
    );
    assert!(
        body.starts_with(name),
        "{name}: served by a new replica: {body}"
    );
    assert_eq!(replicas(wharf, name), 1);
}

#[test]
fn usage_hpa_scale_to_zero_and_wake_up_act_the_same_on_wasm_and_container_pods() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated_with(
        &dir.path().join("data"),
        &["--containerd", "managed", "--hpa-sync-period", "1s"],
    )
    .unwrap();
    run(wharf
        .cli()
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));

    autoscales_like_kubernetes(&wharf, "wasm-fn", "hello-http:latest", "wasmtime");
    autoscales_like_kubernetes(&wharf, "ctr-fn", "hello-container:latest", "runc");

    // The node's usage is there too.
    let nodes = run(wharf.kubectl().args(["top", "nodes", "--no-headers"])).unwrap();
    let fields: Vec<&str> = nodes.split_whitespace().collect();
    assert!(
        fields.len() >= 5 && fields[1].ends_with('m') && fields[3].ends_with("Mi"),
        "kubectl top nodes: {nodes}"
    );
}

#[test]
fn resource_metrics_are_read_only_and_unknown_paths_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let groups = run(wharf.kubectl().args(["api-versions"])).unwrap();
    assert!(
        groups.lines().any(|l| l == "metrics.k8s.io/v1beta1"),
        "{groups}"
    );
    let url = format!(
        "http://127.0.0.1:{}/apis/metrics.k8s.io/v1beta1/nodes",
        wharf.api_port
    );
    let out = Command::new("curl")
        .args(["-s", "-X", "DELETE", "-w", "\n%{http_code}", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("405"), "{text}");
    let missing = wharf
        .kubectl()
        .args([
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // Within a few seconds of start the node's own usage is served.
    let node = eventually("NodeMetrics of the node", 30, || {
        run(wharf
            .kubectl()
            .args(["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]))
        .ok()
        .and_then(|raw| serde_json::from_str::<Value>(&raw).ok())
        .filter(|list| list["items"].as_array().is_some_and(|i| !i.is_empty()))
    });
    assert_eq!(node["items"][0]["kind"], "NodeMetrics");
}
