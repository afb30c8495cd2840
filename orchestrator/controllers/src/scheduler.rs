//! The scheduler: places every unbound pod of the default scheduler on one of the cluster's
//! nodes, and says why when it cannot.
//!
//! [`plan`] is pure. It picks the pods the default scheduler places (no `spec.nodeName`,
//! `schedulerName` absent or `default-scheduler`, no scheduling gates, not being deleted) and
//! places them one after another, highest `spec.priority` first, then oldest, accounting each
//! placement before the next, so that one pass over thousands of pods never overcommits a node.
//! For each pod it
//!
//! 1. **filters** the nodes, in Kubernetes' order, stopping at the first misfit of a node: the
//!    node is `Ready` (and not being deleted); it is not `spec.unschedulable` (unless the pod
//!    tolerates `node.kubernetes.io/unschedulable`); every `NoSchedule` and `NoExecute` taint is
//!    tolerated (`PreferNoSchedule` only matters to scoring, which ignores it); its labels match
//!    the pod's `nodeSelector` and required node affinity (terms ORed, expressions ANDed, the
//!    operators `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`, and `matchFields` on
//!    `metadata.name`); it runs the pod's `runtimeClassName` (listed in its
//!    `wharf.dev/runtimes` label, e.g. `wasmtime.runc`; a pod without a class fits any node);
//!    and its allocatable cpu, memory and pod count, less what the pods already on it request,
//!    hold the pod's requests;
//! 2. **scores** the nodes that fit by the [`Policy`]: bin-packing (Kubernetes'
//!    `MostAllocated`, the default, for density) prefers the node whose requested cpu and
//!    memory fractions are highest once the pod is placed; spreading (`LeastAllocated`) the
//!    lowest. As in Kubernetes, scoring counts a container without requests as 100m cpu and
//!    200Mi memory, so pods that request nothing still spread (filtering counts them as zero).
//!    Ties go to the node whose name sorts first, so a plan is deterministic.
//!
//! A pod no node fits gets `PodScheduled=False`, reason `Unschedulable`, and Kubernetes' message
//! ("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2
//! Insufficient cpu."), written only when it changes, together with a `FailedScheduling`
//! Warning Event about the pod. It is retried on every pass, and passes run whenever a pod or a
//! Node changes (a node joins, becomes Ready, gets bigger; a pod goes away) and every
//! [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL).
//!
//! Placement is cheap by construction: quantities are parsed once per node and once per pod,
//! each node's free resources are kept as integers, runtime classes are bits, and pods are
//! borrowed, never cloned; the cost per pod and node is a few comparisons.
//!
//! [`run`] applies a plan through the [`Registry`]: bindings through `pods/binding`
//! ([`Registry::bind`], with the pod's uid, which also sets `PodScheduled=True` in the same
//! write), each told in a `Scheduled` Event ("Successfully assigned NAMESPACE/POD to NODE"),
//! conditions through the status subresource. Events go through an [`EventRecorder`], which
//! queues them without waiting for the store, so a binding never waits for its Event. A pod
//! already bound but without a true `PodScheduled` (created with `spec.nodeName`, or left with
//! the `Unschedulable` reason of an earlier failure) gets `PodScheduled=True` with no reason,
//! as the kubelet would report it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use wharf_apiserver::registry::{Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{EventRecorder, ObjectKey, PassOutcome, drive, is_deleting, list_typed, quantity};

/// The scheduler name whose pods this scheduler places (Kubernetes' default).
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// The node label listing the runtime classes a node runs, separated by dots
/// (`wasmtime.runc`): label values cannot hold commas.
pub const RUNTIMES_LABEL: &str = "wharf.dev/runtimes";

/// The taint a pod must tolerate to be placed on a node marked `spec.unschedulable`.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What scoring counts for a container that requests no cpu (Kubernetes'
/// `DefaultMilliCPURequest`).
const DEFAULT_MILLI_CPU: u64 = 100;
/// What scoring counts for a container that requests no memory (Kubernetes'
/// `DefaultMemoryRequest`).
const DEFAULT_MEMORY: u64 = 200 * 1024 * 1024;
/// The pod count of a node that does not say (the kubelet's default `maxPods`).
const DEFAULT_MAX_PODS: u64 = 110;

/// How many of a pass's writes are in flight at once, so that bindings share store commits.
const CONCURRENT_WRITES: usize = 64;

/// How the scheduler chooses among the nodes that fit a pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Prefer the node that is most allocated once the pod is placed (Kubernetes'
    /// `MostAllocated`): fills nodes one after another, for density.
    #[default]
    BinPacking,
    /// Prefer the node that is least allocated once the pod is placed (Kubernetes'
    /// `LeastAllocated`): spreads pods over the nodes.
    Spread,
}

impl FromStr for Policy {
    type Err = String;

    /// Reads a policy name as given to `--scheduler-policy`: `bin-packing` (also `binpack`,
    /// `most-allocated`) or `spread` (also `least-allocated`).
    fn from_str(name: &str) -> Result<Policy, String> {
        match name.to_ascii_lowercase().as_str() {
            "bin-packing" | "binpacking" | "binpack" | "most-allocated" | "mostallocated" => {
                Ok(Policy::BinPacking)
            }
            "spread" | "least-allocated" | "leastallocated" => Ok(Policy::Spread),
            _ => Err(format!(
                "unknown scheduler policy {name:?}: expected bin-packing or spread"
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::BinPacking => "bin-packing",
            Policy::Spread => "spread",
        })
    }
}

/// One write the scheduler makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Bind the pod to the node, which also marks it `PodScheduled=True`.
    Bind {
        /// The pod.
        pod: ObjectKey,
        /// The node's name.
        node: String,
    },
    /// Mark the pod `PodScheduled=False`, reason `Unschedulable`, and record a
    /// `FailedScheduling` Event.
    MarkUnschedulable {
        /// The pod.
        pod: ObjectKey,
        /// Why no node fits.
        message: String,
        /// Whether the condition's status changes (so its `lastTransitionTime` moves).
        transition: bool,
    },
    /// Mark a pod that is already on a node `PodScheduled=True`, with no reason.
    MarkScheduled {
        /// The pod.
        pod: ObjectKey,
        /// Whether the condition's status changes (so its `lastTransitionTime` moves).
        transition: bool,
    },
}

