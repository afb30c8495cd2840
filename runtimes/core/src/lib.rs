//! The seam between the node agent and the runtimes that execute workloads.
//!
//! One small, CRI-shaped trait, [`Runtime`], with two implementations (wasmtime in process,
//! containerd). The agent owns everything above execution — probes, restart policy and backoff,
//! grace periods, secret and config injection — so a runtime only prepares artifacts and runs,
//! signals, waits for and removes containers. Workload details reach a runtime through the
//! narrow [`ContainerConfig`], never the pod spec. Commands run inside a running container
//! through [`Runtime::exec`] (exec probes) or, with streams, [`Runtime::exec_stream`]
//! (`kubectl exec`, with stdin and a TTY).
//!
//! This crate knows nothing about the Kubernetes API, redb or HTTP routing.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod logs;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

pub use state::{ContainerState, Lifecycle};

/// A host directory made visible to a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The directory on the node.
    pub host_path: PathBuf,
    /// Where the workload sees it.
    pub container_path: String,
    /// Whether the workload may only read it.
    pub read_only: bool,
}

/// Resource limits of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most memory the container may use, in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: Option<u64>,
}

/// Who a container's process runs as (`securityContext.runAsUser` / `runAsGroup`); what is
/// not set comes from the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub user: Option<u32>,
    /// The group id.
    pub group: Option<u32>,
}

/// A container's own stdin and terminal (`stdin`, `stdinOnce` and `tty` of the pod spec), which
/// [`Runtime::attach`] connects to. By default a container has neither: its stdin is empty
/// and its output goes to the log only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Whether the container has a stdin that attached clients write to. Until one does, the
    /// container's reads of stdin wait (they do not see end of file).
    pub stdin: bool,
    /// Whether the container's stdin closes (end of file) when the first attached client that
    /// sent stdin closes it or goes away; later attaches get no stdin. Only with `stdin`.
    pub stdin_once: bool,
    /// Whether the container runs on a terminal: its stdout and stderr are both the
    /// terminal's output (logged as stdout), and attached clients may resize it. A Wasm guest
    /// has no terminal: its stderr is then merged into stdout, and resizes are ignored.
    pub tty: bool,
}

/// Everything a runtime needs to create one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Unique id of this container instance on the node (a restart gets a new one).
    pub id: String,
    /// The image reference, already [prepared](Runtime::prepare).
    pub image: String,
    /// The command (`command` of the pod spec): replaces the image's entrypoint when not
    /// empty, as in Kubernetes.
    pub command: Vec<String>,
    /// The arguments (`args` of the pod spec): replace the image's default arguments (`Cmd`)
    /// when not empty. A Wasm guest gets `command` then `args` after its program name.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// The working directory (`workingDir`); `None` for the image's. Wasm guests have no
    /// current directory to set and ignore it.
    pub working_dir: Option<String>,
    /// The user and group (containers; a Wasm guest has no user).
    pub run_as: RunAs,
    /// Directories to mount.
    pub mounts: Vec<Mount>,
    /// The pod's network namespace to join (a path such as `/run/netns/NAME`); `None` shares
    /// the node's network. In-process runtimes ignore it.
    pub network_namespace: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Where stdout and stderr go, in the CRI log format (see [`logs`]).
    pub log_path: PathBuf,
    /// Whether the workload may make outgoing HTTP requests.
    pub allow_outgoing_http: bool,
    /// The longest one HTTP request to an in-process workload may run.
    pub request_timeout: Duration,
    /// The container's own stdin and terminal, for [`Runtime::attach`].
    pub stdio: Stdio,
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (137 for a kill, as a container would report it).
    pub code: i32,
    /// Kubernetes' reason: `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded`, ...
    pub reason: String,
    /// A human-readable message, e.g. the trap that ended a Wasm guest.
    pub message: Option<String>,
    /// When it ended.
    pub finished_at: SystemTime,
}

