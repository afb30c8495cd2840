//! Requests routed to each pod: a running total and those in flight, which the node's agent
//! samples into request rates for `metrics.k8s.io` consumers and the HPA's per-pod request
//! metrics (`http_requests_per_second`, `http_requests_in_flight`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
struct Counter {
    total: AtomicU64,
    in_flight: AtomicU64,
}

/// The counters of every pod the gateway routed to.
#[derive(Debug, Default)]
pub struct RequestCounters {
    pods: RwLock<HashMap<String, Arc<Counter>>>,
}

/// One request in flight; dropping it (when the response body ends or is dropped) ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Counter>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestCounters {
    /// Counts a request sent to the pod `uid`; it is in flight until the guard is dropped.
    pub fn start(&self, uid: &str) -> InFlight {
        let existing = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned();
        let counter = match existing {
            Some(counter) => counter,
            None => self
                .pods
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(uid.to_owned())
                .or_default()
                .clone(),
        };
        counter.total.fetch_add(1, Ordering::Relaxed);
        counter.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    /// `(uid, requests so far, requests in flight)` of every pod counted.
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        self.pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(uid, c)| {
                (
                    uid.clone(),
                    c.total.load(Ordering::Relaxed),
                    c.in_flight.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Forgets the pods `keep` rejects once nothing is in flight at them.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|uid, c| keep(uid) || c.in_flight.load(Ordering::Relaxed) > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_when_sent_and_stay_in_flight_until_dropped() {
        let counters = RequestCounters::default();
        let first = counters.start("a");
        let second = counters.start("a");
        drop(counters.start("b"));
        let mut snapshot = counters.snapshot();
        snapshot.sort();
        assert_eq!(snapshot, [("a".into(), 2, 2), ("b".into(), 1, 0)]);
        drop(first);
        counters.retain(|uid| uid == "b");
        assert_eq!(
            counters.snapshot().iter().find(|(u, ..)| u == "a"),
            Some(&("a".into(), 2, 1)),
            "a pod with a request in flight is kept"
        );
        drop(second);
        counters.retain(|uid| uid == "b");
        assert_eq!(counters.snapshot(), [("b".into(), 1, 0)]);
    }
}
