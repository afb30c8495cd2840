//! `/openapi/v3`: the index of group versions and one document per group version.
//!
//! kubectl (1.27 and later) reads these before `apply` and `create` to learn whether the server
//! validates fields itself (`fieldValidation`, which Wharf does); it then sends
//! `fieldValidation=Strict` instead of validating on the client. Each document therefore lists
//! every path of its resources with the operations Wharf serves, their
//! `x-kubernetes-group-version-kind`, and their query parameters. Schemas of the kinds come
//! with the kubectl compatibility work.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::http::json_response;
use crate::resources::{RESOURCES, Resource, group_versions};

/// The hash that versions a group-version document: the build, since documents only change
/// with the code.
fn document_hash() -> &'static str {
    concat!("wharf-", env!("CARGO_PKG_VERSION"))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub async fn index() -> Response {
    let mut paths = Map::new();
    for (group, version) in group_versions() {
        let path = gv_path(group, version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", document_hash())}),
        );
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true})
}

fn operation(resource: &Resource, action: &str, params: &[&str]) -> Value {
    json!({
        "operationId": format!("{action}{}", resource.kind),
        "parameters": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group, "version": resource.version, "kind": resource.kind,
        },
    })
}

/// The paths of one resource.
fn resource_paths(resource: &Resource, paths: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(resource.group, resource.version));
    let collection = if resource.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{base}/{}", resource.plural)
    };
    let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let patch = [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ];
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(resource, "list", &["labelSelector", "fieldSelector", "limit", "continue", "watch", "resourceVersion", "timeoutSeconds"]),
            "post": operation(resource, "post", &write),
            "delete": operation(resource, "deletecollection", &["labelSelector", "fieldSelector", "propagationPolicy", "gracePeriodSeconds"]),
        }),
    );
    let item = format!("{collection}/{{name}}");
    paths.insert(
        item.clone(),
        json!({
            "get": operation(resource, "get", &["pretty"]),
            "put": operation(resource, "put", &write),
            "patch": operation(resource, "patch", &patch),
            "delete": operation(resource, "delete", &["propagationPolicy", "gracePeriodSeconds", "dryRun"]),
        }),
    );
    if resource.has_status {
        paths.insert(
            format!("{item}/status"),
            json!({
                "get": operation(resource, "get", &["pretty"]),
                "put": operation(resource, "put", &write),
                "patch": operation(resource, "patch", &patch),
            }),
        );
    }
}

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/GROUP/VERSION`.
pub async fn document(Path(path): Path<String>) -> Response {
    let path = path.trim_matches('/');
    let mut paths = Map::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| gv_path(r.group, r.version) == path)
    {
        resource_paths(resource, &mut paths);
    }
    if paths.is_empty() {
        return ApiError::PathNotFound(format!("no OpenAPI document for {path}")).into_response();
    }
    json_response(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Wharf", "version": document_hash()},
            "paths": paths,
            "components": {"schemas": {}},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation_and_their_kind() {
        let deployments = crate::resources::find("apps", "v1", "deployments").unwrap();
        let mut paths = Map::new();
        resource_paths(deployments, &mut paths);
        let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation"));
    }
}
