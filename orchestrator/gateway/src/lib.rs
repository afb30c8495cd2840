//! The node's HTTP gateway.
//!
//! Every NodePort Service is served on its `nodePort` at the gateway's IP; Ingress rules are
//! served by host and path on the gateway address itself; and, when the node can hold them
//! ([`ClusterAddresses`]), every Service port on its cluster IP, so that pods of both runtimes
//! reach Services (like kube-proxy's userspace mode, with HTTP instead of TCP). Both route to the ready replicas of
//! the Service, balanced round-robin. A Wasm replica is called in process through its
//! [`HttpHandler`] (no socket, no copy to another process); a replica without one (a container)
//! is reached over its pod IP.
//!
//! A Service whose workload an HPA scaled to zero is woken by its first request, which waits
//! here until a replica is ready ([`wake`]). Requests are counted per pod ([`counters`]) for
//! the HPA's request metrics.
//!
//! The routing [`table`] is rebuilt from Services, Ingresses and Pods whenever one of them
//! changes, and swapped in whole, so the request path only reads an `Arc`.

pub mod counters;
pub mod table;
pub mod wake;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wharf_apiserver::client::ClusterApi;
use wharf_apiserver::resources;
use wharf_runtime::{Body, HttpHandler};

use crate::table::{Backend, RouteTable};

/// How many replicas one bodiless request may be tried on.
const MAX_ATTEMPTS: usize = 3;
/// How long a request for a scaled-to-zero workload waits for a replica to be ready.
pub const COLD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// A Service found to have nothing to wake is not looked up again for this long (its requests
/// get a 503 at once).
const NOTHING_TO_WAKE_FRESH: Duration = Duration::from_secs(1);
/// Set by an agent on a 503 for a pod it does not serve (any more): the request never reached
/// the workload, so another replica may take it.
pub const NOT_SERVING: &str = "x-wharf-not-serving";
/// Set by the gateway on a 502 for a replica it could not connect to.
const NOT_REACHED: &str = "x-wharf-not-reached";

/// What became of a request sent to one replica.
enum Sent {
    /// The replica answered (whatever the status).
    Answered(hyper::Response<Body>),
    /// The replica does not serve; the response says why, if no other replica does either.
    NotServing(hyper::Response<Body>),
}

fn empty() -> Body {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The kinds the routing table is built from.
const ROUTING_RESOURCES: [&str; 4] = ["services", "pods", "ingresses", "nodes"];

fn routing_resource(plural: &str) -> &'static resources::Resource {
    resources::RESOURCES
        .iter()
        .find(|r| r.plural == plural)
        .expect("served")
}

/// Finds the in-process handlers of a pod (the node agent implements this).
pub trait Handlers: Send + Sync + 'static {
    /// The HTTP handlers of a running pod, by container name.
    fn handlers(&self, pod_uid: &str) -> Vec<(String, Arc<dyn HttpHandler>)>;
}

/// Makes cluster IPs local addresses of the node, so the gateway can listen on them (the node
/// implements this, on its pod bridge).
pub trait ClusterAddresses: Send + Sync + 'static {
    /// Adds `ip` to the node.
    fn add(&self, ip: IpAddr) -> Result<(), String>;
    /// Removes `ip` from the node.
    fn remove(&self, ip: IpAddr);
}

/// A running gateway.
pub struct Gateway {
    api: Arc<dyn ClusterApi>,
    handlers: Arc<dyn Handlers>,
    ip: IpAddr,
    table: RwLock<Arc<RouteTable>>,
    node_ports: std::sync::Mutex<HashMap<u16, JoinHandle<()>>>,
    cluster_addresses: Option<Arc<dyn ClusterAddresses>>,
    cluster_ports: std::sync::Mutex<HashMap<SocketAddr, JoinHandle<()>>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
    /// Requests routed per pod.
    requests: counters::RequestCounters,
    /// Bumped whenever a new table is swapped in (requests waiting for a replica watch it).
    table_version: tokio::sync::watch::Sender<u64>,
    /// Requests waiting for a replica of a woken workload (the table is rebuilt without delay
    /// while there are any).
    waiting: std::sync::atomic::AtomicUsize,
    /// Services recently found to have nothing to wake, and when.
    nothing_to_wake: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// The gateway address: Ingress rules.
    Ingress,
    /// A NodePort listener.
    NodePort(u16),
    /// A cluster IP listener.
    ClusterIp(SocketAddr),
}

impl Gateway {
    /// A gateway for the node at `ip`.
    pub fn new(api: Arc<dyn ClusterApi>, handlers: Arc<dyn Handlers>, ip: IpAddr) -> Arc<Gateway> {
        Self::with_cluster_addresses(api, handlers, ip, None)
    }

