//! A uid in a write's body is a precondition, for patches as for updates: the garbage
//! collector and the workload controllers put the target's uid in every patch so that a plan
//! made about one object can never land on a newer object of the same name.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{CONFIGMAPS, DEPLOYMENTS, MERGE, STRATEGIC, TestServer, deployment};

#[tokio::test]
async fn a_patch_naming_another_uid_is_a_conflict_and_writes_nothing() {
    let t = TestServer::new().await;
    t.create_configmap("cm", json!({}), json!({"k": "v"})).await;
    for content_type in [MERGE, STRATEGIC] {
        t.expect_rejected(
            Method::PATCH,
            &format!("{CONFIGMAPS}/cm"),
            Some(content_type),
            json!({"metadata": {"uid": "an-earlier-object"}, "data": {"k": "changed"}}).to_string(),
            StatusCode::CONFLICT,
            "Conflict",
            "Precondition failed: UID in precondition: an-earlier-object",
        )
        .await;
    }
    let (_, unchanged) = t.get(&format!("{CONFIGMAPS}/cm")).await;
    assert_eq!(unchanged["data"]["k"], "v");
}

#[tokio::test]
async fn a_patch_naming_the_objects_own_uid_applies() {
    let t = TestServer::new().await;
    let created = t.create_configmap("cm", json!({}), json!({"k": "v"})).await;
    let (code, patched) = t
        .patch(
            &format!("{CONFIGMAPS}/cm"),
            MERGE,
            &json!({"metadata": {"uid": created["metadata"]["uid"]}, "data": {"k": "changed"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(patched["data"]["k"], "changed");
}

#[tokio::test]
async fn a_scale_naming_another_uid_is_a_conflict() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;
    t.expect_rejected(
        Method::PATCH,
        &format!("{DEPLOYMENTS}/web/scale"),
        Some(MERGE),
        json!({"metadata": {"uid": "an-earlier-object"}, "spec": {"replicas": 5}}).to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "UID in precondition",
    )
    .await;
}
