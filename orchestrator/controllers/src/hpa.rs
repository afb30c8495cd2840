//! The HorizontalPodAutoscaler controller (`autoscaling/v2`): scales Deployments and ReplicaSets
//! to keep their pods' usage near a target, following Kubernetes' podautoscaler.
//!
//! Every `sync_period`, for each HPA, [`run`] reads the scale target (`apps/v1` Deployment or
//! ReplicaSet: `spec.replicas` and `spec.selector`), the pods of the namespace that the selector
//! matches, and their usage from a [`MetricsSource`], and hands them to the pure [`plan`], which
//! decides as Kubernetes does:
//! - **metrics**: `Resource` cpu and memory with a target `Utilization` (of the sum of the
//!   containers' requests; a container without the request makes the metric fail with
//!   `FailedGetResourceMetric`) or `AverageValue`; `ContainerResource` the same, for pods whose
//!   only container is the named one (Wharf's usage is per pod); `Pods` metrics
//!   `http_requests_per_second` (alias `http_requests`) and `http_requests_in_flight` (alias
//!   `concurrency`) with a target `AverageValue`. No metrics means cpu at 80% utilization, the
//!   API default. `Object` and `External` metrics are not served.
//! - **replicas**: `ceil(readyPods * usage / target)` unless the ratio is within the tolerance
//!   (0.1, or the rules' `tolerance`); pods without metrics count as 100% of the target when
//!   scaling down and 0% when scaling up, pending pods (and, for cpu, pods not yet ready during
//!   their first 5 minutes, or never ready since 30 s after they started) as 0% when scaling up,
//!   and a change of direction after that filling cancels the scaling. The largest proposal of
//!   all metrics wins; a failed metric stops a scale down but not a scale up.
//! - **behavior**: stabilization (the lowest recommendation of the scale-up window, the highest
//!   of the scale-down window) and rate policies (`Pods`/`Percent` per `periodSeconds`, chosen
//!   by `selectPolicy` `Max`, `Min` or `Disabled`), then `[minReplicas, maxReplicas]`. Without
//!   `spec.behavior` the defaults apply: up, no stabilization and the larger of 100% or 4 pods
//!   per 15 s; down, 300 s stabilization and 100% per 15 s.
//! - **status**: `currentReplicas`, `desiredReplicas`, `currentMetrics`, `lastScaleTime`,
//!   `observedGeneration` and the conditions `AbleToScale`, `ScalingActive`, `ScalingLimited`
//!   with Kubernetes' reasons, written only when something changed (a condition keeps its
//!   `lastTransitionTime` while its status stays). A rescale is reported by a
//!   `SuccessfulRescale` Event (`New size: N; reason: ...`); failures by Warning Events, sent
//!   when the condition they explain changes rather than on every sync.
//!
//! **Scale to zero (a Wharf extension).** `minReplicas: 0` is allowed. Metrics alone never
//! scale below one replica; instead, when no pod of the target got an HTTP request
//! (`requests_per_second` and `requests_in_flight` both zero in every sample) for the idle
//! window, `behavior.scaleDown.stabilizationWindowSeconds` (300 s by default), the HPA scales
//! the target to zero. The window counts from the later of the last time the controller saw a
//! request and `status.lastScaleTime`; the controller starting, or seeing the target come back
//! from zero replicas, counts as a request, so a restart or a wake-up never leads straight
//! back to zero. At zero replicas the HPA does not scale up by itself (`ScalingActive=False`,
//! `ScaledToZero`): the gateway sets the scale to 1 when a request arrives, and the HPA takes
//! over from there. With `minReplicas` above zero, a target at zero replicas disables
//! autoscaling, as in Kubernetes (`ScalingDisabled`).
//!
//! Recommendations and recent scale events (for stabilization and rate policies) and the time
//! of the last request are kept in memory by the runner, as Kubernetes does, and passed to
//! [`plan`] as a [`History`], with the current time, so that the plan stays pure.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricIdentifier, MetricSpec,
    MetricStatus, MetricTarget, MetricValueStatus, PodsMetricStatus, ResourceMetricSource,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use wharf_apiserver::registry::{Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{ObjectKey, Selector, list_typed, quantity};

/// Usage of one pod (metrics.k8s.io plus the gateways' request counts).
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (empty if the source does not know it).
    pub uid: String,
    /// CPU in millicores, averaged over `window`.
    pub cpu_millis: f64,
    /// Working-set memory in bytes.
    pub memory_bytes: u64,
    /// HTTP requests per second the gateways routed to the pod, over `window`.
    pub requests_per_second: f64,
    /// HTTP requests in flight at the pod now.
    pub requests_in_flight: f64,
    /// When the sample was taken and over which window.
    pub timestamp: std::time::SystemTime,
    /// The window the sample averages over.
    pub window: std::time::Duration,
}

/// Where the HPA reads pod usage from.
pub trait MetricsSource: Send + Sync + 'static {
    /// Usage of the pods of `namespace` that have metrics (pods missing from the answer have none).
    fn pod_usage<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<PodUsage>, String>>;
}

/// Usage ratios this close to 1 do not scale (Kubernetes' `--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// During its first five minutes a pod's cpu is not trusted unless it is ready and was sampled
/// after becoming ready (Kubernetes' `--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that became unready within this long of starting has never been ready yet
/// (Kubernetes' `--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);
/// The default scale-down stabilization window, which is also the default idle window before
/// scaling to zero.
pub const DEFAULT_SCALE_DOWN_STABILIZATION: i64 = 300;
/// Scale events older than the longest allowed policy period are of no more use.
const LONGEST_POLICY_PERIOD: Duration = Duration::from_secs(1800);
/// The message of the `ScaledToZero` condition.
pub const SCALED_TO_ZERO_MESSAGE: &str =
    "scaled to zero: the first request to the workload starts a replica";

/// The scale of an HPA's target, as read from the Deployment or ReplicaSet.
#[derive(Clone, Debug)]
pub struct ScaleTarget {
    /// The target; its uid guards the scale write.
    pub key: ObjectKey,
    /// `Deployment` or `ReplicaSet`.
    pub kind: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// The target's pod selector.
    pub selector: Selector,
}

/// One past recommendation, for stabilization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recommendation {
    /// When it was made.
    pub at: SystemTime,
    /// The replicas it recommended.
    pub replicas: i32,
}

/// One past rescale, for the rate policies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleEvent {
    /// When it happened.
    pub at: SystemTime,
    /// By how many replicas the target grew or shrank.
    pub change: i32,
}

/// What the controller remembers of one HPA between syncs (in memory, as Kubernetes does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Recent recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Recent scale ups.
    pub scale_ups: Vec<ScaleEvent>,
    /// Recent scale downs.
    pub scale_downs: Vec<ScaleEvent>,
    /// The last time a request reached one of the target's pods (or the controller first saw
    /// the HPA, or saw its target come back from zero).
    pub last_activity: Option<SystemTime>,
    /// The target's replicas at the previous sync.
    pub last_seen_replicas: Option<i32>,
}

impl History {
    /// Records a rescale that was written, for the rate policies.
    pub fn record_scale(&mut self, from: i32, to: i32, now: SystemTime) {
        let event = ScaleEvent {
            at: now,
            change: (to - from).abs(),
        };
        let recent = |e: &ScaleEvent| {
            now.duration_since(e.at)
                .is_ok_and(|age| age <= LONGEST_POLICY_PERIOD)
                || e.at > now
        };
        self.scale_ups.retain(recent);
        self.scale_downs.retain(recent);
        if to > from {
            self.scale_ups.push(event);
        } else if to < from {
            self.scale_downs.push(event);
        }
    }
}

/// What [`plan`] works from.
pub struct Input<'a> {
    /// The HPA.
    pub hpa: &'a HorizontalPodAutoscaler,
    /// Its target's scale, or why it could not be read.
    pub target: Result<ScaleTarget, String>,
    /// Pods of the HPA's namespace (the plan keeps those the target's selector matches).
    pub pods: &'a [Pod],
    /// Usage of the namespace's pods, or why it could not be read.
    pub usage: Result<&'a [PodUsage], String>,
    /// The current time.
    pub now: SystemTime,
}

/// A rescale to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescale {
    /// The target.
    pub target: ObjectKey,
    /// Its kind (`Deployment` or `ReplicaSet`).
    pub kind: String,
    /// The replicas it has.
    pub from: i32,
    /// The replicas it should have.
    pub to: i32,
    /// Why, as the Event says it.
    pub reason: String,
}

/// An Event about the HPA.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// Kubernetes' reason (`SuccessfulRescale`, `FailedGetScale`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
}

/// What one sync of one HPA decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The scale write, if the replicas should change.
    pub rescale: Option<Rescale>,
    /// The new status, if it differs from the stored one.
    pub status: Option<HorizontalPodAutoscalerStatus>,
    /// Events to record.
    pub events: Vec<HpaEvent>,
    /// The history to keep for the next sync (scale events are added by the runner once the
    /// rescale is written, with [`History::record_scale`]).
    pub history: History,
}

/// How a direction's `selectPolicy` combines its policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Select {
    Max,
    Min,
    Disabled,
}

