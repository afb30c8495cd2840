//! The ReplicaSet controller: keeps `spec.replicas` pods that match `spec.selector` and are
//! controlled by the ReplicaSet, and reports what it sees in `status`.
//!
//! [`plan`] is pure. From one ReplicaSet, the pods it controls and the uncontrolled pods of its
//! namespace, it decides, as Kubernetes' ReplicaSet controller does:
//! - **claiming**: controlled pods that no longer match the selector are released (their owner
//!   reference removed); uncontrolled, matching pods that are not being deleted are adopted.
//!   A ReplicaSet that is being deleted neither adopts nor releases.
//! - **replicas**: only *active* pods count, i.e. pods not being deleted and not `Succeeded` or
//!   `Failed`. Missing ones are created from `spec.template` (named `RSNAME-xxxxx` by
//!   `generateName`); surplus ones are deleted, cheapest first: unscheduled, then pending, then
//!   not ready, then most recently ready, most restarted and newest. At most
//!   [`BURST_REPLICAS`] are created or deleted per pass. A ReplicaSet being deleted is left
//!   alone.
//! - **status**: `replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`,
//!   `terminatingReplicas` and `observedGeneration`, written through the status subresource
//!   only when they change.
//!
//! Terminating pods: like Kubernetes, a pod being deleted no longer counts, so its replacement
//! is created at once and, for its grace period, the old and the new pod both exist. That is
//! the only over-creation there is; `status.terminatingReplicas` shows it. Failed or succeeded
//! pods are replaced too, and left for garbage collection when their ReplicaSet goes.
//!
//! [`run`] applies plans whenever a ReplicaSet or a pod changes (re-planning only the namespace
//! that changed), when a pod is due to become available after `minReadySeconds`, and every
//! [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL). Every write is guarded by the target's uid
//! (adoption also by its resourceVersion, so a pod adopted by someone else meanwhile is not
//! adopted twice); a write that fails because its target changed is redone by the next pass.
//!
//! Each pod created or deleted is told in an Event about the ReplicaSet, as Kubernetes' pod
//! control tells it: `SuccessfulCreate` "Created pod: NAME" and `SuccessfulDelete` "Deleted
//! pod: NAME", from `replicaset-controller`.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use wharf_apiserver::registry::{DeleteOptions, Part, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{
    EventRecorder, ObjectKey, PassOutcome, PodChange, Selector, controller_reference,
    controller_uid, drive, group_by_controller, is_deleting, list_typed, patch_metadata,
    pod_change_event, sort_oldest_first,
};

/// The component the ReplicaSet controller's Events come from (Kubernetes' name).
pub const COMPONENT: &str = "replicaset-controller";

/// The most pods one pass creates or deletes for one ReplicaSet (Kubernetes'
/// `burstReplicas`), so one huge ReplicaSet cannot starve the others.
pub const BURST_REPLICAS: usize = 500;

/// One write the ReplicaSet controller makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create `count` pods like `pod` (which has a `generateName`, so each gets its own name).
    CreatePods {
        /// The pod to create, built by [`pod_from_template`].
        pod: Box<Pod>,
        /// How many.
        count: usize,
    },
    /// Delete a surplus pod.
    DeletePod(ObjectKey),
    /// Make the ReplicaSet the controller of an orphan pod.
    AdoptPod {
        /// The pod.
        pod: ObjectKey,
        /// The pod's resourceVersion when it was seen to be an orphan.
        resource_version: String,
        /// The owner reference to add.
        owner: OwnerReference,
    },
    /// Remove the ReplicaSet's owner reference from a pod that no longer matches its selector.
    ReleasePod {
        /// The pod.
        pod: ObjectKey,
        /// The uid of the ReplicaSet.
        owner_uid: String,
    },
    /// Replace the ReplicaSet's status.
    UpdateStatus {
        /// The ReplicaSet.
        replica_set: ObjectKey,
        /// Its new status.
        status: Box<ReplicaSetStatus>,
    },
}

