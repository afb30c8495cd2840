//! HTTP: Kubernetes' REST paths, verbs, query parameters and media types, mapped onto the
//! [`Registry`](crate::registry::Registry).
//!
//! Every resource path goes through one dispatcher that parses
//! `/api/v1/...` and `/apis/GROUP/VERSION/...` into a [`Target`], reads the body (at most
//! [`MAX_BODY_BYTES`], else 413), and calls the registry. Errors become `kind: Status` in
//! [`crate::error`], nowhere else.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wharf_apimachinery::{fields, labels};

use crate::error::ApiError;
use crate::fieldmanager::Manager;
use crate::registry::{DeleteOptions, ListOptions, Part, PatchType, WriteOptions};
use crate::resources::{self, Resource};
use crate::{ApiServer, discovery, nodemetrics, reviews, table, watch};

/// The kinds whose DELETE answers with the deleted object rather than a Status, as their
/// storage in kube-apiserver sets `ReturnDeletedObject`.
const RETURNS_DELETED_OBJECT: &[&str] = &["Pod", "Service"];
/// The largest request body accepted (Kubernetes' own limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What a resource path addresses.
#[derive(Debug)]
pub struct Target {
    /// The resource.
    pub resource: &'static Resource,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, ...), if any.
    pub subresource: Option<String>,
    /// Whether the path used the legacy `/watch/` prefix.
    pub legacy_watch: bool,
}

/// Parses the part of a path after `/api/v1/` or `/apis/GROUP/VERSION/`.
pub fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (legacy_watch, rest) = match rest.split_first() {
        Some((&"watch", tail)) => (true, tail),
        _ => (false, rest),
    };
    let unknown = |plural: &str| {
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        ApiError::PathNotFound(format!(
            "the server could not find the requested resource ({plural} in {gv})"
        ))
    };
    let find =
        |plural: &str| resources::find(group, version, plural).ok_or_else(|| unknown(plural));
    let own = |s: &&str| (*s).to_owned();
    let target = match rest {
        // namespaces/NAME/status is the namespace's own subresource.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => Target {
            resource: find("namespaces")?,
            namespace: None,
            name: Some(own(name)),
            subresource: Some(own(sub)),
            legacy_watch,
        },
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            let resource = find(plural)?;
            if !resource.namespaced {
                return Err(unknown(plural));
            }
            Target {
                resource,
                namespace: Some(own(ns)),
                name: tail.first().map(own),
                subresource: tail.get(1).map(own),
                legacy_watch,
            }
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let resource = find(plural)?;
            if resource.namespaced && !tail.is_empty() {
                return Err(unknown(plural));
            }
            Target {
                resource,
                namespace: None,
                name: tail.first().map(own),
                subresource: tail.get(1).map(own),
                legacy_watch,
            }
        }
        _ => {
            return Err(ApiError::PathNotFound(
                "the server could not find the requested resource".into(),
            ));
        }
    };
    if let Some(sub) = &target.subresource {
        let supported = match sub.as_str() {
            "status" => target.resource.has_status,
            "scale" => target.resource.has_scale,
            "binding" | "eviction" => target.resource.has_binding(),
            "log" | "exec" | "attach" | "portforward" => target.resource.kind == "Pod",
            _ => false,
        };
        if !supported {
            return Err(ApiError::PathNotFound(format!(
                "the server could not find the requested resource ({}/{sub})",
                target.resource.plural
            )));
        }
    }
    Ok(target)
}

/// The query parameters of a request, by name (the last value wins).
pub type Query = HashMap<String, String>;

