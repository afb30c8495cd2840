//! Container benchmarks, side by side in one run against ONE containerd (scripts/bench.sh starts
//! a `wharf up --containerd managed`; this program drives it and that containerd's `ctr`):
//!
//! - container pod create→Running (runtimeClassName runc, image already in containerd) next to
//!   `ctr run -d` of the same image on the same containerd and namespace, one after another and
//!   interleaved (a Wharf pod, then a `ctr` container, N times), p50/p99 and the ratio;
//! - where the time of a start goes: containerd's own events (`ctr events`: container created,
//!   task started) split both sides' figures into steps;
//! - delete: the pod deleted with grace 0 until containerd has deleted its container and its
//!   network namespace is gone (it leaves the API at once, as in Kubernetes; the agent tears
//!   down after), next to `ctr tasks rm -f` + `ctr containers rm`;
//! - idle memory per pod: M container pods (PSS of each pod's containerd-shim-runc-v2 and its
//!   processes) next to M Wasm pods of the hello-http component (growth of the wharf process's
//!   PSS).
//!
//! What is timed, so that the comparison is fair:
//! - Wharf: from just before the POST of the Pod to the arrival of the watch event showing
//!   `status.phase: Running`. That includes the durable API write, the agent noticing the pod,
//!   the pod's network namespace and CNI setup (bridge + host-local), container and task
//!   creation, the task start and the durable status write, and the watch delivery.
//! - `ctr run -d IMAGE ID`: from the spawn of `ctr` to its exit, which happens right after the
//!   task is started (so the task is RUNNING; this is checked afterwards with `ctr tasks ls`,
//!   outside the timing). It includes starting the `ctr` process itself (~14 ms here). Its
//!   container gets a fresh, empty network namespace from runc (loopback only, no CNI).
//!
//! Prints Markdown table rows `| measurement | Wharf | peer | ratio |`. Removes what it
//! started (pods, `ctr` containers) also when a measurement fails.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wharf_e2e::bench::{Api, ms, p50_p99};

#[derive(Parser, Debug)]
struct Args {
    /// Wharf API base URL (a `wharf up --containerd managed`).
    #[arg(long)]
    wharf: String,
    /// The PID of the wharf process (for the Wasm pods' memory).
    #[arg(long)]
    wharf_pid: u32,
    /// The socket of the containerd that Wharf uses (managed: DATA_DIR/containerd/containerd.sock).
    #[arg(long)]
    containerd_socket: PathBuf,
    /// The containerd namespace Wharf uses.
    #[arg(long, default_value = "wharf")]
    containerd_namespace: String,
    /// The container sample's OCI archive (imported as `wharf image import` does).
    #[arg(long, default_value = "samples/out/hello-container.tar")]
    image_archive: PathBuf,
    /// The image name pods use.
    #[arg(long, default_value = "hello-container:latest")]
    image: String,
    /// The hello-http component (the Wasm pods of the memory comparison).
    #[arg(long, default_value = "samples/out/hello-http.wasm")]
    component: PathBuf,
    /// Pods (and `ctr` containers) for the create→Running measurement.
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Pods of each kind for the idle-memory measurement.
    #[arg(long, default_value_t = 20)]
    idle_pods: usize,
}

const NAMESPACE: &str = "default";
const PODS: &str = "/api/v1/namespaces/default/pods";
/// The label on every pod this program creates (to find them again for cleanup).
const LABEL: &str = "wharf-bench";

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// The pods this benchmark creates and deletes.
trait PodsApi {
    /// Creates a pod; returns its uid.
    async fn create_pod(&self, pod: Value) -> Result<String>;

    async fn delete_pod(&self, name: &str) -> Result<()>;
}

impl PodsApi for Api {
    /// Creates a pod; returns its uid.
    async fn create_pod(&self, pod: Value) -> Result<String> {
        let created = self.send(reqwest::Method::POST, PODS, Some(pod)).await?;
        created["metadata"]["uid"]
            .as_str()
            .map(str::to_owned)
            .context("the created pod has no uid")
    }

