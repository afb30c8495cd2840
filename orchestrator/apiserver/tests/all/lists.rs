//! List options: label and field selectors, paging with `limit` and `continue`, and the
//! errors for selectors and tokens that do not parse.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{CONFIGMAPS, TestServer, names};

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn list_names(t: &TestServer, query: &str) -> Vec<String> {
    let (code, list) = t.get(&format!("{CONFIGMAPS}?{query}")).await;
    assert_eq!(code, StatusCode::OK, "{query}: {list:#}");
    assert_eq!(list["kind"], "ConfigMapList");
    names(&list)
}

async fn five_configmaps(t: &TestServer) {
    t.create_configmap("c1", json!({"app": "a"}), json!({}))
        .await;
    t.create_configmap("c2", json!({"app": "b"}), json!({}))
        .await;
    t.create_configmap("c3", json!({"app": "c"}), json!({}))
        .await;
    t.create_configmap("c4", json!({}), json!({})).await;
    t.create_configmap("c5", json!({"tier": "x"}), json!({}))
        .await;
}

#[tokio::test]
async fn label_selectors_filter_lists_by_equality_set_and_existence() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    let selected = |s: &str| format!("labelSelector={}", encode(s));
    assert_eq!(list_names(&t, &selected("app=a")).await, ["c1"]);
    assert_eq!(list_names(&t, &selected("app==a")).await, ["c1"]);
    assert_eq!(
        list_names(&t, &selected("app in (a,b)")).await,
        ["c1", "c2"]
    );
    assert_eq!(
        list_names(&t, &selected("app notin (a,b)")).await,
        ["c3", "c4", "c5"]
    );
    assert_eq!(list_names(&t, &selected("!app")).await, ["c4", "c5"]);
    assert_eq!(list_names(&t, &selected("app")).await, ["c1", "c2", "c3"]);
    assert_eq!(
        list_names(&t, &selected("app!=a")).await,
        ["c2", "c3", "c4", "c5"]
    );
    assert_eq!(
        list_names(&t, &selected("app,tier")).await,
        Vec::<String>::new()
    );
    assert_eq!(list_names(&t, "labelSelector=").await.len(), 5);
}

