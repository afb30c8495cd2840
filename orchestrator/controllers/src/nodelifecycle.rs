//! The node lifecycle controller: notices nodes whose agent stopped renewing its Lease, marks
//! them `Ready=Unknown`, taints them, and evicts their pods (Kubernetes' node lifecycle
//! controller with its taint-based eviction and the pod garbage collector's force deletion).
//!
//! Node health, as Kubernetes decides it: the controller remembers, per node, when it last saw
//! a sign of life, i.e. a change of the Lease's `renewTime` in `kube-node-lease` or of the
//! Ready condition's `lastHeartbeatTime` ([`observe`]). It compares what *it* saw and when, not
//! the timestamps written by the agent, so clocks that disagree between machines do not matter,
//! and a freshly started controller gives every node a full grace period before judging it.
//! A node silent for [`NodeLifecycleConfig::grace`] (`--node-monitor-grace-period`, 40 s) gets
//! every condition set to `Unknown` through the `nodes/status` subresource (Ready with reason
//! `NodeStatusUnknown`, "Kubelet stopped posting node status."; `NodeStatusNeverUpdated` if it
//! never had a Ready condition). The agent sets Ready back to `True` when it registers again.
//!
//! [`plan`] is pure. From the nodes (with their last sign of life), the pods and the time:
//! - **taints**: a node whose Ready is `Unknown` carries `node.kubernetes.io/unreachable:
//!   NoExecute`, one whose Ready is `False` carries `node.kubernetes.io/not-ready:NoExecute`
//!   (each with `timeAdded`), and the same key with effect NoSchedule so that no new pod is
//!   placed there; a Ready node carries none of them. Other taints are left alone, except
//!   that a NoExecute taint without `timeAdded` gets one, so that `tolerationSeconds` count from
//!   a known time.
//! - **eviction**: a pod bound to a node with a NoExecute taint it does not tolerate is deleted
//!   at once; one that tolerates every such taint is deleted `tolerationSeconds` after the
//!   taint's `timeAdded` (the earliest, if several), or never for tolerations without seconds.
//!   Finished pods (`Succeeded`/`Failed`) are left alone: they hold nothing and the agent is
//!   not needed to stop them.
//! - **force deletion**: on a node whose Ready is not `True` nobody will finish a graceful
//!   deletion, so evictions there use `gracePeriodSeconds: 0` and the ReplicaSet controller
//!   replaces the pod at once; pods already terminating there are removed once their grace
//!   period (`deletionTimestamp` + `deletionGracePeriodSeconds`) is over.
//! - **pod readiness**: pods on a node whose Ready is not `True` get `Ready=False`, so Services
//!   stop sending them traffic while they wait for their toleration to run out.
//!
//! [`run`] re-plans whenever a Node, a Lease or a pod changes, and requeues itself for the next
//! due time ([`Plan::requeue_after`]: a lease about to go stale, a toleration about to run out).
//! Every write carries the target's uid, and node and pod-status writes also the
//! resourceVersion they were planned from, so a plan from a stale snapshot (say, one that
//! missed the agent setting Ready back to `True`) fails with a conflict and is redone.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use wharf_apiserver::ApiError;
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};

use crate::{ObjectKey, PassOutcome, drive, is_deleting, list_typed};

/// Kubernetes' default `--node-monitor-grace-period`: how long a node may stay silent before
/// it is considered unreachable (four lease renewals of 10 s).
pub const NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(40);

/// The taint of a node whose Ready condition is `Unknown`.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The taint of a node whose Ready condition is `False`.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";

/// Settings of the node lifecycle controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// How long a node may show no sign of life before it is marked `Ready=Unknown` and
    /// tainted unreachable (Kubernetes' `--node-monitor-grace-period`).
    pub grace: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> NodeLifecycleConfig {
        NodeLifecycleConfig {
            grace: NODE_MONITOR_GRACE_PERIOD,
        }
    }
}

/// The last sign of life the controller saw from one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The Lease's `renewTime` when last seen.
    lease_renew_time: Option<Timestamp>,
    /// The Ready condition's `lastHeartbeatTime` when last seen.
    ready_heartbeat: Option<Timestamp>,
    /// When the controller first saw the current values: the node's last sign of life.
    pub seen_at: Timestamp,
}

