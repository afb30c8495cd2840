//! Resource usage of the node and its pods (the kubelet's `/stats/summary`): every second the
//! sampler asks each runtime for the cumulative CPU time and the memory of every running
//! container, reads the machine's CPU and memory from `/proc`, and counts the requests the
//! node's gateway routed to each pod. Rates are taken over the last [`WINDOW`]. The summary is
//! served on the agent endpoint at [`SUMMARY_PATH`], where the API server reads it for
//! `metrics.k8s.io` (`kubectl top`) and the HPA.
//!
//! Both runtimes go through the same path: only [`Runtime::stats`] differs (host-side
//! accounting for Wasm guests, cgroups for containers).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use wharf_apiserver::nodemetrics::{
    ContainerSummary, NodeSummary, PodRequests, PodSummary, SUMMARY_PATH,
};
use wharf_runtime::{ContainerState, Runtime};

use crate::Agent;

/// How often usage is sampled.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The window rates are averaged over.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Requests a gateway routed, per pod (the node's gateway implements this).
pub trait RequestCounts: Send + Sync + 'static {
    /// `(pod uid, requests answered so far, requests in flight now)` for every pod counted.
    fn request_counts(&self) -> Vec<(String, u64, u64)>;
}

/// A cumulative counter's recent samples.
#[derive(Debug, Default)]
struct Series {
    samples: VecDeque<(Instant, u64)>,
}

impl Series {
    /// Adds a sample and forgets those older than the window (keeping one at its edge).
    fn push(&mut self, at: Instant, value: u64) {
        if self.samples.back().is_some_and(|(_, last)| value < *last) {
            // The counter started again (a restarted container, a reset gateway counter).
            self.samples.clear();
        }
        self.samples.push_back((at, value));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.duration_since(*t) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Increase per second between the oldest and newest sample (0 with fewer than two).
    fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => {
                (v1 - v0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// The time the samples span.
    fn span(&self) -> Duration {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, _)), Some((t1, _))) => t1.duration_since(*t0),
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct ContainerSeries {
    pod_uid: String,
    name: String,
    cpu_ns: Series,
    memory_bytes: u64,
    seen: bool,
}

#[derive(Debug, Default)]
struct Samples {
    containers: HashMap<String, ContainerSeries>,
    requests: HashMap<String, (Series, u64)>,
    node_cpu_ns: Series,
    node_memory_bytes: u64,
    taken_at: Option<SystemTime>,
}

/// Samples usage and keeps the recent history.
pub struct Sampler {
    agent: Arc<Agent>,
    requests: Option<Arc<dyn RequestCounts>>,
    samples: Mutex<Samples>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

/// Splits a container id (`POD_UID-CONTAINER-RESTARTS`, see the worker) into the pod's uid and
/// the container's name.
fn split_container_id(id: &str) -> Option<(&str, &str)> {
    let uid = id.get(..36)?;
    let rest = id.get(37..)?;
    let (name, restarts) = rest.rsplit_once('-')?;
    restarts.parse::<u32>().ok()?;
    Some((uid, name))
}

/// The machine's busy CPU time from `/proc/stat`'s first line, in nanoseconds.
fn node_cpu_ns(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// Memory in use from `/proc/meminfo`: MemTotal less MemAvailable, in bytes.
fn node_memory_bytes(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?) * 1024)
}

impl Sampler {
    /// A sampler of `agent`'s containers and, if given, its gateway's requests.
    pub fn new(agent: Arc<Agent>, requests: Option<Arc<dyn RequestCounts>>) -> Arc<Sampler> {
        Arc::new(Sampler {
            agent,
            requests,
            samples: Mutex::new(Samples::default()),
        })
    }

    /// Samples every [`INTERVAL`] until `stopping` resolves.
    pub async fn run(self: Arc<Self>, stopping: impl std::future::Future<Output = ()>) {
        tokio::pin!(stopping);
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stopping => return,
                _ = ticks.tick() => self.sample().await,
            }
        }
    }

    /// Takes one sample of everything.
    pub async fn sample(&self) {
        let mut measured = Vec::new();
        for runtime in self.agent.runtimes() {
            measured.extend(sample_runtime(runtime.as_ref()).await);
        }
        let node_cpu = tokio::fs::read_to_string("/proc/stat")
            .await
            .ok()
            .and_then(|s| node_cpu_ns(&s));
        let node_memory = tokio::fs::read_to_string("/proc/meminfo")
            .await
            .ok()
            .and_then(|s| node_memory_bytes(&s));
        let requests = self
            .requests
            .as_ref()
            .map(|r| r.request_counts())
            .unwrap_or_default();
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.taken_at = Some(SystemTime::now());
        for series in samples.containers.values_mut() {
            series.seen = false;
        }
        for (id, stats) in measured {
            let Some((uid, name)) = split_container_id(&id) else {
                continue;
            };
            let series = samples
                .containers
                .entry(id.clone())
                .or_insert_with(|| ContainerSeries {
                    pod_uid: uid.to_owned(),
                    name: name.to_owned(),
                    ..Default::default()
                });
            series.cpu_ns.push(now, stats.cpu_usage_ns);
            series.memory_bytes = stats.memory_bytes;
            series.seen = true;
        }
        samples.containers.retain(|_, series| series.seen);
        if let Some(cpu) = node_cpu {
            samples.node_cpu_ns.push(now, cpu);
        }
        if let Some(memory) = node_memory {
            samples.node_memory_bytes = memory;
        }
        let counted: std::collections::HashSet<&str> =
            requests.iter().map(|(uid, _, _)| uid.as_str()).collect();
        samples
            .requests
            .retain(|uid, _| counted.contains(uid.as_str()));
        for (uid, total, in_flight) in &requests {
            let entry = samples.requests.entry(uid.clone()).or_default();
            entry.0.push(now, *total);
            entry.1 = *in_flight;
        }
    }

