//! Jobs, Endpoints and EndpointSlices end to end: Jobs of the hello-job Wasm sample run to
//! completion or fail at their backoff limit, and a Service's Endpoints and EndpointSlices list
//! the pods that serve it, all seen through kubectl as Kubernetes users see them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use wharf_e2e::{Wharf, eventually, run, workspace_root};

fn kubectl_json(wharf: &Wharf, args: &[&str]) -> Value {
    let out = run(wharf.kubectl().args(args).args(["-o", "json"])).unwrap();
    serde_json::from_str(&out).unwrap()
}

/// A Job of the hello-job sample whose pods exit with `exit_code`.
fn job(
    name: &str,
    completions: u32,
    parallelism: u32,
    backoff_limit: u32,
    exit_code: u8,
) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  completions: {completions}\n  parallelism: {parallelism}\n  backoffLimit: {backoff_limit}\n  template:\n    spec:\n      restartPolicy: Never\n      runtimeClassName: wasmtime\n      containers:\n      - name: job\n        image: hello-job:latest\n        args: [\"one\"]\n        env: [{{name: EXIT_CODE, value: \"{exit_code}\"}}]\n"
    )
}

/// The condition of this type with status True, if the Job has one.
fn true_condition(job: &Value, type_: &str) -> Option<Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .cloned()
}

fn job_pods(wharf: &Wharf, name: &str) -> Vec<Value> {
    let list = kubectl_json(
        wharf,
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={name}"),
        ],
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_job_runs_parallel_pods_until_its_completions_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    wharf.apply(&job("three", 3, 2, 6, 0));
    let done = eventually("the Job to complete", 90, || {
        let job = kubectl_json(&wharf, &["get", "job", "three"]);
        // Never more than `parallelism` pods at once.
        let active = job["status"]["active"].as_u64().unwrap_or(0);
        assert!(active <= 2, "{}", job["status"]);
        true_condition(&job, "Complete").map(|_| job)
    });
    let status = &done["status"];
    assert_eq!(status["succeeded"], 3, "{status}");
    assert!(status["failed"].is_null(), "{status}");
    assert!(status["startTime"].is_string() && status["completionTime"].is_string());
    assert_eq!(
        true_condition(&done, "Complete").unwrap()["reason"],
        "CompletionsReached"
    );
    assert!(
        true_condition(&done, "SuccessCriteriaMet").is_some(),
        "{status}"
    );
    // kubectl's own wait agrees.
    run(wharf.kubectl().args([
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=10s",
    ]))
    .unwrap();
    let pods = job_pods(&wharf, "three");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Succeeded");
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("three-") && name.len() == "three-".len() + 5,
            "{name}"
        );
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["job-name"], "three");
        assert_eq!(labels["controller-uid"], done["metadata"]["uid"]);
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["controller"]),
            (&"Job".into(), &true.into())
        );
        let logs = run(wharf.kubectl().args(["logs", name])).unwrap();
        assert!(logs.contains("hello-job:"), "{logs}");
    }
    // Deleting the Job deletes its pods.
    run(wharf.kubectl().args(["delete", "job", "three"])).unwrap();
    eventually("the Job's pods to go", 60, || {
        job_pods(&wharf, "three").is_empty().then_some(())
    });
}