    async fn delete_pod(&self, name: &str) -> Result<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("{PODS}/{name}"),
            Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})),
        )
        .await
        .map(drop)
    }
}

fn pod(name: &str, runtime_class: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL: "true"}},
        "spec": {"runtimeClassName": runtime_class, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]}
    })
}

/// A pod event as it arrived on the watch, with its arrival time.
#[derive(Debug)]
struct PodEvent {
    at: Instant,
    kind: String,
    name: String,
    phase: String,
    object: Value,
}

/// Watches the namespace's pods from now on; every event is timestamped when its line arrives.
async fn watch_pods(api: &Api) -> Result<mpsc::UnboundedReceiver<PodEvent>> {
    let list = api.send(reqwest::Method::GET, PODS, None).await?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .context("the pod list has no resourceVersion")?
        .to_owned();
    let response = api
        .http
        .get(format!(
            "{}{PODS}?watch=true&resourceVersion={revision}&timeoutSeconds=7200",
            api.base
        ))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("watch pods: {}", response.status());
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
                let object = event["object"].clone();
                let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
                let event = PodEvent {
                    at,
                    kind: event["type"].as_str().unwrap_or("").to_owned(),
                    name: text("/metadata/name").to_owned(),
                    phase: text("/status/phase").to_owned(),
                    object: object.clone(),
                };
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    });
    Ok(receiver)
}

/// Takes events until one matches; returns it. Events that do not match are dropped.
async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<PodEvent>,
    what: &str,
    limit: Duration,
    mut matches: impl FnMut(&PodEvent) -> bool,
) -> Result<PodEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = HashMap::new();
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: not within {limit:?}; last seen: {last:?}"))?
            .with_context(|| format!("{what}: the watch ended"))?;
        if event.kind == "ERROR" {
            bail!("{what}: the watch failed: {}", event.object);
        }
        if matches(&event) {
            return Ok(event);
        }
        if !event.name.is_empty() {
            last.insert(
                event.name.clone(),
                format!("{} {}", event.kind, event.object["status"]),
            );
        }
    }
}

async fn wait_running(
    events: &mut mpsc::UnboundedReceiver<PodEvent>,
    name: &str,
    limit: Duration,
) -> Result<Instant> {
    let event = wait_event(events, &format!("pod {name} Running"), limit, |e| {
        e.name == name && e.kind != "DELETED" && e.phase == "Running"
    })
    .await?;
    Ok(event.at)
}

async fn wait_gone(
    events: &mut mpsc::UnboundedReceiver<PodEvent>,
    name: &str,
    limit: Duration,
) -> Result<Instant> {
    let event = wait_event(events, &format!("pod {name} gone"), limit, |e| {
        e.name == name && e.kind == "DELETED"
    })
    .await?;
    Ok(event.at)
}

/// Waits until every pod in `names` has been seen Running.
async fn wait_all_running(
    events: &mut mpsc::UnboundedReceiver<PodEvent>,
    names: &[String],
    limit: Duration,
) -> Result<()> {
    let mut pending: HashSet<&str> = names.iter().map(String::as_str).collect();
    while !pending.is_empty() {
        let event = wait_event(
            events,
            &format!("{} pods Running", pending.len()),
            limit,
            |e| pending.contains(e.name.as_str()),
        )
        .await?;
        if event.kind == "DELETED" {
            bail!("pod {} was deleted before it ran", event.name);
        }
        if event.phase == "Running" {
            pending.remove(event.name.as_str());
        }
    }
    Ok(())
}

/// A containerd event as `ctr events` printed it, with its arrival time.
#[derive(Debug)]
struct ContainerdEvent {
    at: Instant,
    /// E.g. `/containers/create`, `/tasks/start`, `/containers/delete`.
    topic: String,
    /// The container the event is about.
    container: String,
}

