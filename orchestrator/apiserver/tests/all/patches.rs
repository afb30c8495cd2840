//! Patch types: strategic merge (lists merged by key), JSON patch (RFC 6902, including a
//! failing `test` op) and the server-side apply approximation.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{DEPLOYMENTS, JSON_PATCH, STRATEGIC, TestServer, deployment, rv};

#[tokio::test]
async fn a_strategic_merge_patch_merges_containers_by_name() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(
            DEPLOYMENTS,
            &deployment("web", 1, &[("app", "app:1"), ("sidecar", "side:1")]),
        )
        .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:2"}
    ]}}}});
    let (code, patched) = t.patch(&path, STRATEGIC, &patch).await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    let containers = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 2, "{containers:#?}");
    assert_eq!(containers[0]["name"], "app");
    assert_eq!(containers[0]["image"], "app:2");
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(containers[1]["image"], "side:1");
    assert_eq!(
        containers[0]["imagePullPolicy"], "IfNotPresent",
        "defaults are kept"
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    assert!(rv(&patched) > rv(&created));

    // `$patch: delete` removes one element by name.
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}
    ]}}}});
    let (code, patched) = t.patch(&path, STRATEGIC, &patch).await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    let containers = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "app");
}

#[tokio::test]
async fn a_json_patch_applies_its_operations_in_order() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(DEPLOYMENTS, &deployment("web", 1, &[("app", "app:1")]))
        .await;
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "app:3"}
    ]);
    let (code, patched) = t.patch(&path, JSON_PATCH, &patch).await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(patched["spec"]["replicas"], 4);
    assert_eq!(patched["metadata"]["labels"]["tier"], "web");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:3"
    );
    let (_, current) = t.get(&path).await;
    assert_eq!(current, patched);
}

#[tokio::test]
async fn a_json_patch_whose_test_op_fails_is_rejected_and_writes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(DEPLOYMENTS, &deployment("web", 1, &[("app", "app:1")]))
        .await;
    let patch = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 8},
        {"op": "test", "path": "/spec/replicas", "value": 99}
    ]);
    // Kubernetes answers a JSON patch that cannot be applied with 422.
    t.expect_rejected(
        Method::PATCH,
        &path,
        Some(JSON_PATCH),
        patch.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "JSON patch",
    )
    .await;
    let (_, current) = t.get(&path).await;
    assert_eq!(current, created);
}

#[tokio::test]
async fn a_json_patch_that_is_not_a_list_of_operations_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(DEPLOYMENTS, &deployment("web", 1, &[("app", "app:1")]))
        .await;
    t.expect_rejected(
        Method::PATCH,
        &path,
        Some(JSON_PATCH),
        json!({"spec": {"replicas": 3}}).to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "JSON patch",
    )
    .await;
}

#[tokio::test]
async fn server_side_apply_creates_an_absent_object_and_merges_into_an_existing_one() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/applied?fieldManager=test");
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: applied\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: applied}\n  template:\n    metadata:\n      labels: {app: applied}\n    spec:\n      containers:\n      - name: app\n        image: app:1\n";
    let (code, created) = t
        .call(
            Method::PATCH,
            &path,
            Some("application/apply-patch+yaml"),
            manifest,
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["metadata"]["generation"], 1);
    let (code, updated) = t
        .call(
            Method::PATCH,
            &path,
            Some("application/apply-patch+yaml"),
            manifest.replace("replicas: 2", "replicas: 6"),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{updated:#}");
    assert_eq!(updated["spec"]["replicas"], 6);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(updated["metadata"]["generation"], 2);
}
