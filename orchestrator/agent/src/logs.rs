//! The agent's log endpoint (the kubelet's `containerLogs`), which the API server proxies
//! `kubectl logs` to: `GET /containerLogs/NAMESPACE/POD/CONTAINER` with Kubernetes' options
//! `follow`, `tailLines`, `timestamps`, `previous`, `sinceSeconds` (or `sinceTime`) and
//! `limitBytes`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;
use wharf_runtime::logs::{Record, format_timestamp, parse_record};

use crate::Agent;

/// The router of the agent's HTTP endpoint.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(crate::streams::exec).post(crate::streams::exec),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(crate::streams::attach).post(crate::streams::attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(crate::streams::port_forward).post(crate::streams::port_forward),
        )
        .route("/wharf/pods/{uid}/http", axum::routing::any(pod_http))
        .route("/wharf/pods/{uid}/http/", axum::routing::any(pod_http))
        .route(
            "/wharf/pods/{uid}/http/{*path}",
            axum::routing::any(pod_http),
        )
        .with_state(agent)
}

/// A request for a Wasm pod served in process here, forwarded by another node's gateway:
/// `/wharf/pods/UID/http/PATH` is handled as `/PATH` by the pod's handler.
async fn pod_http(
    State(agent): State<Arc<Agent>>,
    UrlPath(params): UrlPath<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    use http_body_util::BodyExt;
    let uid = params.get("uid").cloned().unwrap_or_default();
    let Some((_, handler)) = agent.http_handlers(&uid).into_iter().next() else {
        // The gateway that sent it may try another replica: say nothing was served.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("x-wharf-not-serving", "1")],
            format!("pod {uid} has no running HTTP handler on this node\n"),
        )
            .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let rest = params.get("path").map_or("", String::as_str);
    let path = match parts.uri.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "invalid path\n").into_response(),
    };
    let body = body.map_err(std::io::Error::other).boxed_unsync();
    let response = handler
        .handle(axum::http::Request::from_parts(parts, body))
        .await;
    response.map(Body::new)
}

/// The log files of a container, oldest restart first.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let n = p.file_stem()?.to_str()?.parse::<u32>().ok()?;
                    Some((n, p))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Options of a log request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its timestamp.
    pub timestamps: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// At most this many bytes.
    pub limit_bytes: Option<usize>,
}

/// Renders the records of a log file under `options`.
pub fn render(text: &str, options: &LogOptions, now: SystemTime) -> String {
    let since = options
        .since_seconds
        .map(|s| format_timestamp(now - Duration::from_secs(s)));
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for record in text.lines().filter_map(parse_record) {
        if since
            .as_ref()
            .is_some_and(|since| record.timestamp < *since)
        {
            continue;
        }
        partial.push_str(&record.content);
        if !record.partial {
            lines.push(line_of(
                &record,
                &std::mem::take(&mut partial),
                options.timestamps,
            ));
        }
    }
    if let Some(n) = options.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out = lines.concat();
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit);
    }
    out
}

fn line_of(record: &Record, content: &str, timestamps: bool) -> String {
    if timestamps {
        format!("{} {content}\n", record.timestamp)
    } else {
        format!("{content}\n")
    }
}

async fn container_logs(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(dir) = agent.pod_dir(&namespace, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not running on this node"),
        )
            .into_response();
    };
    let files = log_files(&dir.join(&container));
    let previous = query.get("previous").is_some_and(|v| v == "true");
    let file = if previous {
        // The last run that ended: the newest file, unless its run is still going (then the
        // one before it), as the kubelet shows a crash-looping container's last attempt.
        let newest_runs = files.last().is_some_and(|newest| {
            let restart = newest.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            agent.runs_container(&dir, &container, restart)
        });
        let back = if newest_runs { 2 } else { 1 };
        files.len().checked_sub(back).and_then(|i| files.get(i))
    } else {
        files.last()
    };
    let Some(file) = file.cloned() else {
        let message = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!(
                "container {container:?} in pod {pod:?} has no logs yet (it is waiting to start)"
            )
        };
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let options = LogOptions {
        tail_lines: query.get("tailLines").and_then(|v| v.parse().ok()),
        timestamps: query.get("timestamps").is_some_and(|v| v == "true"),
        since_seconds: query
            .get("sinceSeconds")
            .and_then(|v| v.parse().ok())
            .or_else(|| {
                // `sinceTime` (RFC 3339) as the seconds before now it stands for.
                let since = wharf_apiserver::meta::parse_rfc3339(query.get("sinceTime")?)?;
                Some(
                    SystemTime::now()
                        .duration_since(since)
                        .map_or(0, |d| d.as_secs()),
                )
            }),
        limit_bytes: query.get("limitBytes").and_then(|v| v.parse().ok()),
    };
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let head = render(&text, &options, SystemTime::now());
    let follow = query.get("follow").is_some_and(|v| v == "true");
    if !follow || previous {
        return head.into_response();
    }
    // Follow: send what is there, then new complete lines as they are written, until the
    // container restarts (a newer file appears), the pod goes, or the client hangs up.
    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    let timestamps = options.timestamps;
    tokio::spawn(async move {
        if sender.send(Ok(Bytes::from(head))).await.is_err() {
            return;
        }
        let mut offset = text.len();
        let mut pending = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let current = std::fs::read_to_string(&file).unwrap_or_default();
            if current.len() > offset {
                let fresh = &current[offset..];
                offset = current.len();
                let mut out = String::new();
                for record in fresh.lines().filter_map(parse_record) {
                    pending.push_str(&record.content);
                    if !record.partial {
                        out.push_str(&line_of(&record, &std::mem::take(&mut pending), timestamps));
                    }
                }
                if !out.is_empty() && sender.send(Ok(Bytes::from(out))).await.is_err() {
                    return;
                }
            }
            let newer = file
                .parent()
                .map(log_files)
                .and_then(|files| files.last().cloned())
                .is_some_and(|last| last != file);
            if newer || !file.exists() || sender.is_closed() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-27T10:00:00.000000000Z stdout F one
2026-11-27T10:00:01.000000000Z stderr F two
2026-11-27T10:00:02.000000000Z stdout P thr
2026-11-27T10:00:02.000000000Z stdout F ee
";

    #[test]
    fn partial_records_join_and_options_apply() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            render(LOG, &LogOptions::default(), now),
            "one\ntwo\nthree\n"
        );
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(render(LOG, &tail, now), "two\nthree\n");
        let stamped = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(
            render(LOG, &stamped, now),
            "2026-11-27T10:00:02.000000000Z three\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(5),
            ..LogOptions::default()
        };
        assert_eq!(render(LOG, &limited, now), "one\nt");
    }
}
