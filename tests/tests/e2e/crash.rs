//! Crash safety: writers create objects continuously while the server is killed with SIGKILL at
//! varying moments; after each restart every acknowledged write is present, unchanged, and
//! resourceVersions never go backwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wharf_e2e::Wharf;

const WRITERS: usize = 8;

/// Creates ConfigMaps until the server stops answering; records each acknowledged one.
async fn writer(base: String, prefix: String, acked: Arc<Mutex<Vec<(String, u64)>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0.. {
        let name = format!("{prefix}-{i}");
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"i": i.to_string()}
        });
        let Ok(response) = http.post(&base).json(&body).send().await else {
            return;
        };
        if response.status().as_u16() != 201 {
            return;
        }
        let Ok(created) = response.json::<Value>().await else {
            return;
        };
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse().ok())
            .expect("a created object has a numeric resourceVersion");
        acked.lock().unwrap().push((name, rv));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_revisions_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut wharf = Wharf::start(&data).unwrap();
    let (api_port, gateway_port) = (wharf.api_port, wharf.gateway_port);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let mut highest_acked = 0u64;
    // Kill after different amounts of load, so the kill lands at different points of a commit.
    for (round, run_for_ms) in [700u64, 1300, 450, 1900].into_iter().enumerate() {
        let base = format!("{}/api/v1/namespaces/default/configmaps", wharf.url());
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    base.clone(),
                    format!("crash-{round}-{w}"),
                    acked.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(run_for_ms)).await;
        wharf.kill9();
        for task in tasks {
            task.await.unwrap();
        }

        let restart_data = data.clone();
        wharf = tokio::task::spawn_blocking(move || {
            Wharf::start_on(&restart_data, api_port, gateway_port)
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("restart after SIGKILL failed: {e}"));
        let list: Value = http
            .get(format!(
                "{}/api/v1/namespaces/default/configmaps",
                wharf.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let present: HashMap<String, u64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["metadata"]["name"].as_str().unwrap().to_owned(),
                    item["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let acked_now = acked.lock().unwrap().clone();
        let lost: Vec<_> = acked_now
            .iter()
            .filter(|(name, rv)| present.get(name) != Some(rv))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost or changed, e.g. {:?}",
            lost.len(),
            acked_now.len(),
            &lost[..lost.len().min(5)]
        );
        highest_acked = acked_now.iter().map(|(_, rv)| *rv).max().unwrap_or(0);
        let list_revision: u64 = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            list_revision >= highest_acked,
            "round {round}: revision went back from {highest_acked} to {list_revision}"
        );
    }
    // A write after the last restart gets a revision above every acknowledged one.
    let created: Value = http
        .post(format!(
            "{}/api/v1/namespaces/default/configmaps",
            wharf.url()
        ))
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > highest_acked);
    let total = acked.lock().unwrap().len();
    assert!(
        total > 200,
        "too few writes were acknowledged ({total}) for the test to mean anything"
    );
}
