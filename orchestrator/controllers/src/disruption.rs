//! The disruption controller: the status of every `policy/v1` PodDisruptionBudget, as
//! Kubernetes' disruption controller (`pkg/controller/disruption`) computes it. The eviction
//! API reads that status to decide whether a pod may be evicted.
//!
//! [`plan`] is pure. From one budget, the pods of its namespace and the ReplicaSets and
//! Deployments there, it computes:
//! - **the pods**: those of the budget's namespace its `spec.selector` matches. An empty
//!   selector matches every pod (policy/v1); a missing one matches none.
//! - **`currentHealthy`**: matched pods that are Ready (condition `Ready=True`), not being
//!   deleted, and not in `disruptedPods` (a pod the eviction API has just evicted counts as
//!   gone already).
//! - **`expectedPods` and `desiredHealthy`**:
//!   - `minAvailable: N` (an integer): the number of matched pods, and `N`.
//!   - `minAvailable: P%`, or `maxUnavailable` (integer or percentage): the scale of the pods'
//!     controllers, summed once per controller: a ReplicaSet's `spec.replicas`, or the
//!     Deployment's for a ReplicaSet a Deployment controls. A pod of any other controller (a
//!     Job, say), or of one that is gone, counts as one. Pods without a controller are left
//!     out of this count, as in Kubernetes (which warns about them). `desiredHealthy` is
//!     `ceil(P% × expected)` for `minAvailable`, and `expected − maxUnavailable` (a percentage
//!     rounded up first) floored at 0 for `maxUnavailable`. When both are set (validation
//!     forbids it) `maxUnavailable` wins, as in Kubernetes.
//!   - neither: both 0, as in Kubernetes; with nothing expected, no disruption is allowed (see
//!     below), so such a budget blocks every eviction of its pods, as it does there.
//! - **`disruptionsAllowed`**: `currentHealthy − desiredHealthy`, but 0 when negative or
//!   when `expectedPods` is 0 (Kubernetes' guard for budgets whose first pods appear before
//!   their status is updated).
//! - **`disruptedPods`**: the entries the eviction API wrote whose pod still matches, is not
//!   being deleted, and was evicted less than [`DELETION_TIMEOUT`] ago; the pass is requeued
//!   for when the oldest of them expires.
//! - **`observedGeneration`** (`metadata.generation`) and one condition
//!   [`DISRUPTION_ALLOWED`]: `True`/[`SUFFICIENT_PODS`] when a disruption is allowed, else
//!   `False`/[`INSUFFICIENT_PODS`]; its `lastTransitionTime` moves only when its status does.
//!
//! A selector or percentage that cannot be read puts the budget in Kubernetes' "fail safe"
//! state: the previous status with `disruptionsAllowed: 0` and the condition
//! `False`/[`SYNC_FAILED`] carrying the error.
//!
//! [`run`] applies plans whenever a budget, pod, ReplicaSet or Deployment changes (re-planning
//! only the namespace that changed) and every [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL). The
//! status is written through the status subresource only when it changed, with the budget's
//! uid and resourceVersion as preconditions, so an eviction that updated `disruptedPods` in
//! the meantime is never overwritten.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use wharf_apiserver::registry::{Part, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{PassOutcome, controller_of, drive, is_deleting, label_map, list_typed};

/// The type of the budget's one condition.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// The reason of [`DISRUPTION_ALLOWED`] when a disruption is allowed.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// The reason of [`DISRUPTION_ALLOWED`] when no disruption is allowed.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// The reason of [`DISRUPTION_ALLOWED`] when the budget could not be computed.
pub const SYNC_FAILED: &str = "SyncFailed";
/// How long an evicted pod stays in `disruptedPods` (counted as not healthy) waiting for its
/// deletion to show, as Kubernetes' `DeletionTimeout`.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`plan`] decides for one budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The status to write, when it differs from the stored one.
    pub status: Option<PodDisruptionBudgetStatus>,
    /// Plan again after this long even if nothing changes: when the oldest entry of
    /// `disruptedPods` expires.
    pub requeue_after: Option<Duration>,
}

/// The controllers whose scale `expectedPods` may count, from the budget's namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct Workloads<'a> {
    /// The ReplicaSets.
    pub replica_sets: &'a [ReplicaSet],
    /// The Deployments.
    pub deployments: &'a [Deployment],
}

