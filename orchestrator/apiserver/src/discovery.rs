//! API discovery: `/version`, `/api`, `/apis`, `/apis/GROUP`, `/api/v1`, `/apis/GROUP/VERSION`.
//!
//! Served as the plain (non-aggregated) documents, which every kubectl and client falls back to.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::json_response;
use crate::resources::{self, RESOURCES, group_versions};

/// The Kubernetes version Wharf's API corresponds to.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "37");

/// `/version`.
pub fn version() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-wharf.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

fn server_address(request: &Request) -> String {
    request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `/api`: the core group's versions.
pub fn api_versions(request: &Request) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address(request)}
            ],
        }),
    )
}

fn group_document(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or_default(),
    })
}

/// `/apis`: every named group.
pub fn api_groups(_request: &Request) -> Response {
    let mut names: Vec<&str> = Vec::new();
    for (group, _) in group_versions() {
        if !group.is_empty() && !names.contains(&group) {
            names.push(group);
        }
    }
    let mut groups: Vec<Value> = names.into_iter().map(group_document).collect();
    groups.push(crate::nodemetrics::group_document());
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// `/apis/GROUP`.
pub fn api_group(group: &str) -> Result<Response, ApiError> {
    if !RESOURCES.iter().any(|r| r.group == group) {
        return Err(ApiError::PathNotFound(format!(
            "the server could not find the requested resource (group {group})"
        )));
    }
    let mut document = group_document(group);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &document))
}

/// Whether `kubectl get all` includes the kind (Kubernetes' category `all`).
fn in_category_all(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "Service" | "Deployment" | "ReplicaSet" | "Job" | "HorizontalPodAutoscaler"
    )
}

/// `/api/v1` and `/apis/GROUP/VERSION`: the resources of a group version.
pub fn resource_list(group: &str, version: &str) -> Result<Response, ApiError> {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
        });
        if in_category_all(r.kind) {
            entry["categories"] = json!(["all"]);
        }
        list.push(entry);
        if r.has_status {
            list.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.has_binding() {
            list.push(json!({
                "name": format!("{}/binding", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": "Binding",
                "verbs": ["create"],
            }));
            list.push(json!({
                "name": format!("{}/log", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": "Pod",
                "verbs": ["get"],
            }));
        }
        if r.has_scale {
            list.push(json!({
                "name": format!("{}/scale", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if list.is_empty() {
        return Err(ApiError::PathNotFound(format!(
            "the server could not find the requested resource ({})",
            if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            }
        )));
    }
    let group_version = resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version)
        .map(|r| r.api_version())
        .unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": list,
        }),
    ))
}
