//! Garbage collection by ownerReferences, the `orphan` and `foregroundDeletion` finalizers that
//! `propagationPolicy` adds, and namespace deletion.
//!
//! [`plan`] is pure: from a snapshot of every object's identity, owners and deletion state it
//! computes the writes that move the cluster toward Kubernetes' rules:
//! - an object whose owners are all gone is deleted (background cascading);
//! - owner references to objects that no longer exist are removed while other owners remain;
//! - an owner deleted with `Orphan` has its dependents' references to it removed, then loses its
//!   `orphan` finalizer;
//! - an owner deleted with `Foreground` has its dependents deleted (in the foreground too), and
//!   loses its `foregroundDeletion` finalizer once none remain;
//! - a namespace being deleted has its contents deleted, and once it is empty its `kubernetes`
//!   finalizer is removed, which lets the API server remove it.
//!
//! [`run`] loads snapshots and applies plans whenever something was deleted, and every
//! [`RESYNC_INTERVAL`] in case an event was missed. Every write carries the target's uid as a
//! precondition, so a plan made from a stale snapshot cannot touch a newer object of the same
//! name; a failed write is simply retried by the next pass.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use wharf_apiserver::ApiError;
use wharf_apiserver::registry::{
    DeleteOptions, ListOptions, Part, PatchType, Registry, WriteOptions,
};
use wharf_apiserver::resources::{RESOURCES, Resource};
use wharf_store::{EventKind, StoreError};

/// How often a full pass runs even without triggering events.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How long the collector waits after a triggering event for more to arrive.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Bound on back-to-back passes while each still finds work (the resync catches the rest).
const MAX_PASSES: usize = 32;

/// Identifies one object for a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The resource.
    pub resource: &'static Resource,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Uid, used as a precondition of every write.
    pub uid: String,
}

/// What the collector needs to know about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The object.
    pub object: ObjectRef,
    /// Uids of its owners.
    pub owners: Vec<String>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// For a Namespace: whether `spec.finalizers` still holds `kubernetes`.
    pub namespace_finalizer: bool,
}

/// One write the collector makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete the object, with this propagation policy.
    Delete(ObjectRef, &'static str),
    /// Remove owner references with these uids.
    RemoveOwners(ObjectRef, Vec<String>),
    /// Remove one of `metadata.finalizers`.
    RemoveFinalizer(ObjectRef, &'static str),
    /// Remove the `kubernetes` finalizer from an emptied namespace.
    FinalizeNamespace(ObjectRef),
}

/// Computes the collector's writes for a snapshot of all objects.
pub fn plan(nodes: &[Node]) -> Vec<Action> {
    let live: HashSet<&str> = nodes.iter().map(|n| n.object.uid.as_str()).collect();
    let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for node in nodes {
        for owner in &node.owners {
            dependents.entry(owner.as_str()).or_default().push(node);
        }
    }
    let mut contents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for node in nodes {
        if let Some(ns) = &node.object.namespace {
            contents.entry(ns.as_str()).or_default().push(node);
        }
    }
    let mut actions = Vec::new();
    for node in nodes {
        let absent: Vec<String> = node
            .owners
            .iter()
            .filter(|o| !live.contains(o.as_str()))
            .cloned()
            .collect();
        if !node.owners.is_empty() && absent.len() == node.owners.len() {
            if !node.deleting {
                actions.push(Action::Delete(node.object.clone(), "Background"));
            }
        } else if !absent.is_empty() {
            actions.push(Action::RemoveOwners(node.object.clone(), absent));
        }
        if !node.deleting {
            continue;
        }
        let mine = dependents
            .get(node.object.uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if node.finalizers.iter().any(|f| f == "orphan") {
            for dependent in mine {
                actions.push(Action::RemoveOwners(
                    dependent.object.clone(),
                    vec![node.object.uid.clone()],
                ));
            }
            if mine.is_empty() {
                actions.push(Action::RemoveFinalizer(node.object.clone(), "orphan"));
            }
        }
        if node.finalizers.iter().any(|f| f == "foregroundDeletion") {
            for dependent in mine.iter().filter(|d| !d.deleting) {
                actions.push(Action::Delete(dependent.object.clone(), "Foreground"));
            }
            if mine.is_empty() {
                actions.push(Action::RemoveFinalizer(
                    node.object.clone(),
                    "foregroundDeletion",
                ));
            }
        }
        if node.object.resource.kind == "Namespace" && node.namespace_finalizer {
            let inside = contents
                .get(node.object.name.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for item in inside.iter().filter(|i| !i.deleting) {
                actions.push(Action::Delete(item.object.clone(), "Background"));
            }
            if inside.is_empty() {
                actions.push(Action::FinalizeNamespace(node.object.clone()));
            }
        }
    }
    actions
}

/// Builds the collector's view of one object.
pub fn node_of(resource: &'static Resource, object: &Value) -> Option<Node> {
    let metadata = object.get("metadata")?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let owners = metadata
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| text(&r["uid"])).collect())
        .unwrap_or_default();
    let finalizers = metadata
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(text).collect())
        .unwrap_or_default();
    let namespace_finalizer = resource.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f == "kubernetes"));
    Some(Node {
        object: ObjectRef {
            resource,
            namespace: text(&metadata["namespace"]),
            name: text(&metadata["name"])?,
            uid: text(&metadata["uid"])?,
        },
        owners,
        deleting: metadata.get("deletionTimestamp").is_some(),
        finalizers,
        namespace_finalizer,
    })
}

