//! ReplicaSets on their own: adoption of matching orphan pods, replacement of deleted pods,
//! binding of every pod to the local node, and a status that follows the pods.

use serde_json::{Value, json};
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType, WriteOptions};

use crate::support::{
    Cluster, bound_and_scheduled, controller_uid, eventually, number, pods, replica_sets, text,
};

fn replica_set(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    })
}

/// Waits until the ReplicaSet controls exactly `replicas` live pods, all bound, and its status
/// says so. Returns the pods.
async fn settled(cluster: &Cluster, name: &str, replicas: usize) -> Vec<Value> {
    let c = cluster;
    eventually(
        &format!("{name} to hold {replicas} pods"),
        move || async move {
            let rs = c.get(replica_sets(), name).await.ok_or("no ReplicaSet")?;
            let uid = text(&rs, "/metadata/uid");
            let pods: Vec<Value> = c
                .live_pods(&format!("app={name}"))
                .await
                .into_iter()
                .filter(|p| controller_uid(p) == uid)
                .collect();
            let ok = pods.len() == replicas
                && pods.iter().all(bound_and_scheduled)
                && number(&rs, "/status/replicas") == replicas as i64
                && number(&rs, "/status/fullyLabeledReplicas") == replicas as i64
                && number(&rs, "/status/observedGeneration") == number(&rs, "/metadata/generation");
            if ok {
                Ok(pods)
            } else {
                Err(format!("{} pods; {:#}", pods.len(), rs["status"]))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_adopts_a_matching_orphan_and_replaces_deleted_pods() {
    let cluster = Cluster::start().await;
    let orphan = cluster
        .create(
            pods(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "cache-handmade", "labels": {"app": "cache"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            }),
        )
        .await;
    cluster
        .create(replica_sets(), replica_set("cache", 2))
        .await;

    let held = settled(&cluster, "cache", 2).await;
    assert!(
        held.iter()
            .any(|p| p["metadata"]["uid"] == orphan["metadata"]["uid"]),
        "the orphan was adopted rather than replaced: {held:#?}"
    );
    let created = held
        .iter()
        .find(|p| p["metadata"]["uid"] != orphan["metadata"]["uid"])
        .expect("one pod was created");
    assert!(text(created, "/metadata/name").starts_with("cache-"));

    // A deleted pod is replaced.
    cluster
        .registry
        .delete(
            pods(),
            Some("default"),
            text(created, "/metadata/name"),
            &DeleteOptions::default(),
        )
        .await
        .expect("the pod can be deleted");
    let replaced = settled(&cluster, "cache", 2).await;
    assert!(
        replaced
            .iter()
            .all(|p| p["metadata"]["uid"] != created["metadata"]["uid"]),
        "{replaced:#?}"
    );

    // A pod relabelled out of the selector is released and replaced.
    let released = text(&orphan, "/metadata/name");
    cluster
        .registry
        .patch(
            pods(),
            Some("default"),
            released,
            PatchType::Merge,
            &json!({"metadata": {"labels": {"app": "debugging"}}}),
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .expect("the pod can be relabelled");
    settled(&cluster, "cache", 2).await;
    let c = &cluster;
    eventually("the relabelled pod to lose its owner", move || async move {
        let pod = c.get(pods(), released).await.ok_or("the pod is gone")?;
        match controller_uid(&pod) {
            "" => Ok(()),
            owner => Err(format!("still controlled by {owner}")),
        }
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_created_with_no_node_are_bound_to_the_local_node() {
    let cluster = Cluster::start().await;
    for name in ["solo-a", "solo-b"] {
        cluster
            .create(
                pods(),
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "solo"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
                }),
            )
            .await;
    }
    cluster
        .create(
            pods(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "custom", "labels": {"app": "solo"}},
                "spec": {"schedulerName": "someone-else",
                         "containers": [{"name": "app", "image": "registry.example/app:1"}]},
            }),
        )
        .await;
    let c = &cluster;
    eventually(
        "both default-scheduler pods to be bound",
        move || async move {
            let pods = c.live_pods("app=solo").await;
            let bound: Vec<&str> = pods
                .iter()
                .filter(|p| bound_and_scheduled(p))
                .map(|p| text(p, "/metadata/name"))
                .collect();
            if bound == ["solo-a", "solo-b"] {
                Ok(())
            } else {
                Err(format!("bound: {bound:?}"))
            }
        },
    )
    .await;
    let custom = cluster.get(pods(), "custom").await.expect("the pod exists");
    assert!(custom["spec"].get("nodeName").is_none(), "{custom:#}");
    cluster.stop().await;
}