/// Streams the namespace's containerd events (`ctr events`), each timestamped when its line
/// arrives. The `ctr` process ends with the returned child.
fn containerd_events(
    ctr: &Ctr,
) -> Result<(
    tokio::process::Child,
    mpsc::UnboundedReceiver<ContainerdEvent>,
)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = ctr
        .command(&["events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("run ctr events")?;
    let stdout = child.stdout.take().context("ctr events has no stdout")?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            // `2026-11-28 02:43:27.101680985 +0000 UTC wharf /tasks/start {"container_id":…}`
            let Some(topic) = line.split_whitespace().nth(5) else {
                continue;
            };
            let payload: Value = line
                .find('{')
                .and_then(|start| serde_json::from_str(&line[start..]).ok())
                .unwrap_or(Value::Null);
            let container = payload["container_id"]
                .as_str()
                .or_else(|| payload["id"].as_str())
                .unwrap_or("")
                .to_owned();
            let event = ContainerdEvent {
                at,
                topic: topic.to_owned(),
                container,
            };
            if sender.send(event).is_err() {
                return;
            }
        }
    });
    Ok((child, receiver))
}

/// Takes containerd events until `topic` for a container that `matches`; returns it.
async fn wait_containerd(
    events: &mut mpsc::UnboundedReceiver<ContainerdEvent>,
    topic: &str,
    limit: Duration,
    matches: impl Fn(&str) -> bool,
) -> Result<ContainerdEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no containerd event {topic} within {limit:?}"))?
            .context("ctr events ended")?;
        if event.topic == topic && matches(&event.container) {
            return Ok(event);
        }
    }
}

/// Milestones of one start, measured from its beginning.
#[derive(Default)]
struct Steps {
    container_created: Vec<Duration>,
    task_started: Vec<Duration>,
    done: Vec<Duration>,
}

impl Steps {
    fn push(&mut self, begun: Instant, created: Instant, started: Instant, done: Instant) {
        self.container_created.push(created - begun);
        self.task_started.push(started - created);
        self.done.push(done - started);
    }

    /// The p50 of each step, e.g. `→ container created 20.1 ms, → task started …`.
    fn medians(&mut self, last_step: &str) -> String {
        let (created, _) = p50_p99(&mut self.container_created);
        let (started, _) = p50_p99(&mut self.task_started);
        let (done, _) = p50_p99(&mut self.done);
        format!(
            "→ container created {} ms, → task started {} ms, → {last_step} {} ms",
            ms(created),
            ms(started),
            ms(done)
        )
    }
}

/// `ctr` against Wharf's containerd and namespace.
struct Ctr {
    socket: PathBuf,
    namespace: String,
}

impl Ctr {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .args(args)
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command(args)
            .output()
            .await
            .context("run ctr (Debian package containerd)")?;
        if !output.status.success() {
            bail!(
                "ctr {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `ctr tasks ls`: task id → (pid, status).
    async fn tasks(&self) -> Result<HashMap<String, (u32, String)>> {
        let text = self.run(&["tasks", "ls"]).await?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let id = fields.next()?.to_owned();
                let pid = fields.next()?.parse().ok()?;
                let status = fields.next()?.to_owned();
                Some((id, (pid, status)))
            })
            .collect())
    }

    /// Kills and removes a container and its task (and its snapshot).
    async fn remove(&self, id: &str) -> Result<()> {
        self.run(&["tasks", "rm", "-f", id]).await?;
        self.run(&["containers", "rm", id]).await.map(drop)
    }
}

/// Proportional set size of a process in KiB (0 if it is gone).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Every process: pid → (parent pid, command line).
fn processes() -> HashMap<u32, (u32, String)> {
    let mut all = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces; the parent pid follows it.
        let Some(parent) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        all.insert(pid, (parent, cmdline));
    }
    all
}

/// The runc shims of this containerd and namespace, each with its descendant processes.
fn shims(ctr: &Ctr) -> Vec<(u32, Vec<u32>)> {
    let all = processes();
    let socket = ctr.socket.display().to_string();
    let namespace = format!("-namespace {} ", ctr.namespace);
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, (parent, _)) in &all {
        children.entry(*parent).or_default().push(pid);
    }
    let mut found = Vec::new();
    for (&pid, (_, cmdline)) in &all {
        if !(cmdline.contains("containerd-shim-runc-v2")
            && cmdline.contains(&socket)
            && cmdline.contains(&namespace))
        {
            continue;
        }
        let mut descendants = Vec::new();
        let mut queue = children.get(&pid).cloned().unwrap_or_default();
        while let Some(child) = queue.pop() {
            descendants.push(child);
            queue.extend(children.get(&child).cloned().unwrap_or_default());
        }
        found.push((pid, descendants));
    }
    found
}

