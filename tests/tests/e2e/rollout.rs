//! Deployment rollouts end to end: a rolling update of the Wasm hello-http sample under
//! continuous HTTP load through the gateway's NodePort loses no request, `kubectl rollout
//! status` sees it finish, and `kubectl rollout undo` goes back to the previous template.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wharf_e2e::{Wharf, eventually, run, samples_out, workspace_root};

const OLD_GREETING: &str = "Hello from Wharf!";
const NEW_GREETING: &str = "v2";

/// What one load thread saw: every answer in order, and the failures.
#[derive(Default)]
struct Load {
    bodies: Vec<String>,
    failures: Vec<String>,
}

/// Sends GETs to `url` one after another until `stop` is set.
fn load(url: String, stop: Arc<AtomicBool>) -> JoinHandle<Load> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::new();
        let mut seen = Load::default();
        runtime.block_on(async {
            while !stop.load(Ordering::Relaxed) {
                let answer = client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response.text().await.unwrap_or_default();
                        if status == 200 {
                            seen.bodies.push(body);
                        } else {
                            seen.failures.push(format!("{status}: {}", body.trim()));
                        }
                    }
                    Err(error) => seen.failures.push(format!("{error:?}")),
                }
            }
        });
        seen
    })
}

/// Runs load against `url` while `during` runs, then for `settle` more.
fn under_load(url: &str, during: impl FnOnce(), settle: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<JoinHandle<Load>> =
        (0..2).map(|_| load(url.to_owned(), stop.clone())).collect();
    during();
    std::thread::sleep(settle);
    stop.store(true, Ordering::Relaxed);
    let mut all = Load::default();
    for thread in threads {
        let seen = thread.join().unwrap();
        all.bodies.extend(seen.bodies);
        all.failures.extend(seen.failures);
    }
    all
}

fn greetings(bodies: &[String]) -> (usize, usize) {
    let count = |greeting: &str| bodies.iter().filter(|b| b.trim() == greeting).count();
    (count(OLD_GREETING), count(NEW_GREETING))
}

fn get(url: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        response.text().await.ok()
    })
}

fn rollout_status(wharf: &Wharf) {
    run(wharf
        .kubectl()
        .args(["rollout", "status", "deploy/hello-http", "--timeout=120s"]))
    .unwrap();
}

/// The `GREETING` of each of the Deployment's pods that is not being deleted ("" if unset).
fn pod_greetings(wharf: &Wharf) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(
        &run(wharf
            .kubectl()
            .args(["get", "pods", "-l", "app=hello-http", "-o", "json"]))
        .unwrap(),
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "GREETING")
                .and_then(|e| e["value"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_rolling_update_under_load_loses_no_request_and_rollout_undo_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    run(wharf
        .cli()
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-http")))
    .unwrap();
    rollout_status(&wharf);
    let url = format!("http://{}:30080/", wharf.gateway_ip);
    eventually("the old greeting through the NodePort", 30, || {
        get(&url).filter(|body| body.trim() == OLD_GREETING)
    });

    // The update: a new template (an env var), rolled out while requests keep coming.
    let update = under_load(
        &url,
        || {
            std::thread::sleep(Duration::from_millis(500));
            run(wharf.kubectl().args([
                "set",
                "env",
                "deploy/hello-http",
                &format!("GREETING={NEW_GREETING}"),
            ]))
            .unwrap();
            rollout_status(&wharf);
        },
        Duration::from_secs(1),
    );
    assert!(
        update.failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        update.failures.len(),
        update.failures.len() + update.bodies.len(),
        update.failures
    );
    let (old, new) = greetings(&update.bodies);
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    assert_eq!(old + new, update.bodies.len(), "unexpected bodies");
    // Once the rollout is complete, only new pods answer.
    let last: Vec<&String> = update.bodies.iter().rev().take(20).collect();
    assert!(
        last.iter().all(|b| b.trim() == NEW_GREETING),
        "old pods still answer after the rollout: {last:?}"
    );
    let deployment: serde_json::Value = serde_json::from_str(
        &run(wharf
            .kubectl()
            .args(["get", "deploy/hello-http", "-o", "json"]))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(deployment["status"]["updatedReplicas"], 3, "{deployment}");
    assert_eq!(deployment["status"]["availableReplicas"], 3, "{deployment}");

    // Undo: back to the first template, under load too.
    let undo = under_load(
        &url,
        || {
            run(wharf
                .kubectl()
                .args(["rollout", "undo", "deploy/hello-http"]))
            .unwrap();
            rollout_status(&wharf);
        },
        Duration::from_secs(1),
    );
    assert!(
        undo.failures.is_empty(),
        "{} requests failed during the undo: {:?}",
        undo.failures.len(),
        undo.failures
    );
    let last: Vec<&String> = undo.bodies.iter().rev().take(20).collect();
    assert!(
        last.iter().all(|b| b.trim() == OLD_GREETING),
        "the undo did not bring the old greeting back: {last:?}"
    );
    let greetings_now = pod_greetings(&wharf);
    assert!(
        greetings_now.iter().all(|g| g.is_empty()),
        "pods of the second template remain: {greetings_now:?}"
    );

    // The history: revision 1 became revision 3 when it was rolled back to.
    let history = run(wharf
        .kubectl()
        .args(["rollout", "history", "deploy/hello-http"]))
    .unwrap();
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let second =
        run(wharf
            .kubectl()
            .args(["rollout", "history", "deploy/hello-http", "--revision=2"]))
        .unwrap();
    assert!(
        second.contains("GREETING") && second.contains(NEW_GREETING),
        "{second}"
    );
}
