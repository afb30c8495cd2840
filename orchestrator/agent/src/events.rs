//! Events about a pod, recorded as the kubelet records them: `Unhealthy` for every failed
//! probe attempt, `Killing` when a liveness or startup probe restarts a container,
//! `FailedMount` and `Failed` while a container cannot be configured.
//!
//! Repeats are aggregated like Kubernetes' event correlator: the same event (same object,
//! field path, type, reason and message) is one Event object (`POD.HEXNANOS`) whose `count`
//! and `lastTimestamp` are bumped, with at most one write per second per event; occurrences
//! in between are counted and carried by the next write. The map lives in memory, one per
//! pod worker, and goes with the pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use wharf_apiserver::client::ClusterApi;
use wharf_apiserver::registry::{Part, PatchType};
use wharf_apiserver::{ApiError, meta, resources};

/// The least time between two writes of the same event.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies an event for aggregation (the pod is the recorder's).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKey {
    /// `involvedObject.fieldPath`, e.g. `spec.containers{app}`; empty for the pod itself.
    pub field_path: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// Kubernetes' reason, e.g. `Unhealthy`.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// What to write for one occurrence of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event object named `name`.
    Create {
        /// The Event's name.
        name: String,
    },
    /// Bump the existing Event `name` to `count`.
    Patch {
        /// The Event's name.
        name: String,
        /// Occurrences so far.
        count: u64,
    },
    /// Counted; written with the next occurrence after [`MIN_WRITE_INTERVAL`].
    Skip,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    count: u64,
    first_timestamp: String,
    last_write: Instant,
}

/// The pure part of the recorder: which events exist, their counts, and when to write.
#[derive(Debug, Default)]
pub struct Aggregator {
    entries: HashMap<EventKey, Entry>,
}

impl Aggregator {
    /// Records one occurrence of `key` at `now`; `new_name` names the Event if it is the first.
    pub fn observe(
        &mut self,
        key: &EventKey,
        now: Instant,
        new_name: impl FnOnce() -> String,
    ) -> Write {
        match self.entries.get_mut(key) {
            None => {
                let name = new_name();
                self.entries.insert(
                    key.clone(),
                    Entry {
                        name: name.clone(),
                        count: 1,
                        first_timestamp: meta::now_rfc3339(),
                        last_write: now,
                    },
                );
                Write::Create { name }
            }
            Some(entry) => {
                entry.count += 1;
                if now.duration_since(entry.last_write) < MIN_WRITE_INTERVAL {
                    return Write::Skip;
                }
                entry.last_write = now;
                Write::Patch {
                    name: entry.name.clone(),
                    count: entry.count,
                }
            }
        }
    }

    /// How many times `key` happened so far.
    pub fn count(&self, key: &EventKey) -> u64 {
        self.entries.get(key).map_or(0, |e| e.count)
    }

    fn first_timestamp(&self, key: &EventKey) -> String {
        self.entries
            .get(key)
            .map_or_else(meta::now_rfc3339, |e| e.first_timestamp.clone())
    }
}

/// Records Events about one pod through the API.
pub struct EventRecorder {
    api: Arc<dyn ClusterApi>,
    node: String,
    pod: PodRef,
    aggregator: Mutex<Aggregator>,
}

/// The pod an event is about.
#[derive(Clone, Debug)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("pod", &self.pod.name)
            .finish_non_exhaustive()
    }
}

fn events() -> &'static resources::Resource {
    resources::find("", "v1", "events").expect("events are served")
}

/// A container's `involvedObject.fieldPath`.
pub fn container_field_path(container: &str) -> String {
    format!("spec.containers{{{container}}}")
}

impl EventRecorder {
    /// A recorder for pod `namespace/pod` (uid `uid`) on node `node`.
    pub fn new(
        api: Arc<dyn ClusterApi>,
        node: &str,
        namespace: &str,
        pod: &str,
        uid: &str,
    ) -> Self {
        EventRecorder {
            api,
            node: node.to_owned(),
            pod: PodRef {
                namespace: namespace.to_owned(),
                name: pod.to_owned(),
                uid: uid.to_owned(),
            },
            aggregator: Mutex::new(Aggregator::default()),
        }
    }

    /// Records a `Warning` event.
    pub async fn warning(&self, field_path: &str, reason: &str, message: &str) {
        self.record("Warning", field_path, reason, message).await;
    }

    /// Records a `Normal` event.
    pub async fn normal(&self, field_path: &str, reason: &str, message: &str) {
        self.record("Normal", field_path, reason, message).await;
    }

