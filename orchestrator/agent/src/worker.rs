//! Pod workers: one task per pod bound to this node, one task per container.
//!
//! A container task loops: prepare the image, resolve env and volumes, create and start the
//! container, wait for it to exit, then restart it after the CrashLoopBackOff delay if the
//! restart policy says so. It reports every change as a [`ContainerView`]; the pod task turns
//! those into the pod's status. When the pod is being deleted, the pod task tells its
//! containers to stop (SIGTERM, the grace period, then SIGKILL) and, once they have, removes
//! the pod object for good.
//!
//! While a container runs, its probes (see [`crate::probe`]) run beside it in the same task:
//! readiness changes are reported on its view, and a failed liveness or startup probe kills it,
//! after which it restarts like any container that exited. Each failed probe attempt is an
//! `Unhealthy` Event, and a kill a `Killing` one (see [`crate::events`]).
//!
//! Volumes (see [`crate::volumes`]) are set up before a container is created; a volume that
//! cannot be (its Secret is missing, say) keeps the container `ContainerCreating` with a
//! `FailedMount` Event, and is retried every [`CONFIG_RETRY`]. While the pod runs, its
//! ConfigMap and Secret volumes are refreshed every [`volumes::REFRESH_INTERVAL`]; environment
//! variables are not (as in Kubernetes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wharf_apiserver::ApiError;
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType};
use wharf_apiserver::resources;
use wharf_runtime::{
    ContainerConfig, ContainerState, ExecRequest, Exit, HttpHandler, Mount, Runtime, RuntimeError,
    Signal, Stdio,
};

use crate::Agent;
use crate::events::{self, EventRecorder};
use crate::network::{NetworkError, PodNetwork};
use crate::probe::{Action, Outcome, Probes};
use crate::spec;
use crate::status::{self, ContainerView, Phase};
use crate::volumes::{self, MountError, PodVolumes};

/// How soon a container whose configuration or volumes could not be resolved (a missing
/// Secret, say) tries again: soon, so it starts right after the object appears.
pub const CONFIG_RETRY: Duration = Duration::from_secs(2);

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
    /// `spec.hostNetwork`: the pod's containers share the node's network.
    host_network: bool,
    /// The pod's network namespace and IP, once a container that needs them is created.
    network: tokio::sync::OnceCell<PodNetwork>,
    /// Whether a container of the pod runs on the container runtime (so its readiness is
    /// reported on the pod).
    on_container_runtime: std::sync::atomic::AtomicBool,
    /// The pod's volumes under `dir/volumes`.
    volumes: PodVolumes,
    /// Events about the pod, aggregated.
    events: EventRecorder,
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
    let dir = agent
        .config
        .data_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"));
    let context = Arc::new(PodContext {
        volumes: PodVolumes::new(&dir, &namespace),
        events: EventRecorder::new(
            agent.api.clone(),
            &agent.config.node_name,
            &namespace,
            &name,
            &uid,
        ),
        dir,
        restart_policy: pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_owned(),
        host_network: pod["spec"]["hostNetwork"] == true,
        network: tokio::sync::OnceCell::new(),
        on_container_runtime: std::sync::atomic::AtomicBool::new(false),
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
            started: false,
            ready: false,
            probe_failure: None,
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
    let mut runtime_problem = agent.container_runtime_problem();
    let mut volume_refresh = tokio::time::interval(volumes::REFRESH_INTERVAL);
    volume_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let refresh = tokio::select! {
            // ConfigMap and Secret changes reach the files of the running pod.
            _ = volume_refresh.tick(), if !stopping && context.volumes.any() => {
                context.volumes.refresh(agent.api.as_ref()).await;
                false
            }
            Some((index, view)) = reports.recv() => {
                views[index] = view;
                // Take whatever else arrived too, then write once.
                while let Ok((index, view)) = reports.try_recv() {
                    views[index] = view;
                }
                true
            }
            Ok(()) = runtime_problem.changed() => {
                context.on_container_runtime.load(std::sync::atomic::Ordering::Relaxed)
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
                false
            }
            finished = tasks.join_next(), if stopping => {
                if finished.is_none() {
                    break;
                }
                false
            }
        };
        if refresh {
            let status = pod_status(&context, &views, &current_status, started, &runtime_problem);
            if status != current_status {
                match write_status(&context, &status).await {
                    Ok(()) => current_status = status,
                    Err(ApiError::NotFound(_) | ApiError::Conflict(..)) => {}
                    Err(error) => {
                        tracing::warn!(pod = %context.name, %error, "cannot write pod status")
                    }
                }
            }
        }
    }
    // Every container has stopped: remove the pod's network, then the pod for good
    // (Kubernetes' kubelet deletes with a grace period of 0 once the containers are gone).
    if context.network.initialized()
        && let Some(networks) = agent.container_networks()
        && let Err(error) = networks.detach(&context.uid).await
    {
        tracing::warn!(pod = %context.name, %error, "cannot remove the pod network");
    }
    let _ = context
        .agent
        .api
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
    // Unmount the tmpfs of secret volumes first: removal never descends into a mount.
    context.volumes.remove();
    let _ = std::fs::remove_dir_all(&context.dir);
    agent.forget_pod(&uid);
    tracing::info!(pod = %context.name, namespace = %context.namespace, "pod stopped and removed");
}

