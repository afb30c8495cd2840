//! Test harness: a registry over its own store with every controller running, plus polling
//! helpers that wait for convergence with a timeout instead of fixed sleeps.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wharf_apiserver::registry::{ListOptions, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, bootstrap};
use wharf_store::{RedbStore, Store, StoreConfig};

/// The node the binder assigns pods to.
pub const NODE: &str = "node-1";

/// How long a test waits for the controllers to converge before failing.
pub const CONVERGENCE: Duration = Duration::from_secs(20);

/// How long the store must stay unwritten for the controllers to count as settled.
pub const QUIET: Duration = Duration::from_millis(500);

/// A registry with the binder, ReplicaSet, Deployment and garbage collector running over it.
pub struct Cluster {
    /// The registry the controllers and the test share.
    pub registry: Registry,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A bootstrapped store with every controller started.
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store: Arc<dyn Store> = Arc::new(
            RedbStore::open(dir.path().join("wharf.redb"), StoreConfig::default())
                .expect("the store opens"),
        );
        let registry = Registry::new(store);
        bootstrap::ensure_bootstrap_objects(&registry)
            .await
            .expect("bootstrap objects are created");
        let stop = tokio::sync::watch::Sender::new(false);
        let stopping = || {
            let mut receiver = stop.subscribe();
            async move {
                let _ = receiver.wait_for(|stopping| *stopping).await;
            }
        };
        let events = wharf_controllers::EventRecorder::new(registry.clone());
        let tasks = vec![
            tokio::spawn(wharf_controllers::binder::run(
                registry.clone(),
                NODE.to_owned(),
                stopping(),
            )),
            tokio::spawn(wharf_controllers::replicaset::run(
                registry.clone(),
                events.clone(),
                stopping(),
            )),
            tokio::spawn(wharf_controllers::deployment::run(
                registry.clone(),
                events,
                stopping(),
            )),
            tokio::spawn(wharf_controllers::gc::run(registry.clone(), stopping())),
        ];
        Cluster {
            registry,
            stop,
            tasks,
            _dir: dir,
        }
    }

    /// Stops every controller and checks that each one returns promptly.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("a controller stops when asked")
                .expect("a controller does not panic");
        }
    }

    /// Creates an object in `default`.
    pub async fn create(&self, resource: &Resource, object: Value) -> Value {
        self.registry
            .create(resource, Some("default"), object, &WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("creating a {}: {e}", resource.kind))
    }

    /// Reads an object in `default`, or `None` if it does not exist.
    pub async fn get(&self, resource: &Resource, name: &str) -> Option<Value> {
        match self.registry.get(resource, Some("default"), name).await {
            Ok(object) => Some(object),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => panic!("reading {} {name}: {e}", resource.kind),
        }
    }

    /// The objects of `resource` in `default` that match a label selector (all, if empty).
    pub async fn list(&self, resource: &Resource, selector: &str) -> Vec<Value> {
        let options = ListOptions {
            label_selector: Some(
                wharf_apimachinery::labels::parse(selector).expect("a valid selector"),
            ),
            ..ListOptions::default()
        };
        self.registry
            .list(resource, Some("default"), &options)
            .await
            .expect("listing works")
            .items
    }

    /// Waits until nothing has been written for [`QUIET`]: controllers that have converged
    /// must stop writing (a status rewritten on every pass would never let the store settle).
    pub async fn quiescent(&self) {
        let store = self.registry.store().clone();
        let deadline = tokio::time::Instant::now() + CONVERGENCE;
        let mut revision = store.current_revision();
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = tokio::time::Instant::now();
            let current = store.current_revision();
            if current != revision {
                (revision, since) = (current, now);
            } else if now - since >= QUIET {
                return;
            }
            assert!(
                now < deadline,
                "the controllers kept writing for {CONVERGENCE:?} (revision {current})"
            );
        }
    }

    /// The pods in `default` that match a selector and are not being deleted. (Pods being
    /// deleted are left out so that these tests keep their meaning once pods terminate
    /// gracefully through the node agent.)
    pub async fn live_pods(&self, selector: &str) -> Vec<Value> {
        self.list(pods(), selector)
            .await
            .into_iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect()
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`CONVERGENCE`] with `what`
/// and the last value seen.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Pods.
pub fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// ReplicaSets.
pub fn replica_sets() -> &'static Resource {
    resources::find("apps", "v1", "replicasets").expect("replicasets are served")
}

/// Deployments.
pub fn deployments() -> &'static Resource {
    resources::find("apps", "v1", "deployments").expect("deployments are served")
}

/// A string field of an object, by JSON pointer ("" if absent).
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A number field of an object, by JSON pointer (0 if absent, as Kubernetes omits zeros).
pub fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The uid of the object's controller.
pub fn controller_uid(object: &Value) -> &str {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map_or("", |r| text(r, "/uid"))
}

/// Whether a pod is bound to [`NODE`] and marked `PodScheduled=True`.
pub fn bound_and_scheduled(pod: &Value) -> bool {
    text(pod, "/spec/nodeName") == NODE
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
            })
}
