//! Prometheus metrics of the API server, served as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use wharf_store::StoreStats;

/// Request counts keyed by (verb, resource, HTTP code).
type RequestCounts = BTreeMap<(&'static str, &'static str, u16), u64>;

/// Counters of the API server. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    requests: Arc<Mutex<RequestCounts>>,
    watches: Arc<AtomicI64>,
}

impl Metrics {
    /// Counts one request.
    pub fn record_request(&self, verb: &'static str, resource: &'static str, code: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((verb, resource, code)).or_default() += 1;
    }

    /// A watch stream started.
    pub fn watch_started(&self) {
        self.watches.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch stream ended.
    pub fn watch_ended(&self) {
        self.watches.fetch_sub(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, store: Option<StoreStats>) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((verb, resource, code), count) in requests.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {count}"
            );
        }
        out.push_str("# HELP apiserver_registered_watchers Open watch streams.\n");
        out.push_str("# TYPE apiserver_registered_watchers gauge\n");
        let _ = writeln!(
            out,
            "apiserver_registered_watchers {}",
            self.watches.load(Ordering::Relaxed)
        );
        if let Some(stats) = store {
            for (name, kind, help, value) in [
                (
                    "wharf_store_revision",
                    "gauge",
                    "The latest committed revision.",
                    stats.revision,
                ),
                (
                    "wharf_store_compacted_revision",
                    "gauge",
                    "The compacted revision.",
                    stats.compacted,
                ),
                (
                    "wharf_store_commits_total",
                    "counter",
                    "Durable commits (each may carry many writes).",
                    stats.commits,
                ),
                (
                    "wharf_store_writes_total",
                    "counter",
                    "Writes committed.",
                    stats.committed_writes,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
        out
    }
}
