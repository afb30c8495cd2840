//! Pod rules that differ from other kinds: a fixed spec after creation (except images and a few
//! fields), graceful deletion of pods on a node, and generated names within 63 characters.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{MERGE, TestServer, assert_status};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]}
    })
}

#[tokio::test]
async fn a_pod_spec_is_fixed_after_creation_except_images() {
    let t = TestServer::new().await;
    t.create(PODS, &pod("p")).await;
    let before = t.revision();
    let (code, status) = t
        .patch(
            &format!("{PODS}/p"),
            MERGE,
            &json!({"spec": {"restartPolicy": "Never"}}),
        )
        .await;
    assert_status(
        &status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "pod updates may not change",
    );
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(t.revision(), before, "a rejected update wrote something");
    let (code, updated) = t
        .patch(
            &format!("{PODS}/p"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"containers": [{"name": "c", "image": "img:2"}]}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["spec"]["containers"][0]["image"], "img:2");
}

#[tokio::test]
async fn deleting_a_pod_on_a_node_waits_for_its_agent_and_grace_zero_removes_it() {
    let t = TestServer::new().await;
    let mut bound = pod("running");
    bound["spec"]["nodeName"] = json!("node-1");
    t.create(PODS, &bound).await;
    let (code, marked) = t.delete(&format!("{PODS}/running"), None).await;
    assert_eq!(code, StatusCode::OK, "{marked}");
    // The answer is the pod being deleted, as kube-apiserver gives it (not a Status).
    assert_eq!(marked["kind"], "Pod", "{marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (code, terminating) = t.get(&format!("{PODS}/running")).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "the pod stays until its agent stopped it"
    );
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, removed) = t
        .delete(
            &format!("{PODS}/running"),
            Some(&json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(removed["kind"], "Pod", "pods answer with the deleted pod");
    assert_eq!(removed["metadata"]["name"], "running");
    assert_eq!(
        t.get(&format!("{PODS}/running")).await.0,
        StatusCode::NOT_FOUND
    );
    // A pod no node runs is deleted at once.
    t.create(PODS, &pod("pending")).await;
    let (_, removed) = t.delete(&format!("{PODS}/pending"), None).await;
    assert_eq!(removed["kind"], "Pod", "{removed}");
    assert_eq!(
        t.get(&format!("{PODS}/pending")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn generated_names_stay_within_63_characters() {
    let t = TestServer::new().await;
    let mut long = pod("");
    long["metadata"] = json!({"generateName": format!("{}-", "a".repeat(70))});
    let created = t.create(PODS, &long).await;
    let name = created["metadata"]["name"].as_str().unwrap();
    assert_eq!(name.len(), 63, "{name}");
}

#[tokio::test]
async fn created_pods_tolerate_unreachable_and_not_ready_nodes_for_300_seconds_by_default() {
    let t = TestServer::new().await;
    let created = t.create(PODS, &pod("defaulted")).await;
    let (_, stored) = t.get(&format!("{PODS}/defaulted")).await;
    for object in [&created, &stored] {
        assert_eq!(
            object["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ]),
            "{object:#}"
        );
    }
    // A pod that asks for faster failover keeps its own tolerations.
    let mut fast = pod("fast");
    fast["spec"]["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
    ]);
    let created = t.create(PODS, &fast).await;
    assert_eq!(created["spec"]["tolerations"], fast["spec"]["tolerations"]);
    // Updates leave tolerations as they are: the defaults are added on create only.
    let (code, updated) = t
        .patch(
            &format!("{PODS}/defaulted"),
            MERGE,
            &json!({"spec": {"tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
            ]}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{updated:#}");
    assert_eq!(updated["spec"]["tolerations"].as_array().unwrap().len(), 3);
}
