//! The containerd implementation of [`Runtime`]: OCI images and runc containers over
//! containerd's gRPC API, in containerd namespace `wharf`.
//!
//! - Images live in containerd's content store: imported from OCI image archives
//!   ([`ContainerdRuntime::import_archive`]) or pulled from OCI registries (module `pull`), and
//!   unpacked into the overlayfs snapshotter (module `image`). `prepare` finds an image by
//!   name, pulls one that names a registry and is not there yet, and unpacks it.
//! - `create` builds the OCI runtime spec (module `spec`), a writable snapshot on top of the
//!   image for the root file system, and the container record; `start` creates and starts the
//!   task (runc through containerd's `io.containerd.runc.v2` shim) with stdout and stderr on
//!   FIFOs copied into the CRI log file (module `io`). A container with `stdin` also gets a
//!   stdin FIFO, whose write end the runtime keeps while it runs; one with `tty` runs on a
//!   terminal, whose output the shim writes to the stdout FIFO.
//! - `exec` runs a command as an exec process of the container's task, with the container's
//!   process settings and its output captured in memory (module `exec`); `exec_stream` runs
//!   one interactively, its stdin, stdout and stderr (or terminal) on FIFOs streamed to and
//!   from the caller.
//! - `attach` connects a caller to a running container's own stdio (module `attach`): the
//!   output as it reaches the log, the shared stdin FIFO, and `ResizePty` for its terminal.
//! - A task per running container is watched: its exit becomes an [`Exit`] (137 for SIGKILL,
//!   143 for SIGTERM, `OOMKilled` when the cgroup's OOM killer struck), the task is deleted at
//!   once so its shim goes away, and the exit is recorded on the container record, so that an
//!   agent that restarts finds running containers again ([`ContainerdRuntime::connect`]) and
//!   still knows how the others ended.
//!
//! Every request carries the namespace, and work that creates content or snapshots holds a
//! lease until an image or container references what it made (the crate-private `client`).
//! Containers share the host's network until pod networking (CNI) arrives; they are reached
//! over an IP, so [`Runtime::http_handler`] is always `None`.
//!
//! [`ManagedContainerd`] starts a private containerd (`wharf up --containerd managed`, tests).

mod attach;
mod client;
mod exec;
mod image;
mod io;
pub mod managed;
mod pull;
mod spec;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_client::services::v1::container::Runtime as ContainerRuntimeName;
use containerd_client::services::v1::snapshots::{MountsRequest, PrepareSnapshotRequest};
use containerd_client::services::v1::{
    Container as ContainerRecord, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest,
    StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::tonic::{Code, Status};
use containerd_client::types::v1::Status as TaskStatus;
use prost_types::Any;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_runtime::logs::LogFile;
use wharf_runtime::{
    ContainerConfig, ContainerState, ContainerStats, ExecOutput, ExecRequest, ExecSession, Exit,
    HttpHandler, Lifecycle, Runtime, RuntimeError, Signal, Stdio,
};

use crate::attach::{SharedStdin, TaskStreams};
use crate::client::{Client, is_already_exists, is_not_found, status_error};
use crate::exec::TaskProcess;
use crate::image::{ResolvedImage, SNAPSHOTTER};
use crate::io::Fifos;
pub use crate::managed::ManagedContainerd;

/// The containerd shim that runs containers with runc.
const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// The type of the runc shim's options (`containerd.runc.v1.Options`).
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
/// The type containerd stores an OCI runtime spec as.
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// Container labels: which containers are Wharf's, where their log goes, how they ended, and
/// their stdin and terminal (see [`format_stdio`]).
const LABEL_MANAGED: &str = "io.wharf.managed";
const LABEL_LOG_PATH: &str = "io.wharf.log-path";
const LABEL_EXIT: &str = "io.wharf.exit";
const LABEL_STDIO: &str = "io.wharf.stdio";
/// How long a readiness check waits for containerd's answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the runtime finds containerd and keeps its own files.
#[derive(Clone, Debug)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace of every image, container and task (`wharf`).
    pub namespace: String,
    /// A directory of the runtime's own: the containers' FIFOs and runc's state. It must
    /// survive an agent restart (for re-attaching), and differ between runtimes on one host.
    pub state_dir: PathBuf,
    /// The cgroup under which each container gets its own (`/wharf` gives `/wharf/ID`).
    pub cgroup_parent: String,
    /// Registries (`host:port`, as references name them) pulled from over plain HTTP, besides
    /// those on this machine (`localhost`, `127.*`), which always are. Empty by default.
    pub insecure_registries: Vec<String>,
}

