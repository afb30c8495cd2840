//! `pods/exec`, `pods/attach` and `pods/portforward`: the API server finds the pod's node and
//! hands the client's upgrade to that node's agent (`/exec/NAMESPACE/POD/CONTAINER`,
//! `/attach/NAMESPACE/POD/CONTAINER`, `/portForward/NAMESPACE/POD`), as kube-apiserver does
//! with the kubelet. The upgrade is proxied, not terminated: the agent answers the handshake
//! (choosing `v5.channel.k8s.io` or `v4.channel.k8s.io` for exec and attach,
//! `SPDY/3.1+portforward.k8s.io` for port forwarding), and once both sides have switched
//! protocols the bytes flow through unchanged, so the API server knows neither protocol.
//!
//! Both upgrades kubectl knows are proxied: WebSocket (`GET`, kubectl from 1.30 for exec and
//! attach, from 1.31 for port forwarding) and SPDY/3.1 (`POST`, every older kubectl, and the
//! newer ones' fallback), whose stream protocol is named in `X-Stream-Protocol-Version`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::Query;
use crate::registry::Registry;
use crate::resources;

/// The handshake headers passed from the client to the agent.
const REQUEST_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The handshake headers passed from the agent back to the client.
const RESPONSE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Whether a request asks to switch to a protocol the agent speaks: WebSocket (on a `GET`)
/// or SPDY/3.1.
fn is_stream_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (method == Method::GET && upgrade.eq_ignore_ascii_case("websocket"))
        || upgrade.eq_ignore_ascii_case("SPDY/3.1")
}

/// Which container: the one asked for (it must be in the pod), or the first (kubectl always
/// names one; other clients get the default container, as `kubectl exec` picks it).
fn container_of(pod: &Value, query: &Query) -> Result<String, ApiError> {
    crate::podlogs::container_of(pod, query, |name, containers| {
        containers
            .first()
            .map(|c| (*c).to_owned())
            .ok_or_else(|| ApiError::BadRequest(format!("pod {name} has no containers")))
    })
}

/// Serves `pods/exec`, `pods/attach` and `pods/portforward` of pod `namespace/name`.
pub async fn serve(
    registry: &Registry,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &Query,
    mut request: Request,
) -> Result<Response, ApiError> {
    if !is_stream_upgrade(request.method(), request.headers()) {
        return Err(ApiError::BadRequest(format!(
            "{subresource} needs a connection upgrade to WebSocket or SPDY/3.1"
        )));
    }
    let pods = resources::find("", "v1", "pods").expect("served");
    let pod = registry.get(pods, Some(namespace), name).await?;
    // The agent's endpoint, as the kubelet names them.
    let agent_path = match subresource {
        "exec" | "attach" => {
            let container = container_of(&pod, query)?;
            format!("/{subresource}/{namespace}/{name}/{container}")
        }
        _ => format!("/portForward/{namespace}/{name}"),
    };
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "pod {name} is not scheduled yet: cannot {subresource}"
        )));
    };
    let (address, port) = crate::podlogs::agent_of(registry, node_name).await?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::Unavailable(format!("cannot reach the agent of node {node_name}: {e}"))
    };

    // The agent gets the same query (exec: the command; exec and attach: the streams, tty).
    let path = match request.uri().query() {
        Some(q) => format!("{agent_path}?{q}"),
        None => agent_path,
    };
    let stream = tokio::net::TcpStream::connect((address.as_str(), port))
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "a stream connection to an agent failed");
        }
    });
    let mut forward = hyper::Request::builder()
        .method(request.method().clone())
        .uri(path)
        .header(header::HOST, format!("{address}:{port}"));
    for name in REQUEST_HEADERS {
        for value in request.headers().get_all(*name) {
            forward = forward.header(*name, value);
        }
    }
    let forward = forward
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut answer = sender
        .send_request(forward)
        .await
        .map_err(|e| unreachable(&e))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = answer
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "the agent of node {node_name} refused the {subresource}: {body}"
        )));
    }
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in RESPONSE_HEADERS {
        for value in answer.headers().get_all(*name) {
            response = response.header(*name, value);
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut request);
    let agent_upgrade = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "a stream upgrade did not complete");
                return;
            }
        };
        relay(TokioIo::new(client), TokioIo::new(agent)).await;
    });
    response
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Copies bytes both ways until the agent's side ends. The agent's direction decides: once
/// the client's direction fails (the agent closed its socket while the client was still
/// sending, say a resize), what the agent sent last — the Status and the close — must still
/// reach the client, which a plain bidirectional copy would drop with the error.
async fn relay<C, A>(client: C, agent: A)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    use tokio::io::AsyncWriteExt;
    let (mut client_reader, mut client_writer) = tokio::io::split(client);
    let (mut agent_reader, mut agent_writer) = tokio::io::split(agent);
    let upstream = async {
        let _ = tokio::io::copy(&mut client_reader, &mut agent_writer).await;
        let _ = agent_writer.shutdown().await;
        // Nothing more goes up; wait here for the agent's direction to finish.
        std::future::pending::<()>().await
    };
    let downstream = async {
        if let Err(e) = tokio::io::copy(&mut agent_reader, &mut client_writer).await {
            tracing::debug!(error = %e, "a proxied stream ended with an error");
        }
        let _ = client_writer.shutdown().await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_asked_for_must_be_in_the_pod_and_the_first_is_the_default() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(container_of(&pod, &Query::new()).unwrap(), "a");
        let mut query = Query::new();
        query.insert("container".into(), "b".into());
        assert_eq!(container_of(&pod, &query).unwrap(), "b");
        query.insert("container".into(), "c".into());
        let err = container_of(&pod, &query).unwrap_err();
        assert!(err.to_string().contains("not valid for pod p"), "{err}");
    }

    #[test]
    fn websocket_on_a_get_and_spdy_are_proxied_and_nothing_else() {
        let mut headers = HeaderMap::new();
        assert!(!is_stream_upgrade(&Method::GET, &headers));
        headers.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert!(is_stream_upgrade(&Method::POST, &headers));
        assert!(is_stream_upgrade(&Method::GET, &headers));
        headers.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        assert!(is_stream_upgrade(&Method::GET, &headers));
        assert!(!is_stream_upgrade(&Method::POST, &headers));
        headers.insert(header::UPGRADE, "h2c".parse().unwrap());
        assert!(!is_stream_upgrade(&Method::GET, &headers));
    }
}
