//! Wharf's control loops. Each is a pure `plan` function (tested without I/O) and a small
//! runner that feeds it snapshots from the [`Registry`](wharf_apiserver::Registry) and applies
//! its writes through the same registry the API uses.
//!
//! - [`gc`]: garbage collection by ownerReferences and namespace deletion.
//! - [`binder`]: until the scheduler exists, binds every unbound pod to the one local node.
//! - [`scheduler`]: places unbound pods on the cluster's nodes (filters, bin-packing or spread).
//! - [`quantity`]: Kubernetes resource quantities as exact integers, for the scheduler.
//! - [`replicaset`]: keeps `spec.replicas` pods of a ReplicaSet.
//! - [`deployment`]: one ReplicaSet per pod template of a Deployment, scaled and rolled over.
//! - [`nodelifecycle`]: marks nodes whose Lease went stale `Ready=Unknown`, taints them, and
//!   evicts their pods per their tolerations.
//! - [`job`]: runs a Job's pods until enough succeed, with retries, backoff and deadlines.
//! - [`endpoints`]: the Endpoints and EndpointSlices of every Service with a selector.
//! - [`hpa`]: HorizontalPodAutoscalers: scales Deployments and ReplicaSets on cpu, memory and
//!   request metrics, down to zero replicas when idle.
//! - [`events`]: the [`EventRecorder`] the scheduler and the workload controllers record
//!   Kubernetes Events with: rate-limited per object, queued, written in the background.
//!
//! The workload controllers share one runner shape ([`drive`]): they watch the store, turn each
//! changed key into its namespace, and re-plan only the namespaces that changed. Snapshots are
//! read from the store itself, not from a cache, so a pass always sees the writes of the passes
//! before it; that is why they need none of Kubernetes' "expectations" bookkeeping.

pub mod binder;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod nodelifecycle;
pub mod quantity;
pub mod replicaset;
pub mod scheduler;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{Map, Value};
use wharf_apiserver::registry::{ListOptions, Registry};
use wharf_apiserver::resources::Resource;
use wharf_apiserver::{ApiError, meta};
use wharf_store::{Event, StoreError, WatchStream};

pub use events::EventRecorder;

/// After a pass, the next one waits this many times as long as the pass took (see `drive`).
const PACE: u32 = 2;

/// How often the workload controllers re-plan everything even without events, in case a
/// write failed in a way no later event will reveal.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// The first delay before a pass whose writes failed is retried; it doubles up to
/// [`RESYNC_INTERVAL`] while passes keep failing.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Identifies one namespaced object for a write; its uid is the precondition of every write.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

impl ObjectKey {
    /// The key of an object with this metadata, if it has a name and a uid (every stored
    /// object has both).
    pub fn of(metadata: &ObjectMeta) -> Option<ObjectKey> {
        Some(ObjectKey {
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone()?,
            uid: metadata.uid.clone()?,
        })
    }
}

