//! Recording Kubernetes Events without slowing the control loops down.
//!
//! A control loop calls [`EventRecorder::record`], which never waits for the store: the Event
//! goes through Kubernetes' spam filter ([`SpamFilter`], what client-go's `EventCorrelator`
//! applies first) and then into a bounded queue of [`QUEUE_CAPACITY`] Events (client-go's
//! broadcaster queue has the same size). One background task drains the queue and creates the
//! Events through the registry, several at once so that they share the store's commits. When
//! the queue is full an Event is dropped and counted, as client-go drops it: Events are a
//! best-effort diagnostic, and a burst of thousands of pods must cost the scheduler and the
//! controllers nothing per pod but a map lookup and a channel send.
//!
//! Unlike client-go, repeated Events are not aggregated into one with a growing `count`: every
//! Event that passes the filter is written as its own object.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use wharf_apiserver::registry::{Registry, WriteOptions};
use wharf_apiserver::{ApiError, resources};

/// How many Events wait for the writer at most (client-go's `maxQueuedEvents`).
pub const QUEUE_CAPACITY: usize = 1000;
/// How many Events about one object pass the spam filter in a burst (client-go's
/// `defaultSpamBurst`).
pub const SPAM_BURST: u32 = 25;
/// How long the spam filter takes to allow one more Event about an object after a burst
/// (client-go's `defaultSpamQPS` of 1/300).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// How many objects the spam filter remembers (client-go's `maxLruCacheEntries`).
pub const SPAM_KEYS: usize = 4096;
/// How many queued Events the writer creates concurrently.
const WRITE_BATCH: usize = 64;

/// Kubernetes' per-object Event rate limit: a token bucket of [`SPAM_BURST`] tokens per source
/// component and involved object, refilled by one token every [`SPAM_REFILL`], for at most
/// [`SPAM_KEYS`] objects (the least recently used is forgotten first). Pure: the caller passes
/// the time.
#[derive(Debug)]
pub struct SpamFilter {
    burst: u32,
    refill: Duration,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
    /// The keys by when they were last used, to forget the least recently used one.
    recency: BTreeMap<u64, String>,
    next_use: u64,
}

#[derive(Debug)]
struct Bucket {
    /// The tokens, as the time it took to earn them: one token is worth `refill`, so refilling
    /// is exact integer arithmetic.
    credit: Duration,
    updated: Instant,
    last_use: u64,
}

impl Default for SpamFilter {
    fn default() -> SpamFilter {
        SpamFilter::new(SPAM_BURST, SPAM_REFILL, SPAM_KEYS)
    }
}

impl SpamFilter {
    /// A filter allowing `burst` Events per key at once and one more per `refill`, remembering
    /// at most `max_keys` keys.
    pub fn new(burst: u32, refill: Duration, max_keys: usize) -> SpamFilter {
        SpamFilter {
            burst,
            refill,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            recency: BTreeMap::new(),
            next_use: 0,
        }
    }

    /// Whether an Event with this key ([`spam_key`]) may be recorded at `now`; if so, it
    /// takes a token.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        let full = self.refill.saturating_mul(self.burst);
        let last_use = self.next_use;
        self.next_use += 1;
        let bucket = match self.buckets.get_mut(key) {
            Some(bucket) => {
                self.recency.remove(&bucket.last_use);
                bucket
            }
            None => {
                if self.buckets.len() >= self.max_keys
                    && let Some((_, oldest)) = self.recency.pop_first()
                {
                    self.buckets.remove(&oldest);
                }
                self.buckets.entry(key.to_owned()).or_insert(Bucket {
                    credit: full,
                    updated: now,
                    last_use,
                })
            }
        };
        bucket.last_use = last_use;
        self.recency.insert(last_use, key.to_owned());
        let earned = now.saturating_duration_since(bucket.updated);
        bucket.credit = bucket.credit.saturating_add(earned).min(full);
        bucket.updated = bucket.updated.max(now);
        match bucket.credit.checked_sub(self.refill) {
            Some(left) => {
                bucket.credit = left;
                true
            }
            None => false,
        }
    }

    /// How many keys the filter remembers.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether the filter remembers no key.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The spam filter's key of an Event: its source component and host and its involved object's
