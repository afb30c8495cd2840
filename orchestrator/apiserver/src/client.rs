//! The API as a node sees it: [`ClusterApi`], in process over the [`Registry`] (`wharf up`) or
//! over HTTP to a remote `wharf server` ([`HttpApi`], for `wharf agent`). The node agent and the
//! gateway use only this trait, so they run the same in both places.
//!
//! The HTTP side speaks Kubernetes' REST API as any client does: JSON, merge/strategic patches,
//! watches as newline-delimited JSON events from a resourceVersion, and Wharf's artifact paths
//! (`/wharf/v1/artifacts/REF/content`) for Wasm artifacts and image archives.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use wharf_store::{EventKind, Revision};

use crate::ApiError;
use crate::artifacts::ArtifactStore;
use crate::error::Subject;
use crate::registry::{
    DeleteOptions, ListOptions, Part, PatchType, Registry, WriteOptions, decode_value,
};
use crate::resources::Resource;

/// A change to an object, as a watch reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectEvent {
    /// Added or modified (`Put`), or deleted (`Delete`, with the object's last state).
    pub kind: EventKind,
    /// The object, with its resourceVersion.
    pub object: Value,
}

/// A stream of changes; it ends when the watch does (the caller lists and watches again).
pub type ObjectEvents = BoxStream<'static, Result<ObjectEvent, ApiError>>;

/// A list of objects and the revision to watch from.
#[derive(Clone, Debug, Default)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Value>,
    /// The revision of the listing.
    pub revision: Revision,
}

/// What a node (agent and gateway) needs from the API.
#[async_trait]
pub trait ClusterApi: Send + Sync + 'static {
    /// One object.
    async fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError>;

    /// All objects (in `namespace`, or all namespaces), optionally only those matching a field
    /// selector such as `spec.nodeName=node-1`.
    async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<ObjectList, ApiError>;

    /// Changes after `revision`, filtered like [`ClusterApi::list`].
    async fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
        revision: Revision,
    ) -> Result<ObjectEvents, ApiError>;

    /// Creates an object.
    async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError>;

    /// Patches an object or its status.
    async fn patch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
    ) -> Result<Value, ApiError>;

    /// Deletes an object.
    async fn delete(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), ApiError>;

    /// The content of an artifact uploaded with `wharf push` or `wharf image import`, if there
    /// is one under `reference`.
    async fn artifact(&self, reference: &str) -> Result<Option<Bytes>, ApiError>;
}

/// The API in process: the registry (and artifact store) of this process's server.
#[derive(Clone)]
pub struct InProcessApi {
    registry: Registry,
    artifacts: Option<Arc<ArtifactStore>>,
}

impl std::fmt::Debug for InProcessApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessApi").finish_non_exhaustive()
    }
}

impl InProcessApi {
    /// Over `registry` and, if the server keeps them, its artifacts.
    pub fn new(registry: Registry, artifacts: Option<Arc<ArtifactStore>>) -> InProcessApi {
        InProcessApi {
            registry,
            artifacts,
        }
    }
}

fn list_options(field_selector: Option<&str>) -> Result<ListOptions, ApiError> {
    let field_selector = field_selector
        .map(|s| {
            wharf_apimachinery::fields::parse(s)
                .map_err(|e| ApiError::BadRequest(format!("invalid field selector {s:?}: {e}")))
        })
        .transpose()?;
    Ok(ListOptions {
        field_selector,
        ..ListOptions::default()
    })
}

#[async_trait]
impl ClusterApi for InProcessApi {
    async fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.registry.get(resource, namespace, name).await
    }

    async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<ObjectList, ApiError> {
        let page = self
            .registry
            .list(resource, namespace, &list_options(field_selector)?)
            .await?;
        Ok(ObjectList {
            items: page.items,
            revision: page.revision,
        })
    }

    async fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
        revision: Revision,
    ) -> Result<ObjectEvents, ApiError> {
        let selector = list_options(field_selector)?.field_selector;
        let watch = self.registry.watch(resource, namespace, revision).await?;
        let watch = futures::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|event| (event, watch))
        });
        let events = watch.filter_map(move |event| {
            let event = match event {
                Ok(event) => decode_value(&event.key, &event.value, event.revision).map(|object| {
                    ObjectEvent {
                        kind: event.kind,
                        object,
                    }
                }),
                Err(error) => Err(ApiError::Gone(error.to_string())),
            };
            let keep = match (&event, &selector) {
                (Ok(event), Some(selector)) => selector.matches(&event.object),
                _ => true,
            };
            std::future::ready(keep.then_some(event))
        });
        Ok(events.boxed())
    }

    async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError> {
        self.registry
            .create(resource, namespace, object, &WriteOptions::default())
            .await
    }

    async fn patch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        self.registry
            .patch(
                resource,
                namespace,
                name,
                patch_type,
                patch,
                part,
                &WriteOptions::default(),
            )
            .await
    }

    async fn delete(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), ApiError> {
        self.registry
            .delete(resource, namespace, name, options)
            .await
            .map(drop)
    }

    async fn artifact(&self, reference: &str) -> Result<Option<Bytes>, ApiError> {
        match &self.artifacts {
            Some(store) => store.read(reference).await,
            None => Ok(None),
        }
    }
}

