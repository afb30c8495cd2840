//! `wharf agent`: a node that joins a remote `wharf server` — its runtimes, node agent and
//! gateway, talking to the server's Kubernetes API over HTTP like any client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::sync::watch;
use wharf_apiserver::client::HttpApi;

use crate::node::{self, NodeArgs, Stopping};
use crate::{kubeconfig, up};

/// Flags of `wharf agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The API server to join (e.g. `http://127.0.0.1:6443`); default: the kubeconfig's.
    #[arg(long)]
    pub server: Option<String>,
    /// A kubeconfig whose current context names the server.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where the node's state lives (pods, logs, caches, a managed containerd).
    #[arg(long, default_value = ".wharf-agent")]
    pub data_dir: PathBuf,
    /// The node's settings.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Runs the node until SIGTERM/Ctrl-C.
pub async fn run(args: AgentArgs) -> Result<()> {
    up::init_tracing();
    let server = match (&args.server, &args.kubeconfig) {
        (Some(server), _) => server.clone(),
        (None, Some(path)) => kubeconfig::read_server(path)?.0,
        (None, None) => bail!("say which server to join: --server URL or --kubeconfig FILE"),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let _lock = lock_data_dir(&data_dir)?;
    wait_for_server(&server).await?;

    let (stop, stopped) = watch::channel(false);
    let stopping: Stopping = Arc::new(move || {
        let mut stopped = stopped.clone();
        Box::pin(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
    });
    let api = Arc::new(HttpApi::new(&server));
    let node = node::start(&args.node, &data_dir, api, stopping).await?;
    println!("Wharf agent joined {server}\n{}", node.summary);
    up::shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    for task in node.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(node.managed_containerd);
    tracing::info!("stopped");
    Ok(())
}

/// Holds an exclusive lock on the data dir for as long as the agent runs: two agents on one
/// directory would run the same pods twice.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    let path = data_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(_) => bail!(
            "the data dir {} is in use by another wharf agent; stop it first or pass a different --data-dir",
            data_dir.display()
        ),
    }
}

/// Waits until the server answers `/readyz` (it may be starting too).
async fn wait_for_server(server: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{}/readyz", server.trim_end_matches('/'));
    for attempt in 0.. {
        match http.get(&url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            _ if attempt == 60 => bail!("the API server at {server} did not answer within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    unreachable!("the loop returns")
}
