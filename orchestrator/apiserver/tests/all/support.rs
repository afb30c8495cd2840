//! Test harness: a fresh API server over a RedbStore in a temporary directory, driven through
//! the axum router with `tower::ServiceExt::oneshot` (no sockets), plus helpers that assert
//! Kubernetes `kind: Status` error bodies and that a rejected request wrote nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wharf_apiserver::{ApiServer, bootstrap, router};
use wharf_store::{RedbStore, Store, StoreConfig};

/// Content type of ordinary JSON bodies.
pub const JSON: &str = "application/json";
/// Content type of RFC 7386 merge patches.
pub const MERGE: &str = "application/merge-patch+json";
/// Content type of RFC 6902 JSON patches.
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Content type of Kubernetes strategic merge patches.
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// The ConfigMap collection in the `default` namespace.
pub const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// The Deployment collection in the `default` namespace.
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// One API server over its own store, bootstrapped.
pub struct TestServer {
    /// The router under test.
    pub app: Router,
    /// The server state behind the router.
    pub server: Arc<ApiServer>,
    /// The store, to read its revision directly.
    pub store: Arc<RedbStore>,
    _dir: tempfile::TempDir,
}

/// A full response: code, headers and the body parsed as JSON (or as a JSON string if it is
/// not JSON).
pub struct Reply {
    /// The HTTP status code.
    pub code: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Value,
}

impl TestServer {
    /// A bootstrapped server with the default store configuration.
    pub async fn new() -> TestServer {
        TestServer::with_config(StoreConfig::default()).await
    }

    /// A bootstrapped server whose store keeps only `history_revisions` of history.
    pub async fn with_history(history_revisions: u64) -> TestServer {
        TestServer::with_config(StoreConfig {
            history_revisions,
            max_batch: 1024,
        })
        .await
    }

    /// A bootstrapped server that encrypts Secrets and ConfigMaps at rest with `keyring`
    /// ([`TestServer::store`] is the raw store underneath, holding sealed values).
    pub async fn with_keyring(keyring: wharf_apiserver::encryption::Keyring) -> TestServer {
        TestServer::build(StoreConfig::default(), Some(keyring)).await
    }

    async fn with_config(config: StoreConfig) -> TestServer {
        TestServer::build(config, None).await
    }

    async fn build(
        config: StoreConfig,
        keyring: Option<wharf_apiserver::encryption::Keyring>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            RedbStore::open(dir.path().join("wharf.redb"), config).expect("the store opens"),
        );
        let mut dyn_store: Arc<dyn Store> = store.clone();
        if let Some(keyring) = keyring {
            dyn_store = Arc::new(wharf_apiserver::encryption::EncryptedStore::new(
                dyn_store, keyring,
            ));
        }
        let server = ApiServer::new(dyn_store);
        bootstrap::ensure_bootstrap_objects(&server.registry)
            .await
            .expect("bootstrap objects are created");
        let app = router(server.clone());
        TestServer {
            app,
            server,
            store,
            _dir: dir,
        }
    }

    /// The store's latest revision.
    pub fn revision(&self) -> u64 {
        self.store.current_revision()
    }

    /// Sends a request through the router and returns the raw response.
    pub async fn send(&self, request: Request<Body>) -> axum::response::Response {
        self.app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    /// Sends `method path` with an optional content type, extra headers and a body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        extra_headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in extra_headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .send(builder.body(body.into()).expect("a valid request"))
            .await;
        let code = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body can be read")
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            code,
            headers,
            body,
        }
    }

    /// Sends a request and returns the code and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let reply = self.request(method, path, content_type, &[], body).await;
        (reply.code, reply.body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, Body::empty()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(JSON), body.to_string())
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(JSON), body.to_string())
            .await
    }

    /// `PATCH path` with a patch of the given content type.
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(content_type), body.to_string())
            .await
    }

    /// `DELETE path`, with a DeleteOptions body if given.
    pub async fn delete(&self, path: &str, options: Option<&Value>) -> (StatusCode, Value) {
        match options {
            Some(options) => {
                self.call(Method::DELETE, path, Some(JSON), options.to_string())
                    .await
            }
            None => self.call(Method::DELETE, path, None, Body::empty()).await,
        }
    }

    /// Creates an object, asserting 201, and returns it as stored.
    pub async fn create(&self, collection: &str, object: &Value) -> Value {
        let (code, body) = self.post(collection, object).await;
        assert_eq!(
            code,
            StatusCode::CREATED,
            "creating in {collection}: {body:#}"
        );
        body
    }

    /// Creates a ConfigMap in `default` with the given name, labels and data.
    pub async fn create_configmap(&self, name: &str, labels: Value, data: Value) -> Value {
        self.create(CONFIGMAPS, &configmap(name, labels, data))
            .await
    }

    /// Sends a request that must be rejected: asserts the code, that the body is a `kind:
    /// Status` failure with `reason`, that its message contains `needle`, and that the store's
    /// revision did not move. Returns the Status body.
    #[allow(clippy::too_many_arguments)]
    pub async fn expect_rejected(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
        code: StatusCode,
        reason: &str,
        needle: &str,
    ) -> Value {
        let before = self.revision();
        let (actual, status) = self.call(method.clone(), path, content_type, body).await;
        assert_eq!(actual, code, "{method} {path}: {status:#}");
        assert_status(&status, code, reason, needle);
        assert_eq!(
            self.revision(),
            before,
            "{method} {path} was rejected but the store revision moved"
        );
        status
    }

    /// Opens a watch on `path` (which carries the watch query) and returns the event reader.
    pub async fn watch(&self, path: &str) -> WatchReader {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Body::empty())
            .expect("a valid request");
        let response = self.send(request).await;
        assert_eq!(response.status(), StatusCode::OK, "watch {path}");
        WatchReader {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }
}

