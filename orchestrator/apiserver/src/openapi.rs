//! `/openapi/v3`: the index of group versions and one document per group version.
//!
//! kubectl (1.27 and later) reads these before `apply` and `create` to learn whether the server
//! validates fields itself (`fieldValidation`, which Wharf does); it then sends
//! `fieldValidation=Strict` instead of validating on the client. Each document therefore lists
//! every path of its resources with the operations Wharf serves, their
//! `x-kubernetes-group-version-kind`, and their query parameters, and the schemas of the kinds
//! (from `k8s-openapi`'s, so `kubectl explain` reads Kubernetes' own field descriptions).
//! [`kind_definitions`] is shared with `/openapi/v2` ([`crate::openapi_v2`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::http::json_response;
use crate::resources::{RESOURCES, Resource, group_versions};
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;

/// The version of the documents' `info`: the build, since documents only change with the code.
fn document_version() -> &'static str {
    concat!("wharf-", env!("CARGO_PKG_VERSION"))
}

/// Every group-version document, serialized once, with the hash that versions it (sha256 of the
/// body, as Kubernetes hashes its own). kubectl keeps documents in its disk cache under the
/// `?hash=` URL the index gives, so the hash must change whenever the content does, not only
/// with the version number.
fn documents() -> &'static BTreeMap<String, (String, Bytes)> {
    static DOCUMENTS: OnceLock<BTreeMap<String, (String, Bytes)>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(group, version)| {
                let path = gv_path(group, version);
                let body = serde_json::to_vec(&build_document(&path)).unwrap_or_default();
                let hash = Sha256::digest(&body)
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>();
                (path, (hash, Bytes::from(body)))
            })
            .collect()
    })
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
    for (path, (hash, _)) in documents() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
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

/// Adds the schema of `resource`'s kind (and of every type it refers to) to `generator`,
/// returning the name of its definition (Kubernetes' own, e.g. `io.k8s.api.apps.v1.Deployment`).
fn add_kind_schema(resource: &Resource, generator: &mut SchemaGenerator) -> Option<String> {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, networking, node, policy,
    };
    let reference = match (resource.group, resource.version, resource.kind) {
        ("", "v1", "Namespace") => generator.subschema_for::<core::v1::Namespace>(),
        ("", "v1", "Pod") => generator.subschema_for::<core::v1::Pod>(),
        ("", "v1", "Node") => generator.subschema_for::<core::v1::Node>(),
        ("", "v1", "Service") => generator.subschema_for::<core::v1::Service>(),
        ("", "v1", "Endpoints") => generator.subschema_for::<core::v1::Endpoints>(),
        ("", "v1", "Secret") => generator.subschema_for::<core::v1::Secret>(),
        ("", "v1", "ConfigMap") => generator.subschema_for::<core::v1::ConfigMap>(),
        ("", "v1", "Event") => generator.subschema_for::<core::v1::Event>(),
        ("apps", "v1", "Deployment") => generator.subschema_for::<apps::v1::Deployment>(),
        ("apps", "v1", "ReplicaSet") => generator.subschema_for::<apps::v1::ReplicaSet>(),
        ("batch", "v1", "Job") => generator.subschema_for::<batch::v1::Job>(),
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            generator.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("node.k8s.io", "v1", "RuntimeClass") => {
            generator.subschema_for::<node::v1::RuntimeClass>()
        }
        ("coordination.k8s.io", "v1", "Lease") => {
            generator.subschema_for::<coordination::v1::Lease>()
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            generator.subschema_for::<discovery::v1::EndpointSlice>()
        }
        ("networking.k8s.io", "v1", "Ingress") => {
            generator.subschema_for::<networking::v1::Ingress>()
        }
        ("policy", "v1", "PodDisruptionBudget") => {
            generator.subschema_for::<policy::v1::PodDisruptionBudget>()
        }
        _ => return None,
    };
    let reference = reference.get("$ref")?.as_str()?;
    Some(reference.rsplit('/').next()?.to_owned())
}

/// The schema definitions of `resources`' kinds and of every type they refer to, keyed by
/// Kubernetes' definition names, generated with `settings` (whose `definitions_path` decides
/// how references are spelled). Each kind's definition carries its
/// `x-kubernetes-group-version-kind`, by which kubectl finds it.
pub fn kind_definitions<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    settings: SchemaSettings,
) -> Map<String, Value> {
    let mut generator = settings.into_generator();
    let kinds: Vec<(&Resource, String)> = resources
        .into_iter()
        .filter_map(|r| add_kind_schema(r, &mut generator).map(|name| (r, name)))
        .collect();
    let mut definitions = generator.take_definitions(true);
    for (resource, name) in kinds {
        if let Some(definition) = definitions.get_mut(&name).and_then(Value::as_object_mut) {
            definition.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": resource.group, "kind": resource.kind, "version": resource.version}]),
            );
        }
    }
    definitions
}

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/GROUP/VERSION`.
pub async fn document(Path(path): Path<String>) -> Response {
    let path = path.trim_matches('/');
    let Some((_, body)) = documents().get(path) else {
        return ApiError::PathNotFound(format!("no OpenAPI document for {path}")).into_response();
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

/// The document of one group version (`api/v1`, `apis/GROUP/VERSION`): its paths and the
/// schemas of its kinds.
fn build_document(path: &str) -> Value {
    let mut paths = Map::new();
    let resources: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| gv_path(r.group, r.version) == path)
        .collect();
    for resource in &resources {
        resource_paths(resource, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Wharf", "version": document_version()},
        "paths": paths,
        "components": {"schemas": kind_definitions(resources, SchemaSettings::openapi3())},
    })
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

    #[test]
    fn group_version_documents_carry_the_schemas_of_their_kinds() {
        let definitions = kind_definitions(
            RESOURCES.iter().filter(|r| r.group == "apps"),
            SchemaSettings::openapi3(),
        );
        let deployment = &definitions["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(deployment["properties"]["spec"].is_object());
        assert!(definitions.contains_key("io.k8s.api.core.v1.PodSpec"));
    }

    #[test]
    fn every_served_resource_has_a_schema() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        for resource in RESOURCES {
            assert!(
                add_kind_schema(resource, &mut generator).is_some(),
                "no schema for {}",
                resource.kind
            );
        }
    }

    #[test]
    fn every_group_version_document_is_versioned_by_a_hash_of_its_content() {
        let documents = documents();
        assert_eq!(documents.len(), group_versions().len());
        let (hash, body) = &documents["apis/apps/v1"];
        let expected: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(hash, &expected);
        assert_ne!(hash, &documents["api/v1"].0);
    }
}