/// The signals the agent sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ask to stop (SIGTERM). A Wasm guest cannot catch it and stops at once.
    Terminate,
    /// Stop now (SIGKILL).
    Kill,
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The image cannot be found.
    #[error("image {image:?} not found: {detail}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// Where it was looked for.
        detail: String,
    },
    /// The artifact is not something this runtime can run (e.g. invalid Wasm).
    #[error("invalid artifact {image:?}: {detail}")]
    InvalidArtifact {
        /// The image reference.
        image: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The workload cannot start (e.g. it imports something the host does not provide).
    #[error("cannot start: {0}")]
    StartFailed(String),
    /// No container with this id.
    #[error("no container {0:?}")]
    NotFound(String),
    /// The operation does not fit the container's state.
    #[error("container {id:?} is {state}: cannot {operation}")]
    InvalidState {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        operation: &'static str,
    },
    /// The runtime cannot do this at all (e.g. exec into a Wasm guest); the text says why.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The operation did not finish in the time it was given (e.g. an exec command that ran
    /// past its timeout and was killed).
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The runtime itself is not available (e.g. containerd is down).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The most bytes of stdout, and separately of stderr, that [`Runtime::exec`] keeps: 1 MiB.
/// A command may write more; the rest is read and dropped (so the command never blocks on a
/// full pipe) and [`ExecOutput`] says it was truncated. The limit protects the node: the whole
/// output is held in memory, and a probe or a careless `kubectl exec` could print gigabytes.
pub const EXEC_OUTPUT_LIMIT: usize = 1024 * 1024;

/// A command to run to completion inside a running container, with [`Runtime::exec`].
///
/// `#[non_exhaustive]`: build it with [`ExecRequest::new`] and set the public fields, so that
/// fields added later (a user, a working directory) do not break callers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecRequest {
    /// The program and its arguments (argv). The program is looked up as the container's
    /// runtime does for its main process (for containers: an absolute path, or a name found in
    /// the container's `PATH`).
    pub command: Vec<String>,
    /// Environment variables added to the container's own, in order; a name the container
    /// already has takes the new value.
    pub env: Vec<(String, String)>,
    /// The longest the command may run. When it has not exited by then, it is killed and exec
    /// fails with [`RuntimeError::TimedOut`]. [`Runtime::exec_stream`] ignores it: an
    /// interactive command runs until it exits or its session is dropped.
    pub timeout: Duration,
    /// Whether the command gets a stdin ([`ExecSession::stdin`]); without it, its stdin is
    /// empty. Only [`Runtime::exec_stream`] reads it.
    pub stdin: bool,
    /// Whether the command runs on a terminal (`kubectl exec -t`): its stdout and stderr are
    /// both the terminal's output, which arrives on [`ExecSession::stdout`]. Only
    /// [`Runtime::exec_stream`] reads it.
    pub tty: bool,
    /// The terminal's size at the start, when [`ExecRequest::tty`] is set.
    pub terminal_size: Option<TerminalSize>,
}

impl ExecRequest {
    /// A request to run `command` (argv) with the container's environment, for at most
    /// `timeout`.
    pub fn new(command: Vec<String>, timeout: Duration) -> ExecRequest {
        ExecRequest {
            command,
            env: Vec::new(),
            timeout,
            stdin: false,
            tty: false,
            terminal_size: None,
        }
    }
}

/// The size of a terminal, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// An interactive command running inside a container, started by [`Runtime::exec_stream`].
///
/// The streams are channels of byte chunks: the command's output arrives as it is written
/// (each receiver ends once the command has ended and its output is read), and what is sent
/// to [`ExecSession::stdin`] is written to its stdin; dropping that sender closes the
/// command's stdin (end of file). Dropping [`ExecSession::exit`] before the command has
/// ended — the client went away — kills the command, so no session outlives its caller.
#[derive(Debug)]
pub struct ExecSession {
    /// The command's stdin, when [`ExecRequest::stdin`] was set.
    pub stdin: Option<tokio::sync::mpsc::Sender<Bytes>>,
    /// The command's stdout (with a TTY: the terminal's output).
    pub stdout: tokio::sync::mpsc::Receiver<Bytes>,
    /// The command's stderr; `None` with a TTY, whose output is all on stdout.
    pub stderr: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    /// New terminal sizes, when [`ExecRequest::tty`] was set (ignored otherwise).
    pub resize: tokio::sync::mpsc::Sender<TerminalSize>,
    /// The command's exit code (128 + N when signal N ended it), once it has ended and its
    /// output has been read (so a caller that drains the output first misses none of it).
    pub exit: tokio::sync::oneshot::Receiver<Result<i32, RuntimeError>>,
}

/// How an exec'd command ended and what it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code (128 + N when signal N ended it).
    pub exit_code: i32,
    /// The first [`EXEC_OUTPUT_LIMIT`] bytes of its stdout.
    pub stdout: Bytes,
    /// The first [`EXEC_OUTPUT_LIMIT`] bytes of its stderr.
    pub stderr: Bytes,
    /// Whether stdout was longer than the limit (and cut).
    pub stdout_truncated: bool,
    /// Whether stderr was longer than the limit (and cut).
    pub stderr_truncated: bool,
}

/// An HTTP request or response body, as the gateway passes it around.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A workload that serves HTTP in process (a `wasi:http` component): the gateway calls it
/// directly instead of connecting to an address.
#[async_trait]
pub trait HttpHandler: Send + Sync {
    /// Handles one request. Failures of the workload become 5xx responses, never errors.
    async fn handle(&self, request: http::Request<Body>) -> http::Response<Body>;
}

/// Resource usage of one container, as the metrics pipeline (`kubectl top`, the HPA) reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// CPU time the container used since it started, in nanoseconds (cumulative, monotonic
    /// while the container lives).
    pub cpu_usage_ns: u64,
    /// Memory the container holds now, in bytes (the working set: for a cgroup, usage less
    /// inactive page cache; for a Wasm guest, its live linear memories and tables).
    pub memory_bytes: u64,
}

