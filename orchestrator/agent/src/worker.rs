//! Pod workers: one task per pod bound to this node, one task per container.
//!
//! A container task loops: prepare the image, resolve env and volumes, create and start the
//! container, wait for it to exit, then restart it after the CrashLoopBackOff delay if the
//! restart policy says so. It reports every change as a [`ContainerView`]; the pod task turns
//! those into the pod's status. When the pod is being deleted, the pod task tells its
//! containers to stop (SIGTERM, the grace period, then SIGKILL) and, once they have, removes
//! the pod object for good.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wharf_apiserver::ApiError;
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType, WriteOptions};
use wharf_apiserver::resources;
use wharf_runtime::{ContainerConfig, Exit, Runtime, RuntimeError, Signal};

use crate::Agent;
use crate::spec;
use crate::status::{self, ContainerView, Phase};

/// The latest pod object, or `None` once it is gone from the API.
pub type PodUpdates = watch::Receiver<Option<Value>>;

fn pods() -> &'static resources::Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// Everything a container task needs about its pod.
struct PodContext {
    agent: Arc<Agent>,
    uid: String,
    namespace: String,
    name: String,
    dir: PathBuf,
    restart_policy: String,
}

/// Runs a pod until it is deleted.
pub async fn run_pod(agent: Arc<Agent>, mut updates: PodUpdates) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let text = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (uid, namespace, name) = (
        text("/metadata/uid"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    );
    let context = Arc::new(PodContext {
        dir: agent
            .config
            .data_dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}")),
        restart_policy: pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_owned(),
        agent: agent.clone(),
        uid: uid.clone(),
        namespace,
        name,
    });
    let started = SystemTime::now();
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (report, mut reports) = mpsc::channel::<(usize, ContainerView)>(64);
    let (stop, stop_signal) = watch::channel(None::<Duration>);
    let mut tasks = tokio::task::JoinSet::new();
    let mut views: Vec<ContainerView> = Vec::new();
    for (index, container) in containers.iter().enumerate() {
        let previous_restarts = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["name"] == container["name"]))
            .and_then(|s| s["restartCount"].as_u64())
            .unwrap_or(0) as u32;
        let view = ContainerView {
            name: container["name"].as_str().unwrap_or("").to_owned(),
            image: container["image"].as_str().unwrap_or("").to_owned(),
            image_id: None,
            container_id: None,
            phase: Phase::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_exit: None,
            restart_count: previous_restarts,
        };
        views.push(view.clone());
        tasks.spawn(run_container(
            context.clone(),
            pod.clone(),
            container.clone(),
            index,
            view,
            report.clone(),
            stop_signal.clone(),
        ));
    }
    drop(report);
    let mut current_status = pod["status"].clone();
    let mut stopping = false;
    loop {
        tokio::select! {
            Some((index, view)) = reports.recv() => {
                views[index] = view;
                // Take whatever else arrived too, then write once.
                while let Ok((index, view)) = reports.try_recv() {
                    views[index] = view;
                }
                let status = status::pod_status(
                    &views,
                    &context.restart_policy,
                    &current_status,
                    &agent.config.node_ip,
                    started,
                    SystemTime::now(),
                );
                if status != current_status {
                    match write_status(&context, &status).await {
                        Ok(()) => current_status = status,
                        Err(ApiError::NotFound(_) | ApiError::Conflict(..)) => {}
                        Err(error) => tracing::warn!(pod = %context.name, %error, "cannot write pod status"),
                    }
                }
            }
            changed = updates.changed(), if !stopping => {
                let latest = if changed.is_ok() { updates.borrow_and_update().clone() } else { None };
                match latest {
                    None => {
                        // Gone from the API (e.g. force-deleted): stop at once.
                        stopping = true;
                        let _ = stop.send(Some(Duration::ZERO));
                    }
                    Some(pod) if pod.pointer("/metadata/deletionTimestamp").is_some() => {
                        stopping = true;
                        let grace = pod.pointer("/metadata/deletionGracePeriodSeconds")
                            .and_then(Value::as_u64)
                            .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_u64))
                            .unwrap_or(30);
                        let _ = stop.send(Some(Duration::from_secs(grace)));
                    }
                    Some(_) => {}
                }
            }
            finished = tasks.join_next(), if stopping => {
                if finished.is_none() {
                    break;
                }
            }
        }
    }
    // Every container has stopped: remove the pod for good (Kubernetes' kubelet deletes with
    // a grace period of 0 once the containers are gone).
    let _ = context
        .agent
        .registry
        .delete(
            pods(),
            Some(&context.namespace),
            &context.name,
            &DeleteOptions {
                grace_period_seconds: Some(0),
                precondition_uid: Some(context.uid.clone()),
                ..DeleteOptions::default()
            },
        )
        .await;
    let _ = std::fs::remove_dir_all(&context.dir);
    agent.forget_pod(&uid);
    tracing::info!(pod = %context.name, namespace = %context.namespace, "pod stopped and removed");
}

async fn write_status(context: &PodContext, status: &Value) -> Result<(), ApiError> {
    let patch = json!({"metadata": {"uid": context.uid}, "status": status});
    context
        .agent
        .registry
        .patch(
            pods(),
            Some(&context.namespace),
            &context.name,
            PatchType::Merge,
            &patch,
            Part::Status,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// Waits for the stop signal; returns its grace period.
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Sleeps for `delay` unless stopped first; returns whether it was stopped.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stopped(stop) => true,
    }
}