/// Cpu, memory and pod count, as integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Amounts {
    milli_cpu: u64,
    memory: u64,
    pods: u64,
}

/// A node as the filters and scores see it, with its remaining room.
struct NodeState<'a> {
    name: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
    ready: bool,
    unschedulable: bool,
    /// The `NoSchedule` and `NoExecute` taints.
    taints: Vec<&'a Taint>,
    /// The runtime classes the node runs, one bit each (see [`RuntimeNames`]).
    runtimes: u64,
    allocatable: Amounts,
    /// What the pods on the node request (for filtering).
    requested: Amounts,
    /// What the pods on the node request with the scoring defaults for missing requests.
    scored_milli_cpu: u64,
    scored_memory: u64,
}

impl NodeState<'_> {
    /// Counts a pod placed on the node.
    fn take(&mut self, need: &Requests) {
        let requested = &mut self.requested;
        requested.milli_cpu = requested.milli_cpu.saturating_add(need.requests.milli_cpu);
        requested.memory = requested.memory.saturating_add(need.requests.memory);
        requested.pods = requested.pods.saturating_add(need.requests.pods);
        self.scored_milli_cpu = self.scored_milli_cpu.saturating_add(need.scored_milli_cpu);
        self.scored_memory = self.scored_memory.saturating_add(need.scored_memory);
    }
}

/// What one pod asks of a node.
struct Demand<'a> {
    spec: &'a PodSpec,
    need: Requests,
    runtime: RuntimeNeed<'a>,
    tolerates_unschedulable: bool,
    /// Whether the pod has a nodeSelector or required node affinity to check.
    constrained: bool,
}

#[derive(Clone, Copy)]
enum RuntimeNeed<'a> {
    /// No runtime class: any node.
    Any,
    /// A class some node runs: its bit.
    Bit(u64),
    /// A class no node runs.
    Missing(&'a str),
}

/// Runtime class names, each given a bit of a `u64` as first seen on a node.
#[derive(Default)]
struct RuntimeNames<'a> {
    bits: HashMap<&'a str, u64>,
}

impl<'a> RuntimeNames<'a> {
    fn bit_of(&mut self, name: &'a str) -> u64 {
        let next = self.bits.len();
        *self.bits.entry(name).or_insert_with(|| {
            // Past 64 distinct classes, later ones share no bit and so fit nowhere.
            if next < 64 { 1 << next } else { 0 }
        })
    }
}

/// Why a node does not fit a pod: the first filter that failed.
enum Misfit<'a> {
    NotReady,
    Unschedulable,
    Taint(&'a Taint),
    Affinity,
    Runtime(&'a str),
    Resources { cpu: bool, memory: bool, pods: bool },
}

/// Plans one pass: where each unbound pod goes, which pods cannot go anywhere, and which bound
/// pods still need `PodScheduled=True`.
pub fn plan(nodes: &[Node], pods: &[Pod], policy: Policy) -> Vec<Action> {
    let mut runtime_names = RuntimeNames::default();
    let mut cluster: Vec<NodeState<'_>> = nodes
        .iter()
        .filter(|node| !is_deleting(&node.metadata))
        .filter_map(|node| node_state(node, &mut runtime_names))
        .collect();
    cluster.sort_unstable_by(|a, b| a.name.cmp(b.name));
    let index: HashMap<&str, usize> = cluster
        .iter()
        .enumerate()
        .map(|(i, node)| (node.name, i))
        .collect();

    let mut actions = Vec::new();
    let mut pending: Vec<&Pod> = Vec::new();
    for pod in pods {
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            Some(node) => {
                if !is_terminal(pod)
                    && let Some(&i) = index.get(node)
                {
                    cluster[i].take(&requests(spec));
                }
                if is_ours(pod)
                    && let Some(key) = ObjectKey::of(&pod.metadata)
                    && let Some(transition) = needs_scheduled_condition(pod)
                {
                    actions.push(Action::MarkScheduled {
                        pod: key,
                        transition,
                    });
                }
            }
            None => {
                let gated = spec
                    .scheduling_gates
                    .as_ref()
                    .is_some_and(|gates| !gates.is_empty());
                if is_ours(pod) && !gated && pod.metadata.uid.is_some() {
                    pending.push(pod);
                }
            }
        }
    }
    // The scheduling queue's order: higher priority first, then older, then by name.
    pending.sort_by(|a, b| {
        let priority = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        priority(b)
            .cmp(&priority(a))
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });

    for pod in pending {
        let Some(key) = ObjectKey::of(&pod.metadata) else {
            continue;
        };
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let demand = demand(spec, &runtime_names);
        match best_node(&cluster, &demand, policy) {
            Some(i) => {
                cluster[i].take(&demand.need);
                actions.push(Action::Bind {
                    pod: key,
                    node: cluster[i].name.to_owned(),
                });
            }
            None => {
                let message = unschedulable_message(&cluster, &demand);
                let current = scheduled_condition(pod);
                let unchanged = current.is_some_and(|c| {
                    c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                        && c.message.as_deref() == Some(message.as_str())
                });
                if !unchanged {
                    actions.push(Action::MarkUnschedulable {
                        pod: key,
                        message,
                        transition: current.is_none_or(|c| c.status != "False"),
                    });
                }
            }
        }
    }
    actions
}

/// Whether the default scheduler is responsible for the pod (and it is not being deleted).
fn is_ours(pod: &Pod) -> bool {
    let default = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER);
    default && !is_deleting(&pod.metadata)
}

/// Pods that have finished hold no resources any more.
fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn scheduled_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "PodScheduled")
}

/// For a bound pod: `None` if its `PodScheduled` is already true without a failure reason,
/// else whether setting it true is a transition.
fn needs_scheduled_condition(pod: &Pod) -> Option<bool> {
    match scheduled_condition(pod) {
        None => Some(true),
        Some(c) if c.status != "True" => Some(true),
        Some(c) if c.reason.as_deref() == Some("Unschedulable") => Some(false),
        Some(_) => None,
    }
}

