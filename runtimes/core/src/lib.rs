//! The seam between the node agent and the runtimes that execute workloads.
//!
//! One small, CRI-shaped trait, [`Runtime`], with two implementations (wasmtime in process,
//! containerd). The agent owns everything above execution — probes, restart policy and backoff,
//! grace periods, secret and config injection — so a runtime only prepares artifacts and runs,
//! signals, waits for and removes containers. Workload details reach a runtime through the
//! narrow [`ContainerConfig`], never the pod spec.
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

/// Everything a runtime needs to create one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Unique id of this container instance on the node (a restart gets a new one).
    pub id: String,
    /// The image reference, already [prepared](Runtime::prepare).
    pub image: String,
    /// Command and arguments (`command` + `args` of the pod spec); empty for the image default.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Directories to mount.
    pub mounts: Vec<Mount>,
    /// Resource limits.
    pub limits: Limits,
    /// Where stdout and stderr go, in the CRI log format (see [`logs`]).
    pub log_path: PathBuf,
    /// Whether the workload may make outgoing HTTP requests.
    pub allow_outgoing_http: bool,
    /// The longest one HTTP request to an in-process workload may run.
    pub request_timeout: Duration,
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
    /// The runtime itself is not available (e.g. containerd is down).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
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

    /// The container's current state.
    fn state(&self, id: &str) -> Option<ContainerState>;

    /// The in-process HTTP handler of a running container, if it serves HTTP in process.
    fn http_handler(&self, id: &str) -> Option<Arc<dyn HttpHandler>>;

    /// Ids of all containers this runtime knows, with their states (for re-attaching).
    fn list(&self) -> HashMap<String, ContainerState>;
}
