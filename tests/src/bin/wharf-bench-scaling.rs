//! Scaling benchmarks, against a `wharf up --containerd managed --hpa-sync-period 1s` that
//! scripts/bench.sh starts for this program alone:
//!
//! - scale from zero: the first request to a Deployment an HPA (`minReplicas: 0`) let sleep at
//!   zero replicas, for a Wasm function (hello-http) and a container (hello-container). The
//!   gateway finds no ready endpoint, patches the Deployment from 0 to 1 replica, holds the
//!   request until the replica is Ready and then serves it. Timed: one `GET /` on a fresh TCP
//!   connection to the NodePort, from the connect to the last byte of the response (a plain
//!   `std::net::TcpStream`, HTTP/1.1 `Connection: close`, so no client pool or runtime is in
//!   the figure). Compared with the same GET to an already running replica (median of 50).
//!   Each round: the Deployment patched to `replicas: 0`, no pod of it left in the API, 300 ms
//!   for the gateway's route table to settle, then the request. A watch on the pods splits its time: pod created, pod
//!   Ready, response complete;
//! - a load step until new replicas are Ready: a Deployment at 1 ready replica under an HPA
//!   (CPU 50 % of a 100m request, `minReplicas: 1`, `maxReplicas: 4`, default scale-up), then
//!   8 threads looping `GET /work/50` (about 50 ms of CPU each); the Deployment is read every
//!   100 ms until 4 replicas are ready (or 120 s). Needs `wharf up --hpa-sync-period 1s`
//!   (Kubernetes' default period is 15 s). Wasm always; a container too with `--containers`.
//!
//! The HPAs have `behavior.scaleDown.stabilizationWindowSeconds: 600`, so they never scale
//! down during a measurement. Prints Markdown table rows `| measurement | Wharf | peer |
//! ratio |`. Removes what it created (HPAs, Services, Deployments and their pods) also when a
//! measurement fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wharf_e2e::bench::{Api, ms, p50_p99};

#[derive(Parser, Debug)]
struct Args {
    /// Wharf API base URL (a `wharf up --containerd managed --hpa-sync-period 1s`).
    #[arg(long)]
    wharf: String,
    /// The gateway IP of that Wharf (NodePorts listen there).
    #[arg(long)]
    gateway_ip: String,
    /// The hello-http component (pushed as `hello-http:latest`, as `wharf push` does).
    #[arg(long, default_value = "samples/out/hello-http.wasm")]
    component: PathBuf,
    /// The container sample's OCI archive (pushed as `wharf image import` does).
    #[arg(long, default_value = "samples/out/hello-container.tar")]
    image_archive: PathBuf,
    /// The image name the archive holds.
    #[arg(long, default_value = "hello-container:latest")]
    image: String,
    /// Scale-from-zero rounds of the Wasm function.
    #[arg(long, default_value_t = 20)]
    wasm_rounds: usize,
    /// Scale-from-zero rounds of the container (0: no container measurement).
    #[arg(long, default_value_t = 10)]
    container_rounds: usize,
    /// Requests to a running replica for the comparison (their median).
    #[arg(long, default_value_t = 50)]
    warm_requests: usize,
    /// Client threads of the load step.
    #[arg(long, default_value_t = 8)]
    load_threads: usize,
    /// CPU milliseconds each request of the load step burns in the workload (`GET /work/MS`).
    #[arg(long, default_value_t = 50)]
    load_work_ms: u64,
    /// How long the load step may take at most, in seconds.
    #[arg(long, default_value_t = 120)]
    load_seconds: u64,
    /// Also run the load step on a container Deployment.
    #[arg(long)]
    containers: bool,
    /// The socket of Wharf's containerd: if given, waits at the end until the namespace has no
    /// container left (so that a Wharf stopped right after leaves nothing behind).
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// The containerd namespace Wharf uses.
    #[arg(long, default_value = "wharf")]
    containerd_namespace: String,
}

const NAMESPACE: &str = "default";
/// The label on everything this program creates.
const LABEL: &str = "wharf-bench-scaling";
/// The HPAs' scale-down stabilization window: long enough that they never scale down here.
const STABILIZATION_SECONDS: u64 = 600;
/// The most replicas an HPA here sets.
const MAX_REPLICAS: u64 = 4;
/// How long the gateway's route table is given to settle after the last pod of a Deployment
/// left the API, before a scale-from-zero request.
const SETTLE: Duration = Duration::from_millis(300);
/// The longest a single request may take (a cold start included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a Deployment may take to become ready, or its pods to go.
const LIMIT: Duration = Duration::from_secs(180);