impl ContainerdConfig {
    /// The defaults for a socket and a state directory: namespace `wharf`, cgroups under
    /// `/wharf`, no insecure registries.
    pub fn new(socket: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> ContainerdConfig {
        ContainerdConfig {
            socket: socket.into(),
            namespace: "wharf".into(),
            state_dir: state_dir.into(),
            cgroup_parent: "/wharf".into(),
            insecure_registries: Vec::new(),
        }
    }
}

/// The runc shim's options; only the fields Wharf sets (the numbers are the proto's tags).
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// runc's state directory. A private one keeps two containerds on one host (a managed
    /// one next to the system's) from seeing each other's containers.
    #[prost(string, tag = "7")]
    root: String,
}

/// One container this runtime knows.
struct Container {
    life: watch::Sender<Lifecycle>,
    log_path: PathBuf,
    cgroups_path: String,
    /// Its own stdin and terminal, as created.
    stdio: Stdio,
    /// What [`Runtime::attach`] connects to, from its task's start until its exit.
    streams: Option<TaskStreams>,
}

/// The containers of a runtime, shared with the tasks that watch them.
type Containers = Arc<Mutex<HashMap<String, Container>>>;

fn lock_containers(
    containers: &Containers,
) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
    containers.lock().unwrap_or_else(|e| e.into_inner())
}

/// The containerd runtime of a node.
pub struct ContainerdRuntime {
    client: Client,
    config: ContainerdConfig,
    version: String,
    images: Mutex<HashMap<String, ResolvedImage>>,
    containers: Containers,
}

impl std::fmt::Debug for ContainerdRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdRuntime")
            .field("config", &self.config)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn exit(code: i32, reason: &str, message: Option<String>, finished_at: SystemTime) -> Exit {
    Exit {
        code,
        reason: reason.to_owned(),
        message,
        finished_at,
    }
}

/// Kubernetes' reason for an exit code.
fn exit_reason(code: i32, oom_killed: bool) -> &'static str {
    match (code, oom_killed) {
        (_, true) => "OOMKilled",
        (0, false) => "Completed",
        _ => "Error",
    }
}

impl ContainerdRuntime {
    /// Connects to containerd, checks that it answers, and re-attaches to the containers of
    /// the namespace that an earlier runtime (before an agent restart) created.
    pub async fn connect(config: ContainerdConfig) -> Result<ContainerdRuntime, RuntimeError> {
        let client = Client::connect(&config.socket, &config.namespace).await?;
        let version = client
            .version()
            .await
            .map_err(|e| status_error("report its version", e))?;
        std::fs::create_dir_all(config.state_dir.join("fifo")).map_err(|e| {
            other(format!(
                "cannot create {}: {e}",
                config.state_dir.join("fifo").display()
            ))
        })?;
        let runtime = ContainerdRuntime {
            client,
            config,
            version,
            images: Mutex::new(HashMap::new()),
            containers: Arc::new(Mutex::new(HashMap::new())),
        };
        runtime.reattach().await?;
        Ok(runtime)
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub fn containerd_version(&self) -> &str {
        &self.version
    }

    /// Imports an OCI image archive (an OCI image layout in a tar, as `docker buildx --output
    /// type=oci` or `scripts/oci-pack.py` write it) and unpacks it. Returns the names of the
    /// images it holds (the index's `io.containerd.image.name` annotations).
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>, RuntimeError> {
        image::import_archive(&self.client, path).await
    }

    fn fifo_root(&self) -> PathBuf {
        self.config.state_dir.join("fifo")
    }

    fn runc_options(&self) -> Any {
        let options = RuncOptions {
            root: self.config.state_dir.join("runc").display().to_string(),
        };
        Any {
            type_url: RUNC_OPTIONS_TYPE.into(),
            value: prost::Message::encode_to_vec(&options),
        }
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{id}", self.config.cgroup_parent.trim_end_matches('/'))
    }

    /// The prepared image, preparing it if needed.
    async fn prepared_image(&self, reference: &str) -> Result<ResolvedImage, RuntimeError> {
        let cached = self.lock_images().get(reference).cloned();
        match cached {
            Some(image) => Ok(image),
            None => {
                self.prepare(reference).await?;
                self.lock_images().get(reference).cloned().ok_or_else(|| {
                    RuntimeError::ImageNotFound {
                        image: reference.to_owned(),
                        detail: "removed while being prepared".into(),
                    }
                })
            }
        }
    }

    fn lock_images(&self) -> std::sync::MutexGuard<'_, HashMap<String, ResolvedImage>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        lock_containers(&self.containers)
    }

