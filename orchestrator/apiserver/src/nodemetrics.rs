//! Resource metrics: what each node's agent measures (its [`NodeSummary`], served on the agent
//! endpoint at [`SUMMARY_PATH`], like the kubelet's `/stats/summary`), and the
//! `metrics.k8s.io/v1beta1` API built from them, as metrics-server builds it from the kubelets —
//! so `kubectl top nodes|pods` works. The HPA reads the same summaries (plus the gateways'
//! request counts) through [`collect`].
//!
//! Usage is CPU in nanocores averaged over the summary's window and the memory working set in
//! bytes; for Wasm pods both are measured by the agent's host-side accounting, for containers
//! from their cgroups — one pipeline for both runtimes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::json_response;
use crate::registry::Registry;
use crate::resources;

/// The path of a node's summary on its agent endpoint.
pub const SUMMARY_PATH: &str = "/wharf/stats/summary";

/// The API group and version served here.
pub const GROUP: &str = "metrics.k8s.io";
/// See [`GROUP`].
pub const VERSION: &str = "v1beta1";

/// How long a collected set of summaries is reused (a burst of `kubectl top` and HPA reads
/// asks the agents once).
const REUSE: Duration = Duration::from_millis(500);
/// How long one agent may take to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one node's agent measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    /// The node's name.
    pub node: String,
    /// When the newest sample was taken (RFC 3339).
    pub timestamp: String,
    /// The window the rates are averaged over, in seconds.
    pub window_seconds: f64,
    /// The whole machine's CPU use, in nanocores.
    pub cpu_nano_cores: u64,
    /// The whole machine's memory in use (total less available), in bytes.
    pub memory_working_set_bytes: u64,
    /// Pods running on the node.
    pub pods: Vec<PodSummary>,
    /// HTTP requests this node's gateway routed, by pod (of any node).
    pub requests: Vec<PodRequests>,
}

/// Usage of one pod running on the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its running containers.
    pub containers: Vec<ContainerSummary>,
}

/// Usage of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    /// The container's name in the pod.
    pub name: String,
    /// CPU in nanocores over the window.
    pub cpu_nano_cores: u64,
    /// Working set in bytes.
    pub memory_working_set_bytes: u64,
}

/// Requests a gateway routed to one pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequests {
    /// The pod's uid.
    pub uid: String,
    /// Requests answered since the gateway started counting.
    pub total: u64,
    /// Requests per second over the window.
    pub per_second: f64,
    /// Requests in flight now.
    pub in_flight: u64,
}

/// One pod's usage across the cluster: its node's measurements and every gateway's requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodUsage {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Per container.
    pub containers: Vec<ContainerSummary>,
    /// Requests per second routed to it by all gateways.
    pub requests_per_second: f64,
    /// Requests in flight at it, over all gateways.
    pub requests_in_flight: u64,
    /// When its node took the sample (RFC 3339).
    pub timestamp: String,
    /// The window of the rates, in seconds.
    pub window_seconds: f64,
}

impl PodUsage {
    /// CPU of all its containers, in nanocores.
    pub fn cpu_nano_cores(&self) -> u64 {
        self.containers.iter().map(|c| c.cpu_nano_cores).sum()
    }

    /// Working set of all its containers, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.containers
            .iter()
            .map(|c| c.memory_working_set_bytes)
            .sum()
    }
}

/// Joins the nodes' summaries into per-pod usage: requests seen by several gateways add up.
pub fn pod_usage(summaries: &[NodeSummary]) -> Vec<PodUsage> {
    let mut requests: HashMap<&str, (f64, u64)> = HashMap::new();
    for summary in summaries {
        for r in &summary.requests {
            let entry = requests.entry(r.uid.as_str()).or_default();
            entry.0 += r.per_second;
            entry.1 += r.in_flight;
        }
    }
    summaries
        .iter()
        .flat_map(|summary| {
            summary.pods.iter().map(|pod| {
                let (per_second, in_flight) =
                    requests.get(pod.uid.as_str()).copied().unwrap_or_default();
                PodUsage {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    containers: pod.containers.clone(),
                    requests_per_second: per_second,
                    requests_in_flight: in_flight,
                    timestamp: summary.timestamp.clone(),
                    window_seconds: summary.window_seconds,
                }
            })
        })
        .collect()
}