fn query_of(request: &Request) -> Query {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn flag(query: &Query, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The entry point for every `/api/...` and `/apis/...` request.
pub async fn dispatch(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    // A write's body is read before anything can refuse the request: a client still sending
    // it when the answer came would see its connection reset instead of the error. Upgrades
    // (exec, port-forward) carry no body.
    let request = if matches!(method, Method::GET | Method::HEAD)
        || request.headers().contains_key(header::UPGRADE)
    {
        request
    } else {
        let (parts, body) = request.into_parts();
        match read_all(body).await {
            Ok(bytes) => Request::from_parts(parts, Body::from(bytes)),
            Err(error) => {
                let response = error.into_response();
                server
                    .metrics
                    .record_request("unknown", "", response.status().as_u16());
                return response;
            }
        }
    };
    let (response, verb, resource) = match route(&server, request).await {
        Ok((response, verb, resource)) => (response, verb, resource),
        Err((error, verb, resource)) => (error.into_response(), verb, resource),
    };
    let code = response.status().as_u16();
    server.metrics.record_request(verb, resource, code);
    tracing::debug!(%method, %path, code, elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

type Routed =
    Result<(Response, &'static str, &'static str), (ApiError, &'static str, &'static str)>;

async fn route(server: &ApiServer, request: Request) -> Routed {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Ok((discovery::api_versions(&request).into_response(), "get", "")),
        ["apis"] => return Ok((discovery::api_groups(&request).into_response(), "get", "")),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", nodemetrics::GROUP] => {
            let mut document = nodemetrics::group_document();
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            return Ok((json_response(StatusCode::OK, &document), "get", ""));
        }
        ["apis", nodemetrics::GROUP, nodemetrics::VERSION, rest @ ..] => {
            return resource_metrics(server, request, rest).await;
        }
        ["apis", group] => {
            return discovery::api_group(group)
                .map(|r| (r.into_response(), "get", ""))
                .map_err(|e| (e, "get", ""));
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return Err((
                ApiError::PathNotFound("the server could not find the requested resource".into()),
                "get",
                "",
            ));
        }
    };
    if rest.is_empty() {
        return discovery::resource_list(group, version)
            .map(|r| (r.into_response(), "get", ""))
            .map_err(|e| (e, "get", ""));
    }
    if let ("autoscaling", "v1") = (group, version) {
        return hpa_v1_route(server, request, rest).await;
    }
    if reviews::serves(group, version) {
        return review_route(request, group, version, rest).await;
    }
    let target = parse_target(group, version, rest).map_err(|e| (e, "get", ""))?;
    let plural = target.resource.plural;
    let query = query_of(&request);
    let verb = verb_of(request.method(), &target, &query);
    handle(server, target, query, request)
        .await
        .map(|r| (r, verb, plural))
        .map_err(|e| (e, verb, plural))
}

/// `autoscaling/v1` HorizontalPodAutoscalers, a view of the stored v2 objects.
async fn hpa_v1_route(server: &ApiServer, request: Request, rest: &[&str]) -> Routed {
    const PLURAL: &str = "horizontalpodautoscalers";
    let (namespace, name, subresource) = match rest {
        [PLURAL] => (None, None, None),
        ["namespaces", ns, PLURAL] => (Some(*ns), None, None),
        ["namespaces", ns, PLURAL, name] => (Some(*ns), Some(*name), None),
        ["namespaces", ns, PLURAL, name, sub] => (Some(*ns), Some(*name), Some(*sub)),
        _ => {
            return Err((
                ApiError::PathNotFound(format!(
                    "the server could not find the requested resource ({} in autoscaling/v1)",
                    rest.last().copied().unwrap_or("")
                )),
                "get",
                "",
            ));
        }
    };
    let method = request.method().clone();
    let headers = request.headers().clone();
    let query = query_of(&request);
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if flag(&query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        _ => "delete",
    };
    let result = async {
        let options = list_options(&query)?;
        let body = read_body(request).await?;
        crate::hpa_v1::handle(
            server,
            method,
            &headers,
            namespace,
            name,
            subresource,
            &query,
            options,
            &body,
        )
        .await
    }
    .await;
    result
        .map(|r| (r, verb, PLURAL))
        .map_err(|e| (e, verb, PLURAL))
}

/// The self reviews (`kubectl auth can-i`, `kubectl auth whoami`): create only, nothing stored.
async fn review_route(request: Request, group: &str, version: &str, rest: &[&str]) -> Routed {
    let Some(review) = (match rest {
        [plural] => reviews::find(group, version, plural),
        _ => None,
    }) else {
        let message = match rest {
            [plural] => format!(
                "the server could not find the requested resource ({plural} in {group}/{version})"
            ),
            _ => "the server could not find the requested resource".to_owned(),
        };
        return Err((ApiError::PathNotFound(message), "get", ""));
    };
    let query = query_of(&request);
    let verb = match *request.method() {
        Method::POST => "create",
        Method::GET if flag(&query, "watch") => "watch",
        Method::GET => "list",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    if verb != "create" {
        return Err((reviews::method_not_allowed(), verb, review.plural));
    }
    let headers = request.headers().clone();
    let result = async {
        let body = read_body(request).await?;
        reviews::create(review, &headers, &body)
    }
    .await;
    result
        .map(|r| (r, verb, review.plural))
        .map_err(|e| (e, verb, review.plural))
}

/// `metrics.k8s.io/v1beta1`: usage measured by the agents (read only).
async fn resource_metrics(server: &ApiServer, request: Request, rest: &[&str]) -> Routed {
    if rest.is_empty() {
        return Ok((nodemetrics::resource_list(), "get", ""));
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = query_of(&request);
    let result = async {
        let target = nodemetrics::target(rest)?;
        if method != Method::GET {
            return Err(ApiError::MethodNotSupported(format!(
                "{method} is not supported on {path}: resource metrics are read only"
            )));
        }
        let options = list_options(&query)?;
        let summaries = server
            .node_metrics
            .collect(&server.registry, &server.http)
            .await;
        nodemetrics::serve(&server.registry, &summaries, target, &options).await
    }
    .await;
    let verb = if rest.len().is_multiple_of(2) {
        "get"
    } else {
        "list"
    };
    result
        .map(|r| (r, verb, "metrics"))
        .map_err(|e| (e, verb, "metrics"))
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if target.legacy_watch || flag(query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

async fn handle(
    server: &ApiServer,
    target: Target,
    query: Query,
    request: Request,
) -> Result<Response, ApiError> {
    let registry = &server.registry;
    let resource = target.resource;
    let namespace = target.namespace.as_deref();
    if let (Some(sub @ ("exec" | "attach" | "portforward")), Some(name)) =
        (target.subresource.as_deref(), target.name.as_deref())
    {
        let namespace = namespace.unwrap_or("default");
        return crate::streams::serve(registry, namespace, name, sub, &query, request).await;
    }
    let headers = request.headers().clone();
    let method = request.method().clone();
    let write_options = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
    };
    let part = match target.subresource.as_deref() {
        Some("status") => Part::Status,
        _ => Part::Main,
    };
    let scale = target.subresource.as_deref() == Some("scale");
    // Who writes, for `metadata.managedFields`: `?fieldManager=`, else from the User-Agent.
    let manager = Manager::new(crate::fieldmanager::manager_from_request(
        query.get("fieldManager").map(String::as_str),
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )?);
    if let (Some("eviction"), Some(name), Some(namespace)) = (
        target.subresource.as_deref(),
        target.name.as_deref(),
        namespace,
    ) {
        if method != Method::POST {
            return Err(ApiError::MethodNotSupported(format!(
                "the server does not allow this method on the requested resource ({method} {}/eviction)",
                resource.plural
            )));
        }
        let body = read_body(request).await?;
        let eviction = decode_body(&headers, &body)?;
        return crate::eviction::evict(registry, namespace, name, &eviction, &query).await;
    }
    if let (Some("binding"), Some(name), Some(namespace)) = (
        target.subresource.as_deref(),
        target.name.as_deref(),
        namespace,
    ) {
        if method != Method::POST {
            return Err(ApiError::MethodNotSupported(format!(
                "the server does not allow this method on the requested resource ({method} {}/binding)",
                resource.plural
            )));
        }
        let body = read_body(request).await?;
        return create_binding(server, namespace, name, &headers, &body, &write_options).await;
    }
    match (method, target.name.as_deref()) {
        (Method::GET, Some(name)) if target.subresource.as_deref() == Some("log") => {
            crate::podlogs::serve(
                registry,
                &server.http,
                namespace.unwrap_or("default"),
                name,
                &query,
            )
            .await
        }
        (Method::GET, Some(name)) => {
            let object = registry.get(resource, namespace, name).await?;
            if scale {
                return Ok(json_response(StatusCode::OK, &scale_of(&object)));
            }
            if wants_table(&headers) {
                let table = table::table(resource, &[object], None, None);
                return Ok(json_response(StatusCode::OK, &table));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (Method::GET, None) => {
            let options = list_options(&query)?;
            if target.legacy_watch || flag(&query, "watch") {
                return watch::serve(
                    server,
                    resource,
                    None,
                    target.namespace.clone(),
                    options,
                    &query,
                    &headers,
                )
                .await;
            }
            let page = registry.list(resource, namespace, &options).await?;
            Ok(render_list(&headers, resource, page))
        }
        (Method::POST, None) => {
            let body = read_body(request).await?;
            let object = decode_object(&headers, &body, resource)?;
            let warnings = unknown_field_warnings(resource, &object, &query)?;
            let created = registry
                .create_as(resource, namespace, object, &write_options, &manager)
                .await?;
            let mut response = json_response(StatusCode::CREATED, &created);
            add_warnings(&mut response, &warnings);
            Ok(response)
        }
        (Method::PUT, Some(name)) => {
            let body = read_body(request).await?;
            if scale {
                let requested = decode_body(&headers, &body)?;
                return write_scale(
                    server,
                    resource,
                    namespace,
                    name,
                    &requested,
                    &write_options,
                    &manager,
                )
                .await;
            }
            let object = decode_object(&headers, &body, resource)?;
            let warnings = unknown_field_warnings(resource, &object, &query)?;
            let updated = registry
                .update_as(
                    resource,
                    namespace,
                    name,
                    object,
                    part,
                    &write_options,
                    &manager,
                )
                .await?;
            let mut response = json_response(StatusCode::OK, &updated);
            add_warnings(&mut response, &warnings);
            Ok(response)
        }
        (Method::PATCH, Some(name)) => {
            let content_type = media_type(&headers);
            let body = read_body(request).await?;
            if content_type == "application/apply-patch+yaml" {
                if scale {
                    return Err(ApiError::BadRequest(
                        "server-side apply to the scale subresource is not supported".into(),
                    ));
                }
                let config = decode_yaml_or_json(&body)?;
                let (object, created) = registry
                    .apply(
                        resource,
                        namespace,
                        name,
                        config,
                        part,
                        &write_options,
                        manager,
                        flag(&query, "force"),
                    )
                    .await?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok(json_response(code, &object));
            }
            let patch_type = match content_type.as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
                _ => return Err(ApiError::UnsupportedMediaType(PATCH_TYPES.into())),
            };
            let patch: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            if scale {
                // A scale patch addresses the Scale object, then writes like a PUT of it.
                let current = registry.get(resource, namespace, name).await?;
                let mut requested =
                    crate::registry::apply_patch(&scale_of(&current), patch_type, &patch)?;
                // Only preconditions the client wrote count: the view's own resourceVersion
                // would turn every concurrent status write into a conflict.
                for field in ["resourceVersion", "uid"] {
                    if patch.pointer(&format!("/metadata/{field}")).is_none()
                        && let Some(metadata) = requested["metadata"].as_object_mut()
                    {
                        metadata.remove(field);
                    }
                }
                return write_scale(
                    server,
                    resource,
                    namespace,
                    name,
                    &requested,
                    &write_options,
                    &manager,
                )
                .await;
            }
            let updated = registry
                .patch_as(
                    resource,
                    namespace,
                    name,
                    patch_type,
                    &patch,
                    part,
                    &write_options,
                    &manager,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::DELETE, Some(name)) => {
            let body = read_body(request).await?;
            let options = delete_options(&query, &body)?;
            let result = registry.delete(resource, namespace, name, &options).await?;
            // As kube-apiserver answers: the object while it is still being deleted (held by
            // finalizers, or a pod its node is stopping), and the deleted object itself for
            // the kinds whose storage sets `ReturnDeletedObject` (the official clients decode
            // a V1Pod from `delete_namespaced_pod`); a Status for the rest.
            if result.pointer("/metadata/deletionTimestamp").is_some()
                || RETURNS_DELETED_OBJECT.contains(&resource.kind)
            {
                return Ok(json_response(StatusCode::OK, &result));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": resource.group,
                        "kind": resource.plural,
                        "uid": crate::meta::meta_str(&result, "uid"),
                    }
                }),
            ))
        }
        (Method::DELETE, None) => {
            let body = read_body(request).await?;
            let options = delete_options(&query, &body)?;
            let list_options = list_options(&query)?;
            let page = registry.list(resource, namespace, &list_options).await?;
            let mut deleted = Vec::new();
            for object in page.items {
                let name = crate::meta::meta_str(&object, "name")
                    .unwrap_or("")
                    .to_owned();
                let ns = crate::meta::meta_str(&object, "namespace").map(str::to_owned);
                match registry
                    .delete(resource, ns.as_deref(), &name, &options)
                    .await
                {
                    Ok(object) => deleted.push(object),
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", resource.kind),
                    "apiVersion": resource.api_version(),
                    "metadata": {"resourceVersion": page.revision.to_string()},
                    "items": deleted,
                }),
            ))
        }
        (method, _) => Err(ApiError::MethodNotSupported(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            resource.plural
        ))),
    }
}

const PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

/// `POST pods/NAME/binding`: a scheduler assigns the pod to the node named by the `v1` Binding
/// in the body. Answers 201 with a Success Status, as Kubernetes does.
async fn create_binding(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    options: &WriteOptions,
) -> Result<Response, ApiError> {
    let requested = decode_body(headers, body)?;
    for (field, expected) in [("kind", "Binding"), ("apiVersion", "v1")] {
        if let Some(actual) = requested.get(field).and_then(Value::as_str)
            && actual != expected
        {
            return Err(ApiError::BadRequest(format!(
                "the binding subresource takes a v1 Binding, not {field} {actual:?}"
            )));
        }
    }
    let binding: k8s_openapi::api::core::v1::Binding = serde_json::from_value(requested)
        .map_err(|e| ApiError::BadRequest(format!("Binding cannot be decoded: {e}")))?;
    if binding.metadata.name.as_deref() != Some(name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    if let Some(kind) = binding.target.kind.as_deref()
        && !kind.is_empty()
        && kind != "Node"
    {
        return Err(ApiError::Invalid(
            crate::error::Subject {
                name: name.to_owned(),
                group: String::new(),
                resource: "pods/binding".into(),
                kind: "Binding".into(),
            },
            vec![crate::error::Cause {
                reason: "FieldValueNotSupported",
                field: "target.kind".into(),
                message: format!("Unsupported value: {kind:?}: supported values: \"Node\""),
            }],
        ));
    }
    server
        .registry
        .bind(
            namespace,
            name,
            binding.target.name.as_deref().unwrap_or(""),
            binding.metadata.uid.as_deref().filter(|u| !u.is_empty()),
            options,
        )
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201,
        }),
    ))
}

