//! Server-side apply and `metadata.managedFields`: every write records its manager (from
//! `fieldManager`, else the User-Agent), applies merge and own exactly what they applied,
//! conflicts are 409s in Kubernetes' words, `force` takes fields over, a dry run writes nothing.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{
    CONFIGMAPS, DEPLOYMENTS, MERGE, TestServer, assert_status, configmap, deployment,
};

const APPLY: &str = "application/apply-patch+yaml";

/// `(manager, operation, subresource)` of each managedFields entry, in order.
fn managers(object: &Value) -> Vec<(String, String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_owned(),
                        e["operation"].as_str().unwrap_or("").to_owned(),
                        e["subresource"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry(manager: &str, operation: &str, subresource: &str) -> (String, String, String) {
    (manager.into(), operation.into(), subresource.into())
}

/// The fieldsV1 of `manager`'s entry with `operation`.
fn fields_of(object: &Value, manager: &str, operation: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["manager"] == manager && e["operation"] == operation)
        })
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| panic!("no {operation} entry of {manager} in {object:#}"))
}

/// A ConfigMap `c` with `data` and no labels.
fn plain_configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

impl TestServer {
    /// Applies `config` to `path` as `manager` (with `extra` query parameters).
    async fn apply(
        &self,
        path: &str,
        manager: &str,
        extra: &str,
        config: &Value,
    ) -> (StatusCode, Value) {
        self.call(
            Method::PATCH,
            &format!("{path}?fieldManager={manager}{extra}"),
            Some(APPLY),
            config.to_string(),
        )
        .await
    }
}

#[tokio::test]
async fn a_create_records_its_manager_with_every_field_it_set() {
    let t = TestServer::new().await;
    let created = t
        .create(
            &format!("{CONFIGMAPS}?fieldManager=creator"),
            &configmap("c", json!({"app": "x"}), json!({"a": "1"})),
        )
        .await;
    let entries = created["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{created:#}");
    let entry = &entries[0];
    assert_eq!(entry["manager"], "creator");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["apiVersion"], "v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert!(entry["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(entry.get("subresource").is_none());
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
    // It is stored, not only returned.
    let (_, read) = t.get(&format!("{CONFIGMAPS}/c")).await;
    assert_eq!(
        read["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );
}

#[tokio::test]
async fn without_field_manager_the_user_agent_names_the_manager() {
    let t = TestServer::new().await;
    let reply = t
        .request(
            Method::POST,
            CONFIGMAPS,
            Some("application/json"),
            &[(
                header::USER_AGENT.as_str(),
                "kubectl/v1.37.0 (linux/amd64) kubernetes/0000000",
            )],
            Body::from(configmap("c", json!({}), json!({"a": "1"})).to_string()),
        )
        .await;
    assert_eq!(reply.code, StatusCode::CREATED, "{:#}", reply.body);
    assert_eq!(managers(&reply.body), [entry("kubectl", "Update", "")]);
}

#[tokio::test]
async fn an_update_takes_over_the_fields_it_changes() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(
        &format!("{DEPLOYMENTS}?fieldManager=creator"),
        &deployment("web", 1, &[("app", "app:1")]),
    )
    .await;
    let (code, patched) = t
        .patch(
            &format!("{path}?fieldManager=editor"),
            MERGE,
            &json!({"spec": {"replicas": 4}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(
        fields_of(&patched, "editor", "Update"),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let creator = fields_of(&patched, "creator", "Update");
    assert!(creator["f:spec"].get("f:replicas").is_none(), "{creator:#}");
    assert!(creator["f:spec"]["f:template"].is_object(), "{creator:#}");
    // The defaults filled in at create belong to the creator, as in Kubernetes.
    assert!(
        creator["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
            .get("f:imagePullPolicy")
            .is_some(),
        "{creator:#}"
    );
    // A write that changes nothing leaves the entries (and their times) alone.
    let (_, again) = t
        .patch(
            &format!("{path}?fieldManager=editor"),
            MERGE,
            &json!({"spec": {"replicas": 4}}),
        )
        .await;
    assert_eq!(
        again["metadata"]["managedFields"],
        patched["metadata"]["managedFields"]
    );
    assert_eq!(
        again["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn apply_creates_then_updates_and_owns_exactly_what_it_applied() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let config = deployment("web", 2, &[("app", "app:1")]);
    let (code, created) = t.apply(&path, "kubectl", "&force=false", &config).await;
    assert_eq!(code, StatusCode::CREATED, "{created:#}");
    assert_eq!(managers(&created), [entry("kubectl", "Apply", "")]);
    let applied = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                    ".": {}, "f:image": {}, "f:name": {}
                }}}
            }
        }
    });
    assert_eq!(fields_of(&created, "kubectl", "Apply"), applied);

    let mut changed = config.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let (code, updated) = t.apply(&path, "kubectl", "", &changed).await;
    assert_eq!(code, StatusCode::OK, "{updated:#}");
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:2"
    );
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(managers(&updated), [entry("kubectl", "Apply", "")]);
    assert_eq!(fields_of(&updated, "kubectl", "Apply"), applied);

    // The same configuration again writes nothing.
    let before = t.revision();
    let (code, same) = t.apply(&path, "kubectl", "", &changed).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(t.revision(), before);
    assert_eq!(
        same["metadata"]["managedFields"],
        updated["metadata"]["managedFields"]
    );
}