/// Collects node summaries from every node's agent, reusing a collection younger than half a
/// second.
#[derive(Debug, Default)]
pub struct Collector {
    last: Mutex<Option<(Instant, Vec<NodeSummary>)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Collector {
    /// The summaries of every node that answered (nodes that did not are left out, as
    /// metrics-server leaves out nodes it cannot scrape).
    pub async fn collect(&self, registry: &Registry, http: &reqwest::Client) -> Vec<NodeSummary> {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        // One collection at a time; those that waited take its result.
        let _refreshing = self.refresh.lock().await;
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let summaries = collect(registry, http).await;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), summaries.clone()));
        summaries
    }

    fn fresh(&self) -> Option<Vec<NodeSummary>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < REUSE)
            .map(|(_, summaries)| summaries.clone())
    }
}

/// Asks every node's agent for its summary, all at once.
pub async fn collect(registry: &Registry, http: &reqwest::Client) -> Vec<NodeSummary> {
    let nodes = resources::find("", "v1", "nodes").expect("served");
    let Ok(list) = registry.list(nodes, None, &Default::default()).await else {
        return Vec::new();
    };
    let requests = list
        .items
        .iter()
        .filter_map(crate::podlogs::agent_endpoint)
        .map(|(address, port)| {
            let url = format!("http://{address}:{port}{SUMMARY_PATH}");
            async move {
                let response = http.get(&url).timeout(AGENT_TIMEOUT).send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.json::<NodeSummary>().await.ok()
            }
        });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The usage of every node, pod and container, and the requests routed to each pod, in the
/// Prometheus text format (appended to the API server's `/metrics`), with the kubelet's
/// resource metric names where there is one.
pub fn render_prometheus(summaries: &[NodeSummary]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let nodes = |f: fn(&NodeSummary) -> f64| {
        summaries
            .iter()
            .map(|s| (format!("node=\"{}\"", label(&s.node)), f(s)))
            .collect::<Vec<_>>()
    };
    family(
        "node_cpu_usage_cores",
        "gauge",
        "CPU of the node in cores, averaged over the agent's window.",
        nodes(|s| s.cpu_nano_cores as f64 / 1e9),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Memory in use on the node.",
        nodes(|s| s.memory_working_set_bytes as f64),
    );
    let containers = |f: fn(&ContainerSummary) -> f64| {
        let mut samples = Vec::new();
        for s in summaries {
            for pod in &s.pods {
                for c in &pod.containers {
                    samples.push((
                        format!(
                            "node=\"{}\",namespace=\"{}\",pod=\"{}\",container=\"{}\"",
                            label(&s.node),
                            label(&pod.namespace),
                            label(&pod.name),
                            label(&c.name)
                        ),
                        f(c),
                    ));
                }
            }
        }
        samples
    };
    family(
        "container_cpu_usage_cores",
        "gauge",
        "CPU of the container in cores (Wasm guests: host-side accounting; containers: cgroup).",
        containers(|c| c.cpu_nano_cores as f64 / 1e9),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Working set of the container (Wasm guests: live linear memories and tables).",
        containers(|c| c.memory_working_set_bytes as f64),
    );
    let usage = pod_usage(summaries);
    let pods = |f: fn(&PodUsage) -> f64| {
        usage
            .iter()
            .map(|p| {
                (
                    format!(
                        "namespace=\"{}\",pod=\"{}\"",
                        label(&p.namespace),
                        label(&p.name)
                    ),
                    f(p),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        "wharf_pod_http_requests_per_second",
        "gauge",
        "HTTP requests per second the gateways routed to the pod.",
        pods(|p| p.requests_per_second),
    );
    family(
        "wharf_pod_http_requests_in_flight",
        "gauge",
        "HTTP requests in flight at the pod.",
        pods(|p| p.requests_in_flight as f64),
    );
    out
}

/// CPU as a Kubernetes quantity, as metrics-server writes it (nanocores, `n`).
fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

/// Memory as a Kubernetes quantity, as metrics-server writes it (`Ki`).
fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn window(seconds: f64) -> String {
    format!("{}s", seconds.round() as u64)
}

/// A `NodeMetrics` object.
pub fn node_metrics(summary: &NodeSummary, labels: &Value) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": summary.node,
            "creationTimestamp": crate::meta::now_rfc3339(),
            "labels": labels,
        },
        "timestamp": summary.timestamp,
        "window": window(summary.window_seconds),
        "usage": {
            "cpu": cpu_quantity(summary.cpu_nano_cores),
            "memory": memory_quantity(summary.memory_working_set_bytes),
        },
    })
}