    fn with_container<R>(
        &self,
        id: &str,
        f: impl FnOnce(&Container) -> Result<R, RuntimeError>,
    ) -> Result<R, RuntimeError> {
        let containers = self.lock_containers();
        let container = containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        f(container)
    }

    /// `NotFound` or `InvalidState` unless container `id` runs: what an exec needs.
    fn check_running_for_exec(&self, id: &str) -> Result<(), RuntimeError> {
        self.with_container(id, |container| {
            container.life.borrow().check_running("exec")
        })
    }

    /// Creates and starts the task of a container whose lifecycle is already Running; returns
    /// the task copying its output into the log and what attached clients connect to.
    async fn start_task(
        &self,
        id: &str,
        log_path: &Path,
        stdio: Stdio,
    ) -> Result<(JoinHandle<()>, TaskStreams), RuntimeError> {
        let log = LogFile::open(log_path)
            .map_err(|e| RuntimeError::StartFailed(format!("cannot open the log: {e}")))?;
        let fifos = Fifos::at(&self.fifo_root(), id);
        let stdin = fifos
            .create()
            .and_then(|()| stdio.stdin.then(|| fifos.create_stdin()).transpose())
            .map_err(|e| {
                fifos.remove();
                RuntimeError::StartFailed(format!("cannot make the FIFOs: {e}"))
            })?;
        let copier = fifos.copy_to_log(&log, !stdio.tty).map_err(|e| {
            fifos.remove();
            RuntimeError::StartFailed(format!("cannot open the output FIFOs: {e}"))
        })?;
        let started = self.create_and_start_task(id, &fifos, stdio).await;
        if let Err(e) = started {
            copier.abort();
            fifos.remove();
            return Err(e);
        }
        let process = TaskProcess::init(self.client.clone(), id);
        let stdin = stdin.map(|pipe| SharedStdin::new(pipe, stdio.stdin_once, fifos, process));
        Ok((copier, TaskStreams { log, stdin }))
    }

