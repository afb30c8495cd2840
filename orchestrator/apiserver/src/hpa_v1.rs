//! `autoscaling/v1` HorizontalPodAutoscalers: a view of the stored `autoscaling/v2` objects, as
//! Kubernetes serves both (kubectl up to 1.22 creates v1 HPAs, and `AutoscalingV1Api` of the
//! official clients reads them).
//!
//! v1 knows one metric, the CPU utilisation (`targetCPUUtilizationPercentage`); the rest of a v2
//! object — other metrics, behavior, conditions, current metrics — travels in the annotations
//! Kubernetes uses for it (`autoscaling.alpha.kubernetes.io/...`), so that reading an object
//! in v1 and writing it back loses nothing. Writes are converted to v2 and go through the same
//! registry path as v2 writes; patches are applied to the v1 form, as Kubernetes applies them
//! to the version they were sent in.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::http::{Query, json_response};
use crate::registry::{DeleteOptions, ListOptions, Part, PatchType, WriteOptions};
use crate::resources::Resource;
use crate::{ApiServer, resources, table};

/// The group and version of this view.
pub const API_VERSION: &str = "autoscaling/v1";

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The stored resource (v2).
pub fn storage() -> &'static Resource {
    resources::find("autoscaling", "v2", "horizontalpodautoscalers").expect("served")
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn annotations(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"]
        .as_object_mut()
        .expect("made an object above")
}

/// The v1 form of a stored v2 HPA.
pub fn to_v1(mut v2: Value) -> Value {
    let spec = v2["spec"].take();
    let status = v2["status"].take();
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().find(|m| is_cpu_utilization(m));
    let others: Vec<&Value> = metrics.iter().filter(|m| !is_cpu_utilization(m)).collect();
    let mut v1_spec = json!({
        "scaleTargetRef": spec["scaleTargetRef"],
        "maxReplicas": spec["maxReplicas"],
    });
    if !spec["minReplicas"].is_null() {
        v1_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    if let Some(cpu) = cpu {
        v1_spec["targetCPUUtilizationPercentage"] =
            cpu["resource"]["target"]["averageUtilization"].clone();
    }
    let current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut v1_status = json!({
        "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    for field in ["observedGeneration", "lastScaleTime"] {
        if !status[field].is_null() {
            v1_status[field] = status[field].clone();
        }
    }
    if let Some(utilization) = current
        .iter()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
    {
        v1_status["currentCPUUtilizationPercentage"] = json!(utilization);
    }
    let mut carried = Vec::new();
    if !others.is_empty() {
        carried.push((METRICS, json!(others)));
    }
    if !spec["behavior"].is_null() {
        carried.push((BEHAVIOR, spec["behavior"].clone()));
    }
    if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        carried.push((CONDITIONS, json!(conditions)));
    }
    if !current.is_empty() {
        carried.push((CURRENT_METRICS, json!(current)));
    }
    for (key, value) in carried {
        annotations(&mut v2).insert(key.into(), json!(value.to_string()));
    }
    v2["apiVersion"] = json!(API_VERSION);
    v2["spec"] = v1_spec;
    v2["status"] = v1_status;
    v2
}

/// The v2 form of a v1 HPA, for storing.
pub fn to_v2(mut v1: Value) -> Result<Value, ApiError> {
    let spec = v1["spec"].take();
    let status = v1["status"].take();
    let mut carried = |key: &str| -> Result<Option<Value>, ApiError> {
        let Some(text) = v1
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.remove(key))
        else {
            return Ok(None);
        };
        let text = text.as_str().unwrap_or_default().to_owned();
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("annotation {key} is not valid JSON: {e}")))
    };
    let mut metrics = Vec::new();
    if let Some(percent) = spec["targetCPUUtilizationPercentage"].as_i64() {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": percent}}}));
    }
    if let Some(Value::Array(others)) = carried(METRICS)? {
        metrics.extend(others);
    }
    let behavior = carried(BEHAVIOR)?;
    let conditions = carried(CONDITIONS)?;
    let current_metrics = carried(CURRENT_METRICS)?;
    if v1
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
        && let Some(metadata) = v1["metadata"].as_object_mut()
    {
        metadata.remove("annotations");
    }
    let mut v2_spec = json!({
        "scaleTargetRef": spec["scaleTargetRef"],
        "maxReplicas": spec["maxReplicas"],
    });
    if !spec["minReplicas"].is_null() {
        v2_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        v2_spec["metrics"] = json!(metrics);
    }
    if let Some(behavior) = behavior {
        v2_spec["behavior"] = behavior;
    }
    let mut v2_status = json!({
        "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    for field in ["observedGeneration", "lastScaleTime"] {
        if !status[field].is_null() {
            v2_status[field] = status[field].clone();
        }
    }
    if let Some(conditions) = conditions {
        v2_status["conditions"] = conditions;
    }
    if let Some(current) = current_metrics {
        v2_status["currentMetrics"] = current;
    }
    v1["apiVersion"] = json!("autoscaling/v2");
    v1["spec"] = v2_spec;
    v1["status"] = v2_status;
    Ok(v1)
}

/// The `autoscaling/v1` APIResourceList.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            {"name": "horizontalpodautoscalers", "singularName": "horizontalpodautoscaler",
             "namespaced": true, "kind": "HorizontalPodAutoscaler", "shortNames": ["hpa"],
             "categories": ["all"],
             "verbs": ["create", "delete", "get", "list", "patch", "update"]},
            {"name": "horizontalpodautoscalers/status", "singularName": "", "namespaced": true,
             "kind": "HorizontalPodAutoscaler", "verbs": ["get", "patch", "update"]},
        ],
    })
}