/// One direction's behavior, with Kubernetes' defaults filled in.
#[derive(Clone, Debug, PartialEq)]
struct Rules {
    window: i64,
    select: Select,
    /// (`Pods` or `Percent`, value, periodSeconds).
    policies: Vec<(bool, i32, i64)>,
    tolerance: f64,
}

/// The scale-up and scale-down rules of an HPA.
fn behavior_rules(hpa: &HorizontalPodAutoscaler) -> (Rules, Rules) {
    let behavior = hpa.spec.behavior.as_ref();
    let up = rules_of(
        behavior.and_then(|b| b.scale_up.as_ref()),
        0,
        vec![(true, 4, 15), (false, 100, 15)],
    );
    let down = rules_of(
        behavior.and_then(|b| b.scale_down.as_ref()),
        DEFAULT_SCALE_DOWN_STABILIZATION,
        vec![(false, 100, 15)],
    );
    (up, down)
}

fn rules_of(
    rules: Option<&HPAScalingRules>,
    default_window: i64,
    default_policies: Vec<(bool, i32, i64)>,
) -> Rules {
    let select = match rules.and_then(|r| r.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let policies = match rules.and_then(|r| r.policies.as_ref()) {
        Some(policies) if !policies.is_empty() => policies
            .iter()
            .map(|p| (p.type_ == "Pods", p.value, i64::from(p.period_seconds)))
            .collect(),
        _ => default_policies,
    };
    Rules {
        window: rules
            .and_then(|r| r.stabilization_window_seconds)
            .map_or(default_window, i64::from)
            .max(0),
        select,
        policies,
        tolerance: rules
            .and_then(|r| r.tolerance.as_ref())
            .and_then(|q| quantity::millicores(&q.0))
            .map_or(TOLERANCE, |milli| milli as f64 / 1000.0),
    }
}

/// The idle window after which a `minReplicas: 0` target scales to zero.
pub fn idle_window(hpa: &HorizontalPodAutoscaler) -> Duration {
    Duration::from_secs(behavior_rules(hpa).1.window as u64)
}

/// Whether a target has been idle long enough to scale to zero: every sample shows no request
/// and the idle window has passed since the last request seen or the last scale, whichever is
/// later.
pub fn is_idle(
    samples: &[&PodUsage],
    last_activity: Option<SystemTime>,
    last_scale: Option<SystemTime>,
    window: Duration,
    now: SystemTime,
) -> bool {
    let quiet = samples
        .iter()
        .all(|s| s.requests_per_second <= 0.0 && s.requests_in_flight <= 0.0);
    let since = match (last_activity, last_scale) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => match a.or(b) {
            Some(t) => t,
            // Nothing is known: assume a request just now rather than scale to zero blindly.
            None => return false,
        },
    };
    quiet && now.duration_since(since).is_ok_and(|idle| idle >= window)
}

/// Which usage a metric reads, in milli-units (millicores, millibytes, milli-requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Usage {
    Cpu,
    Memory,
    RequestsPerSecond,
    RequestsInFlight,
}

impl Usage {
    fn milli(self, sample: &PodUsage) -> f64 {
        match self {
            Usage::Cpu => sample.cpu_millis,
            Usage::Memory => sample.memory_bytes as f64 * 1000.0,
            Usage::RequestsPerSecond => sample.requests_per_second * 1000.0,
            Usage::RequestsInFlight => sample.requests_in_flight * 1000.0,
        }
    }

    fn of_resource(name: &str) -> Option<Usage> {
        match name {
            "cpu" => Some(Usage::Cpu),
            "memory" => Some(Usage::Memory),
            _ => None,
        }
    }

    fn of_pods_metric(name: &str) -> Option<Usage> {
        match name {
            "http_requests_per_second" | "http_requests" => Some(Usage::RequestsPerSecond),
            "http_requests_in_flight" | "concurrency" => Some(Usage::RequestsInFlight),
            _ => None,
        }
    }
}

/// Why a metric gave no proposal: the condition reason and the error.
#[derive(Clone, Debug, PartialEq)]
struct MetricError {
    reason: &'static str,
    message: String,
}

/// The target's pods sorted into Kubernetes' groups for one metric.
#[derive(Debug, Default)]
struct Grouped {
    /// Usage of the ready pods with metrics, by index into the pods.
    metrics: BTreeMap<usize, f64>,
    ready: usize,
    unready: Vec<usize>,
    missing: Vec<usize>,
}

/// Kubernetes' `groupPods`: deleted and failed pods are ignored, pending ones are unready, pods
/// without a sample are missing, and for cpu, pods whose readiness makes their sample
/// untrustworthy are unready.
fn group_pods(
    pods: &[&Pod],
    samples: &[Option<&PodUsage>],
    usage: Usage,
    now: SystemTime,
) -> Grouped {
    let mut grouped = Grouped::default();
    for (i, pod) in pods.iter().enumerate() {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" || phase == "Succeeded" {
            continue;
        }
        if phase == "Pending" {
            grouped.unready.push(i);
            continue;
        }
        let Some(sample) = samples[i] else {
            grouped.missing.push(i);
            continue;
        };
        if usage == Usage::Cpu && cpu_unready(pod, sample, now) {
            grouped.unready.push(i);
            continue;
        }
        grouped.ready += 1;
        grouped.metrics.insert(i, usage.milli(sample));
    }
    grouped
}

fn cpu_unready(pod: &Pod, sample: &PodUsage, now: SystemTime) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let started = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| to_system(t.0));
    let (Some(ready), Some(started)) = (ready, started) else {
        return true;
    };
    let transition = ready
        .last_transition_time
        .as_ref()
        .map_or(SystemTime::UNIX_EPOCH, |t| to_system(t.0));
    if started + CPU_INITIALIZATION_PERIOD > now {
        ready.status == "False" || sample.timestamp < transition + sample.window
    } else {
        ready.status == "False" && started + INITIAL_READINESS_DELAY > transition
    }
}

/// Kubernetes' replica calculation over grouped pods. `ratio` computes the usage ratio of a set
/// of (pod, usage); `fill_low` is the usage assumed for a pod without metrics when scaling down.
fn replicas_from_ratio(
    current: i32,
    mut grouped: Grouped,
    ratio: impl Fn(&BTreeMap<usize, f64>) -> f64,
    fill_low: impl Fn(usize) -> f64,
    tolerance: (f64, f64),
) -> i32 {
    let within = |r: f64| (1.0 - tolerance.1) <= r && r <= (1.0 + tolerance.0);
    let usage_ratio = ratio(&grouped.metrics);
    let scale_up_with_unready = !grouped.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && grouped.missing.is_empty() {
        if within(usage_ratio) {
            return current;
        }
        return (usage_ratio * grouped.ready as f64).ceil() as i32;
    }
    for &i in &grouped.missing {
        if usage_ratio < 1.0 {
            grouped.metrics.insert(i, fill_low(i));
        } else if usage_ratio > 1.0 {
            grouped.metrics.insert(i, 0.0);
        }
    }
    if scale_up_with_unready {
        for &i in &grouped.unready {
            grouped.metrics.insert(i, 0.0);
        }
    }
    let new_ratio = ratio(&grouped.metrics);
    if within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return current;
    }
    let replicas = (new_ratio * grouped.metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return current;
    }
    replicas
}

/// The sum of a pod's requests of `resource` in milli-units, over its containers (or the one
/// named), as Kubernetes' `calculatePodRequests`.
fn pod_request(pod: &Pod, resource: &str, container: Option<&str>) -> Result<f64, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut total = 0.0;
    let mut found = false;
    for c in containers {
        if container.is_some_and(|name| name != c.name) {
            continue;
        }
        found = true;
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| quantity::millicores(&q.0));
        match request {
            Some(milli) => total += milli as f64,
            None => {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {pod_name}",
                    c.name
                ));
            }
        }
    }
    if !found && let Some(name) = container {
        return Err(format!("container {name} not present in Pod {pod_name}"));
    }
    Ok(total)
}

/// A quantity for a value in milli-units, in Kubernetes' canonical decimal form.
fn milli_quantity(milli: f64) -> Quantity {
    let milli = milli.max(0.0).round() as i64;
    if milli % 1000 != 0 {
        return Quantity(format!("{milli}m"));
    }
    let mut value = milli / 1000;
    let mut suffix = 0;
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    while value != 0 && value % 1000 == 0 && suffix < SUFFIXES.len() - 1 {
        value /= 1000;
        suffix += 1;
    }
    Quantity(format!("{value}{}", SUFFIXES[suffix]))
}

/// One metric's proposal: replicas, the metric's name for Events, and its status.
type Proposal = (i32, String, MetricStatus);

