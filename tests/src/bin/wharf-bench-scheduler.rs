//! Scheduler benchmark: the pure placement of `wharf_controllers::scheduler::plan` over 1,000
//! simulated Nodes and 30,000 pending pods, in process (no API, no store).
//!
//! The cluster is varied so that every filter does work: nodes of three sizes in three zones,
//! some running only Wasm (`wharf.dev/runtimes: wasmtime`), some tainted, a few NotReady; pods
//! with different cpu and memory requests, most with a runtime class, some with a
//! `nodeSelector` or a toleration. The pods fit in about half the cluster, so nearly all are
//! placed and every placement is accounted before the next. The figure is pods placed per
//! second, the median of `--rounds` runs of one whole pass (parsing the nodes included).
//!
//! Then, end to end through the registry (unless `--registry-pods 0`): the same nodes and
//! `--registry-pods` pods are created in a registry over a fresh redb store in a temporary
//! directory, and one scheduler pass (`scheduler::pass`: list, decode, plan, and bind every pod
//! through `pods/binding`, each binding a durable write) is timed; the figure is pods bound per
//! second, checked afterwards by listing the pods.
//!
//! Prints Markdown table rows `| measurement | Wharf | peer | ratio |`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use wharf_apiserver::registry::{ListOptions, Registry, WriteOptions};
use wharf_apiserver::resources;
use wharf_controllers::scheduler::{self, Action, Policy};
use wharf_store::{RedbStore, Store, StoreConfig};

#[derive(Parser, Debug)]
struct Args {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pending pods to place.
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// Scoring policy: bin-packing or spread.
    #[arg(long, default_value = "bin-packing")]
    policy: String,
    /// Runs of the whole pass; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Pods for the pass through the registry and the store (0: skip it).
    #[arg(long, default_value_t = 3000)]
    registry_pods: usize,
}

fn nodes(count: usize) -> Result<Vec<Node>> {
    (0..count)
        .map(|i| {
            let (cpu, memory) = [("8", "32Gi"), ("16", "64Gi"), ("32", "128Gi")][i % 3];
            let runtimes = if i % 10 == 0 {
                "wasmtime"
            } else {
                "wasmtime.runc"
            };
            let taints = if i % 20 == 7 {
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
            } else {
                json!([])
            };
            let ready = if i % 100 == 42 { "False" } else { "True" };
            let value = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{i:05}"), "labels": {
                    "kubernetes.io/hostname": format!("node-{i:05}"),
                    "topology.kubernetes.io/zone": format!("zone-{}", (i / 3) % 3),
                    "wharf.dev/runtimes": runtimes,
                }},
                "spec": {"taints": taints},
                "status": {
                    "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": ready}],
                },
            });
            serde_json::from_value(value).context("a Node")
        })
        .collect()
}