/// The API of a remote `wharf server`, over HTTP.
#[derive(Clone, Debug)]
pub struct HttpApi {
    base: String,
    http: reqwest::Client,
}

impl HttpApi {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:6443`).
    pub fn new(base: &str) -> HttpApi {
        HttpApi {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    fn path(&self, resource: &Resource, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = if resource.group.is_empty() {
            format!("{}/api/{}", self.base, resource.version)
        } else {
            format!("{}/apis/{}/{}", self.base, resource.group, resource.version)
        };
        if resource.namespaced
            && let Some(namespace) = namespace
        {
            path.push_str(&format!("/namespaces/{namespace}"));
        }
        path.push('/');
        path.push_str(resource.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    async fn send(
        &self,
        resource: &Resource,
        name: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(status_error(resource, name, status.as_u16(), &body))
    }
}

fn unreachable(error: reqwest::Error) -> ApiError {
    ApiError::Unavailable(format!("the API server does not answer: {error}"))
}

/// The error a Kubernetes `Status` stands for.
fn status_error(resource: &Resource, name: &str, code: u16, body: &Value) -> ApiError {
    let message = body["message"]
        .as_str()
        .unwrap_or("the API server refused the request")
        .to_owned();
    let subject = Subject::new(resource, name);
    match code {
        400 => ApiError::BadRequest(message),
        403 => ApiError::Forbidden(message),
        404 => ApiError::NotFound(subject),
        409 if body["reason"] == "AlreadyExists" => ApiError::AlreadyExists(subject),
        409 => ApiError::Conflict(subject, message),
        410 => ApiError::Gone(message),
        422 => ApiError::Invalid(subject, Vec::new()),
        503 => ApiError::Unavailable(message),
        _ => ApiError::Internal(format!("{code}: {message}")),
    }
}

fn query(field_selector: Option<&str>) -> Vec<(&'static str, String)> {
    field_selector
        .map(|s| vec![("fieldSelector", s.to_owned())])
        .unwrap_or_default()
}

#[async_trait]
impl ClusterApi for HttpApi {
    async fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let url = self.path(resource, namespace, Some(name));
        self.send(resource, name, self.http.get(url)).await
    }

    async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<ObjectList, ApiError> {
        let url = self.path(resource, namespace, None);
        let mut body = self
            .send(
                resource,
                "",
                self.http.get(url).query(&query(field_selector)),
            )
            .await?;
        let revision = body["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        let items = body["items"].take_items().unwrap_or_default();
        Ok(ObjectList { items, revision })
    }

    async fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        field_selector: Option<&str>,
        revision: Revision,
    ) -> Result<ObjectEvents, ApiError> {
        let url = self.path(resource, namespace, None);
        let mut params = query(field_selector);
        params.push(("watch", "1".into()));
        params.push(("resourceVersion", revision.to_string()));
        params.push(("allowWatchBookmarks", "true".into()));
        let response = self
            .http
            .get(url)
            .query(&params)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(status_error(resource, "", status.as_u16(), &body));
        }
        let lines = lines(response.bytes_stream());
        let events = lines.filter_map(|line| {
            std::future::ready(match line {
                Err(error) => Some(Err(error)),
                Ok(line) => watch_event(&line).transpose(),
            })
        });
        Ok(events.boxed())
    }

    async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let url = self.path(resource, namespace, None);
        self.send(resource, &name, self.http.post(url).json(&object))
            .await
    }

    async fn patch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let mut url = self.path(resource, namespace, Some(name));
        if part == Part::Status {
            url.push_str("/status");
        }
        let content_type = match patch_type {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        };
        let request = self
            .http
            .patch(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(patch.to_string());
        self.send(resource, name, request).await
    }

    async fn delete(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), ApiError> {
        let url = self.path(resource, namespace, Some(name));
        let mut body = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(policy) = &options.propagation_policy {
            body["propagationPolicy"] = policy.clone().into();
        }
        if let Some(seconds) = options.grace_period_seconds {
            body["gracePeriodSeconds"] = seconds.into();
        }
        if let Some(uid) = &options.precondition_uid {
            body["preconditions"]["uid"] = uid.clone().into();
        }
        if let Some(rv) = &options.precondition_resource_version {
            body["preconditions"]["resourceVersion"] = rv.clone().into();
        }
        self.send(resource, name, self.http.delete(url).json(&body))
            .await
            .map(drop)
    }

    async fn artifact(&self, reference: &str) -> Result<Option<Bytes>, ApiError> {
        let url = format!("{}/wharf/v1/artifacts/{reference}/content", self.base);
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        match response.status().as_u16() {
            404 => Ok(None),
            200..=299 => response.bytes().await.map(Some).map_err(unreachable),
            code => Err(ApiError::Internal(format!(
                "the API server answered {code} for artifact {reference:?}"
            ))),
        }
    }
}

/// Takes the items out of a list body.
trait TakeItems {
    fn take_items(&mut self) -> Option<Vec<Value>>;
}

impl TakeItems for Value {
    fn take_items(&mut self) -> Option<Vec<Value>> {
        match self.take() {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Splits a byte stream into lines.
fn lines(
    bytes: impl futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
) -> BoxStream<'static, Result<Vec<u8>, ApiError>> {
    futures::stream::unfold(
        (bytes.boxed(), Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, done)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    return Some((Ok(line), (bytes, buffer, done)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => {
                        return Some((Err(unreachable(error)), (bytes, buffer, true)));
                    }
                    None => {
                        if buffer.is_empty() {
                            return None;
                        }
                        let line = std::mem::take(&mut buffer);
                        return Some((Ok(line), (bytes, buffer, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// One line of a watch: an event, nothing (a bookmark, a blank line), or the error it reports.
fn watch_event(line: &[u8]) -> Result<Option<ObjectEvent>, ApiError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let mut event: Value = serde_json::from_slice(line)
        .map_err(|e| ApiError::Internal(format!("a watch event is not JSON: {e}")))?;
    let object = event["object"].take();
    let kind = match event["type"].as_str() {
        Some("ADDED" | "MODIFIED") => EventKind::Put,
        Some("DELETED") => EventKind::Delete,
        Some("BOOKMARK") => return Ok(None),
        Some("ERROR") => {
            let message = object["message"]
                .as_str()
                .unwrap_or("watch error")
                .to_owned();
            return Err(if object["code"] == 410 {
                ApiError::Gone(message)
            } else {
                ApiError::Internal(message)
            });
        }
        other => {
            return Err(ApiError::Internal(format!(
                "unknown watch event type {other:?}"
            )));
        }
    };
    Ok(Some(ObjectEvent { kind, object }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_become_events_bookmarks_nothing_and_errors_errors() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#;
        let event = watch_event(added).unwrap().unwrap();
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!(event.object["metadata"]["name"], "a");
        let deleted = br#"{"type":"DELETED","object":{}}"#;
        assert_eq!(
            watch_event(deleted).unwrap().unwrap().kind,
            EventKind::Delete
        );
        assert!(
            watch_event(br#"{"type":"BOOKMARK","object":{}}"#)
                .unwrap()
                .is_none()
        );
        assert!(watch_event(b"  \n").unwrap().is_none());
        let gone = br#"{"type":"ERROR","object":{"code":410,"message":"too old"}}"#;
        assert!(matches!(watch_event(gone), Err(ApiError::Gone(_))));
    }

    #[test]
    fn statuses_map_to_api_errors() {
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        let body = serde_json::json!({"reason": "AlreadyExists", "message": "exists"});
        assert!(matches!(
            status_error(pods, "p", 409, &body),
            ApiError::AlreadyExists(_)
        ));
        assert!(matches!(
            status_error(pods, "p", 409, &Value::Null),
            ApiError::Conflict(..)
        ));
        assert!(matches!(
            status_error(pods, "p", 404, &Value::Null),
            ApiError::NotFound(_)
        ));
    }
}
