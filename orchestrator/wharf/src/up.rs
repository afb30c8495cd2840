//! `wharf up` and `wharf server`: open the store, bootstrap, serve the API until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use wharf_apiserver::ApiServer;
use wharf_apiserver::artifacts::ArtifactStore;
use wharf_store::{RedbStore, StoreConfig, StoreError};

use crate::{kubeconfig, node};

/// Flags shared by `wharf up` and `wharf server` (see DESIGN.md, interface contract).
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Where the store, kubeconfig and node state live.
    #[arg(long, default_value = ".wharf", env = "WHARF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the Kubernetes API.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_addr: SocketAddr,
    /// Revisions of history kept for watches to resume from.
    #[arg(long, default_value_t = StoreConfig::default().history_revisions)]
    pub history_revisions: u64,
    /// The range Services get their cluster IPs from (IPv4 CIDR).
    #[arg(long, default_value = wharf_apiserver::registry::ServiceRange::DEFAULT)]
    pub service_cidr: wharf_apiserver::registry::ServiceRange,
    /// How the scheduler places pods: `bin-packing` (the fullest node that fits, for density)
    /// or `spread` (the emptiest).
    #[arg(long, default_value = "bin-packing")]
    pub scheduler_policy: wharf_controllers::scheduler::Policy,
    /// Seconds without a Lease renewal after which a node is unreachable (Kubernetes'
    /// node-monitor-grace-period); its pods are evicted per their tolerations.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    /// How often the HorizontalPodAutoscaler controller re-evaluates every HPA (Kubernetes'
    /// horizontal-pod-autoscaler-sync-period), e.g. `15s`, `500ms`, `1m`.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub hpa_sync_period: Duration,
    /// The local node's settings (`wharf up`).
    #[command(flatten)]
    pub node: node::NodeArgs,
}

/// A duration as Kubernetes flags write it: `500ms`, `15s`, `1m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 15s, 500ms or 1m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if duration.is_zero() {
        return Err("the period must be more than zero".into());
    }
    Ok(duration)
}

/// The HPA's view of pod usage: the node agents' summaries, as `metrics.k8s.io` serves them.
struct ClusterMetrics(Arc<ApiServer>);

impl wharf_controllers::hpa::MetricsSource for ClusterMetrics {
    fn pod_usage<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<wharf_controllers::hpa::PodUsage>, String>> {
        Box::pin(async move {
            let server = &self.0;
            let summaries = server
                .node_metrics
                .collect(&server.registry, &server.http)
                .await;
            Ok(wharf_apiserver::nodemetrics::pod_usage(&summaries)
                .into_iter()
                .filter(|pod| pod.namespace == namespace)
                .map(|pod| wharf_controllers::hpa::PodUsage {
                    cpu_millis: pod.cpu_nano_cores() as f64 / 1e6,
                    memory_bytes: pod.memory_bytes(),
                    requests_per_second: pod.requests_per_second,
                    requests_in_flight: pod.requests_in_flight as f64,
                    timestamp: wharf_apiserver::meta::parse_rfc3339(&pod.timestamp)
                        .unwrap_or_else(std::time::SystemTime::now),
                    window: Duration::from_secs_f64(pod.window_seconds.max(0.0)),
                    namespace: pod.namespace,
                    name: pod.name,
                    uid: pod.uid,
                })
                .collect())
        })
    }
}

