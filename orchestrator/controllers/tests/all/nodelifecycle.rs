//! The node lifecycle controller over a real registry: a node whose Lease stops being renewed
//! becomes `Ready=Unknown` and tainted unreachable, its pods are evicted per their tolerations
//! (force-deleted, since no agent would finish them), and its taint goes when it reports again.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_apiserver::registry::{Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_controllers::nodelifecycle::{
    NODE_LEASE_NAMESPACE, NodeLifecycleConfig, UNREACHABLE_TAINT,
};

use crate::support::{Cluster, NODE, eventually, pods, text};

/// Short enough for a test, long enough that a renewal every 200 ms never looks late.
const GRACE: Duration = Duration::from_secs(2);

fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

fn leases() -> &'static Resource {
    resources::find("coordination.k8s.io", "v1", "leases").expect("leases are served")
}

/// Now, as an RFC 3339 time with microseconds (a Lease's `renewTime`).
fn micro_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let seconds = k8s_openapi::jiff::Timestamp::from_second(now.as_secs() as i64).unwrap();
    format!(
        "{}.{:06}Z",
        seconds.strftime("%Y-%m-%dT%H:%M:%S"),
        now.subsec_micros()
    )
}

/// The node's conditions as its agent posts them: Ready, with a fresh heartbeat.
fn ready_conditions() -> Value {
    let now = wharf_apiserver::meta::now_rfc3339();
    json!([{"type": "Ready", "status": "True", "reason": "WharfAgentReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}])
}

/// Renews the node's Lease, as its agent does.
async fn renew(registry: &Registry) {
    let patch = json!({"spec": {"renewTime": micro_now()}});
    registry
        .patch(
            leases(),
            Some(NODE_LEASE_NAMESPACE),
            NODE,
            PatchType::Merge,
            &patch,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .expect("the lease is renewed");
}

/// An agent that only renews its Lease, until aborted.
fn agent(registry: Registry) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            renew(&registry).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn pod(name: &str, tolerations: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    });
    if !tolerations.is_null() {
        pod["spec"]["tolerations"] = tolerations;
    }
    pod
}

fn unreachable_toleration(seconds: Option<i64>) -> Value {
    let mut toleration =
        json!({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"});
    if let Some(seconds) = seconds {
        toleration["tolerationSeconds"] = json!(seconds);
    }
    toleration
}

fn taints(node: &Value) -> Vec<(String, String)> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| (text(t, "/key").to_owned(), text(t, "/effect").to_owned()))
        .collect()
}

fn ready_condition(object: &Value) -> Value {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_goes_stale_is_tainted_and_its_pods_are_evicted_per_their_tolerations() {
    let cluster = Cluster::start().await;
    let registry = cluster.registry.clone();
    let stop = tokio::sync::watch::Sender::new(false);
    let mut stopping = stop.subscribe();
    let controller = tokio::spawn(wharf_controllers::nodelifecycle::run(
        registry.clone(),
        NodeLifecycleConfig { grace: GRACE },
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        },
    ));

    registry
        .create(
            nodes(),
            None,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                   "spec": {}, "status": {"conditions": ready_conditions()}}),
            &WriteOptions::default(),
        )
        .await
        .expect("the node registers");
    registry
        .create(
            leases(),
            Some(NODE_LEASE_NAMESPACE),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": NODE},
                   "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40,
                            "renewTime": micro_now()}}),
            &WriteOptions::default(),
        )
        .await
        .expect("the lease is created");
    let renewing = agent(registry.clone());

    // `quick` asks for fast failover; `patient` has the default 300 s; `forever` tolerates an
    // unreachable node for good, but not the `dedicated` taint added at the end.
    let quick = cluster
        .create(
            pods(),
            pod("quick", json!([unreachable_toleration(Some(1))])),
        )
        .await;
    cluster.create(pods(), pod("patient", Value::Null)).await;
    cluster
        .create(
            pods(),
            pod("forever", json!([unreachable_toleration(None)])),
        )
        .await;
    let c = &cluster;
    eventually("the binder to place the pods", || async move {
        let bound = c
            .list(pods(), "")
            .await
            .iter()
            .filter(|p| text(p, "/spec/nodeName") == NODE)
            .count();
        if bound == 3 {
            Ok(())
        } else {
            Err(format!("{bound} bound"))
        }
    })
    .await;
    // `forever` is running and ready, as its agent would have reported.
    let forever = cluster
        .get(pods(), "forever")
        .await
        .expect("forever exists");
    let mut conditions = forever["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conditions.push(json!({"type": "Ready", "status": "True"}));
    registry
        .patch(
            pods(),
            Some("default"),
            "forever",
            PatchType::Merge,
            &json!({"status": {"phase": "Running", "conditions": conditions}}),
            Part::Status,
            &WriteOptions::default(),
        )
        .await
        .expect("the pod status is written");

    // While the lease is renewed, nothing happens, even well past the grace period.
    tokio::time::sleep(GRACE * 2).await;
    let node = registry.get(nodes(), None, NODE).await.unwrap();
    assert_eq!(ready_condition(&node)["status"], "True", "{node:#}");
    assert_eq!(taints(&node), []);
    assert_eq!(cluster.live_pods("").await.len(), 3);

    // The agent dies.
    renewing.abort();
    let r = &registry;
    let node = eventually("the node to be tainted unreachable", || async move {
        let node = r
            .get(nodes(), None, NODE)
            .await
            .map_err(|e| e.to_string())?;
        let tainted = taints(&node)
            == [
                (UNREACHABLE_TAINT.to_owned(), "NoExecute".to_owned()),
                (UNREACHABLE_TAINT.to_owned(), "NoSchedule".to_owned()),
            ];
        if tainted && ready_condition(&node)["status"] == "Unknown" {
            Ok(node)
        } else {
            Err(format!("{node:#}"))
        }
    })
    .await;
    let ready = ready_condition(&node);
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(
        node["spec"]["taints"][0]["timeAdded"].is_string(),
        "{node:#}"
    );

    // `quick` is removed outright after its second; the others stay, `forever` not ready.
    eventually("quick to be evicted", || async move {
        match c.get(pods(), "quick").await {
            None => Ok(()),
            Some(pod) => Err(format!("{pod:#}")),
        }
    })
    .await;
    eventually("forever to be marked not ready", || async move {
        let pod = c.get(pods(), "forever").await.ok_or("forever is gone")?;
        if ready_condition(&pod)["status"] == "False" {
            Ok(())
        } else {
            Err(format!("{pod:#}"))
        }
    })
    .await;
    let live: Vec<String> = cluster
        .live_pods("")
        .await
        .iter()
        .map(|p| text(p, "/metadata/name").to_owned())
        .collect();
    assert_eq!(live, ["forever", "patient"]);
    assert!(
        quick["spec"]["tolerations"].as_array().unwrap().len() == 2,
        "{quick:#}"
    );

    // The agent comes back: it renews its lease and reports Ready again; the taint goes.
    let renewing = agent(registry.clone());
    registry
        .patch(
            nodes(),
            None,
            NODE,
            PatchType::Merge,
            &json!({"status": {"conditions": ready_conditions()}}),
            Part::Status,
            &WriteOptions::default(),
        )
        .await
        .expect("the agent reports its node ready");
    eventually("the node to be untainted", || async move {
        let node = r
            .get(nodes(), None, NODE)
            .await
            .map_err(|e| e.to_string())?;
        if taints(&node).is_empty() && ready_condition(&node)["status"] == "True" {
            Ok(())
        } else {
            Err(format!("{node:#}"))
        }
    })
    .await;

    // A NoExecute taint the remaining pods do not tolerate evicts them at once, gracefully now
    // that the node's agent is there to stop them.
    registry
        .patch(
            nodes(),
            None,
            NODE,
            PatchType::Merge,
            &json!({"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoExecute"}]}}),
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .expect("the node is tainted");
    eventually(
        "the intolerant pods to be deleted gracefully",
        || async move {
            let all = c.list(pods(), "").await;
            let terminating = all
                .iter()
                .filter(|p| p.pointer("/metadata/deletionTimestamp").is_some())
                .count();
            if all.len() == 2 && terminating == 2 {
                Ok(())
            } else {
                Err(format!("{all:#?}"))
            }
        },
    )
    .await;
    let node = registry.get(nodes(), None, NODE).await.unwrap();
    assert!(
        node["spec"]["taints"][0]["timeAdded"].is_string(),
        "a NoExecute taint gets its timeAdded: {node:#}"
    );

    renewing.abort();
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops when asked")
        .expect("the controller does not panic");
    cluster.stop().await;
}