/// Reads every object of every served resource.
async fn snapshot(registry: &Registry) -> Result<Vec<Node>, ApiError> {
    let mut nodes = Vec::new();
    for resource in RESOURCES {
        let page = registry
            .list(resource, None, &ListOptions::default())
            .await?;
        nodes.extend(page.items.iter().filter_map(|o| node_of(resource, o)));
    }
    Ok(nodes)
}

/// Applies one action; a target that changed or vanished meanwhile is not an error.
async fn apply(registry: &Registry, action: &Action) -> Result<(), ApiError> {
    let options = WriteOptions::default();
    let result = match action {
        Action::Delete(target, policy) => registry
            .delete(
                target.resource,
                target.namespace.as_deref(),
                &target.name,
                &DeleteOptions {
                    propagation_policy: Some((*policy).to_owned()),
                    precondition_uid: Some(target.uid.clone()),
                    ..DeleteOptions::default()
                },
            )
            .await
            .map(drop),
        Action::RemoveOwners(target, uids) => {
            let removals: Vec<Value> = uids
                .iter()
                .map(|uid| json!({"$patch": "delete", "uid": uid}))
                .collect();
            let patch = json!({"metadata": {"uid": target.uid, "ownerReferences": removals}});
            patch_object(
                registry,
                target,
                PatchType::StrategicMerge,
                &patch,
                &options,
            )
            .await
        }
        Action::RemoveFinalizer(target, finalizer) => {
            let patch = json!({"metadata": {
                "uid": target.uid,
                "$deleteFromPrimitiveList/finalizers": [finalizer],
            }});
            patch_object(
                registry,
                target,
                PatchType::StrategicMerge,
                &patch,
                &options,
            )
            .await
        }
        Action::FinalizeNamespace(target) => {
            let patch = json!({"metadata": {"uid": target.uid}, "spec": {"finalizers": []}});
            patch_object(registry, target, PatchType::Merge, &patch, &options).await
        }
    };
    match result {
        Ok(()) | Err(ApiError::NotFound(_) | ApiError::Conflict(..)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn patch_object(
    registry: &Registry,
    target: &ObjectRef,
    patch_type: PatchType,
    patch: &Value,
    options: &WriteOptions,
) -> Result<(), ApiError> {
    registry
        .patch(
            target.resource,
            target.namespace.as_deref(),
            &target.name,
            patch_type,
            patch,
            Part::Main,
            options,
        )
        .await
        .map(drop)
}

/// One pass: snapshot, plan, apply. Returns how many actions were planned.
pub async fn pass(registry: &Registry) -> Result<usize, ApiError> {
    let nodes = snapshot(registry).await?;
    let actions = plan(&nodes);
    for action in &actions {
        if let Err(error) = apply(registry, action).await {
            tracing::warn!(?action, %error, "garbage collection write failed; will retry");
        }
    }
    Ok(actions.len())
}

/// Whether a store event may give the collector work: a deletion, an object that has just
/// started being deleted, or a new object with owners (whose owners may already be gone).
/// Status updates of objects already being deleted do not trigger a pass.
fn may_need_collection(kind: EventKind, value: &[u8], previous: Option<&[u8]>) -> bool {
    let contains = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let deleting = |bytes: &[u8]| contains(bytes, b"\"deletionTimestamp\"");
    match (kind, previous) {
        (EventKind::Delete, _) => true,
        (EventKind::Put, None) => deleting(value) || contains(value, b"\"ownerReferences\""),
        (EventKind::Put, Some(previous)) => deleting(value) && !deleting(previous),
    }
}

/// Runs the collector until `stopping` resolves.
pub async fn run(registry: Registry, stopping: impl std::future::Future<Output = ()>) {
    tokio::pin!(stopping);
    let store = registry.store().clone();
    let mut events = None;
    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    let mut dirty = true;
    loop {
        // Watch before the pass, so nothing written during the pass is missed.
        if events.is_none() {
            match store.watch("/", store.current_revision()).await {
                Ok(watch) => events = Some(watch),
                Err(error) => tracing::warn!(%error, "garbage collector cannot watch"),
            }
        }
        if dirty {
            dirty = false;
            for _ in 0..MAX_PASSES {
                match pass(&registry).await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "garbage collection pass failed");
                        break;
                    }
                }
            }
        }
        let next_event = async {
            match events.as_mut() {
                Some(watch) => watch.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stopping => return,
            _ = resync.tick() => dirty = true,
            event = next_event => match event {
                Some(Ok(event)) => {
                    if may_need_collection(event.kind, &event.value, event.prev_value.as_deref()) {
                        dirty = true;
                        tokio::time::sleep(DEBOUNCE).await;
                    }
                }
                Some(Err(StoreError::Compacted { .. })) | None => {
                    // Fell too far behind: start over from now, after a full pass.
                    events = None;
                    dirty = true;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "garbage collector watch failed");
                    events = None;
                    dirty = true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_apiserver::resources::find;

    fn node(kind: &str, ns: Option<&str>, name: &str, owners: &[&str]) -> Node {
        let resource = RESOURCES.iter().find(|r| r.kind == kind).unwrap();
        Node {
            object: ObjectRef {
                resource,
                namespace: ns.map(str::to_owned),
                name: name.into(),
                uid: format!("uid-{name}"),
            },
            owners: owners.iter().map(|o| format!("uid-{o}")).collect(),
            deleting: false,
            finalizers: Vec::new(),
            namespace_finalizer: kind == "Namespace",
        }
    }

    fn deleting(mut node: Node, finalizers: &[&str]) -> Node {
        node.deleting = true;
        node.finalizers = finalizers.iter().map(|f| (*f).to_owned()).collect();
        node
    }

    #[test]
    fn dependents_of_a_vanished_owner_are_deleted_in_the_background() {
        let rs = node("ReplicaSet", Some("default"), "rs", &["deploy"]);
        assert_eq!(
            plan(std::slice::from_ref(&rs)),
            [Action::Delete(rs.object, "Background")]
        );
    }

    #[test]
    fn a_dependent_with_a_remaining_owner_only_loses_the_dangling_reference() {
        let a = node("ConfigMap", Some("default"), "a", &[]);
        let dep = node("ConfigMap", Some("default"), "dep", &["a", "gone"]);
        assert_eq!(
            plan(&[a, dep.clone()]),
            [Action::RemoveOwners(dep.object, vec!["uid-gone".into()])]
        );
    }

    #[test]
    fn orphaning_removes_references_then_the_finalizer() {
        let owner = deleting(node("Deployment", Some("default"), "d", &[]), &["orphan"]);
        let rs = node("ReplicaSet", Some("default"), "rs", &["d"]);
        assert_eq!(
            plan(&[owner.clone(), rs.clone()]),
            [Action::RemoveOwners(rs.object, vec!["uid-d".into()])]
        );
        assert_eq!(
            plan(std::slice::from_ref(&owner)),
            [Action::RemoveFinalizer(owner.object, "orphan")]
        );
    }

    #[test]
    fn foreground_deletion_waits_for_dependents_to_go() {
        let owner = deleting(
            node("Deployment", Some("default"), "d", &[]),
            &["foregroundDeletion"],
        );
        let rs = node("ReplicaSet", Some("default"), "rs", &["d"]);
        assert_eq!(
            plan(&[owner.clone(), rs.clone()]),
            [Action::Delete(rs.object.clone(), "Foreground")]
        );
        // A dependent still being deleted holds the owner and is not deleted twice; having no
        // dependents of its own, it loses its own finalizer first.
        let rs_going = deleting(rs, &["foregroundDeletion"]);
        assert_eq!(
            plan(&[owner.clone(), rs_going.clone()]),
            [Action::RemoveFinalizer(
                rs_going.object,
                "foregroundDeletion"
            )]
        );
        assert_eq!(
            plan(std::slice::from_ref(&owner)),
            [Action::RemoveFinalizer(owner.object, "foregroundDeletion")]
        );
    }

    #[test]
    fn a_deleted_namespace_is_emptied_then_finalized() {
        let ns = deleting(node("Namespace", None, "team", &[]), &[]);
        let cm = node("ConfigMap", Some("team"), "cm", &[]);
        let elsewhere = node("ConfigMap", Some("other"), "cm2", &[]);
        assert_eq!(
            plan(&[ns.clone(), cm.clone(), elsewhere]),
            [Action::Delete(cm.object, "Background")]
        );
        assert_eq!(
            plan(std::slice::from_ref(&ns)),
            [Action::FinalizeNamespace(ns.object)]
        );
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let d = node("Deployment", Some("default"), "d", &[]);
        let rs = node("ReplicaSet", Some("default"), "rs", &["d"]);
        let ns = node("Namespace", None, "default", &[]);
        assert!(plan(&[d, rs, ns]).is_empty());
    }

    #[test]
    fn nodes_are_read_from_objects() {
        let resource = find("apps", "v1", "replicasets").unwrap();
        let object = json!({"metadata": {
            "name": "rs", "namespace": "default", "uid": "u1",
            "ownerReferences": [{"uid": "u0", "name": "d", "kind": "Deployment", "apiVersion": "apps/v1"}],
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["orphan"]
        }});
        let node = node_of(resource, &object).unwrap();
        assert_eq!(node.owners, ["u0"]);
        assert!(node.deleting);
        assert_eq!(node.finalizers, ["orphan"]);
    }

    #[test]
    fn only_deletions_new_deletions_and_new_owned_objects_trigger_a_pass() {
        let going = br#"{"metadata":{"deletionTimestamp":"x"}}"#;
        let owned = br#"{"metadata":{"ownerReferences":[]}}"#;
        let plain = br#"{"data":{"a":"b"}}"#;
        assert!(may_need_collection(EventKind::Delete, b"{}", Some(b"{}")));
        assert!(may_need_collection(EventKind::Put, going, Some(plain)));
        assert!(!may_need_collection(EventKind::Put, going, Some(going)));
        assert!(may_need_collection(EventKind::Put, owned, None));
        assert!(!may_need_collection(EventKind::Put, owned, Some(owned)));
        assert!(!may_need_collection(EventKind::Put, plain, None));
    }
}