#[tokio::test]
async fn field_selectors_filter_lists_by_name_and_namespace() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    let field = |s: &str| format!("fieldSelector={}", encode(s));
    assert_eq!(list_names(&t, &field("metadata.name=c3")).await, ["c3"]);
    assert_eq!(list_names(&t, &field("metadata.name!=c3")).await.len(), 4);
    assert_eq!(
        list_names(&t, &field("metadata.namespace=default"))
            .await
            .len(),
        5
    );
    assert_eq!(
        list_names(
            &t,
            &format!(
                "{}&labelSelector={}",
                field("metadata.name=c1"),
                encode("app=a")
            )
        )
        .await,
        ["c1"]
    );
    assert!(
        list_names(&t, &field("metadata.name=nope"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn limit_and_continue_page_through_every_object_exactly_once() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &token {
            Some(token) => format!("limit=2&continue={}", encode(token)),
            None => "limit=2".to_owned(),
        };
        let (code, page) = t.get(&format!("{CONFIGMAPS}?{query}")).await;
        assert_eq!(code, StatusCode::OK, "{page:#}");
        let page_names = names(&page);
        assert!(page_names.len() <= 2, "{page_names:?}");
        seen.extend(page_names);
        pages += 1;
        assert!(pages <= 5, "paging does not end");
        token = page["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["c1", "c2", "c3", "c4", "c5"]);

    // A limit at least the size of the list returns everything and no token.
    let (_, all) = t.get(&format!("{CONFIGMAPS}?limit=5")).await;
    assert_eq!(names(&all).len(), 5);
    assert!(
        all["metadata"].get("continue").is_none_or(Value::is_null),
        "{all:#}"
    );
}

#[tokio::test]
async fn paging_with_a_label_selector_returns_only_matching_objects() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    let (_, page) = t
        .get(&format!(
            "{CONFIGMAPS}?limit=1&labelSelector={}",
            encode("app")
        ))
        .await;
    assert_eq!(names(&page), ["c1"]);
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_owned();
    let (_, page) = t
        .get(&format!(
            "{CONFIGMAPS}?limit=5&labelSelector={}&continue={}",
            encode("app"),
            encode(&token)
        ))
        .await;
    assert_eq!(names(&page), ["c2", "c3"]);
}

/// Kubernetes serves every page of a continued list from the snapshot of the first page: the
/// pages share one `metadata.resourceVersion`, and a client that watches from it sees every
/// later change. (Informers depend on this: they watch from the list's resourceVersion.)
#[tokio::test]
async fn a_continued_list_is_served_from_the_first_pages_snapshot() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    let (_, first) = t.get(&format!("{CONFIGMAPS}?limit=2")).await;
    let first_rv = first["metadata"]["resourceVersion"].clone();
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_owned();

    // Writes between the pages: one to an object already listed, one creating a new object.
    let (code, _) = t
        .patch(
            &format!("{CONFIGMAPS}/c1"),
            crate::support::MERGE,
            &json!({"data": {"changed": "yes"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    t.create_configmap("c6", json!({}), json!({})).await;

    let (code, second) = t
        .get(&format!(
            "{CONFIGMAPS}?limit=10&continue={}",
            encode(&token)
        ))
        .await;
    assert_eq!(code, StatusCode::OK, "{second:#}");
    assert_eq!(
        second["metadata"]["resourceVersion"], first_rv,
        "every page of a continued list must carry the first page's resourceVersion"
    );
    assert_eq!(
        names(&second),
        ["c3", "c4", "c5"],
        "c6 was created after the snapshot"
    );
}

#[tokio::test]
async fn an_invalid_label_selector_is_a_bad_request() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    for selector in ["app in (a,b", "app=a=b", "!", "app notin"] {
        t.expect_rejected(
            Method::GET,
            &format!("{CONFIGMAPS}?labelSelector={}", encode(selector)),
            None,
            "",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unable to parse requirement",
        )
        .await;
    }
}

#[tokio::test]
async fn an_invalid_field_selector_limit_or_continue_token_is_a_bad_request() {
    let t = TestServer::new().await;
    five_configmaps(&t).await;
    t.expect_rejected(
        Method::GET,
        &format!("{CONFIGMAPS}?fieldSelector={}", encode("metadata.name")),
        None,
        "",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "field selector",
    )
    .await;
    t.expect_rejected(
        Method::GET,
        &format!("{CONFIGMAPS}?limit=lots"),
        None,
        "",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "limit",
    )
    .await;
    t.expect_rejected(
        Method::GET,
        &format!("{CONFIGMAPS}?limit=2&continue=%25%25not-a-token"),
        None,
        "",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "continue",
    )
    .await;
    // A token from another namespace's list does not continue this one.
    let (_, page) = t.get("/api/v1/namespaces?limit=1").await;
    let foreign = page["metadata"]["continue"]
        .as_str()
        .expect("a token")
        .to_owned();
    t.expect_rejected(
        Method::GET,
        &format!("{CONFIGMAPS}?limit=2&continue={}", encode(&foreign)),
        None,
        "",
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "continue",
    )
    .await;
}

#[tokio::test]
async fn lists_span_all_namespaces_and_cluster_scoped_resources() {
    let t = TestServer::new().await;
    t.create_configmap("here", json!({}), json!({})).await;
    t.create(
        "/api/v1/namespaces/kube-system/configmaps",
        &crate::support::configmap("there", json!({}), json!({})),
    )
    .await;
    let (code, all) = t.get("/api/v1/configmaps").await;
    assert_eq!(code, StatusCode::OK);
    let mut all_names = names(&all);
    all_names.sort();
    assert_eq!(all_names, ["here", "there"]);
    let (_, system) = t.get("/api/v1/namespaces/kube-system/configmaps").await;
    assert_eq!(names(&system), ["there"]);

    let (code, namespaces) = t.get("/api/v1/namespaces").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(namespaces["kind"], "NamespaceList");
    let mut ns = names(&namespaces);
    ns.sort();
    assert_eq!(
        ns,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert!(
        namespaces["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|n| n["status"]["phase"] == "Active")
    );
    let (_, classes) = t.get("/apis/node.k8s.io/v1/runtimeclasses").await;
    let mut rc = names(&classes);
    rc.sort();
    assert_eq!(rc, ["runc", "wasmtime"]);
}
