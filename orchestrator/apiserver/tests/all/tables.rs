//! `meta.k8s.io/v1` Table output, as `kubectl get` requests it.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{CONFIGMAPS, DEPLOYMENTS, TestServer, deployment};

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn a_list_asked_for_as_a_table_has_a_name_column_and_one_row_per_object() {
    let t = TestServer::new().await;
    for name in ["one", "two", "three"] {
        t.create_configmap(name, json!({}), json!({"a": "1", "b": "2"}))
            .await;
    }
    let reply = t
        .request(
            Method::GET,
            CONFIGMAPS,
            None,
            &[("accept", TABLE_ACCEPT)],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.code, StatusCode::OK, "{:#}", reply.body);
    let table = reply.body;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string());
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(columns.first(), Some(&"Name"), "{columns:?}");
    assert!(columns.contains(&"Data"), "{columns:?}");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    let mut names: Vec<&str> = rows
        .iter()
        .map(|r| r["cells"][0].as_str().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "three", "two"]);
    let data = columns
        .iter()
        .position(|c| *c == "Data")
        .expect("Data column");
    assert!(rows.iter().all(|r| r["cells"][data] == 2));
    assert!(
        rows.iter()
            .all(|r| r["cells"].as_array().expect("cells").len() == columns.len())
    );
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn a_single_object_can_be_read_as_a_table() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, &deployment("web", 3, &[("app", "app:1")]))
        .await;
    let reply = t
        .request(
            Method::GET,
            &format!("{DEPLOYMENTS}/web"),
            None,
            &[("accept", TABLE_ACCEPT)],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.code, StatusCode::OK);
    assert_eq!(reply.body["kind"], "Table");
    let rows = reply.body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["cells"][0], "web");
    assert_eq!(rows[0]["cells"][1], "0/3");
}

#[tokio::test]
async fn plain_json_is_served_when_table_is_not_the_first_choice() {
    let t = TestServer::new().await;
    t.create_configmap("one", json!({}), json!({})).await;
    let reply = t
        .request(
            Method::GET,
            CONFIGMAPS,
            None,
            &[(
                "accept",
                "application/json,application/json;as=Table;v=v1;g=meta.k8s.io",
            )],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.body["kind"], "ConfigMapList");
}

#[tokio::test]
async fn nodes_show_ready_or_not_ready_as_kubectl_prints_them() {
    let t = TestServer::new().await;
    for (name, ready) in [("n1", "True"), ("n2", "Unknown")] {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.11"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0-wharf"}}});
        t.create("/api/v1/nodes", &node).await;
    }
    let reply = t
        .request(
            Method::GET,
            "/api/v1/nodes",
            None,
            &[("accept", TABLE_ACCEPT)],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.code, StatusCode::OK, "{:#}", reply.body);
    let columns: Vec<&str> = reply.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&columns[..5], ["Name", "Status", "Roles", "Age", "Version"]);
    let rows = reply.body["rows"].as_array().unwrap();
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["cells"][0].as_str().unwrap(),
                r["cells"][1].as_str().unwrap(),
            )
        })
        .collect();
    assert!(status.contains(&("n1", "Ready")), "{status:?}");
    assert!(status.contains(&("n2", "NotReady")), "{status:?}");
}