/// Computes one metric's proposal for the target's pods and their samples.
fn replicas_for_metric(
    metric: &MetricSpec,
    current: i32,
    pods: &[&Pod],
    usage: &Result<Vec<Option<&PodUsage>>, String>,
    tolerance: (f64, f64),
    now: SystemTime,
) -> Result<Proposal, MetricError> {
    match metric.type_.as_str() {
        "Resource" | "ContainerResource" => {
            let container_metric = metric.type_ == "ContainerResource";
            let (name, target, container, reason) = if container_metric {
                let Some(source) = &metric.container_resource else {
                    return Err(MetricError {
                        reason: "FailedGetContainerResourceMetric",
                        message: "the ContainerResource metric has no containerResource".into(),
                    });
                };
                (
                    source.name.as_str(),
                    &source.target,
                    Some(source.container.as_str()),
                    "FailedGetContainerResourceMetric",
                )
            } else {
                let Some(ResourceMetricSource { name, target }) = &metric.resource else {
                    return Err(MetricError {
                        reason: "FailedGetResourceMetric",
                        message: "the Resource metric has no resource".into(),
                    });
                };
                (name.as_str(), target, None, "FailedGetResourceMetric")
            };
            let fail = |message: String| MetricError { reason, message };
            let what = match target.average_utilization {
                Some(_) => "utilization",
                None => "usage",
            };
            let Some(usage_kind) = Usage::of_resource(name) else {
                return Err(fail(format!(
                    "failed to get {name} {what}: Wharf's metrics have cpu and memory, not {name}"
                )));
            };
            let samples = usage.as_ref().map_err(|error| {
                fail(format!(
                    "failed to get {name} {what}: unable to get metrics for resource {name}: {error}"
                ))
            })?;
            if let Some(container) = container {
                for pod in pods {
                    let containers = pod
                        .spec
                        .as_ref()
                        .map(|s| s.containers.as_slice())
                        .unwrap_or_default();
                    if containers.len() != 1 || containers[0].name != container {
                        return Err(fail(format!(
                            "failed to get {name} {what}: per-container usage of {container} in Pod {} is not available: Wharf measures whole pods, so ContainerResource metrics work for single-container pods only",
                            pod.metadata.name.as_deref().unwrap_or("")
                        )));
                    }
                }
            }
            if pods.is_empty() {
                return Err(fail(format!(
                    "failed to get {name} {what}: no pods returned by selector while calculating replica count"
                )));
            }
            let label = match (container, target.average_utilization) {
                (Some(_), Some(_)) => {
                    format!("{name} container resource utilization (percentage of request)")
                }
                (Some(_), None) => format!("{name} container resource"),
                (None, Some(_)) => format!("{name} resource utilization (percentage of request)"),
                (None, None) => format!("{name} resource"),
            };
            let grouped = group_pods(pods, samples, usage_kind, now);
            if grouped.metrics.is_empty() {
                return Err(fail(format!(
                    "failed to get {name} {what}: did not receive metrics for targeted pods (pods might be unready)"
                )));
            }
            let raw_average = grouped.metrics.values().sum::<f64>() / grouped.metrics.len() as f64;
            let current_value: MetricValueStatus;
            let replicas = if let Some(target_utilization) = target.average_utilization {
                let requests: Vec<f64> = pods
                    .iter()
                    .map(|pod| pod_request(pod, name, container))
                    .collect::<Result<_, _>>()
                    .map_err(|e| fail(format!("failed to get {name} utilization: {e}")))?;
                let utilization_of = |metrics: &BTreeMap<usize, f64>| {
                    let used: f64 = metrics.values().sum();
                    let requested: f64 = metrics.keys().map(|&i| requests[i]).sum();
                    if requested <= 0.0 {
                        0.0
                    } else {
                        used * 100.0 / requested
                    }
                };
                let utilization = utilization_of(&grouped.metrics);
                if grouped.metrics.keys().all(|&i| requests[i] <= 0.0) {
                    return Err(fail(format!(
                        "failed to get {name} utilization: no metrics returned matched known pods"
                    )));
                }
                let target = f64::from(target_utilization.max(1));
                current_value = MetricValueStatus {
                    average_utilization: Some(utilization as i32),
                    average_value: Some(milli_quantity(raw_average)),
                    value: None,
                };
                let fallback = f64::from(target_utilization.max(100)) / 100.0;
                replicas_from_ratio(
                    current,
                    grouped,
                    |m| utilization_of(m) / target,
                    |i| requests[i] * fallback,
                    tolerance,
                )
            } else {
                let target_milli = target_average_milli(target).ok_or_else(|| {
                    fail(format!(
                        "failed to get {name} usage: the target has no averageValue"
                    ))
                })?;
                current_value = MetricValueStatus {
                    average_utilization: None,
                    average_value: Some(milli_quantity(raw_average)),
                    value: None,
                };
                plain_replicas(current, grouped, target_milli, tolerance)
            };
            let status = if let Some(container) = container {
                MetricStatus {
                    type_: "ContainerResource".into(),
                    container_resource: Some(ContainerResourceMetricStatus {
                        name: name.to_owned(),
                        container: container.to_owned(),
                        current: current_value,
                    }),
                    ..MetricStatus::default()
                }
            } else {
                MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricStatus {
                        name: name.to_owned(),
                        current: current_value,
                    }),
                    ..MetricStatus::default()
                }
            };
            Ok((replicas, label, status))
        }
        "Pods" => {
            let fail = |message: String| MetricError {
                reason: "FailedGetPodsMetric",
                message,
            };
            let Some(source) = &metric.pods else {
                return Err(fail("the Pods metric has no pods".into()));
            };
            let name = source.metric.name.as_str();
            let Some(usage_kind) = Usage::of_pods_metric(name) else {
                return Err(fail(format!(
                    "failed to get pods metric value: unable to get metric {name}: Wharf serves the pods metrics http_requests_per_second (alias http_requests) and http_requests_in_flight (alias concurrency)"
                )));
            };
            let samples = usage.as_ref().map_err(|error| {
                fail(format!(
                    "failed to get pods metric value: unable to get metric {name}: {error}"
                ))
            })?;
            let target_milli = target_average_milli(&source.target).ok_or_else(|| {
                fail(format!(
                    "failed to get pods metric value: the target of {name} has no averageValue"
                ))
            })?;
            if pods.is_empty() {
                return Err(fail(
                    "failed to get pods metric value: no pods returned by selector while calculating replica count".into(),
                ));
            }
            let grouped = group_pods(pods, samples, usage_kind, now);
            if grouped.metrics.is_empty() {
                return Err(fail(
                    "failed to get pods metric value: did not receive metrics for targeted pods (pods might be unready)".into(),
                ));
            }
            let average = grouped.metrics.values().sum::<f64>() / grouped.metrics.len() as f64;
            let replicas = plain_replicas(current, grouped, target_milli, tolerance);
            let status = MetricStatus {
                type_: "Pods".into(),
                pods: Some(PodsMetricStatus {
                    metric: MetricIdentifier {
                        name: name.to_owned(),
                        selector: source.metric.selector.clone(),
                    },
                    current: MetricValueStatus {
                        average_value: Some(milli_quantity(average)),
                        ..MetricValueStatus::default()
                    },
                }),
                ..MetricStatus::default()
            };
            Ok((replicas, format!("pods metric {name}"), status))
        }
        "Object" => Err(MetricError {
            reason: "FailedGetObjectMetric",
            message:
                "Wharf serves Resource, ContainerResource and Pods metrics, not Object metrics"
                    .into(),
        }),
        "External" => Err(MetricError {
            reason: "FailedGetExternalMetric",
            message:
                "Wharf serves Resource, ContainerResource and Pods metrics, not External metrics"
                    .into(),
        }),
        other => Err(MetricError {
            reason: "InvalidMetricSourceType",
            message: format!("unknown metric source type {other:?}"),
        }),
    }
}

fn target_average_milli(target: &MetricTarget) -> Option<f64> {
    target
        .average_value
        .as_ref()
        .and_then(|q| quantity::millicores(&q.0))
        .filter(|m| *m > 0)
        .map(|m| m as f64)
}

/// Kubernetes' `calcPlainMetricReplicas`: the average usage against a target average.
fn plain_replicas(current: i32, grouped: Grouped, target_milli: f64, tolerance: (f64, f64)) -> i32 {
    let ratio = |m: &BTreeMap<usize, f64>| {
        if m.is_empty() {
            0.0
        } else {
            m.values().sum::<f64>() / m.len() as f64 / target_milli
        }
    };
    replicas_from_ratio(current, grouped, ratio, |_| target_milli, tolerance)
}