/// The owner reference a controller puts on what it owns: `controller: true` so nothing else
/// claims it, `blockOwnerDeletion: true` so a foreground deletion of the owner waits for it.
pub fn controller_reference(
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone()?,
        uid: owner.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Strategic-merge-patches an object's metadata (adopting or releasing it); the patch carries
/// the object's uid, and a resourceVersion if the write must not race another one.
pub async fn patch_metadata(
    registry: &Registry,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    patch: &Value,
) -> Result<(), ApiError> {
    registry
        .patch(
            resource,
            Some(namespace),
            name,
            wharf_apiserver::registry::PatchType::StrategicMerge,
            patch,
            wharf_apiserver::registry::Part::Main,
            &wharf_apiserver::registry::WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// A Kubernetes Event about `object` (of `api_version`/`kind`), named as Kubernetes' event
/// recorder names events (`NAME.HEXNANOS`), reported by `component`. Record it with an
/// [`EventRecorder`].
pub fn event_object(
    api_version: &str,
    kind: &str,
    object: &ObjectKey,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> Value {
    let now = meta::now_rfc3339();
    let nanos = unique_nanos();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{nanos:x}", object.name), "namespace": object.namespace},
        "involvedObject": {
            "apiVersion": api_version, "kind": kind,
            "namespace": object.namespace, "name": object.name, "uid": object.uid,
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

/// Nanoseconds since the epoch, strictly increasing within the process, so that two Events
/// about one object recorded in the same nanosecond (a burst of pod creations) still get
/// different names.
fn unique_nanos() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(previous.saturating_add(1))
}

/// What a controller did to one of its pods, as its Events say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodChange {
    /// The controller created the pod.
    Created,
    /// The controller deleted the pod.
    Deleted,
}

/// The Event Kubernetes' pod control (`RealPodControl`) records about the owner of a pod it
/// created or deleted: `Normal SuccessfulCreate "Created pod: NAME"` or `Normal
/// SuccessfulDelete "Deleted pod: NAME"`, reported by `component`.
pub fn pod_change_event(
    api_version: &str,
    kind: &str,
    owner: &ObjectKey,
    component: &str,
    change: PodChange,
    pod: &str,
) -> Value {
    let (reason, message) = match change {
        PodChange::Created => ("SuccessfulCreate", format!("Created pod: {pod}")),
        PodChange::Deleted => ("SuccessfulDelete", format!("Deleted pod: {pod}")),
    };
    event_object(
        api_version,
        kind,
        owner,
        "Normal",
        reason,
        &message,
        component,
    )
}

/// Orders owners oldest first (ties by name), so that an orphan several of them select is
/// adopted by the oldest, as Kubernetes' controllers do.
pub fn sort_oldest_first<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(owners: &mut [T]) {
    owners.sort_by(|a, b| {
        let (a, b) = (a.metadata(), b.metadata());
        a.creation_timestamp
            .cmp(&b.creation_timestamp)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Children grouped by the uid of their controller, and the orphans (no controller) by
/// namespace.
pub type ByController<T> = (
    std::collections::HashMap<String, Vec<T>>,
    std::collections::HashMap<String, Vec<T>>,
);

/// Splits children into those a controller owns (by its uid) and orphans (by namespace).
pub fn group_by_controller<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    children: Vec<T>,
) -> ByController<T> {
    let mut owned: std::collections::HashMap<String, Vec<T>> = std::collections::HashMap::new();
    let mut orphans: std::collections::HashMap<String, Vec<T>> = std::collections::HashMap::new();
    for child in children {
        match controller_uid(child.metadata()) {
            Some(uid) => owned.entry(uid.to_owned()).or_default().push(child),
            None => orphans
                .entry(child.metadata().namespace.clone().unwrap_or_default())
                .or_default()
                .push(child),
        }
    }
    (owned, orphans)
}

/// The object's controller: the owner reference with `controller: true`, if any.
pub fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The uid of the object's controller ([`controller_of`]), if any.
pub fn controller_uid(metadata: &ObjectMeta) -> Option<&str> {
    controller_of(metadata).map(|r| r.uid.as_str())
}

/// Whether the object has a deletionTimestamp.
pub fn is_deleting(metadata: &ObjectMeta) -> bool {
    metadata.deletion_timestamp.is_some()
}

/// A workload's label selector, ready to match. A missing, empty or unparseable selector
/// selects nothing: validation rejects those, and a controller must never claim every object
/// in a namespace because of one.
#[derive(Clone, Debug)]
pub struct Selector(Option<wharf_apimachinery::labels::LabelSelector>);

impl Selector {
    /// Parses a `metav1.LabelSelector`.
    pub fn new(selector: Option<&LabelSelector>) -> Selector {
        let parsed = selector
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| wharf_apimachinery::labels::from_label_selector_object(&v).ok())
            .filter(|s| !s.is_empty());
        Selector(parsed)
    }

    /// Whether the selector can select anything at all.
    pub fn is_usable(&self) -> bool {
        self.0.is_some()
    }

    /// Whether an object with this metadata is selected.
    pub fn matches(&self, metadata: &ObjectMeta) -> bool {
        let Some(selector) = &self.0 else {
            return false;
        };
        let labels = label_map(metadata.labels.as_ref());
        selector.matches(Some(&labels))
    }
}

fn label_map(labels: Option<&BTreeMap<String, String>>) -> Map<String, Value> {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// Lists every object of `resource` in the given namespaces (all, if `None`) and decodes them
/// into their typed form. An object that does not decode is skipped with a warning: the
/// registry only stores objects that went through the same types, so this means corruption,
/// which one controller cannot repair.
pub(crate) async fn list_typed<T: serde::de::DeserializeOwned>(
    registry: &Registry,
    resource: &Resource,
    namespaces: Option<&BTreeSet<String>>,
) -> Result<Vec<T>, ApiError> {
    let mut values = Vec::new();
    match namespaces {
        None => {
            values = registry
                .list(resource, None, &ListOptions::default())
                .await?
                .items;
        }
        Some(namespaces) => {
            for namespace in namespaces {
                let page = registry
                    .list(resource, Some(namespace), &ListOptions::default())
                    .await?;
                values.extend(page.items);
            }
        }
    }
    Ok(values
        .into_iter()
        .filter_map(|value| {
            let name = meta::meta_str(&value, "name").unwrap_or("").to_owned();
            serde_json::from_value(value)
                .map_err(|error| {
                    tracing::warn!(kind = resource.kind, %name, %error, "stored object does not decode");
                })
                .ok()
        })
        .collect())
}

/// What one pass of a workload controller reports back to [`drive`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Run again after this long even if nothing changes (e.g. when a pod becomes available
    /// after `minReadySeconds`, or a progress deadline expires).
    pub requeue_after: Option<Duration>,
    /// Some write failed for a reason other than the target having changed or gone; the pass
    /// is retried with backoff.
    pub failed_writes: bool,
}

impl PassOutcome {
    /// Combines the outcomes of two parts of a pass.
    pub fn merge(self, other: PassOutcome) -> PassOutcome {
        PassOutcome {
            requeue_after: match (self.requeue_after, other.requeue_after) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            failed_writes: self.failed_writes || other.failed_writes,
        }
    }

    /// Records the result of one write. A conflict or a vanished target is not a failure: the
    /// change that caused it arrives as an event and triggers the next pass.
    pub fn record(&mut self, what: &str, result: Result<(), ApiError>) {
        match result {
            Ok(()) | Err(ApiError::NotFound(_) | ApiError::Conflict(..)) => {}
            Err(error) => {
                tracing::warn!(%error, "{what} failed; will retry");
                self.failed_writes = true;
            }
        }
    }
}

/// Namespaces waiting for a pass: some, or all of them.
#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    namespaces: BTreeSet<String>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        !self.all && self.namespaces.is_empty()
    }

    /// Takes the pending scope: `None` for every namespace.
    fn take(&mut self) -> Option<BTreeSet<String>> {
        let namespaces = std::mem::take(&mut self.namespaces);
        if std::mem::take(&mut self.all) {
            None
        } else {
            Some(namespaces)
        }
    }

    /// Marks the namespace of a changed key, if the key belongs to a watched resource. Store
    /// keys of namespaced objects are `PREFIX` + `NAMESPACE/NAME`.
    fn add_event(&mut self, prefixes: &[String], event: &Event) {
        for prefix in prefixes {
            if let Some(rest) = event.key.strip_prefix(prefix.as_str()) {
                match rest.split_once('/') {
                    Some((namespace, _)) => {
                        self.namespaces.insert(namespace.to_owned());
                    }
                    None => self.all = true,
                }
                return;
            }
        }
    }
}

/// Runs a workload controller until `stopping` resolves.
///
/// `pass(None)` must reconcile every namespace, `pass(Some(set))` only those in the set. The
/// watch is opened before the first pass, so every change after that pass's snapshot arrives
/// as an event; events that are already waiting are drained into one pass, so a burst of
/// writes costs one pass per namespace rather than one per write. A full pass also runs every
/// [`RESYNC_INTERVAL`], when a requeue asked for it, and (with backoff) after failed writes.
pub(crate) async fn drive<F, Fut>(
    registry: &Registry,
    controller: &'static str,
    watched: &[&Resource],
    stopping: impl Future<Output = ()>,
    mut pass: F,
) where
    F: FnMut(Option<BTreeSet<String>>) -> Fut,
    Fut: Future<Output = Result<PassOutcome, ApiError>>,
{
    tokio::pin!(stopping);
    let prefixes: Vec<String> = watched.iter().map(|r| r.key_prefix()).collect();
    let store = registry.store().clone();
    let mut events: Option<WatchStream> = None;
    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass below is already a full one; the first resync is due a period later.
    resync.reset();
    let mut dirty = Dirty {
        all: true,
        ..Dirty::default()
    };
    let mut wake: Option<tokio::time::Instant> = None;
    let mut retry = FIRST_RETRY;
    // Under continuous churn passes would run back to back; after each, the next waits twice
    // as long as it took, so a controller takes at most a third of a core (a 1 ms pass delays
    // the next by 2 ms; a 100 ms pass over thousands of objects leaves room for the rest).
    let mut not_before: Option<tokio::time::Instant> = None;
    loop {
        if events.is_none() {
            // Only keys mark what is dirty: no value is opened for this watch.
            match store.watch_keys("/", store.current_revision()).await {
                Ok(watch) => {
                    events = Some(watch);
                    // Whatever happened before the watch started is covered by a full pass.
                    dirty.all = true;
                }
                Err(error) => {
                    tracing::warn!(controller, %error, "cannot watch the store");
                    wake = Some(tokio::time::Instant::now() + retry);
                }
            }
        }
        let paced = not_before.is_some_and(|t| tokio::time::Instant::now() < t);
        if !dirty.is_empty() && !paced {
            let scope = dirty.take();
            let full = scope.is_none();
            let started = tokio::time::Instant::now();
            let result = pass(scope).await;
            not_before = Some(tokio::time::Instant::now() + started.elapsed() * PACE);
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(controller, %error, "pass failed");
                    PassOutcome {
                        requeue_after: None,
                        failed_writes: true,
                    }
                }
            };
            let now = tokio::time::Instant::now();
            let mut next = outcome.requeue_after.map(|after| now + after);
            if outcome.failed_writes {
                next = Some(next.map_or(now + retry, |n| n.min(now + retry)));
                retry = (retry * 2).min(RESYNC_INTERVAL);
            } else {
                retry = FIRST_RETRY;
            }
            // A full pass knows every deadline; a partial one only adds its own.
            wake = match (full, wake, next) {
                (true, _, next) => next,
                (false, Some(a), Some(b)) => Some(a.min(b)),
                (false, a, b) => a.or(b),
            };
        }
        let next_event = async {
            match events.as_mut() {
                Some(watch) => watch.next().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let pace = async {
            match not_before {
                Some(at) if !dirty.is_empty() => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stopping => return,
            () = pace => not_before = None,
            _ = resync.tick() => dirty.all = true,
            () = timer => {
                wake = None;
                dirty.all = true;
            }
            event = next_event => {
                let mut event = event;
                loop {
                    match event {
                        Some(Ok(change)) => dirty.add_event(&prefixes, &change),
                        Some(Err(StoreError::Compacted { .. })) | None => {
                            // Fell too far behind (or the store closed the stream): start over
                            // from now, after a full pass.
                            events = None;
                            break;
                        }
                        Some(Err(error)) => {
                            tracing::warn!(controller, %error, "watch failed");
                            events = None;
                            break;
                        }
                    }
                    // Drain whatever else is already waiting into the same pass.
                    match events.as_mut().and_then(|watch| watch.next().now_or_never()) {
                        Some(next) => event = next,
                        None => break,
                    }
                }
            }
        }
    }
}

/// Creates `count` pods in batches of 1, 2, 4, ... (Kubernetes' slow start), so that a
/// template every create rejects (say, into a namespace being deleted) fails once, not
/// `count` times. Creates within a batch run concurrently and share the store's commits.
/// `created` is called with the name of every pod created, even when a later one fails.
pub(crate) async fn create_pods(
    registry: &Registry,
    pod: &k8s_openapi::api::core::v1::Pod,
    count: usize,
    mut created: impl FnMut(&str),
) -> Result<(), ApiError> {
    let pods = wharf_apiserver::resources::find("", "v1", "pods").expect("pods are served");
    let value = serde_json::to_value(pod).map_err(|e| ApiError::Internal(e.to_string()))?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let options = wharf_apiserver::registry::WriteOptions::default();
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let creates =
            (0..size).map(|_| registry.create(pods, Some(&namespace), value.clone(), &options));
        let results = futures::future::join_all(creates).await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(pod) => created(meta::meta_str(&pod, "name").unwrap_or_default()),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        remaining -= size;
        batch *= 2;
    }
    Ok(())
}

/// What the controllers' unit tests share: a fixed clock and a fresh registry.
#[cfg(test)]
pub(crate) mod testing {
    use k8s_openapi::jiff::Timestamp;
    use wharf_apiserver::registry::Registry;

    /// The tests' "now", in seconds since the epoch.
    pub const NOW: i64 = 1_800_000_000;

    /// [`NOW`] as a timestamp.
    pub fn now() -> Timestamp {
        at(0)
    }

    /// `offset` seconds after [`NOW`] (before, if negative).
    pub fn at(offset: i64) -> Timestamp {
        Timestamp::from_second(NOW + offset).unwrap()
    }

    /// [`at`] as Kubernetes writes times (RFC 3339, seconds).
    pub fn time(offset: i64) -> String {
        at(offset).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// A registry over a fresh redb store in `dir`.
    pub fn registry_in(dir: &std::path::Path) -> Registry {
        let store = wharf_store::RedbStore::open(
            dir.join("wharf.redb"),
            wharf_store::StoreConfig::default(),
        )
        .unwrap();
        Registry::new(std::sync::Arc::new(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metadata(value: Value) -> ObjectMeta {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_empty_or_missing_selector_selects_nothing() {
        let labelled = metadata(json!({"labels": {"app": "web"}}));
        assert!(!Selector::new(None).matches(&labelled));
        let empty: LabelSelector = serde_json::from_value(json!({})).unwrap();
        assert!(!Selector::new(Some(&empty)).matches(&labelled));
        let web: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        assert!(Selector::new(Some(&web)).matches(&labelled));
        assert!(!Selector::new(Some(&web)).matches(&metadata(json!({}))));
    }

    #[test]
    fn events_about_one_object_recorded_at_once_get_different_names() {
        let object = ObjectKey {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
        };
        let names: BTreeSet<String> = (0..1000)
            .map(|_| {
                let event = event_object("v1", "Pod", &object, "Normal", "R", "m", "c");
                event["metadata"]["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(names.len(), 1000);
    }

    #[test]
    fn pod_change_events_read_like_kubernetes_pod_control() {
        let owner = ObjectKey {
            namespace: "team-a".into(),
            name: "web-7d4b9".into(),
            uid: "u1".into(),
        };
        let event = pod_change_event(
            "apps/v1",
            "ReplicaSet",
            &owner,
            "replicaset-controller",
            PodChange::Created,
            "web-7d4b9-x2k4p",
        );
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["reason"], "SuccessfulCreate");
        assert_eq!(event["message"], "Created pod: web-7d4b9-x2k4p");
        assert_eq!(event["source"]["component"], "replicaset-controller");
        assert_eq!(
            event["involvedObject"],
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "namespace": "team-a",
                   "name": "web-7d4b9", "uid": "u1"})
        );
        assert_eq!(event["metadata"]["namespace"], "team-a");
        let event = pod_change_event(
            "batch/v1",
            "Job",
            &owner,
            "job-controller",
            PodChange::Deleted,
            "p",
        );
        assert_eq!(
            (&event["reason"], &event["message"]),
            (&json!("SuccessfulDelete"), &json!("Deleted pod: p"))
        );
    }

    #[test]
    fn the_controller_is_the_owner_reference_marked_controller() {
        let meta = metadata(json!({"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "u1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "u2", "controller": true},
        ]}));
        assert_eq!(controller_uid(&meta), Some("u2"));
        assert_eq!(controller_uid(&metadata(json!({}))), None);
    }

    #[test]
    fn events_mark_the_namespace_of_their_key_for_watched_resources_only() {
        let prefixes = vec!["/core/pods/".to_owned()];
        let event = |key: &str| Event {
            revision: 1,
            kind: wharf_store::EventKind::Put,
            key: key.into(),
            value: "{}".into(),
            prev_value: None,
        };
        let mut dirty = Dirty::default();
        dirty.add_event(&prefixes, &event("/core/pods/team-a/web-1"));
        dirty.add_event(&prefixes, &event("/core/configmaps/team-b/c"));
        assert!(!dirty.all);
        assert_eq!(dirty.take(), Some(BTreeSet::from(["team-a".to_owned()])));
        assert!(dirty.is_empty());
    }

    /// Runs [`drive`] over a fresh store for `run_for` of (paused) time with a pass that
    /// answers `outcome` to its `n`th call, and returns when each pass ran and its scope.
    async fn passes(
        run_for: Duration,
        outcome: impl Fn(usize) -> PassOutcome,
    ) -> Vec<(Duration, Option<BTreeSet<String>>)> {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::testing::registry_in(dir.path());
        let started = tokio::time::Instant::now();
        let calls = std::sync::Mutex::new(Vec::new());
        let pass = |scope| {
            let mut calls = calls.lock().unwrap();
            let result = outcome(calls.len());
            calls.push((started.elapsed(), scope));
            async move { Ok(result) }
        };
        let _ = tokio::time::timeout(
            run_for,
            drive(&registry, "test", &[], std::future::pending(), pass),
        )
        .await;
        calls.into_inner().unwrap()
    }

    fn times(calls: &[(Duration, Option<BTreeSet<String>>)]) -> Vec<u128> {
        calls.iter().map(|(at, _)| at.as_millis()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_are_retried_with_doubling_backoff() {
        let calls = passes(Duration::from_secs(4), |_| PassOutcome {
            requeue_after: None,
            failed_writes: true,
        })
        .await;
        assert_eq!(times(&calls), [0, 250, 750, 1750, 3750]);
        assert!(calls.iter().all(|(_, scope)| scope.is_none()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_a_full_pass_when_due_and_resyncs_follow_the_interval() {
        let calls = passes(Duration::from_secs(61), |n| PassOutcome {
            requeue_after: (n == 0).then_some(Duration::from_secs(7)),
            failed_writes: false,
        })
        .await;
        assert_eq!(times(&calls), [0, 7_000, 30_000, 60_000]);
    }

    #[test]
    fn outcomes_keep_the_earliest_requeue_and_any_failure() {
        let a = PassOutcome {
            requeue_after: Some(Duration::from_secs(5)),
            failed_writes: false,
        };
        let b = PassOutcome {
            requeue_after: Some(Duration::from_secs(2)),
            failed_writes: true,
        };
        assert_eq!(
            a.merge(b),
            PassOutcome {
                requeue_after: Some(Duration::from_secs(2)),
                failed_writes: true
            }
        );
        assert_eq!(a.merge(PassOutcome::default()), a);
    }
}
