//! Pure pod-status logic: what the status of a pod is, given what its containers are doing;
//! whether an exited container restarts; how long it backs off. No I/O, unit-tested.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wharf_runtime::Exit;
use wharf_runtime::logs::format_timestamp;

/// The first CrashLoopBackOff delay.
pub const BACKOFF_START: Duration = Duration::from_secs(10);
/// The longest CrashLoopBackOff delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without exiting resets its backoff.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What one container is doing, as the agent observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running yet, or about to restart: `reason` like `ContainerCreating`, `ErrImagePull`,
    /// `CrashLoopBackOff`, `RuntimeUnavailable`.
    Waiting {
        /// Kubernetes' reason.
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When it started.
        started_at: SystemTime,
    },
    /// Ended, and will not restart.
    Terminated {
        /// How it ended.
        exit: Exit,
        /// When it started.
        started_at: SystemTime,
    },
}

/// The observed state of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Resolved image id (e.g. `sha256:...`), once known.
    pub image_id: Option<String>,
    /// Runtime id of the current (or last) instance, e.g. `wasmtime://...`.
    pub container_id: Option<String>,
    /// Current phase.
    pub phase: Phase,
    /// The previous instance's end, shown as `lastState`.
    pub last_exit: Option<(Exit, SystemTime)>,
    /// Restarts so far.
    pub restart_count: u32,
    /// Whether its startup probe succeeded (or it has none), while it runs.
    pub started: bool,
    /// Whether its probes say it is ready (started, and its readiness probe passing or
    /// absent), while it runs. Only a running container can be ready.
    pub ready: bool,
    /// The last probe failure while it runs (e.g. "Readiness probe failed: ..."), shown on
    /// the pod's Ready condition while the container is not ready.
    pub probe_failure: Option<String>,
}

impl ContainerView {
    /// Whether the container counts as ready: running, and ready by its probes.
    pub fn is_ready(&self) -> bool {
        self.ready && matches!(self.phase, Phase::Running { .. })
    }
}

/// Whether a container that exited with `code` starts again under `restart_policy`.
pub fn restarts(restart_policy: &str, code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The CrashLoopBackOff delay before restart number `restart_count + 1`: 10 s doubling to
/// 300 s.
pub fn backoff(restart_count: u32) -> Duration {
    let factor = 1u64 << restart_count.min(10);
    (BACKOFF_START * factor as u32).min(BACKOFF_MAX)
}

fn time(t: SystemTime) -> String {
    // Kubernetes' timestamps in status are RFC 3339 to the second.
    let full = format_timestamp(t);
    format!("{}Z", &full[..19])
}

fn terminated_json(exit: &Exit, started_at: SystemTime, container_id: Option<&str>) -> Value {
    let mut terminated = json!({
        "exitCode": exit.code,
        "reason": exit.reason,
        "startedAt": time(started_at),
        "finishedAt": time(exit.finished_at),
    });
    if let Some(message) = &exit.message {
        terminated["message"] = json!(message);
    }
    if let Some(id) = container_id {
        terminated["containerID"] = json!(id);
    }
    terminated
}

/// The `containerStatuses` entry of one container.
pub fn container_status(view: &ContainerView) -> Value {
    let state = match &view.phase {
        Phase::Waiting { reason, message } => {
            let mut waiting = json!({"reason": reason});
            if let Some(message) = message {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        Phase::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
        Phase::Terminated { exit, started_at } => json!({
            "terminated": terminated_json(exit, *started_at, view.container_id.as_deref())
        }),
    };
    let running = matches!(view.phase, Phase::Running { .. });
    let mut status = json!({
        "name": view.name,
        "image": view.image,
        "imageID": view.image_id.clone().unwrap_or_default(),
        "ready": view.is_ready(),
        "started": running && view.started,
        "restartCount": view.restart_count,
        "state": state,
        "lastState": {},
    });
    if let Some(id) = &view.container_id {
        status["containerID"] = json!(id);
    }
    if let Some((exit, started_at)) = &view.last_exit {
        status["lastState"] = json!({"terminated": terminated_json(exit, *started_at, None)});
    }
    status
}

/// The pod phase from its containers and restart policy.
pub fn pod_phase(views: &[ContainerView], restart_policy: &str) -> &'static str {
    let all_terminated = !views.is_empty()
        && views
            .iter()
            .all(|v| matches!(v.phase, Phase::Terminated { .. }));
    if all_terminated && restart_policy != "Always" {
        let all_succeeded = views.iter().all(|v| match &v.phase {
            Phase::Terminated { exit, .. } => exit.code == 0,
            _ => false,
        });
        return if all_succeeded { "Succeeded" } else { "Failed" };
    }
    let any_started = views.iter().any(|v| {
        matches!(v.phase, Phase::Running { .. } | Phase::Terminated { .. }) || v.restart_count > 0
    });
    if any_started { "Running" } else { "Pending" }
}

fn condition(kind: &str, ok: bool, now: SystemTime, reason: Option<&str>) -> Value {
    let mut condition = json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": time(now),
    });
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    condition
}