/// Writes a requested `autoscaling/v1` Scale: its spec.replicas goes to the object, and its
/// resourceVersion and uid, if set, are preconditions.
async fn write_scale(
    server: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    requested: &Value,
    options: &WriteOptions,
    manager: &Manager,
) -> Result<Response, ApiError> {
    if let Some(kind) = requested.get("kind").and_then(Value::as_str)
        && kind != "Scale"
    {
        return Err(ApiError::BadRequest(format!(
            "the scale subresource takes a Scale object, not {kind}"
        )));
    }
    let replicas = requested.pointer("/spec/replicas").unwrap_or(&Value::Null);
    if replicas.as_i64().is_none_or(|r| r < 0) {
        return Err(ApiError::Invalid(
            crate::error::Subject::new(resource, name),
            vec![crate::error::Cause::invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be a non-negative integer",
            )],
        ));
    }
    let mut patch = json!({"spec": {"replicas": replicas}});
    for field in ["resourceVersion", "uid"] {
        if let Some(value) = requested.get("metadata").and_then(|m| m.get(field)) {
            patch["metadata"][field] = value.clone();
        }
    }
    let updated = server
        .registry
        .patch_as(
            resource,
            namespace,
            name,
            PatchType::Merge,
            &patch,
            Part::Main,
            options,
            &manager.clone().through("scale"),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated)))
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .and_then(|s| labels::from_label_selector_object(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object.pointer("/metadata/name"),
            "namespace": object.pointer("/metadata/namespace"),
            "uid": object.pointer("/metadata/uid"),
            "resourceVersion": object.pointer("/metadata/resourceVersion"),
            "creationTimestamp": object.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn list_options(query: &Query) -> Result<ListOptions, ApiError> {
    let label_selector = query
        .get("labelSelector")
        .filter(|s| !s.is_empty())
        .map(|s| labels::parse(s))
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
    let field_selector = query
        .get("fieldSelector")
        .filter(|s| !s.is_empty())
        .map(|s| fields::parse(s))
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("invalid field selector: {e}")))?;
    let limit = query
        .get("limit")
        .map(|l| l.parse::<usize>())
        .transpose()
        .map_err(|_| ApiError::BadRequest("limit must be a non-negative integer".into()))?;
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

pub(crate) fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let from_body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if crate::protobuf::is_protobuf(body) {
        // client-go's typed clients send protobuf (kubectl >= 1.32 for `drain`).
        let options = crate::protobuf::decode(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?;
        if options["kind"] != "DeleteOptions" {
            return Err(ApiError::BadRequest(format!(
                "invalid DeleteOptions: the body is a {}",
                options["kind"].as_str().unwrap_or("message of no kind")
            )));
        }
        options
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    Ok(delete_options_of(query, &from_body))
}

/// The options of a delete from the query and a decoded DeleteOptions object (a DELETE's
/// body, an Eviction's `deleteOptions`).
pub(crate) fn delete_options_of(query: &Query, from_body: &Value) -> DeleteOptions {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All")
        || from_body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let mut propagation_policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| text(&from_body["propagationPolicy"]));
    if propagation_policy.is_none() {
        propagation_policy = match from_body["orphanDependents"]
            .as_bool()
            .or_else(|| query.get("orphanDependents").map(|v| v == "true"))
        {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        };
    }
    DeleteOptions {
        propagation_policy,
        precondition_uid: text(&from_body["preconditions"]["uid"]),
        precondition_resource_version: text(&from_body["preconditions"]["resourceVersion"]),
        dry_run,
        grace_period_seconds: query
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse().ok())
            .or_else(|| from_body["gracePeriodSeconds"].as_u64()),
    }
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`].
///
/// An oversized body is still read to its end (up to [`MAX_DRAINED_BYTES`]) and thrown away,
/// so that the client, which is still sending, receives the 413 instead of a broken pipe.
pub(crate) async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    read_all(request.into_body()).await
}

/// Reads a whole body, up to [`MAX_BODY_BYTES`].
async fn read_all(mut body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut collected = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("error reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total <= MAX_BODY_BYTES {
            collected.extend_from_slice(&data);
        } else if total > MAX_DRAINED_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    Ok(Bytes::from(collected))
}

/// How much of an oversized body is read and discarded before the connection is dropped.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("application/json")
        .trim()
        .to_ascii_lowercase()
}

fn decode_yaml_or_json(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return Ok(value);
    }
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
}

/// The media types accepted for create/update bodies, as a 415 lists them.
const BODY_TYPES: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// Decodes a JSON, YAML or Kubernetes protobuf body according to its Content-Type. A protobuf
/// body becomes the same JSON value its JSON form would (see [`crate::protobuf`]).
pub(crate) fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    Ok(match media_type(headers).as_str() {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML body: {e}")))?,
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body).map_err(|e| match e {
            crate::protobuf::DecodeError::Malformed(m) => ApiError::BadRequest(m),
            // Kubernetes' 415 text, with why this protobuf body is not one of them.
            crate::protobuf::DecodeError::UnsupportedKind(m) => ApiError::UnsupportedMediaType(
                format!("application/json, application/yaml ({m}; send it as JSON)"),
            ),
        })?,
        _ => return Err(ApiError::UnsupportedMediaType(BODY_TYPES.into())),
    })
}

/// Decodes a create/update body and checks its apiVersion and kind against the path.
fn decode_object(headers: &HeaderMap, body: &[u8], resource: &Resource) -> Result<Value, ApiError> {
    let object = decode_body(headers, body)?;
    if !object.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the body must be a {} object",
            resource.kind
        )));
    }
    let kind = object.get("kind").and_then(Value::as_str);
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    if let Some(kind) = kind
        && kind != resource.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind of the body ({kind}) does not match the resource {} (kind {})",
            resource.plural, resource.kind
        )));
    }
    if let Some(api_version) = api_version
        && api_version != resource.api_version()
    {
        return Err(ApiError::BadRequest(format!(
            "the apiVersion of the body ({api_version}) does not match the request path ({})",
            resource.api_version()
        )));
    }
    let mut object = object;
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    Ok(object)
}

/// Fields of `object` that the typed schema does not know. With `fieldValidation=Strict` they
/// are an error (as in Kubernetes); with `Warn` they come back as warnings; `Ignore` drops them.
fn unknown_field_warnings(
    resource: &Resource,
    object: &Value,
    query: &Query,
) -> Result<Vec<String>, ApiError> {
    let mode = query
        .get("fieldValidation")
        .map(String::as_str)
        .unwrap_or("Warn");
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    let Ok(normalized) = (resource.normalize)(object.clone()) else {
        // The registry reports the decoding error itself.
        return Ok(Vec::new());
    };
    let mut unknown = Vec::new();
    collect_unknown(object, &normalized, "", &mut unknown);
    if unknown.is_empty() {
        return Ok(unknown);
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    if mode == "Strict" {
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    Ok(messages)
}

fn collect_unknown(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => {
            for (key, value) in input {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key) {
                    Some(known_value) => collect_unknown(value, known_value, &child, out),
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(input), Value::Array(known)) => {
            for (i, (a, b)) in input.iter().zip(known).enumerate() {
                collect_unknown(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn add_warnings(response: &mut Response, warnings: &[String]) {
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Whether the client asked for `meta.k8s.io` Table output.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
        })
}

fn render_list(
    headers: &HeaderMap,
    resource: &Resource,
    page: crate::registry::ListPage,
) -> Response {
    if wants_table(headers) {
        return json_response(
            StatusCode::OK,
            &table::table(
                resource,
                &page.items,
                Some(page.revision),
                page.continue_token.as_deref(),
            ),
        );
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": page.items,
        }),
    )
}

/// 404 for paths outside the API.
pub async fn not_found(request: Request<Body>) -> Response {
    ApiError::PathNotFound(format!(
        "the server could not find the requested resource: {}",
        request.uri().path()
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body captured from kubectl 1.37 (see `crate::protobuf`).
    fn protobuf_fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/protobuf/kubectl-1.37-create-{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn protobuf_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        headers
    }

    #[test]
    fn protobuf_create_bodies_decode_to_the_objects_json() {
        let secrets = parse_target("", "v1", &["namespaces", "default", "secrets"]).unwrap();
        let object = decode_object(
            &protobuf_headers(),
            &protobuf_fixture("secret_generic"),
            secrets.resource,
        )
        .unwrap();
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"a": "Yg=="}})
        );
        // The decoded object passes Strict field validation like its JSON form.
        let query = Query::from([("fieldValidation".to_string(), "Strict".to_string())]);
        assert_eq!(
            unknown_field_warnings(secrets.resource, &object, &query).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn protobuf_body_of_another_kind_than_the_path_is_rejected() {
        let configmaps = parse_target("", "v1", &["namespaces", "default", "configmaps"]).unwrap();
        let error = decode_object(
            &protobuf_headers(),
            &protobuf_fixture("secret_generic"),
            configmaps.resource,
        )
        .unwrap_err();
        assert_eq!(error.code(), StatusCode::BAD_REQUEST, "{error}");
    }

    #[test]
    fn protobuf_of_an_undescribed_kind_is_415_and_malformed_protobuf_is_400() {
        let ingresses = parse_target(
            "networking.k8s.io",
            "v1",
            &["namespaces", "default", "ingresses"],
        )
        .unwrap();
        let error = decode_object(
            &protobuf_headers(),
            &protobuf_fixture("ingress"),
            ingresses.resource,
        )
        .unwrap_err();
        assert_eq!(error.code(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let message = error.to_string();
        assert!(
            message.contains("accepted media types include: application/json")
                && message.contains("Ingress (networking.k8s.io/v1)"),
            "{message}"
        );

        let error =
            decode_object(&protobuf_headers(), b"k8s\0\x0a\xff", ingresses.resource).unwrap_err();
        assert_eq!(error.code(), StatusCode::BAD_REQUEST, "{error}");
    }

    #[test]
    fn unknown_body_media_types_are_415_listing_protobuf() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let error = decode_body(&headers, b"x").unwrap_err();
        assert_eq!(error.code(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            error
                .to_string()
                .contains("application/vnd.kubernetes.protobuf")
        );
    }

    #[test]
    fn namespaced_object_paths_parse() {
        let t = parse_target(
            "apps",
            "v1",
            &["namespaces", "default", "deployments", "web", "scale"],
        )
        .unwrap();
        assert_eq!(t.resource.kind, "Deployment");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_status_is_a_subresource_not_a_collection() {
        let t = parse_target("", "v1", &["namespaces", "team-a", "status"]).unwrap();
        assert_eq!(t.resource.kind, "Namespace");
        assert_eq!(t.name.as_deref(), Some("team-a"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target("", "v1", &["namespaces", "team-a", "pods"]).unwrap();
        assert_eq!(t.resource.kind, "Pod");
        assert_eq!(t.name, None);
    }

    #[test]
    fn binding_is_a_subresource_of_pods_only() {
        let t = parse_target(
            "",
            "v1",
            &["namespaces", "default", "pods", "web", "binding"],
        )
        .unwrap();
        assert_eq!(t.resource.kind, "Pod");
        assert_eq!(t.subresource.as_deref(), Some("binding"));
        let err = parse_target(
            "",
            "v1",
            &["namespaces", "default", "configmaps", "a", "binding"],
        )
        .unwrap_err();
        assert_eq!(err.code(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn unknown_resources_and_subresources_are_not_found() {
        for rest in [
            &["widgets"][..],
            &["namespaces", "default", "widgets"],
            &["namespaces", "default", "configmaps", "a", "scale"],
            &["nodes", "a", "b", "c"],
            &["configmaps", "name-without-namespace"],
        ] {
            let err = parse_target("", "v1", rest).unwrap_err();
            assert_eq!(err.code(), StatusCode::NOT_FOUND, "{rest:?}");
        }
    }

    #[test]
    fn unknown_fields_are_found_with_their_path() {
        let resource = resources::find("apps", "v1", "deployments").unwrap();
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "colour": "red"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}}}
        });
        let mut query = Query::new();
        query.insert("fieldValidation".into(), "Strict".into());
        let err = unknown_field_warnings(resource, &object, &query).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("metadata.colour"), "{message}");
        assert!(
            message.contains("spec.template.spec.containers[0].bogus"),
            "{message}"
        );
        query.insert("fieldValidation".into(), "Warn".into());
        assert_eq!(
            unknown_field_warnings(resource, &object, &query)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn table_is_wanted_only_when_it_is_the_first_choice() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wants_table(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_table(&headers));
    }
}