/// Plans the status of one budget at `now`. `pods` are the pods of its namespace (others are
/// ignored), `workloads` the ReplicaSets and Deployments there.
pub fn plan(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    workloads: Workloads<'_>,
    now: Timestamp,
) -> Plan {
    let current = pdb.status.as_ref();
    let computed = matched_pods(pdb, pods)
        .and_then(|matched| expected_and_desired(pdb, &matched, workloads).map(|e| (matched, e)));
    let (matched, (expected_pods, desired_healthy)) = match computed {
        Ok(computed) => computed,
        Err(message) => {
            let mut status = current.cloned().unwrap_or_default();
            status.disruptions_allowed = Some(0);
            let generation = status.observed_generation;
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            set_condition(conditions, "False", SYNC_FAILED, &message, generation, now);
            return Plan {
                status: (current != Some(&status)).then_some(status),
                requeue_after: None,
            };
        }
    };

    // The evictions still waiting for their pod to go.
    let previous = current.and_then(|s| s.disrupted_pods.as_ref());
    let mut disrupted_pods = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    for pod in &matched {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        let Some(evicted) = previous.and_then(|p| p.get(name)) else {
            continue;
        };
        if is_deleting(&pod.metadata) {
            continue;
        }
        let expires = expiry(evicted);
        if expires >= now {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            disrupted_pods.insert(name.to_owned(), evicted.clone());
        }
    }
    let current_healthy = matched
        .iter()
        .filter(|pod| !is_deleting(&pod.metadata))
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            disrupted_pods
                .get(name)
                .is_none_or(|evicted| expiry(evicted) <= now)
        })
        .filter(|pod| is_ready(pod))
        .count();
    let current_healthy = i32::try_from(current_healthy).unwrap_or(i32::MAX);

    let surplus = current_healthy.saturating_sub(desired_healthy);
    let disruptions_allowed = if expected_pods <= 0 || surplus <= 0 {
        0
    } else {
        surplus
    };
    let generation = pdb.metadata.generation;
    let mut conditions = current
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let (condition_status, reason) = if disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    set_condition(
        &mut conditions,
        condition_status,
        reason,
        "",
        generation,
        now,
    );
    let status = PodDisruptionBudgetStatus {
        conditions: Some(conditions),
        current_healthy: Some(current_healthy),
        desired_healthy: Some(desired_healthy),
        disrupted_pods: (!disrupted_pods.is_empty()).then_some(disrupted_pods),
        disruptions_allowed: Some(disruptions_allowed),
        expected_pods: Some(expected_pods),
        observed_generation: generation,
    };
    // Once `now` is past an entry's expiry it is dropped; requeue for the second after.
    let requeue_after = recheck.map(|at| {
        let wait = at.duration_since(now) + SignedDuration::from_secs(1);
        Duration::try_from(wait).unwrap_or(Duration::from_secs(1))
    });
    Plan {
        status: (current != Some(&status)).then_some(status),
        requeue_after,
    }
}

/// When an entry of `disruptedPods` expires.
fn expiry(evicted: &Time) -> Timestamp {
    evicted
        .0
        .checked_add(SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The pods of the budget's namespace its selector matches; an error if the selector cannot
/// be read.
fn matched_pods<'a>(pdb: &PodDisruptionBudget, pods: &'a [Pod]) -> Result<Vec<&'a Pod>, String> {
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(Vec::new());
    };
    let value = serde_json::to_value(selector).map_err(|e| e.to_string())?;
    // `{}` parses to the empty selector, which matches every pod.
    let selector = wharf_apimachinery::labels::from_label_selector_object(&value)
        .map_err(|e| e.to_string())?;
    let namespace = pdb.metadata.namespace.as_deref().unwrap_or_default();
    Ok(pods
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter(|pod| selector.matches(Some(&label_map(pod.metadata.labels.as_ref()))))
        .collect())
}

