//! Watch over HTTP: a chunked stream of newline-delimited `{"type": ..., "object": ...}` events.
//!
//! Semantics follow Kubernetes: `resourceVersion` absent or `0` starts with synthetic `ADDED`
//! events for the current state; a resourceVersion N streams every change after N (or an
//! `ERROR` event with a 410 Status if N is compacted); `allowWatchBookmarks` adds periodic
//! `BOOKMARK` events; `sendInitialEvents=true` ends the initial state with a bookmark annotated
//! `k8s.io/initial-events-end`; `timeoutSeconds` ends the stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wharf_store::{Event, EventKind, Revision};

use crate::ApiServer;
use crate::error::{ApiError, Subject};
use crate::http::{Query, wants_table};
use crate::registry::{ListOptions, decode_value, parse_resource_version};
use crate::resources::Resource;
use crate::table;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// The default watch length when the client gives no `timeoutSeconds` (Kubernetes picks 30-60
/// minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Another version of a stored resource, served as a conversion of its objects (e.g.
/// `autoscaling/v1` HPAs from the stored v2 ones).
#[derive(Clone, Copy)]
pub struct View {
    /// The version's `apiVersion`.
    pub api_version: &'static str,
    /// The stored form to this version's.
    pub convert: fn(Value) -> Value,
}

/// Starts a watch and returns the streaming response; with a `view`, objects are sent in its
/// version (tables are built from the stored form, whose columns they show).
pub async fn serve(
    server: &ApiServer,
    resource: &'static Resource,
    view: Option<View>,
    namespace: Option<String>,
    options: ListOptions,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let registry = server.registry.clone();
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial = match query.get("sendInitialEvents").map(String::as_str) {
        Some("true") => true,
        Some(_) => false,
        None => rv.is_empty() || rv == "0",
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let as_table = wants_table(headers);

    let (initial, start) = if send_initial {
        let mut all = ListOptions {
            label_selector: options.label_selector.clone(),
            field_selector: options.field_selector.clone(),
            ..ListOptions::default()
        };
        all.limit = None;
        let page = registry.list(resource, namespace.as_deref(), &all).await?;
        (page.items, page.revision)
    } else {
        (Vec::new(), parse_resource_version(rv)?)
    };
    let watch = registry.watch(resource, namespace.as_deref(), start).await;

    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let metrics = server.metrics.clone();
    let stopping = server.stopping();
    tokio::spawn(async move {
        metrics.watch_started();
        let line = |kind: &str, object: &Value| -> Bytes {
            let object = if kind == "BOOKMARK" || kind == "ERROR" {
                object.clone()
            } else if as_table {
                table::table(resource, std::slice::from_ref(object), None, None)
            } else if let Some(view) = view {
                (view.convert)(object.clone())
            } else {
                object.clone()
            };
            let mut bytes =
                serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
            bytes.push(b'\n');
            Bytes::from(bytes)
        };
        let bookmark = |revision: Revision, initial_end: bool| -> Value {
            let mut metadata = json!({"resourceVersion": revision.to_string()});
            if initial_end {
                metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            let api_version =
                view.map_or_else(|| resource.api_version(), |v| v.api_version.to_owned());
            json!({"kind": resource.kind, "apiVersion": api_version, "metadata": metadata})
        };
        let mut watch = match watch {
            Ok(watch) => watch,
            Err(error) => {
                let _ = sender.send(Ok(line("ERROR", &error.status_body()))).await;
                metrics.watch_ended();
                return;
            }
        };
        for object in &initial {
            if sender.send(Ok(line("ADDED", object))).await.is_err() {
                metrics.watch_ended();
                return;
            }
        }
        if send_initial && bookmarks {
            let _ = sender
                .send(Ok(line("BOOKMARK", &bookmark(start, true))))
                .await;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::pin!(stopping);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = &mut stopping => break,
                _ = sender.closed() => break,
                _ = ticker.tick(), if bookmarks => {
                    let progress = watch.progress();
                    if sender.send(Ok(line("BOOKMARK", &bookmark(progress, false)))).await.is_err() {
                        break;
                    }
                }
                event = watch.next() => {
                    let event = match event {
                        Some(Ok(event)) => event,
                        Some(Err(error)) => {
                            let status = ApiError::from_store(error, Subject::new(resource, "")).status_body();
                            let _ = sender.send(Ok(line("ERROR", &status))).await;
                            break;
                        }
                        None => break,
                    };
                    let Some((kind, object)) = event_for_watcher(&event, &options) else {
                        continue;
                    };
                    if sender.send(Ok(line(kind, &object))).await.is_err() {
                        break;
                    }
                }
            }
        }
        metrics.watch_ended();
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(response)
}

/// What a watcher with these selectors sees of a store event, as Kubernetes defines it: an
/// object entering the selection is ADDED, one leaving it is DELETED, one staying in it is
/// MODIFIED, and changes outside the selection are not sent.
fn event_for_watcher(event: &Event, options: &ListOptions) -> Option<(&'static str, Value)> {
    let object = decode_value(&event.key, &event.value, event.revision).ok()?;
    if event.kind == EventKind::Delete {
        return options.matches(&object).then_some(("DELETED", object));
    }
    let now = options.matches(&object);
    let before = match &event.prev_value {
        None => false,
        Some(_) if !options.has_selectors() => true,
        Some(prev) => decode_value(&event.key, prev, event.revision)
            .map(|old| options.matches(&old))
            .unwrap_or(false),
    };
    match (before, now) {
        (false, true) => Some(("ADDED", object)),
        (true, true) => Some(("MODIFIED", object)),
        (true, false) => Some(("DELETED", object)),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use wharf_apimachinery::labels;

    fn event(kind: EventKind, value: &str, prev: Option<&str>) -> Event {
        Event {
            revision: 9,
            kind,
            key: "/core/configmaps/default/a".into(),
            value: Bytes::from(value.to_owned()),
            prev_value: prev.map(|p| Bytes::from(p.to_owned())),
        }
    }

    const BLUE: &str = r#"{"metadata":{"name":"a","labels":{"c":"blue"}}}"#;
    const RED: &str = r#"{"metadata":{"name":"a","labels":{"c":"red"}}}"#;

    fn blue_only() -> ListOptions {
        ListOptions {
            label_selector: Some(labels::parse("c=blue").unwrap()),
            ..ListOptions::default()
        }
    }

    #[test]
    fn objects_entering_and_leaving_a_selection_are_added_and_deleted() {
        let kind = |e: &Event| event_for_watcher(e, &blue_only()).map(|(k, _)| k);
        assert_eq!(kind(&event(EventKind::Put, BLUE, None)), Some("ADDED"));
        assert_eq!(kind(&event(EventKind::Put, BLUE, Some(RED))), Some("ADDED"));
        assert_eq!(
            kind(&event(EventKind::Put, RED, Some(BLUE))),
            Some("DELETED")
        );
        assert_eq!(
            kind(&event(EventKind::Put, BLUE, Some(BLUE))),
            Some("MODIFIED")
        );
        assert_eq!(kind(&event(EventKind::Put, RED, Some(RED))), None);
        assert_eq!(
            kind(&event(EventKind::Delete, BLUE, Some(BLUE))),
            Some("DELETED")
        );
        assert_eq!(kind(&event(EventKind::Delete, RED, Some(RED))), None);
    }

    #[test]
    fn events_carry_the_revision_of_the_change() {
        let (_, object) =
            event_for_watcher(&event(EventKind::Put, RED, None), &ListOptions::default()).unwrap();
        assert_eq!(object["metadata"]["resourceVersion"], "9");
    }
}
