//! A stand-in for the scheduler while `wharf up` has exactly one node: every pod without
//! `spec.nodeName` is bound to that node.
//!
//! [`plan`] is pure: from the pods it picks those the default scheduler would place (no
//! `spec.nodeName`, `schedulerName` absent or `default-scheduler`, no scheduling gates, not
//! being deleted) and binds each to the local node through the `pods/binding` subresource
//! ([`Registry::bind`]). As in Kubernetes, the binding itself sets `PodScheduled=True` in the
//! same write, so a bound pod is never seen without it. Pods of the default scheduler that are
//! already on this node but have no `PodScheduled` condition at all (created with
//! `spec.nodeName` set, bypassing scheduling) get `PodScheduled=True` through the status
//! subresource, as the kubelet would report it.
//!
//! [`run`] binds whenever a pod changes, and every [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL).
//! Each binding names the pod's uid, so a pod deleted and recreated under the same name is
//! never bound by a plan about its predecessor.

use std::collections::BTreeSet;
use std::future::Future;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use wharf_apiserver::registry::{Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{ObjectKey, PassOutcome, drive, is_deleting, list_typed};

/// The scheduler name whose pods the binder places (Kubernetes' default).
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// One write the binder makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Bind the pod to the node, which also marks it `PodScheduled=True`.
    Bind(ObjectKey),
    /// Set `PodScheduled=True` on a pod already on the node.
    MarkScheduled(ObjectKey),
}

/// Plans the bindings for a snapshot of pods, all to `node_name`.
pub fn plan(pods: &[Pod], node_name: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    for pod in pods {
        let Some(key) = ObjectKey::of(&pod.metadata) else {
            continue;
        };
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let ours = spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER);
        if !ours || is_deleting(&pod.metadata) {
            continue;
        }
        match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            None => {
                let gated = spec
                    .scheduling_gates
                    .as_ref()
                    .is_some_and(|g| !g.is_empty());
                if !gated {
                    actions.push(Action::Bind(key));
                }
            }
            Some(node) if node == node_name && !has_scheduled_condition(pod) => {
                actions.push(Action::MarkScheduled(key));
            }
            Some(_) => {}
        }
    }
    actions
}

fn has_scheduled_condition(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "PodScheduled")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// One pass over the pods of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    node_name: &str,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let snapshot: Vec<Pod> = list_typed(registry, pods(), namespaces.as_ref()).await?;
    let mut outcome = PassOutcome::default();
    for action in plan(&snapshot, node_name) {
        match action {
            Action::Bind(pod) => {
                let result = registry
                    .bind(
                        &pod.namespace,
                        &pod.name,
                        node_name,
                        Some(&pod.uid),
                        &WriteOptions::default(),
                    )
                    .await;
                outcome.record("binding a pod", result.map(drop));
            }
            Action::MarkScheduled(pod) => {
                let patch = json!({
                    "metadata": {"uid": pod.uid},
                    "status": {"conditions": [{
                        "type": "PodScheduled",
                        "status": "True",
                        "lastTransitionTime": meta::now_rfc3339(),
                    }]},
                });
                let result = registry
                    .patch(
                        pods(),
                        Some(&pod.namespace),
                        &pod.name,
                        PatchType::StrategicMerge,
                        &patch,
                        Part::Status,
                        &WriteOptions::default(),
                    )
                    .await;
                outcome.record("marking a pod scheduled", result.map(drop));
            }
        }
    }
    Ok(outcome)
}

/// Runs the binder for the local node `node_name` until `stopping` resolves.
pub async fn run(registry: Registry, node_name: String, stopping: impl Future<Output = ()>) {
    let (registry, node_name) = (&registry, node_name.as_str());
    drive(registry, "binder", &[pods()], stopping, move |namespaces| {
        pass(registry, node_name, namespaces)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(name: &str, spec: Value, extra_metadata: Value) -> Pod {
        let mut metadata =
            json!({"name": name, "namespace": "default", "uid": format!("uid-{name}")});
        if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_metadata.as_object()) {
            m.extend(extra.clone());
        }
        let mut spec_value = json!({"containers": [{"name": "app", "image": "app:1"}]});
        if let (Some(s), Some(extra)) = (spec_value.as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(json!({"metadata": metadata, "spec": spec_value})).unwrap()
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn unbound_pods_are_bound_to_the_local_node() {
        let pods = [
            pod("a", json!({}), json!({})),
            pod("b", json!({}), json!({})),
        ];
        assert_eq!(
            plan(&pods, "node-1"),
            [Action::Bind(key("a")), Action::Bind(key("b"))]
        );
    }

    #[test]
    fn pods_being_deleted_gated_or_for_another_scheduler_are_left_alone() {
        let pods = [
            pod(
                "deleting",
                json!({}),
                json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}),
            ),
            pod(
                "gated",
                json!({"schedulingGates": [{"name": "example.com/wait"}]}),
                json!({}),
            ),
            pod(
                "custom",
                json!({"schedulerName": "my-scheduler"}),
                json!({}),
            ),
            pod(
                "default",
                json!({"schedulerName": "default-scheduler"}),
                json!({}),
            ),
        ];
        assert_eq!(plan(&pods, "node-1"), [Action::Bind(key("default"))]);
    }

    #[test]
    fn pods_already_on_the_node_only_get_a_missing_scheduled_condition() {
        let mut scheduled = pod("scheduled", json!({"nodeName": "node-1"}), json!({}));
        scheduled.status = serde_json::from_value(json!({"conditions": [
            {"type": "PodScheduled", "status": "True"},
        ]}))
        .unwrap();
        let pods = [
            pod("preset", json!({"nodeName": "node-1"}), json!({})),
            pod("elsewhere", json!({"nodeName": "node-2"}), json!({})),
            scheduled,
        ];
        assert_eq!(
            plan(&pods, "node-1"),
            [Action::MarkScheduled(key("preset"))]
        );
    }
}