/// The node's filter-relevant facts, parsed once. Nodes without a name are left out.
fn node_state<'a>(node: &'a Node, runtime_names: &mut RuntimeNames<'a>) -> Option<NodeState<'a>> {
    let name = node.metadata.name.as_deref()?;
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .collect();
    let labels = node.metadata.labels.as_ref();
    let runtimes = labels
        .and_then(|l| l.get(RUNTIMES_LABEL))
        .map_or(0, |list| {
            list.split('.')
                .filter(|n| !n.is_empty())
                .fold(0, |bits, n| bits | runtime_names.bit_of(n))
        });
    let resources = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    let amount = |name: &str, parse: fn(&str) -> Option<u64>| {
        resources
            .and_then(|r| r.get(name))
            .and_then(|q| parse(&q.0))
    };
    Some(NodeState {
        name,
        labels,
        ready,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        taints,
        runtimes,
        allocatable: Amounts {
            milli_cpu: amount("cpu", quantity::millicores).unwrap_or(0),
            memory: amount("memory", quantity::value).unwrap_or(0),
            pods: amount("pods", quantity::value).unwrap_or(DEFAULT_MAX_PODS),
        },
        requested: Amounts::default(),
        scored_milli_cpu: 0,
        scored_memory: 0,
    })
}

/// A pod's resource requests: per resource, the sum over its containers or the largest of its
/// init containers, whichever is more, plus the pod overhead (Kubernetes' effective request).
/// A container's request defaults to its limit, as the API server's defaulting does.
struct Requests {
    requests: Amounts,
    scored_milli_cpu: u64,
    scored_memory: u64,
}

fn requests(spec: &PodSpec) -> Requests {
    fn container(
        resources: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    ) -> [Option<u64>; 2] {
        fn pick<'a>(m: Option<&'a BTreeMap<String, Quantity>>, name: &str) -> Option<&'a Quantity> {
            m.and_then(|m| m.get(name))
        }
        let get = |name: &str, parse: fn(&str) -> Option<u64>| {
            resources
                .and_then(|r| {
                    pick(r.requests.as_ref(), name).or_else(|| pick(r.limits.as_ref(), name))
                })
                .map(|q| parse(&q.0).unwrap_or(0))
        };
        [
            get("cpu", quantity::millicores),
            get("memory", quantity::value),
        ]
    }
    let (mut cpu, mut memory, mut scored_cpu, mut scored_memory) = (0u64, 0u64, 0u64, 0u64);
    for c in &spec.containers {
        let [c_cpu, c_memory] = container(c.resources.as_ref());
        cpu = cpu.saturating_add(c_cpu.unwrap_or(0));
        memory = memory.saturating_add(c_memory.unwrap_or(0));
        scored_cpu = scored_cpu.saturating_add(c_cpu.unwrap_or(DEFAULT_MILLI_CPU));
        scored_memory = scored_memory.saturating_add(c_memory.unwrap_or(DEFAULT_MEMORY));
    }
    for c in spec.init_containers.as_deref().unwrap_or_default() {
        let [c_cpu, c_memory] = container(c.resources.as_ref());
        cpu = cpu.max(c_cpu.unwrap_or(0));
        memory = memory.max(c_memory.unwrap_or(0));
        scored_cpu = scored_cpu.max(c_cpu.unwrap_or(DEFAULT_MILLI_CPU));
        scored_memory = scored_memory.max(c_memory.unwrap_or(DEFAULT_MEMORY));
    }
    if let Some(overhead) = &spec.overhead {
        let get = |name: &str, parse: fn(&str) -> Option<u64>| {
            overhead.get(name).and_then(|q| parse(&q.0)).unwrap_or(0)
        };
        let (o_cpu, o_memory) = (
            get("cpu", quantity::millicores),
            get("memory", quantity::value),
        );
        cpu = cpu.saturating_add(o_cpu);
        memory = memory.saturating_add(o_memory);
        scored_cpu = scored_cpu.saturating_add(o_cpu);
        scored_memory = scored_memory.saturating_add(o_memory);
    }
    Requests {
        requests: Amounts {
            milli_cpu: cpu,
            memory,
            pods: 1,
        },
        scored_milli_cpu: scored_cpu,
        scored_memory,
    }
}

fn demand<'a>(spec: &'a PodSpec, runtime_names: &RuntimeNames<'a>) -> Demand<'a> {
    let need = requests(spec);
    let runtime = match spec.runtime_class_name.as_deref().filter(|c| !c.is_empty()) {
        None => RuntimeNeed::Any,
        Some(class) => match runtime_names.bits.get(class) {
            Some(&bit) if bit != 0 => RuntimeNeed::Bit(bit),
            _ => RuntimeNeed::Missing(class),
        },
    };
    let unschedulable_taint = Taint {
        key: UNSCHEDULABLE_TAINT.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    };
    let tolerates_unschedulable = spec
        .tolerations
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|t| tolerates(t, &unschedulable_taint));
    let constrained = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || required_terms(spec).is_some();
    Demand {
        spec,
        need,
        runtime,
        tolerates_unschedulable,
        constrained,
    }
}