/// PSS of the wharf process, the mean of a few readings a little apart (it moves a bit).
async fn settled_pss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut total = 0;
    for _ in 0..5 {
        total += pss_kib(pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    total / 5
}

/// Waits until the agent has torn a container pod down: no container of it left in containerd
/// and its network namespace gone. (The pod leaves the API before that when deleted with grace
/// 0, as in Kubernetes.)
async fn wait_torn_down(ctr: &Ctr, uids: &[String], limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let containers = ctr.run(&["containers", "ls", "-q"]).await?;
        let left: Vec<&String> = uids
            .iter()
            .filter(|uid| {
                containers.lines().any(|id| id.starts_with(uid.as_str()))
                    || PathBuf::from(format!("/run/netns/wharf-{uid}")).exists()
            })
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("pods {left:?} not torn down within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes whatever this program started: its pods (and so Wharf's containers and pod
/// networks, waited for, so that a Wharf stopped right after leaves nothing behind), its `ctr`
/// containers.
async fn cleanup(api: &Api, ctr: &Ctr) {
    let path = format!("{PODS}?labelSelector={LABEL}%3Dtrue");
    let mut uids = Vec::new();
    if let Ok(list) = api.send(reqwest::Method::GET, &path, None).await {
        for pod in list["items"].as_array().into_iter().flatten() {
            if let Some(name) = pod["metadata"]["name"].as_str() {
                let _ = api.delete_pod(name).await;
            }
            if let Some(uid) = pod["metadata"]["uid"].as_str() {
                uids.push(uid.to_owned());
            }
        }
    }
    if let Err(error) = wait_torn_down(ctr, &uids, Duration::from_secs(60)).await {
        eprintln!("wharf-bench-containers: cleanup: {error:#}");
    }
    if let Ok(text) = ctr.run(&["containers", "ls", "-q"]).await {
        for id in text.lines().filter(|id| id.starts_with("bench-ctr-")) {
            let _ = ctr.remove(id).await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api::new(args.wharf.clone());
    let ctr = Ctr {
        socket: args.containerd_socket.clone(),
        namespace: args.containerd_namespace.clone(),
    };
    let result = bench(&args, &api, &ctr).await;
    cleanup(&api, &ctr).await;
    result
}

async fn bench(args: &Args, api: &Api, ctr: &Ctr) -> Result<()> {
    let archive = std::fs::read(&args.image_archive)
        .with_context(|| format!("read {} (make samples)", args.image_archive.display()))?;
    api.push(&args.image, archive, "application/x-tar").await?;
    let component = std::fs::read(&args.component)
        .with_context(|| format!("read {} (make samples)", args.component.display()))?;
    api.push("bench-hello-http:latest", component, "application/wasm")
        .await?;
    let mut events = watch_pods(api).await?;

    // Warm up: the first pod imports the image into containerd and unpacks it; neither side is
    // timed on that.
    let uid = api
        .create_pod(pod("bench-warmup", "runc", &args.image))
        .await?;
    wait_running(&mut events, "bench-warmup", Duration::from_secs(180)).await?;
    api.delete_pod("bench-warmup").await?;
    wait_gone(&mut events, "bench-warmup", Duration::from_secs(60)).await?;
    wait_torn_down(ctr, &[uid], Duration::from_secs(60)).await?;
    let images = ctr.run(&["images", "ls", "-q"]).await?;
    let short = args.image.rsplit('/').next().unwrap_or(&args.image);
    let image = images
        .lines()
        .find(|name| *name == args.image || name.ends_with(&format!("/{short}")))
        .with_context(|| {
            format!(
                "{} is not in containerd after a pod ran: {images}",
                args.image
            )
        })?
        .to_owned();
    ctr.run(&["run", "-d", &image, "bench-ctr-warmup"]).await?;
    ctr.remove("bench-ctr-warmup").await?;

    // 1 and 2. Create→Running and delete, a Wharf pod then a ctr container, interleaved so that
    // both see the same background load. containerd's own events mark the steps in between.
    let (mut events_child, mut containerd) = containerd_events(ctr)?;
    let (mut wharf_start, mut wharf_delete) = (Vec::new(), Vec::new());
    let (mut ctr_start, mut ctr_delete) = (Vec::new(), Vec::new());
    let (mut wharf_steps, mut ctr_steps) = (Steps::default(), Steps::default());
    let limit = Duration::from_secs(60);
    for i in 0..args.pods {
        let name = format!("bench-runc-{i}");
        let begun = Instant::now();
        let uid = api.create_pod(pod(&name, "runc", &args.image)).await?;
        let running = wait_running(&mut events, &name, limit).await?;
        wharf_start.push(running - begun);
        let ours = |id: &str| id.starts_with(&uid);
        let created = wait_containerd(&mut containerd, "/containers/create", limit, ours).await?;
        let started = wait_containerd(&mut containerd, "/tasks/start", limit, ours).await?;
        wharf_steps.push(begun, created.at, started.at, running);
        // Gone from the API at once (grace 0, as in Kubernetes); the agent then kills the
        // task, deletes the container and removes the pod's network namespace. The next pod
        // starts only after all of that.
        let begun = Instant::now();
        api.delete_pod(&name).await?;
        wait_gone(&mut events, &name, limit).await?;
        let deleted = wait_containerd(&mut containerd, "/containers/delete", limit, ours).await?;
        let netns = PathBuf::from(format!("/run/netns/wharf-{uid}"));
        while netns.exists() {
            if begun.elapsed() > limit {
                bail!(
                    "{} is still there {limit:?} after the delete",
                    netns.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        wharf_delete.push(Instant::now().max(deleted.at) - begun);

        let id = format!("bench-ctr-{i}");
        let begun = Instant::now();
        ctr.run(&["run", "-d", &image, &id]).await?;
        let returned = Instant::now();
        ctr_start.push(returned - begun);
        let ours = |c: &str| c == id;
        let created = wait_containerd(&mut containerd, "/containers/create", limit, ours).await?;
        let started = wait_containerd(&mut containerd, "/tasks/start", limit, ours).await?;
        ctr_steps.push(begun, created.at, started.at, returned);
        match ctr.tasks().await?.get(&id) {
            Some((_, status)) if status == "RUNNING" => {}
            other => bail!("ctr run -d returned but task {id} is {other:?}"),
        }
        let begun = Instant::now();
        ctr.remove(&id).await?;
        ctr_delete.push(begun.elapsed());
        wait_containerd(&mut containerd, "/containers/delete", limit, ours).await?;
    }
    let _ = events_child.kill().await;
    let (w50, w99) = p50_p99(&mut wharf_start);
    let (c50, c99) = p50_p99(&mut ctr_start);
    println!(
        "| container pod create→Running (runc, image in containerd), {} pods one after another; incl. API write, netns + CNI, status write, watch | p50 {} ms, p99 {} ms | `ctr run -d` to a started task (same image, containerd, namespace; no CNI; incl. the ctr process): p50 {} ms, p99 {} ms | p50 {}, p99 {} |",
        args.pods,
        ms(w50),
        ms(w99),
        ms(c50),
        ms(c99),
        ratio(w50, c50),
        ratio(w99, c99)
    );
    println!(
        "| … where the time goes (p50 of each step; containerd's events mark them) | POST {} | ctr spawned {} | - |",
        wharf_steps.medians("Running seen in a watch"),
        ctr_steps.medians("ctr returned")
    );
    let (w50, w99) = p50_p99(&mut wharf_delete);
    let (c50, c99) = p50_p99(&mut ctr_delete);
    println!(
        "| container pod delete (grace 0) until containerd deleted the container and the pod's netns is gone, {} pods | p50 {} ms, p99 {} ms | `ctr tasks rm -f` + `ctr containers rm` (two ctr processes): p50 {} ms, p99 {} ms | p50 {}, p99 {} |",
        args.pods,
        ms(w50),
        ms(w99),
        ms(c50),
        ms(c99),
        ratio(w50, c50),
        ratio(w99, c99)
    );

    // 3. Idle memory per pod: Wasm pods first (the wharf process grows), then container pods
    // (their shims and processes; the wharf process's growth too).
    let n = args.idle_pods;
    let wasm_names: Vec<String> = (0..n).map(|i| format!("bench-idle-wasm-{i}")).collect();
    let runc_names: Vec<String> = (0..n).map(|i| format!("bench-idle-runc-{i}")).collect();
    // A first Wasm pod compiles and loads the component (the container side's image was
    // imported and unpacked by its warm-up pod); that one-time cost is not per pod, but shown.
    let before_first_wasm = settled_pss(args.wharf_pid).await;
    api.create_pod(pod(
        "bench-wasm-warmup",
        "wasmtime",
        "bench-hello-http:latest",
    ))
    .await?;
    wait_running(&mut events, "bench-wasm-warmup", Duration::from_secs(120)).await?;
    api.delete_pod("bench-wasm-warmup").await?;
    wait_gone(&mut events, "bench-wasm-warmup", Duration::from_secs(60)).await?;
    let before_wasm = settled_pss(args.wharf_pid).await;
    for name in &wasm_names {
        api.create_pod(pod(name, "wasmtime", "bench-hello-http:latest"))
            .await?;
    }
    wait_all_running(&mut events, &wasm_names, Duration::from_secs(120)).await?;
    let after_wasm = settled_pss(args.wharf_pid).await;

    let shims_before: BTreeSet<u32> = shims(ctr).into_iter().map(|(pid, _)| pid).collect();
    for name in &runc_names {
        api.create_pod(pod(name, "runc", &args.image)).await?;
    }
    wait_all_running(&mut events, &runc_names, Duration::from_secs(300)).await?;
    let after_runc = settled_pss(args.wharf_pid).await;
    let new_shims: Vec<(u32, Vec<u32>)> = shims(ctr)
        .into_iter()
        .filter(|(pid, _)| !shims_before.contains(pid))
        .collect();
    let task_pids: HashSet<u32> = ctr
        .tasks()
        .await?
        .into_values()
        .filter(|(_, status)| status == "RUNNING")
        .map(|(pid, _)| pid)
        .collect();
    if new_shims.len() != n {
        bail!(
            "expected {n} new runc shims for {n} container pods, found {}",
            new_shims.len()
        );
    }
    let (mut shim_kib, mut process_kib) = (0u64, 0u64);
    for (shim, descendants) in &new_shims {
        shim_kib += pss_kib(*shim);
        if !descendants.iter().any(|pid| task_pids.contains(pid)) {
            bail!("the shim {shim} has no running task among its children {descendants:?}");
        }
        process_kib += descendants.iter().map(|&pid| pss_kib(pid)).sum::<u64>();
    }
    let first_wasm = before_wasm.saturating_sub(before_first_wasm);
    let per_wasm = after_wasm.saturating_sub(before_wasm) as f64 / n as f64;
    let per_runc_wharf = after_runc.saturating_sub(after_wasm) as f64 / n as f64;
    let per_shim = shim_kib as f64 / n as f64;
    let per_process = process_kib as f64 / n as f64;
    let per_container = per_shim + per_process;
    println!(
        "| idle memory per pod, {n} Wasm pods (hello-http) and {n} container pods (hello-container), PSS | Wasm pod: {per_wasm:.0} KiB (growth of the wharf process; the first pod of the component, which compiles and loads it: {} MiB) | container pod: {per_container:.0} KiB (runc shim {per_shim:.0} + its process {per_process:.0}; plus {per_runc_wharf:.0} KiB in the wharf process) | container/Wasm {:.1}x |",
        first_wasm / 1024,
        per_container / per_wasm.max(1.0)
    );
    Ok(())
}
