//! The node half of `wharf up`: the wasmtime runtime, the node agent with its log endpoint,
//! the binder that places pods on this node until the scheduler exists, and the gateway.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use wharf_agent::images::WasmImages;
use wharf_agent::{Agent, AgentConfig};
use wharf_apiserver::ApiServer;
use wharf_apiserver::artifacts::ArtifactStore;
use wharf_gateway::{Gateway, Handlers};
use wharf_runtime::HttpHandler;
use wharf_wasmtime::{WasmtimeConfig, WasmtimeRuntime};

use crate::up::ServeArgs;

/// What `start` leaves running.
pub struct Node {
    /// Background tasks, which end when the server stops.
    pub tasks: Vec<JoinHandle<()>>,
    /// Lines for the startup banner.
    pub summary: String,
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

/// Starts the node components.
pub async fn start(
    args: &ServeArgs,
    data_dir: &Path,
    server: &Arc<ApiServer>,
    artifacts: Arc<ArtifactStore>,
) -> Result<Node> {
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let node_dir = data_dir.join("node");
    let containers_unavailable = match args.containerd.as_deref() {
        Some("off") => "containerd is off on this node (--containerd off): only Wasm pods run here",
        _ => {
            "this build of Wharf runs Wasm pods only; container pods come with the containerd runtime"
        }
    };
    let wasm = WasmtimeRuntime::new(
        WasmtimeConfig {
            cache_dir: node_dir.join("wasm-cache"),
            max_instances: 1000,
        },
        Arc::new(WasmImages::new(artifacts, args.insecure_registries.clone())),
    )
    .map_err(|e| anyhow::anyhow!("cannot start the wasmtime runtime: {e}"))?;

    let ip = args.gateway_addr.ip();
    let agent_listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .context("cannot open the agent's endpoint")?;
    let agent_port = agent_listener.local_addr()?.port();
    let agent = Agent::new(
        server.registry.clone(),
        AgentConfig {
            node_name: node_name.clone(),
            node_ip: ip.to_string(),
            agent_port,
            data_dir: node_dir,
            containers_unavailable: Some(containers_unavailable.into()),
        },
        Arc::new(wasm),
        None,
    );
    let gateway_listener = tokio::net::TcpListener::bind(args.gateway_addr)
        .await
        .with_context(|| format!("cannot listen on --gateway-addr {}", args.gateway_addr))?;
    let gateway = Gateway::new(
        server.registry.clone(),
        Arc::new(AgentHandlers(agent.clone())),
        ip,
    );

    let mut tasks = Vec::new();
    let agent_app = wharf_agent::logs::router(agent.clone());
    let stop_agent_http = server.stopping();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(agent_listener, agent_app)
            .with_graceful_shutdown(stop_agent_http)
            .await;
    }));
    tasks.push(tokio::spawn(agent.run(server.stopping())));
    tasks.push(tokio::spawn(wharf_controllers::binder::run(
        server.registry.clone(),
        node_name.clone(),
        server.stopping(),
    )));
    tasks.push(tokio::spawn(
        gateway.run(gateway_listener, server.stopping()),
    ));

    let summary = format!(
        "  node:       {node_name} (Wasm pods in process; {containers_unavailable})\n  gateway:    http://{} (NodePort Services on {ip}:NODEPORT)",
        args.gateway_addr
    );
    Ok(Node { tasks, summary })
}