/// Plans the writes for one ReplicaSet.
///
/// `owned` are the pods whose controller is this ReplicaSet; `orphans` are pods without a
/// controller in its namespace (the plan picks those that match the selector). `now` decides
/// which ready pods have been ready for `minReadySeconds`.
pub fn plan(rs: &ReplicaSet, owned: &[Pod], orphans: &[Pod], now: Timestamp) -> Vec<Action> {
    let Some(rs_key) = ObjectKey::of(&rs.metadata) else {
        return Vec::new();
    };
    let selector = Selector::new(Some(&rs.spec.selector));
    if !selector.is_usable() {
        // Validation makes this impossible; without a selector nothing can be claimed safely,
        // and releasing every pod would be worse than doing nothing.
        return Vec::new();
    }
    let rs_deleting = is_deleting(&rs.metadata);
    let mut actions = Vec::new();

    let mut mine: Vec<&Pod> = Vec::new();
    for pod in owned {
        if selector.matches(&pod.metadata) {
            mine.push(pod);
        } else if !rs_deleting && let Some(pod_key) = ObjectKey::of(&pod.metadata) {
            actions.push(Action::ReleasePod {
                pod: pod_key,
                owner_uid: rs_key.uid.clone(),
            });
        }
    }
    if !rs_deleting && let Some(owner) = controller_reference("apps/v1", "ReplicaSet", &rs.metadata)
    {
        for pod in orphans {
            let adoptable = controller_uid(&pod.metadata).is_none()
                && !is_deleting(&pod.metadata)
                && pod.metadata.namespace == rs.metadata.namespace
                && selector.matches(&pod.metadata);
            if let (true, Some(pod_key), Some(resource_version)) = (
                adoptable,
                ObjectKey::of(&pod.metadata),
                pod.metadata.resource_version.clone(),
            ) {
                actions.push(Action::AdoptPod {
                    pod: pod_key,
                    resource_version,
                    owner: owner.clone(),
                });
                mine.push(pod);
            }
        }
    }

    if !rs_deleting {
        let desired = rs.spec.replicas.unwrap_or(1).max(0) as usize;
        let mut active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();
        match active.len().cmp(&desired) {
            Ordering::Less => {
                if let Some(pod) = pod_from_template(rs) {
                    actions.push(Action::CreatePods {
                        pod: Box::new(pod),
                        count: (desired - active.len()).min(BURST_REPLICAS),
                    });
                }
            }
            Ordering::Greater => {
                let surplus = (active.len() - desired).min(BURST_REPLICAS);
                active.sort_by(|a, b| deletion_order(a, b));
                for pod in active.into_iter().take(surplus) {
                    if let Some(pod_key) = ObjectKey::of(&pod.metadata) {
                        actions.push(Action::DeletePod(pod_key));
                    }
                }
            }
            Ordering::Equal => {}
        }
    }

    let status = status_of(rs, &mine, now);
    if rs.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus {
            replica_set: rs_key,
            status: Box::new(status),
        });
    }
    actions
}

/// The pod the ReplicaSet creates from its template: the template's labels, annotations,
/// finalizers and spec, `generateName: RSNAME-`, and the ReplicaSet as its controller.
pub fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.template.as_ref()?;
    let owner = controller_reference("apps/v1", "ReplicaSet", &rs.metadata)?;
    let name = rs.metadata.name.as_deref()?;
    let template_metadata = template.metadata.clone().unwrap_or_default();
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: template_metadata.labels,
            annotations: template_metadata.annotations,
            finalizers: template_metadata.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// The status the ReplicaSet should report for the pods it controls (`mine`, including any