/// Updates what the controller knows of a node's sign of life: if the Lease was renewed or the
/// Ready condition has a new heartbeat since `previous` (or the node is seen for the first
/// time), the node was alive at `now`.
pub fn observe(
    previous: Option<&Heartbeat>,
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
) -> Heartbeat {
    let lease_renew_time = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let ready_heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let seen_at = match previous {
        Some(previous)
            if previous.lease_renew_time == lease_renew_time
                && previous.ready_heartbeat == ready_heartbeat =>
        {
            previous.seen_at
        }
        _ => now,
    };
    Heartbeat {
        lease_renew_time,
        ready_heartbeat,
        seen_at,
    }
}

/// A node and when it last showed a sign of life (see [`observe`]).
#[derive(Clone, Debug)]
pub struct NodeHealth {
    /// The node.
    pub node: Node,
    /// Its last sign of life.
    pub last_heartbeat: Timestamp,
}

/// One write the node lifecycle controller makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Replace the node's conditions (through `nodes/status`).
    UpdateNodeConditions {
        /// The node (cluster-scoped: empty namespace).
        node: ObjectKey,
        /// The node's resourceVersion the plan was made from.
        resource_version: String,
        /// The new conditions.
        conditions: Vec<NodeCondition>,
    },
    /// Replace the node's taints. Applied after the node's condition update of the same pass,
    /// if any (and then at the resourceVersion that update produced).
    UpdateNodeTaints {
        /// The node.
        node: ObjectKey,
        /// The node's resourceVersion the plan was made from.
        resource_version: String,
        /// The new taints.
        taints: Vec<Taint>,
    },
    /// Set a pod's Ready condition to `False` (through `pods/status`).
    MarkPodNotReady {
        /// The pod.
        pod: ObjectKey,
        /// The pod's resourceVersion the plan was made from.
        resource_version: String,
        /// The pod's new conditions.
        conditions: Vec<PodCondition>,
    },
    /// Delete a pod.
    DeletePod {
        /// The pod.
        pod: ObjectKey,
        /// Delete with `gracePeriodSeconds: 0`: its node is not Ready, so no agent would finish
        /// a graceful deletion.
        force: bool,
    },
}

/// The writes of one pass and when the next one is due.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The writes, node writes first.
    pub actions: Vec<Action>,
    /// When something planned now will be due (a node going stale, a toleration running out,
    /// a grace period ending), if anything.
    pub requeue_after: Option<Duration>,
}

/// What one node will look like after this pass's writes.
struct PlannedNode {
    /// The Ready condition's status after the pass, if it has one.
    ready: Option<String>,
    /// The taints after the pass.
    taints: Vec<Taint>,
}

impl PlannedNode {
    /// Whether the node reports (or is marked) not Ready: then no agent finishes graceful
    /// deletions on it. A node that never reported is judged once its grace period is over.
    fn is_lost(&self) -> bool {
        self.ready.as_deref().is_some_and(|status| status != "True")
    }
}

/// Plans one pass over every node and the pods bound to them.
pub fn plan(
    nodes: &[NodeHealth],
    pods: &[Pod],
    now: Timestamp,
    config: &NodeLifecycleConfig,
) -> Plan {
    let now_ms = now.as_millisecond();
    let grace_ms = i64::try_from(config.grace.as_millis()).unwrap_or(i64::MAX);
    let mut actions = Vec::new();
    let mut due: Option<i64> = None;
    let mut soonest = |at: i64| due = Some(due.map_or(at, |d| d.min(at)));

    let mut planned = HashMap::new();
    for health in nodes {
        let node = &health.node;
        let (Some(key), Some(resource_version)) = (
            ObjectKey::of(&node.metadata),
            node.metadata.resource_version.clone(),
        ) else {
            continue;
        };
        let stale_at = health
            .last_heartbeat
            .as_millisecond()
            .saturating_add(grace_ms);
        let mut conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if now_ms >= stale_at {
            if mark_unknown(&mut conditions, now) {
                actions.push(Action::UpdateNodeConditions {
                    node: key.clone(),
                    resource_version: resource_version.clone(),
                    conditions: conditions.clone(),
                });
            }
        } else {
            soonest(stale_at);
        }
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone());
        let current_taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let taints = desired_taints(&current_taints, ready.as_deref(), now);
        if taints != current_taints {
            actions.push(Action::UpdateNodeTaints {
                node: key.clone(),
                resource_version,
                taints: taints.clone(),
            });
        }
        if let Some(name) = node.metadata.name.as_deref() {
            planned.insert(name, PlannedNode { ready, taints });
        }
    }

    for pod in pods {
        let Some(node_name) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let (Some(node), Some(key)) = (planned.get(node_name), ObjectKey::of(&pod.metadata)) else {
            continue;
        };
        if is_finished(pod) {
            continue;
        }
        if is_deleting(&pod.metadata) {
            // Already being deleted: only a node that cannot finish the deletion needs help.
            if node.is_lost() {
                let grace_over = deletion_due(pod);
                if grace_over <= now_ms {
                    actions.push(Action::DeletePod {
                        pod: key,
                        force: true,
                    });
                } else {
                    soonest(grace_over);
                }
            }
            continue;
        }
        match eviction_due(node, pod, now_ms) {
            Some(at) if at <= now_ms => {
                actions.push(Action::DeletePod {
                    pod: key,
                    force: node.is_lost(),
                });
                continue;
            }
            Some(at) => soonest(at),
            None => {}
        }
        if node.is_lost()
            && let Some(conditions) = not_ready_conditions(pod, now)
            && let Some(resource_version) = pod.metadata.resource_version.clone()
        {
            actions.push(Action::MarkPodNotReady {
                pod: key,
                resource_version,
                conditions,
            });
        }
    }

    Plan {
        actions,
        requeue_after: due.map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(1) as u64)),
    }
}

