//! The ConfigMap lifecycle: create, get, list, update, patch and delete, and the metadata the
//! server owns along the way.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{CONFIGMAPS, MERGE, TestServer, assert_status, names, rv};

#[tokio::test]
async fn a_configmap_round_trips_through_create_get_list_update_patch_and_delete() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/settings");

    // Create.
    let created = t
        .create_configmap("settings", json!({"app": "web"}), json!({"colour": "blue"}))
        .await;
    assert_eq!(created["kind"], "ConfigMap");
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["data"]["colour"], "blue");
    let uid = created["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned();
    assert!(!uid.is_empty());
    let created_at = created["metadata"]["creationTimestamp"]
        .as_str()
        .expect("a creationTimestamp")
        .to_owned();
    let rv_created = rv(&created);
    assert_eq!(rv_created, t.revision(), "the create is the latest write");

    // Get returns what was stored.
    let (code, got) = t.get(&path).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);

    // List.
    let (code, list) = t.get(CONFIGMAPS).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["apiVersion"], "v1");
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list resourceVersion")
        .parse()
        .expect("numeric");
    assert!(list_rv >= rv_created);
    assert_eq!(names(&list), ["settings"]);
    assert_eq!(list["items"][0], created);

    // PUT update, with the current resourceVersion as a precondition.
    let mut replacement = got.clone();
    replacement["data"] = json!({"colour": "green", "size": "large"});
    let (code, updated) = t.put(&path, &replacement).await;
    assert_eq!(code, StatusCode::OK, "{updated:#}");
    assert_eq!(updated["data"], json!({"colour": "green", "size": "large"}));
    let rv_updated = rv(&updated);
    assert!(rv_updated > rv_created);
    assert_eq!(updated["metadata"]["uid"], uid.as_str());
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created_at.as_str()
    );

    // A PUT whose body leaves out uid and creationTimestamp keeps them too.
    let bare = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web"}},
        "data": {"colour": "red"}
    });
    let (code, replaced) = t.put(&path, &bare).await;
    assert_eq!(code, StatusCode::OK, "{replaced:#}");
    let rv_replaced = rv(&replaced);
    assert!(rv_replaced > rv_updated);
    assert_eq!(replaced["metadata"]["uid"], uid.as_str());
    assert_eq!(
        replaced["metadata"]["creationTimestamp"],
        created_at.as_str()
    );
    assert_eq!(replaced["data"], json!({"colour": "red"}));

    // Merge patch.
    let (code, patched) = t
        .patch(
            &path,
            MERGE,
            &json!({"data": {"colour": null, "shape": "round"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(patched["data"], json!({"shape": "round"}));
    assert!(rv(&patched) > rv_replaced);
    assert_eq!(patched["metadata"]["uid"], uid.as_str());
    assert_eq!(
        patched["metadata"]["creationTimestamp"],
        created_at.as_str()
    );
    assert_eq!(patched["metadata"]["labels"], json!({"app": "web"}));
    let (_, reread) = t.get(&path).await;
    assert_eq!(reread, patched);

    // Delete.
    let before_delete = t.revision();
    let (code, status) = t.delete(&path, None).await;
    assert_eq!(code, StatusCode::OK, "{status:#}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    assert_eq!(status["details"]["name"], "settings");
    assert_eq!(status["details"]["uid"], uid.as_str());
    assert!(t.revision() > before_delete, "the delete is a write");

    let (code, missing) = t.get(&path).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(
        &missing,
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps \"settings\" not found",
    );
    let (_, list) = t.get(CONFIGMAPS).await;
    assert!(names(&list).is_empty());
}

#[tokio::test]
async fn an_update_that_changes_nothing_does_not_write() {
    let t = TestServer::new().await;
    let created = t
        .create_configmap("same", json!({}), json!({"k": "v"}))
        .await;
    let before = t.revision();
    let (code, unchanged) = t.put(&format!("{CONFIGMAPS}/same"), &created).await;
    assert_eq!(code, StatusCode::OK, "{unchanged:#}");
    assert_eq!(rv(&unchanged), rv(&created));
    let (code, _) = t
        .patch(
            &format!("{CONFIGMAPS}/same"),
            MERGE,
            &json!({"data": {"k": "v"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        t.revision(),
        before,
        "a no-op update must not create a revision"
    );
}

#[tokio::test]
async fn creating_an_object_that_exists_is_already_exists_and_changes_nothing() {
    let t = TestServer::new().await;
    let object = crate::support::configmap("dup", json!({}), json!({"k": "v"}));
    t.create(CONFIGMAPS, &object).await;
    t.expect_rejected(
        axum::http::Method::POST,
        CONFIGMAPS,
        Some(crate::support::JSON),
        object.to_string(),
        StatusCode::CONFLICT,
        "AlreadyExists",
        "configmaps \"dup\" already exists",
    )
    .await;
}

#[tokio::test]
async fn updating_or_patching_an_object_that_does_not_exist_is_not_found() {
    let t = TestServer::new().await;
    let object = crate::support::configmap("ghost", json!({}), json!({"k": "v"}));
    t.expect_rejected(
        axum::http::Method::PUT,
        &format!("{CONFIGMAPS}/ghost"),
        Some(crate::support::JSON),
        object.to_string(),
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps \"ghost\" not found",
    )
    .await;
    t.expect_rejected(
        axum::http::Method::PATCH,
        &format!("{CONFIGMAPS}/ghost"),
        Some(MERGE),
        json!({"data": {"k": "w"}}).to_string(),
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps \"ghost\" not found",
    )
    .await;
    t.expect_rejected(
        axum::http::Method::DELETE,
        &format!("{CONFIGMAPS}/ghost"),
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps \"ghost\" not found",
    )
    .await;
}

/// Kubernetes takes the uid in an update body as a precondition (`Preconditions{UID}` of the
/// default UpdatedObjectInfo): a body from an earlier incarnation of the object, deleted and
/// re-created under the same name, must not overwrite the new one.
#[tokio::test]
async fn a_put_carrying_the_uid_of_an_earlier_incarnation_is_a_conflict_and_changes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/reborn");
    let first = t
        .create_configmap("reborn", json!({}), json!({"life": "first"}))
        .await;
    assert_eq!(t.delete(&path, None).await.0, StatusCode::OK);
    let second = t
        .create_configmap("reborn", json!({}), json!({"life": "second"}))
        .await;
    assert_ne!(first["metadata"]["uid"], second["metadata"]["uid"]);

    let mut old_body = first.clone();
    old_body["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    old_body["data"]["life"] = json!("overwritten");
    t.expect_rejected(
        axum::http::Method::PUT,
        &path,
        Some(crate::support::JSON),
        old_body.to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "UID",
    )
    .await;
    let (_, current) = t.get(&path).await;
    assert_eq!(current, second);
}

#[tokio::test]
async fn creating_in_a_terminating_namespace_is_forbidden_and_writes_nothing() {
    let t = TestServer::new().await;
    t.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let (code, terminating) = t.delete("/api/v1/namespaces/team", None).await;
    assert_eq!(code, StatusCode::OK, "{terminating:#}");
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    t.expect_rejected(
        axum::http::Method::POST,
        "/api/v1/namespaces/team/configmaps",
        Some(crate::support::JSON),
        crate::support::configmap("late", json!({}), json!({})).to_string(),
        StatusCode::FORBIDDEN,
        "Forbidden",
        "being terminated",
    )
    .await;
}

#[tokio::test]
async fn delete_collection_removes_only_the_selected_objects() {
    let t = TestServer::new().await;
    for (name, labels) in [
        ("a1", json!({"app": "a"})),
        ("a2", json!({"app": "a"})),
        ("b1", json!({"app": "b"})),
    ] {
        t.create_configmap(name, labels, json!({})).await;
    }
    let (code, deleted) = t
        .delete(&format!("{CONFIGMAPS}?labelSelector=app%3Da"), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{deleted:#}");
    assert_eq!(deleted["kind"], "ConfigMapList");
    assert_eq!(names(&deleted), ["a1", "a2"]);
    let (_, left) = t.get(CONFIGMAPS).await;
    assert_eq!(names(&left), ["b1"]);
}
