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

/// What kubectl 1.30 and later send to `/api` and `/apis`.
const KUBECTL_AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

async fn get_with_accept(t: &TestServer, path: &str, accept: &str) -> crate::support::Reply {
    t.request(
        Method::GET,
        path,
        None,
        &[("accept", accept)],
        axum::body::Body::empty(),
    )
    .await
}

fn content_type(reply: &crate::support::Reply) -> &str {
    reply.headers["content-type"].to_str().unwrap_or_default()
}

#[tokio::test]
async fn aggregated_discovery_answers_with_the_exact_kubernetes_content_type() {
    let t = TestServer::new().await;
    let apis = get_with_accept(&t, "/apis", KUBECTL_AGGREGATED_ACCEPT).await;
    assert_eq!(apis.code, StatusCode::OK);
    assert_eq!(
        content_type(&apis),
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(apis.body["kind"], "APIGroupDiscoveryList");
    assert_eq!(apis.body["apiVersion"], "apidiscovery.k8s.io/v2");
    let groups: Vec<&str> = apis.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    for group in [
        "apps",
        "batch",
        "autoscaling",
        "node.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "networking.k8s.io",
        "metrics.k8s.io",
    ] {
        assert!(groups.contains(&group), "{group} missing from {groups:?}");
    }

    let api = get_with_accept(&t, "/api", KUBECTL_AGGREGATED_ACCEPT).await;
    assert_eq!(
        content_type(&api),
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let core = &api.body["items"][0]["versions"][0];
    assert_eq!(core["version"], "v1");
    let pods = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "pods")
        .expect("pods");
    assert_eq!(pods["responseKind"]["kind"], "Pod");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["shortNames"], json!(["po"]));
}

#[tokio::test]
async fn aggregated_discovery_v2beta1_is_served_to_kubectl_1_26_to_1_29() {
    let t = TestServer::new().await;
    let reply = get_with_accept(
        &t,
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
    )
    .await;
    assert_eq!(
        content_type(&reply),
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    );
    assert_eq!(reply.body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
}

#[tokio::test]
async fn plain_discovery_is_unchanged_without_the_aggregated_accept() {
    let t = TestServer::new().await;
    for accept in ["application/json, */*", "application/json"] {
        let apis = get_with_accept(&t, "/apis", accept).await;
        assert_eq!(content_type(&apis), "application/json", "{accept}");
        assert_eq!(apis.body["kind"], "APIGroupList", "{accept}");
        let api = get_with_accept(&t, "/api", accept).await;
        assert_eq!(api.body["kind"], "APIVersions", "{accept}");
    }
}

#[tokio::test]
async fn openapi_v2_serves_json_and_protobuf_definitions() {
    let t = TestServer::new().await;
    let (code, swagger) = t.get("/openapi/v2").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(swagger["swagger"], "2.0");
    assert_eq!(
        swagger["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let protobuf = get_with_accept(
        &t,
        "/openapi/v2?timeout=32s",
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    )
    .await;
    assert_eq!(protobuf.code, StatusCode::OK);
    assert_eq!(
        content_type(&protobuf),
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let body = protobuf.body.as_str().expect("a binary body");
    assert!(body.contains("io.k8s.api.apps.v1.Deployment"));
}

#[tokio::test]
async fn openapi_v3_group_versions_carry_the_schemas_of_their_kinds() {
    let t = TestServer::new().await;
    let (code, document) = t.get("/openapi/v3/apis/apps/v1").await;
    assert_eq!(code, StatusCode::OK);
    let deployment = &document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(deployment["properties"]["spec"].is_object());
}

#[tokio::test]
async fn aggregated_discovery_lists_exactly_what_plain_discovery_lists() {
    let t = TestServer::new().await;
    let aggregated = get_with_accept(&t, "/apis", KUBECTL_AGGREGATED_ACCEPT).await;
    let (_, plain) = t.get("/apis").await;
    for group in plain["groups"].as_array().expect("groups") {
        let name = group["name"].as_str().unwrap_or_default();
        let aggregated_group = aggregated.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|g| g["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from aggregated discovery"));
        for version in group["versions"].as_array().expect("versions") {
            let v = version["version"].as_str().unwrap_or_default();
            let (_, list) = t.get(&format!("/apis/{name}/{v}")).await;
            let aggregated_version = aggregated_group["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .find(|av| av["version"] == v)
                .unwrap_or_else(|| panic!("{name}/{v} missing from aggregated discovery"));
            let mut aggregated_names: Vec<String> = Vec::new();
            for resource in aggregated_version["resources"]
                .as_array()
                .expect("resources")
            {
                let plural = resource["resource"].as_str().unwrap_or_default();
                aggregated_names.push(plural.to_owned());
                for sub in resource["subresources"].as_array().into_iter().flatten() {
                    aggregated_names.push(format!(
                        "{plural}/{}",
                        sub["subresource"].as_str().unwrap_or_default()
                    ));
                }
            }
            let mut plain_names = resource_names(&list);
            plain_names.sort();
            aggregated_names.sort();
            assert_eq!(aggregated_names, plain_names, "{name}/{v}");
        }
    }
}