#[test]
fn a_job_whose_pods_fail_stops_at_its_backoff_limit() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    wharf.apply(&job("fails", 1, 1, 1, 1));
    // The first failure is retried after 10 s; the second exceeds backoffLimit 1.
    let failed = eventually("the Job to fail", 120, || {
        let job = kubectl_json(&wharf, &["get", "job", "fails"]);
        true_condition(&job, "Failed").map(|_| job)
    });
    let condition = true_condition(&failed, "Failed").unwrap();
    assert_eq!(condition["reason"], "BackoffLimitExceeded", "{condition}");
    assert_eq!(
        true_condition(&failed, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(failed["status"]["failed"], 2, "{}", failed["status"]);
    assert!(failed["status"]["succeeded"].is_null());
    // No further pods are created after the Job failed.
    std::thread::sleep(Duration::from_secs(2));
    let pods = job_pods(&wharf, "fails");
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Failed"));
}

#[test]
fn a_job_past_its_active_deadline_is_stopped_and_a_suspended_one_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    // Pods that would run for a minute, in a Job allowed 5 s.
    let slow = job("slow", 4, 2, 6, 0).replace(
        "value: \"0\"}]",
        "value: \"0\"}, {name: SLEEP_MS, value: \"60000\"}]",
    );
    let slow = slow.replace(
        "  completions:",
        "  activeDeadlineSeconds: 5\n  completions:",
    );
    wharf.apply(&slow);
    let mut most_active = 0;
    let failed = eventually("the Job to fail at its deadline", 30, || {
        let job = kubectl_json(&wharf, &["get", "job", "slow"]);
        most_active = most_active.max(job["status"]["active"].as_u64().unwrap_or(0));
        true_condition(&job, "Failed").map(|_| job)
    });
    assert_eq!(most_active, 2, "the Job ran its pods until the deadline");
    assert_eq!(
        true_condition(&failed, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    eventually("its pods to go", 30, || {
        job_pods(&wharf, "slow").is_empty().then_some(())
    });

    // Created suspended: no pods until resumed.
    let suspended =
        job("later", 1, 1, 6, 0).replace("  completions:", "  suspend: true\n  completions:");
    wharf.apply(&suspended);
    let job = eventually("the Suspended condition", 30, || {
        let job = kubectl_json(&wharf, &["get", "job", "later"]);
        true_condition(&job, "Suspended").map(|_| job)
    });
    assert_eq!(
        true_condition(&job, "Suspended").unwrap()["reason"],
        "JobSuspended"
    );
    assert!(job_pods(&wharf, "later").is_empty());
    run(wharf.kubectl().args([
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]))
    .unwrap();
    run(wharf.kubectl().args([
        "wait",
        "--for=condition=complete",
        "job/later",
        "--timeout=60s",
    ]))
    .unwrap();
}

/// The pod IPs (with pod names) an Endpoints object lists as ready addresses.
fn endpoint_addresses(endpoints: &Value, field: &str) -> BTreeSet<(String, String)> {
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["ip"].as_str().unwrap_or_default().to_owned(),
                a["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn slice_addresses(slices: &Value) -> BTreeSet<(String, String)> {
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_owned(),
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn endpoints_and_endpointslices_list_the_ready_pods_of_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-http")))
    .unwrap();
    let ready_pods = || {
        let list = kubectl_json(&wharf, &["get", "pods", "-l", "app=hello-http"]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|p| {
                (
                    p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect::<BTreeSet<_>>()
    };
    let pods = eventually("3 ready hello-http pods", 60, || {
        let pods = ready_pods();
        (pods.len() == 3).then_some(pods)
    });
    assert!(pods.iter().all(|(ip, _)| !ip.is_empty()), "{pods:?}");

    let endpoints = eventually("Endpoints listing the 3 pods", 30, || {
        let endpoints = kubectl_json(&wharf, &["get", "endpoints", "hello-http"]);
        (endpoint_addresses(&endpoints, "addresses") == pods).then_some(endpoints)
    });
    let ports = &endpoints["subsets"][0]["ports"][0];
    assert_eq!(
        (&ports["name"], &ports["port"]),
        (&"http".into(), &8080.into())
    );
    let table = run(wharf.kubectl().args(["get", "endpoints", "hello-http"])).unwrap();
    assert!(table.contains("hello-http"), "{table}");

    let selector = "kubernetes.io/service-name=hello-http";
    let slices = eventually("an EndpointSlice listing the 3 pods", 30, || {
        let slices = kubectl_json(&wharf, &["get", "endpointslices", "-l", selector]);
        (slice_addresses(&slices) == pods).then_some(slices)
    });
    let slice = &slices["items"][0];
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("hello-http-"),
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    let table = run(wharf.kubectl().args(["get", "endpointslices"])).unwrap();
    assert!(table.contains("hello-http-"), "{table}");

    // Scaling down leaves the remaining ready pod only.
    run(wharf
        .kubectl()
        .args(["scale", "deployment", "hello-http", "--replicas=1"]))
    .unwrap();
    let one = eventually("1 ready hello-http pod", 60, || {
        let pods = ready_pods();
        (pods.len() == 1).then_some(pods)
    });
    eventually("Endpoints and slices listing 1 pod", 30, || {
        let endpoints = kubectl_json(&wharf, &["get", "endpoints", "hello-http"]);
        let slices = kubectl_json(&wharf, &["get", "endpointslices", "-l", selector]);
        (endpoint_addresses(&endpoints, "addresses") == one && slice_addresses(&slices) == one)
            .then_some(())
    });

    // Deleting the Service deletes both (garbage collection by owner reference).
    run(wharf.kubectl().args(["delete", "service", "hello-http"])).unwrap();
    eventually("the Endpoints and slices to go", 30, || {
        let endpoints =
            run(wharf
                .kubectl()
                .args(["get", "endpoints", "--ignore-not-found", "hello-http"]))
            .ok()?;
        let slices = kubectl_json(&wharf, &["get", "endpointslices", "-l", selector]);
        (endpoints.trim().is_empty() && slices["items"].as_array()?.is_empty()).then_some(())
    });
}