/// Kubernetes' stabilization: the lowest recommendation of the scale-up window (if scaling up)
/// or the highest of the scale-down window (if scaling down), including this one, which is
/// added to the history.
fn stabilize(
    history: &mut Vec<Recommendation>,
    up: &Rules,
    down: &Rules,
    current: i32,
    desired: i32,
    now: SystemTime,
) -> (i32, &'static str, &'static str) {
    let (window, scaling_up) = if desired >= current {
        (up.window, true)
    } else {
        (down.window, false)
    };
    let cutoff = now - Duration::from_secs(window as u64);
    let mut recommendation = desired;
    for past in history.iter() {
        if past.at > cutoff {
            recommendation = if scaling_up {
                recommendation.min(past.replicas)
            } else {
                recommendation.max(past.replicas)
            };
        }
    }
    let longest = Duration::from_secs(up.window.max(down.window) as u64);
    history.retain(|r| r.at + longest >= now);
    history.push(Recommendation {
        at: now,
        replicas: desired,
    });
    if scaling_up {
        (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

fn change_in_period(events: &[ScaleEvent], period: i64, now: SystemTime) -> i32 {
    let cutoff = now - Duration::from_secs(period.max(0) as u64);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// Kubernetes' `convertDesiredReplicasWithBehaviorRate`: limits the change by the policies and
/// clamps to `[min, max]`, with the reason for the `ScalingLimited` condition.
#[allow(clippy::too_many_arguments)]
fn limit_rate(
    history: &History,
    up: &Rules,
    down: &Rules,
    min: i32,
    max: i32,
    current: i32,
    desired: i32,
    now: SystemTime,
) -> (i32, &'static str, &'static str) {
    let period_start = |period: i64| {
        current - change_in_period(&history.scale_ups, period, now)
            + change_in_period(&history.scale_downs, period, now)
    };
    if desired > current {
        let limit = match up.select {
            Select::Disabled => current,
            select => {
                let proposals = up.policies.iter().map(|&(pods, value, period)| {
                    let start = period_start(period);
                    if pods {
                        start + value
                    } else {
                        (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32
                    }
                });
                if select == Select::Min {
                    proposals.min().unwrap_or(current)
                } else {
                    proposals.max().unwrap_or(current)
                }
            }
        }
        .max(current);
        let (allowed, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let limit = match down.select {
            Select::Disabled => current,
            select => {
                let proposals = down.policies.iter().map(|&(pods, value, period)| {
                    let start = period_start(period);
                    if pods {
                        start - value
                    } else {
                        (f64::from(start) * (1.0 - f64::from(value) / 100.0)) as i32
                    }
                });
                if select == Select::Min {
                    proposals.max().unwrap_or(current)
                } else {
                    proposals.min().unwrap_or(current)
                }
            }
        }
        .min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// Sets a condition, keeping its `lastTransitionTime` if its status does not change.
fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    let condition = HorizontalPodAutoscalerCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(now.clone()),
        observed_generation: None,
    };
    match existing {
        Some(existing) => {
            let transition = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                Some(now.clone())
            };
            *existing = HorizontalPodAutoscalerCondition {
                last_transition_time: transition,
                ..condition
            };
        }
        None => conditions.push(condition),
    }
}

fn condition_of<'a>(
    status: Option<&'a HorizontalPodAutoscalerStatus>,
    type_: &str,
) -> Option<&'a HorizontalPodAutoscalerCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn to_system(timestamp: Timestamp) -> SystemTime {
    let seconds = timestamp.as_second();
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn to_time(time: SystemTime) -> Time {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Time(Timestamp::from_second(seconds as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The metrics an HPA scales on: its `spec.metrics`, or cpu at 80% utilization (the API's
/// default).
fn metrics_of(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    match hpa.spec.metrics.clone() {
        Some(metrics) if !metrics.is_empty() => metrics,
        _ => vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(80),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        }],
    }
}

/// Plans one sync of one HPA (Kubernetes' `reconcileAutoscaler`). Pure: everything it needs,
/// including the time and the history, is passed in.
pub fn plan(input: Input<'_>, history: &History) -> Plan {
    let Input {
        hpa,
        target,
        pods,
        usage,
        now,
    } = input;
    let mut history = history.clone();
    let mut events = Vec::new();
    let old_status = hpa.status.as_ref();
    let mut conditions = old_status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now_time = to_time(now);
    let spec = &hpa.spec;
    // A Warning Event accompanies a condition only when the condition changes, so that a
    // lasting problem is reported once rather than every sync.
    let warn_on_change = |events: &mut Vec<HpaEvent>, type_: &str, reason: &str, message: &str| {
        let old = condition_of(old_status, type_);
        if old.and_then(|c| c.reason.as_deref()) != Some(reason)
            || old.and_then(|c| c.message.as_deref()) != Some(message)
        {
            events.push(HpaEvent {
                type_: "Warning",
                reason: reason.to_owned(),
                message: message.to_owned(),
            });
        }
    };
    let status_with = |conditions: Vec<HorizontalPodAutoscalerCondition>,
                       current: Option<i32>,
                       desired: i32,
                       metrics: Option<Vec<MetricStatus>>,
                       rescaled: bool| {
        HorizontalPodAutoscalerStatus {
            observed_generation: hpa.metadata.generation,
            last_scale_time: if rescaled {
                Some(now_time.clone())
            } else {
                old_status.and_then(|s| s.last_scale_time.clone())
            },
            current_replicas: current,
            desired_replicas: desired,
            current_metrics: metrics.filter(|m| !m.is_empty()),
            conditions: Some(conditions),
        }
    };
    let changed =
        |status: HorizontalPodAutoscalerStatus| (old_status != Some(&status)).then_some(status);

    let target = match target {
        Ok(target) => target,
        Err(error) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {error}");
            warn_on_change(&mut events, "AbleToScale", "FailedGetScale", &message);
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                &message,
                &now_time,
            );
            let status = status_with(
                conditions,
                old_status.and_then(|s| s.current_replicas),
                old_status.map_or(0, |s| s.desired_replicas),
                old_status.and_then(|s| s.current_metrics.clone()),
                false,
            );
            return Plan {
                rescale: None,
                status: changed(status),
                events,
                history,
            };
        }
    };
    set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        &now_time,
    );
    let current = target.replicas;
    let min = spec.min_replicas.unwrap_or(1).max(0);
    let max = spec.max_replicas;
    let (up, down) = behavior_rules(hpa);

    // The pods of the target, and their samples.
    let namespace = hpa.metadata.namespace.as_deref().unwrap_or("");
    let target_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == namespace)
        .filter(|p| target.selector.matches(&p.metadata))
        .collect();
    let samples: Result<Vec<Option<&PodUsage>>, String> = usage.clone().map(|usage| {
        target_pods
            .iter()
            .map(|pod| {
                usage.iter().find(|u| {
                    u.namespace == namespace
                        && Some(u.name.as_str()) == pod.metadata.name.as_deref()
                        && (u.uid.is_empty() || Some(u.uid.as_str()) == pod.metadata.uid.as_deref())
                })
            })
            .collect()
    });

    // What the idle detection needs: the first sight of the HPA, a wake-up from zero and every
    // request seen count as activity.
    if history.recommendations.is_empty() {
        history.recommendations.push(Recommendation {
            at: now,
            replicas: current,
        });
    }
    let woke_up = history.last_seen_replicas == Some(0) && current > 0;
    let busy = samples.as_ref().is_ok_and(|s| {
        s.iter()
            .flatten()
            .any(|u| u.requests_per_second > 0.0 || u.requests_in_flight > 0.0)
    });
    if history.last_activity.is_none() || woke_up || busy {
        history.last_activity = Some(now);
    }
    history.last_seen_replicas = Some(current);

    // Only the branch that reads metrics reports them, as in Kubernetes.
    let mut metric_statuses: Option<Vec<MetricStatus>> = None;
    let desired: i32;
    let mut rescale_reason = String::new();
    if current == 0 && min != 0 {
        desired = 0;
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            &now_time,
        );
    } else if current == 0 {
        desired = 0;
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScaledToZero",
            SCALED_TO_ZERO_MESSAGE,
            &now_time,
        );
    } else if current > max {
        desired = max;
        rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
    } else if current < min {
        desired = min;
        rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
    } else {
        let tolerance = (up.tolerance, down.tolerance);
        let metrics = metrics_of(hpa);
        let mut statuses = Vec::new();
        let mut best: Option<(i32, String)> = None;
        let mut errors: Vec<MetricError> = Vec::new();
        for metric in &metrics {
            match replicas_for_metric(metric, current, &target_pods, &samples, tolerance, now) {
                Ok((replicas, name, status)) => {
                    statuses.push(status);
                    if best.as_ref().is_none_or(|(b, _)| replicas > *b) {
                        best = Some((replicas, name));
                    }
                }
                Err(error) => errors.push(error),
            }
        }
        metric_statuses = Some(statuses);
        let idle_window = Duration::from_secs(down.window as u64);
        let last_scale = old_status
            .and_then(|s| s.last_scale_time.as_ref())
            .map(|t| to_system(t.0));
        let target_samples: Vec<&PodUsage> = samples
            .as_ref()
            .map(|s| s.iter().flatten().copied().collect())
            .unwrap_or_default();
        let idle = min == 0
            && samples.is_ok()
            && is_idle(
                &target_samples,
                history.last_activity,
                last_scale,
                idle_window,
                now,
            );
        let failed = match &best {
            None => true,
            Some((replicas, _)) => !errors.is_empty() && *replicas < current,
        };
        if idle {
            desired = 0;
            rescale_reason = format!(
                "no request reached the workload for {}s (minReplicas is 0)",
                idle_window.as_secs()
            );
            set_condition(
                &mut conditions,
                "ScalingActive",
                true,
                "Idle",
                &format!(
                    "no request reached the workload for {}s: scaling to zero",
                    idle_window.as_secs()
                ),
                &now_time,
            );
            set_condition(
                &mut conditions,
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                &now_time,
            );
        } else if failed {
            let first = errors.first().cloned().unwrap_or(MetricError {
                reason: "FailedGetResourceMetric",
                message: "no metric gave a replica count".into(),
            });
            let message = format!(
                "the HPA was unable to compute the replica count: {}",
                first.message
            );
            let old_active = condition_of(old_status, "ScalingActive");
            if old_active.and_then(|c| c.message.as_deref()) != Some(message.as_str()) {
                for error in &errors {
                    events.push(HpaEvent {
                        type_: "Warning",
                        reason: error.reason.to_owned(),
                        message: error.message.clone(),
                    });
                }
                events.push(HpaEvent {
                    type_: "Warning",
                    reason: "FailedComputeMetricsReplicas".into(),
                    message: format!(
                        "invalid metrics ({} invalid out of {}), first error is: {}",
                        errors.len(),
                        metrics.len(),
                        first.message
                    ),
                });
            }
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                first.reason,
                &message,
                &now_time,
            );
            let status = status_with(
                conditions,
                Some(current),
                old_status.map_or(current, |s| s.desired_replicas),
                metric_statuses,
                false,
            );
            return Plan {
                rescale: None,
                status: changed(status),
                events,
                history,
            };
        } else {
            let (proposal, metric_name) = best.unwrap_or((current, String::new()));
            set_condition(
                &mut conditions,
                "ScalingActive",
                true,
                "ValidMetricFound",
                &format!(
                    "the HPA was able to successfully calculate a replica count from {metric_name}"
                ),
                &now_time,
            );
            if proposal > current {
                rescale_reason = format!("{metric_name} above target");
            } else if proposal < current {
                rescale_reason = "All metrics below target".into();
            }
            // Metrics alone never go below one replica; only idleness scales to zero.
            let floor = min.max(1);
            let (stabilized, reason, message) = stabilize(
                &mut history.recommendations,
                &up,
                &down,
                current,
                proposal,
                now,
            );
            if stabilized != proposal {
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    true,
                    reason,
                    message,
                    &now_time,
                );
            } else {
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    true,
                    "ReadyForNewScale",
                    "recommended size matches current size",
                    &now_time,
                );
            }
            let (limited, reason, message) =
                limit_rate(&history, &up, &down, floor, max, current, stabilized, now);
            set_condition(
                &mut conditions,
                "ScalingLimited",
                limited != stabilized,
                reason,
                message,
                &now_time,
            );
            desired = limited;
        }
    }

    let rescale = desired != current;
    if rescale {
        set_condition(
            &mut conditions,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {desired}"),
            &now_time,
        );
        events.push(HpaEvent {
            type_: "Normal",
            reason: "SuccessfulRescale".into(),
            message: format!("New size: {desired}; reason: {rescale_reason}"),
        });
    }
    let status = status_with(
        conditions,
        Some(current),
        if rescale { desired } else { current },
        metric_statuses,
        rescale,
    );
    Plan {
        rescale: rescale.then(|| Rescale {
            target: target.key.clone(),
            kind: target.kind.clone(),
            from: current,
            to: desired,
            reason: rescale_reason,
        }),
        status: changed(status),
        events,
        history,
    }
}