/// adopted in this pass). Conditions are kept as they are.
pub fn status_of(rs: &ReplicaSet, mine: &[&Pod], now: Timestamp) -> ReplicaSetStatus {
    let min_ready_seconds = rs.spec.min_ready_seconds.unwrap_or(0);
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let fully_labeled = count(&|pod| {
        let labels = pod.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    let ready = count(&|pod| ready_since(pod).is_some());
    let available = count(&|pod| is_available(pod, min_ready_seconds, now));
    let terminating = mine
        .iter()
        .filter(|p| is_deleting(&p.metadata) && !is_finished(p))
        .count() as i32;
    // Kubernetes omits zero counts (`omitempty`); so do we, so that status reads the same.
    let nonzero = |n: i32| (n != 0).then_some(n);
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        terminating_replicas: Some(terminating),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// How long until the next of the ReplicaSet's ready pods becomes available (has been ready for
/// `minReadySeconds`), so that the status can be updated then. `None` if no pod is waiting.
pub fn requeue_after(rs: &ReplicaSet, owned: &[Pod], now: Timestamp) -> Option<Duration> {
    let min_ready_seconds = rs.spec.min_ready_seconds.unwrap_or(0);
    if min_ready_seconds <= 0 {
        return None;
    }
    owned
        .iter()
        .filter(|p| is_active(p) && !is_available(p, min_ready_seconds, now))
        .filter_map(ready_since)
        .map(|since| {
            // Available strictly after `since + minReadySeconds`; times have whole seconds.
            let due = since.as_second() + i64::from(min_ready_seconds) + 1;
            Duration::from_secs((due - now.as_second()).max(1) as u64)
        })
        .min()
}

/// A pod counts toward replicas unless it is being deleted or has finished.
pub fn is_active(pod: &Pod) -> bool {
    !is_deleting(&pod.metadata) && !is_finished(pod)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// When the pod became ready, if it is ready (`Ready=True`). A ready condition without a
/// transition time counts as ready since the beginning of time.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// Ready, and for longer than `min_ready_seconds` (Kubernetes' `IsPodAvailable`).
fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.as_second() + i64::from(min_ready_seconds) < now.as_second(),
    }
}

/// Which of two pods to delete first when scaling down (Kubernetes' `ActivePods` order): the
/// one that costs least to lose.
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let unassigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    };
    // Later times first; a missing time before any time.
    let later_first = |x: Option<Timestamp>, y: Option<Timestamp>| match (x, y) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    unassigned(b)
        .cmp(&unassigned(a))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| ready_since(a).is_some().cmp(&ready_since(b).is_some()))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| later_first(created(a), created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn replica_sets() -> &'static Resource {
    resources::find("apps", "v1", "replicasets").expect("replicasets are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// One pass over the ReplicaSets and pods of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    events: &EventRecorder,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let now = meta::now();
    let mut sets: Vec<ReplicaSet> =
        list_typed(registry, replica_sets(), namespaces.as_ref()).await?;
    let all_pods: Vec<Pod> = list_typed(registry, pods(), namespaces.as_ref()).await?;
    // Older ReplicaSets get the first chance to adopt an orphan that several would match.
    sort_oldest_first(&mut sets);
    let (owned, mut orphans) = group_by_controller(all_pods);
    let mut outcome = PassOutcome::default();
    for rs in &sets {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let mine = owned.get(&uid).map(Vec::as_slice).unwrap_or_default();
        let candidates = orphans.entry(namespace).or_default();
        let actions = plan(rs, mine, candidates, now);
        // An orphan adopted here is no longer an orphan for the ReplicaSets that follow.
        candidates.retain(|pod| {
            !actions.iter().any(|a| {
                matches!(a, Action::AdoptPod { pod: adopted, .. }
                    if Some(&adopted.uid) == pod.metadata.uid.as_ref())
            })
        });
        if let Some(rs_key) = ObjectKey::of(&rs.metadata) {
            outcome = outcome.merge(apply(registry, events, &rs_key, &actions).await);
        }
        outcome = outcome.merge(PassOutcome {
            requeue_after: requeue_after(rs, mine, now),
            failed_writes: false,
        });
    }
    Ok(outcome)
}

/// Applies the actions of the plan for the ReplicaSet `rs`, in order.
async fn apply(
    registry: &Registry,
    events: &EventRecorder,
    rs: &ObjectKey,
    actions: &[Action],
) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    let options = WriteOptions::default();
    let pod_event = |change, pod: &str| {
        events.record(pod_change_event(
            "apps/v1",
            "ReplicaSet",
            rs,
            COMPONENT,
            change,
            pod,
        ));
    };
    for action in actions {
        match action {
            Action::CreatePods { pod, count } => {
                let result = crate::create_pods(registry, pod, *count, |name| {
                    pod_event(PodChange::Created, name);
                })
                .await;
                outcome.record("creating pods", result);
            }
            Action::DeletePod(target) => {
                let result = registry
                    .delete(
                        pods(),
                        Some(&target.namespace),
                        &target.name,
                        &DeleteOptions {
                            precondition_uid: Some(target.uid.clone()),
                            ..DeleteOptions::default()
                        },
                    )
                    .await;
                if result.is_ok() {
                    pod_event(PodChange::Deleted, &target.name);
                }
                outcome.record("deleting a surplus pod", result.map(drop));
            }
            Action::AdoptPod {
                pod,
                resource_version,
                owner,
            } => {
                let patch = json!({"metadata": {
                    "uid": pod.uid,
                    "resourceVersion": resource_version,
                    "ownerReferences": [owner],
                }});
                let result =
                    patch_metadata(registry, pods(), &pod.namespace, &pod.name, &patch).await;
                outcome.record("adopting a pod", result);
            }
            Action::ReleasePod { pod, owner_uid } => {
                let patch = json!({"metadata": {
                    "uid": pod.uid,
                    "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                }});
                let result =
                    patch_metadata(registry, pods(), &pod.namespace, &pod.name, &patch).await;
                outcome.record("releasing a pod", result);
            }
            Action::UpdateStatus {
                replica_set,
                status,
            } => {
                let body = json!({
                    "metadata": {"name": replica_set.name, "uid": replica_set.uid},
                    "status": status,
                });
                let result = registry
                    .update(
                        replica_sets(),
                        Some(&replica_set.namespace),
                        &replica_set.name,
                        body,
                        Part::Status,
                        &options,
                    )
                    .await;
                outcome.record("updating ReplicaSet status", result.map(drop));
            }
        }
    }
    outcome
}

/// Runs the ReplicaSet controller until `stopping` resolves, recording its Events with
/// `events`.
pub async fn run(registry: Registry, events: EventRecorder, stopping: impl Future<Output = ()>) {
    let (registry, events) = (&registry, &events);
    drive(
        registry,
        "replicaset",
        &[replica_sets(), pods()],
        stopping,
        move |namespaces| pass(registry, events, namespaces),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use serde_json::Value;

    fn replica_set(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3,
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
            },
        }))
        .unwrap()
    }

    /// A pod controlled by the ReplicaSet, created `age` seconds ago, with extra fields merged
    /// into it.
    fn pod(name: &str, age: i64, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "resourceVersion": "7",
                "creationTimestamp": time(-age),
                "labels": {"app": "web", "tier": "front"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {"containers": [{"name": "app", "image": "app:1"}], "nodeName": "node-1"},
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
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

    fn ready(since: i64) -> Value {
        json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": time(-since)},
        ]}})
    }

    fn orphan(name: &str, labels: Value) -> Pod {
        pod(
            name,
            10,
            json!({"metadata": {"ownerReferences": null, "labels": labels}}),
        )
    }

    fn deleted_names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod(key) => Some(key.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn creates(actions: &[Action]) -> usize {
        actions
            .iter()
            .map(|a| match a {
                Action::CreatePods { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    fn status(actions: &[Action]) -> Option<&ReplicaSetStatus> {
        actions.iter().find_map(|a| match a {
            Action::UpdateStatus { status, .. } => Some(&**status),
            _ => None,
        })
    }

    #[test]
    fn scaling_up_creates_the_missing_pods_from_the_template() {
        let rs = replica_set(3);
        let existing = [pod("web-a", 10, json!({}))];
        let actions = plan(&rs, &existing, &[], now());
        let Some(Action::CreatePods { pod, count }) = actions.first() else {
            panic!("expected a create first: {actions:?}");
        };
        assert_eq!(*count, 2);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["tier"], "front");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("apps/v1", "ReplicaSet", "web", "rs-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("app:1")
        );
    }

    #[test]
    fn the_right_number_of_pods_needs_no_pod_writes() {
        let rs = replica_set(2);
        let existing = [pod("web-a", 10, json!({})), pod("web-b", 5, json!({}))];
        let actions = plan(&rs, &existing, &[], now());
        assert_eq!(creates(&actions), 0);
        assert!(deleted_names(&actions).is_empty());
    }

    #[test]
    fn scaling_down_deletes_unscheduled_then_pending_then_unready_then_newest_pods() {
        let rs = replica_set(1);
        let existing = [
            pod("ready-old", 100, ready(90)),
            pod("ready-recently", 100, ready(5)),
            pod(
                "running-unready",
                50,
                json!({"status": {"phase": "Running"}}),
            ),
            pod("pending", 40, json!({"status": {"phase": "Pending"}})),
            pod("unscheduled", 30, json!({"spec": {"nodeName": null}})),
        ];
        let actions = plan(&rs, &existing, &[], now());
        assert_eq!(
            deleted_names(&actions),
            [
                "unscheduled",
                "pending",
                "running-unready",
                "ready-recently"
            ]
        );
    }

    #[test]
    fn among_equal_pods_the_newest_is_deleted_first() {
        let rs = replica_set(2);
        let existing = [
            pod("oldest", 30, json!({})),
            pod("newest", 10, json!({})),
            pod("middle", 20, json!({})),
        ];
        assert_eq!(deleted_names(&plan(&rs, &existing, &[], now())), ["newest"]);
    }

    #[test]
    fn pods_being_deleted_do_not_count_and_are_replaced() {
        let rs = replica_set(2);
        let existing = [
            pod("web-a", 10, json!({})),
            pod(
                "web-b",
                10,
                json!({"metadata": {"deletionTimestamp": time(-1)}}),
            ),
        ];
        let actions = plan(&rs, &existing, &[], now());
        assert_eq!(creates(&actions), 1);
        assert!(deleted_names(&actions).is_empty());
        let status = status(&actions).expect("a status update");
        assert_eq!(status.replicas, 1);
        assert_eq!(status.terminating_replicas, Some(1));
    }

    #[test]
    fn finished_pods_are_replaced_but_not_deleted() {
        let rs = replica_set(1);
        let existing = [pod("web-a", 10, json!({"status": {"phase": "Failed"}}))];
        let actions = plan(&rs, &existing, &[], now());
        assert_eq!(creates(&actions), 1);
        assert!(deleted_names(&actions).is_empty());
    }

    #[test]
    fn matching_orphans_are_adopted_and_counted() {
        let rs = replica_set(2);
        let orphans = [
            orphan("match", json!({"app": "web"})),
            orphan("other-app", json!({"app": "db"})),
            pod(
                "going",
                5,
                json!({"metadata": {"ownerReferences": null, "deletionTimestamp": time(-1)}}),
            ),
        ];
        let existing = [pod("web-a", 10, json!({}))];
        let actions = plan(&rs, &existing, &orphans, now());
        let adopted: Vec<(&str, &str)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::AdoptPod {
                    pod,
                    resource_version,
                    owner,
                } => {
                    assert_eq!(owner.uid, "rs-uid");
                    assert_eq!(owner.controller, Some(true));
                    Some((pod.name.as_str(), resource_version.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(adopted, [("match", "7")]);
        assert_eq!(
            creates(&actions),
            0,
            "the adopted pod makes up the second replica"
        );
    }

    #[test]
    fn pods_that_no_longer_match_are_released_and_replaced() {
        let rs = replica_set(1);
        let existing = [pod(
            "relabelled",
            10,
            json!({"metadata": {"labels": {"app": "debug"}}}),
        )];
        let actions = plan(&rs, &existing, &[], now());
        assert!(actions.contains(&Action::ReleasePod {
            pod: ObjectKey {
                namespace: "default".into(),
                name: "relabelled".into(),
                uid: "uid-relabelled".into(),
            },
            owner_uid: "rs-uid".into(),
        }));
        assert_eq!(creates(&actions), 1);
    }

    #[test]
    fn a_replica_set_being_deleted_only_updates_its_status() {
        let mut rs = replica_set(3);
        rs.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        let existing = [pod(
            "relabelled",
            10,
            json!({"metadata": {"labels": {"app": "debug"}}}),
        )];
        let orphans = [orphan("match", json!({"app": "web"}))];
        let actions = plan(&rs, &existing, &orphans, now());
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, Action::UpdateStatus { .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn status_counts_active_fully_labelled_ready_and_available_pods() {
        let mut rs = replica_set(4);
        rs.spec.min_ready_seconds = Some(10);
        let existing = [
            pod("available", 100, ready(60)),
            pod("ready-not-yet-available", 100, ready(3)),
            pod(
                "starting",
                5,
                json!({"metadata": {"labels": {"tier": null}}}),
            ),
            pod("done", 5, json!({"status": {"phase": "Succeeded"}})),
        ];
        let actions = plan(&rs, &existing, &[], now());
        let status = status(&actions).expect("a status update");
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.terminating_replicas, Some(0));
        assert_eq!(status.observed_generation, Some(3));
        // The second ready pod becomes available 10 s after it became ready, i.e. in 8 s.
        assert_eq!(
            requeue_after(&rs, &existing, now()),
            Some(Duration::from_secs(8))
        );
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut rs = replica_set(1);
        let existing = [pod("web-a", 10, ready(60))];
        let first = plan(&rs, &existing, &[], now());
        rs.status = Some(status(&first).expect("a first status").clone());
        assert_eq!(plan(&rs, &existing, &[], now()), []);
    }

    #[test]
    fn a_missing_selector_claims_and_releases_nothing() {
        let mut rs = replica_set(1);
        rs.spec.selector = Default::default();
        let existing = [pod("web-a", 10, json!({}))];
        let orphans = [orphan("match", json!({"app": "web"}))];
        assert_eq!(plan(&rs, &existing, &orphans, now()), []);
    }

    #[test]
    fn at_most_a_burst_of_pods_is_created_per_pass() {
        let rs = replica_set(10_000);
        assert_eq!(creates(&plan(&rs, &[], &[], now())), BURST_REPLICAS);
    }
}