/// The pod's status from what its containers report and what the node knows.
fn pod_status(
    context: &PodContext,
    views: &[ContainerView],
    current: &Value,
    started: SystemTime,
    runtime_problem: &watch::Receiver<Option<String>>,
) -> Value {
    let agent = &context.agent;
    let problem = runtime_problem.borrow().clone();
    let on_containers = context
        .on_container_runtime
        .load(std::sync::atomic::Ordering::Relaxed);
    let pod_ip = match context.network.get() {
        Some(network) => network.ip.to_string(),
        // A container pod has no address until its network is set up.
        None if on_containers && !context.host_network && agent.container_networks().is_some() => {
            String::new()
        }
        None => agent.config.node_ip.clone(),
    };
    status::pod_status(&status::PodFacts {
        views,
        restart_policy: &context.restart_policy,
        previous: current,
        host_ip: &agent.config.node_ip,
        pod_ip: &pod_ip,
        container_runtime: on_containers.then_some(problem.as_deref()),
        started,
        now: SystemTime::now(),
    })
}

async fn write_status(context: &PodContext, status: &Value) -> Result<(), ApiError> {
    let patch = json!({"metadata": {"uid": context.uid}, "status": status});
    context
        .agent
        .api
        .patch(
            pods(),
            Some(&context.namespace),
            &context.name,
            PatchType::Merge,
            &patch,
            Part::Status,
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
        // Kubernetes says ErrImagePull for any image that cannot be had, missing or broken.
        RuntimeError::ImageNotFound { .. } | RuntimeError::InvalidArtifact { .. } => "ErrImagePull",
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
        if agent.is_container_runtime(&runtime) {
            context
                .on_container_runtime
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let network = match pod_network(&context, &runtime).await {
            Ok(network) => network,
            Err(error) => {
                view.phase = waiting(
                    "ContainerCreating",
                    format!("cannot set up the pod network: {error}"),
                );
                publish(&view).await;
                failures += 1;
                if sleep_or_stop(status::backoff(failures - 1), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let config = match container_config(&context, &pod, &container, &view, network).await {
            Ok(config) => config,
            Err(problem) => {
                let field_path = events::container_field_path(&view.name);
                match problem {
                    // As the kubelet: the pod stays ContainerCreating, the Event says why.
                    ConfigProblem::Mount(error) => {
                        let message = error.event_message();
                        context.events.warning("", "FailedMount", &message).await;
                        view.phase = waiting("ContainerCreating", message);
                    }
                    ConfigProblem::Config(message) => {
                        context
                            .events
                            .warning(&field_path, "Failed", &format!("Error: {message}"))
                            .await;
                        view.phase = waiting("CreateContainerConfigError", message);
                    }
                }
                publish(&view).await;
                if sleep_or_stop(CONFIG_RETRY, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        // Probes that cannot work (no action, an unknown port) are a configuration error, as
        // the API server would have rejected them in Kubernetes.
        if let Err(message) = Probes::of(&container, tokio::time::Instant::now()) {
            view.phase = waiting("CreateContainerConfigError", message);
            publish(&view).await;
            if sleep_or_stop(status::BACKOFF_START, &mut stop).await {
                return;
            }
            continue;
        }
        let id = config.id.clone();
        let started_at = SystemTime::now();
        let run_started = Instant::now();
        // A container that kept running while the agent was away is taken over as it is.
        let resumed = match runtime.state(&id) {
            Some(ContainerState::Running) => true,
            Some(_) => {
                let _ = runtime.delete(&id).await;
                false
            }
            None => false,
        };
        let start = async {
            if resumed {
                tracing::info!(pod = %context.name, container = %view.name, "re-attached to a running container");
                return Ok(());
            }
            runtime.create(config).await?;
            runtime.start(&id).await
        };
        let exit = match start.await {
            Ok(()) => {
                let probes = Probes::of(&container, tokio::time::Instant::now())
                    .expect("probes were checked before the start");
                view.container_id = Some(format!("{}://{id}", runtime.name()));
                view.phase = Phase::Running { started_at };
                view.started = probes.started();
                view.ready = probes.ready();
                publish(&view).await;
                if !resumed {
                    // The kubelet's lifecycle Events (for `kubectl describe`), off the start path.
                    let (context, name, image) =
                        (context.clone(), view.name.clone(), view.image.clone());
                    tokio::spawn(async move {
                        let field = crate::events::container_field_path(&name);
                        let events = &context.events;
                        events
                            .normal(
                                &field,
                                "Pulled",
                                &format!("Container image \"{image}\" already present on machine"),
                            )
                            .await;
                        events
                            .normal(&field, "Created", &format!("Created container {name}"))
                            .await;
                        events
                            .normal(&field, "Started", &format!("Started container {name}"))
                            .await;
                    });
                }
                let handler = runtime.http_handler(&id);
                if let Some(handler) = &handler {
                    agent.add_handler(&context.uid, &view.name, handler.clone());
                }
                let target = ProbeTarget {
                    runtime: runtime.as_ref(),
                    id: &id,
                    container: &container,
                    handler,
                    address: probe_address(&context),
                    on_container_runtime: agent.is_container_runtime(&runtime),
                    client: reqwest::Client::builder()
                        .no_proxy()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap_or_default(),
                };
                let probing = run_probes(probes, &target, &context.events, view.clone(), |view| {
                    let report = report.clone();
                    async move {
                        let _ = report.send((index, view)).await;
                    }
                });
                let exit = tokio::select! {
                    exit = runtime.wait(&id) => exit,
                    grace = stopped(&mut stop) => {
                        agent.remove_handlers(&context.uid);
                        stop_container(runtime.as_ref(), &id, grace).await
                    }
                    (message, grace) = probing => {
                        // Like the kubelet: stop with the probe's grace period, else the pod's,
                        // and show why in lastState.
                        tracing::info!(pod = %context.name, container = %view.name, %message, "killing the container");
                        agent.remove_handlers(&context.uid);
                        let grace = grace.unwrap_or_else(|| pod_grace_period(&pod));
                        stop_container(runtime.as_ref(), &id, grace).await.map(|exit| Exit {
                            reason: "Error".into(),
                            message: Some(message),
                            code: if exit.code == 0 { 137 } else { exit.code },
                            ..exit
                        })
                    }
                };
                view.started = false;
                view.ready = false;
                view.probe_failure = None;
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

/// The pod's `terminationGracePeriodSeconds` (default 30 s).
fn pod_grace_period(pod: &Value) -> Duration {
    Duration::from_secs(
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30),
    )
}

/// Where a container's probes reach it: the pod's own address on its network, else the node's
/// (pods on the node's network).
fn probe_address(context: &PodContext) -> std::net::IpAddr {
    match context.network.get() {
        Some(network) => network.ip,
        None => context
            .agent
            .config
            .node_ip
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
    }
}

/// What the probes of one running container check against.
struct ProbeTarget<'a> {
    runtime: &'a dyn Runtime,
    id: &'a str,
    container: &'a Value,
    /// The container's in-process HTTP handler (Wasm HTTP components): `httpGet` goes there,
    /// the same path the gateway takes.
    handler: Option<Arc<dyn HttpHandler>>,
    /// The pod's address, for `httpGet` and `tcpSocket` on the container runtime.
    address: std::net::IpAddr,
    on_container_runtime: bool,
    /// For `httpGet` over the network: no proxy, and redirects are answers (3xx is success).
    client: reqwest::Client,
}

impl ProbeTarget<'_> {
    /// Runs one check: `Ok` on success, else why it failed (Kubernetes' wording where it has
    /// one).
    async fn check(&self, action: &Action, timeout: Duration) -> Result<(), String> {
        match action {
            Action::Http {
                path,
                port,
                headers,
                scheme,
            } => {
                if scheme != "HTTP" {
                    return Err(format!("scheme {scheme} is not supported (only HTTP)"));
                }
                let port = port.resolve(self.container)?;
                let code =
                    match &self.handler {
                        Some(handler) => {
                            self.http_in_process(handler.as_ref(), path, port, headers)
                                .await?
                        }
                        None if self.on_container_runtime => {
                            self.http_over_network(path, port, headers, timeout).await?
                        }
                        None => return Err(
                            "the container serves no HTTP in process, so it has no httpGet target"
                                .into(),
                        ),
                    };
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            }
            Action::Tcp { port } => {
                if !self.on_container_runtime {
                    return Err(
                        "tcpSocket probes are not supported for Wasm containers (use httpGet)"
                            .into(),
                    );
                }
                let port = port.resolve(self.container)?;
                let address = std::net::SocketAddr::new(self.address, port);
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(format!("dial tcp {address}: {error}")),
                    Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
                }
            }
            Action::Exec { command } => {
                match self
                    .runtime
                    .exec(self.id, ExecRequest::new(command.clone(), timeout))
                    .await
                {
                    Ok(output) if output.exit_code == 0 => Ok(()),
                    Ok(output) => {
                        let said = if output.stderr.is_empty() {
                            &output.stdout
                        } else {
                            &output.stderr
                        };
                        Err(format!(
                            "command {command:?} exited with {}: {}",
                            output.exit_code,
                            String::from_utf8_lossy(said).trim()
                        ))
                    }
                    Err(RuntimeError::Unsupported(why)) => Err(format!(
                        "exec probes are not supported on the {} runtime: {why}",
                        self.runtime.name()
                    )),
                    Err(error) => Err(format!("command {command:?} failed: {error}")),
                }
            }
        }
    }

    async fn http_in_process(
        &self,
        handler: &dyn HttpHandler,
        path: &str,
        port: u16,
        headers: &[(String, String)],
    ) -> Result<u16, String> {
        use http_body_util::BodyExt;
        let mut request = http::Request::get(path)
            .header(http::header::HOST, format!("{}:{port}", self.address))
            .header(http::header::USER_AGENT, "kube-probe/wharf");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let body = http_body_util::Empty::<bytes::Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = request
            .body(body)
            .map_err(|e| format!("invalid probe request: {e}"))?;
        Ok(handler.handle(request).await.status().as_u16())
    }

    async fn http_over_network(
        &self,
        path: &str,
        port: u16,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<u16, String> {
        let url = format!(
            "http://{}{path}",
            std::net::SocketAddr::new(self.address, port)
        );
        let mut request = self
            .client
            .get(&url)
            .timeout(timeout)
            .header("User-Agent", "kube-probe/wharf");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) if error.is_timeout() => Err(format!(
                "Get \"{url}\": context deadline exceeded (timeout {}s)",
                timeout.as_secs()
            )),
            Err(error) => Err(format!("Get \"{url}\": {error}")),
        }
    }
}

/// Runs a container's probes until one says to kill it; returns why, and the probe's own
/// grace period if it has one. Reports every change of the view's `started`/`ready` through
/// `publish`. Never returns for a container without liveness or startup probes (the caller
/// drops it when the container stops).
async fn run_probes<F, Fut>(
    mut probes: Probes,
    target: &ProbeTarget<'_>,
    events: &EventRecorder,
    mut view: ContainerView,
    publish: F,
) -> (String, Option<Duration>)
where
    F: Fn(ContainerView) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut failed_kind = None;
    loop {
        let Some((at, kind)) = probes.next_due() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at).await;
        let Some(probe) = probes.probe(kind).cloned() else {
            return std::future::pending().await;
        };
        let ran = tokio::time::Instant::now();
        let result =
            match tokio::time::timeout(probe.timeout, target.check(&probe.action, probe.timeout))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "timeout: no answer within {}s",
                    probe.timeout.as_secs()
                )),
            };
        // The last failure stays on the view until the probe that failed succeeds again.
        let mut failure = view.probe_failure.clone();
        match &result {
            Err(why) => {
                tracing::info!(container = %view.name, probe = kind.title(), %why, "probe failed");
                let message = format!("{} probe failed: {why}", kind.title());
                events
                    .warning(
                        &events::container_field_path(&view.name),
                        "Unhealthy",
                        &message,
                    )
                    .await;
                failure = Some(message);
                failed_kind = Some(kind);
            }
            Ok(()) if failed_kind == Some(kind) => {
                failure = None;
                failed_kind = None;
            }
            Ok(()) => {}
        }
        match probes.record(kind, ran, result) {
            Outcome::Kill { message, grace } => {
                let probe_name = kind.title().to_lowercase();
                events
                    .normal(
                        &events::container_field_path(&view.name),
                        "Killing",
                        &format!(
                            "Container {} failed {probe_name} probe, will be restarted",
                            view.name
                        ),
                    )
                    .await;
                return (message, grace);
            }
            Outcome::Ready(_) | Outcome::Unchanged => {
                let now = (probes.started(), probes.ready(), failure);
                if (view.started, view.ready, &view.probe_failure) != (now.0, now.1, &now.2) {
                    (view.started, view.ready, view.probe_failure) = now;
                    publish(view.clone()).await;
                }
            }
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

/// The pod's network for a container on `runtime`: created with the first container that
/// needs one (container runtimes, unless `hostNetwork`), shared by the others.
async fn pod_network(
    context: &PodContext,
    runtime: &Arc<dyn Runtime>,
) -> Result<Option<PodNetwork>, NetworkError> {
    if context.host_network {
        return Ok(None);
    }
    let Some(networks) = context.agent.pod_networks_for(runtime) else {
        return Ok(None);
    };
    let network = context
        .network
        .get_or_try_init(|| networks.attach(&context.uid))
        .await?;
    Ok(Some(network.clone()))
}

/// The pod's `/etc/hosts` (the kubelet writes one per pod too): localhost and the pod's own
/// name at its IP.
fn hosts_file(context: &PodContext, network: &PodNetwork) -> Result<Mount, String> {
    let path = context.dir.join("etc-hosts");
    let text = format!(
        "# Kubernetes-managed hosts file (written by the Wharf agent).\n\
         127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
        network.ip, context.name
    );
    std::fs::create_dir_all(&context.dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| format!("cannot write the pod's hosts file: {e}"))?;
    Ok(Mount {
        host_path: path,
        container_path: "/etc/hosts".into(),
        read_only: false,
    })
}

/// Why a container cannot be created yet.
enum ConfigProblem {
    /// Its configuration (env, probes): `CreateContainerConfigError`.
    Config(String),
    /// One of its volumes: `ContainerCreating` and a `FailedMount` Event.
    Mount(MountError),
}

impl From<String> for ConfigProblem {
    fn from(message: String) -> Self {
        ConfigProblem::Config(message)
    }
}

async fn container_config(
    context: &PodContext,
    pod: &Value,
    container: &Value,
    view: &ContainerView,
    network: Option<PodNetwork>,
) -> Result<ContainerConfig, ConfigProblem> {
    let agent = &context.agent;
    // Volumes first, as the kubelet does: a pod whose volumes cannot be set up stays
    // ContainerCreating even if its environment is broken too.
    let mut mounts = spec::mounts(&context.volumes, agent.api.as_ref(), pod, container)
        .await
        .map_err(ConfigProblem::Mount)?;
    // Kubernetes gives every container HOSTNAME (the pod name) before its own variables.
    let mut env = vec![("HOSTNAME".to_owned(), context.name.clone())];
    let pod_ip = network
        .as_ref()
        .map_or_else(|| agent.config.node_ip.clone(), |n| n.ip.to_string());
    let own = spec::environment(
        agent.api.as_ref(),
        pod,
        container,
        &agent.config.node_ip,
        &pod_ip,
    )
    .await?;
    if pod["spec"]["enableServiceLinks"] != false {
        let services = agent
            .api
            .list(
                resources::find("", "v1", "services").expect("served"),
                Some(&context.namespace),
                None,
            )
            .await
            .map_err(|e| format!("cannot list the namespace's Services: {e}"))?;
        env.extend(
            spec::service_links(&services.items)
                .into_iter()
                .filter(|(name, _)| !own.iter().any(|(n, _)| n == name)),
        );
    }
    env.extend(own);
    if let Some(network) = &network
        && !mounts.iter().any(|m| m.container_path == "/etc/hosts")
    {
        mounts.push(hosts_file(context, network)?);
    }
    let annotations = &pod["metadata"]["annotations"];
    let request_timeout = annotations["wharf.dev/request-timeout-seconds"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    Ok(ContainerConfig {
        id: format!("{}-{}-{}", context.uid, view.name, view.restart_count),
        image: view.image.clone(),
        command: spec::strings(container, "command"),
        args: spec::strings(container, "args"),
        working_dir: container["workingDir"]
            .as_str()
            .filter(|dir| !dir.is_empty())
            .map(str::to_owned),
        run_as: spec::run_as(pod, container),
        env,
        mounts,
        network_namespace: network.map(|n| n.netns),
        limits: spec::limits(container),
        log_path: context
            .dir
            .join(&view.name)
            .join(format!("{}.log", view.restart_count)),
        allow_outgoing_http: annotations["wharf.dev/outgoing-http"] != "deny",
        request_timeout,
        stdio: Stdio {
            stdin: container["stdin"].as_bool() == Some(true),
            stdin_once: container["stdinOnce"].as_bool() == Some(true),
            tty: container["tty"].as_bool() == Some(true),
        },
    })
}