    /// A gateway that also serves Services on their cluster IPs, made local by
    /// `cluster_addresses`.
    pub fn with_cluster_addresses(
        api: Arc<dyn ClusterApi>,
        handlers: Arc<dyn Handlers>,
        ip: IpAddr,
        cluster_addresses: Option<Arc<dyn ClusterAddresses>>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            api,
            handlers,
            ip,
            table: RwLock::new(Arc::new(RouteTable::default())),
            node_ports: std::sync::Mutex::new(HashMap::new()),
            cluster_addresses,
            cluster_ports: std::sync::Mutex::new(HashMap::new()),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            requests: counters::RequestCounters::default(),
            table_version: tokio::sync::watch::Sender::new(0),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            nothing_to_wake: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// `(pod uid, requests so far, requests in flight)` for every pod this gateway routed to.
    pub fn request_counts(&self) -> Vec<(String, u64, u64)> {
        self.requests.snapshot()
    }

    fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `listener` (the gateway address) and keeps routes and NodePort listeners in
    /// step with the cluster until `stopping` resolves.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        stopping: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stopping);
        let ingress = tokio::spawn(self.clone().serve(listener, Entry::Ingress));
        loop {
            let Some(revision) = self.rebuild().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut watches = Vec::new();
            for resource in ROUTING_RESOURCES
                .iter()
                .map(|plural| routing_resource(plural))
            {
                match self.api.watch(resource, None, None, revision).await {
                    Ok(watch) => watches.push(watch),
                    Err(error) => tracing::warn!(%error, "gateway cannot watch; retrying"),
                }
            }
            if watches.len() < ROUTING_RESOURCES.len() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let mut watch = futures::stream::select_all(watches);
            loop {
                tokio::select! {
                    () = &mut stopping => {
                        ingress.abort();
                        for (_, task) in self.node_ports.lock().unwrap_or_else(|e| e.into_inner()).drain() {
                            task.abort();
                        }
                        self.close_cluster_ports(|_| false);
                        return;
                    }
                    event = watch.next() => match event {
                        Some(Ok(_)) => {
                            // Let a burst of changes settle, then rebuild once (from a fresh
                            // listing, which the watches' later events only repeat) — unless
                            // a request waits for a woken workload's first replica.
                            if self.waiting.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            self.rebuild().await;
                        }
                        _ => break,
                    },
                }
            }
        }
    }

    /// Rebuilds the table from fresh listings; returns the oldest listing's revision (to watch
    /// from), or `None` if the API could not be read.
    async fn rebuild(self: &Arc<Self>) -> Option<wharf_store::Revision> {
        let mut lists = Vec::new();
        let mut revision = wharf_store::Revision::MAX;
        for plural in ROUTING_RESOURCES {
            match self.api.list(routing_resource(plural), None, None).await {
                Ok(list) => {
                    revision = revision.min(list.revision);
                    lists.push(list.items);
                }
                Err(error) => {
                    tracing::warn!(%error, "gateway cannot list {plural}");
                    return None;
                }
            }
        }
        let table = RouteTable::build(&lists[0], &lists[1], &lists[2], &lists[3]);
        // Open listeners for new NodePorts, close those no longer used.
        {
            let mut open = self.node_ports.lock().unwrap_or_else(|e| e.into_inner());
            open.retain(|port, task| {
                let keep = table.node_ports.contains_key(port);
                if !keep {
                    task.abort();
                }
                keep
            });
            for port in table.node_ports.keys() {
                if !open.contains_key(port) {
                    let address = SocketAddr::new(self.ip, *port);
                    let gateway = self.clone();
                    let port = *port;
                    open.insert(
                        port,
                        tokio::spawn(async move {
                            match TcpListener::bind(address).await {
                                Ok(listener) => {
                                    gateway.serve(listener, Entry::NodePort(port)).await
                                }
                                Err(error) => {
                                    tracing::warn!(%address, %error, "cannot open NodePort")
                                }
                            }
                        }),
                    );
                }
            }
        }
        self.close_cluster_ports(|address| table.cluster_ports.contains_key(address));
        if let Some(addresses) = &self.cluster_addresses {
            let mut open = self.cluster_ports.lock().unwrap_or_else(|e| e.into_inner());
            for address in table.cluster_ports.keys() {
                if open.contains_key(address) {
                    continue;
                }
                if let Err(error) = addresses.add(address.ip()) {
                    tracing::warn!(%address, %error, "cannot serve a cluster IP");
                    continue;
                }
                let (gateway, address) = (self.clone(), *address);
                open.insert(
                    address,
                    tokio::spawn(async move {
                        match TcpListener::bind(address).await {
                            Ok(listener) => {
                                gateway.serve(listener, Entry::ClusterIp(address)).await
                            }
                            Err(error) => {
                                tracing::warn!(%address, %error, "cannot open a cluster IP port")
                            }
                        }
                    }),
                );
            }
        }
        let routed: std::collections::HashSet<&str> = table
            .routes()
            .flat_map(|route| route.backends.iter())
            .map(|Backend::Pod { uid, .. }| uid.as_str())
            .collect();
        self.requests.retain(|uid| routed.contains(uid));
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.table_version.send_modify(|version| *version += 1);
        Some(revision)
    }

