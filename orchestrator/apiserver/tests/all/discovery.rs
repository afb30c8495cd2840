//! Discovery, version, health, readiness and metrics endpoints.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestServer;

fn resource_names(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a resource list: {list:#}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn api_lists_the_core_version() {
    let t = TestServer::new().await;
    let (code, api) = t.get("/api").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
}

#[tokio::test]
async fn apis_lists_every_named_group() {
    let t = TestServer::new().await;
    let (code, apis) = t.get("/apis").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(apis["kind"], "APIGroupList");
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().unwrap_or_default())
        .collect();
    for group in [
        "apps",
        "batch",
        "autoscaling",
        "node.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "networking.k8s.io",
    ] {
        assert!(groups.contains(&group), "{group} missing from {groups:?}");
    }
    let apps = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "apps")
        .expect("apps");
    assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");

    let (code, group) = t.get("/apis/apps").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(group["name"], "apps");
    t.expect_rejected(
        Method::GET,
        "/apis/widgets.example.com",
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "widgets.example.com",
    )
    .await;
}

#[tokio::test]
async fn resource_lists_include_subresources() {
    let t = TestServer::new().await;
    let (code, core) = t.get("/api/v1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(core["kind"], "APIResourceList");
    assert_eq!(core["groupVersion"], "v1");
    let names = resource_names(&core);
    for name in [
        "pods",
        "pods/status",
        "configmaps",
        "namespaces",
        "namespaces/status",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let pods = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods")
        .expect("pods");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["kind"], "Pod");
    assert!(
        pods["verbs"]
            .as_array()
            .expect("verbs")
            .contains(&json!("watch"))
    );

    let (code, apps) = t.get("/apis/apps/v1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(apps["groupVersion"], "apps/v1");
    let names = resource_names(&apps);
    for name in [
        "deployments",
        "deployments/status",
        "deployments/scale",
        "replicasets/scale",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let scale = apps["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .expect("deployments/scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["group"], "autoscaling");
    assert_eq!(scale["version"], "v1");

    t.expect_rejected(
        Method::GET,
        "/apis/apps/v2",
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "apps/v2",
    )
    .await;
}

#[tokio::test]
async fn version_reports_a_kubernetes_major_and_minor() {
    let t = TestServer::new().await;
    let (code, version) = t.get("/version").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(version["major"], "1");
    let minor: u32 = version["minor"]
        .as_str()
        .expect("minor is a string")
        .parse()
        .expect("minor is numeric");
    assert!(minor >= 20);
    assert!(
        version["gitVersion"]
            .as_str()
            .expect("gitVersion")
            .starts_with("v1.")
    );
}

#[tokio::test]
async fn healthz_and_livez_answer_ok() {
    let t = TestServer::new().await;
    for path in ["/healthz", "/livez"] {
        let (code, body) = t.get(path).await;
        assert_eq!(code, StatusCode::OK, "{path}");
        assert_eq!(body, "ok");
    }
}

#[tokio::test]
async fn readyz_is_unavailable_until_the_server_is_marked_ready() {
    let t = TestServer::new().await;
    let (code, _) = t.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    t.server.set_ready(true);
    let (code, body) = t.get("/readyz").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, "ok");
    t.server.begin_shutdown();
    let (code, _) = t.get("/readyz").await;
    assert_eq!(
        code,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready once shutting down"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_store_commits() {
    let t = TestServer::new().await;
    t.create_configmap("m", json!({}), json!({})).await;
    let _ = t.get("/api/v1/namespaces/default/configmaps/m").await;
    let _ = t.get("/api/v1/namespaces/default/configmaps/missing").await;
    let reply = t
        .request(
            Method::GET,
            "/metrics",
            None,
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(reply.code, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = reply.body.as_str().expect("metrics are text").to_owned();
    assert!(text.contains("apiserver_request_total"), "{text}");
    assert!(
        text.contains(
            r#"apiserver_request_total{verb="create",resource="configmaps",code="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_request_total{verb="get",resource="configmaps",code="404"} 1"#),
        "{text}"
    );
    let commits = text
        .lines()
        .find_map(|line| line.strip_prefix("wharf_store_commits_total "))
        .unwrap_or_else(|| panic!("no wharf_store_commits_total in {text}"));
    assert!(
        commits.trim().parse::<u64>().expect("a number") >= 1,
        "{text}"
    );
}

#[tokio::test]
async fn paths_outside_the_api_are_not_found_as_a_status() {
    let t = TestServer::new().await;
    t.expect_rejected(
        Method::GET,
        "/not/an/api/path",
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "/not/an/api/path",
    )
    .await;
}