/// The status after a planned rescale failed to be written: `AbleToScale=False`
/// (`FailedUpdateScale`), the desired replicas back to the current ones and the previous
/// `lastScaleTime`.
pub fn status_after_failed_rescale(
    hpa: &HorizontalPodAutoscaler,
    planned: &HorizontalPodAutoscalerStatus,
    error: &str,
    now: SystemTime,
) -> HorizontalPodAutoscalerStatus {
    let mut status = planned.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conditions,
        "AbleToScale",
        false,
        "FailedUpdateScale",
        &format!("the HPA controller was unable to update the target scale: {error}"),
        &to_time(now),
    );
    status.conditions = Some(conditions);
    status.desired_replicas = status.current_replicas.unwrap_or(0);
    status.last_scale_time = hpa.status.as_ref().and_then(|s| s.last_scale_time.clone());
    status
}

fn hpas() -> &'static Resource {
    resources::find("autoscaling", "v2", "horizontalpodautoscalers").expect("HPAs are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

fn events_resource() -> &'static Resource {
    resources::find("", "v1", "events").expect("events are served")
}

fn target_resource(kind: &str) -> Option<&'static Resource> {
    match kind {
        "Deployment" => resources::find("apps", "v1", "deployments"),
        "ReplicaSet" => resources::find("apps", "v1", "replicasets"),
        _ => None,
    }
}

/// Reads the scale of an HPA's target, or says why it cannot.
async fn read_target(
    registry: &Registry,
    hpa: &HorizontalPodAutoscaler,
) -> Result<ScaleTarget, String> {
    let reference = &hpa.spec.scale_target_ref;
    let namespace = hpa.metadata.namespace.as_deref().unwrap_or("");
    let api_version = reference.api_version.as_deref().unwrap_or("apps/v1");
    let resource = target_resource(&reference.kind)
        .filter(|_| api_version == "apps/v1")
        .ok_or_else(|| {
            format!(
                "Wharf scales apps/v1 Deployments and ReplicaSets, not {} ({api_version})",
                reference.kind
            )
        })?;
    let value = registry
        .get(resource, Some(namespace), &reference.name)
        .await
        .map_err(|e| e.to_string())?;
    let (metadata, replicas, selector) = if reference.kind == "Deployment" {
        let d: Deployment = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let spec = d.spec;
        (d.metadata, spec.replicas.unwrap_or(1), Some(spec.selector))
    } else {
        let rs: ReplicaSet = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let spec = rs.spec;
        (rs.metadata, spec.replicas.unwrap_or(1), Some(spec.selector))
    };
    let key = ObjectKey::of(&metadata).ok_or("the target has no uid")?;
    Ok(ScaleTarget {
        key,
        kind: reference.kind.clone(),
        replicas,
        selector: Selector::new(selector.as_ref()),
    })
}

/// One sync of every HPA. `histories` (by HPA uid) is kept between syncs.
pub async fn pass(
    registry: &Registry,
    metrics: &dyn MetricsSource,
    histories: &mut HashMap<String, History>,
) -> Result<(), ApiError> {
    let all: Vec<HorizontalPodAutoscaler> = list_typed(registry, hpas(), None).await?;
    histories.retain(|uid, _| all.iter().any(|h| h.metadata.uid.as_deref() == Some(uid)));
    let mut by_namespace: BTreeMap<String, Vec<&HorizontalPodAutoscaler>> = BTreeMap::new();
    for hpa in &all {
        by_namespace
            .entry(hpa.metadata.namespace.clone().unwrap_or_default())
            .or_default()
            .push(hpa);
    }
    for (namespace, namespace_hpas) in by_namespace {
        let scope = std::collections::BTreeSet::from([namespace.clone()]);
        let namespace_pods: Vec<Pod> = list_typed(registry, pods(), Some(&scope)).await?;
        let usage = metrics.pod_usage(&namespace).await;
        for hpa in namespace_hpas {
            let (Some(uid), Some(name)) = (hpa.metadata.uid.clone(), hpa.metadata.name.clone())
            else {
                continue;
            };
            let target = read_target(registry, hpa).await;
            let now = SystemTime::now();
            let history = histories.remove(&uid).unwrap_or_default();
            let plan = plan(
                Input {
                    hpa,
                    target,
                    pods: &namespace_pods,
                    usage: usage.as_deref().map_err(Clone::clone),
                    now,
                },
                &history,
            );
            let mut history = plan.history;
            let mut status = plan.status;
            let mut events = plan.events;
            if let Some(rescale) = &plan.rescale {
                match write_scale(registry, rescale).await {
                    Ok(()) => history.record_scale(rescale.from, rescale.to, now),
                    Err(error) => {
                        let error = error.to_string();
                        tracing::warn!(hpa = name, %error, "cannot rescale the target");
                        events.retain(|e| e.reason != "SuccessfulRescale");
                        events.push(HpaEvent {
                            type_: "Warning",
                            reason: "FailedRescale".into(),
                            message: format!(
                                "New size: {}; reason: {}; error: {error}",
                                rescale.to, rescale.reason
                            ),
                        });
                        let planned = status
                            .clone()
                            .unwrap_or_else(|| hpa.status.clone().unwrap_or_default());
                        status = Some(status_after_failed_rescale(hpa, &planned, &error, now));
                    }
                }
            }
            histories.insert(uid.clone(), history);
            let key = ObjectKey {
                namespace: namespace.clone(),
                name: name.clone(),
                uid,
            };
            if let Some(status) = status.filter(|s| hpa.status.as_ref() != Some(s)) {
                let body = json!({
                    "metadata": {"name": key.name, "uid": key.uid},
                    "status": status,
                });
                let result = registry
                    .update(
                        hpas(),
                        Some(&namespace),
                        &key.name,
                        body,
                        Part::Status,
                        &WriteOptions::default(),
                    )
                    .await;
                if let Err(error) = result {
                    tracing::warn!(hpa = key.name, %error, "cannot update HPA status");
                }
            }
            for event in events {
                if let Err(error) = registry
                    .create(
                        events_resource(),
                        Some(&namespace),
                        event_object(&key, &event),
                        &WriteOptions::default(),
                    )
                    .await
                {
                    tracing::warn!(hpa = key.name, %error, "cannot record an event");
                }
            }
        }
    }
    Ok(())
}