/// Asserts that `body` is a Kubernetes `kind: Status` failure with this code and reason, whose
/// message contains `needle`.
pub fn assert_status(body: &Value, code: StatusCode, reason: &str, needle: &str) {
    assert_eq!(body["kind"], "Status", "{body:#}");
    assert_eq!(body["apiVersion"], "v1", "{body:#}");
    assert_eq!(body["status"], "Failure", "{body:#}");
    assert_eq!(body["code"], code.as_u16(), "{body:#}");
    assert_eq!(body["reason"], reason, "{body:#}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "the message {message:?} should mention {needle:?}"
    );
}

/// The causes of an Invalid Status, as `(field, message)` pairs.
pub fn causes(status: &Value) -> Vec<(String, String)> {
    status["details"]["causes"]
        .as_array()
        .map(|causes| {
            causes
                .iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or_default().to_owned(),
                        c["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.resourceVersion` of an object, as a number.
pub fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {object:#}"))
        .parse()
        .expect("resourceVersion is numeric")
}

/// The names of the items of a list.
pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .map(|item| {
            item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A ConfigMap manifest.
pub fn configmap(name: &str, labels: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    })
}

/// A Deployment manifest with `replicas` and the given containers (`(name, image)`).
pub fn deployment(name: &str, replicas: i64, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers},
            },
        },
    })
}

/// Reads a watch response body as newline-delimited JSON events.
pub struct WatchReader {
    body: Body,
    buffer: Vec<u8>,
}

/// How long a test waits for a watch event before failing.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

impl WatchReader {
    /// The next event, or `None` if the stream ended. Panics if none arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        match self.try_next(wait).await {
            Ok(event) => event,
            Err(()) => panic!("no watch event within {wait:?}"),
        }
    }

    /// The next event (waiting up to [`EVENT_WAIT`]), panicking if the stream ended.
    pub async fn next(&mut self) -> Value {
        self.next_within(EVENT_WAIT)
            .await
            .expect("the watch stream ended early")
    }

    /// `Ok(Some(event))`, `Ok(None)` if the stream ended, `Err(())` if nothing came in `wait`.
    pub async fn try_next(&mut self, wait: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(text.trim())
                    .unwrap_or_else(|e| panic!("watch line {text:?} is not JSON: {e}"));
                return Ok(Some(event));
            }
            let frame = match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(()),
                Ok(None) => {
                    assert!(
                        self.buffer.iter().all(u8::is_ascii_whitespace),
                        "the watch ended in the middle of a line"
                    );
                    return Ok(None);
                }
                Ok(Some(frame)) => frame.expect("the watch body can be read"),
            };
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// Asserts that no event arrives within `wait` (the stream may stay open).
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Ok(event) = self.try_next(wait).await {
            panic!("expected no watch event, got {event:?}");
        }
    }
}

/// `(type, name, resourceVersion)` of a watch event.
pub fn event_summary(event: &Value) -> (String, String, u64) {
    (
        event["type"].as_str().unwrap_or_default().to_owned(),
        event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        rv(&event["object"]),
    )
}