/// Sets every condition of a silent node to `Unknown` (adding Ready if it never had one), as
/// Kubernetes does. The heartbeat times stay as they were: they record the agent's last
/// report. Returns whether anything changed.
fn mark_unknown(conditions: &mut Vec<NodeCondition>, now: Timestamp) -> bool {
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.insert(
            0,
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(whole_second(now)),
                last_heartbeat_time: None,
            },
        );
        changed = true;
    }
    for condition in conditions.iter_mut() {
        if condition.status != "Unknown" {
            condition.status = "Unknown".into();
            condition.reason = Some("NodeStatusUnknown".into());
            condition.message = Some("Kubelet stopped posting node status.".into());
            condition.last_transition_time = Some(whole_second(now));
            changed = true;
        }
    }
    changed
}

/// The taints a node should carry given its Ready status: the unreachable (Ready `Unknown`)
/// or not-ready (Ready `False`) taint, both NoExecute (for eviction) and NoSchedule (so no new
/// pod is placed there, as Kubernetes' `TaintNodesByCondition` does); neither when Ready is
/// `True`. Taints already there are kept as they are (NoExecute ones given a `timeAdded` if
/// missing), so a taint's `timeAdded` is when it first appeared. A node without a Ready
/// condition keeps its taints.
pub fn desired_taints(current: &[Taint], ready: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let wanted = match ready {
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        Some("False") => Some(NOT_READY_TAINT),
        Some(_) => None,
        None => {
            return current
                .iter()
                .cloned()
                .map(|t| with_time_added(t, now))
                .collect();
        }
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = (t.effect == NO_EXECUTE || t.effect == NO_SCHEDULE)
                && (t.key == UNREACHABLE_TAINT || t.key == NOT_READY_TAINT);
            !ours || Some(t.key.as_str()) == wanted
        })
        .cloned()
        .map(|t| with_time_added(t, now))
        .collect();
    if let Some(key) = wanted {
        for effect in [NO_EXECUTE, NO_SCHEDULE] {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == NO_EXECUTE).then(|| whole_second(now)),
                });
            }
        }
    }
    taints
}