/// kind, namespace, name, uid and apiVersion (client-go's `getSpamKey`).
pub fn spam_key(event: &Value) -> String {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    [
        "/source/component",
        "/source/host",
        "/involvedObject/kind",
        "/involvedObject/namespace",
        "/involvedObject/name",
        "/involvedObject/uid",
        "/involvedObject/apiVersion",
    ]
    .map(text)
    .join("\u{0}")
}

/// Records Events for the control loops: rate-limited per object, queued without waiting, and
/// written by one background task. Cloning is cheap; every clone feeds the same queue, and the
/// writer stops once every clone is gone and the queue is drained.
#[derive(Clone, Debug)]
pub struct EventRecorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: mpsc::Sender<Value>,
    filter: Mutex<SpamFilter>,
    dropped: AtomicU64,
}

impl EventRecorder {
    /// A recorder writing through `registry`. Starts the writer task, so it must be called
    /// within a Tokio runtime.
    pub fn new(registry: Registry) -> EventRecorder {
        let (recorder, queue) = EventRecorder::with_capacity(QUEUE_CAPACITY);
        tokio::spawn(write_events(registry, queue));
        recorder
    }

    /// A recorder whose queue holds `capacity` Events, and the other end of that queue.
    fn with_capacity(capacity: usize) -> (EventRecorder, mpsc::Receiver<Value>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let recorder = EventRecorder {
            shared: Arc::new(Shared {
                queue: sender,
                filter: Mutex::new(SpamFilter::default()),
                dropped: AtomicU64::new(0),
            }),
        };
        (recorder, receiver)
    }

    /// Queues an Event (built by [`event_object`](crate::event_object)) for writing, unless
    /// the spam filter holds it back or the queue is full. Never blocks.
    pub fn record(&self, event: Value) {
        let key = spam_key(&event);
        let allowed = match self.shared.filter.lock() {
            Ok(mut filter) => filter.allow(&key, Instant::now()),
            // A panic elsewhere while holding the lock cannot leave the buckets inconsistent
            // in a way that matters for a rate limit.
            Err(poisoned) => poisoned.into_inner().allow(&key, Instant::now()),
        };
        if !allowed {
            tracing::trace!(
                reason = event["reason"].as_str(),
                "event dropped by the spam filter"
            );
            return;
        }
        if let Err(error) = self.shared.queue.try_send(event) {
            let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let full = matches!(error, mpsc::error::TrySendError::Full(_));
            tracing::debug!(dropped, full, "event queue unavailable; event dropped");
        }
    }

    /// How many Events were dropped because the queue was full (or the writer had stopped).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Writes queued Events until every recorder is gone, up to [`WRITE_BATCH`] at once.
async fn write_events(registry: Registry, mut queue: mpsc::Receiver<Value>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let writes = batch.drain(..).map(|event| write_event(&registry, event));
        futures::future::join_all(writes).await;
    }
}

