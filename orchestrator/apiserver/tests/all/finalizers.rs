//! Deletion: finalizers hold an object with a deletionTimestamp until they are removed,
//! propagation policies add their finalizers, and delete preconditions are honoured.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{CONFIGMAPS, JSON, MERGE, TestServer, assert_status, causes, rv};

#[tokio::test]
async fn a_finalizer_holds_a_deleted_object_until_it_is_removed() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/held");
    let mut object = crate::support::configmap("held", json!({}), json!({"k": "v"}));
    object["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let created = t.create(CONFIGMAPS, &object).await;
    assert!(created["metadata"].get("deletionTimestamp").is_none());

    // Delete: the object stays, marked for deletion.
    let (code, deleting) = t.delete(&path, None).await;
    assert_eq!(code, StatusCode::OK, "{deleting:#}");
    assert_eq!(
        deleting["kind"], "ConfigMap",
        "a held delete returns the object"
    );
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting:#}"
    );
    assert!(rv(&deleting) > rv(&created));
    let (code, still) = t.get(&path).await;
    assert_eq!(code, StatusCode::OK);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(still["metadata"]["finalizers"], json!(["example.com/hold"]));
    assert_eq!(still["metadata"]["uid"], created["metadata"]["uid"]);

    // Deleting again changes nothing.
    let before = t.revision();
    let (code, again) = t.delete(&path, None).await;
    assert_eq!(code, StatusCode::OK, "{again:#}");
    assert_eq!(
        t.revision(),
        before,
        "a repeated delete of a terminating object writes nothing"
    );

    // No new finalizer may be added while it is being deleted.
    let status = t
        .expect_rejected(
            Method::PATCH,
            &path,
            Some(MERGE),
            json!({"metadata": {"finalizers": ["example.com/hold", "example.com/late"]}})
                .to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "example.com/late",
        )
        .await;
    let causes = causes(&status);
    assert!(
        causes
            .iter()
            .any(|(field, _)| field == "metadata.finalizers"),
        "{causes:?}"
    );
    let (_, unchanged) = t.get(&path).await;
    assert_eq!(unchanged, still);

    // Removing the last finalizer completes the deletion.
    let (code, _) = t
        .patch(&path, MERGE, &json!({"metadata": {"finalizers": null}}))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, gone) = t.get(&path).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{gone:#}");
    assert_status(
        &gone,
        StatusCode::NOT_FOUND,
        "NotFound",
        "\"held\" not found",
    );
}

#[tokio::test]
async fn foreground_propagation_in_the_delete_body_adds_the_foreground_deletion_finalizer() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/parent");
    t.create_configmap("parent", json!({}), json!({})).await;
    let options =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"});
    let (code, deleting) = t.delete(&path, Some(&options)).await;
    assert_eq!(code, StatusCode::OK, "{deleting:#}");
    assert_eq!(
        deleting["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = t.get(&path).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        still["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(still["metadata"]["deletionTimestamp"].is_string());
}

#[tokio::test]
async fn orphan_propagation_in_the_query_adds_the_orphan_finalizer() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/orphaner");
    t.create_configmap("orphaner", json!({}), json!({})).await;
    let (code, deleting) = t
        .delete(&format!("{path}?propagationPolicy=Orphan"), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{deleting:#}");
    assert_eq!(deleting["metadata"]["finalizers"], json!(["orphan"]));
}

#[tokio::test]
async fn background_propagation_deletes_at_once() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/bg");
    t.create_configmap("bg", json!({}), json!({})).await;
    let (code, status) = t
        .delete(&path, Some(&json!({"propagationPolicy": "Background"})))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["status"], "Success");
    assert_eq!(t.get(&path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_propagation_policy_is_a_bad_request_and_deletes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/kept");
    t.create_configmap("kept", json!({}), json!({})).await;
    t.expect_rejected(
        Method::DELETE,
        &path,
        Some(JSON),
        json!({"propagationPolicy": "Sideways"}).to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Sideways",
    )
    .await;
    assert_eq!(t.get(&path).await.0, StatusCode::OK);
}

#[tokio::test]
async fn delete_preconditions_that_do_not_hold_are_a_conflict_and_delete_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/precond");
    let created = t.create_configmap("precond", json!({}), json!({})).await;
    t.expect_rejected(
        Method::DELETE,
        &path,
        Some(JSON),
        json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}).to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "Precondition failed: UID",
    )
    .await;
    t.expect_rejected(
        Method::DELETE,
        &path,
        Some(JSON),
        json!({"preconditions": {"resourceVersion": "1"}}).to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "Precondition failed: ResourceVersion",
    )
    .await;
    assert_eq!(t.get(&path).await.0, StatusCode::OK);
    // Preconditions that hold let the delete through.
    let (code, _) = t
        .delete(
            &path,
            Some(&json!({"preconditions": {"uid": created["metadata"]["uid"],
                                           "resourceVersion": created["metadata"]["resourceVersion"]}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(t.get(&path).await.0, StatusCode::NOT_FOUND);
}
