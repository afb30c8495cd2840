//! Deployments end to end: a ReplicaSet per template with bound pods, scaling, a template
//! change that moves the replicas to a new ReplicaSet, a rollback, and deletion with
//! Background propagation through the garbage collector.

use serde_json::{Value, json};
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType, WriteOptions};

use crate::support::{
    Cluster, bound_and_scheduled, controller_uid, deployments, eventually, number, pods,
    replica_sets, text,
};

const REVISION: &str = "/metadata/annotations/deployment.kubernetes.io~1revision";

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            // No agent runs here, so pods never become ready: a rollout that waited for
            // availability (maxUnavailable 25% of 1 is 0) would never move.
            "strategy": {"rollingUpdate": {"maxUnavailable": "100%"}},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

async fn patch_deployment(cluster: &Cluster, name: &str, patch: Value) {
    cluster
        .registry
        .patch(
            deployments(),
            Some("default"),
            name,
            PatchType::StrategicMerge,
            &patch,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .expect("the deployment can be patched");
}

/// Waits until the Deployment has exactly one ReplicaSet with replicas, holding `replicas`
/// live, bound pods of `image`, every other ReplicaSet scaled to zero with no live pods, and
/// the Deployment's status reports it. Returns that ReplicaSet.
async fn converged(cluster: &Cluster, name: &str, replicas: i64, image: &str) -> Value {
    let c = cluster;
    eventually(
        &format!("{name} to run {replicas} pods of {image}"),
        move || async move {
            let deployment = c.get(deployments(), name).await.ok_or("no deployment")?;
            let uid = text(&deployment, "/metadata/uid");
            let sets: Vec<Value> = c
                .list(replica_sets(), &format!("app={name}"))
                .await
                .into_iter()
                .filter(|rs| controller_uid(rs) == uid)
                .collect();
            let (current, old): (Vec<Value>, Vec<Value>) = sets
                .into_iter()
                .partition(|rs| text(rs, "/spec/template/spec/containers/0/image") == image);
            let [current] = current.as_slice() else {
                return Err(format!("{} ReplicaSets for {image}", current.len()));
            };
            let hash = text(current, "/metadata/labels/pod-template-hash");
            let pods = c.live_pods(&format!("app={name}")).await;
            let mine: Vec<&Value> = pods
                .iter()
                .filter(|p| controller_uid(p) == text(current, "/metadata/uid"))
                .collect();
            let checks = [
                (
                    number(current, "/spec/replicas") == replicas,
                    "current spec.replicas",
                ),
                (
                    mine.len() as i64 == replicas,
                    "live pods of the current ReplicaSet",
                ),
                (pods.len() as i64 == replicas, "live pods in all"),
                (
                    mine.iter()
                        .all(|p| text(p, "/metadata/labels/pod-template-hash") == hash),
                    "the pods' pod-template-hash",
                ),
                (
                    mine.iter().all(|p| bound_and_scheduled(p)),
                    "pods bound to node-1",
                ),
                (
                    old.iter().all(|rs| number(rs, "/spec/replicas") == 0),
                    "old ReplicaSets at 0",
                ),
                (
                    number(current, "/status/replicas") == replicas,
                    "ReplicaSet status.replicas",
                ),
                (
                    number(&deployment, "/status/replicas") == replicas,
                    "Deployment status.replicas",
                ),
                (
                    number(&deployment, "/status/updatedReplicas") == replicas,
                    "Deployment status.updatedReplicas",
                ),
                (
                    number(&deployment, "/status/observedGeneration")
                        == number(&deployment, "/metadata/generation"),
                    "Deployment status.observedGeneration",
                ),
                (
                    deployment.pointer(REVISION) == current.pointer(REVISION),
                    "the Deployment's revision is the ReplicaSet's",
                ),
            ];
            match checks.iter().find(|(ok, _)| !ok) {
                Some((_, what)) => Err(format!("{what} not yet right: {current:#}")),
                None => Ok(current.clone()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_scales_changes_template_and_is_collected() {
    let cluster = Cluster::start().await;
    cluster
        .create(
            deployments(),
            deployment("web", 3, "registry.example/web:1"),
        )
        .await;

    // A ReplicaSet named and labelled by the template hash, with three bound pods.
    let first = converged(&cluster, "web", 3, "registry.example/web:1").await;
    cluster.quiescent().await;
    assert_eq!(
        cluster.live_pods("app=web").await.len(),
        3,
        "no pod is created beyond the replicas"
    );
    let hash = text(&first, "/metadata/labels/pod-template-hash").to_owned();
    assert_eq!(hash.len(), 10, "{first:#}");
    assert_eq!(text(&first, "/metadata/name"), format!("web-{hash}"));
    assert_eq!(
        text(&first, "/spec/selector/matchLabels/pod-template-hash"),
        hash
    );
    assert_eq!(
        text(&first, "/spec/template/metadata/labels/pod-template-hash"),
        hash
    );
    assert_eq!(first.pointer(REVISION), Some(&json!("1")));
    for pod in cluster.live_pods("app=web").await {
        let name = text(&pod, "/metadata/name");
        assert!(name.starts_with(&format!("web-{hash}-")), "{name}");
        assert_eq!(name.len(), format!("web-{hash}-").len() + 5, "{name}");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["apiVersion"], "apps/v1");
        assert_eq!(owner["name"], first["metadata"]["name"]);
        assert_eq!(owner["blockOwnerDeletion"], true);
    }

    // Scaling up and down goes through the same ReplicaSet.
    patch_deployment(&cluster, "web", json!({"spec": {"replicas": 5}})).await;
    let scaled_up = converged(&cluster, "web", 5, "registry.example/web:1").await;
    assert_eq!(scaled_up["metadata"]["uid"], first["metadata"]["uid"]);
    patch_deployment(&cluster, "web", json!({"spec": {"replicas": 1}})).await;
    let scaled_down = converged(&cluster, "web", 1, "registry.example/web:1").await;
    assert_eq!(scaled_down["metadata"]["uid"], first["metadata"]["uid"]);

    // A new image: a new ReplicaSet takes over, the old one goes to zero.
    patch_deployment(
        &cluster,
        "web",
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "registry.example/web:2"}
        ]}}}}),
    )
    .await;
    let second = converged(&cluster, "web", 1, "registry.example/web:2").await;
    assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_ne!(text(&second, "/metadata/labels/pod-template-hash"), hash);
    assert_eq!(second.pointer(REVISION), Some(&json!("2")));
    let old = cluster
        .get(replica_sets(), text(&first, "/metadata/name"))
        .await
        .expect("the old ReplicaSet is kept as history");
    assert_eq!(number(&old, "/spec/replicas"), 0);

    // Going back to the first image reuses the first ReplicaSet, as its third revision.
    patch_deployment(
        &cluster,
        "web",
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "registry.example/web:1"}
        ]}}}}),
    )
    .await;
    let third = converged(&cluster, "web", 1, "registry.example/web:1").await;
    assert_eq!(third["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(third.pointer(REVISION), Some(&json!("3")));
    cluster.quiescent().await;

    // Deleting the Deployment in the background: the collector removes the ReplicaSets and
    // their pods.
    cluster
        .registry
        .delete(
            deployments(),
            Some("default"),
            "web",
            &DeleteOptions {
                propagation_policy: Some("Background".into()),
                ..DeleteOptions::default()
            },
        )
        .await
        .expect("the deployment can be deleted");
    let c = &cluster;
    eventually(
        "the ReplicaSets and pods to be collected",
        move || async move {
            let sets = c.list(replica_sets(), "app=web").await;
            let pods = c.live_pods("app=web").await;
            if sets.is_empty() && pods.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} ReplicaSets and {} pods left",
                    sets.len(),
                    pods.len()
                ))
            }
        },
    )
    .await;
    assert!(cluster.get(deployments(), "web").await.is_none());
    assert!(
        cluster
            .list(pods(), "app=web")
            .await
            .iter()
            .all(|p| { p.pointer("/metadata/deletionTimestamp").is_some() })
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_reports_its_progress_in_conditions() {
    let cluster = Cluster::start().await;
    // The default strategy (25% unavailable of 2 = 0): availability needs ready pods.
    let mut api = deployment("api", 2, "registry.example/api:1");
    api["spec"].as_object_mut().unwrap().remove("strategy");
    cluster.create(deployments(), api).await;
    converged(&cluster, "api", 2, "registry.example/api:1").await;
    // Without a node agent no pod becomes ready: the rollout progresses (pods exist) but the
    // Deployment is not available.
    let c = &cluster;
    let status = eventually("the Deployment's conditions", move || async move {
        let deployment = c.get(deployments(), "api").await.ok_or("gone")?;
        let conditions = deployment["status"]["conditions"].clone();
        let of = |kind: &str| {
            conditions
                .as_array()
                .and_then(|list| list.iter().find(|c| c["type"] == kind))
                .cloned()
        };
        match (of("Available"), of("Progressing")) {
            (Some(available), Some(progressing)) => Ok((available, progressing)),
            _ => Err(format!("{conditions:#}")),
        }
    })
    .await;
    let (available, progressing) = status;
    assert_eq!(available["status"], "False");
    assert_eq!(available["reason"], "MinimumReplicasUnavailable");
    assert_eq!(progressing["status"], "True");
    assert!(
        ["NewReplicaSetCreated", "ReplicaSetUpdated"]
            .contains(&progressing["reason"].as_str().unwrap_or("")),
        "{progressing:#}"
    );
    cluster.stop().await;
}
