//! Wharf's node agent: what the kubelet does, for Wasm pods and (later) containers alike.
//!
//! It registers its Node and renews a Lease, watches the pods bound to it and runs one
//! [`worker`] per pod, reports pod status, applies restart policies with CrashLoopBackOff,
//! stops pods with their grace period, captures logs and serves them ([`logs`]). The runtimes
//! only execute; probes, restarts, secrets and config are decided here, once, for both.

pub mod events;
pub mod images;
pub mod logs;
pub mod network;
pub mod probe;
pub mod spdy;
pub mod spec;
pub mod stats;
pub mod status;
pub mod streams;
pub mod volumes;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use wharf_apiserver::ApiError;
use wharf_apiserver::client::ClusterApi;
use wharf_apiserver::registry::{Part, PatchType};
use wharf_apiserver::resources;
use wharf_runtime::{HttpHandler, Runtime, RuntimeError};
use wharf_store::EventKind;

/// How often the node's Lease is renewed (Kubernetes' kubelet: every 10 s, 40 s lease).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the container runtime is asked whether it is ready.
pub const RUNTIME_CHECK: Duration = Duration::from_secs(1);

/// Settings of one node agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node name.
    pub node_name: String,
    /// The node's IP (the gateway's), reported as hostIP/podIP and the node address.
    pub node_ip: String,
    /// The port of the agent's own HTTP endpoint (logs).
    pub agent_port: u16,
    /// Where pod directories, logs and volumes live.
    pub data_dir: PathBuf,
    /// Why containers cannot run here, if they cannot (e.g. `--containerd off`).
    pub containers_unavailable: Option<String>,
}

/// In-process HTTP handlers of running pods: pod uid → (container name, handler).
type PodHandlers = HashMap<String, Vec<(String, Arc<dyn HttpHandler>)>>;

/// Imports OCI image archives into the container runtime (containerd), for images uploaded to
/// the control plane with `wharf image import`.
#[async_trait::async_trait]
pub trait ImageImporter: Send + Sync {
    /// Imports the archive at `path`; returns the names of the images in it.
    async fn import(&self, archive: &std::path::Path) -> Result<Vec<String>, RuntimeError>;
}

/// The node's container runtime, with where its images come from.
#[derive(Clone)]
pub struct ContainerRuntime {
    /// The runtime (containerd).
    pub runtime: Arc<dyn Runtime>,
    /// Imports archives into it.
    pub importer: Arc<dyn ImageImporter>,
    /// The pod networks its containers join; `None` runs them on the node's network.
    pub networks: Option<Arc<network::PodNetworks>>,
}

struct PodEntry {
    namespace: String,
    name: String,
    updates: watch::Sender<Option<Value>>,
}

/// A node agent.
pub struct Agent {
    /// The API (in process).
    pub api: Arc<dyn ClusterApi>,
    /// Its settings.
    pub config: AgentConfig,
    wasm: Arc<dyn Runtime>,
    containers: Option<ContainerRuntime>,
    pods: Mutex<HashMap<String, PodEntry>>,
    handlers: Mutex<PodHandlers>,
    /// Why the container runtime is not ready; `None` while it is.
    container_runtime_problem: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

fn node_resource() -> &'static resources::Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

impl Agent {
    /// An agent with its runtimes.
    pub fn new(
        api: Arc<dyn ClusterApi>,
        config: AgentConfig,
        wasm: Arc<dyn Runtime>,
        containers: Option<ContainerRuntime>,
    ) -> Arc<Agent> {
        Arc::new(Agent {
            api,
            config,
            wasm,
            containers,
            pods: Mutex::new(HashMap::new()),
            handlers: Mutex::new(HashMap::new()),
            container_runtime_problem: watch::channel(None).0,
        })
    }

    /// The in-process HTTP handlers of a running pod, by container name.
    pub fn http_handlers(&self, pod_uid: &str) -> Vec<(String, Arc<dyn HttpHandler>)> {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pod_uid)
            .cloned()
            .unwrap_or_default()
    }