/// Creates one Event (best effort: a failure is logged, never retried).
async fn write_event(registry: &Registry, event: Value) {
    let events = resources::find("", "v1", "events").expect("events are served");
    let namespace = event["metadata"]["namespace"].as_str().map(str::to_owned);
    match registry
        .create(
            events,
            namespace.as_deref(),
            event,
            &WriteOptions::default(),
        )
        .await
    {
        Ok(_) => {}
        // The namespace is going away; so are the Events about its objects.
        Err(ApiError::Forbidden(_) | ApiError::NotFound(_)) => {}
        Err(error) => tracing::warn!(%error, "cannot record an event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectKey, event_object};

    fn event(component: &str, name: &str, reason: &str) -> Value {
        let object = ObjectKey {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        };
        event_object(
            "apps/v1",
            "ReplicaSet",
            &object,
            "Normal",
            reason,
            "m",
            component,
        )
    }

    /// How many of `n` Events with `key` at `at` pass.
    fn passed(filter: &mut SpamFilter, key: &str, n: usize, at: Instant) -> usize {
        (0..n).filter(|_| filter.allow(key, at)).count()
    }

    #[test]
    fn a_burst_of_events_about_one_object_is_cut_at_25_then_one_per_five_minutes() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        assert_eq!(passed(&mut filter, "rs", 100, t0), 25);
        let minute = Duration::from_secs(60);
        assert_eq!(passed(&mut filter, "rs", 10, t0 + 4 * minute), 0);
        assert_eq!(passed(&mut filter, "rs", 10, t0 + 5 * minute), 1);
        assert_eq!(passed(&mut filter, "rs", 10, t0 + 9 * minute), 0);
        // Refused Events do not hold the refill back: by minute 24, 19 minutes have been
        // earned since the last token was spent, which is three tokens.
        assert_eq!(passed(&mut filter, "rs", 10, t0 + 24 * minute), 3);
    }

    #[test]
    fn a_quiet_object_earns_back_at_most_a_full_burst() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        assert_eq!(passed(&mut filter, "rs", 25, t0), 25);
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(passed(&mut filter, "rs", 100, t0 + day), 25);
    }

    #[test]
    fn each_object_and_each_source_has_its_own_budget() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        let a = spam_key(&event("replicaset-controller", "a", "SuccessfulCreate"));
        let b = spam_key(&event("replicaset-controller", "b", "SuccessfulCreate"));
        let a_other_source = spam_key(&event("deployment-controller", "a", "SuccessfulCreate"));
        let a_other_reason = spam_key(&event("replicaset-controller", "a", "SuccessfulDelete"));
        assert_eq!(a, a_other_reason, "the reason is not part of the key");
        assert_eq!(passed(&mut filter, &a, 30, t0), 25);
        assert_eq!(passed(&mut filter, &a_other_reason, 1, t0), 0);
        assert_eq!(passed(&mut filter, &b, 30, t0), 25);
        assert_eq!(passed(&mut filter, &a_other_source, 30, t0), 25);
    }

    #[test]
    fn the_least_recently_used_object_is_forgotten_when_the_filter_is_full() {
        let mut filter = SpamFilter::new(1, SPAM_REFILL, 2);
        let t0 = Instant::now();
        assert!(filter.allow("a", t0));
        assert!(filter.allow("b", t0));
        // "a" is used again (and refused), so "b" is now the least recently used.
        assert!(!filter.allow("a", t0));
        assert!(filter.allow("c", t0));
        assert_eq!(filter.len(), 2);
        // "b" was forgotten, so it starts over with a full bucket, and pushes out "a", now
        // the least recently used.
        assert!(filter.allow("b", t0));
        assert!(!filter.allow("b", t0));
        assert_eq!(filter.len(), 2);
        assert!(filter.allow("a", t0), "a was forgotten when b came back");
    }

    #[test]
    fn a_full_queue_drops_and_counts_events_instead_of_waiting() {
        let (recorder, mut queue) = EventRecorder::with_capacity(2);
        for name in ["a", "b", "c", "d"] {
            recorder.record(event("replicaset-controller", name, "SuccessfulCreate"));
        }
        assert_eq!(recorder.dropped(), 2);
        assert_eq!(queue.try_recv().unwrap()["involvedObject"]["name"], "a");
        assert_eq!(queue.try_recv().unwrap()["involvedObject"]["name"], "b");
        assert!(queue.try_recv().is_err());
    }

    #[test]
    fn the_recorder_applies_the_spam_filter_before_the_queue() {
        let (recorder, mut queue) = EventRecorder::with_capacity(100);
        for _ in 0..30 {
            recorder.record(event("replicaset-controller", "a", "SuccessfulCreate"));
        }
        let mut queued = 0;
        while queue.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 25);
        assert_eq!(recorder.dropped(), 0);
    }

    #[tokio::test]
    async fn recorded_events_are_written_to_the_store_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::testing::registry_in(dir.path());
        wharf_apiserver::bootstrap::ensure_bootstrap_objects(&registry)
            .await
            .unwrap();
        let recorder = EventRecorder::new(registry.clone());
        for name in ["a", "b", "c"] {
            recorder.record(event("replicaset-controller", name, "SuccessfulCreate"));
        }
        let events = resources::find("", "v1", "events").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = registry
                .list(events, Some("default"), &Default::default())
                .await
                .unwrap();
            if list.items.len() == 3 {
                assert!(list.items.iter().all(|e| e["reason"] == "SuccessfulCreate"));
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{:?}", list.items);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