/// What a pod's status is made of.
#[derive(Clone, Copy, Debug)]
pub struct PodFacts<'a> {
    /// The pod's containers as the agent sees them.
    pub views: &'a [ContainerView],
    /// `spec.restartPolicy`.
    pub restart_policy: &'a str,
    /// The pod's current status: conditions that did not change keep their transition time,
    /// and conditions the agent does not own (PodScheduled) are kept.
    pub previous: &'a Value,
    /// The node's address.
    pub host_ip: &'a str,
    /// The pod's own address (the node's for pods on the node's network; empty while a
    /// container pod's network is being set up).
    pub pod_ip: &'a str,
    /// For pods on the container runtime: `Some(None)` while it is ready, `Some(Some(why))`
    /// while it is not (reported as the `ContainerRuntimeReady` condition). `None` for others.
    pub container_runtime: Option<Option<&'a str>>,
    /// When the agent started the pod.
    pub started: SystemTime,
    /// Now.
    pub now: SystemTime,
}

/// The full pod status.
pub fn pod_status(facts: &PodFacts<'_>) -> Value {
    let PodFacts {
        views,
        restart_policy,
        previous,
        host_ip,
        pod_ip,
        container_runtime,
        started,
        now,
    } = *facts;
    let phase = pod_phase(views, restart_policy);
    let ready = !views.is_empty() && views.iter().all(ContainerView::is_ready);
    let not_ready_message = (!ready).then(|| {
        let unready: Vec<&ContainerView> = views.iter().filter(|v| !v.is_ready()).collect();
        let names: Vec<&str> = unready.iter().map(|v| v.name.as_str()).collect();
        let mut message = format!("containers with unready status: [{}]", names.join(" "));
        for view in unready {
            if let (Phase::Running { .. }, Some(failure)) = (&view.phase, &view.probe_failure) {
                message.push_str(&format!("; {}: {failure}", view.name));
            }
        }
        message
    });
    let not_ready_reason = (!ready).then(|| {
        if phase == "Succeeded" || phase == "Failed" {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }
    });
    let previous_conditions = previous["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = previous_conditions
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .cloned()
        .collect();
    let mut mine = vec![
        condition("PodReadyToStartContainers", true, now, None),
        condition("Initialized", true, now, None),
        condition("Ready", ready, now, not_ready_reason),
        condition("ContainersReady", ready, now, not_ready_reason),
    ];
    if let Some(message) = &not_ready_message {
        for condition in &mut mine[2..4] {
            condition["message"] = json!(message);
        }
    }
    if let Some(problem) = container_runtime {
        // Containers keep running (and serving) while containerd is away; what cannot happen
        // is starting, restarting or stopping them. The condition says so.
        let mut runtime = condition(
            "ContainerRuntimeReady",
            problem.is_none(),
            now,
            problem.map(|_| "ContainerRuntimeUnavailable"),
        );
        if let Some(problem) = problem {
            runtime["message"] = json!(problem);
        }
        mine.push(runtime);
    }
    for mut fresh in mine {
        if let Some(old) = previous_conditions
            .iter()
            .find(|c| c["type"] == fresh["type"])
            && old["status"] == fresh["status"]
        {
            fresh["lastTransitionTime"] = old["lastTransitionTime"].clone();
        }
        conditions.push(fresh);
    }
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": (!pod_ip.is_empty()).then_some(pod_ip),
        "podIPs": if pod_ip.is_empty() { json!([]) } else { json!([{"ip": pod_ip}]) },
        "startTime": time(started),
        // Set by the API server at create from the containers' requests and limits.
        "qosClass": previous["qosClass"].as_str().unwrap_or("BestEffort"),
        "containerStatuses": views.iter().map(container_status).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase, restart_count: u32) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "img:1".into(),
            image_id: None,
            container_id: Some("wasmtime://x".into()),
            phase,
            last_exit: None,
            restart_count,
            started: true,
            ready: true,
            probe_failure: None,
        }
    }

    fn terminated(code: i32) -> Phase {
        Phase::Terminated {
            exit: Exit {
                code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            },
            started_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn restart_policies_follow_kubernetes() {
        assert!(restarts("Always", 0) && restarts("Always", 1));
        assert!(!restarts("OnFailure", 0) && restarts("OnFailure", 2));
        assert!(!restarts("Never", 0) && !restarts("Never", 1));
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let delays: Vec<u64> = (0..7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn phases_follow_the_containers_and_the_restart_policy() {
        let waiting = Phase::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        let running = Phase::Running {
            started_at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(pod_phase(&[view(waiting.clone(), 0)], "Always"), "Pending");
        assert_eq!(pod_phase(&[view(running, 0)], "Always"), "Running");
        assert_eq!(pod_phase(&[view(terminated(0), 0)], "Never"), "Succeeded");
        assert_eq!(pod_phase(&[view(terminated(3), 0)], "Never"), "Failed");
        assert_eq!(
            pod_phase(&[view(terminated(0), 0)], "OnFailure"),
            "Succeeded"
        );
        // Waiting to restart after a crash is still Running, as in Kubernetes.
        assert_eq!(pod_phase(&[view(waiting, 2)], "Always"), "Running");
    }

    #[test]
    fn status_reports_exit_codes_restarts_and_keeps_the_scheduled_condition() {
        let mut failed = view(terminated(3), 1);
        failed.last_exit = Some((
            Exit {
                code: 3,
                reason: "Error".into(),
                message: None,
                finished_at: SystemTime::UNIX_EPOCH,
            },
            SystemTime::UNIX_EPOCH,
        ));
        let previous = json!({"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:01Z"},
        ]});
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(500);
        let status = pod_status(&PodFacts {
            views: &[failed],
            restart_policy: "Never",
            previous: &previous,
            host_ip: "127.0.0.1",
            pod_ip: "10.88.0.9",
            container_runtime: None,
            started: SystemTime::UNIX_EPOCH,
            now,
        });
        assert_eq!(status["phase"], "Failed");
        assert_eq!(status["hostIP"], "127.0.0.1");
        assert_eq!(status["podIP"], "10.88.0.9");
        let container = &status["containerStatuses"][0];
        assert_eq!(container["state"]["terminated"]["exitCode"], 3);
        assert_eq!(container["lastState"]["terminated"]["exitCode"], 3);
        assert_eq!(container["restartCount"], 1);
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodScheduled",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady"
            ]
        );
        let ready = &status["conditions"][3];
        assert_eq!(ready["reason"], "PodCompleted");
        assert_eq!(
            ready["lastTransitionTime"], "2026-01-01T00:00:01Z",
            "unchanged condition keeps its time"
        );
    }

    #[test]
    fn container_pods_report_whether_their_runtime_is_ready() {
        let running = view(
            Phase::Running {
                started_at: SystemTime::UNIX_EPOCH,
            },
            0,
        );
        let facts = |previous, problem| PodFacts {
            views: std::slice::from_ref(&running),
            restart_policy: "Always",
            previous,
            host_ip: "127.0.0.1",
            pod_ip: "10.88.0.9",
            container_runtime: Some(problem),
            started: SystemTime::UNIX_EPOCH,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
        };
        let runtime_condition = |status: &Value| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "ContainerRuntimeReady")
                .cloned()
                .unwrap()
        };
        let down = pod_status(&facts(&Value::Null, Some("containerd does not answer")));
        let condition = runtime_condition(&down);
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "ContainerRuntimeUnavailable");
        assert_eq!(condition["message"], "containerd does not answer");
        // The containers still run: the pod stays Running and Ready.
        assert_eq!(down["phase"], "Running");
        let up = pod_status(&facts(&down, None));
        assert_eq!(runtime_condition(&up)["status"], "True");
        // Wasm pods have no such condition.
        let wasm = pod_status(&PodFacts {
            container_runtime: None,
            ..facts(&Value::Null, None)
        });
        assert!(
            !wasm["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "ContainerRuntimeReady")
        );
    }

    #[test]
    fn a_running_container_that_its_probes_call_unready_makes_the_pod_unready() {
        let unready = ContainerView {
            ready: false,
            started: false,
            probe_failure: Some(
                "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
            ),
            ..view(
                Phase::Running {
                    started_at: SystemTime::UNIX_EPOCH,
                },
                0,
            )
        };
        let status = pod_status(&PodFacts {
            views: std::slice::from_ref(&unready),
            restart_policy: "Always",
            previous: &Value::Null,
            host_ip: "127.0.0.1",
            pod_ip: "127.0.0.1",
            container_runtime: None,
            started: SystemTime::UNIX_EPOCH,
            now: SystemTime::UNIX_EPOCH,
        });
        assert_eq!(status["phase"], "Running");
        let container = &status["containerStatuses"][0];
        assert_eq!(
            (&container["ready"], &container["started"]),
            (&json!(false), &json!(false))
        );
        for kind in ["Ready", "ContainersReady"] {
            let condition = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap();
            assert_eq!(condition["status"], "False");
            assert_eq!(condition["reason"], "ContainersNotReady");
            assert_eq!(
                condition["message"],
                "containers with unready status: [c]; c: Readiness probe failed: HTTP probe failed with statuscode: 503"
            );
        }
        // A view that its probes call ready is not ready unless it runs.
        let waiting = ContainerView {
            phase: Phase::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            ..view(
                Phase::Running {
                    started_at: SystemTime::UNIX_EPOCH,
                },
                1,
            )
        };
        assert!(!waiting.is_ready());
    }
}