    /// Creates the task — on a terminal with `stdio.tty` (one output, on the stdout FIFO),
    /// reading the stdin FIFO with `stdio.stdin` — and starts it.
    async fn create_and_start_task(
        &self,
        id: &str,
        fifos: &Fifos,
        stdio: Stdio,
    ) -> Result<(), RuntimeError> {
        let mounts = self
            .client
            .snapshots()
            .mounts(MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_owned(),
            })
            .await
            .map_err(|e| status_error("find the container's root file system", e))?
            .into_inner()
            .mounts;
        let request = CreateTaskRequest {
            container_id: id.to_owned(),
            rootfs: mounts,
            stdin: match stdio.stdin {
                true => fifos.stdin().display().to_string(),
                false => String::new(),
            },
            stdout: fifos.stdout.display().to_string(),
            stderr: match stdio.tty {
                true => String::new(),
                false => fifos.stderr.display().to_string(),
            },
            terminal: stdio.tty,
            options: Some(self.runc_options()),
            ..Default::default()
        };
        self.client
            .tasks()
            .create(request)
            .await
            .map_err(|e| start_failed(&e))?;
        let start = StartRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        };
        if let Err(e) = self.client.tasks().start(start).await {
            delete_task(&self.client, id).await;
            return Err(start_failed(&e));
        }
        Ok(())
    }

    /// Finds the containers of the namespace again after a restart: running ones are watched
    /// (and their output read) as if started here, ended ones report how they ended.
    async fn reattach(&self) -> Result<(), RuntimeError> {
        let listed = self
            .client
            .containers()
            .list(ListContainersRequest::default())
            .await
            .map_err(|e| status_error("list containers", e))?
            .into_inner()
            .containers;
        for record in listed {
            if record.labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
                continue;
            }
            let id = record.id.clone();
            let log_path = record
                .labels
                .get(LABEL_LOG_PATH)
                .map(PathBuf::from)
                .unwrap_or_default();
            let stdio = record
                .labels
                .get(LABEL_STDIO)
                .map(|label| parse_stdio(label))
                .unwrap_or_default();
            let mut life = Lifecycle::new(&id);
            let task = self
                .client
                .tasks()
                .get(GetRequest {
                    container_id: id.clone(),
                    exec_id: String::new(),
                })
                .await;
            let running = match task {
                Ok(response) => response
                    .into_inner()
                    .process
                    .is_some_and(|p| p.status != TaskStatus::Unknown as i32),
                Err(e) if is_not_found(&e) => false,
                Err(e) => return Err(status_error("look up a task", e)),
            };
            if running {
                let _ = life.start();
            } else if let Some(ended) = record.labels.get(LABEL_EXIT).and_then(|l| parse_exit(l)) {
                let _ = life.start();
                life.exit(ended);
            }
            let cgroups_path = self.cgroups_path(&id);
            let (sender, _) = watch::channel(life);
            let (copier, streams) = match running {
                true => self.reopen_streams(&id, &log_path, stdio),
                false => (None, None),
            };
            let state = sender.borrow().state().name();
            tracing::info!(container = %id, state, "re-attached to a container");
            self.lock_containers().insert(
                id.clone(),
                Container {
                    life: sender.clone(),
                    log_path,
                    cgroups_path: cgroups_path.clone(),
                    stdio,
                    streams,
                },
            );
            if running {
                spawn_exit_watcher(
                    self.client.clone(),
                    id.clone(),
                    self.containers.clone(),
                    sender,
                    copier,
                    Fifos::at(&self.fifo_root(), &id),
                    cgroups_path,
                );
            }
        }
        Ok(())
    }

    /// Opens a running container's FIFOs again after a restart. The shim still has the
    /// output FIFOs open for writing, and reading them again picks up the output where the
    /// previous agent left it; the stdin FIFO, unless closed for good, is opened for writing
    /// again. Returns the task copying the output into the log and what attached clients
    /// connect to, or `None`s (logged) when the FIFOs or the log cannot be opened.
    fn reopen_streams(
        &self,
        id: &str,
        log_path: &Path,
        stdio: Stdio,
    ) -> (Option<JoinHandle<()>>, Option<TaskStreams>) {
        let fifos = Fifos::at(&self.fifo_root(), id);
        let log = match LogFile::open(log_path) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot open the log again");
                return (None, None);
            }
        };
        let copier = match fifos.copy_to_log(&log, !stdio.tty) {
            Ok(copier) => copier,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot read the output again");
                return (None, None);
            }
        };
        let stdin = match stdio.stdin {
            true => fifos.open_stdin().unwrap_or_else(|e| {
                tracing::warn!(container = %id, error = %e, "cannot open the stdin again");
                None
            }),
            false => None,
        };
        let process = TaskProcess::init(self.client.clone(), id);
        let stdin = stdin.map(|pipe| SharedStdin::new(pipe, stdio.stdin_once, fifos, process));
        (Some(copier), Some(TaskStreams { log, stdin }))
    }
}

