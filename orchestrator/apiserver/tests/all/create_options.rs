//! Create options: `dryRun=All` runs every check and writes nothing; `generateName` makes a
//! unique name from a prefix.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{CONFIGMAPS, DEPLOYMENTS, JSON, MERGE, TestServer, configmap, deployment};

#[tokio::test]
async fn dry_run_create_returns_the_object_and_writes_nothing() {
    let t = TestServer::new().await;
    let before = t.revision();
    let (code, object) = t
        .post(
            &format!("{DEPLOYMENTS}?dryRun=All"),
            &deployment("dry", 3, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{object:#}");
    assert_eq!(object["metadata"]["name"], "dry");
    assert_eq!(object["spec"]["replicas"], 3);
    assert_eq!(
        object["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults are applied"
    );
    assert_eq!(t.revision(), before, "a dry run must not write");
    assert_eq!(
        t.get(&format!("{DEPLOYMENTS}/dry")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn dry_run_still_validates() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::POST,
        &format!("{CONFIGMAPS}?dryRun=All"),
        Some(JSON),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}).to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "metadata.name",
    )
    .await;
}

#[tokio::test]
async fn dry_run_update_patch_and_delete_write_nothing() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/real");
    let created = t
        .create_configmap("real", json!({}), json!({"k": "v"}))
        .await;
    let before = t.revision();

    let mut changed = created.clone();
    changed["data"]["k"] = json!("put");
    let (code, put) = t.put(&format!("{path}?dryRun=All"), &changed).await;
    assert_eq!(code, StatusCode::OK, "{put:#}");
    assert_eq!(put["data"]["k"], "put");

    let (code, patched) = t
        .patch(
            &format!("{path}?dryRun=All"),
            MERGE,
            &json!({"data": {"k": "patched"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(patched["data"]["k"], "patched");

    let (code, _) = t.delete(&format!("{path}?dryRun=All"), None).await;
    assert_eq!(code, StatusCode::OK);

    assert_eq!(t.revision(), before, "dry runs must not write");
    let (_, current) = t.get(&path).await;
    assert_eq!(current, created);
}

#[tokio::test]
async fn generate_name_appends_five_random_characters_to_the_prefix() {
    let t = TestServer::new().await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "web-"},
            "data": {"k": "v"},
        });
        let created = t.create(CONFIGMAPS, &object).await;
        let name = created["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        assert!(name.starts_with("web-"), "{name}");
        let suffix = &name["web-".len()..];
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        assert_eq!(created["metadata"]["generateName"], "web-");
        assert_eq!(
            t.get(&format!("{CONFIGMAPS}/{name}")).await.0,
            StatusCode::OK
        );
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "generated names are unique");

    // A name given alongside generateName wins.
    let mut object = configmap("explicit", json!({}), json!({}));
    object["metadata"]["generateName"] = json!("web-");
    let created = t.create(CONFIGMAPS, &object).await;
    assert_eq!(created["metadata"]["name"], "explicit");
}