    /// Closes the cluster IP listeners that `keep` rejects, and removes addresses no listener
    /// uses any more.
    fn close_cluster_ports(&self, keep: impl Fn(&SocketAddr) -> bool) {
        let mut open = self.cluster_ports.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = Vec::new();
        open.retain(|address, task| {
            let kept = keep(address);
            if !kept {
                task.abort();
                closed.push(address.ip());
            }
            kept
        });
        if let Some(addresses) = &self.cluster_addresses {
            for ip in closed {
                if !open.keys().any(|a| a.ip() == ip) {
                    addresses.remove(ip);
                }
            }
        }
    }

    async fn serve(self: Arc<Self>, listener: TcpListener, entry: Entry) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.route(entry, request).await) }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn route(
        &self,
        entry: Entry,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<Body> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let Some(mut service) = lookup(&self.table(), entry, host, request.uri().path()) else {
            return text(404, "no Service or Ingress rule matches this request\n");
        };
        if service.backends.is_empty() {
            let (host, path) = (host.to_owned(), request.uri().path().to_owned());
            match self.cold_start(entry, &host, &path, &service).await {
                Some(woken) => service = woken,
                None => {
                    return text(
                        503,
                        &format!("service {} has no ready endpoints\n", service.name),
                    );
                }
            }
        }
        let service = service.as_ref();
        // A request without a body can be sent again: if the replica picked turns out not to
        // serve any more (it is stopping, its node's agent has no handler for it, a container
        // refuses the connection), the next one is tried, so a rollout or a scale-down does
        // not fail requests that raced with it.
        let (parts, body) = request.into_parts();
        let idempotent = matches!(
            parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let replayable = idempotent && hyper::body::Body::is_end_stream(&body);
        let mut body = Some(body.map_err(std::io::Error::other).boxed_unsync());
        let attempts = if replayable {
            service.backends.len().min(MAX_ATTEMPTS)
        } else {
            1
        };
        let mut last = None;
        for _ in 0..attempts {
            let Some(backend) = service.pick() else {
                break;
            };
            let body = match body.take() {
                Some(body) if !replayable => body,
                _ => empty(),
            };
            let request = hyper::Request::from_parts(parts.clone(), body);
            match self.send(service, backend, request).await {
                Sent::Answered(response) => return response,
                Sent::NotServing(response) => last = Some(response),
            }
        }
        last.unwrap_or_else(|| {
            text(
                503,
                &format!("service {} has no ready endpoints\n", service.name),
            )
        })
    }

    /// Wakes the scaled-to-zero workload behind `service`, if there is one, and waits until
    /// the route has a ready replica. `None` if nothing can be woken or no replica became
    /// ready within [`COLD_START_TIMEOUT`].
    async fn cold_start(
        &self,
        entry: Entry,
        host: &str,
        path: &str,
        service: &table::ServiceRoute,
    ) -> Option<Arc<table::ServiceRoute>> {
        let mut version = self.table_version.subscribe();
        if !self.wake(service).await {
            return None;
        }
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let deadline = tokio::time::Instant::now() + COLD_START_TIMEOUT;
        loop {
            if let Some(route) = lookup(&self.table(), entry, host, path)
                && !route.backends.is_empty()
            {
                return Some(route);
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Finds the workload an HPA scaled to zero behind `service` and sets it to one replica.
    /// Whether there is such a workload (woken now, or already starting).
    async fn wake(&self, service: &table::ServiceRoute) -> bool {
        // Looked up every time there is something to wake (a target put back to zero right
        // after a wake-up must be woken again); only "nothing here" is remembered, briefly.
        if self
            .nothing_to_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&service.name)
            .is_some_and(|at| at.elapsed() < NOTHING_TO_WAKE_FRESH)
        {
            return false;
        }
        let hpas =
            resources::find("autoscaling", "v2", "horizontalpodautoscalers").expect("served");
        let Ok(list) = self.api.list(hpas, Some(&service.namespace), None).await else {
            return false;
        };
        let mut found = false;
        for hpa in &list.items {
            let Some((kind, name)) = wake::sleepy_target(hpa) else {
                continue;
            };
            let plural = if kind == "Deployment" {
                "deployments"
            } else {
                "replicasets"
            };
            let resource = resources::find("apps", "v1", plural).expect("served");
            let Ok(target) = self.api.get(resource, Some(&service.namespace), name).await else {
                continue;
            };
            match wake::wake(&service.selector, &target) {
                wake::Wake::NotMine => {}
                wake::Wake::Starting => found = true,
                wake::Wake::Sleeping => {
                    found = true;
                    // A failed test means another gateway woke it first.
                    let woke = self
                        .api
                        .patch(
                            resource,
                            Some(&service.namespace),
                            name,
                            wharf_apiserver::registry::PatchType::Json,
                            &wake::wake_patch(),
                            wharf_apiserver::registry::Part::Main,
                        )
                        .await;
                    tracing::info!(service = %service.name, target = %name, woke = woke.is_ok(), "scale from zero");
                }
            }
        }
        let mut nothing = self
            .nothing_to_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        nothing.retain(|_, at| at.elapsed() < NOTHING_TO_WAKE_FRESH);
        if !found {
            nothing.insert(service.name.clone(), std::time::Instant::now());
        }
        found
    }

    /// Sends a request to one replica.
    async fn send(
        &self,
        service: &table::ServiceRoute,
        backend: &Backend,
        request: hyper::Request<Body>,
    ) -> Sent {
        let Backend::Pod {
            uid,
            port,
            address,
            agent,
        } = backend;
        let handlers = self.handlers.handlers(uid);
        let handler = handlers
            .iter()
            .find(|(container, _)| port.as_deref().is_none_or(|p| p == container))
            .or(handlers.first())
            .map(|(_, h)| h.clone());
        let in_flight = self.requests.start(uid);
        let sent = match (handler, agent, address) {
            (Some(handler), _, _) => Sent::Answered(handler.handle(request).await),
            // A Wasm replica on another node (or one here that just stopped): through that
            // node's agent, which serves it in process.
            (None, Some(agent), _) => {
                let prefix = format!("/wharf/pods/{uid}/http");
                let response = self.forward_to(*agent, &prefix, request).await;
                let not_serving =
                    response.status() == 503 && response.headers().contains_key(NOT_SERVING);
                if not_serving || response.headers().contains_key(NOT_REACHED) {
                    Sent::NotServing(response)
                } else {
                    Sent::Answered(response)
                }
            }
            // A container: forward over its pod IP.
            (None, None, Some(address)) => {
                let response = self.forward(*address, request).await;
                if response.headers().contains_key(NOT_REACHED) {
                    Sent::NotServing(response)
                } else {
                    Sent::Answered(response)
                }
            }
            (None, None, None) => Sent::NotServing(text(
                502,
                &format!(
                    "the endpoint of service {} cannot be reached\n",
                    service.name
                ),
            )),
        };
        match sent {
            // In flight until the body has been sent (or dropped).
            Sent::Answered(response) => Sent::Answered(response.map(|body| {
                body.map_err(move |error| {
                    let _ = &in_flight;
                    error
                })
                .boxed_unsync()
            })),
            not_serving => not_serving,
        }
    }

    /// Forwards a request to a pod over the network.
    async fn forward(
        &self,
        address: SocketAddr,
        request: hyper::Request<Body>,
    ) -> hyper::Response<Body> {
        self.forward_to(address, "", request).await
    }

    /// Forwards a request to `address`, its path under `prefix`.
    async fn forward_to(
        &self,
        address: SocketAddr,
        prefix: &str,
        request: hyper::Request<Body>,
    ) -> hyper::Response<Body> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = match format!("http://{address}{prefix}{path}").parse() {
            Ok(uri) => uri,
            Err(_) => return text(400, "invalid request path\n"),
        };
        let request = hyper::Request::from_parts(parts, body);
        match self.client.request(request).await {
            Ok(response) => response.map(|body| body.map_err(std::io::Error::other).boxed_unsync()),
            Err(error) => {
                let mut response = text(
                    502,
                    &format!("cannot reach the pod at {address}: {error}\n"),
                );
                if error.is_connect() {
                    // Nothing reached the pod: another replica may take the request.
                    response
                        .headers_mut()
                        .insert(NOT_REACHED, http::HeaderValue::from_static("1"));
                }
                response
            }
        }
    }
}

/// The route of a request that came in on `entry`.
fn lookup(
    table: &RouteTable,
    entry: Entry,
    host: &str,
    path: &str,
) -> Option<Arc<table::ServiceRoute>> {
    match entry {
        Entry::NodePort(port) => table.node_ports.get(&port),
        Entry::ClusterIp(address) => table.cluster_ports.get(&address),
        Entry::Ingress => table.ingress(host, path),
    }
    .cloned()
}

fn text(status: u16, message: &str) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(message.to_owned()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid status and header")
}
