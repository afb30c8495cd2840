//! Bad requests: each is answered with the Kubernetes code, a `kind: Status` body with the
//! Kubernetes reason and a message naming the problem, and nothing is written.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{CONFIGMAPS, JSON, MERGE, TestServer, assert_status, causes, configmap, rv};

#[tokio::test]
async fn malformed_json_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x""#,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "JSON",
    )
    .await;
}

#[tokio::test]
async fn malformed_yaml_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some("application/yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n  data: {\n",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "YAML",
    )
    .await;
}

#[tokio::test]
async fn a_well_formed_yaml_body_creates_the_object() {
    let t = TestServer::new().await;
    let (code, created) = t
        .call(
            Method::POST,
            CONFIGMAPS,
            Some("application/yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  key: value\n",
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["data"]["key"], "value");
}

#[tokio::test]
async fn an_unknown_resource_path_is_not_found_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}});
    t.expect_rejected(
        Method::POST,
        "/api/v1/namespaces/default/widgets",
        Some(JSON),
        body.to_string(),
        StatusCode::NOT_FOUND,
        "NotFound",
        "widgets",
    )
    .await;
    t.expect_rejected(
        Method::GET,
        "/api/v1/namespaces/default/widgets",
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "widgets",
    )
    .await;
}

#[tokio::test]
async fn a_missing_name_is_invalid_with_a_metadata_name_cause_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"k": "v"}});
    let status = t
        .expect_rejected(
            Method::POST,
            CONFIGMAPS,
            Some(JSON),
            body.to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name",
        )
        .await;
    assert_eq!(status["details"]["kind"], "ConfigMap");
    let causes = causes(&status);
    assert!(
        causes.iter().any(|(field, _)| field == "metadata.name"),
        "{causes:?}"
    );
}

#[tokio::test]
async fn a_body_namespace_that_differs_from_the_path_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    let mut body = configmap("x", json!({}), json!({}));
    body["metadata"]["namespace"] = json!("kube-system");
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "does not match the namespace",
    )
    .await;
    let (code, _) = t.get("/api/v1/namespaces/kube-system/configmaps/x").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_changes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/guarded");
    let original = t
        .create_configmap("guarded", json!({}), json!({"owner": "first"}))
        .await;
    let (code, newer) = t
        .patch(&path, MERGE, &json!({"data": {"owner": "second"}}))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(rv(&newer) > rv(&original));

    let mut stale = original.clone();
    stale["data"]["owner"] = json!("third");
    let status = t
        .expect_rejected(
            Method::PUT,
            &path,
            Some(JSON),
            stale.to_string(),
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        )
        .await;
    assert_eq!(status["details"]["name"], "guarded");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("configmaps \"guarded\"")
    );

    // The same precondition in a merge patch.
    t.expect_rejected(
        Method::PATCH,
        &path,
        Some(MERGE),
        json!({"metadata": {"resourceVersion": original["metadata"]["resourceVersion"]},
               "data": {"owner": "fourth"}})
        .to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "the object has been modified",
    )
    .await;

    let (_, current) = t.get(&path).await;
    assert_eq!(current, newer);
}

fn oversized_configmap() -> String {
    let big = "x".repeat(wharf_apiserver::http::MAX_BODY_BYTES);
    configmap("huge", json!({}), json!({"blob": big})).to_string()
}

#[tokio::test]
async fn a_body_over_three_mebibytes_is_too_large_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = oversized_configmap();
    assert!(body.len() > 3 * 1024 * 1024);
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        "limit",
    )
    .await;
}

#[tokio::test]
async fn a_declared_content_length_over_the_limit_is_refused_before_reading() {
    let t = TestServer::new().await;
    let body = oversized_configmap();
    let length = body.len().to_string();
    let before = t.revision();
    let reply = t
        .request(
            Method::POST,
            CONFIGMAPS,
            Some(JSON),
            &[("content-length", length.as_str())],
            body,
        )
        .await;
    assert_eq!(reply.code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_status(
        &reply.body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        "limit",
    );
    assert_eq!(t.revision(), before);
}

#[tokio::test]
async fn an_invalid_label_value_is_invalid_naming_metadata_labels_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = configmap("labelled", json!({"app": "-not a label-"}), json!({}));
    let status = t
        .expect_rejected(
            Method::POST,
            CONFIGMAPS,
            Some(JSON),
            body.to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.labels",
        )
        .await;
    let causes = causes(&status);
    assert!(
        causes
            .iter()
            .any(|(field, message)| field.starts_with("metadata.labels")
                && message.contains("-not a label-")),
        "{causes:?}"
    );
}