#[tokio::test]
async fn applying_a_different_value_to_another_managers_field_is_a_conflict_until_forced() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(
        &format!("{DEPLOYMENTS}?fieldManager=kubectl-client-side-apply"),
        &deployment("web", 2, &[("app", "app:1")]),
    )
    .await;
    let before = t.revision();
    let (code, status) = t
        .apply(
            &path,
            "kubectl",
            "",
            &deployment("web", 5, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{status:#}");
    assert_status(
        &status,
        StatusCode::CONFLICT,
        "Conflict",
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict",
            "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
            "field": ".spec.replicas"}])
    );
    assert_eq!(t.revision(), before, "a conflicting apply wrote");

    let (code, forced) = t
        .apply(
            &path,
            "kubectl",
            "&force=true",
            &deployment("web", 5, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{forced:#}");
    assert_eq!(forced["spec"]["replicas"], 5);
    let client = fields_of(&forced, "kubectl-client-side-apply", "Update");
    assert!(client["f:spec"].get("f:replicas").is_none(), "{client:#}");
    // The fields both set to the same value are shared, not taken.
    assert!(client["f:spec"]["f:template"].is_object(), "{client:#}");
    assert!(
        fields_of(&forced, "kubectl", "Apply")["f:spec"]
            .get("f:replicas")
            .is_some()
    );
}

#[tokio::test]
async fn two_managers_applying_the_same_value_share_the_field() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/c");
    let (code, _) = t
        .apply(&path, "first", "", &plain_configmap(json!({"a": "1"})))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, shared) = t
        .apply(
            &path,
            "second",
            "",
            &plain_configmap(json!({"a": "1", "b": "2"})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{shared:#}");
    assert_eq!(
        fields_of(&shared, "first", "Apply"),
        json!({"f:data": {"f:a": {}}})
    );
    assert_eq!(
        fields_of(&shared, "second", "Apply"),
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    // The first manager dropping `a` leaves it, since the second still applies it.
    let (code, dropped) = t
        .apply(
            &path,
            "first",
            "",
            &configmap("c", json!({"x": "y"}), json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{dropped:#}");
    assert_eq!(dropped["data"], json!({"a": "1", "b": "2"}));
    // Now nobody else owns `b`: the second manager dropping it removes it.
    let (_, removed) = t
        .apply(&path, "second", "", &plain_configmap(json!({"a": "1"})))
        .await;
    assert_eq!(removed["data"], json!({"a": "1"}));
}

#[tokio::test]
async fn fields_an_applier_stops_applying_are_removed() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let (code, _) = t
        .apply(
            &path,
            "kubectl",
            "",
            &deployment("web", 1, &[("app", "app:1"), ("sidecar", "side:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let mut fewer = deployment("web", 1, &[("app", "app:1")]);
    fewer["metadata"]["labels"] = json!({});
    let (code, applied) = t.apply(&path, "kubectl", "", &fewer).await;
    assert_eq!(code, StatusCode::OK, "{applied:#}");
    let containers: Vec<&str> = applied["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(containers, ["app"]);
    assert!(
        applied["metadata"]["labels"].get("app").is_none(),
        "{applied:#}"
    );
}

#[tokio::test]
async fn a_dry_run_apply_answers_with_the_result_and_writes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let before = t.revision();
    let (code, created) = t
        .apply(
            &path,
            "kubectl",
            "&dryRun=All",
            &deployment("web", 2, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created:#}");
    assert_eq!(managers(&created), [entry("kubectl", "Apply", "")]);
    assert_eq!(t.revision(), before);
    let (code, _) = t.get(&path).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    t.apply(
        &path,
        "kubectl",
        "",
        &deployment("web", 2, &[("app", "app:1")]),
    )
    .await;
    let before = t.revision();
    let (code, dry) = t
        .apply(
            &path,
            "kubectl",
            "&dryRun=All",
            &deployment("web", 7, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{dry:#}");
    assert_eq!(dry["spec"]["replicas"], 7);
    assert_eq!(t.revision(), before);
    let (_, live) = t.get(&path).await;
    assert_eq!(live["spec"]["replicas"], 2);
}

#[tokio::test]
async fn apply_needs_a_field_manager() {
    let t = TestServer::new().await;
    let status = t
        .expect_rejected(
            Method::PATCH,
            &format!("{CONFIGMAPS}/c"),
            Some(APPLY),
            configmap("c", json!({}), json!({})).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "fieldManager: Required value: is required for apply patch",
        )
        .await;
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");
}

#[tokio::test]
async fn status_and_scale_writes_are_recorded_under_their_subresource() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(
        &format!("{DEPLOYMENTS}?fieldManager=creator"),
        &deployment("web", 1, &[("app", "app:1")]),
    )
    .await;
    let (code, scaled) = t
        .patch(
            &format!("{path}/scale?fieldManager=scaler"),
            MERGE,
            &json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scaled:#}");
    let (code, status) = t
        .apply(
            &format!("{path}/status"),
            "controller",
            "",
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "status": {"replicas": 3}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{status:#}");
    assert_eq!(status["status"]["replicas"], 3);
    assert_eq!(
        managers(&status),
        [
            entry("controller", "Apply", "status"),
            entry("creator", "Update", ""),
            entry("scaler", "Update", "scale"),
        ]
    );
    assert_eq!(
        fields_of(&status, "controller", "Apply"),
        json!({"f:status": {"f:replicas": {}}})
    );
    // Applying replicas now conflicts with the scaler, named with its subresource.
    let (code, conflict) = t
        .apply(
            &path,
            "kubectl",
            "",
            &deployment("web", 1, &[("app", "app:1")]),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{conflict:#}");
    assert_eq!(
        conflict["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}

#[tokio::test]
async fn a_single_empty_entry_strips_managed_fields() {
    let t = TestServer::new().await;
    let path = format!("{CONFIGMAPS}/c");
    t.create(CONFIGMAPS, &configmap("c", json!({}), json!({"a": "1"})))
        .await;
    let (code, stripped) = t
        .patch(&path, MERGE, &json!({"metadata": {"managedFields": [{}]}}))
        .await;
    assert_eq!(code, StatusCode::OK, "{stripped:#}");
    assert!(
        stripped["metadata"].get("managedFields").is_none(),
        "{stripped:#}"
    );
    // The first apply then meets what was there as `before-first-apply`.
    let (code, conflict) = t
        .apply(
            &path,
            "kubectl",
            "",
            &configmap("c", json!({}), json!({"a": "2"})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{conflict:#}");
    assert_eq!(
        conflict["details"]["causes"][0]["message"],
        "conflict with \"before-first-apply\" using v1"
    );
}
