//! `GET /api/v1/namespaces/NS/pods/NAME/log`: the API server finds the pod's node and streams
//! the logs from that node's agent (as kube-apiserver does from the kubelet), passing
//! `container`, `follow`, `tailLines`, `timestamps`, `previous`, `sinceSeconds`, `sinceTime`,
//! `limitBytes`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::Query;
use crate::registry::Registry;
use crate::resources;

/// The options passed on to the agent.
const FORWARDED: &[&str] = &[
    "follow",
    "tailLines",
    "timestamps",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// The container `query` names, which must be in the pod; if it names none, what `unnamed`
/// picks, given the pod's name and its containers' names.
pub(crate) fn container_of(
    pod: &Value,
    query: &Query,
    unnamed: impl FnOnce(&str, &[&str]) -> Result<String, ApiError>,
) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match query.get("container") {
        Some(container) if containers.contains(&container.as_str()) => Ok(container.clone()),
        Some(container) => Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => unnamed(name, &containers),
    }
}

/// Which container's logs: the one asked for, or the only one.
fn log_container(pod: &Value, query: &Query) -> Result<String, ApiError> {
    container_of(pod, query, |name, containers| match containers {
        [only] => Ok((*only).to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    })
}

/// Where a Node's agent listens: its InternalIP (loopback if it has none) and the port it
/// publishes as `daemonEndpoints.kubeletEndpoint`.
pub fn agent_endpoint(node: &Value) -> Option<(String, u16)> {
    let address = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .unwrap_or("127.0.0.1");
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())?;
    Some((address.to_owned(), port))
}

/// The agent endpoint of node `node_name`, or why it cannot be reached.
pub async fn agent_of(registry: &Registry, node_name: &str) -> Result<(String, u16), ApiError> {
    let nodes = resources::find("", "v1", "nodes").expect("served");
    let node = registry.get(nodes, None, node_name).await?;
    agent_endpoint(&node).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "node {node_name} does not publish its agent endpoint"
        ))
    })
}

/// Serves a pod's logs by proxying to its node's agent.
pub async fn serve(
    registry: &Registry,
    http: &reqwest::Client,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let pods = resources::find("", "v1", "pods").expect("served");
    let pod = registry.get(pods, Some(namespace), name).await?;
    let container = log_container(&pod, query)?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "container {container:?} in pod {name:?} is waiting to start: the pod is not scheduled"
        )));
    };
    let (address, port) = agent_of(registry, node_name).await?;
    let mut url = format!("http://{address}:{port}/containerLogs/{namespace}/{name}/{container}");
    let options: Vec<String> = FORWARDED
        .iter()
        .filter_map(|key| query.get(*key).map(|v| format!("{key}={v}")))
        .collect();
    if !options.is_empty() {
        url = format!("{url}?{}", options.join("&"));
    }
    let response = http.get(&url).send().await.map_err(|e| {
        ApiError::Unavailable(format!("cannot reach the agent of node {node_name}: {e}"))
    })?;
    if !response.status().is_success() {
        let message = response.text().await.unwrap_or_default();
        return Err(ApiError::BadRequest(message.trim().to_owned()));
    }
    let mut proxied = Response::new(Body::from_stream(response.bytes_stream()));
    *proxied.status_mut() = StatusCode::OK;
    proxied
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(proxied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_chosen_and_several_need_a_name() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(log_container(&one, &Query::new()).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let err = log_container(&two, &Query::new()).unwrap_err();
        assert!(err.to_string().contains("choose one of: [a b]"), "{err}");
        let mut query = Query::new();
        query.insert("container".into(), "c".into());
        assert!(log_container(&two, &query).is_err());
    }
}