/// The workloads this program may create (all removed at the end).
const WORKLOADS: [&str; 4] = [
    "bench-zero-wasm",
    "bench-zero-ctr",
    "bench-load-wasm",
    "bench-load-ctr",
];

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One HTTP/1.1 GET on a fresh TCP connection (`Connection: close`), read up to the last byte
/// of the body (by `Content-Length`, else until the server closes). Returns the status code.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, Option<usize>)> = None;
    loop {
        let n = stream
            .read(&mut chunk)
            .with_context(|| format!("GET {path} from {addr}: read"))?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if head.is_none()
            && let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let headers = String::from_utf8_lossy(&buffer[..end]);
            let length = headers.lines().skip(1).find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            });
            head = Some((end + 4, length));
        }
        if let Some((body, Some(length))) = head
            && buffer.len() >= body + length
        {
            break;
        }
    }
    let Some((body, length)) = head else {
        bail!(
            "GET {path} from {addr}: no complete response head: {:?}",
            String::from_utf8_lossy(&buffer)
        );
    };
    if let Some(length) = length
        && buffer.len() < body + length
    {
        bail!("GET {path} from {addr}: the body ended early");
    }
    let status_line = String::from_utf8_lossy(&buffer[..body]);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path} from {addr}: bad status line: {status_line:?}"))
}

/// [`http_get`] off the async runtime; returns the status, when the request started and when
/// its response was complete.
async fn timed_get(addr: SocketAddr, path: &'static str) -> Result<(u16, Instant, Instant)> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = http_get(addr, path, REQUEST_TIMEOUT)?;
        Ok((status, started, Instant::now()))
    })
    .await?
}

/// A pod event as it arrived on the watch, with its arrival time.
struct PodEvent {
    at: Instant,
    kind: String,
    ready: bool,
}

/// Watches the pods of the workload `name` from now on; every event is timestamped when its
/// line arrives.
async fn watch_pods(api: &Api, name: &str) -> Result<mpsc::UnboundedReceiver<PodEvent>> {
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{name}");
    let list = api.get(&pods).await?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .context("the pod list has no resourceVersion")?
        .to_owned();
    let response = api
        .http
        .get(format!(
            "{}{pods}&watch=true&resourceVersion={revision}&timeoutSeconds=3600",
            api.base
        ))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("watch the pods of {name}: {}", response.status());
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            let at = Instant::now();
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let ready = event["object"]["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                let event = PodEvent {
                    at,
                    kind: event["type"].as_str().unwrap_or("").to_owned(),
                    ready,
                };
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    });
    Ok(receiver)
}

/// When the watch showed the woken pod created and Ready: takes events until both were seen
/// (or 5 s passed).
async fn pod_milestones(
    events: &mut mpsc::UnboundedReceiver<PodEvent>,
) -> (Option<Instant>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (mut created, mut ready) = (None, None);
    while created.is_none() || ready.is_none() {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        if event.kind == "ADDED" && created.is_none() {
            created = Some(event.at);
        }
        if event.kind != "DELETED" && event.ready && ready.is_none() {
            ready = Some(event.at);
        }
    }
    (created, ready)
}

/// The workloads this benchmark scales, and their pods.
trait WorkloadsApi {
    /// Deletes an object; a missing one is not an error.
    async fn delete(&self, path: &str) -> Result<()>;

    /// The Deployment `name`.
    async fn deployment(&self, name: &str) -> Result<Value>;

    /// How many pods of the workload `name` exist (terminating ones included).
    async fn pods_of(&self, name: &str) -> Result<usize>;
}

impl WorkloadsApi for Api {
    /// Deletes an object; a missing one is not an error.
    async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .http
            .delete(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                json!({"kind": "DeleteOptions", "apiVersion": "v1",
                       "propagationPolicy": "Background"})
                .to_string(),
            )
            .send()
            .await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        bail!(
            "delete {path}: {status}: {}",
            response.text().await.unwrap_or_default()
        )
    }

    /// The Deployment `name`.
    async fn deployment(&self, name: &str) -> Result<Value> {
        self.get(&deployment_path(name)).await
    }

    /// How many pods of the workload `name` exist (terminating ones included).
    async fn pods_of(&self, name: &str) -> Result<usize> {
        let list = self
            .get(&format!(
                "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{name}"
            ))
            .await?;
        Ok(list["items"].as_array().map_or(0, Vec::len))
    }
}