/// `expectedPods` and `desiredHealthy`, as Kubernetes' `getExpectedPodCount`.
fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    matched: &[&Pod],
    workloads: Workloads<'_>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max_unavailable) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = expected_scale(matched, workloads);
        let max_unavailable = scaled(max_unavailable, expected)?;
        return Ok((expected, expected.saturating_sub(max_unavailable).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(min_available)) => Ok((
            i32::try_from(matched.len()).unwrap_or(i32::MAX),
            *min_available,
        )),
        Some(percentage @ IntOrString::String(_)) => {
            let expected = expected_scale(matched, workloads);
            Ok((expected, scaled(percentage, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// An integer as is, or a percentage of `total` rounded up, as Kubernetes'
/// `GetScaledValueFromIntOrPercent(value, total, true)`.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {text:?} is not a percentage")
                })?;
            let product = percent.saturating_mul(i64::from(total));
            // Integer division truncates toward zero: that is the ceiling for negative
            // products, and one short of it for positive ones with a remainder.
            let ceiling = product / 100 + i64::from(product % 100 > 0);
            Ok(i32::try_from(ceiling).unwrap_or(if ceiling < 0 { i32::MIN } else { i32::MAX }))
        }
    }
}

/// The sum of the scales of the matched pods' controllers, each counted once (Kubernetes'
/// `getExpectedScale`).
fn expected_scale(matched: &[&Pod], workloads: Workloads<'_>) -> i32 {
    let mut scales: BTreeMap<&str, i32> = BTreeMap::new();
    let mut others: i32 = 0;
    for pod in matched {
        let Some(reference) = controller_of(&pod.metadata) else {
            // Unmanaged: Kubernetes leaves it out and warns.
            continue;
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        match controller_scale(
            &reference.kind,
            &reference.name,
            &reference.uid,
            namespace,
            workloads,
        ) {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => others = others.saturating_add(1),
        }
    }
    scales
        .values()
        .fold(others, |sum, scale| sum.saturating_add(*scale))
}

/// The uid and scale of the controller a pod's controller reference names: a ReplicaSet's, or
/// that of the Deployment controlling it. `None` for other kinds and for controllers not found.
fn controller_scale<'a>(
    kind: &str,
    name: &str,
    uid: &str,
    namespace: &str,
    workloads: Workloads<'a>,
) -> Option<(&'a str, i32)> {
    if kind != "ReplicaSet" {
        return None;
    }
    let same = |meta: &ObjectMeta, kind_name: &str, kind_uid: &str| {
        meta.name.as_deref() == Some(kind_name)
            && meta.uid.as_deref() == Some(kind_uid)
            && meta.namespace.as_deref().unwrap_or_default() == namespace
    };
    let replica_set = workloads
        .replica_sets
        .iter()
        .find(|rs| same(&rs.metadata, name, uid))?;
    match controller_of(&replica_set.metadata) {
        Some(owner) if owner.kind == "Deployment" => {
            let deployment = workloads
                .deployments
                .iter()
                .find(|d| same(&d.metadata, &owner.name, &owner.uid))?;
            let replicas = deployment.spec.replicas;
            Some((deployment.metadata.uid.as_deref()?, replicas.unwrap_or(1)))
        }
        _ => {
            let replicas = replica_set.spec.replicas;
            Some((replica_set.metadata.uid.as_deref()?, replicas.unwrap_or(1)))
        }
    }
}

/// Whether the pod has the condition `Ready=True`.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Sets the [`DISRUPTION_ALLOWED`] condition as Kubernetes' `meta.SetStatusCondition`: its
/// `lastTransitionTime` becomes `now` only when it is new or its status changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(condition) => {
            if condition.status != status {
                condition.status = status.to_owned();
                condition.last_transition_time = Time(now);
            }
            reason.clone_into(&mut condition.reason);
            message.clone_into(&mut condition.message);
            condition.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            last_transition_time: Time(now),
            message: message.to_owned(),
            observed_generation,
            reason: reason.to_owned(),
            status: status.to_owned(),
            type_: DISRUPTION_ALLOWED.to_owned(),
        }),
    }
}

fn budgets() -> &'static Resource {
    resources::find("policy", "v1", "poddisruptionbudgets")
        .expect("PodDisruptionBudgets are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

fn replica_sets() -> &'static Resource {
    resources::find("apps", "v1", "replicasets").expect("ReplicaSets are served")
}

fn deployments() -> &'static Resource {
    resources::find("apps", "v1", "deployments").expect("Deployments are served")
}

/// Whether the budget's `expectedPods` counts its pods' controllers' scale.
fn uses_scale(pdb: &PodDisruptionBudget) -> bool {
    pdb.spec.as_ref().is_some_and(|s| {
        s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_)))
    })
}

/// Groups objects by namespace.
fn by_namespace<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    objects: Vec<T>,
) -> HashMap<String, Vec<T>> {
    let mut grouped: HashMap<String, Vec<T>> = HashMap::new();
    for object in objects {
        let namespace = object.metadata().namespace.clone().unwrap_or_default();
        grouped.entry(namespace).or_default().push(object);
    }
    grouped
}

