//! `pods/NAME/eviction` against PodDisruptionBudgets, through HTTP: the budget's status (as
//! the disruption controller writes it) decides; a refusal is a 429 that deletes nothing, an
//! allowed eviction charges the budget and deletes the pod.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::TestServer;

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

fn ready_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "img:1"}]},
    })
}

/// Creates a pod and marks it Running and Ready, as its node would.
async fn running_pod(t: &TestServer, name: &str) {
    let mut pod = t.create(PODS, &ready_pod(name)).await;
    pod["status"] = json!({"phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]});
    let (code, body) = t.put(&format!("{PODS}/{name}/status"), &pod).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

/// Sets a budget's status as the disruption controller would.
async fn set_status(t: &TestServer, allowed: i64, current: i64) {
    let (_, mut budget) = t.get(&format!("{PDBS}/web")).await;
    budget["status"] = json!({
        "observedGeneration": budget["metadata"]["generation"],
        "disruptionsAllowed": allowed, "currentHealthy": current,
        "desiredHealthy": 2, "expectedPods": current,
    });
    let (code, body) = t.put(&format!("{PDBS}/web/status"), &budget).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_eviction_is_refused_while_the_budget_allows_none_and_charged_when_it_does() {
    let t = TestServer::new().await;
    for name in ["web-1", "web-2", "web-3"] {
        running_pod(&t, name).await;
    }
    let (code, body) = t
        .post(
            PDBS,
            &json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "web"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            }),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    // No status yet (observedGeneration 0 < generation 1): still being processed.
    let before = t.revision();
    let (code, refused) = t
        .post(&format!("{PODS}/web-1/eviction"), &eviction("web-1"))
        .await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("disruption budget")
    );
    assert_eq!(t.revision(), before, "a refusal writes nothing");

    set_status(&t, 0, 2).await;
    let (code, refused) = t
        .post(&format!("{PODS}/web-1/eviction"), &eviction("web-1"))
        .await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["reason"], "TooManyRequests");
    assert_eq!(
        refused["details"]["causes"][0],
        json!({"reason": "DisruptionBudget",
               "message": "The disruption budget web needs 2 healthy pods and has 2 currently"})
    );
    assert_eq!(t.get(&format!("{PODS}/web-1")).await.0, StatusCode::OK);

    set_status(&t, 1, 3).await;
    let (code, done) = t
        .post(&format!("{PODS}/web-1/eviction"), &eviction("web-1"))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{done}");
    assert_eq!(done["status"], "Success");
    assert_eq!(
        t.get(&format!("{PODS}/web-1")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, budget) = t.get(&format!("{PDBS}/web")).await;
    assert_eq!(budget["status"]["disruptionsAllowed"], 0, "{budget}");
    assert!(
        budget["status"]["disruptedPods"]["web-1"].is_string(),
        "{budget}"
    );
    // The one disruption is spent.
    let (code, _) = t
        .post(&format!("{PODS}/web-2/eviction"), &eviction("web-2"))
        .await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn bad_evictions_are_clear_errors() {
    let t = TestServer::new().await;
    t.create(PODS, &ready_pod("web-1")).await;
    let (code, body) = t
        .post(&format!("{PODS}/web-1/eviction"), &eviction("other"))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (code, _) = t
        .post(&format!("{PODS}/missing/eviction"), &eviction("missing"))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = t.get(&format!("{PODS}/web-1/eviction")).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    // Both bounds at once are refused.
    let (code, body) = t
        .post(
            PDBS,
            &json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "both"},
                "spec": {"minAvailable": 1, "maxUnavailable": "50%",
                         "selector": {"matchLabels": {"app": "web"}}},
            }),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Without a budget, an eviction is a delete.
    let (code, _) = t
        .post(&format!("{PODS}/web-1/eviction"), &eviction("web-1"))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        t.get(&format!("{PODS}/web-1")).await.0,
        StatusCode::NOT_FOUND
    );
}