#[tokio::test]
async fn a_body_kind_that_does_not_match_the_path_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Secret",
    )
    .await;
    let body = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "s"}});
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "apps/v1",
    )
    .await;
}

#[tokio::test]
async fn creating_in_a_namespace_that_does_not_exist_is_not_found_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = configmap("orphan", json!({}), json!({}));
    let status = t
        .expect_rejected(
            Method::POST,
            "/api/v1/namespaces/no-such-namespace/configmaps",
            Some(JSON),
            body.to_string(),
            StatusCode::NOT_FOUND,
            "NotFound",
            "namespaces \"no-such-namespace\" not found",
        )
        .await;
    assert_eq!(status["details"]["kind"], "namespaces");
}

#[tokio::test]
async fn a_json_array_body_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    let body = json!([configmap("a", json!({}), json!({}))]);
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "object",
    )
    .await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_a_bad_request_naming_the_field_and_writes_nothing() {
    let t = TestServer::new().await;
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typed"}, "data": 5});
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "data",
    )
    .await;
    // The same on update.
    t.create_configmap("typed", json!({}), json!({"k": "v"}))
        .await;
    t.expect_rejected(
        Method::PUT,
        &format!("{CONFIGMAPS}/typed"),
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "data",
    )
    .await;
    t.expect_rejected(
        Method::PATCH,
        &format!("{CONFIGMAPS}/typed"),
        Some(MERGE),
        json!({"data": 5}).to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "data",
    )
    .await;
}

#[tokio::test]
async fn strict_field_validation_rejects_an_unknown_field_and_writes_nothing() {
    let t = TestServer::new().await;
    let mut body = configmap("strict", json!({}), json!({}));
    body["bogus"] = json!(1);
    body["metadata"]["colour"] = json!("red");
    let status = t
        .expect_rejected(
            Method::POST,
            &format!("{CONFIGMAPS}?fieldValidation=Strict"),
            Some(JSON),
            body.to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unknown field \"bogus\"",
        )
        .await;
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metadata.colour"),
        "{status:#}"
    );
}

#[tokio::test]
async fn an_unknown_field_is_dropped_with_a_warning_by_default() {
    let t = TestServer::new().await;
    let mut body = configmap("lenient", json!({}), json!({"k": "v"}));
    body["bogus"] = json!(1);
    let reply = t
        .request(Method::POST, CONFIGMAPS, Some(JSON), &[], body.to_string())
        .await;
    assert_eq!(reply.code, StatusCode::CREATED, "{:#}", reply.body);
    assert!(reply.body.get("bogus").is_none());
    let warnings: Vec<String> = reply
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("299 ") && w.contains("unknown field") && w.contains("bogus")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_unsupported_patch_content_type_is_unsupported_media_type_and_writes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/patched");
    let created = t
        .create_configmap("patched", json!({}), json!({"k": "v"}))
        .await;
    for content_type in ["text/plain", "application/json", "application/xml"] {
        t.expect_rejected(
            Method::PATCH,
            &path,
            Some(content_type),
            json!({"data": {"k": "w"}}).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "application/merge-patch+json",
        )
        .await;
    }
    let (_, current) = t.get(&path).await;
    assert_eq!(current, created);
}

#[tokio::test]
async fn an_unsupported_create_content_type_is_unsupported_media_type_and_writes_nothing() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        CONFIGMAPS,
        Some("text/plain"),
        configmap("plain", json!({}), json!({})).to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_patch_body_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    t.create_configmap("p", json!({}), json!({"k": "v"})).await;
    t.expect_rejected(
        Method::PATCH,
        &format!("{CONFIGMAPS}/p"),
        Some(MERGE),
        "{\"data\": ",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "patch",
    )
    .await;
}

#[tokio::test]
async fn a_put_whose_body_names_another_object_is_a_bad_request_and_writes_nothing() {
    let t = TestServer::new().await;
    t.create_configmap("one", json!({}), json!({"k": "v"}))
        .await;
    let body: Value = configmap("two", json!({}), json!({"k": "w"}));
    t.expect_rejected(
        Method::PUT,
        &format!("{CONFIGMAPS}/one"),
        Some(JSON),
        body.to_string(),
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "does not match the name",
    )
    .await;
}

#[tokio::test]
async fn an_unsupported_verb_on_a_collection_is_method_not_allowed() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::PUT,
        CONFIGMAPS,
        Some(JSON),
        configmap("x", json!({}), json!({})).to_string(),
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "PUT",
    )
    .await;
}