fn waiting(reason: &str, message: impl Into<String>) -> Phase {
    Phase::Waiting {
        reason: reason.to_owned(),
        message: Some(message.into()),
    }
}

/// The reason Kubernetes shows for a runtime error while preparing or starting.
fn waiting_reason(error: &RuntimeError) -> &'static str {
    match error {
        RuntimeError::ImageNotFound { .. } => "ErrImagePull",
        RuntimeError::InvalidArtifact { .. } => "InvalidImageName",
        RuntimeError::StartFailed(_) => "CreateContainerError",
        RuntimeError::Unavailable(_) => "RuntimeUnavailable",
        _ => "CreateContainerError",
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_container(
    context: Arc<PodContext>,
    pod: Value,
    container: Value,
    index: usize,
    mut view: ContainerView,
    report: mpsc::Sender<(usize, ContainerView)>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let publish = |view: &ContainerView| {
        let report = report.clone();
        let view = view.clone();
        async move {
            let _ = report.send((index, view)).await;
        }
    };
    publish(&view).await;
    let agent = &context.agent;
    let mut failures = 0u32;
    loop {
        // Which runtime, and the image ready on it.
        let runtime = match agent.runtime_for(&pod, &view.image).await {
            Ok(runtime) => runtime,
            Err(error) => {
                view.phase = waiting(waiting_reason(&error), error.to_string());
                publish(&view).await;
                failures += 1;
                if sleep_or_stop(status::backoff(failures - 1), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let config = match container_config(&context, &pod, &container, &view).await {
            Ok(config) => config,
            Err(message) => {
                view.phase = waiting("CreateContainerConfigError", message);
                publish(&view).await;
                if sleep_or_stop(status::BACKOFF_START, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let id = config.id.clone();
        let started_at = SystemTime::now();
        let run_started = Instant::now();
        let start = async {
            runtime.create(config).await?;
            runtime.start(&id).await
        };
        let exit = match start.await {
            Ok(()) => {
                view.container_id = Some(format!("{}://{id}", runtime.name()));
                view.phase = Phase::Running { started_at };
                publish(&view).await;
                if let Some(handler) = runtime.http_handler(&id) {
                    agent.add_handler(&context.uid, &view.name, handler);
                }
                let exit = tokio::select! {
                    exit = runtime.wait(&id) => exit,
                    grace = stopped(&mut stop) => {
                        agent.remove_handlers(&context.uid);
                        stop_container(runtime.as_ref(), &id, grace).await
                    }
                };
                agent.remove_handlers(&context.uid);
                exit.unwrap_or_else(|e| Exit {
                    code: 128,
                    reason: "Error".into(),
                    message: Some(e.to_string()),
                    finished_at: SystemTime::now(),
                })
            }
            Err(error) => Exit {
                code: 128,
                reason: "StartError".into(),
                message: Some(error.to_string()),
                finished_at: SystemTime::now(),
            },
        };
        let _ = runtime.delete(&id).await;
        let stopping = stop.borrow().is_some();
        if stopping || !status::restarts(&context.restart_policy, exit.code) {
            view.phase = Phase::Terminated { exit, started_at };
            publish(&view).await;
            let _ = stopped(&mut stop).await;
            return;
        }
        // Restart after the backoff; a container that ran long enough starts over at 10 s.
        if run_started.elapsed() >= status::BACKOFF_RESET_AFTER {
            failures = 0;
        }
        let delay = status::backoff(failures);
        failures += 1;
        view.last_exit = Some((exit, started_at));
        view.restart_count += 1;
        view.phase = waiting(
            "CrashLoopBackOff",
            format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                delay.as_secs(),
                view.name,
                context.name,
                context.namespace,
                context.uid
            ),
        );
        publish(&view).await;
        if sleep_or_stop(delay, &mut stop).await {
            return;
        }
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
async fn stop_container(
    runtime: &dyn Runtime,
    id: &str,
    grace: Duration,
) -> Result<Exit, RuntimeError> {
    if !grace.is_zero() {
        let _ = runtime.kill(id, Signal::Terminate).await;
        if let Ok(exit) = tokio::time::timeout(grace, runtime.wait(id)).await {
            return exit;
        }
    }
    let _ = runtime.kill(id, Signal::Kill).await;
    runtime.wait(id).await
}

async fn container_config(
    context: &PodContext,
    pod: &Value,
    container: &Value,
    view: &ContainerView,
) -> Result<ContainerConfig, String> {
    let agent = &context.agent;
    // Kubernetes gives every container HOSTNAME (the pod name) before its own variables.
    let mut env = vec![("HOSTNAME".to_owned(), context.name.clone())];
    env.extend(spec::environment(&agent.registry, pod, container, &agent.config.node_ip).await?);
    let mounts = spec::mounts(&agent.registry, pod, container, &context.dir).await?;
    let annotations = &pod["metadata"]["annotations"];
    let request_timeout = annotations["wharf.dev/request-timeout-seconds"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    Ok(ContainerConfig {
        id: format!("{}-{}-{}", context.uid, view.name, view.restart_count),
        image: view.image.clone(),
        args: spec::args(container),
        env,
        mounts,
        limits: spec::limits(container),
        log_path: context
            .dir
            .join(&view.name)
            .join(format!("{}.log", view.restart_count)),
        allow_outgoing_http: annotations["wharf.dev/outgoing-http"] != "deny",
        request_timeout,
    })
}