fn pods(count: usize) -> Result<Vec<Pod>> {
    (0..count)
        .map(|i| {
            let cpu = format!("{}m", 50 + (i * 37) % 450);
            let memory = format!("{}Mi", 64 + (i * 53) % 448);
            let mut spec = json!({
                "containers": [{
                    "name": "app", "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                }],
            });
            match i % 10 {
                0..=6 => spec["runtimeClassName"] = json!("wasmtime"),
                7 => spec["runtimeClassName"] = json!("runc"),
                _ => {}
            }
            if i % 10 == 3 {
                spec["nodeSelector"] =
                    json!({"topology.kubernetes.io/zone": format!("zone-{}", i % 3)});
            }
            if i % 20 == 5 {
                spec["tolerations"] =
                    json!([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]);
            }
            let value = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("pod-{i:06}"), "namespace": format!("team-{}", i % 50),
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": spec,
            });
            serde_json::from_value(value).context("a Pod")
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let policy: Policy = args.policy.parse().map_err(anyhow::Error::msg)?;
    let nodes = nodes(args.nodes)?;
    let pods = pods(args.pods)?;
    let mut times: Vec<Duration> = Vec::new();
    let mut bound = 0;
    let mut unschedulable = None;
    for _ in 0..args.rounds.max(1) {
        let started = Instant::now();
        let actions = scheduler::plan(&nodes, &pods, policy);
        times.push(started.elapsed());
        bound = actions
            .iter()
            .filter(|a| matches!(a, Action::Bind { .. }))
            .count();
        unschedulable = actions.into_iter().find_map(|a| match a {
            Action::MarkUnschedulable { pod, message, .. } => Some((pod.name, message)),
            _ => None,
        });
    }
    if let Some((pod, message)) = unschedulable {
        eprintln!("scheduler: e.g. {pod}: {message}");
    }
    times.sort();
    let median = times[times.len() / 2];
    let rate = args.pods as f64 / median.as_secs_f64();
    eprintln!(
        "scheduler: {policy}: {bound} of {} pods placed on {} nodes; passes took {:?}",
        args.pods, args.nodes, times
    );
    println!(
        "| scheduler placement ({policy}), {} nodes, {} pods | {rate:.0} pods/s ({bound} placed, one pass {:.0} ms) | kube-scheduler documented ~100-300 pods/s at 5000 nodes | - |",
        args.nodes,
        args.pods,
        median.as_secs_f64() * 1000.0
    );
    if args.registry_pods > 0 {
        through_registry(&nodes, &pods[..args.registry_pods.min(pods.len())], policy).await?;
    }
    Ok(())
}

/// Creates the nodes and pods in a registry over a fresh store, and times one scheduler pass
/// that binds them all.
async fn through_registry(nodes: &[Node], pods: &[Pod], policy: Policy) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(
        dir.path().join("wharf.redb"),
        StoreConfig::default(),
    )?);
    let registry = Registry::new(store);
    let node_resource = resources::find("", "v1", "nodes").context("nodes are served")?;
    let pod_resource = resources::find("", "v1", "pods").context("pods are served")?;
    let namespaces = resources::find("", "v1", "namespaces").context("namespaces are served")?;
    let mut namespace_names: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.namespace.as_deref())
        .collect();
    namespace_names.sort_unstable();
    namespace_names.dedup();
    for name in namespace_names {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        registry
            .create(namespaces, None, namespace, &WriteOptions::default())
            .await
            .with_context(|| format!("creating namespace {name}"))?;
    }
    // Creations 64 at a time, so that they share commits; they are not what is timed.
    let creations = nodes
        .iter()
        .map(|node| (node_resource, None, serde_json::to_value(node)))
        .chain(pods.iter().map(|pod| {
            let mut value = serde_json::to_value(pod);
            if let Ok(value) = &mut value
                && let Some(metadata) = value["metadata"].as_object_mut()
            {
                // The server assigns uids and creation times.
                metadata.remove("uid");
                metadata.remove("creationTimestamp");
            }
            (pod_resource, pod.metadata.namespace.as_deref(), value)
        }));
    let results: Vec<Result<()>> = futures::stream::iter(creations)
        .map(|(resource, namespace, value)| {
            let registry = &registry;
            async move {
                registry
                    .create(resource, namespace, value?, &WriteOptions::default())
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;

    // As in `wharf up`: the Scheduled Events are queued during the pass and written by a
    // background task.
    let events = wharf_controllers::EventRecorder::new(registry.clone());
    let started = Instant::now();
    let outcome = scheduler::pass(&registry, policy, &events).await?;
    let elapsed = started.elapsed();
    let bound = registry
        .list(pod_resource, None, &ListOptions::default())
        .await?
        .items
        .iter()
        .filter(|p| p.pointer("/spec/nodeName").is_some())
        .count();
    eprintln!(
        "scheduler: through the registry: {bound} of {} pods bound in {elapsed:?} ({outcome:?})",
        pods.len()
    );
    if bound != pods.len() {
        bail!("only {bound} of {} pods were bound", pods.len());
    }
    println!(
        "| scheduler end to end through the registry ({policy}; list, plan, durable binds), {} nodes, {} pods | {:.0} pods/s (one pass {:.0} ms) | - | - |",
        nodes.len(),
        pods.len(),
        pods.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}