    fn add_handler(&self, pod_uid: &str, container: &str, handler: Arc<dyn HttpHandler>) {
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        let list = handlers.entry(pod_uid.to_owned()).or_default();
        list.retain(|(name, _)| name != container);
        list.push((container.to_owned(), handler));
    }

    fn remove_handlers(&self, pod_uid: &str) {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_uid);
    }

    fn forget_pod(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        self.remove_handlers(uid);
    }

    /// The runtimes of this node (Wasm first, then containers if there are any).
    pub fn runtimes(&self) -> Vec<Arc<dyn Runtime>> {
        let mut runtimes = vec![self.wasm.clone()];
        runtimes.extend(self.containers.as_ref().map(|c| c.runtime.clone()));
        runtimes
    }

    /// The pods this agent runs: uid → (namespace, name).
    pub fn pod_names(&self) -> HashMap<String, (String, String)> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter()
            .map(|(uid, p)| (uid.clone(), (p.namespace.clone(), p.name.clone())))
            .collect()
    }

    /// Whether run `restart` of container `container` of the pod in `pod_dir` is running (its
    /// runtime id is `POD_UID-CONTAINER-RESTART`; the pod dir is `NAMESPACE_NAME_UID`).
    pub fn runs_container(
        &self,
        pod_dir: &std::path::Path,
        container: &str,
        restart: &str,
    ) -> bool {
        let Some(uid) = pod_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('_').next())
        else {
            return false;
        };
        let id = format!("{uid}-{container}-{restart}");
        self.runtimes()
            .iter()
            .any(|r| matches!(r.state(&id), Some(wharf_runtime::ContainerState::Running)))
    }

    /// The directory of a pod running here, by namespace and name.
    pub fn pod_dir(&self, namespace: &str, name: &str) -> Option<PathBuf> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter()
            .find(|(_, p)| p.namespace == namespace && p.name == name)
            .map(|(uid, _)| {
                self.config
                    .data_dir
                    .join("pods")
                    .join(format!("{namespace}_{name}_{uid}"))
            })
    }

    /// Chooses the runtime for a pod's image and prepares the image on it.
    ///
    /// `spec.runtimeClassName` decides when set; an artifact that contradicts it is an error.
    /// Without it, an image that is Wasm runs on wasmtime and anything else on containerd.
    pub async fn runtime_for(
        &self,
        pod: &Value,
        image: &str,
    ) -> Result<Arc<dyn Runtime>, RuntimeError> {
        let class = pod["spec"]["runtimeClassName"].as_str();
        let containers = || {
            self.containers.clone().ok_or_else(|| {
                RuntimeError::Unavailable(
                    self.config
                        .containers_unavailable
                        .clone()
                        .unwrap_or_else(|| "this node has no container runtime".into()),
                )
            })
        };
        match class {
            Some("wasmtime") => {
                self.wasm.prepare(image).await.map_err(|e| match e {
                    RuntimeError::InvalidArtifact { image, detail } => {
                        RuntimeError::InvalidArtifact {
                            image,
                            detail: format!("runtimeClassName is wasmtime, but {detail}"),
                        }
                    }
                    other => other,
                })?;
                Ok(self.wasm.clone())
            }
            Some("runc") => {
                let containers = containers()?;
                self.prepare_container_image(&containers, image).await?;
                Ok(containers.runtime)
            }
            Some(other) => Err(RuntimeError::Unavailable(format!(
                "RuntimeClass {other:?} is not supported by node {} (it runs wasmtime and runc)",
                self.config.node_name
            ))),
            None => match self.wasm.prepare(image).await {
                Ok(()) => Ok(self.wasm.clone()),
                Err(RuntimeError::ImageNotFound { .. } | RuntimeError::InvalidArtifact { .. })
                    if self.containers.is_some() =>
                {
                    let containers = containers()?;
                    self.prepare_container_image(&containers, image).await?;
                    Ok(containers.runtime)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Prepares a container image, first importing it from the control plane's artifact store
    /// (`wharf image import`) if the runtime does not have it.
    async fn prepare_container_image(
        &self,
        containers: &ContainerRuntime,
        image: &str,
    ) -> Result<(), RuntimeError> {
        let missing = match containers.runtime.prepare(image).await {
            Err(missing @ RuntimeError::ImageNotFound { .. }) => missing,
            other => return other,
        };
        let Some(archive) = self
            .api
            .artifact(image)
            .await
            .map_err(|e| RuntimeError::Other(e.to_string()))?
        else {
            return Err(missing);
        };
        let dir = self.config.data_dir.join("image-imports");
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Other(e.to_string()))?;
        let path = dir.join(format!("{}.tar", uuid_like()));
        std::fs::write(&path, &archive).map_err(|e| RuntimeError::Other(e.to_string()))?;
        let imported = containers.importer.import(&path).await;
        let _ = std::fs::remove_file(&path);
        let names = imported.map_err(|error| {
            let detail = match error {
                RuntimeError::InvalidArtifact { detail, .. } => detail,
                other => other.to_string(),
            };
            RuntimeError::InvalidArtifact {
                image: image.to_owned(),
                detail: format!(
                    "the archive uploaded with `wharf image import` is damaged: {detail}"
                ),
            }
        })?;
        tracing::info!(
            image,
            ?names,
            "imported the image archive from the control plane"
        );
        containers.runtime.prepare(image).await
    }

    /// The Node object this agent registers.
    pub fn node_object(&self) -> Value {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory = memory_bytes();
        let mut runtimes = vec!["wasmtime"];
        if self.containers.is_some() {
            runtimes.push("runc");
        }
        let capacity = json!({
            "cpu": cpus.to_string(),
            "memory": format!("{}Ki", memory / 1024),
            // Wasm pods cost about 0.1 MiB idle: density is the point, so the node takes far
            // more than Kubernetes' 110.
            "pods": "10000",
        });
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": self.config.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.config.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": std::env::consts::ARCH,
                    "wharf.dev/runtimes": runtimes.join("."),
                },
                "annotations": {"wharf.dev/runtime-classes": runtimes.join(",")},
            },
            "spec": {},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": self.config.node_ip},
                    {"type": "Hostname", "address": self.config.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.agent_port}},
                "conditions": self.node_conditions(),
                "nodeInfo": {
                    "kubeletVersion": "v1.37.0-wharf",
                    "containerRuntimeVersion": format!("wasmtime://48.0.8{}", if self.containers.is_some() { ",containerd://1.6" } else { "" }),
                    "operatingSystem": "linux",
                    "architecture": std::env::consts::ARCH,
                    "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
                    "osImage": os_image(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
                    "machineID": read_trimmed("/etc/machine-id"),
                    "systemUUID": "",
                    "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
                    "kubeProxyVersion": "",
                },
            },
        })
    }

    /// The node's conditions: Ready (the agent runs; Wasm pods can always start), and, with a
    /// container runtime, ContainerRuntimeReady (whether containerd answers).
    fn node_conditions(&self) -> Value {
        let now = wharf_apiserver::meta::now_rfc3339();
        let mut conditions = vec![json!({
            "type": "Ready", "status": "True", "reason": "WharfAgentReady",
            "message": "the Wharf agent is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })];
        if self.containers.is_some() {
            let problem = self.container_runtime_problem.borrow().clone();
            conditions.push(json!({
                "type": "ContainerRuntimeReady",
                "status": if problem.is_none() { "True" } else { "False" },
                "reason": if problem.is_none() { "ContainerdReady" } else { "ContainerdUnavailable" },
                "message": problem.unwrap_or_else(|| "containerd answers".into()),
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }));
        }
        json!(conditions)
    }

    /// Why the container runtime cannot take work now (`None`: it can), to watch.
    pub fn container_runtime_problem(&self) -> watch::Receiver<Option<String>> {
        self.container_runtime_problem.subscribe()
    }

    /// Asks the container runtime whether it is ready; on a change, reports it on the Node
    /// (and, through [`Agent::container_runtime_problem`], on the pods that use it).
    async fn check_container_runtime(&self) {
        let Some(containers) = &self.containers else {
            return;
        };
        let problem = containers
            .runtime
            .ready()
            .await
            .err()
            .map(|e| e.to_string());
        let changed = self.container_runtime_problem.send_if_modified(|current| {
            let changed = *current != problem;
            *current = problem.clone();
            changed
        });
        if !changed {
            return;
        }
        match &problem {
            Some(problem) => tracing::warn!(%problem, "the container runtime is not ready"),
            None => tracing::info!("the container runtime is ready again"),
        }
        let patch = json!({"status": {"conditions": self.node_conditions()}});
        if let Err(error) = self
            .api
            .patch(
                node_resource(),
                None,
                &self.config.node_name,
                PatchType::Merge,
                &patch,
                Part::Status,
            )
            .await
        {
            tracing::warn!(%error, "cannot report the container runtime on the node");
        }
    }

    /// After the node was cut off (the node lifecycle controller marked it `Ready=Unknown`)
    /// and reached the API again, says Ready once more, as the kubelet re-posts its status.
    async fn repost_ready_if_lost(&self) {
        let Ok(node) = self
            .api
            .get(node_resource(), None, &self.config.node_name)
            .await
        else {
            return;
        };
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True");
        if ready {
            return;
        }
        let patch = json!({"status": {"conditions": self.node_conditions()}});
        match self
            .api
            .patch(
                node_resource(),
                None,
                &self.config.node_name,
                PatchType::Merge,
                &patch,
                Part::Status,
            )
            .await
        {
            Ok(_) => tracing::info!("the node is Ready again"),
            Err(error) => tracing::warn!(%error, "cannot report the node Ready"),
        }
    }

    /// Whether `runtime` is the node's container runtime.
    fn is_container_runtime(&self, runtime: &Arc<dyn Runtime>) -> bool {
        self.containers
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(runtime, &c.runtime))
    }

    /// Registers (or refreshes) the Node.
    pub async fn register_node(&self) -> Result<(), ApiError> {
        let node = self.node_object();
        let nodes = node_resource();
        match self.api.create(nodes, None, node.clone()).await {
            Ok(_) => Ok(()),
            Err(ApiError::AlreadyExists(_)) => {
                let patch = json!({"metadata": {"labels": node["metadata"]["labels"]}});
                self.api
                    .patch(
                        nodes,
                        None,
                        &self.config.node_name,
                        PatchType::Merge,
                        &patch,
                        Part::Main,
                    )
                    .await?;
                let status = json!({"status": node["status"]});
                self.api
                    .patch(
                        nodes,
                        None,
                        &self.config.node_name,
                        PatchType::Merge,
                        &status,
                        Part::Status,
                    )
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        }
    }

    async fn renew_lease(&self) -> Result<(), ApiError> {
        let leases = resources::find("coordination.k8s.io", "v1", "leases").expect("served");
        let now = wharf_apiserver::meta::now();
        let renew = now.strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string();
        let name = &self.config.node_name;
        let patch = json!({"spec": {"renewTime": renew, "holderIdentity": name, "leaseDurationSeconds": 40}});
        match self
            .api
            .patch(
                leases,
                Some("kube-node-lease"),
                name,
                PatchType::Merge,
                &patch,
                Part::Main,
            )
            .await
        {
            Err(ApiError::NotFound(_)) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": patch["spec"],
                });
                self.api
                    .create(leases, Some("kube-node-lease"), lease)
                    .await
                    .map(drop)
            }
            other => other.map(drop),
        }
    }

    /// The node's pod networks, if its containers get their own.
    pub fn container_networks(&self) -> Option<&Arc<network::PodNetworks>> {
        self.containers.as_ref()?.networks.as_ref()
    }

    /// The pod networks for containers of `runtime`: containerd's containers get one network
    /// namespace per pod; in-process Wasm needs none.
    fn pod_networks_for(&self, runtime: &Arc<dyn Runtime>) -> Option<&Arc<network::PodNetworks>> {
        if self.is_container_runtime(runtime) {
            self.container_networks()
        } else {
            None
        }
    }

    /// Removes the networks of pods that are no longer running here (deleted while the agent
    /// was down); the pods being run keep theirs.
    async fn remove_stale_networks(&self) {
        let Some(networks) = self.container_networks() else {
            return;
        };
        let live: std::collections::HashSet<String> = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let removed = networks.remove_stale(&live).await;
        if removed > 0 {
            tracing::info!(removed, "removed the networks of pods that are gone");
        }
    }

    fn is_mine(&self, pod: &Value) -> bool {
        pod.pointer("/spec/nodeName").and_then(Value::as_str)
            == Some(self.config.node_name.as_str())
    }

    /// Hands the latest version of a pod to its worker, starting one if needed.
    fn offer_pod(self: &Arc<Self>, pod: Value) {
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pods.get(&uid) {
            entry.updates.send_replace(Some(pod));
            return;
        }
        // A pod that already finished (e.g. before an agent restart) is not run again.
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if (phase == "Succeeded" || phase == "Failed")
            && pod.pointer("/metadata/deletionTimestamp").is_none()
        {
            return;
        }
        let (updates, receiver) = watch::channel(Some(pod.clone()));
        pods.insert(
            uid,
            PodEntry {
                namespace: pod
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                name: pod
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                updates,
            },
        );
        tokio::spawn(worker::run_pod(self.clone(), receiver));
    }

    fn pod_gone(&self, uid: &str) {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pods.get(uid) {
            entry.updates.send_replace(None);
        }
    }

    /// Runs the agent: registers the node, renews its lease, runs the pods bound to it, until
    /// `stopping` resolves.
    pub async fn run(self: Arc<Self>, stopping: impl std::future::Future<Output = ()>) {
        tokio::pin!(stopping);
        while let Err(error) = self.register_node().await {
            tracing::warn!(%error, "cannot register the node; retrying");
            tokio::select! {
                () = &mut stopping => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tracing::info!(node = %self.config.node_name, "node registered");
        let mut lease = tokio::time::interval(LEASE_RENEW);
        let mut runtime_check = tokio::time::interval(RUNTIME_CHECK);
        runtime_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pods = resources::find("", "v1", "pods").expect("served");
        let mine = format!("spec.nodeName={}", self.config.node_name);
        'watching: loop {
            let page = match self.api.list(pods, None, Some(&mine)).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "cannot list pods");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for pod in page.items.into_iter().filter(|p| self.is_mine(p)) {
                self.offer_pod(pod);
            }
            self.remove_stale_networks().await;
            volumes::remove_stale(&self);
            let mut watch = match self.api.watch(pods, None, Some(&mine), page.revision).await {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch pods");
                    continue;
                }
            };
            loop {
                tokio::select! {
                    () = &mut stopping => break 'watching,
                    _ = runtime_check.tick() => self.check_container_runtime().await,
                    _ = lease.tick() => {
                        match self.renew_lease().await {
                            Ok(()) => self.repost_ready_if_lost().await,
                            Err(error) => tracing::warn!(%error, "cannot renew the node lease"),
                        }
                    }
                    event = watch.next() => {
                        let Some(Ok(event)) = event else { continue 'watching };
                        let pod = event.object;
                        if !self.is_mine(&pod) {
                            continue;
                        }
                        if event.kind == EventKind::Delete {
                            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                            self.pod_gone(uid);
                        } else {
                            self.offer_pod(pod);
                        }
                    }
                }
            }
        }
        // Pods that keep running (containers outlive the agent) keep the bridge; a node with no
        // container pods left removes it.
        if let Some(networks) = self.container_networks()
            && let Err(error) = networks.remove_bridge_if_unused().await
        {
            tracing::warn!(%error, "cannot remove the pod bridge");
        }
        tracing::info!("node agent stopped");
    }
}

/// A unique name for a temporary file.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A small system file's content without surrounding whitespace (empty if unreadable).
fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The OS image as the kubelet reports it: `PRETTY_NAME` of os-release (e.g. `Debian GNU/Linux
/// 12 (bookworm)`).
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_default()
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_image_is_the_pretty_name_of_os_release() {
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(os_image(release), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_image("ID=alpine\n"), "");
    }
}