/// Writes `spec.replicas` of the target, guarded by its uid.
async fn write_scale(registry: &Registry, rescale: &Rescale) -> Result<(), ApiError> {
    let resource = target_resource(&rescale.kind)
        .ok_or_else(|| ApiError::Internal(format!("cannot scale a {}", rescale.kind)))?;
    let patch = json!({
        "metadata": {"uid": rescale.target.uid},
        "spec": {"replicas": rescale.to},
    });
    registry
        .patch(
            resource,
            Some(&rescale.target.namespace),
            &rescale.target.name,
            PatchType::Merge,
            &patch,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// An Event about the HPA, named as Kubernetes' event recorder names events.
fn event_object(hpa: &ObjectKey, event: &HpaEvent) -> serde_json::Value {
    const COMPONENT: &str = "horizontal-pod-autoscaler";
    let now = meta::now_rfc3339();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{nanos:x}", hpa.name), "namespace": hpa.namespace},
        "involvedObject": {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "namespace": hpa.namespace, "name": hpa.name, "uid": hpa.uid,
        },
        "reason": event.reason,
        "message": event.message,
        "type": event.type_,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

/// Runs the HPA controller until `stopping` resolves: a sync of every HPA each `sync_period`
/// (Kubernetes' `--horizontal-pod-autoscaler-sync-period`, 15 s by default).
pub async fn run(
    registry: Registry,
    metrics: Arc<dyn MetricsSource>,
    sync_period: Duration,
    stopping: impl Future<Output = ()>,
) {
    tokio::pin!(stopping);
    let mut histories: HashMap<String, History> = HashMap::new();
    let mut ticks = tokio::time::interval(sync_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopping => return,
            _ = ticks.tick() => {
                let sync = pass(&registry, metrics.as_ref(), &mut histories);
                tokio::select! {
                    () = &mut stopping => return,
                    result = sync => if let Err(error) = result {
                        tracing::warn!(%error, "HPA sync failed");
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::Value;

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn ago(seconds: u64) -> SystemTime {
        now() - Duration::from_secs(seconds)
    }

    fn time(seconds_ago: u64) -> String {
        meta::rfc3339(ago(seconds_ago))
    }

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    /// An HPA of Deployment `web` (min 1, max 10, cpu at 50%), with `extra` merged into it.
    fn autoscaler(extra: Value) -> HorizontalPodAutoscaler {
        let mut value = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "uid": "hpa-uid", "generation": 2},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn with_metrics(metrics: Value) -> Value {
        json!({"spec": {"metrics": metrics}})
    }

    fn target(replicas: i32) -> ScaleTarget {
        let selector: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        ScaleTarget {
            key: ObjectKey {
                namespace: "default".into(),
                name: "web".into(),
                uid: "deploy-uid".into(),
            },
            kind: "Deployment".into(),
            replicas,
            selector: Selector::new(Some(&selector)),
        }
    }

    /// A running pod of `web`, started 10 minutes ago and ready for 9, requesting 100m cpu and
    /// 100Mi memory, with `extra` merged into it.
    fn pod(name: &str, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]},
            "status": {
                "phase": "Running", "startTime": time(600),
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": time(540)}],
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn pods(count: usize) -> Vec<Pod> {
        (1..=count)
            .map(|i| pod(&format!("web-{i}"), json!({})))
            .collect()
    }

    fn usage(name: &str, cpu_millis: f64, memory_mib: u64, rps: f64) -> PodUsage {
        PodUsage {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            cpu_millis,
            memory_bytes: memory_mib << 20,
            requests_per_second: rps,
            requests_in_flight: 0.0,
            timestamp: now(),
            window: Duration::from_secs(30),
        }
    }

    /// Usage of pods `web-1` ... with these cpu millicores (and one request per second each).
    fn cpu(millis: &[f64]) -> Vec<PodUsage> {
        millis
            .iter()
            .enumerate()
            .map(|(i, m)| usage(&format!("web-{}", i + 1), *m, 50, 1.0))
            .collect()
    }

    fn plan_with(
        hpa: &HorizontalPodAutoscaler,
        replicas: i32,
        pods: &[Pod],
        usage: &[PodUsage],
        history: &History,
    ) -> Plan {
        plan(
            Input {
                hpa,
                target: Ok(target(replicas)),
                pods,
                usage: Ok(usage),
                now: now(),
            },
            history,
        )
    }

    /// A history as after a first sync a while ago, with the given recommendations.
    fn seen(recommendations: &[(u64, i32)]) -> History {
        History {
            recommendations: recommendations
                .iter()
                .map(|&(seconds_ago, replicas)| Recommendation {
                    at: ago(seconds_ago),
                    replicas,
                })
                .collect(),
            last_activity: Some(ago(1)),
            last_seen_replicas: Some(1),
            ..History::default()
        }
    }

    fn condition(plan: &Plan, type_: &str) -> (String, String, String) {
        let c = plan
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {plan:?}"));
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    }

    fn new_size(plan: &Plan) -> Option<i32> {
        plan.rescale.as_ref().map(|r| r.to)
    }

    #[test]
    fn cpu_above_target_scales_up_limited_by_the_default_rate() {
        // 2 pods at 200% of their request against a 50% target: 8 wanted, but the default
        // scale-up policies allow max(2 + 4 pods, 2 * 200%) = 6 per 15 s.
        let hpa = autoscaler(json!({}));
        let plan = plan_with(&hpa, 2, &pods(2), &cpu(&[200.0, 200.0]), &seen(&[]));
        let rescale = plan.rescale.clone().unwrap();
        assert_eq!((rescale.from, rescale.to), (2, 6));
        assert_eq!(rescale.target.uid, "deploy-uid");
        assert_eq!(
            plan.events,
            [HpaEvent {
                type_: "Normal",
                reason: "SuccessfulRescale".into(),
                message: "New size: 6; reason: cpu resource utilization (percentage of request) above target".into(),
            }]
        );
        let status = plan.status.clone().unwrap();
        assert_eq!(status.current_replicas, Some(2));
        assert_eq!(status.desired_replicas, 6);
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.last_scale_time, Some(to_time(now())));
        let current = &status.current_metrics.as_ref().unwrap()[0];
        let resource = current.resource.as_ref().unwrap();
        assert_eq!(resource.name, "cpu");
        assert_eq!(resource.current.average_utilization, Some(200));
        assert_eq!(
            resource.current.average_value,
            Some(Quantity("200m".into()))
        );
        assert_eq!(condition(&plan, "AbleToScale").1, "SucceededRescale");
        assert_eq!(condition(&plan, "ScalingActive").1, "ValidMetricFound");
        assert_eq!(
            condition(&plan, "ScalingLimited"),
            (
                "True".into(),
                "ScaleUpLimit".into(),
                "the desired replica count is increasing faster than the maximum scale rate".into()
            )
        );
    }

    #[test]
    fn usage_within_the_tolerance_keeps_the_replicas() {
        // 54% against 50%: a ratio of 1.08, within 0.1 of 1.
        let hpa = autoscaler(json!({}));
        let plan = plan_with(&hpa, 3, &pods(3), &cpu(&[54.0, 54.0, 54.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
        assert!(plan.events.is_empty());
        assert_eq!(plan.status.as_ref().unwrap().desired_replicas, 3);
        assert_eq!(condition(&plan, "AbleToScale").1, "ReadyForNewScale");
        assert_eq!(condition(&plan, "ScalingLimited").1, "DesiredWithinRange");
        // 56% is outside the band: ceil(3 * 1.12) = 4.
        let plan = plan_with(&hpa, 3, &pods(3), &cpu(&[56.0, 56.0, 56.0]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(4));
    }

    #[test]
    fn a_behavior_tolerance_overrides_the_default() {
        let hpa = autoscaler(json!({"spec": {"behavior": {"scaleUp": {"tolerance": "0.2"}}}}));
        let plan = plan_with(&hpa, 3, &pods(3), &cpu(&[56.0, 56.0, 56.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
    }

    #[test]
    fn memory_average_value_scales_on_the_average_usage() {
        let hpa = autoscaler(with_metrics(json!([{"type": "Resource", "resource": {
            "name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}])));
        let usage = vec![
            usage("web-1", 10.0, 300, 0.0),
            usage("web-2", 10.0, 100, 0.0),
        ];
        let plan = plan_with(&hpa, 2, &pods(2), &usage, &seen(&[]));
        assert_eq!(new_size(&plan), Some(4));
        assert_eq!(
            plan.events[0].message,
            "New size: 4; reason: memory resource above target"
        );
        let status = plan.status.unwrap();
        let resource = status.current_metrics.unwrap()[0].resource.clone().unwrap();
        assert_eq!(resource.current.average_utilization, None);
        assert_eq!(
            resource.current.average_value,
            Some(Quantity((200u64 << 20).to_string()))
        );
    }

    #[test]
    fn requests_per_second_pods_metric_scales_on_the_average() {
        let hpa = autoscaler(with_metrics(json!([{"type": "Pods", "pods": {
            "metric": {"name": "http_requests_per_second"},
            "target": {"type": "AverageValue", "averageValue": "10"}}}])));
        let usage = vec![
            usage("web-1", 10.0, 10, 20.0),
            usage("web-2", 10.0, 10, 25.0),
            usage("web-3", 10.0, 10, 15.0),
        ];
        let plan = plan_with(&hpa, 3, &pods(3), &usage, &seen(&[]));
        assert_eq!(new_size(&plan), Some(6));
        assert_eq!(
            plan.events[0].message,
            "New size: 6; reason: pods metric http_requests_per_second above target"
        );
        let metric = plan.status.unwrap().current_metrics.unwrap()[0].clone();
        assert_eq!(metric.type_, "Pods");
        let pods_status = metric.pods.unwrap();
        assert_eq!(pods_status.metric.name, "http_requests_per_second");
        assert_eq!(
            pods_status.current.average_value,
            Some(Quantity("20".into()))
        );
    }

    #[test]
    fn concurrency_is_an_alias_of_requests_in_flight() {
        let hpa = autoscaler(with_metrics(json!([{"type": "Pods", "pods": {
            "metric": {"name": "concurrency"},
            "target": {"type": "AverageValue", "averageValue": "500m"}}}])));
        let mut samples = cpu(&[10.0, 10.0]);
        for sample in &mut samples {
            sample.requests_in_flight = 2.0;
        }
        let plan = plan_with(&hpa, 2, &pods(2), &samples, &seen(&[]));
        // 2 in flight per pod against 0.5: 8 wanted, the default rate allows 6.
        assert_eq!(new_size(&plan), Some(6));
        let metric = plan.status.unwrap().current_metrics.unwrap()[0].clone();
        assert_eq!(
            metric.pods.unwrap().current.average_value,
            Some(Quantity("2".into()))
        );
    }

    #[test]
    fn an_unknown_pods_metric_names_the_supported_ones() {
        let hpa = autoscaler(with_metrics(json!([{"type": "Pods", "pods": {
            "metric": {"name": "queue_length"},
            "target": {"type": "AverageValue", "averageValue": "10"}}}])));
        let plan = plan_with(&hpa, 2, &pods(2), &cpu(&[10.0, 10.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
        let (status, reason, message) = condition(&plan, "ScalingActive");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedGetPodsMetric")
        );
        assert!(message.contains("queue_length"), "{message}");
        assert!(
            message.contains("http_requests_per_second (alias http_requests)")
                && message.contains("http_requests_in_flight (alias concurrency)"),
            "{message}"
        );
        let reasons: Vec<&str> = plan.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["FailedGetPodsMetric", "FailedComputeMetricsReplicas"]
        );
    }

    #[test]
    fn a_container_without_a_cpu_request_fails_the_utilization_metric() {
        let hpa = autoscaler(json!({}));
        let mut pods = pods(2);
        pods[1] = pod(
            "web-2",
            json!({"spec": {"containers": [{"name": "app", "image": "app:1"}]}}),
        );
        let plan = plan_with(&hpa, 2, &pods, &cpu(&[200.0, 200.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
        let (status, reason, message) = condition(&plan, "ScalingActive");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedGetResourceMetric")
        );
        assert_eq!(
            message,
            "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod web-2"
        );
        assert_eq!(plan.events[0].reason, "FailedGetResourceMetric");
        assert_eq!(
            plan.events[1].message,
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization: missing request for cpu in container app of Pod web-2"
        );
        // The same failure at the next sync is not reported again.
        let mut failed = hpa.clone();
        failed.status = plan.status.clone();
        let again = plan_with(&failed, 2, &pods, &cpu(&[200.0, 200.0]), &seen(&[]));
        assert!(again.events.is_empty(), "{:?}", again.events);
        assert_eq!(again.status, None);
    }

    #[test]
    fn the_largest_proposal_of_several_metrics_wins() {
        let hpa = autoscaler(with_metrics(json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Pods", "pods": {"metric": {"name": "http_requests"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
        ])));
        // cpu wants 2 * 60/50 -> 3; requests want 2 * 2/1 = 4.
        let mut samples = cpu(&[60.0, 60.0]);
        for sample in &mut samples {
            sample.requests_per_second = 2.0;
        }
        let plan = plan_with(&hpa, 2, &pods(2), &samples, &seen(&[]));
        assert_eq!(new_size(&plan), Some(4));
        assert_eq!(
            plan.events[0].message,
            "New size: 4; reason: pods metric http_requests above target"
        );
        assert_eq!(plan.status.unwrap().current_metrics.unwrap().len(), 2);
    }

    #[test]
    fn a_failed_metric_blocks_a_scale_down_but_not_a_scale_up() {
        let hpa = autoscaler(with_metrics(json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "1"}}},
        ])));
        let up = plan_with(&hpa, 2, &pods(2), &cpu(&[100.0, 100.0]), &seen(&[]));
        assert_eq!(new_size(&up), Some(4));
        let down = plan_with(&hpa, 4, &pods(4), &cpu(&[5.0; 4]), &seen(&[]));
        assert_eq!(down.rescale, None);
        assert_eq!(
            condition(&down, "ScalingActive").1,
            "FailedGetExternalMetric"
        );
    }

    #[test]
    fn replicas_are_clamped_to_min_and_max() {
        // Far above target with a generous rate: limited by maxReplicas.
        let hpa_max = autoscaler(json!({"spec": {"maxReplicas": 5}}));
        let plan = plan_with(&hpa_max, 4, &pods(4), &cpu(&[500.0; 4]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(5));
        assert_eq!(condition(&plan, "ScalingLimited").1, "TooManyReplicas");
        // Far below target, without stabilization: limited by minReplicas.
        let hpa_min = autoscaler(json!({"spec": {"minReplicas": 2,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}));
        let plan = plan_with(&hpa_min, 4, &pods(4), &cpu(&[1.0; 4]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(2));
        assert_eq!(condition(&plan, "ScalingLimited").1, "TooFewReplicas");
        assert_eq!(
            plan.events[0].message,
            "New size: 2; reason: All metrics below target"
        );
        // Outside the range to begin with: straight to the bound.
        let plan = plan_with(&hpa_min, 1, &pods(1), &cpu(&[50.0]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(2));
        assert_eq!(
            plan.events[0].message,
            "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
        );
        let plan = plan_with(&hpa_max, 8, &pods(8), &cpu(&[50.0; 8]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(5));
        assert_eq!(
            plan.events[0].message,
            "New size: 5; reason: Current number of replicas above Spec.MaxReplicas"
        );
    }

    #[test]
    fn scale_down_stabilization_keeps_the_highest_recommendation_of_the_window() {
        let hpa = autoscaler(json!({}));
        // 4 pods at 10% of 50%: 1 wanted; 200 s ago 4 was recommended, within the default 300 s.
        let history = seen(&[(200, 4), (100, 3)]);
        let plan = plan_with(&hpa, 4, &pods(4), &cpu(&[10.0; 4]), &history);
        assert_eq!(plan.rescale, None);
        assert_eq!(condition(&plan, "AbleToScale").1, "ScaleDownStabilized");
        assert_eq!(plan.history.recommendations.last().unwrap().replicas, 1);
        // Once the 4 has left the window, the highest left (3) applies.
        let history = seen(&[(400, 4), (100, 3)]);
        let plan = plan_with(&hpa, 4, &pods(4), &cpu(&[10.0; 4]), &history);
        assert_eq!(new_size(&plan), Some(3));
        // And the recommendation older than every window is dropped from the history.
        assert!(
            plan.history
                .recommendations
                .iter()
                .all(|r| r.at >= ago(300))
        );
    }

    #[test]
    fn scale_up_stabilization_keeps_the_lowest_recommendation_of_the_window() {
        let hpa = autoscaler(
            json!({"spec": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}}}),
        );
        let history = seen(&[(30, 2)]);
        let plan = plan_with(&hpa, 2, &pods(2), &cpu(&[100.0, 100.0]), &history);
        assert_eq!(plan.rescale, None);
        assert_eq!(condition(&plan, "AbleToScale").1, "ScaleUpStabilized");
    }

    #[test]
    fn policies_limit_each_step_and_count_recent_changes() {
        let hpa = autoscaler(json!({"spec": {"behavior": {"scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }}}}));
        let plan = plan_with(&hpa, 5, &pods(5), &cpu(&[5.0; 5]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(4));
        assert_eq!(condition(&plan, "ScalingLimited").1, "ScaleDownLimit");
        // One pod already went 30 s ago: none may go now.
        let mut history = seen(&[]);
        history.record_scale(6, 5, ago(30));
        let plan = plan_with(&hpa, 5, &pods(5), &cpu(&[5.0; 5]), &history);
        assert_eq!(plan.rescale, None);
        // Percent policies with selectPolicy Min choose the smaller change.
        let hpa_up = autoscaler(json!({"spec": {"behavior": {"scaleUp": {
            "selectPolicy": "Min",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60},
                         {"type": "Pods", "value": 3, "periodSeconds": 60}],
        }}}}));
        let plan = plan_with(&hpa_up, 4, &pods(4), &cpu(&[500.0; 4]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(6));
    }

    #[test]
    fn a_disabled_direction_never_scales_that_way() {
        let hpa =
            autoscaler(json!({"spec": {"behavior": {"scaleUp": {"selectPolicy": "Disabled"}}}}));
        let plan = plan_with(&hpa, 2, &pods(2), &cpu(&[500.0, 500.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
        assert_eq!(condition(&plan, "ScalingLimited").0, "True");
    }

    #[test]
    fn pods_without_metrics_count_as_at_target_when_scaling_down() {
        let hpa = autoscaler(
            json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
        );
        // Two pods at 10% and one without metrics: (10 + 10 + 100) / 300 = 40% -> 0.8 -> 3.
        let plan = plan_with(&hpa, 3, &pods(3), &cpu(&[10.0, 10.0]), &seen(&[]));
        assert_eq!(plan.rescale, None);
        // With metrics for all three, 10% -> 1.
        let plan = plan_with(&hpa, 3, &pods(3), &cpu(&[10.0, 10.0, 10.0]), &seen(&[]));
        assert_eq!(new_size(&plan), Some(1));
    }

    #[test]
    fn unready_pods_count_as_idle_when_scaling_up_on_cpu() {
        let hpa = autoscaler(json!({}));
        let mut pods = pods(4);
        // web-2 is pending, web-3 started 10 s ago and is not ready, web-4 became ready after
        // its last sample was taken, all within the cpu initialization period.
        pods[1] = pod(
            "web-2",
            json!({"status": {"phase": "Pending", "conditions": null}}),
        );
        pods[2] = pod(
            "web-3",
            json!({"status": {"startTime": time(10), "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": time(10)}]}}),
        );
        pods[3] = pod(
            "web-4",
            json!({"status": {"startTime": time(60), "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": time(5)}]}}),
        );
        // Only web-1 counts: 100% of 50% -> ratio 2; with the three unready at 0%: 25% -> 0.5,
        // a change of direction, so the replicas stay.
        let plan = plan_with(
            &hpa,
            4,
            &pods,
            &cpu(&[100.0, 100.0, 100.0, 100.0]),
            &seen(&[]),
        );
        assert_eq!(plan.rescale, None);
        // All four ready and busy: 8.
        let plan = plan_with(
            &hpa,
            4,
            &super::tests::pods(4),
            &cpu(&[100.0; 4]),
            &seen(&[]),
        );
        assert_eq!(new_size(&plan), Some(8));
    }

    #[test]
    fn an_unsupported_target_cannot_be_scaled() {
        let hpa = autoscaler(json!({}));
        let plan = plan(
            Input {
                hpa: &hpa,
                target: Err(
                    "Wharf scales apps/v1 Deployments and ReplicaSets, not StatefulSet (apps/v1)"
                        .into(),
                ),
                pods: &[],
                usage: Ok(&[]),
                now: now(),
            },
            &History::default(),
        );
        assert_eq!(plan.rescale, None);
        let (status, reason, message) = condition(&plan, "AbleToScale");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedGetScale")
        );
        assert!(
            message
                .starts_with("the HPA controller was unable to get the target's current scale: ")
        );
        assert_eq!(plan.events[0].reason, "FailedGetScale");
    }

    #[test]
    fn status_is_only_written_when_it_changes() {
        let hpa_before = autoscaler(json!({}));
        let first = plan_with(&hpa_before, 3, &pods(3), &cpu(&[50.0; 3]), &seen(&[]));
        let mut hpa_after = hpa_before.clone();
        hpa_after.status = first.status.clone();
        let later = plan(
            Input {
                hpa: &hpa_after,
                target: Ok(target(3)),
                pods: &pods(3),
                usage: Ok(&cpu(&[50.0; 3])),
                now: now() + Duration::from_secs(15),
            },
            &first.history,
        );
        assert_eq!(later.status, None);
        // A change of a condition's reason is written, and keeps the transition time.
        let busier = plan_with(&hpa_after, 3, &pods(3), &cpu(&[500.0; 3]), &first.history);
        let status = busier.status.unwrap();
        let able = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "AbleToScale")
            .unwrap();
        assert_eq!(able.reason.as_deref(), Some("SucceededRescale"));
        assert_eq!(able.last_transition_time, Some(to_time(now())));
    }

    fn scale_to_zero_hpa(window: i64) -> HorizontalPodAutoscaler {
        autoscaler(json!({"spec": {
            "minReplicas": 0,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "http_requests"}, "target": {"type": "AverageValue", "averageValue": "10"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}},
        }}))
    }

    fn idle_usage(count: usize) -> Vec<PodUsage> {
        (1..=count)
            .map(|i| usage(&format!("web-{i}"), 1.0, 10, 0.0))
            .collect()
    }

    #[test]
    fn an_idle_target_scales_to_zero_after_the_idle_window() {
        let hpa = scale_to_zero_hpa(120);
        let mut history = seen(&[]);
        history.last_activity = Some(ago(121));
        let plan = plan_with(&hpa, 2, &pods(2), &idle_usage(2), &history);
        assert_eq!(new_size(&plan), Some(0));
        assert_eq!(
            plan.events[0].message,
            "New size: 0; reason: no request reached the workload for 120s (minReplicas is 0)"
        );
        assert_eq!(condition(&plan, "ScalingActive").1, "Idle");
    }

    #[test]
    fn a_recent_request_or_scale_keeps_the_target_above_zero() {
        let hpa = scale_to_zero_hpa(120);
        // A request 60 s ago (the recommendation of 1 is older than the window).
        let mut history = seen(&[(200, 1)]);
        history.last_activity = Some(ago(60));
        let plan = plan_with(&hpa, 1, &pods(1), &idle_usage(1), &history);
        assert_eq!(plan.rescale, None);
        // A request now.
        history.last_activity = Some(ago(500));
        let mut busy = idle_usage(1);
        busy[0].requests_in_flight = 1.0;
        let plan = plan_with(&hpa, 1, &pods(1), &busy, &history);
        assert_eq!(plan.rescale, None);
        assert_eq!(plan.history.last_activity, Some(now()));
        // A scale 60 s ago.
        let mut scaled = hpa.clone();
        scaled.status = Some(HorizontalPodAutoscalerStatus {
            last_scale_time: Some(to_time(ago(60))),
            ..HorizontalPodAutoscalerStatus::default()
        });
        let plan = plan_with(&scaled, 1, &pods(1), &idle_usage(1), &history);
        assert_eq!(plan.rescale, None);
        // Metrics alone never go below one replica.
        assert_eq!(condition(&plan, "ScalingLimited").1, "TooFewReplicas");
    }

    #[test]
    fn a_first_sync_or_a_wake_up_counts_as_a_request() {
        let hpa = scale_to_zero_hpa(120);
        let plan = plan_with(&hpa, 2, &pods(2), &idle_usage(2), &History::default());
        assert_eq!(plan.rescale, None);
        assert_eq!(plan.history.last_activity, Some(now()));
        let mut history = seen(&[]);
        history.last_activity = Some(ago(1000));
        history.last_seen_replicas = Some(0);
        let plan = plan_with(&hpa, 1, &pods(1), &idle_usage(1), &history);
        assert_eq!(plan.rescale, None);
        assert_eq!(plan.history.last_activity, Some(now()));
    }

    #[test]
    fn a_target_at_zero_stays_there_until_a_request_wakes_it() {
        let hpa = scale_to_zero_hpa(120);
        let plan = plan_with(&hpa, 0, &[], &[], &seen(&[]));
        assert_eq!(plan.rescale, None);
        assert_eq!(
            condition(&plan, "ScalingActive"),
            (
                "False".into(),
                "ScaledToZero".into(),
                SCALED_TO_ZERO_MESSAGE.into()
            )
        );
        assert_eq!(plan.status.unwrap().desired_replicas, 0);
    }

    #[test]
    fn min_replicas_above_zero_with_a_target_at_zero_disables_scaling() {
        let hpa = autoscaler(json!({}));
        let plan = plan_with(&hpa, 0, &[], &[], &seen(&[]));
        assert_eq!(plan.rescale, None);
        assert_eq!(
            condition(&plan, "ScalingActive"),
            (
                "False".into(),
                "ScalingDisabled".into(),
                "scaling is disabled since the replica count of the target is zero".into()
            )
        );
    }

    #[test]
    fn idleness_needs_quiet_samples_and_a_full_window() {
        let window = Duration::from_secs(300);
        let quiet = usage("web-1", 1.0, 1, 0.0);
        let busy = usage("web-2", 1.0, 1, 0.5);
        assert!(is_idle(&[&quiet], Some(ago(301)), None, window, now()));
        assert!(is_idle(&[], Some(ago(300)), Some(ago(400)), window, now()));
        assert!(!is_idle(
            &[&quiet, &busy],
            Some(ago(301)),
            None,
            window,
            now()
        ));
        assert!(!is_idle(
            &[&quiet],
            Some(ago(301)),
            Some(ago(10)),
            window,
            now()
        ));
        assert!(!is_idle(&[&quiet], None, None, window, now()));
    }

    #[test]
    fn failed_rescales_report_able_to_scale_false() {
        let hpa = autoscaler(json!({}));
        let plan = plan_with(&hpa, 2, &pods(2), &cpu(&[200.0, 200.0]), &seen(&[]));
        let status =
            status_after_failed_rescale(&hpa, plan.status.as_ref().unwrap(), "conflict", now());
        assert_eq!(status.desired_replicas, 2);
        assert_eq!(status.last_scale_time, None);
        let able = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "AbleToScale")
            .unwrap();
        assert_eq!(able.reason.as_deref(), Some("FailedUpdateScale"));
    }

    #[test]
    fn quantities_are_written_in_canonical_decimal_form() {
        assert_eq!(milli_quantity(250.0).0, "250m");
        assert_eq!(milli_quantity(2000.0).0, "2");
        assert_eq!(milli_quantity(3_000_000.0).0, "3k");
        assert_eq!(milli_quantity(0.0).0, "0");
    }
}