/// A `PodMetrics` object.
pub fn pod_metrics(pod: &PodUsage, labels: &Value) -> Value {
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "usage": {
                    "cpu": cpu_quantity(c.cpu_nano_cores),
                    "memory": memory_quantity(c.memory_working_set_bytes),
                },
            })
        })
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "creationTimestamp": crate::meta::now_rfc3339(),
            "labels": labels,
        },
        "timestamp": pod.timestamp,
        "window": window(pod.window_seconds),
        "containers": containers,
    })
}

/// `/apis/metrics.k8s.io/v1beta1`: the resource list.
pub fn resource_list() -> Response {
    let entry = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": format!("{GROUP}/{VERSION}"),
            "resources": [entry("nodes", "NodeMetrics", false), entry("pods", "PodMetrics", true)],
        }),
    )
}

/// The group's discovery document (in `/apis` and at `/apis/metrics.k8s.io`).
pub fn group_document() -> Value {
    let version = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// What a request under `/apis/metrics.k8s.io/v1beta1/` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `nodes` or `nodes/NAME`.
    Nodes(Option<&'a str>),
    /// `pods`, `namespaces/NS/pods` or `namespaces/NS/pods/NAME`.
    Pods(Option<&'a str>, Option<&'a str>),
}

/// Parses the path segments after the version.
pub fn target<'a>(rest: &[&'a str]) -> Result<Target<'a>, ApiError> {
    match rest {
        ["nodes"] => Ok(Target::Nodes(None)),
        ["nodes", name] => Ok(Target::Nodes(Some(name))),
        ["pods"] => Ok(Target::Pods(None, None)),
        ["namespaces", ns, "pods"] => Ok(Target::Pods(Some(ns), None)),
        ["namespaces", ns, "pods", name] => Ok(Target::Pods(Some(ns), Some(name))),
        _ => Err(ApiError::PathNotFound(
            "the server could not find the requested resource".into(),
        )),
    }
}

/// Serves a `metrics.k8s.io/v1beta1` read: the usage the agents measured, for the objects that
/// exist (and match `labelSelector`).
pub async fn serve(
    registry: &Registry,
    summaries: &[NodeSummary],
    target: Target<'_>,
    options: &crate::registry::ListOptions,
) -> Result<Response, ApiError> {
    match target {
        Target::Nodes(name) => {
            let nodes = resources::find("", "v1", "nodes").expect("served");
            let items = registry.list(nodes, None, options).await?.items;
            let mut out = Vec::new();
            for node in &items {
                let node_name = node["metadata"]["name"].as_str().unwrap_or("");
                if name.is_some_and(|n| n != node_name) {
                    continue;
                }
                if let Some(summary) = summaries.iter().find(|s| s.node == node_name) {
                    out.push(node_metrics(summary, &node["metadata"]["labels"]));
                }
            }
            single_or_list(name, "NodeMetrics", "nodes", out)
        }
        Target::Pods(namespace, name) => {
            let pods = resources::find("", "v1", "pods").expect("served");
            let items = registry.list(pods, namespace, options).await?.items;
            let usage: HashMap<String, PodUsage> = pod_usage(summaries)
                .into_iter()
                .map(|p| (p.uid.clone(), p))
                .collect();
            let mut out = Vec::new();
            for pod in &items {
                if name.is_some_and(|n| pod["metadata"]["name"] != n) {
                    continue;
                }
                let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
                if let Some(pod_usage) = usage.get(uid) {
                    out.push(pod_metrics(pod_usage, &pod["metadata"]["labels"]));
                }
            }
            single_or_list(name, "PodMetrics", "pods", out)
        }
    }
}

