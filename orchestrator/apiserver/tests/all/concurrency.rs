//! Concurrent writers: merge patches without a resourceVersion are retried by the server until
//! they apply, so none is lost.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{CONFIGMAPS, MERGE, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_merge_patches_without_resource_version_all_apply() {
    let t = Arc::new(TestServer::new().await);
    let created = t.create_configmap("shared", json!({}), json!({})).await;
    let path = format!("{CONFIGMAPS}/shared");
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (t, path, barrier) = (t.clone(), path.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            t.patch(
                &path,
                MERGE,
                &json!({"data": {format!("key-{i}"): i.to_string()}}),
            )
            .await
        }));
    }
    let mut failures = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let (code, body) = task.await.expect("the task ran");
        if code != StatusCode::OK {
            failures.push(format!("patch {i}: {code} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 32 patches failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let (_, current) = t.get(&path).await;
    let data = current["data"].as_object().expect("data");
    assert_eq!(data.len(), 32, "{current:#}");
    for i in 0..32 {
        assert_eq!(
            data.get(&format!("key-{i}")),
            Some(&Value::String(i.to_string()))
        );
    }
    assert_eq!(current["metadata"]["uid"], created["metadata"]["uid"]);
}