/// One pass over the budgets of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let budgets_found: Vec<PodDisruptionBudget> =
        list_typed(registry, budgets(), namespaces.as_ref()).await?;
    if budgets_found.is_empty() {
        return Ok(PassOutcome::default());
    }
    // Only the namespaces with budgets are read.
    let scope: BTreeSet<String> = budgets_found
        .iter()
        .map(|b| b.metadata.namespace.clone().unwrap_or_default())
        .collect();
    let pods_by_namespace = by_namespace(list_typed::<Pod>(registry, pods(), Some(&scope)).await?);
    let (replica_sets_by_namespace, deployments_by_namespace) = if budgets_found
        .iter()
        .any(uses_scale)
    {
        (
            by_namespace(list_typed::<ReplicaSet>(registry, replica_sets(), Some(&scope)).await?),
            by_namespace(list_typed::<Deployment>(registry, deployments(), Some(&scope)).await?),
        )
    } else {
        (HashMap::new(), HashMap::new())
    };
    let now = meta::now();
    let mut outcome = PassOutcome::default();
    for pdb in &budgets_found {
        let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
        let pods = pods_by_namespace
            .get(&namespace)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let workloads = Workloads {
            replica_sets: replica_sets_by_namespace
                .get(&namespace)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            deployments: deployments_by_namespace
                .get(&namespace)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        };
        let planned = plan(pdb, pods, workloads, now);
        outcome = outcome.merge(PassOutcome {
            requeue_after: planned.requeue_after,
            failed_writes: false,
        });
        let Some(status) = planned.status else {
            continue;
        };
        let name = pdb.metadata.name.clone().unwrap_or_default();
        let body = json!({
            "metadata": {
                "name": name,
                "uid": pdb.metadata.uid,
                "resourceVersion": pdb.metadata.resource_version,
            },
            "status": status,
        });
        let result = registry
            .update(
                budgets(),
                Some(&namespace),
                &name,
                body,
                Part::Status,
                &WriteOptions::default(),
            )
            .await;
        outcome.record("updating PodDisruptionBudget status", result.map(drop));
    }
    Ok(outcome)
}