/// `now` as Kubernetes stores times in conditions and taints: to the second.
fn whole_second(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn with_time_added(mut taint: Taint, now: Timestamp) -> Taint {
    if taint.effect == NO_EXECUTE && taint.time_added.is_none() {
        taint.time_added = Some(whole_second(now));
    }
    taint
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`): same effect (or
/// none), same key (or none, with `Exists`), and for `Equal` (the default) the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// When the pod is to be evicted from its node, in milliseconds since the epoch: at once
/// (`i64::MIN`) if it does not tolerate one of the node's NoExecute taints, else the earliest
/// `timeAdded + tolerationSeconds` over the taints, judged by the first toleration matching
/// each (as Kubernetes' taint manager picks them). `None`: the pod stays.
fn eviction_due(node: &PlannedNode, pod: &Pod, now_ms: i64) -> Option<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut due: Option<i64> = None;
    for taint in node.taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(i64::MIN);
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        // A taint without timeAdded gets one in this pass; until then, count from now.
        let added = taint
            .time_added
            .as_ref()
            .map_or(now_ms, |t| t.0.as_millisecond());
        let at = added.saturating_add(seconds.max(0).saturating_mul(1000));
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

/// When the grace period of a pod being deleted is over, in milliseconds since the epoch.
fn deletion_due(pod: &Pod) -> i64 {
    let since = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(i64::MIN, |t| t.0.as_millisecond());
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
    since.saturating_add(grace.max(0).saturating_mul(1000))
}

/// The pod's conditions with Ready set to `False`, or `None` if it is not `True` now (Kubernetes'
/// `MarkPodsNotReady` changes only the status and the transition time).
fn not_ready_conditions(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref()?.conditions.clone()?;
    let ready = conditions
        .iter_mut()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready.status = "False".into();
    ready.last_transition_time = Some(whole_second(now));
    Some(conditions)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

fn leases() -> &'static Resource {
    resources::find("coordination.k8s.io", "v1", "leases").expect("leases are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// The wall clock, to the millisecond. (Sub-second precision matters for short grace periods
/// in tests; `meta::now` has whole seconds.)
fn wall_clock() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millisecond(i64::try_from(millis).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One pass: observe the nodes' Leases, plan and apply. `heartbeats` is the controller's
/// memory of each node's last sign of life between passes.
async fn pass(
    registry: &Registry,
    config: &NodeLifecycleConfig,
    heartbeats: &Mutex<HashMap<String, Heartbeat>>,
) -> Result<PassOutcome, ApiError> {
    let all_nodes: Vec<Node> = list_typed(registry, nodes(), None).await?;
    let namespace = BTreeSet::from([NODE_LEASE_NAMESPACE.to_owned()]);
    let all_leases: Vec<Lease> = list_typed(registry, leases(), Some(&namespace)).await?;
    let now = wall_clock();
    let health: Vec<NodeHealth> = {
        let mut memory = heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        let lease_of: HashMap<&str, &Lease> = all_leases
            .iter()
            .filter_map(|l| Some((l.metadata.name.as_deref()?, l)))
            .collect();
        let mut seen = HashMap::new();
        let health = all_nodes
            .into_iter()
            .filter_map(|node| {
                let name = node.metadata.name.clone()?;
                let heartbeat = observe(
                    memory.get(&name),
                    &node,
                    lease_of.get(name.as_str()).copied(),
                    now,
                );
                let last_heartbeat = heartbeat.seen_at;
                seen.insert(name, heartbeat);
                Some(NodeHealth {
                    node,
                    last_heartbeat,
                })
            })
            .collect();
        // Nodes that are gone are forgotten; one that comes back gets a fresh grace period.
        *memory = seen;
        health
    };
    // Pods matter only on nodes that are tainted NoExecute or not Ready (or about to be); in
    // a healthy cluster a pass reads no pods.
    let without_pods = plan(&health, &[], now, config);
    let pods_matter = without_pods.actions.iter().any(|a| {
        matches!(
            a,
            Action::UpdateNodeConditions { .. } | Action::UpdateNodeTaints { .. }
        )
    }) || health.iter().any(|h| {
        let has_no_execute = h
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|t| t.effect == NO_EXECUTE);
        let ready = condition(&h.node, "Ready").map(|c| c.status.as_str());
        has_no_execute || ready.is_some_and(|r| r != "True")
    });
    let plan = if pods_matter {
        let all_pods: Vec<Pod> = list_typed(registry, pods(), None).await?;
        plan(&health, &all_pods, now, config)
    } else {
        without_pods
    };
    let mut outcome = apply(registry, plan.actions).await;
    outcome.requeue_after = plan.requeue_after;
    Ok(outcome)
}

/// Applies a plan's writes, in order.
async fn apply(registry: &Registry, actions: Vec<Action>) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    let options = WriteOptions::default();
    // The resourceVersion each node has after this pass's own writes, so that its taint update
    // follows its condition update instead of conflicting with it.
    let mut written: HashMap<String, String> = HashMap::new();
    for action in actions {
        match action {
            Action::UpdateNodeConditions {
                node,
                resource_version,
                conditions,
            } => {
                tracing::warn!(node = %node.name, "node stopped posting status; marking it Unknown");
                let patch = json!({
                    "metadata": {"uid": node.uid, "resourceVersion": resource_version},
                    "status": {"conditions": conditions},
                });
                let result = registry
                    .patch(
                        nodes(),
                        None,
                        &node.name,
                        PatchType::Merge,
                        &patch,
                        Part::Status,
                        &options,
                    )
                    .await;
                if let Ok(updated) = &result
                    && let Some(rv) = updated
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                {
                    written.insert(node.name.clone(), rv.to_owned());
                }
                outcome.record("updating node conditions", result.map(drop));
            }
            Action::UpdateNodeTaints {
                node,
                resource_version,
                taints,
            } => {
                let resource_version = written.remove(&node.name).unwrap_or(resource_version);
                let taints = if taints.is_empty() {
                    Value::Null
                } else {
                    json!(taints)
                };
                let patch = json!({
                    "metadata": {"uid": node.uid, "resourceVersion": resource_version},
                    "spec": {"taints": taints},
                });
                let result = registry
                    .patch(
                        nodes(),
                        None,
                        &node.name,
                        PatchType::Merge,
                        &patch,
                        Part::Main,
                        &options,
                    )
                    .await;
                outcome.record("updating node taints", result.map(drop));
            }
            Action::MarkPodNotReady {
                pod,
                resource_version,
                conditions,
            } => {
                let patch = json!({
                    "metadata": {"uid": pod.uid, "resourceVersion": resource_version},
                    "status": {"conditions": conditions},
                });
                let result = registry
                    .patch(
                        pods(),
                        Some(&pod.namespace),
                        &pod.name,
                        PatchType::Merge,
                        &patch,
                        Part::Status,
                        &options,
                    )
                    .await;
                outcome.record("marking a pod not ready", result.map(drop));
            }
            Action::DeletePod { pod, force } => {
                tracing::info!(namespace = %pod.namespace, pod = %pod.name, force, "evicting a pod from a tainted node");
                let delete = DeleteOptions {
                    precondition_uid: Some(pod.uid.clone()),
                    grace_period_seconds: force.then_some(0),
                    ..DeleteOptions::default()
                };
                let result = registry
                    .delete(pods(), Some(&pod.namespace), &pod.name, &delete)
                    .await;
                outcome.record("evicting a pod", result.map(drop));
            }
        }
    }
    outcome
}

/// Runs the node lifecycle controller until `stopping` resolves.
pub async fn run(
    registry: Registry,
    config: NodeLifecycleConfig,
    stopping: impl Future<Output = ()>,
) {
    let registry = &registry;
    let config = &config;
    let heartbeats = &Mutex::new(HashMap::new());
    drive(
        registry,
        "nodelifecycle",
        &[nodes(), leases(), pods()],
        stopping,
        // Every pass covers all nodes: which namespace changed says nothing about them.
        move |_namespaces| pass(registry, config, heartbeats),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn config() -> NodeLifecycleConfig {
        NodeLifecycleConfig { grace: GRACE }
    }

    /// A node whose Ready condition has `ready` as its status (none if `None`), with `taints`.
    fn node(ready: Option<&str>, taints: Value) -> Node {
        let conditions = match ready {
            Some(status) => json!([
                {"type": "Ready", "status": status, "reason": "WharfAgentReady",
                 "lastHeartbeatTime": time(-100), "lastTransitionTime": time(-100)},
                {"type": "ContainerRuntimeReady", "status": status,
                 "lastHeartbeatTime": time(-100), "lastTransitionTime": time(-100)},
            ]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "node-uid", "resourceVersion": "5"},
            "spec": {"taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    /// The node, last heard from `silent` seconds ago.
    fn health(node: Node, silent: i64) -> NodeHealth {
        NodeHealth {
            node,
            last_heartbeat: at(-silent),
        }
    }

    fn unreachable_since(offset: i64) -> Value {
        json!([
            {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": time(offset)},
            {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"},
        ])
    }

    fn keys_and_effects(taints: &[Taint]) -> Vec<(&str, &str)> {
        taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect()
    }

    fn pod(name: &str, tolerations: Value, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "9"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1",
                     "tolerations": tolerations},
            "status": {"phase": "Running"},
        });
        if let (Some(target), Value::Object(extra)) = (value.as_object_mut(), extra) {
            for (key, field) in extra {
                let merged = match (target.get(&key), field) {
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        let mut old = old.clone();
                        old.extend(new);
                        Value::Object(old)
                    }
                    (_, new) => new,
                };
                target.insert(key, merged);
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Value {
        let mut t = json!({"key": key, "operator": "Exists", "effect": "NoExecute"});
        if let Some(seconds) = seconds {
            t["tolerationSeconds"] = json!(seconds);
        }
        t
    }

    fn node_key() -> ObjectKey {
        ObjectKey {
            namespace: String::new(),
            name: "n1".into(),
            uid: "node-uid".into(),
        }
    }

    fn deletions(plan: &Plan) -> Vec<(&str, bool)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod { pod, force } => Some((pod.name.as_str(), *force)),
                _ => None,
            })
            .collect()
    }

    fn planned_taints(plan: &Plan) -> Option<&[Taint]> {
        plan.actions.iter().find_map(|a| match a {
            Action::UpdateNodeTaints { taints, .. } => Some(taints.as_slice()),
            _ => None,
        })
    }

    fn planned_conditions(plan: &Plan) -> Option<&[NodeCondition]> {
        plan.actions.iter().find_map(|a| match a {
            Action::UpdateNodeConditions { conditions, .. } => Some(conditions.as_slice()),
            _ => None,
        })
    }

    #[test]
    fn a_node_with_a_fresh_lease_is_left_alone_until_its_grace_period_ends() {
        let plan = plan(
            &[health(node(Some("True"), json!(null)), 10)],
            &[],
            at(0),
            &config(),
        );
        assert_eq!(plan.actions, []);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_node_silent_for_the_grace_period_becomes_unknown_and_unreachable() {
        let plan = plan(
            &[health(node(Some("True"), json!(null)), 40)],
            &[],
            at(0),
            &config(),
        );
        let conditions = planned_conditions(&plan).expect("a condition update");
        let ready = &conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_deref(),
                ready.message.as_deref()
            ),
            (
                "Ready",
                "Unknown",
                Some("NodeStatusUnknown"),
                Some("Kubelet stopped posting node status.")
            )
        );
        assert_eq!(ready.last_transition_time, Some(Time(at(0))));
        // The heartbeat records the agent's last report, not the controller's.
        assert_eq!(ready.last_heartbeat_time, Some(Time(at(-100))));
        assert_eq!(conditions[1].status, "Unknown");
        assert_eq!(
            planned_taints(&plan),
            Some(
                &[
                    Taint {
                        key: UNREACHABLE_TAINT.into(),
                        effect: "NoExecute".into(),
                        value: None,
                        time_added: Some(Time(at(0))),
                    },
                    Taint {
                        key: UNREACHABLE_TAINT.into(),
                        effect: "NoSchedule".into(),
                        value: None,
                        time_added: None,
                    }
                ][..]
            )
        );
        assert!(matches!(
            &plan.actions[0],
            Action::UpdateNodeConditions { node, resource_version, .. }
                if *node == node_key() && resource_version == "5"
        ));
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn a_node_that_never_posted_ready_gets_ready_unknown_never_updated() {
        let plan = plan(
            &[health(node(None, json!(null)), 41)],
            &[],
            at(0),
            &config(),
        );
        let conditions = planned_conditions(&plan).expect("a condition update");
        assert_eq!(conditions[0].type_, "Ready");
        assert_eq!(conditions[0].status, "Unknown");
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );
        assert_eq!(planned_taints(&plan).unwrap()[0].key, UNREACHABLE_TAINT);
    }

    #[test]
    fn a_node_reporting_not_ready_is_tainted_not_ready_instead_of_unreachable() {
        let plan = plan(
            &[health(node(Some("False"), unreachable_since(-5)), 1)],
            &[],
            at(0),
            &config(),
        );
        assert_eq!(planned_conditions(&plan), None);
        let taints = planned_taints(&plan).expect("a taint update");
        assert_eq!(
            keys_and_effects(taints),
            [
                (NOT_READY_TAINT, "NoExecute"),
                (NOT_READY_TAINT, "NoSchedule")
            ]
        );
        assert_eq!(taints[0].time_added, Some(Time(at(0))));
    }

    #[test]
    fn a_node_ready_again_loses_its_taints_but_keeps_other_taints() {
        let mut taints = unreachable_since(-60);
        taints
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "dedicated", "value": "infra", "effect": "NoSchedule"}));
        let plan = plan(
            &[health(node(Some("True"), taints), 1)],
            &[],
            at(0),
            &config(),
        );
        let taints = planned_taints(&plan).expect("a taint update");
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, "dedicated");
        assert!(matches!(
            &plan.actions[..],
            [Action::UpdateNodeTaints { resource_version, .. }] if resource_version == "5"
        ));
        // Once written, nothing more to do.
        let settled = node(
            Some("True"),
            json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            super::plan(&[health(settled, 1)], &[], at(0), &config()).actions,
            []
        );
    }

    #[test]
    fn an_unreachable_node_already_tainted_needs_no_node_writes() {
        let plan = plan(
            &[health(node(Some("Unknown"), unreachable_since(-5)), 60)],
            &[],
            at(0),
            &config(),
        );
        assert_eq!(plan.actions, []);
    }

    #[test]
    fn heartbeats_move_only_when_the_lease_or_the_ready_heartbeat_changes() {
        let n = node(Some("True"), json!(null));
        let lease = |renew: i64| -> Lease {
            serde_json::from_value(json!({
                "metadata": {"name": "n1", "namespace": NODE_LEASE_NAMESPACE},
                "spec": {"renewTime": format!("{}.000000Z", &time(renew)[..19])},
            }))
            .unwrap()
        };
        let first = observe(None, &n, Some(&lease(-3)), at(0));
        assert_eq!(
            first.seen_at,
            at(0),
            "a node seen first gets a full grace period"
        );
        let same = observe(Some(&first), &n, Some(&lease(-3)), at(30));
        assert_eq!(same.seen_at, at(0));
        let renewed = observe(Some(&same), &n, Some(&lease(7)), at(31));
        assert_eq!(renewed.seen_at, at(31));
        // The agent posting status again counts too.
        let mut reposted = n.clone();
        reposted
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_heartbeat_time = Some(Time(at(50)));
        let posted = observe(Some(&renewed), &reposted, Some(&lease(7)), at(50));
        assert_eq!(posted.seen_at, at(50));
    }

    #[test]
    fn pods_that_do_not_tolerate_a_no_execute_taint_are_evicted_at_once() {
        let n = node(
            Some("True"),
            json!([{"key": "dedicated", "value": "infra", "effect": "NoExecute", "timeAdded": time(-1)}]),
        );
        let pods = [
            pod(
                "intolerant",
                json!([toleration(UNREACHABLE_TAINT, Some(300))]),
                json!({}),
            ),
            pod(
                "tolerant",
                json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoExecute"}]),
                json!({}),
            ),
            pod(
                "wrong-value",
                json!([{"key": "dedicated", "operator": "Equal", "value": "web"}]),
                json!({}),
            ),
            pod("everything", json!([{"operator": "Exists"}]), json!({})),
        ];
        let plan = plan(&[health(n, 1)], &pods, at(0), &config());
        // The node is Ready, so its agent stops the pods gracefully.
        assert_eq!(
            deletions(&plan),
            [("intolerant", false), ("wrong-value", false)]
        );
    }

    #[test]
    fn tolerated_taints_evict_after_their_toleration_seconds_or_never() {
        let n = || node(Some("Unknown"), unreachable_since(-10));
        let pods = [
            pod(
                "two",
                json!([toleration(UNREACHABLE_TAINT, Some(2))]),
                json!({}),
            ),
            pod(
                "default",
                json!([toleration(UNREACHABLE_TAINT, Some(300))]),
                json!({}),
            ),
            pod(
                "forever",
                json!([toleration(UNREACHABLE_TAINT, None)]),
                json!({}),
            ),
            pod(
                "zero",
                json!([toleration(UNREACHABLE_TAINT, Some(0))]),
                json!({}),
            ),
            pod("not-mine", json!([]), json!({"spec": {"nodeName": "n2"}})),
            pod("done", json!([]), json!({"status": {"phase": "Succeeded"}})),
        ];
        let now = plan(&[health(n(), 60)], &pods, at(0), &config());
        // Pods on a node that is not Ready are removed at once (no agent would finish them).
        assert_eq!(deletions(&now), [("two", true), ("zero", true)]);
        assert_eq!(now.requeue_after, Some(Duration::from_secs(290)));
        let later = plan(&[health(n(), 400)], &pods, at(290), &config());
        assert_eq!(
            deletions(&later),
            [("two", true), ("default", true), ("zero", true)]
        );
        assert_eq!(later.requeue_after, None, "the forever pod is never due");
    }

    #[test]
    fn the_next_pass_is_due_at_the_earliest_lease_expiry_or_toleration_end() {
        let mut other = node(Some("True"), json!(null));
        other.metadata.name = Some("n2".into());
        other.metadata.uid = Some("n2-uid".into());
        let pods = [pod(
            "web",
            json!([toleration(UNREACHABLE_TAINT, Some(20))]),
            json!({}),
        )];
        // n1 unreachable since 10 s ago: the pod is due in 10 s; n2 goes stale in 35 s.
        let plan = plan(
            &[
                health(node(Some("Unknown"), unreachable_since(-10)), 60),
                health(other.clone(), 5),
            ],
            &pods,
            at(0),
            &config(),
        );
        assert_eq!(deletions(&plan), []);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
        let plan = super::plan(
            &[
                health(node(Some("Unknown"), unreachable_since(-10)), 60),
                health(other, 35),
            ],
            &pods,
            at(0),
            &config(),
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_newly_unreachable_node_evicts_in_the_same_pass_counting_from_now() {
        let pods = [
            pod("intolerant", json!([]), json!({})),
            pod(
                "quick",
                json!([toleration(UNREACHABLE_TAINT, Some(3))]),
                json!({}),
            ),
        ];
        let plan = plan(
            &[health(node(Some("True"), json!(null)), 45)],
            &pods,
            at(0),
            &config(),
        );
        assert_eq!(deletions(&plan), [("intolerant", true)]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(3)));
        // Node writes come before pod writes.
        assert!(matches!(
            plan.actions[0],
            Action::UpdateNodeConditions { .. }
        ));
        assert!(matches!(plan.actions[1], Action::UpdateNodeTaints { .. }));
    }

    #[test]
    fn terminating_pods_on_a_lost_node_are_removed_once_their_grace_period_is_over() {
        let terminating = |name: &str, since: i64| {
            pod(
                name,
                json!([toleration(UNREACHABLE_TAINT, None)]),
                json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                                    "deletionTimestamp": time(since), "deletionGracePeriodSeconds": 30}}),
            )
        };
        let pods = [terminating("over", -31), terminating("stopping", -10)];
        let lost = plan(
            &[health(node(Some("Unknown"), unreachable_since(-60)), 100)],
            &pods,
            at(0),
            &config(),
        );
        assert_eq!(deletions(&lost), [("over", true)]);
        assert_eq!(lost.requeue_after, Some(Duration::from_secs(20)));
        // A Ready node's agent finishes its own deletions.
        let fine = plan(
            &[health(node(Some("True"), json!(null)), 1)],
            &pods,
            at(0),
            &config(),
        );
        assert_eq!(deletions(&fine), []);
    }

    #[test]
    fn ready_pods_on_a_node_that_is_not_ready_are_marked_not_ready() {
        let ready = json!({"status": {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": time(-100)},
        ]}});
        let pods = [pod(
            "web",
            json!([toleration(UNREACHABLE_TAINT, Some(300))]),
            ready,
        )];
        let plan = plan(
            &[health(node(Some("Unknown"), unreachable_since(-5)), 60)],
            &pods,
            at(0),
            &config(),
        );
        let [
            Action::MarkPodNotReady {
                pod,
                resource_version,
                conditions,
            },
        ] = &plan.actions[..]
        else {
            panic!("expected one pod status update: {:?}", plan.actions);
        };
        assert_eq!((pod.name.as_str(), resource_version.as_str()), ("web", "9"));
        assert_eq!(conditions[0].status, "True", "other conditions are kept");
        assert_eq!(conditions[1].status, "False");
        assert_eq!(conditions[1].last_transition_time, Some(Time(at(0))));
    }

    #[test]
    fn tolerations_match_by_effect_key_operator_and_value() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let t = |value: Value| -> Toleration { serde_json::from_value(value).unwrap() };
        assert!(tolerates(&t(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &t(json!({"key": "k", "operator": "Exists"})),
            &taint
        ));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint));
        assert!(tolerates(
            &t(json!({"operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"operator": "Exists", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(!tolerates(&t(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &t(json!({"key": "other", "operator": "Exists"})),
            &taint
        ));
    }
}