fn required_terms(spec: &PodSpec) -> Option<&[NodeSelectorTerm]> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|s| s.node_selector_terms.as_slice())
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`): the effect matches
/// (or the toleration names none), the key matches (or the toleration names none), and the
/// operator is `Exists` or `Equal` (the default) with the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether the node's labels (and name) satisfy the pod's `nodeSelector` and required node
/// affinity.
fn matches_affinity(node: &NodeState<'_>, spec: &PodSpec) -> bool {
    let label = |key: &str| node.labels.and_then(|l| l.get(key)).map(String::as_str);
    if let Some(selector) = &spec.node_selector
        && !selector
            .iter()
            .all(|(key, value)| label(key) == Some(value.as_str()))
    {
        return false;
    }
    match required_terms(spec) {
        None => true,
        Some(terms) => terms.iter().any(|term| {
            let expressions = term.match_expressions.as_deref().unwrap_or_default();
            let fields = term.match_fields.as_deref().unwrap_or_default();
            // An empty term selects nothing, as in Kubernetes.
            (!expressions.is_empty() || !fields.is_empty())
                && expressions
                    .iter()
                    .all(|r| requirement_holds(r, label(&r.key)))
                && fields
                    .iter()
                    .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node.name)))
        }),
    }
}

/// Whether a node selector requirement holds for a label's value (`None`: no such label).
fn requirement_holds(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(want) = number(want) else {
                return false;
            };
            if requirement.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// The first filter the node fails for this pod, if any.
fn misfit<'a>(node: &NodeState<'a>, demand: &Demand<'a>) -> Option<Misfit<'a>> {
    if !node.ready {
        return Some(Misfit::NotReady);
    }
    if node.unschedulable && !demand.tolerates_unschedulable {
        return Some(Misfit::Unschedulable);
    }
    if !node.taints.is_empty() {
        let tolerations = demand.spec.tolerations.as_deref().unwrap_or_default();
        if let Some(taint) = node
            .taints
            .iter()
            .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        {
            return Some(Misfit::Taint(taint));
        }
    }
    if demand.constrained && !matches_affinity(node, demand.spec) {
        return Some(Misfit::Affinity);
    }
    match demand.runtime {
        RuntimeNeed::Any => {}
        RuntimeNeed::Bit(bit) if node.runtimes & bit != 0 => {}
        RuntimeNeed::Bit(_) => {
            let class = demand.spec.runtime_class_name.as_deref().unwrap_or("");
            return Some(Misfit::Runtime(class));
        }
        RuntimeNeed::Missing(class) => return Some(Misfit::Runtime(class)),
    }
    let want = demand.need.requests;
    let free = |allocatable: u64, requested: u64| allocatable.saturating_sub(requested);
    let cpu = want.milli_cpu > 0
        && want.milli_cpu > free(node.allocatable.milli_cpu, node.requested.milli_cpu);
    let memory =
        want.memory > 0 && want.memory > free(node.allocatable.memory, node.requested.memory);
    let pods = want.pods > free(node.allocatable.pods, node.requested.pods);
    (cpu || memory || pods).then_some(Misfit::Resources { cpu, memory, pods })
}

/// The node (an index into `nodes`, which is sorted by name) that fits the pod and scores
/// highest, the first by name among equals.
fn best_node(nodes: &[NodeState<'_>], demand: &Demand<'_>, policy: Policy) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if misfit(node, demand).is_some() {
            continue;
        }
        let score = score(node, demand, policy);
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// The node's score for the pod: the sum over cpu and memory of the fraction requested once
/// the pod is placed (bin-packing) or the fraction left (spreading), each between 0 and 1.
fn score(node: &NodeState<'_>, demand: &Demand<'_>, policy: Policy) -> f64 {
    let resource = |requested: u64, capacity: u64| -> f64 {
        if capacity == 0 {
            return 0.0;
        }
        match policy {
            // Requests past capacity happen only through the scoring defaults; count them full.
            Policy::BinPacking => requested.min(capacity) as f64 / capacity as f64,
            Policy::Spread if requested > capacity => 0.0,
            Policy::Spread => (capacity - requested) as f64 / capacity as f64,
        }
    };
    resource(
        node.scored_milli_cpu
            .saturating_add(demand.need.scored_milli_cpu),
        node.allocatable.milli_cpu,
    ) + resource(
        node.scored_memory.saturating_add(demand.need.scored_memory),
        node.allocatable.memory,
    )
}

/// Kubernetes' message for a pod no node fits: how many nodes failed for each reason, the
/// counted reasons sorted as text ("0/3 nodes are available: 1 Insufficient memory, 2
/// Insufficient cpu.").
fn unschedulable_message(nodes: &[NodeState<'_>], demand: &Demand<'_>) -> String {
    if nodes.is_empty() {
        return "no nodes available to schedule pods".to_owned();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |reason: String| *counts.entry(reason).or_default() += 1;
    for node in nodes {
        match misfit(node, demand) {
            None => {}
            Some(Misfit::NotReady) => count("node(s) were not ready".into()),
            Some(Misfit::Unschedulable) => count("node(s) were unschedulable".into()),
            Some(Misfit::Taint(taint)) => count(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )),
            Some(Misfit::Affinity) => {
                count("node(s) didn't match Pod's node affinity/selector".into())
            }
            Some(Misfit::Runtime(class)) => {
                count(format!("node(s) didn't support runtime class {class}"))
            }
            Some(Misfit::Resources { cpu, memory, pods }) => {
                if cpu {
                    count("Insufficient cpu".into());
                }
                if memory {
                    count("Insufficient memory".into());
                }
                if pods {
                    count("Too many pods".into());
                }
            }
        }
    }
    let mut reasons: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    reasons.sort();
    format!(
        "0/{} nodes are available: {}.",
        nodes.len(),
        reasons.join(", ")
    )
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

/// One pass over every node and pod. The scope `drive` passes is ignored: placing a pod of
/// one namespace depends on the pods of all the others.
pub async fn pass(
    registry: &Registry,
    policy: Policy,
    events: &EventRecorder,
) -> Result<PassOutcome, ApiError> {
    let node_list: Vec<Node> = list_typed(registry, nodes(), None).await?;
    let pod_list: Vec<Pod> = list_typed(registry, pods(), None).await?;
    let actions = plan(&node_list, &pod_list, policy);
    let results: Vec<PassOutcome> = futures::stream::iter(actions)
        .map(|action| apply(registry, events, action))
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    Ok(results
        .into_iter()
        .fold(PassOutcome::default(), PassOutcome::merge))
}

/// Applies one action.
async fn apply(registry: &Registry, events: &EventRecorder, action: Action) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    match action {
        Action::Bind { pod, node } => {
            let result = registry
                .bind(
                    &pod.namespace,
                    &pod.name,
                    &node,
                    Some(&pod.uid),
                    &WriteOptions::default(),
                )
                .await;
            if result.is_ok() {
                events.record(scheduled_event(&pod, &node));
            }
            outcome.record("binding a pod", result.map(drop));
        }
        Action::MarkScheduled { pod, transition } => {
            let mut condition = json!({
                "type": "PodScheduled", "status": "True", "reason": null, "message": null,
            });
            if transition {
                condition["lastTransitionTime"] = json!(meta::now_rfc3339());
            }
            let result = patch_condition(registry, &pod, condition).await;
            outcome.record("marking a pod scheduled", result);
        }
        Action::MarkUnschedulable {
            pod,
            message,
            transition,
        } => {
            let mut condition = json!({
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message,
            });
            if transition {
                condition["lastTransitionTime"] = json!(meta::now_rfc3339());
            }
            let result = patch_condition(registry, &pod, condition).await;
            let written = result.is_ok();
            outcome.record("marking a pod unschedulable", result);
            if written {
                events.record(failed_scheduling_event(&pod, &message));
            }
        }
    }
    outcome
}

async fn patch_condition(
    registry: &Registry,
    pod: &ObjectKey,
    condition: serde_json::Value,
) -> Result<(), ApiError> {
    let patch = json!({
        "metadata": {"uid": pod.uid},
        "status": {"conditions": [condition]},
    });
    registry
        .patch(
            pods(),
            Some(&pod.namespace),
            &pod.name,
            PatchType::StrategicMerge,
            &patch,
            Part::Status,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// The `Scheduled` Event about a pod bound to `node`, as Kubernetes' scheduler records it.
fn scheduled_event(pod: &ObjectKey, node: &str) -> serde_json::Value {
    let mut event = crate::event_object(
        "v1",
        "Pod",
        pod,
        "Normal",
        "Scheduled",
        &format!(
            "Successfully assigned {}/{} to {node}",
            pod.namespace, pod.name
        ),
        DEFAULT_SCHEDULER,
    );
    event["action"] = json!("Binding");
    event
}

/// A `FailedScheduling` Warning about the pod.
fn failed_scheduling_event(pod: &ObjectKey, message: &str) -> serde_json::Value {
    let mut event = crate::event_object(
        "v1",
        "Pod",
        pod,
        "Warning",
        "FailedScheduling",
        message,
        DEFAULT_SCHEDULER,
    );
    event["action"] = json!("Scheduling");
    event
}

/// Runs the scheduler with `policy` until `stopping` resolves: a pass whenever a pod or a Node
/// changes, and every [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL). Its Events go to `events`.
pub async fn run(
    registry: Registry,
    policy: Policy,
    events: EventRecorder,
    stopping: impl Future<Output = ()>,
) {
    let (registry, events) = (&registry, &events);
    drive(
        registry,
        "scheduler",
        &[pods(), nodes()],
        stopping,
        move |_namespaces| pass(registry, policy, events),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A Ready node with `cpu` and `memory` allocatable, running both runtime classes, plus
    /// `extra` merged into its JSON (labels, spec, ...).
    fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Node {
        let mut value = json!({
            "metadata": {"name": name, "labels": {RUNTIMES_LABEL: "wasmtime.runc"}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    /// A pending pod requesting `cpu` and `memory` (omitted when empty), plus `extra`.
    fn pod(name: &str, cpu: &str, memory: &str, extra: Value) -> Pod {
        let mut requests = serde_json::Map::new();
        if !cpu.is_empty() {
            requests.insert("cpu".into(), json!(cpu));
        }
        if !memory.is_empty() {
            requests.insert("memory".into(), json!(memory));
        }
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"requests": requests}}]},
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    /// Merges `extra` into `value`, objects key by key.
    fn merge(value: &mut Value, extra: Value) {
        match (value, extra) {
            (Value::Object(value), Value::Object(extra)) => {
                for (key, extra) in extra {
                    merge(value.entry(key).or_insert(Value::Null), extra);
                }
            }
            (value, extra) => *value = extra,
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    /// Where each pod went, by pod name (`None`: unschedulable).
    fn placements(nodes: &[Node], pods: &[Pod], policy: Policy) -> Vec<(String, Option<String>)> {
        plan(nodes, pods, policy)
            .into_iter()
            .filter_map(|action| match action {
                Action::Bind { pod, node } => Some((pod.name, Some(node))),
                Action::MarkUnschedulable { pod, .. } => Some((pod.name, None)),
                Action::MarkScheduled { .. } => None,
            })
            .collect()
    }

    fn placed(pod: &str, node: &str) -> (String, Option<String>) {
        (pod.to_owned(), Some(node.to_owned()))
    }

    fn unplaced(pod: &str) -> (String, Option<String>) {
        (pod.to_owned(), None)
    }

    /// The message of the pod's MarkUnschedulable action.
    fn message(nodes: &[Node], pods: &[Pod], pod_name: &str) -> String {
        plan(nodes, pods, Policy::BinPacking)
            .into_iter()
            .find_map(|action| match action {
                Action::MarkUnschedulable { pod, message, .. } if pod.name == pod_name => {
                    Some(message)
                }
                _ => None,
            })
            .expect("the pod is unschedulable")
    }

    #[test]
    fn only_ready_nodes_that_are_not_cordoned_are_used() {
        let nodes = [
            node(
                "a",
                "4",
                "4Gi",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
            node("b", "4", "4Gi", json!({"spec": {"unschedulable": true}})),
            node("c", "4", "4Gi", json!({})),
        ];
        let pods = [pod("p", "1", "", json!({}))];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("p", "c")]
        );
        assert_eq!(
            message(&nodes[..2], &pods, "p"),
            "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
        );
    }

    #[test]
    fn a_pod_tolerating_the_unschedulable_taint_may_use_a_cordoned_node() {
        let nodes = [node(
            "b",
            "4",
            "4Gi",
            json!({"spec": {"unschedulable": true}}),
        )];
        let pods = [pod(
            "p",
            "",
            "",
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        )];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("p", "b")]
        );
    }

    #[test]
    fn requests_must_fit_in_allocatable_less_what_running_pods_request() {
        let nodes = [
            node("a", "1", "1Gi", json!({})),
            node("b", "2", "1Gi", json!({})),
        ];
        let pods = [
            // On a: 600m and 768Mi in use (the request defaults to the limit).
            pod(
                "running",
                "600m",
                "",
                json!({"spec": {"nodeName": "a", "containers": [
                    {"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "600m"}, "limits": {"memory": "768Mi"}}},
                ]}}),
            ),
            // Finished pods hold nothing.
            pod(
                "done",
                "1",
                "1Gi",
                json!({"spec": {"nodeName": "b"}, "status": {"phase": "Succeeded"}}),
            ),
            pod("cpu", "500m", "", json!({})),
        ];
        // a has only 400m left; b has 2 cpus free.
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("cpu", "b")]
        );
        let pods = [
            pods[0].clone(),
            pod(
                "memory",
                "",
                "512Mi",
                json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "a"}}}),
            ),
        ];
        let nodes = [node(
            "a",
            "1",
            "1Gi",
            json!({"metadata": {"labels": {"kubernetes.io/hostname": "a"}}}),
        )];
        assert_eq!(
            message(&nodes, &pods, "memory"),
            "0/1 nodes are available: 1 Insufficient memory."
        );
    }

    #[test]
    fn init_containers_and_overhead_count_as_kubernetes_counts_them() {
        let nodes = [node("a", "1", "1Gi", json!({}))];
        // max(sum of containers = 300m, largest init container = 900m) + 200m overhead > 1.
        let pods = [pod(
            "p",
            "300m",
            "",
            json!({"spec": {
                "initContainers": [{"name": "init", "image": "init:1", "resources": {"requests": {"cpu": "900m"}}}],
                "overhead": {"cpu": "200m"},
            }}),
        )];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [unplaced("p")]
        );
    }

    #[test]
    fn a_node_takes_no_more_pods_than_its_pod_allocatable() {
        let nodes = [node(
            "a",
            "4",
            "4Gi",
            json!({"status": {"allocatable": {"pods": "2"}}}),
        )];
        let pods = [
            pod("p1", "", "", json!({})),
            pod("p2", "", "", json!({})),
            pod("p3", "", "", json!({})),
        ];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("p1", "a"), placed("p2", "a"), unplaced("p3")]
        );
        assert_eq!(
            message(&nodes, &pods, "p3"),
            "0/1 nodes are available: 1 Too many pods."
        );
    }

    #[test]
    fn placements_in_one_pass_are_counted_before_the_next_pod() {
        let nodes = [
            node("a", "1", "1Gi", json!({})),
            node("b", "1", "1Gi", json!({})),
        ];
        let pods = [
            pod("p1", "600m", "", json!({})),
            pod("p2", "600m", "", json!({})),
            pod("p3", "600m", "", json!({})),
        ];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("p1", "a"), placed("p2", "b"), unplaced("p3")]
        );
        assert_eq!(
            message(&nodes, &pods, "p3"),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
    }

    #[test]
    fn node_selector_and_required_affinity_select_by_labels() {
        let labelled = |name: &str, labels: Value| {
            node(name, "4", "4Gi", json!({"metadata": {"labels": labels}}))
        };
        let nodes = [
            labelled("a", json!({"zone": "east", "gpus": "2"})),
            labelled("b", json!({"zone": "west", "gpus": "8", "ssd": "true"})),
            labelled("c", json!({"zone": "north"})),
        ];
        let with_affinity = |name: &str, terms: Value| {
            pod(
                name,
                "",
                "",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
            )
        };
        let expr = |key: &str, operator: &str, values: Value| json!([{"matchExpressions": [{"key": key, "operator": operator, "values": values}]}]);
        let cases = [
            (
                pod(
                    "selector",
                    "",
                    "",
                    json!({"spec": {"nodeSelector": {"zone": "west"}}}),
                ),
                vec!["b"],
            ),
            (
                with_affinity("in", expr("zone", "In", json!(["east", "north"]))),
                vec!["a", "c"],
            ),
            (
                with_affinity("notin", expr("zone", "NotIn", json!(["east"]))),
                vec!["b", "c"],
            ),
            (
                with_affinity("exists", expr("ssd", "Exists", Value::Null)),
                vec!["b"],
            ),
            (
                with_affinity("absent", expr("ssd", "DoesNotExist", Value::Null)),
                vec!["a", "c"],
            ),
            (
                with_affinity("gt", expr("gpus", "Gt", json!(["4"]))),
                vec!["b"],
            ),
            (
                with_affinity("lt", expr("gpus", "Lt", json!(["4"]))),
                vec!["a"],
            ),
            (
                with_affinity(
                    "ored",
                    json!([
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["north"]}]},
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
                    ]),
                ),
                vec!["a", "c"],
            ),
            (
                with_affinity(
                    "anded",
                    json!([{"matchExpressions": [
                        {"key": "zone", "operator": "In", "values": ["east", "west"]},
                        {"key": "gpus", "operator": "Gt", "values": ["2"]},
                    ]}]),
                ),
                vec!["b"],
            ),
            (with_affinity("empty-term", json!([{}])), vec![]),
        ];
        for (pod, expected) in cases {
            let name = pod.metadata.name.clone().unwrap();
            let fits: Vec<&str> = nodes
                .iter()
                .filter(|n| {
                    placements(
                        std::slice::from_ref(*n),
                        std::slice::from_ref(&pod),
                        Policy::BinPacking,
                    )[0]
                    .1
                    .is_some()
                })
                .map(|n| n.metadata.name.as_deref().unwrap())
                .collect();
            assert_eq!(fits, expected, "{name}");
        }
        let pods = [pod(
            "selector",
            "",
            "",
            json!({"spec": {"nodeSelector": {"zone": "south"}}}),
        )];
        assert_eq!(
            message(&nodes, &pods, "selector"),
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn no_schedule_and_no_execute_taints_must_be_tolerated() {
        let tainted = |name: &str, key: &str, value: &str, effect: &str| {
            node(
                name,
                "4",
                "4Gi",
                json!({"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}),
            )
        };
        let nodes = [
            tainted("a", "dedicated", "gpu", "NoSchedule"),
            tainted("b", "node.kubernetes.io/unreachable", "", "NoExecute"),
            tainted("c", "spot", "true", "PreferNoSchedule"),
        ];
        let plain = pod("plain", "", "", json!({}));
        assert_eq!(
            placements(&nodes, std::slice::from_ref(&plain), Policy::BinPacking),
            [placed("plain", "c")]
        );
        assert_eq!(
            message(&nodes[..2], std::slice::from_ref(&plain), "plain"),
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
        );
        let tolerating =
            |tolerations: Value| pod("t", "", "", json!({"spec": {"tolerations": tolerations}}));
        let fits = |pod: &Pod| -> Vec<String> {
            nodes[..2]
                .iter()
                .filter(|n| {
                    placements(
                        std::slice::from_ref(*n),
                        std::slice::from_ref(pod),
                        Policy::BinPacking,
                    )[0]
                    .1
                    .is_some()
                })
                .map(|n| n.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(
            fits(&tolerating(json!([{"key": "dedicated", "value": "gpu"}]))),
            ["a"]
        );
        assert_eq!(
            fits(&tolerating(json!([{"key": "dedicated", "value": "cpu"}]))),
            Vec::<String>::new()
        );
        assert_eq!(
            fits(&tolerating(
                json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}])
            )),
            Vec::<String>::new()
        );
        assert_eq!(
            fits(&tolerating(
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])
            )),
            ["b"]
        );
        assert_eq!(
            fits(&tolerating(json!([{"operator": "Exists"}]))),
            ["a", "b"]
        );
    }

    #[test]
    fn a_runtime_class_needs_a_node_that_runs_it() {
        let nodes = [
            node(
                "a-wasm",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {RUNTIMES_LABEL: "wasmtime"}}}),
            ),
            node("b-both", "1", "4Gi", json!({})),
        ];
        let pods = [
            pod(
                "wasm",
                "",
                "",
                json!({"spec": {"runtimeClassName": "wasmtime"}}),
            ),
            pod(
                "container",
                "",
                "",
                json!({"spec": {"runtimeClassName": "runc"}}),
            ),
            pod("any", "", "", json!({})),
            pod("odd", "", "", json!({"spec": {"runtimeClassName": "kata"}})),
        ];
        // b-both is the smaller node, so bin-packing fills it first; pods go by name.
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [
                placed("any", "b-both"),
                placed("container", "b-both"),
                unplaced("odd"),
                placed("wasm", "b-both")
            ]
        );
        let wasm_only = [node(
            "a-wasm",
            "4",
            "4Gi",
            json!({"metadata": {"labels": {RUNTIMES_LABEL: "wasmtime"}}}),
        )];
        assert_eq!(
            placements(&wasm_only, &pods[..1], Policy::BinPacking),
            [placed("wasm", "a-wasm")]
        );
        assert_eq!(
            message(&nodes[..1], &pods, "container"),
            "0/1 nodes are available: 1 node(s) didn't support runtime class runc."
        );
        assert_eq!(
            message(&nodes, &pods, "odd"),
            "0/2 nodes are available: 2 node(s) didn't support runtime class kata."
        );
    }

    #[test]
    fn bin_packing_prefers_the_fullest_node_and_spreading_the_emptiest() {
        let nodes = [
            node("a", "4", "8Gi", json!({})),
            node("b", "4", "8Gi", json!({})),
            node("c", "4", "8Gi", json!({})),
        ];
        let mut pods = vec![pod("busy", "2", "4Gi", json!({"spec": {"nodeName": "b"}}))];
        pods.extend((1..=3).map(|i| pod(&format!("p{i}"), "500m", "1Gi", json!({}))));
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("p1", "b"), placed("p2", "b"), placed("p3", "b")]
        );
        assert_eq!(
            placements(&nodes, &pods, Policy::Spread),
            [placed("p1", "a"), placed("p2", "c"), placed("p3", "a")]
        );
    }

    #[test]
    fn pods_without_requests_still_spread_and_pack() {
        let nodes = [
            node("a", "4", "8Gi", json!({})),
            node("b", "4", "8Gi", json!({})),
        ];
        let pods: Vec<Pod> = (1..=4)
            .map(|i| pod(&format!("p{i}"), "", "", json!({})))
            .collect();
        assert_eq!(
            placements(&nodes, &pods, Policy::Spread),
            [
                placed("p1", "a"),
                placed("p2", "b"),
                placed("p3", "a"),
                placed("p4", "b")
            ]
        );
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [
                placed("p1", "a"),
                placed("p2", "a"),
                placed("p3", "a"),
                placed("p4", "a")
            ]
        );
    }

    #[test]
    fn plans_do_not_depend_on_the_order_of_their_inputs() {
        let mut nodes: Vec<Node> = (0..20)
            .map(|i| {
                node(
                    &format!("n{i:02}"),
                    &format!("{}", 1 + i % 4),
                    "8Gi",
                    json!({}),
                )
            })
            .collect();
        let mut pods: Vec<Pod> = (0..100)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("{}m", 100 + (i * 37) % 900),
                    "256Mi",
                    json!({}),
                )
            })
            .collect();
        for policy in [Policy::BinPacking, Policy::Spread] {
            let first = plan(&nodes, &pods, policy);
            nodes.reverse();
            pods.reverse();
            assert_eq!(plan(&nodes, &pods, policy), first, "{policy}");
            nodes.rotate_left(7);
            pods.rotate_left(31);
            assert_eq!(plan(&nodes, &pods, policy), first, "{policy}");
        }
    }

    #[test]
    fn higher_priority_then_older_pods_are_placed_first() {
        let nodes = [node("a", "1", "1Gi", json!({}))];
        let pods = [
            pod(
                "new",
                "1",
                "",
                json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:02Z"}}),
            ),
            pod(
                "old",
                "1",
                "",
                json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"}}),
            ),
        ];
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("old", "a"), unplaced("new")]
        );
        let mut pods = pods.to_vec();
        pods[0].spec.as_mut().unwrap().priority = Some(1000);
        assert_eq!(
            placements(&nodes, &pods, Policy::BinPacking),
            [placed("new", "a"), unplaced("old")]
        );
    }

    #[test]
    fn pods_being_deleted_gated_or_for_another_scheduler_are_left_alone() {
        let nodes = [node("a", "4", "4Gi", json!({}))];
        let pods = [
            pod(
                "deleting",
                "",
                "",
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
            pod(
                "gated",
                "",
                "",
                json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}]}}),
            ),
            pod(
                "custom",
                "",
                "",
                json!({"spec": {"schedulerName": "my-scheduler"}}),
            ),
            pod(
                "default",
                "",
                "",
                json!({"spec": {"schedulerName": "default-scheduler"}}),
            ),
        ];
        assert_eq!(
            plan(&nodes, &pods, Policy::BinPacking),
            [Action::Bind {
                pod: key("default"),
                node: "a".into()
            }]
        );
    }

    #[test]
    fn an_unschedulable_condition_is_written_only_when_it_changes() {
        let nodes = [node("a", "1", "1Gi", json!({}))];
        let big = pod("big", "2", "", json!({}));
        let expected = "0/1 nodes are available: 1 Insufficient cpu.";
        assert_eq!(
            plan(&nodes, std::slice::from_ref(&big), Policy::BinPacking),
            [Action::MarkUnschedulable {
                pod: key("big"),
                message: expected.into(),
                transition: true
            }]
        );
        let mut marked = big.clone();
        marked.status = serde_json::from_value(json!({"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": expected},
        ]}))
        .unwrap();
        assert_eq!(
            plan(&nodes, std::slice::from_ref(&marked), Policy::BinPacking),
            []
        );
        // A different reason (here: no nodes left) is a new message, but no transition.
        assert_eq!(
            plan(&[], std::slice::from_ref(&marked), Policy::BinPacking),
            [Action::MarkUnschedulable {
                pod: key("big"),
                message: "no nodes available to schedule pods".into(),
                transition: false,
            }]
        );
    }

    #[test]
    fn bound_pods_get_a_true_scheduled_condition_without_a_failure_reason() {
        let with_condition = |name: &str, condition: Value| {
            pod(
                name,
                "",
                "",
                json!({"spec": {"nodeName": "a"}, "status": {"conditions": [condition]}}),
            )
        };
        let pods = [
            pod("preset", "", "", json!({"spec": {"nodeName": "a"}})),
            with_condition(
                "was-unschedulable",
                json!({"type": "PodScheduled", "status": "True", "reason": "Unschedulable"}),
            ),
            with_condition(
                "scheduled",
                json!({"type": "PodScheduled", "status": "True"}),
            ),
            pod(
                "other-scheduler",
                "",
                "",
                json!({"spec": {"nodeName": "a", "schedulerName": "mine"}}),
            ),
        ];
        assert_eq!(
            plan(
                &[node("a", "1", "1Gi", json!({}))],
                &pods,
                Policy::BinPacking
            ),
            [
                Action::MarkScheduled {
                    pod: key("preset"),
                    transition: true
                },
                Action::MarkScheduled {
                    pod: key("was-unschedulable"),
                    transition: false
                },
            ]
        );
    }

    #[test]
    fn a_node_without_allocatable_fits_only_pods_that_request_nothing() {
        let bare: Node = serde_json::from_value(json!({
            "metadata": {"name": "bare"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let pods = [
            pod("nothing", "", "", json!({})),
            pod("some", "100m", "", json!({})),
        ];
        assert_eq!(
            placements(std::slice::from_ref(&bare), &pods, Policy::Spread),
            [placed("nothing", "bare"), unplaced("some")]
        );
    }

    #[test]
    fn one_node_short_of_several_resources_counts_for_each() {
        let nodes = [
            node("a", "1", "1Gi", json!({})),
            node("b", "4", "1Gi", json!({})),
            node("c", "1", "8Gi", json!({})),
        ];
        let pods = [pod("p", "2", "2Gi", json!({}))];
        assert_eq!(
            message(&nodes, &pods, "p"),
            "0/3 nodes are available: 2 Insufficient cpu, 2 Insufficient memory."
        );
    }

    #[test]
    fn the_failed_scheduling_event_is_a_warning_about_the_pod() {
        let event = failed_scheduling_event(&key("p"), "0/1 nodes are available: 1 Too many pods.");
        let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(event).unwrap();
        assert!(event.metadata.name.as_deref().unwrap().starts_with("p."));
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(event.involved_object.uid.as_deref(), Some("uid-p"));
        assert_eq!(event.reason.as_deref(), Some("FailedScheduling"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.message.as_deref(),
            Some("0/1 nodes are available: 1 Too many pods.")
        );
    }

    #[test]
    fn the_scheduled_event_says_where_the_pod_was_assigned() {
        let event = scheduled_event(&key("p"), "node-1");
        let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(event).unwrap();
        assert_eq!(event.involved_object.api_version.as_deref(), Some("v1"));
        assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(event.involved_object.uid.as_deref(), Some("uid-p"));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(event.reason.as_deref(), Some("Scheduled"));
        assert_eq!(
            event.message.as_deref(),
            Some("Successfully assigned default/p to node-1")
        );
        assert_eq!(
            event.source.and_then(|s| s.component).as_deref(),
            Some(DEFAULT_SCHEDULER)
        );
    }

    #[test]
    fn policies_are_named_as_on_the_command_line() {
        assert_eq!("spread".parse(), Ok(Policy::Spread));
        assert_eq!("bin-packing".parse(), Ok(Policy::BinPacking));
        assert_eq!("MostAllocated".parse(), Ok(Policy::BinPacking));
        assert!("random".parse::<Policy>().is_err());
        assert_eq!(Policy::default(), Policy::BinPacking);
        assert_eq!(Policy::Spread.to_string(), "spread");
    }
}
