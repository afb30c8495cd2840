//! The scheduler over a real registry: pods spread over three Nodes by bin-packing, a pod too
//! big for any of them marked `PodScheduled=False` with Kubernetes' message and a
//! `FailedScheduling` Event, then bound as soon as a big enough Node joins.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_apiserver::bootstrap;
use wharf_apiserver::registry::{ListOptions, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_controllers::scheduler::{self, Policy};
use wharf_store::{RedbStore, Store, StoreConfig};

use crate::support::{eventually, pods, text};

fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

fn events() -> &'static Resource {
    resources::find("", "v1", "events").expect("events are served")
}

fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"wharf.dev/runtimes": "wasmtime.runc"}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "runtimeClassName": "wasmtime",
            "containers": [{
                "name": "app", "image": "registry.example/app:1",
                "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}},
            }],
        },
    })
}

/// The pod's `PodScheduled` condition (`Null` if none).
fn scheduled_condition(pod: &Value) -> Value {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn get_pod(registry: &Registry, name: &str) -> Value {
    registry
        .get(pods(), Some("default"), name)
        .await
        .unwrap_or_else(|e| panic!("reading pod {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bin_packed_over_nodes_and_an_unschedulable_pod_binds_when_a_big_node_joins() {
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
    let mut stopping = stop.subscribe();
    let task = tokio::spawn(scheduler::run(
        registry.clone(),
        Policy::BinPacking,
        wharf_controllers::EventRecorder::new(registry.clone()),
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        },
    ));

    let create = |resource: &'static Resource, namespace: Option<&'static str>, object: Value| {
        let registry = registry.clone();
        async move {
            registry
                .create(resource, namespace, object, &WriteOptions::default())
                .await
                .unwrap_or_else(|e| panic!("creating a {}: {e}", resource.kind))
        }
    };
    for (name, cpu, memory) in [("n1", "2", "4Gi"), ("n2", "2", "4Gi"), ("n3", "4", "8Gi")] {
        create(nodes(), None, node(name, cpu, memory)).await;
    }
    create(pods(), Some("default"), pod("p1", "1500m")).await;
    create(pods(), Some("default"), pod("p2", "1500m")).await;
    let big = create(pods(), Some("default"), pod("big", "8")).await;

    // Bin-packing: p1 fills n1 (the fullest fit, first by name among equals); p2 no longer
    // fits there and goes to the next fullest, n2; n3 stays empty.
    let r = &registry;
    for (name, expected) in [("p1", "n1"), ("p2", "n2")] {
        eventually(&format!("{name} bound to {expected}"), || async move {
            let pod = get_pod(r, name).await;
            let condition = scheduled_condition(&pod);
            if text(&pod, "/spec/nodeName") == expected && condition["status"] == "True" {
                Ok(())
            } else {
                Err(format!("{:#}", pod["spec"]["nodeName"]))
            }
        })
        .await;
    }

    let expected_message = "0/3 nodes are available: 3 Insufficient cpu.";
    eventually("big marked unschedulable", || async move {
        let pod = get_pod(r, "big").await;
        let condition = scheduled_condition(&pod);
        if condition["status"] == "False"
            && condition["reason"] == "Unschedulable"
            && condition["message"] == expected_message
            && text(&pod, "/spec/nodeName").is_empty()
        {
            Ok(())
        } else {
            Err(format!("{condition:#}"))
        }
    })
    .await;
    let big_uid = text(&big, "/metadata/uid").to_owned();
    let event = eventually("a FailedScheduling event", || {
        let big_uid = big_uid.clone();
        async move {
            let events = r
                .list(events(), Some("default"), &ListOptions::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            events
                .into_iter()
                .find(|e| {
                    text(e, "/involvedObject/uid") == big_uid
                        && text(e, "/reason") == "FailedScheduling"
                })
                .ok_or_else(|| "no event yet".to_owned())
        }
    })
    .await;
    assert_eq!(text(&event, "/type"), "Warning");
    assert_eq!(text(&event, "/message"), expected_message);
    assert_eq!(text(&event, "/involvedObject/kind"), "Pod");
    assert_eq!(text(&event, "/involvedObject/name"), "big");

    // Retrying an unchanged failure writes nothing: the store settles.
    let settled = registry.store().current_revision();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        registry.store().current_revision(),
        settled,
        "the scheduler keeps writing"
    );

    // A node big enough joins: the pod is bound there, and its condition turns true without
    // the old failure reason.
    create(nodes(), None, node("n4-large", "16", "32Gi")).await;
    eventually("big bound to the new node", || async move {
        let pod = get_pod(r, "big").await;
        let condition = scheduled_condition(&pod);
        if text(&pod, "/spec/nodeName") == "n4-large"
            && condition["status"] == "True"
            && condition.get("reason").is_none()
            && condition.get("message").is_none()
        {
            Ok(())
        } else {
            Err(format!("{:#} {condition:#}", pod["spec"]["nodeName"]))
        }
    })
    .await;
    // Nothing else moved.
    assert_eq!(text(&get_pod(r, "p1").await, "/spec/nodeName"), "n1");
    assert_eq!(text(&get_pod(r, "p2").await, "/spec/nodeName"), "n2");

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the scheduler stops when asked")
        .expect("the scheduler does not panic");
}