/// A container runtime, as the node agent uses it.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime class this runtime serves (`wasmtime`, `runc`).
    fn name(&self) -> &'static str;

    /// Fetches and prepares an image (download, verify, compile or unpack). Idempotent and
    /// cached: a prepared image is prepared again only if it changed.
    async fn prepare(&self, image: &str) -> Result<(), RuntimeError>;

    /// Creates a container; it does not run until [`Runtime::start`].
    async fn create(&self, config: ContainerConfig) -> Result<(), RuntimeError>;

    /// Starts a created container.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;

    /// Sends a signal to a running container.
    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError>;

    /// Waits until the container has exited.
    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError>;

    /// Removes an exited (or never started) container and its resources.
    async fn delete(&self, id: &str) -> Result<(), RuntimeError>;

    /// Runs a command inside a running container and waits for it to end: the non-interactive
    /// exec of exec probes and of `kubectl exec` without stdin or a TTY. The command runs as
    /// the container's main process does (same user, working directory, environment — plus
    /// [`ExecRequest::env`] — and limits), with no stdin; its output is captured up to
    /// [`EXEC_OUTPUT_LIMIT`] per stream and does not reach the container's log.
    ///
    /// A command that runs and exits, with any code, is `Ok`; the caller decides what a
    /// non-zero code means. Errors: [`RuntimeError::NotFound`] for an unknown container,
    /// [`RuntimeError::InvalidState`] when it is not running, [`RuntimeError::StartFailed`]
    /// when the command cannot start (e.g. it does not exist in the image; the text is the
    /// runtime's), [`RuntimeError::TimedOut`] when it ran past [`ExecRequest::timeout`] (it has
    /// been killed then), and [`RuntimeError::Unsupported`] for runtimes that cannot exec.
    ///
    /// Cancellation: dropping the future does not leave the command behind; it is still
    /// killed at its timeout and its resources released.
    ///
    /// The interactive variant for `kubectl exec -it` is [`Runtime::exec_stream`].
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecOutput, RuntimeError>;

    /// Starts a command inside a running container and returns its streams at once: the
    /// interactive exec of `kubectl exec` (stdin when [`ExecRequest::stdin`], a terminal of
    /// [`ExecRequest::terminal_size`] when [`ExecRequest::tty`], output streamed as it comes).
    /// The command runs as for [`Runtime::exec`], with no timeout: it ends when it exits or
    /// when the caller drops [`ExecSession::exit`] (then it is killed).
    ///
    /// Errors, as for [`Runtime::exec`]: [`RuntimeError::NotFound`],
    /// [`RuntimeError::InvalidState`], [`RuntimeError::StartFailed`] (the command cannot
    /// start) and [`RuntimeError::Unsupported`] for runtimes that cannot exec, with a text
    /// that says why (it is shown to the user).
    async fn exec_stream(
        &self,
        id: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError>;

    /// Attaches to a running container's own stdio: `kubectl attach`, and `kubectl run -it`.
    ///
    /// The session's stdout and stderr carry what the container writes from now on (it still
    /// goes to the log as well); with [`Stdio::tty`] all of it arrives on stdout and
    /// `stderr` is `None`. When `stdin` is asked for and the container has one
    /// ([`Stdio::stdin`], not yet closed by [`Stdio::stdin_once`]), what is sent to
    /// [`ExecSession::stdin`] reaches the container's stdin; otherwise that sender is `None`.
    /// Resizes reach the container's terminal (with [`Stdio::tty`]). Several sessions may be
    /// attached at once: each gets all the output, and their stdin is interleaved.
    ///
    /// Unlike an exec, the session does not own what it is attached to: dropping it detaches
    /// and the container runs on. The output channels end, and [`ExecSession::exit`] gives
    /// the container's exit code, once the container has exited. An attached client that reads
    /// too slowly misses output rather than holding the container up.
    ///
    /// Errors: [`RuntimeError::NotFound`] for an unknown container,
    /// [`RuntimeError::InvalidState`] when it is not running.
    async fn attach(&self, id: &str, stdin: bool) -> Result<ExecSession, RuntimeError>;

    /// Resource usage of a container: cumulative CPU time and current memory.
    /// [`RuntimeError::NotFound`] for an unknown container; a created or exited container
    /// reports what it still holds and has used, or zeros where the runtime no longer knows
    /// (containerd: the cgroup is removed when the task exits).
    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError>;

    /// The container's current state.
    fn state(&self, id: &str) -> Option<ContainerState>;

    /// The in-process HTTP handler of a running container, if it serves HTTP in process.
    fn http_handler(&self, id: &str) -> Option<Arc<dyn HttpHandler>>;

    /// Ids of all containers this runtime knows, with their states (for re-attaching).
    fn list(&self) -> HashMap<String, ContainerState>;

    /// Whether the runtime can take work now (CRI's `RuntimeReady`): `Unavailable` with the
    /// reason when it cannot (e.g. containerd does not answer). Running containers may still
    /// run while it is not ready.
    async fn ready(&self) -> Result<(), RuntimeError>;
}
