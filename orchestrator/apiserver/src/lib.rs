//! Wharf's Kubernetes-compatible API server.
//!
//! Layers, outside in: [`http`] (paths, verbs, media types, body limits) → [`registry`]
//! (Kubernetes object semantics: metadata, concurrency, finalizers, subresources) →
//! [`wharf_store::Store`] (keys, revisions, watches). Only this crate speaks JSON to clients;
//! the store sees opaque bytes.

pub mod admission;
pub mod artifacts;
pub mod bootstrap;
pub mod client;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod eviction;
pub mod fieldmanager;
pub mod hpa_v1;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod nodemetrics;
pub mod openapi;
pub mod openapi_v2;
pub mod podlogs;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod reviews;
pub mod streams;
pub mod table;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use wharf_store::Store;

pub use error::ApiError;
pub use registry::Registry;

/// Shared state of the API server.
#[derive(Debug)]
pub struct ApiServer {
    /// Object semantics over the store.
    pub registry: Registry,
    /// Request counters.
    pub metrics: metrics::Metrics,
    /// Uploaded Wasm artifacts (`wharf push`), if this server keeps them.
    pub artifacts: Option<Arc<artifacts::ArtifactStore>>,
    /// The client used to reach node agents (logs, resource metrics).
    pub http: reqwest::Client,
    /// Resource metrics collected from the node agents (`metrics.k8s.io`, the HPA).
    pub node_metrics: nodemetrics::Collector,
    ready: AtomicBool,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// An API server over `store`. It reports ready once [`ApiServer::set_ready`] is called.
    pub fn new(store: Arc<dyn Store>) -> Arc<ApiServer> {
        Self::with_artifacts(store, None)
    }

    /// An API server that also keeps uploaded artifacts.
    pub fn with_artifacts(
        store: Arc<dyn Store>,
        artifacts: Option<Arc<artifacts::ArtifactStore>>,
    ) -> Arc<ApiServer> {
        Arc::new(ApiServer {
            registry: Registry::new(store),
            metrics: metrics::Metrics::default(),
            artifacts,
            http: reqwest::Client::new(),
            node_metrics: nodemetrics::Collector::default(),
            ready: AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// An API server that keeps uploaded artifacts and gives Services cluster IPs from
    /// `service_range`.
    pub fn with_options(
        store: Arc<dyn Store>,
        artifacts: Option<Arc<artifacts::ArtifactStore>>,
        service_range: registry::ServiceRange,
    ) -> Arc<ApiServer> {
        let mut server = Arc::into_inner(Self::with_artifacts(store, artifacts))
            .expect("a new server has one owner");
        server.registry = server.registry.with_service_range(service_range);
        Arc::new(server)
    }

    /// Begins shutdown: not ready any more, and open watches end so connections can close.
    pub fn begin_shutdown(&self) {
        self.set_ready(false);
        self.stopping.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.stopping.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    /// Marks the server ready (bootstrap done) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// The router serving the whole API.
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api", any(http::dispatch))
        .route("/api/{*rest}", any(http::dispatch))
        .route("/apis", any(http::dispatch))
        .route("/apis/{*rest}", any(http::dispatch))
        .route("/openapi/v2", get(openapi_v2::document))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*path}", get(openapi::document))
        .route("/wharf/v1/artifacts", get(artifacts::list))
        .route(
            "/wharf/v1/artifacts/{*reference}",
            get(artifacts::get)
                .put(artifacts::push)
                .layer(axum::extract::DefaultBodyLimit::max(
                    artifacts::MAX_ARTIFACT_BYTES,
                )),
        )
        .fallback(http::not_found)
        .with_state(server)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(server): State<Arc<ApiServer>>) -> Response {
    if server.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics_text(State(server): State<Arc<ApiServer>>) -> Response {
    let stats = server.registry.store().stats();
    let mut text = server.metrics.render(Some(stats));
    // Resource usage of the nodes and pods, as the agents measured it.
    let summaries = server
        .node_metrics
        .collect(&server.registry, &server.http)
        .await;
    text.push_str(&nodemetrics::render_prometheus(&summaries));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