/// A failure of task creation or start, e.g. runc not finding the command.
fn start_failed(status: &Status) -> RuntimeError {
    match status.code() {
        Code::Unavailable => RuntimeError::Unavailable(format!(
            "containerd: cannot start the task: {}",
            status.message()
        )),
        _ => RuntimeError::StartFailed(status.message().to_owned()),
    }
}

async fn delete_task(client: &Client, id: &str) {
    let request = DeleteTaskRequest {
        container_id: id.to_owned(),
    };
    if let Err(e) = client.tasks().delete(request).await
        && !is_not_found(&e)
    {
        tracing::warn!(container = %id, error = %e, "cannot delete a task");
    }
}

/// `CODE:REASON:NANOS_SINCE_EPOCH`, the exit as recorded on a container.
fn format_exit(exit: &Exit) -> String {
    let nanos = exit
        .finished_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}:{}:{nanos}", exit.code, exit.reason)
}

fn parse_exit(label: &str) -> Option<Exit> {
    let mut parts = label.splitn(3, ':');
    let code = parts.next()?.parse().ok()?;
    let reason = parts.next()?;
    let nanos: u64 = parts.next()?.parse().ok()?;
    Some(exit(
        code,
        reason,
        None,
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
    ))
}

/// Whether the kernel's OOM killer killed a process of the cgroup (v1 or v2 layout).
fn oom_killed(cgroups_path: &str) -> bool {
    let files = [
        format!("/sys/fs/cgroup/memory{cgroups_path}/memory.oom_control"),
        format!("/sys/fs/cgroup{cgroups_path}/memory.events"),
    ];
    files.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Watches a running task until it exits; then finishes its log, records the exit, deletes
/// the task (which ends its shim), publishes the exit, and lets go of what attached clients
/// connected to (the container record's [`TaskStreams`]).
fn spawn_exit_watcher(
    client: Client,
    id: String,
    containers: Containers,
    life: watch::Sender<Lifecycle>,
    copier: Option<JoinHandle<()>>,
    fifos: Fifos,
    cgroups_path: String,
) {
    tokio::spawn(async move {
        let ended = wait_for_task(&client, &id).await;
        if let Some(copier) = copier {
            io::finish_copy(copier).await;
        }
        let ended = match ended {
            Ok((code, finished_at)) => {
                let oom = code != 0 && oom_killed(&cgroups_path);
                exit(code, exit_reason(code, oom), None, finished_at)
            }
            Err(message) => exit(255, "Error", Some(message), SystemTime::now()),
        };
        delete_task(&client, &id).await;
        fifos.remove();
        record_exit(&client, &id, &ended).await;
        let (code, reason) = (ended.code, ended.reason.as_str());
        tracing::debug!(container = %id, code, reason, "container exited");
        life.send_modify(|life| life.exit(ended));
        // After the exit is published: a session's write to the stdin may wait for it.
        let streams = lock_containers(&containers)
            .get_mut(&id)
            .and_then(|container| container.streams.take());
        if let Some(stdin) = streams.and_then(|streams| streams.stdin) {
            stdin.release().await;
        }
    });
}

/// Waits for the task's exit, riding out containerd restarts.
async fn wait_for_task(client: &Client, id: &str) -> Result<(i32, SystemTime), String> {
    loop {
        let request = WaitRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        };
        match client.tasks().wait(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let finished_at = response
                    .exited_at
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .unwrap_or_else(SystemTime::now);
                return Ok((response.exit_status as i32, finished_at));
            }
            Err(e) if is_not_found(&e) => {
                return Err(format!("the task disappeared: {}", e.message()));
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "waiting for a task failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `stdin,stdin-once,tty` (the parts that are set, in this order), a container's [`Stdio`] as
/// recorded on it, for an agent that restarts.
fn format_stdio(stdio: Stdio) -> String {
    let parts = [
        (stdio.stdin, "stdin"),
        (stdio.stdin_once, "stdin-once"),
        (stdio.tty, "tty"),
    ];
    let set: Vec<&str> = parts
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
    set.join(",")
}

fn parse_stdio(label: &str) -> Stdio {
    let set: Vec<&str> = label.split(',').collect();
    Stdio {
        stdin: set.contains(&"stdin"),
        stdin_once: set.contains(&"stdin-once"),
        tty: set.contains(&"tty"),
    }
}

/// Records how a container ended on its record, for an agent that restarts.
async fn record_exit(client: &Client, id: &str, ended: &Exit) {
    let record = ContainerRecord {
        id: id.to_owned(),
        labels: [(LABEL_EXIT.to_owned(), format_exit(ended))].into(),
        ..Default::default()
    };
    let request = UpdateContainerRequest {
        container: Some(record),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![format!("labels.{LABEL_EXIT}")],
        }),
    };
    if let Err(e) = client.containers().update(request).await {
        tracing::debug!(container = %id, error = %e, "cannot record the exit");
    }
}

/// The host files a container on the host network shares, where the host has them.
fn host_network_files() -> Vec<(String, String)> {
    ["/etc/hosts", "/etc/resolv.conf"]
        .into_iter()
        .filter(|path| Path::new(path).exists())
        .map(|path| (path.to_owned(), path.to_owned()))
        .collect()
}

#[async_trait]
impl Runtime for ContainerdRuntime {
    fn name(&self) -> &'static str {
        "runc"
    }

    async fn prepare(&self, reference: &str) -> Result<(), RuntimeError> {
        let resolved = match image::resolve(&self.client, reference).await {
            // Not in containerd yet, but its registry may have it.
            Err(RuntimeError::ImageNotFound { .. }) if pull::names_a_registry(reference) => {
                let insecure = &self.config.insecure_registries;
                let name = pull::pull(&self.client, reference, insecure).await?;
                image::resolve(&self.client, &name).await?
            }
            resolved => resolved?,
        };
        let unchanged = self
            .lock_images()
            .get(reference)
            .is_some_and(|known| known.target_digest == resolved.target_digest);
        if unchanged {
            return Ok(());
        }
        let to_unpack = resolved.clone();
        self.client
            .with_lease("unpack", |client| async move {
                image::unpack(&client, &to_unpack).await
            })
            .await?;
        self.lock_images().insert(reference.to_owned(), resolved);
        Ok(())
    }

    async fn create(&self, config: ContainerConfig) -> Result<(), RuntimeError> {
        if self.lock_containers().contains_key(&config.id) {
            return Err(other(format!("container {:?} already exists", config.id)));
        }
        let image = self.prepared_image(&config.image).await?;
        let cgroups_path = self.cgroups_path(&config.id);
        let spec = spec::runtime_spec(&spec::SpecInput {
            config: &config,
            image: &image.run_config(),
            cgroups_path: cgroups_path.clone(),
            host_network_files: host_network_files(),
        })
        .map_err(RuntimeError::StartFailed)?;
        let now = prost_types::Timestamp::from(SystemTime::now());
        let record = ContainerRecord {
            id: config.id.clone(),
            labels: [
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (
                    LABEL_LOG_PATH.to_owned(),
                    config.log_path.display().to_string(),
                ),
                (LABEL_STDIO.to_owned(), format_stdio(config.stdio)),
            ]
            .into(),
            image: image.name.clone(),
            runtime: Some(ContainerRuntimeName {
                name: RUNC_SHIM.into(),
                options: Some(self.runc_options()),
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE.into(),
                value: serde_json::to_vec(&spec).map_err(other)?,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: config.id.clone(),
            created_at: Some(now),
            updated_at: Some(now),
            ..Default::default()
        };
        let id = config.id.clone();
        let parent = image.top_chain_id.clone();
        self.client
            .with_lease("create", |client| async move {
                let prepare = PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: id.clone(),
                    parent,
                    labels: HashMap::new(),
                };
                client.snapshots().prepare(prepare).await.map_err(|e| {
                    if is_already_exists(&e) {
                        other(format!("a root file system for {id:?} exists already"))
                    } else {
                        status_error("prepare the root file system", e)
                    }
                })?;
                let create = CreateContainerRequest {
                    container: Some(record),
                };
                if let Err(e) = client.containers().create(create).await {
                    let _ = image::remove_snapshot(&client, &id).await;
                    return Err(if is_already_exists(&e) {
                        other(format!("container {id:?} exists already in containerd"))
                    } else {
                        status_error("create the container", e)
                    });
                }
                Ok(())
            })
            .await?;
        let (life, _) = watch::channel(Lifecycle::new(&config.id));
        self.lock_containers().insert(
            config.id.clone(),
            Container {
                life,
                log_path: config.log_path.clone(),
                cgroups_path,
                stdio: config.stdio,
                streams: None,
            },
        );
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (life, log_path, cgroups_path, stdio) = self.with_container(id, |container| {
            let mut started = Ok(());
            container.life.send_if_modified(|life| {
                started = life.start();
                started.is_ok()
            });
            started?;
            Ok((
                container.life.clone(),
                container.log_path.clone(),
                container.cgroups_path.clone(),
                container.stdio,
            ))
        })?;
        match self.start_task(id, &log_path, stdio).await {
            Ok((copier, streams)) => {
                // Before the watcher starts, which takes them away at the exit.
                if let Some(container) = self.lock_containers().get_mut(id) {
                    container.streams = Some(streams);
                }
                spawn_exit_watcher(
                    self.client.clone(),
                    id.to_owned(),
                    self.containers.clone(),
                    life,
                    Some(copier),
                    Fifos::at(&self.fifo_root(), id),
                    cgroups_path,
                );
                Ok(())
            }
            Err(e) => {
                // As the kubelet reports it: the container ended before it ran.
                let failed = exit(128, "StartError", Some(e.to_string()), SystemTime::now());
                record_exit(&self.client, id, &failed).await;
                life.send_modify(|life| life.exit(failed));
                Err(e)
            }
        }
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        self.with_container(id, |container| container.life.borrow().check_signal())?;
        let signal = match signal {
            Signal::Terminate => 15,
            Signal::Kill => 9,
        };
        let request = KillRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
            signal,
            all: false,
        };
        match self.client.tasks().kill(request).await {
            Ok(_) => Ok(()),
            // The process ended on its own meanwhile; its watcher reports the exit.
            Err(e) if is_not_found(&e) || e.code() == Code::FailedPrecondition => Ok(()),
            Err(e) => Err(status_error("signal the task", e)),
        }
    }

    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError> {
        let mut life = self.with_container(id, |c| Ok(c.life.subscribe()))?;
        loop {
            if let ContainerState::Exited(exit) = life.borrow_and_update().state() {
                return Ok(exit.clone());
            }
            if life.changed().await.is_err() {
                return Err(RuntimeError::NotFound(id.to_owned()));
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.with_container(id, |container| container.life.borrow().check_delete())?;
        delete_task(&self.client, id).await;
        let request = DeleteContainerRequest { id: id.to_owned() };
        match self.client.containers().delete(request).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(status_error("delete the container", e)),
        }
        image::remove_snapshot(&self.client, id).await?;
        Fifos::at(&self.fifo_root(), id).remove();
        self.lock_containers().remove(id);
        Ok(())
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecOutput, RuntimeError> {
        self.check_running_for_exec(id)?;
        // In a task of its own, so that a caller who gives up (a dropped future) does not
        // leave the process running or its FIFOs behind: the task still kills the process at
        // its timeout at the latest, and deletes it.
        let (client, fifo_root, id) = (self.client.clone(), self.fifo_root(), id.to_owned());
        tokio::spawn(async move { exec::exec(client, &fifo_root, &id, request).await })
            .await
            .map_err(|e| other(format!("the exec task failed: {e}")))?
    }

    async fn attach(&self, id: &str, stdin: bool) -> Result<ExecSession, RuntimeError> {
        let (streams, stdio, life) = self.with_container(id, |container| {
            container.life.borrow().check_running("attach")?;
            // Running without streams: the task is still being started, or its FIFOs could
            // not be opened again after a restart.
            let streams = container.streams.clone().ok_or_else(|| {
                other(format!(
                    "the output of container {id:?} cannot be followed now"
                ))
            })?;
            Ok((streams, container.stdio, container.life.subscribe()))
        })?;
        let process = TaskProcess::init(self.client.clone(), id);
        Ok(attach::session(&streams, stdio, stdin, life, process))
    }

    async fn exec_stream(
        &self,
        id: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        self.check_running_for_exec(id)?;
        // Started in a task of its own, as `exec` is: a caller who gives up while the process
        // starts does not leave it behind (the session it would have got is dropped, which
        // kills the process).
        let (client, fifo_root, id) = (self.client.clone(), self.fifo_root(), id.to_owned());
        tokio::spawn(async move { exec::exec_stream(client, &fifo_root, &id, request).await })
            .await
            .map_err(|e| other(format!("the exec task failed: {e}")))?
    }

    /// Reads the container's cgroup: cumulative CPU time and the memory working set, as the
    /// kubelet reports them. A container whose cgroup is gone (not started yet, or exited and
    /// cleaned up by runc) reports zeros.
    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let cgroups_path = self.with_container(id, |c| Ok(c.cgroups_path.clone()))?;
        // A few small files of a pseudo file system: the reads do not block on a disk.
        Ok(stats::read(&cgroups_path).unwrap_or_default())
    }

    fn state(&self, id: &str) -> Option<ContainerState> {
        let containers = self.lock_containers();
        containers.get(id).map(|c| c.life.borrow().state().clone())
    }

    fn http_handler(&self, _id: &str) -> Option<Arc<dyn HttpHandler>> {
        None
    }

    async fn ready(&self) -> Result<(), RuntimeError> {
        match tokio::time::timeout(READY_TIMEOUT, self.client.version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(RuntimeError::Unavailable(format!(
                "containerd does not answer: {}",
                status.message()
            ))),
            Err(_) => Err(RuntimeError::Unavailable(format!(
                "containerd did not answer within {READY_TIMEOUT:?}"
            ))),
        }
    }

    fn list(&self) -> HashMap<String, ContainerState> {
        let containers = self.lock_containers();
        containers
            .iter()
            .map(|(id, c)| (id.clone(), c.life.borrow().state().clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_recorded_and_read_back() {
        let ended = exit(
            137,
            "OOMKilled",
            None,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        );
        assert_eq!(format_exit(&ended), "137:OOMKilled:1700000000123456789");
        assert_eq!(parse_exit(&format_exit(&ended)), Some(ended));
        assert_eq!(parse_exit("garbage"), None);
    }

    #[test]
    fn stdio_is_recorded_and_read_back() {
        let all = Stdio {
            stdin: true,
            stdin_once: true,
            tty: true,
        };
        assert_eq!(format_stdio(all), "stdin,stdin-once,tty");
        assert_eq!(format_stdio(Stdio::default()), "");
        for stdio in [
            all,
            Stdio::default(),
            Stdio {
                tty: true,
                ..Stdio::default()
            },
        ] {
            assert_eq!(parse_stdio(&format_stdio(stdio)), stdio);
        }
    }

    #[test]
    fn exit_codes_map_to_kubernetes_reasons() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(3, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }

    #[test]
    fn runc_options_encode_the_root_as_field_seven() {
        let bytes = prost::Message::encode_to_vec(&RuncOptions { root: "/r".into() });
        // Tag 7, wire type 2 (length-delimited): (7 << 3) | 2 = 58.
        assert_eq!(bytes, [58, 2, b'/', b'r']);
    }
}
