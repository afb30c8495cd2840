//! The node half of `wharf up`: the wasmtime runtime, the node agent with its log endpoint,
//! the binder that places pods on this node until the scheduler exists, and the gateway.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use wharf_agent::images::WasmImages;
use wharf_agent::network::{BridgeAddresses, DEFAULT_PLUGIN_DIR, NetworkConfig, PodNetworks};
use wharf_agent::{Agent, AgentConfig, ContainerRuntime, ImageImporter};
use wharf_apiserver::client::ClusterApi;
use wharf_containerd::managed::Options as ManagedOptions;
use wharf_containerd::{ContainerdConfig, ContainerdRuntime, ManagedContainerd};
use wharf_gateway::{ClusterAddresses, Gateway, Handlers};
use wharf_runtime::HttpHandler;
use wharf_runtime::RuntimeError;
use wharf_wasmtime::{WasmtimeConfig, WasmtimeRuntime};

/// The settings of a node: `wharf up`'s local node and `wharf agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Address of the HTTP gateway (NodePort Services and Ingress); its IP is the node's.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway_addr: std::net::SocketAddr,
    /// containerd to use: a socket path, `managed` or `off`.
    #[arg(long)]
    pub containerd: Option<String>,
    /// The name of this node (default: the host name).
    #[arg(long, visible_alias = "name")]
    pub node_name: Option<String>,
    /// Registries (HOST:PORT) to pull from over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// The address range of container pods (CIDR); the node bridge takes its first address.
    #[arg(long, default_value = wharf_agent::network::DEFAULT_SUBNET)]
    pub pod_cidr: String,
    /// The node bridge container pods attach to (at most 15 characters).
    #[arg(long, default_value = wharf_agent::network::DEFAULT_BRIDGE)]
    pub pod_bridge: String,
}

/// Resolves when the process is shutting down.
pub type Stopping = Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// What `start` leaves running.
pub struct Node {
    /// Background tasks, which end when the server stops.
    pub tasks: Vec<JoinHandle<()>>,
    /// Lines for the startup banner.
    pub summary: String,
    /// The containerd Wharf started itself, if any; stopped when dropped.
    pub managed_containerd: Option<ManagedContainerd>,
}

/// Imports archives into containerd.
struct ContainerdImporter(Arc<ContainerdRuntime>);

#[async_trait::async_trait]
impl ImageImporter for ContainerdImporter {
    async fn import(&self, archive: &Path) -> Result<Vec<String>, RuntimeError> {
        self.0.import_archive(archive).await
    }
}

/// The system's containerd socket, used by default when it exists.
const SYSTEM_CONTAINERD: &str = "/run/containerd/containerd.sock";