fn list_v1(items: Vec<Value>, resource_version: Option<String>) -> Value {
    json!({
        "kind": "HorizontalPodAutoscalerList",
        "apiVersion": API_VERSION,
        "metadata": {"resourceVersion": resource_version.unwrap_or_default()},
        "items": items.into_iter().map(to_v1).collect::<Vec<_>>(),
    })
}

/// Serves a request for `autoscaling/v1` `horizontalpodautoscalers` (`status` subresource
/// included) through the stored v2 objects.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    server: &ApiServer,
    method: Method,
    headers: &HeaderMap,
    namespace: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
    query: &Query,
    options: ListOptions,
    body: &[u8],
) -> Result<Response, ApiError> {
    let registry = &server.registry;
    let resource = storage();
    let manager = crate::fieldmanager::Manager::new(crate::fieldmanager::manager_from_request(
        query.get("fieldManager").map(String::as_str),
        headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )?);
    let write_options = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
    };
    let part = match subresource {
        None => Part::Main,
        Some("status") => Part::Status,
        Some(other) => {
            return Err(ApiError::PathNotFound(format!(
                "the server could not find the requested resource (horizontalpodautoscalers/{other} in {API_VERSION})"
            )));
        }
    };
    let decode = |body: &[u8]| -> Result<Value, ApiError> {
        let object: Value = crate::http::decode_body(headers, body)?;
        if object["kind"] != "HorizontalPodAutoscaler" {
            return Err(ApiError::BadRequest(format!(
                "the body is a {} where a HorizontalPodAutoscaler was expected",
                object["kind"].as_str().unwrap_or("nothing")
            )));
        }
        to_v2(object)
    };
    match (method, name) {
        (Method::GET, Some(name)) => {
            let object = to_v1(registry.get(resource, namespace, name).await?);
            if crate::http::wants_table(headers) {
                let table = table::table(resource, &[to_v2(object)?], None, None);
                return Ok(json_response(StatusCode::OK, &table));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (Method::GET, None) => {
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                let view = crate::watch::View {
                    api_version: API_VERSION,
                    convert: to_v1,
                };
                return crate::watch::serve(
                    server,
                    resource,
                    Some(view),
                    namespace.map(str::to_owned),
                    options,
                    query,
                    headers,
                )
                .await;
            }
            let page = registry.list(resource, namespace, &options).await?;
            if crate::http::wants_table(headers) {
                let table = table::table(resource, &page.items, None, None);
                return Ok(json_response(StatusCode::OK, &table));
            }
            Ok(json_response(
                StatusCode::OK,
                &list_v1(page.items, Some(page.revision.to_string())),
            ))
        }
        (Method::POST, None) => {
            let created = registry
                .create_as(resource, namespace, decode(body)?, &write_options, &manager)
                .await?;
            Ok(json_response(StatusCode::CREATED, &to_v1(created)))
        }
        (Method::PUT, Some(name)) => {
            let updated = registry
                .update(
                    resource,
                    namespace,
                    name,
                    decode(body)?,
                    part,
                    &write_options,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &to_v1(updated)))
        }
        (Method::PATCH, Some(name)) => {
            let patch_type = match crate::http::media_type(headers).as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "{other} patches of {API_VERSION} horizontalpodautoscalers are not served; \
                         use a JSON, merge or strategic merge patch"
                    )));
                }
            };
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            let current = to_v1(registry.get(resource, namespace, name).await?);
            let resource_version = current["metadata"]["resourceVersion"].clone();
            let mut patched = crate::registry::apply_patch(&current, patch_type, &patch)?;
            patched["metadata"]["resourceVersion"] = resource_version;
            let updated = registry
                .update(
                    resource,
                    namespace,
                    name,
                    to_v2(patched)?,
                    part,
                    &write_options,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &to_v1(updated)))
        }
        (Method::DELETE, Some(name)) => {
            let options: DeleteOptions = crate::http::delete_options(query, body)?;
            registry.delete(resource, namespace, name, &options).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": "autoscaling", "kind": "horizontalpodautoscalers"}}),
            ))
        }
        (method, _) => Err(ApiError::MethodNotSupported(format!(
            "the server does not allow this method on the requested resource ({method} {API_VERSION} horizontalpodautoscalers)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 0, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3, "observedGeneration": 1,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}],
            },
        })
    }

    #[test]
    fn v1_shows_the_cpu_target_and_carries_the_rest_in_annotations() {
        let v1 = to_v1(v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["spec"]["minReplicas"], 0);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 90);
        assert!(v1["spec"]["metrics"].is_null());
        let annotations = &v1["metadata"]["annotations"];
        assert!(
            annotations[METRICS]
                .as_str()
                .unwrap()
                .contains("http_requests_per_second")
        );
        assert!(annotations[BEHAVIOR].as_str().unwrap().contains("30"));
    }

    #[test]
    fn a_v2_object_survives_the_round_trip_through_v1() {
        assert_eq!(to_v2(to_v1(v2())).unwrap(), v2());
    }

    #[test]
    fn a_plain_v1_object_becomes_a_cpu_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 4, "targetCPUUtilizationPercentage": 50},
        });
        let v2 = to_v2(v1).unwrap();
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert!(
            v2["spec"]["minReplicas"].is_null(),
            "left for admission to default"
        );
        assert!(v2["metadata"]["annotations"].is_null());
        let broken = json!({"metadata": {"annotations": {METRICS: "{"}}, "spec": {}});
        assert!(to_v2(broken).is_err());
    }
}
