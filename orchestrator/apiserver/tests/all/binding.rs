//! The `pods/NAME/binding` subresource: how a scheduler assigns a pod to a node. It sets
//! `spec.nodeName` and `PodScheduled=True` once, answers 201 with a Success Status, and refuses
//! to move a pod that is already bound.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{JSON, TestServer, rv};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
    })
}

fn binding(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    })
}

#[tokio::test]
async fn binding_assigns_the_node_and_marks_the_pod_scheduled() {
    let t = TestServer::new().await;
    let created = t.create(PODS, &pod("web")).await;
    let (code, status) = t
        .post(&format!("{PODS}/web/binding"), &binding("web", "node-1"))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{status:#}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    assert_eq!(status["code"], 201);

    let (code, bound) = t.get(&format!("{PODS}/web")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    assert!(rv(&bound) > rv(&created));
    assert_eq!(
        bound["metadata"]["generation"], created["metadata"]["generation"],
        "a binding does not bump the generation, as in Kubernetes"
    );
    let conditions = bound["status"]["conditions"]
        .as_array()
        .expect("conditions");
    let scheduled = conditions
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .expect("a PodScheduled condition");
    assert_eq!(scheduled["status"], "True");
    assert!(scheduled["lastTransitionTime"].is_string(), "{scheduled:#}");
}

#[tokio::test]
async fn binding_an_already_bound_pod_is_a_conflict_that_changes_nothing() {
    let t = TestServer::new().await;
    t.create(PODS, &pod("web")).await;
    let path = format!("{PODS}/web/binding");
    let (code, _) = t.post(&path, &binding("web", "node-1")).await;
    assert_eq!(code, StatusCode::CREATED);
    let status = t
        .expect_rejected(
            Method::POST,
            &path,
            Some(JSON),
            binding("web", "node-2").to_string(),
            StatusCode::CONFLICT,
            "Conflict",
            "pod web is already assigned to node \"node-1\"",
        )
        .await;
    assert_eq!(status["details"]["kind"], "pods/binding");
    let (_, still) = t.get(&format!("{PODS}/web")).await;
    assert_eq!(still["spec"]["nodeName"], "node-1");
}

#[tokio::test]
async fn binding_a_missing_pod_is_not_found() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        &format!("{PODS}/ghost/binding"),
        Some(JSON),
        binding("ghost", "node-1").to_string(),
        StatusCode::NOT_FOUND,
        "NotFound",
        "pods \"ghost\" not found",
    )
    .await;
}

#[tokio::test]
async fn a_binding_with_a_stale_uid_is_a_conflict() {
    let t = TestServer::new().await;
    t.create(PODS, &pod("web")).await;
    let mut body = binding("web", "node-1");
    body["metadata"]["uid"] = json!("not-the-pods-uid");
    t.expect_rejected(
        Method::POST,
        &format!("{PODS}/web/binding"),
        Some(JSON),
        body.to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "Precondition failed: UID in precondition: not-the-pods-uid",
    )
    .await;
}

#[tokio::test]
async fn malformed_bindings_are_rejected_without_writing() {
    let t = TestServer::new().await;
    t.create(PODS, &pod("web")).await;
    let path = format!("{PODS}/web/binding");
    // The name in the body must be the pod's.
    t.expect_rejected(
        Method::POST,
        &path,
        Some(JSON),
        binding("other", "node-1").to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "name in URL does not match name in Binding object",
    )
    .await;
    // A target other than a Node is not supported, and a target needs a name.
    let mut to_a_service = binding("web", "node-1");
    to_a_service["target"]["kind"] = json!("Service");
    t.expect_rejected(
        Method::POST,
        &path,
        Some(JSON),
        to_a_service.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "target.kind",
    )
    .await;
    t.expect_rejected(
        Method::POST,
        &path,
        Some(JSON),
        binding("web", "").to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "target.name: Required value",
    )
    .await;
    // Only a Binding may be posted here.
    t.expect_rejected(
        Method::POST,
        &path,
        Some(JSON),
        pod("web").to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "v1 Binding",
    )
    .await;
    // Bindings are created, never read or replaced.
    t.expect_rejected(
        Method::GET,
        &path,
        None,
        "",
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "binding",
    )
    .await;
    let (_, unbound) = t.get(&format!("{PODS}/web")).await;
    assert!(unbound["spec"].get("nodeName").is_none(), "{unbound:#}");
}

#[tokio::test]
async fn a_dry_run_binding_writes_nothing() {
    let t = TestServer::new().await;
    t.create(PODS, &pod("web")).await;
    let before = t.revision();
    let (code, _) = t
        .post(
            &format!("{PODS}/web/binding?dryRun=All"),
            &binding("web", "node-1"),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(t.revision(), before);
    let (_, unbound) = t.get(&format!("{PODS}/web")).await;
    assert!(unbound["spec"].get("nodeName").is_none(), "{unbound:#}");
}

#[tokio::test]
async fn binding_is_a_subresource_of_pods_only() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        "/api/v1/namespaces/default/configmaps/a/binding",
        Some(JSON),
        binding("a", "node-1").to_string(),
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps/binding",
    )
    .await;
}

#[tokio::test]
async fn discovery_lists_pods_binding_with_the_create_verb() {
    let t = TestServer::new().await;
    let (code, core) = t.get("/api/v1").await;
    assert_eq!(code, StatusCode::OK);
    let entry = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods/binding")
        .unwrap_or_else(|| panic!("no pods/binding in {core:#}"));
    assert_eq!(entry["kind"], "Binding");
    assert_eq!(entry["namespaced"], true);
    assert_eq!(entry["verbs"], json!(["create"]));
}