fn deployment_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
}

/// A runtime the measurements run on.
#[derive(Clone, Copy)]
struct Runtime {
    /// As it appears in the rows.
    label: &'static str,
    /// Its `runtimeClassName`.
    class: &'static str,
}

const WASM: Runtime = Runtime {
    label: "Wasm (hello-http)",
    class: "wasmtime",
};
const CONTAINER: Runtime = Runtime {
    label: "container (hello-container)",
    class: "runc",
};
/// The name the component is pushed as (as `wharf push --name` does).
const WASM_IMAGE: &str = "hello-http:latest";

/// A Deployment of `replicas` (a CPU request of 100m, port 8080), a NodePort Service and an
/// HPA on CPU (50 % of the request) between `min_replicas` and 4 that never scales down here.
fn workload(
    name: &str,
    runtime: Runtime,
    image: &str,
    replicas: u64,
    min_replicas: u64,
) -> Vec<(String, Value)> {
    let labels = json!({"app": name, LABEL: "true"});
    vec![
        (
            format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "runtimeClassName": runtime.class,
                            "terminationGracePeriodSeconds": 0,
                            "containers": [{
                                "name": "app", "image": image,
                                "ports": [{"containerPort": 8080}],
                                "resources": {"requests": {"cpu": "100m"}},
                            }],
                        },
                    },
                },
            }),
        ),
        (
            format!("/api/v1/namespaces/{NAMESPACE}/services"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": {"type": "NodePort", "selector": {"app": name},
                         "ports": [{"port": 80, "targetPort": 8080}]},
            }),
        ),
        (
            format!("/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": min_replicas,
                    "maxReplicas": MAX_REPLICAS,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    }}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": STABILIZATION_SECONDS}},
                },
            }),
        ),
    ]
}