/// Which components run in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// API server, controllers, a node agent and the gateway.
    AllInOne,
    /// API server and controllers.
    ControlPlane,
}

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs, mode: Mode) -> Result<()> {
    init_tracing();
    let renew = wharf_agent::LEASE_RENEW.as_secs();
    if args.node_monitor_grace_period <= renew {
        bail!(
            "--node-monitor-grace-period must be longer than the {renew} s in which agents renew their Lease, or healthy nodes would be marked unreachable"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve data dir {}", args.data_dir.display()))?;
    let store_path = data_dir.join("state.redb");
    let config = StoreConfig {
        history_revisions: args.history_revisions,
        ..StoreConfig::default()
    };
    let store = match RedbStore::open(&store_path, config) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => bail!(
            "the data dir {} is in use by another wharf process; stop it first or pass a different --data-dir",
            data_dir.display()
        ),
        Err(e) => return Err(e).context("cannot open the store"),
    };
    // Secrets and ConfigMaps are encrypted at rest with the data dir's keyring, created at
    // the first start. Everything above the store (registry, watches, controllers, the
    // in-process client) reads through the wrapper and sees plain objects.
    let keyring_path = data_dir.join(wharf_apiserver::encryption::KEYRING_FILE);
    let (keyring, created) = wharf_apiserver::encryption::Keyring::load_or_create(&keyring_path)
        .context("cannot load the encryption keyring")?;
    if created {
        tracing::info!(path = %keyring_path.display(), "created the encryption key for Secrets and ConfigMaps");
    }
    let store: Arc<dyn wharf_store::Store> = Arc::new(
        wharf_apiserver::encryption::EncryptedStore::new(Arc::new(store), keyring),
    );
    let artifacts = Arc::new(
        ArtifactStore::new(data_dir.join("artifacts"), store.clone())
            .context("cannot create the artifact store")?,
    );
    let server = ApiServer::with_options(store, Some(artifacts.clone()), args.service_cidr);
    wharf_apiserver::bootstrap::ensure_bootstrap_objects(&server.registry)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;

    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("cannot listen on --api-addr {}", args.api_addr))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let kubeconfig_path = data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &api_url)?;

    // The control loops: garbage collection, workloads, Services' endpoints, scheduling and
    // node health. The scheduler and the workload controllers share one Event recorder (one
    // queue, one spam filter, one background writer).
    let registry = &server.registry;
    let events = wharf_controllers::EventRecorder::new(registry.clone());
    let mut background = vec![
        tokio::spawn(wharf_controllers::gc::run(
            registry.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::replicaset::run(
            registry.clone(),
            events.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::deployment::run(
            registry.clone(),
            events.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::job::run(
            registry.clone(),
            events.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::endpoints::run(
            registry.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::disruption::run(
            registry.clone(),
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::scheduler::run(
            registry.clone(),
            args.scheduler_policy,
            events,
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::hpa::run(
            registry.clone(),
            Arc::new(ClusterMetrics(server.clone())),
            args.hpa_sync_period,
            server.stopping(),
        )),
        tokio::spawn(wharf_controllers::nodelifecycle::run(
            registry.clone(),
            wharf_controllers::nodelifecycle::NodeLifecycleConfig {
                grace: Duration::from_secs(args.node_monitor_grace_period),
            },
            server.stopping(),
        )),
    ];
    let mut node_summary = None;
    let mut managed_containerd = None;
    if mode == Mode::AllInOne {
        let api = Arc::new(wharf_apiserver::client::InProcessApi::new(
            server.registry.clone(),
            Some(artifacts),
        ));
        let stopping_server = server.clone();
        let stopping: node::Stopping = Arc::new(move || Box::pin(stopping_server.stopping()));
        let node = node::start(&args.node, &data_dir, api, stopping).await?;
        background.extend(node.tasks);
        node_summary = Some(node.summary);
        managed_containerd = node.managed_containerd;
    }
    server.set_ready(true);

    print_banner(
        &args,
        mode,
        &api_url,
        &kubeconfig_path,
        &data_dir,
        node_summary.as_deref(),
    );

    let app = wharf_apiserver::router(server.clone());
    let shutdown_server = server.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown_server.begin_shutdown();
    });
    let stopping = server.stopping();
    tokio::select! {
        result = serve => result.context("the API server failed")?,
        () = async {
            stopping.await;
            // Connections get a few seconds to finish; then we stop regardless.
            tokio::time::sleep(Duration::from_secs(5)).await;
        } => tracing::warn!("connections still open after 5 s; closing them"),
    }
    for task in background {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // A containerd Wharf started is stopped with it; containers it runs keep running under
    // their shims and are found again on the next start.
    drop(managed_containerd);
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(
    args: &ServeArgs,
    mode: Mode,
    api_url: &str,
    kubeconfig_path: &std::path::Path,
    data_dir: &std::path::Path,
    node: Option<&str>,
) {
    let what = match mode {
        Mode::AllInOne => "wharf up",
        Mode::ControlPlane => "wharf server",
    };
    println!("{what}: the Kubernetes API is ready");
    println!("  API:        {api_url}");
    println!("  kubeconfig: {}", kubeconfig_path.display());
    println!("  data dir:   {}", data_dir.display());
    if let Some(node) = node {
        println!("{node}");
    }
    let _ = args;
    println!();
    println!("Deploy a first function:");
    println!("  export KUBECONFIG={}", kubeconfig_path.display());
    println!("  make samples && make push-samples");
    println!("  kubectl apply -f samples/hello-http/");
    println!("  curl http://{}:30080/", args.node.gateway_addr.ip());
    println!("or, in one step: wharf deploy samples/out/hello-http.wasm");
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubernetes_flags() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