/// Runs the disruption controller until `stopping` resolves.
pub async fn run(registry: Registry, stopping: impl Future<Output = ()>) {
    let registry = &registry;
    drive(
        registry,
        "disruption",
        &[budgets(), pods(), replica_sets(), deployments()],
        stopping,
        move |namespaces| pass(registry, namespaces),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::{Value, json};

    fn budget(spec: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "pdb-uid",
                "generation": 3, "resourceVersion": "10",
            },
            "spec": spec,
        }))
        .unwrap()
    }

    /// A pod labelled `app: web` in the default namespace, Ready or not, controlled by
    /// `owner` (a ReplicaSet uid) if given.
    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        let mut value = json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"},
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        });
        if let Some(owner) = owner {
            value["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner,
                "controller": true,
            }]);
        }
        serde_json::from_value(value).unwrap()
    }

    fn labelled(name: &str, labels: Value) -> Pod {
        let mut pod = pod(name, true, None);
        pod.metadata.labels = serde_json::from_value(labels).unwrap();
        pod
    }

    fn replica_set(uid: &str, replicas: i32, deployment: Option<&str>) -> ReplicaSet {
        let mut value = json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        });
        if let Some(deployment) = deployment {
            value["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                "uid": deployment, "controller": true,
            }]);
        }
        serde_json::from_value(value).unwrap()
    }

    fn deployment(uid: &str, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}},
            },
        }))
        .unwrap()
    }

    fn status(
        pdb: &PodDisruptionBudget,
        pods: &[Pod],
        workloads: Workloads<'_>,
    ) -> PodDisruptionBudgetStatus {
        plan(pdb, pods, workloads, now())
            .status
            .expect("a status to write")
    }

    /// `(expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed)`.
    fn counts(status: &PodDisruptionBudgetStatus) -> (i32, i32, i32, i32) {
        (
            status.expected_pods.unwrap(),
            status.desired_healthy.unwrap(),
            status.current_healthy.unwrap(),
            status.disruptions_allowed.unwrap(),
        )
    }

    fn condition(status: &PodDisruptionBudgetStatus) -> &Condition {
        let conditions = status.conditions.as_ref().unwrap();
        assert_eq!(conditions.len(), 1);
        &conditions[0]
    }

    const WEB: fn() -> Value = || json!({"matchLabels": {"app": "web"}});

    #[test]
    fn min_available_as_a_number_counts_matched_pods_and_ready_ones() {
        let pdb = budget(json!({"selector": WEB(), "minAvailable": 2}));
        let pods = [
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let status = status(&pdb, &pods, Workloads::default());
        assert_eq!(counts(&status), (3, 2, 3, 1));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.disrupted_pods, None);
        let allowed = condition(&status);
        assert_eq!(
            (
                allowed.type_.as_str(),
                allowed.status.as_str(),
                allowed.reason.as_str()
            ),
            (DISRUPTION_ALLOWED, "True", SUFFICIENT_PODS)
        );
        assert_eq!(allowed.message, "");
        assert_eq!(allowed.last_transition_time, Time(now()));
        assert_eq!(allowed.observed_generation, Some(3));
    }

    #[test]
    fn unready_and_terminating_pods_are_not_healthy() {
        let pdb = budget(json!({"selector": WEB(), "minAvailable": 2}));
        let mut deleting = pod("c", true, None);
        deleting.metadata.deletion_timestamp = Some(Time(now()));
        let pods = [pod("a", true, None), pod("b", false, None), deleting];
        let status = status(&pdb, &pods, Workloads::default());
        assert_eq!(counts(&status), (3, 2, 1, 0));
        let allowed = condition(&status);
        assert_eq!(
            (allowed.status.as_str(), allowed.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
    }

    #[test]
    fn an_empty_selector_matches_every_pod_of_the_namespace_and_a_missing_one_none() {
        let mut elsewhere = pod("x", true, None);
        elsewhere.metadata.namespace = Some("other".into());
        let pods = [
            labelled("a", json!({"app": "db"})),
            labelled("b", json!({})),
            elsewhere,
        ];
        let every = budget(json!({"selector": {}, "minAvailable": 1}));
        assert_eq!(
            counts(&status(&every, &pods, Workloads::default())),
            (2, 1, 2, 1)
        );
        let none = budget(json!({"minAvailable": 1}));
        assert_eq!(
            counts(&status(&none, &pods, Workloads::default())),
            (0, 1, 0, 0)
        );
    }

    #[test]
    fn match_expressions_select_pods_with_every_operator() {
        let pods = [
            labelled("a", json!({"tier": "front", "track": "stable"})),
            labelled("b", json!({"tier": "front", "track": "canary"})),
            labelled("c", json!({"tier": "back", "track": "stable"})),
            labelled(
                "d",
                json!({"tier": "front", "track": "stable", "debug": "1"}),
            ),
            labelled("e", json!({"track": "stable"})),
        ];
        let pdb = budget(json!({
            "selector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "track", "operator": "NotIn", "values": ["canary"]},
                {"key": "track", "operator": "Exists"},
                {"key": "debug", "operator": "DoesNotExist"},
            ]},
            "minAvailable": 0,
        }));
        // Only `a` matches.
        assert_eq!(
            counts(&status(&pdb, &pods, Workloads::default())),
            (1, 0, 1, 1)
        );
    }

    #[test]
    fn max_unavailable_counts_the_replicas_of_the_pods_replica_set() {
        let pdb = budget(json!({"selector": WEB(), "maxUnavailable": 1}));
        let replica_sets = [replica_set("rs-1", 5, None)];
        let workloads = Workloads {
            replica_sets: &replica_sets,
            deployments: &[],
        };
        let three = [
            pod("a", true, Some("rs-1")),
            pod("b", true, Some("rs-1")),
            pod("c", true, Some("rs-1")),
        ];
        assert_eq!(counts(&status(&pdb, &three, workloads)), (5, 4, 3, 0));
        let five: Vec<Pod> = (0..5)
            .map(|i| pod(&format!("p{i}"), true, Some("rs-1")))
            .collect();
        assert_eq!(counts(&status(&pdb, &five, workloads)), (5, 4, 5, 1));
    }

    #[test]
    fn replica_sets_of_one_deployment_count_the_deployment_scale_once() {
        let pdb = budget(json!({"selector": WEB(), "maxUnavailable": 1}));
        let replica_sets = [
            replica_set("old", 1, Some("web")),
            replica_set("new", 3, Some("web")),
        ];
        let deployments = [deployment("web", 4)];
        let workloads = Workloads {
            replica_sets: &replica_sets,
            deployments: &deployments,
        };
        let pods = [
            pod("a", true, Some("old")),
            pod("b", true, Some("new")),
            pod("c", true, Some("new")),
            pod("d", true, Some("new")),
        ];
        assert_eq!(counts(&status(&pdb, &pods, workloads)), (4, 3, 4, 1));
    }

    #[test]
    fn percentages_are_rounded_up() {
        let replica_sets = [replica_set("rs-1", 3, None)];
        let workloads = Workloads {
            replica_sets: &replica_sets,
            deployments: &[],
        };
        let pods: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}"), true, Some("rs-1")))
            .collect();
        let min = budget(json!({"selector": WEB(), "minAvailable": "50%"}));
        assert_eq!(counts(&status(&min, &pods, workloads)), (3, 2, 3, 1));
        let max = budget(json!({"selector": WEB(), "maxUnavailable": "50%"}));
        assert_eq!(counts(&status(&max, &pods, workloads)), (3, 1, 3, 2));
        let all = budget(json!({"selector": WEB(), "maxUnavailable": "100%"}));
        assert_eq!(counts(&status(&all, &pods, workloads)), (3, 0, 3, 3));
    }

    #[test]
    fn pods_of_other_controllers_count_one_each_and_pods_without_one_are_not_expected() {
        let pdb = budget(json!({"selector": WEB(), "maxUnavailable": 1}));
        let mut job_pod = pod("job-1", true, None);
        job_pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "batch".into(),
            uid: "job-uid".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        // A ReplicaSet that is gone counts its pod, too.
        let pods = [
            job_pod,
            pod("orphan", true, None),
            pod("lost", true, Some("gone")),
        ];
        assert_eq!(
            counts(&status(&pdb, &pods, Workloads::default())),
            (2, 1, 3, 2)
        );
    }

    #[test]
    fn a_budget_without_min_available_or_max_unavailable_allows_no_disruption() {
        let pdb = budget(json!({"selector": WEB()}));
        let pods = [pod("a", true, None), pod("b", true, None)];
        assert_eq!(
            counts(&status(&pdb, &pods, Workloads::default())),
            (0, 0, 2, 0)
        );
    }

    #[test]
    fn no_disruption_is_allowed_while_no_pods_are_expected() {
        let pdb = budget(json!({"selector": WEB(), "maxUnavailable": 1}));
        // Healthy but unmanaged: nothing is expected, so nothing may go.
        let pods = [pod("a", true, None)];
        assert_eq!(
            counts(&status(&pdb, &pods, Workloads::default())),
            (0, 0, 1, 0)
        );
    }

    #[test]
    fn recently_disrupted_pods_count_as_unhealthy_until_their_entry_expires() {
        let mut pdb = budget(json!({"selector": WEB(), "minAvailable": 1}));
        pdb.status = Some(
            serde_json::from_value(json!({"disruptedPods": {
                "recent": time(-30),
                "stale": time(-200),
                "deleting": time(-10),
                "gone": time(-10),
            }}))
            .unwrap(),
        );
        let mut deleting = pod("deleting", true, None);
        deleting.metadata.deletion_timestamp = Some(Time(now()));
        let pods = [
            pod("recent", true, None),
            pod("stale", true, None),
            pod("other", true, None),
            deleting,
        ];
        let planned = plan(&pdb, &pods, Workloads::default(), now());
        let status = planned.status.unwrap();
        // `recent` is still being evicted and `deleting` is going: two of four are healthy.
        assert_eq!(counts(&status), (4, 1, 2, 1));
        let kept: Vec<&String> = status.disrupted_pods.as_ref().unwrap().keys().collect();
        assert_eq!(kept, ["recent"]);
        // Re-planned the second after `recent` expires (evicted 30 s ago, 120 s timeout).
        assert_eq!(planned.requeue_after, Some(Duration::from_secs(91)));

        pdb.status = Some(status);
        let later = Timestamp::from_second(NOW + 91).unwrap();
        let status = plan(&pdb, &pods, Workloads::default(), later)
            .status
            .unwrap();
        assert_eq!(status.disrupted_pods, None);
        assert_eq!(counts(&status), (4, 1, 3, 2));
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut pdb = budget(json!({"selector": WEB(), "minAvailable": 1}));
        let pods = [pod("a", true, None), pod("b", true, None)];
        pdb.status = plan(&pdb, &pods, Workloads::default(), now()).status;
        let later = Timestamp::from_second(NOW + 60).unwrap();
        assert_eq!(
            plan(&pdb, &pods, Workloads::default(), later),
            Plan::default()
        );
        // A new generation is observed even when the counts stay the same.
        pdb.metadata.generation = Some(4);
        let status = plan(&pdb, &pods, Workloads::default(), later)
            .status
            .unwrap();
        assert_eq!(status.observed_generation, Some(4));
    }

    #[test]
    fn the_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut pdb = budget(json!({"selector": WEB(), "minAvailable": 1}));
        let mut pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        pdb.status = plan(&pdb, &pods, Workloads::default(), now()).status;
        // Still allowed, with different counts: the time stays.
        pods.pop();
        let later = Timestamp::from_second(NOW + 60).unwrap();
        let status = plan(&pdb, &pods, Workloads::default(), later)
            .status
            .unwrap();
        assert_eq!(condition(&status).last_transition_time, Time(now()));
        pdb.status = Some(status);
        // No longer allowed: the condition flips and its time moves.
        pods.pop();
        let flipped = Timestamp::from_second(NOW + 120).unwrap();
        let status = plan(&pdb, &pods, Workloads::default(), flipped)
            .status
            .unwrap();
        let allowed = condition(&status);
        assert_eq!(
            (allowed.status.as_str(), allowed.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
        assert_eq!(allowed.last_transition_time, Time(flipped));
    }

    #[test]
    fn an_unreadable_percentage_fails_safe() {
        let mut pdb = budget(json!({"selector": WEB(), "minAvailable": 1}));
        let pods = [pod("a", true, None), pod("b", true, None)];
        pdb.status = plan(&pdb, &pods, Workloads::default(), now()).status;
        pdb.spec.as_mut().unwrap().min_available = Some(IntOrString::String("half".into()));
        let status = status(&pdb, &pods, Workloads::default());
        // The counts stay as they were; no disruption is allowed until it can be computed.
        assert_eq!(counts(&status), (2, 1, 2, 0));
        let allowed = condition(&status);
        assert_eq!(
            (allowed.status.as_str(), allowed.reason.as_str()),
            ("False", SYNC_FAILED)
        );
        assert!(allowed.message.contains("half"), "{}", allowed.message);
    }

    #[tokio::test]
    async fn a_pass_writes_the_status_once_through_the_status_subresource() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry_in(dir.path());
        wharf_apiserver::bootstrap::ensure_bootstrap_objects(&registry)
            .await
            .unwrap();
        let options = WriteOptions::default();
        let created = registry
            .create(
                budgets(),
                Some("default"),
                json!({
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "web"},
                    "spec": {"selector": WEB(), "minAvailable": 1},
                }),
                &options,
            )
            .await
            .unwrap();
        for (name, ready) in [("a", true), ("b", true), ("c", false)] {
            let mut pod = serde_json::to_value(pod(name, ready, None)).unwrap();
            pod["spec"] = json!({"containers": [{"name": "app", "image": "app:1"}]});
            registry
                .create(pods(), Some("default"), pod.clone(), &options)
                .await
                .unwrap();
            // A create drops the status; the kubelet writes it through the subresource.
            registry
                .patch(
                    pods(),
                    Some("default"),
                    name,
                    wharf_apiserver::registry::PatchType::Merge,
                    &json!({"status": pod["status"]}),
                    Part::Status,
                    &options,
                )
                .await
                .unwrap();
        }
        pass(&registry, None).await.unwrap();
        let read = || async {
            let value = registry
                .get(budgets(), Some("default"), "web")
                .await
                .unwrap();
            serde_json::from_value::<PodDisruptionBudget>(value).unwrap()
        };
        let written = read().await;
        let status = written.status.as_ref().unwrap();
        assert_eq!(counts(status), (3, 1, 2, 1));
        assert_eq!(
            status.observed_generation,
            created["metadata"]["generation"].as_i64()
        );
        assert_eq!(
            written.spec,
            serde_json::from_value(created["spec"].clone()).unwrap()
        );
        pass(&registry, Some(BTreeSet::from(["default".to_owned()])))
            .await
            .unwrap();
        assert_eq!(
            read().await.metadata.resource_version,
            written.metadata.resource_version
        );
    }
}