/// Connects to (or starts) containerd as `--containerd` says: a socket path, `managed`, `off`;
/// by default the system's socket if there is one, else a managed one if the binary exists,
/// else off. Returns the runtime, the managed daemon, and a line for the banner.
async fn containerd(
    choice: Option<&str>,
    data_dir: &Path,
    insecure_registries: &[String],
) -> (
    Option<Arc<ContainerdRuntime>>,
    Option<ManagedContainerd>,
    String,
) {
    let binary = which("containerd");
    let (socket, managed) = match choice {
        Some("off") => {
            return (
                None,
                None,
                "containerd: off (--containerd off): only Wasm pods run here".into(),
            );
        }
        Some("managed") => (None, true),
        Some(socket) => (Some(std::path::PathBuf::from(socket)), false),
        None if Path::new(SYSTEM_CONTAINERD).exists() => (Some(SYSTEM_CONTAINERD.into()), false),
        None => (None, binary.is_some()),
    };
    let mut managed_daemon = None;
    let socket = match (socket, managed) {
        (Some(socket), _) => socket,
        (None, true) => {
            let Some(binary) = binary else {
                return (None, None, "containerd: not installed, so only Wasm pods run here (install containerd and runc)".into());
            };
            // Container specs (environment variables from Secrets included) stay in memory.
            let options = ManagedOptions { in_memory: true };
            let dir = data_dir.join("containerd");
            match ManagedContainerd::start_with(&binary, &dir, options).await {
                Ok(daemon) => {
                    let socket = daemon.socket().to_path_buf();
                    managed_daemon = Some(daemon);
                    socket
                }
                Err(error) => {
                    return (
                        None,
                        None,
                        format!(
                            "containerd: could not be started ({error}); only Wasm pods run here"
                        ),
                    );
                }
            }
        }
        (None, false) => {
            return (None, None, "containerd: not installed, so only Wasm pods run here (install containerd and runc)".into());
        }
    };
    let mut config = ContainerdConfig::new(&socket, data_dir.join("node").join("containerd-state"));
    config.insecure_registries = insecure_registries.to_vec();
    match ContainerdRuntime::connect(config).await {
        Ok(runtime) => {
            let line = format!(
                "containerd: {} {} (namespace wharf)",
                match &managed_daemon {
                    Some(daemon) if daemon.adopted() => "managed (adopted, left running), at",
                    Some(_) => "managed, at",
                    None => "at",
                },
                socket.display()
            );
            (Some(Arc::new(runtime)), managed_daemon, line)
        }
        Err(error) => (
            None,
            managed_daemon,
            format!(
                "containerd: unavailable at {} ({error}); only Wasm pods run here",
                socket.display()
            ),
        ),
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// The network of container pods: a namespace per pod on the node bridge, or — when the CNI
/// plugins are missing — the node's own network, said in the banner.
fn pod_networks(args: &NodeArgs, node_dir: &Path) -> (Option<Arc<PodNetworks>>, String) {
    let config = NetworkConfig {
        plugin_dir: DEFAULT_PLUGIN_DIR.into(),
        bridge: args.pod_bridge.clone(),
        subnet: args.pod_cidr.clone(),
        state_dir: node_dir.join("network"),
    };
    match PodNetworks::new(config) {
        Ok(networks) => (
            Some(Arc::new(networks)),
            format!(
                "\n  pod network: {} on bridge {} (a network namespace per container pod)",
                args.pod_cidr, args.pod_bridge
            ),
        ),
        Err(error) => {
            tracing::warn!(%error, "container pods will share the node's network");
            (
                None,
                format!("\n  pod network: none ({error}): container pods share the node's network"),
            )
        }
    }
}

/// Cluster IPs live on the node bridge, where pods (through it) and the node reach them.
struct OnTheBridge(BridgeAddresses);

impl ClusterAddresses for OnTheBridge {
    fn add(&self, ip: std::net::IpAddr) -> Result<(), String> {
        self.0.add(ip).map_err(|e| e.to_string())
    }

    fn remove(&self, ip: std::net::IpAddr) {
        self.0.remove(ip);
    }
}

/// The gateway finds in-process handlers through the agent.
struct AgentHandlers(Arc<Agent>);

impl Handlers for AgentHandlers {
    fn handlers(&self, pod_uid: &str) -> Vec<(String, Arc<dyn HttpHandler>)> {
        self.0.http_handlers(pod_uid)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty() && wharf_apimachinery::validation::dns1123_subdomain(h).is_ok())
        .unwrap_or_else(|| "wharf-node".into())
}

/// Starts the node components — runtimes, agent (with its log endpoint) and gateway — on
/// `api`, in process or remote, until `stopping` resolves.
pub async fn start(
    args: &NodeArgs,
    data_dir: &Path,
    api: Arc<dyn ClusterApi>,
    stopping: Stopping,
) -> Result<Node> {
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let node_dir = data_dir.join("node");
    let (containerd, managed_containerd, containerd_line) = containerd(
        args.containerd.as_deref(),
        data_dir,
        &args.insecure_registries,
    )
    .await;
    let (networks, network_line) = match &containerd {
        Some(_) => pod_networks(args, &node_dir),
        None => (None, String::new()),
    };
    let containers = containerd.clone().map(|runtime| ContainerRuntime {
        runtime: runtime.clone(),
        importer: Arc::new(ContainerdImporter(runtime)),
        networks,
    });
    let wasm = WasmtimeRuntime::new(
        WasmtimeConfig {
            cache_dir: node_dir.join("wasm-cache"),
            max_instances: 1000,
        },
        Arc::new(WasmImages::new(
            api.clone(),
            args.insecure_registries.clone(),
        )),
    )
    .map_err(|e| anyhow::anyhow!("cannot start the wasmtime runtime: {e}"))?;

    let ip = args.gateway_addr.ip();
    let agent_listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .context("cannot open the agent's endpoint")?;
    let agent_port = agent_listener.local_addr()?.port();
    let agent = Agent::new(
        api.clone(),
        AgentConfig {
            node_name: node_name.clone(),
            node_ip: ip.to_string(),
            agent_port,
            data_dir: node_dir,
            containers_unavailable: Some(containerd_line.clone()),
        },
        Arc::new(wasm),
        containers,
    );
    let gateway_listener = tokio::net::TcpListener::bind(args.gateway_addr)
        .await
        .with_context(|| format!("cannot listen on --gateway-addr {}", args.gateway_addr))?;
    let gateway = Gateway::with_cluster_addresses(
        api.clone(),
        Arc::new(AgentHandlers(agent.clone())),
        ip,
        Some(Arc::new(OnTheBridge(BridgeAddresses::new(
            &args.pod_bridge,
        )))),
    );

    let mut tasks = Vec::new();
    let sampler = wharf_agent::stats::Sampler::new(
        agent.clone(),
        Some(Arc::new(GatewayRequests(gateway.clone()))),
    );
    let agent_app =
        wharf_agent::logs::router(agent.clone()).merge(wharf_agent::stats::router(sampler.clone()));
    tasks.push(tokio::spawn(sampler.run(stopping())));
    let stop_agent_http = stopping();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(agent_listener, agent_app)
            .with_graceful_shutdown(stop_agent_http)
            .await;
    }));
    tasks.push(tokio::spawn(agent.run(stopping())));
    tasks.push(tokio::spawn(gateway.run(gateway_listener, stopping())));

    let summary = format!(
        "  node:       {node_name} (Wasm pods in process)\n  {containerd_line}{network_line}\n  gateway:    http://{} (NodePort Services on {ip}:NODEPORT)",
        args.gateway_addr
    );
    Ok(Node {
        tasks,
        summary,
        managed_containerd,
    })
}

/// The gateway's request counts, for the agent's usage summary.
struct GatewayRequests(Arc<Gateway>);

impl wharf_agent::stats::RequestCounts for GatewayRequests {
    fn request_counts(&self) -> Vec<(String, u64, u64)> {
        self.0.request_counts()
    }
}