    /// What the node measured, as the API server reads it.
    pub fn summary(&self) -> NodeSummary {
        let names = self.agent.pod_names();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut pods: HashMap<&str, PodSummary> = HashMap::new();
        for series in samples.containers.values() {
            let Some((namespace, name)) = names.get(&series.pod_uid) else {
                continue;
            };
            let pod = pods
                .entry(series.pod_uid.as_str())
                .or_insert_with(|| PodSummary {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    uid: series.pod_uid.clone(),
                    containers: Vec::new(),
                });
            pod.containers.push(ContainerSummary {
                name: series.name.clone(),
                cpu_nano_cores: series.cpu_ns.rate() as u64,
                memory_working_set_bytes: series.memory_bytes,
            });
        }
        let mut pods: Vec<PodSummary> = pods.into_values().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut requests: Vec<PodRequests> = samples
            .requests
            .iter()
            .map(|(uid, (series, in_flight))| PodRequests {
                uid: uid.clone(),
                total: series.samples.back().map_or(0, |(_, v)| *v),
                per_second: series.rate(),
                in_flight: *in_flight,
            })
            .collect();
        requests.sort_by(|a, b| a.uid.cmp(&b.uid));
        let window = samples.node_cpu_ns.span().max(INTERVAL);
        NodeSummary {
            node: self.agent.config.node_name.clone(),
            timestamp: samples
                .taken_at
                .map(wharf_apiserver::meta::rfc3339)
                .unwrap_or_else(wharf_apiserver::meta::now_rfc3339),
            window_seconds: window.as_secs_f64(),
            cpu_nano_cores: samples.node_cpu_ns.rate() as u64,
            memory_working_set_bytes: samples.node_memory_bytes,
            pods,
            requests,
        }
    }
}

/// Stats of every running container of one runtime.
async fn sample_runtime(runtime: &dyn Runtime) -> Vec<(String, wharf_runtime::ContainerStats)> {
    let mut out = Vec::new();
    for (id, state) in runtime.list() {
        if !matches!(state, ContainerState::Running) {
            continue;
        }
        match runtime.stats(&id).await {
            Ok(stats) => out.push((id, stats)),
            Err(error) => tracing::debug!(%id, %error, "no stats"),
        }
    }
    out
}

/// The summary endpoint, to merge into the agent's router.
pub fn router(sampler: Arc<Sampler>) -> Router {
    Router::new()
        .route(
            SUMMARY_PATH,
            get(|State(sampler): State<Arc<Sampler>>| async move { axum::Json(sampler.summary()) }),
        )
        .with_state(sampler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_name_their_pod_and_container() {
        let uid = "0b6c1a8e-6f7d-4c1e-9a51-3f2d9d7c4e10";
        assert_eq!(
            split_container_id(&format!("{uid}-my-app-3")),
            Some((uid, "my-app"))
        );
        assert_eq!(split_container_id("short-app-0"), None);
        assert_eq!(split_container_id(&format!("{uid}-app-x")), None);
    }

    #[test]
    fn rates_span_the_window_and_survive_counter_resets() {
        let start = Instant::now();
        let mut series = Series::default();
        assert_eq!(series.rate(), 0.0);
        for s in 0..=10u64 {
            // 0.5 s of CPU per second.
            series.push(start + Duration::from_secs(s), s * 500_000_000);
        }
        assert_eq!(series.span(), WINDOW);
        assert!((series.rate() - 500_000_000.0).abs() < 1.0);
        // A restarted container counts from zero again: no negative rate.
        series.push(start + Duration::from_secs(11), 1_000);
        assert_eq!(series.rate(), 0.0);
        series.push(start + Duration::from_secs(12), 2_000);
        assert!((series.rate() - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn node_usage_is_read_from_proc() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            node_cpu_ns(stat),
            Some((100 + 5 + 50 + 1 + 2 + 3) * 10_000_000)
        );
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(node_memory_bytes(meminfo), Some(4_000_000 * 1024));
        assert_eq!(node_memory_bytes("MemTotal: 1 kB\n"), None);
    }
}