/// Creates the workload, waits until `replicas` are ready and `GET /` answers 200 through the
/// gateway; returns the NodePort's address.
async fn deploy(
    api: &Api,
    gateway_ip: &str,
    name: &str,
    runtime: Runtime,
    image: &str,
    min_replicas: u64,
) -> Result<SocketAddr> {
    let mut node_port = None;
    for (path, object) in workload(name, runtime, image, 1, min_replicas) {
        let created = api.create(&path, object).await?;
        if created["kind"] == "Service" {
            node_port = created["spec"]["ports"][0]["nodePort"].as_u64();
        }
    }
    let node_port = node_port.context("the Service got no nodePort")?;
    let addr: SocketAddr = format!("{gateway_ip}:{node_port}")
        .parse()
        .context("--gateway-ip")?;
    wait_ready(api, name, 1).await?;
    let started = Instant::now();
    loop {
        match timed_get(addr, "/").await {
            Ok((200, ..)) => return Ok(addr),
            other if started.elapsed() > Duration::from_secs(30) => {
                bail!("{name}: GET / through the gateway ({addr}) did not answer 200: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the Deployment has at least `replicas` ready.
async fn wait_ready(api: &Api, name: &str, replicas: u64) -> Result<()> {
    let started = Instant::now();
    loop {
        let deployment = api.deployment(name).await?;
        if deployment["status"]["readyReplicas"].as_u64().unwrap_or(0) >= replicas {
            return Ok(());
        }
        if started.elapsed() > LIMIT {
            bail!(
                "{name}: not {replicas} ready replicas within {LIMIT:?}: {}",
                deployment["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no pod of the workload is left in the API.
async fn wait_no_pods(api: &Api, name: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let left = api.pods_of(name).await?;
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > LIMIT {
            bail!("{name}: {left} pods still there {LIMIT:?} after scaling to zero");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The median of `n` GETs of `/` to the running replica, each on a fresh connection.
async fn warm_median(addr: SocketAddr, n: usize) -> Result<Duration> {
    for _ in 0..5 {
        timed_get(addr, "/").await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, started, done) = timed_get(addr, "/").await?;
        if status != 200 {
            bail!("GET / of a running replica: {status}");
        }
        samples.push(done - started);
    }
    Ok(p50_p99(&mut samples).0)
}

/// Scale from zero: `rounds` first requests to a Deployment at zero replicas, next to a
/// request to a running replica. Prints one row.
async fn scale_from_zero(
    args: &Args,
    api: &Api,
    name: &str,
    runtime: Runtime,
    image: &str,
    rounds: usize,
) -> Result<()> {
    // One replica first: the artifact is compiled (or the image unpacked) and cached before
    // anything is timed.
    let addr = deploy(api, &args.gateway_ip, name, runtime, image, 0).await?;
    let warm = warm_median(addr, args.warm_requests).await?;

    let mut events = watch_pods(api, name).await?;
    let mut cold = Vec::with_capacity(rounds);
    let (mut to_created, mut to_ready) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        api.merge_patch(&deployment_path(name), json!({"spec": {"replicas": 0}}))
            .await?;
        wait_no_pods(api, name).await?;
        tokio::time::sleep(SETTLE).await;
        let replicas = api.deployment(name).await?["spec"]["replicas"].as_u64();
        if replicas != Some(0) {
            bail!("{name}: something scaled the Deployment to {replicas:?} before the request");
        }
        while events.try_recv().is_ok() {}
        let (status, started, done) = timed_get(addr, "/").await?;
        let (created, ready) = pod_milestones(&mut events).await;
        if status != 200 {
            bail!(
                "{name}: round {round}: the first request from zero answered {status} after {} ms",
                ms(done - started)
            );
        }
        let replicas = api.deployment(name).await?["spec"]["replicas"].as_u64();
        if replicas != Some(1) {
            bail!("{name}: round {round}: served, but the Deployment has {replicas:?} replicas");
        }
        cold.push(done - started);
        if let (Some(created), Some(ready)) = (created, ready) {
            to_created.push(created.saturating_duration_since(started));
            to_ready.push(ready.saturating_duration_since(started));
        }
    }
    let (p50, p99) = p50_p99(&mut cold);
    println!(
        "| scale from zero, {}: first request through the gateway (Deployment at 0 replicas, HPA minReplicas 0; the gateway scales it to 1 and holds the request until Ready; fresh TCP connection, to the last byte), {rounds} rounds: p50 / p99 | {} / {} ms | warm request to a running replica (same GET, fresh connection; median of {}): {} ms | {:.1}x |",
        runtime.label,
        ms(p50),
        ms(p99),
        args.warm_requests,
        ms(warm),
        p50.as_secs_f64() / warm.as_secs_f64().max(1e-9)
    );
    let seen = to_created.len();
    let (created, _) = p50_p99(&mut to_created);
    let (ready, _) = p50_p99(&mut to_ready);
    println!(
        "| … where the time goes, {} (p50 from the request's start; a watch on the pods marks the steps, so each includes the watch's delivery; {seen} of {rounds} rounds seen) | pod created {} ms, pod Ready {} ms, response complete {} ms | - | - |",
        runtime.label,
        ms(created),
        ms(ready),
        ms(p50)
    );
    remove(api, name).await
}

/// Client threads looping `GET path` on fresh connections until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, path: String, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failed, path) =
                    (stop.clone(), ok.clone(), failed.clone(), path.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(addr, &path, Duration::from_secs(30)) {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the threads (each finishes its request); returns (answered 200, other).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The load step: from 1 ready replica under an HPA, load, until 4 are ready. Prints one row.
async fn load_step(
    args: &Args,
    api: &Api,
    name: &str,
    runtime: Runtime,
    image: &str,
) -> Result<()> {
    let addr = deploy(api, &args.gateway_ip, name, runtime, image, 1).await?;
    // The HPA has seen the idle workload once (its metrics flow), so that the step starts from
    // a steady state; a Wharf without metrics is measured anyway.
    let hpa_path =
        format!("/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let hpa = api.get(&hpa_path).await?;
        if hpa["status"]["currentMetrics"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let limit = Duration::from_secs(args.load_seconds);
    let load = Load::start(
        addr,
        format!("/work/{}", args.load_work_ms),
        args.load_threads,
    );
    let t0 = Instant::now();
    let (mut decided, mut two, mut all) = (None, None, None);
    let (mut most_ready, mut most_at) = (1, Duration::ZERO);
    let mut polled = None;
    while t0.elapsed() < limit {
        let deployment = match api.deployment(name).await {
            Ok(deployment) => deployment,
            Err(error) => {
                polled = Some(error);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let at = t0.elapsed();
        let wanted = deployment["spec"]["replicas"].as_u64().unwrap_or(0);
        let ready = deployment["status"]["readyReplicas"].as_u64().unwrap_or(0);
        if decided.is_none() && wanted > 1 {
            decided = Some((at, wanted));
        }
        if two.is_none() && ready >= 2 {
            two = Some(at);
        }
        if ready > most_ready {
            (most_ready, most_at) = (ready, at);
        }
        if ready >= MAX_REPLICAS {
            all = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, failed) = load.stop();
    if two.is_none()
        && let Some(error) = polled
    {
        return Err(error.context(format!("{name}: reading the Deployment under load")));
    }
    let decided = decided.map_or_else(
        || "the HPA never raised the replicas".to_owned(),
        |(at, wanted)| format!("the HPA first set {wanted} replicas at {}", secs(at)),
    );
    let two = two.map_or_else(|| format!("not within {}", secs(limit)), secs);
    let all = all.map_or_else(
        || {
            format!(
                "not within {} (at most {most_ready}, reached at {})",
                secs(limit),
                secs(most_at)
            )
        },
        secs,
    );
    println!(
        "| load step → new replicas Ready, {}: 1 ready replica, then {} threads looping `GET /work/{}` (~{} ms CPU each) through the gateway; HPA CPU 50 % of a 100m request, max {MAX_REPLICAS}, default scale-up; wharf --hpa-sync-period 1s (Kubernetes' default is 15 s) | ≥ 2 ready after {two}, {MAX_REPLICAS} ready after {all} ({decided}; {ok} requests served, {failed} failed meanwhile) | - | - |",
        runtime.label, args.load_threads, args.load_work_ms, args.load_work_ms
    );
    remove(api, name).await
}

/// Removes a workload: its HPA, then its replicas (waiting until no pod is left), its Service
/// and its Deployment.
async fn remove(api: &Api, name: &str) -> Result<()> {
    api.delete(&format!(
        "/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}"
    ))
    .await?;
    let scaled = api
        .merge_patch(&deployment_path(name), json!({"spec": {"replicas": 0}}))
        .await;
    if scaled.is_ok() {
        wait_no_pods(api, name).await?;
    }
    api.delete(&format!("/api/v1/namespaces/{NAMESPACE}/services/{name}"))
        .await?;
    api.delete(&deployment_path(name)).await?;
    wait_no_pods(api, name).await
}

/// Removes whatever this program created, and waits until Wharf's containerd holds no
/// container any more (if its socket was given).
async fn cleanup(args: &Args, api: &Api) {
    for name in WORKLOADS {
        if let Err(error) = remove(api, name).await {
            eprintln!("wharf-bench-scaling: cleanup of {name}: {error:#}");
        }
    }
    let Some(socket) = &args.containerd_socket else {
        return;
    };
    let started = Instant::now();
    loop {
        let output = tokio::process::Command::new("ctr")
            .arg("-a")
            .arg(socket)
            .args(["-n", &args.containerd_namespace, "containers", "ls", "-q"])
            .output()
            .await;
        let left = match output {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            Ok(output) => {
                eprintln!(
                    "wharf-bench-scaling: ctr containers ls: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                return;
            }
            Err(error) => {
                eprintln!("wharf-bench-scaling: run ctr: {error}");
                return;
            }
        };
        if left.is_empty() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("wharf-bench-scaling: containers still in containerd after 60 s: {left}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api::new(args.wharf.clone());
    let result = bench(&args, &api).await;
    cleanup(&args, &api).await;
    result
}

async fn bench(args: &Args, api: &Api) -> Result<()> {
    let component = std::fs::read(&args.component)
        .with_context(|| format!("read {} (make samples)", args.component.display()))?;
    api.push(WASM_IMAGE, component, "application/wasm").await?;
    let containers = args.container_rounds > 0 || args.containers;
    if containers {
        let archive = std::fs::read(&args.image_archive)
            .with_context(|| format!("read {} (make samples)", args.image_archive.display()))?;
        api.push(&args.image, archive, "application/x-tar").await?;
    }

    // 1. Scale from zero.
    scale_from_zero(
        args,
        api,
        "bench-zero-wasm",
        WASM,
        WASM_IMAGE,
        args.wasm_rounds,
    )
    .await?;
    if args.container_rounds > 0 {
        scale_from_zero(
            args,
            api,
            "bench-zero-ctr",
            CONTAINER,
            &args.image,
            args.container_rounds,
        )
        .await?;
    }

    // 2. A load step until new replicas are Ready.
    load_step(args, api, "bench-load-wasm", WASM, WASM_IMAGE).await?;
    if args.containers {
        load_step(args, api, "bench-load-ctr", CONTAINER, &args.image).await?;
    }
    Ok(())
}