fn single_or_list(
    name: Option<&str>,
    kind: &str,
    plural: &str,
    mut items: Vec<Value>,
) -> Result<Response, ApiError> {
    match name {
        Some(name) => match items.pop() {
            Some(item) => Ok(json_response(StatusCode::OK, &item)),
            None => Err(ApiError::NotFound(crate::error::Subject {
                name: name.into(),
                group: GROUP.into(),
                resource: plural.into(),
                kind: kind.into(),
            })),
        },
        None => Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{kind}List"),
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": {},
                "items": items,
            }),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        node: &str,
        pods: &[(&str, u64, u64)],
        requests: &[(&str, f64, u64)],
    ) -> NodeSummary {
        NodeSummary {
            node: node.into(),
            timestamp: "2026-11-28T05:00:00Z".into(),
            window_seconds: 5.0,
            cpu_nano_cores: 1_500_000_000,
            memory_working_set_bytes: 3 << 30,
            pods: pods
                .iter()
                .map(|(uid, cpu, memory)| PodSummary {
                    namespace: "default".into(),
                    name: format!("pod-{uid}"),
                    uid: (*uid).into(),
                    containers: vec![ContainerSummary {
                        name: "app".into(),
                        cpu_nano_cores: *cpu,
                        memory_working_set_bytes: *memory,
                    }],
                })
                .collect(),
            requests: requests
                .iter()
                .map(|(uid, per_second, in_flight)| PodRequests {
                    uid: (*uid).into(),
                    total: 0,
                    per_second: *per_second,
                    in_flight: *in_flight,
                })
                .collect(),
        }
    }

    #[test]
    fn requests_from_every_gateway_add_up_on_the_pod_they_reached() {
        let summaries = [
            summary(
                "n1",
                &[("a", 250_000_000, 4096)],
                &[("a", 2.0, 1), ("b", 1.0, 0)],
            ),
            summary("n2", &[("b", 0, 0)], &[("a", 3.0, 2)]),
        ];
        let usage = pod_usage(&summaries);
        let a = usage.iter().find(|p| p.uid == "a").unwrap();
        assert_eq!((a.requests_per_second, a.requests_in_flight), (5.0, 3));
        assert_eq!(a.cpu_nano_cores(), 250_000_000);
        let b = usage.iter().find(|p| p.uid == "b").unwrap();
        assert_eq!((b.requests_per_second, b.requests_in_flight), (1.0, 0));
        assert_eq!(usage.len(), 2, "a gateway's counts never invent a pod");
    }

    #[test]
    fn metrics_objects_use_metrics_server_units() {
        let summaries = [summary("n1", &[("a", 250_000_000, 8192)], &[])];
        let pod = &pod_usage(&summaries)[0];
        let object = pod_metrics(pod, &json!({"app": "x"}));
        assert_eq!(object["kind"], "PodMetrics");
        assert_eq!(object["containers"][0]["usage"]["cpu"], "250000000n");
        assert_eq!(object["containers"][0]["usage"]["memory"], "8Ki");
        assert_eq!(object["window"], "5s");
        assert_eq!(object["metadata"]["labels"]["app"], "x");
        let node = node_metrics(&summaries[0], &Value::Null);
        assert_eq!(node["usage"]["memory"], format!("{}Ki", 3 << 20));
    }

    #[test]
    fn usage_is_exposed_in_the_prometheus_format() {
        let summaries = [summary("n1", &[("a", 250_000_000, 4096)], &[("a", 2.5, 1)])];
        let text = render_prometheus(&summaries);
        assert!(
            text.contains("# TYPE container_cpu_usage_cores gauge"),
            "{text}"
        );
        assert!(
            text.contains(
                "container_cpu_usage_cores{node=\"n1\",namespace=\"default\",pod=\"pod-a\",container=\"app\"} 0.25"
            ),
            "{text}"
        );
        assert!(
            text.contains("node_memory_working_set_bytes{node=\"n1\"} 3221225472"),
            "{text}"
        );
        assert!(
            text.contains(
                "wharf_pod_http_requests_per_second{namespace=\"default\",pod=\"pod-a\"} 2.5"
            ),
            "{text}"
        );
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn paths_name_nodes_or_pods_and_nothing_else() {
        assert_eq!(target(&["nodes"]).unwrap(), Target::Nodes(None));
        assert_eq!(target(&["nodes", "n1"]).unwrap(), Target::Nodes(Some("n1")));
        assert_eq!(target(&["pods"]).unwrap(), Target::Pods(None, None));
        assert_eq!(
            target(&["namespaces", "ns", "pods", "p"]).unwrap(),
            Target::Pods(Some("ns"), Some("p"))
        );
        assert!(target(&["namespaces", "ns", "services"]).is_err());
    }
}