    /// Records one occurrence: creates the Event, bumps its count, or only counts it (see the
    /// module docs). Failures are logged: events are best effort.
    pub async fn record(&self, type_: &str, field_path: &str, reason: &str, message: &str) {
        let key = EventKey {
            field_path: field_path.to_owned(),
            type_: type_.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        let (write, first) = {
            let mut aggregator = self.aggregator.lock().unwrap_or_else(|e| e.into_inner());
            let write = aggregator.observe(&key, Instant::now(), || self.new_name());
            (write, aggregator.first_timestamp(&key))
        };
        let result = match write {
            Write::Skip => return,
            Write::Create { name } => self.create(&key, &name, 1, &first).await,
            Write::Patch { name, count } => {
                let patch = json!({"count": count, "lastTimestamp": meta::now_rfc3339()});
                match self
                    .api
                    .patch(
                        events(),
                        Some(&self.pod.namespace),
                        &name,
                        PatchType::Merge,
                        &patch,
                        Part::Main,
                    )
                    .await
                {
                    // Expired or deleted meanwhile: write it again.
                    Err(ApiError::NotFound(_)) => self.create(&key, &name, count, &first).await,
                    other => other.map(drop),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(pod = %self.pod.name, reason, %error, "cannot record an event");
        }
    }

    fn new_name(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}.{nanos:x}", self.pod.name)
    }

    async fn create(
        &self,
        key: &EventKey,
        name: &str,
        count: u64,
        first: &str,
    ) -> Result<(), ApiError> {
        let event = event_object(&self.node, &self.pod, key, name, count, first);
        self.api
            .create(events(), Some(&self.pod.namespace), event)
            .await
            .map(drop)
    }
}

/// The Event object for occurrence `count` of `key`, shaped like the kubelet's.
fn event_object(
    node: &str,
    pod: &PodRef,
    key: &EventKey,
    name: &str,
    count: u64,
    first: &str,
) -> Value {
    let mut involved = json!({
        "apiVersion": "v1", "kind": "Pod",
        "namespace": pod.namespace, "name": pod.name, "uid": pod.uid,
    });
    if !key.field_path.is_empty() {
        involved["fieldPath"] = json!(key.field_path);
    }
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": pod.namespace},
        "involvedObject": involved,
        "reason": key.reason,
        "message": key.message,
        "type": key.type_,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": first,
        "lastTimestamp": meta::now_rfc3339(),
        "count": count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(message: &str) -> EventKey {
        EventKey {
            field_path: container_field_path("app"),
            type_: "Warning".into(),
            reason: "Unhealthy".into(),
            message: message.into(),
        }
    }

    #[test]
    fn repeats_bump_the_count_of_one_event_at_most_once_a_second() {
        let mut aggregator = Aggregator::default();
        let start = Instant::now();
        let failed = key("Readiness probe failed: HTTP probe failed with statuscode: 503");
        assert_eq!(
            aggregator.observe(&failed, start, || "web.1".into()),
            Write::Create {
                name: "web.1".into()
            }
        );
        // Within the second: counted, not written.
        assert_eq!(
            aggregator.observe(&failed, start + Duration::from_millis(300), || "web.2"
                .into()),
            Write::Skip
        );
        // The next write carries both occurrences, on the same Event.
        assert_eq!(
            aggregator.observe(&failed, start + Duration::from_millis(1100), || "web.3"
                .into()),
            Write::Patch {
                name: "web.1".into(),
                count: 3
            }
        );
        assert_eq!(aggregator.count(&failed), 3);
    }

    #[test]
    fn different_messages_are_different_events() {
        let mut aggregator = Aggregator::default();
        let now = Instant::now();
        let _ = aggregator.observe(&key("a"), now, || "web.1".into());
        assert_eq!(
            aggregator.observe(&key("b"), now, || "web.2".into()),
            Write::Create {
                name: "web.2".into()
            }
        );
    }

    #[test]
    fn events_name_the_container_of_the_pod() {
        let pod = PodRef {
            namespace: "default".into(),
            name: "web".into(),
            uid: "uid-1".into(),
        };
        let event = event_object(
            "node-1",
            &pod,
            &key("Liveness probe failed: x"),
            "web.1",
            2,
            "t0",
        );
        assert_eq!(event["involvedObject"]["fieldPath"], "spec.containers{app}");
        assert_eq!(event["involvedObject"]["uid"], "uid-1");
        assert_eq!(event["metadata"]["namespace"], "default");
        assert_eq!(event["source"]["component"], "kubelet");
        assert_eq!(event["source"]["host"], "node-1");
        assert_eq!(event["count"], 2);
        assert_eq!(event["firstTimestamp"], "t0");
        let pod_event = EventKey {
            field_path: String::new(),
            ..key("x")
        };
        let event = event_object("node-1", &pod, &pod_event, "web.2", 1, "t0");
        assert!(event["involvedObject"].get("fieldPath").is_none());
    }
}
