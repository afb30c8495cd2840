//! API discovery: `/version`, `/api`, `/apis`, `/apis/GROUP`, `/api/v1`, `/apis/GROUP/VERSION`.
//!
//! Served as the plain documents, which every kubectl and client falls back to, and, for `/api`
//! and `/apis`, as aggregated discovery (`apidiscovery.k8s.io` `APIGroupDiscoveryList`, v2 and
//! v2beta1) when the client's `Accept` asks for it: kubectl 1.26 and later then learn every
//! resource of every group from two requests instead of one per group version.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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

/// `/api`: the core group's versions (or, if asked for, the core group's aggregated discovery).
pub fn api_versions(request: &Request) -> Response {
    if let Some(version) = aggregated_discovery_version(request.headers()) {
        return aggregated_response(version, vec![aggregated_group("")]);
    }
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
    if let Some(document) = crate::reviews::group_document(group) {
        return document;
    }
    let mut versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    if group == "autoscaling" {
        // A view of the stored v2 objects (crate::hpa_v1); v2 stays preferred.
        versions.push(json!({"groupVersion": crate::hpa_v1::API_VERSION, "version": "v1"}));
    }
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or_default(),
    })
}

/// The named groups, in discovery order: the stored kinds' groups, then the self reviews'
/// (`crate::reviews`, nothing stored).
fn named_groups() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for (group, _) in group_versions() {
        if !group.is_empty() && !names.contains(&group) {
            names.push(group);
        }
    }
    for group in crate::reviews::GROUPS {
        if !names.contains(&group) {
            names.push(group);
        }
    }
    names
}

/// `/apis`: every named group (or, if asked for, their aggregated discovery).
pub fn api_groups(request: &Request) -> Response {
    let names = named_groups();
    if let Some(version) = aggregated_discovery_version(request.headers()) {
        let mut groups: Vec<Value> = names.into_iter().map(aggregated_group).collect();
        groups.push(aggregated_metrics_group());
        return aggregated_response(version, groups);
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
    if !RESOURCES.iter().any(|r| r.group == group) && !crate::reviews::GROUPS.contains(&group) {
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
    resource_list_document(group, version)
        .map(|document| json_response(StatusCode::OK, &document))
        .ok_or_else(|| {
            ApiError::PathNotFound(format!(
                "the server could not find the requested resource ({})",
                if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                }
            ))
        })
}

/// The `APIResourceList` of a group version, if it is served.
fn resource_list_document(group: &str, version: &str) -> Option<Value> {
    if (group, version) == ("autoscaling", "v1") {
        return Some(crate::hpa_v1::resource_list());
    }
    if let Some(list) = crate::reviews::resource_list(group, version) {
        return Some(list);
    }
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
        for sub in subresources(r) {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some((group, version)) = sub.group_version {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            list.push(entry);
        }
    }
    if list.is_empty() {
        return None;
    }
    let group_version = resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version)
        .map(|r| r.api_version())
        .unwrap_or_default();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// The `apidiscovery.k8s.io` group of aggregated discovery documents.
pub const AGGREGATED_DISCOVERY_GROUP: &str = "apidiscovery.k8s.io";

/// The kind of an aggregated discovery document.
pub const AGGREGATED_DISCOVERY_KIND: &str = "APIGroupDiscoveryList";

/// The `Content-Type` of an aggregated discovery document of `version` (`v2` or `v2beta1`),
/// spelled exactly as Kubernetes spells it: clients compare its parameters to tell an
/// aggregated answer from a plain one.
pub fn aggregated_discovery_content_type(version: &str) -> String {
    format!(
        "application/json;g={AGGREGATED_DISCOVERY_GROUP};v={version};as={AGGREGATED_DISCOVERY_KIND}"
    )
}

/// The version of aggregated discovery (`v2` or `v2beta1`) that `Accept` prefers, or `None`
/// if the first acceptable media type is a plain document (`application/json`, `*/*`) or
/// nothing acceptable is listed.
///
/// kubectl lists its preferences in order, e.g. `application/json;g=apidiscovery.k8s.io;v=v2;
/// as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;
/// as=APIGroupDiscoveryList,application/json`; entries Wharf cannot produce (protobuf, unknown
/// versions) are skipped, as are entries with `q=0`.
pub fn aggregated_discovery_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut group, mut version, mut kind, mut rejected) = (None, None, None, false);
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "g" => group = Some(value),
                "v" => version = Some(value),
                "as" => kind = Some(value),
                "q" => rejected = value.parse::<f32>().is_ok_and(|q| q <= 0.0),
                _ => {}
            }
        }
        if rejected {
            continue;
        }
        match media_type.as_str() {
            "application/json" => match (group, version, kind) {
                (None, None, None) => return None,
                (Some(AGGREGATED_DISCOVERY_GROUP), Some("v2"), Some(AGGREGATED_DISCOVERY_KIND)) => {
                    return Some("v2");
                }
                (
                    Some(AGGREGATED_DISCOVERY_GROUP),
                    Some("v2beta1"),
                    Some(AGGREGATED_DISCOVERY_KIND),
                ) => return Some("v2beta1"),
                _ => {}
            },
            "*/*" | "application/*" => return None,
            _ => {}
        }
    }
    None
}

/// A subresource as discovery describes it.
struct Subresource {
    name: &'static str,
    /// The group and version of the kind it answers with; `None` for the parent's own.
    group_version: Option<(&'static str, &'static str)>,
    kind: &'static str,
    verbs: &'static [&'static str],
}

/// The subresources of `resource`, in the order Kubernetes lists them.
fn subresources(resource: &resources::Resource) -> Vec<Subresource> {
    let mut out = Vec::new();
    if resource.has_binding() {
        out.push(Subresource {
            name: "binding",
            group_version: None,
            kind: "Binding",
            verbs: &["create"],
        });
        // kubectl drain evicts through this when it is listed, honouring disruption budgets.
        out.push(Subresource {
            name: "eviction",
            group_version: Some(("policy", "v1")),
            kind: "Eviction",
            verbs: &["create"],
        });
        out.push(Subresource {
            name: "log",
            group_version: None,
            kind: resource.kind,
            verbs: &["get"],
        });
    }
    if resource.has_scale {
        out.push(Subresource {
            name: "scale",
            group_version: Some(("autoscaling", "v1")),
            kind: "Scale",
            verbs: &["get", "patch", "update"],
        });
    }
    if resource.has_status {
        out.push(Subresource {
            name: "status",
            group_version: None,
            kind: resource.kind,
            verbs: &["get", "patch", "update"],
        });
    }
    out
}

fn response_kind(group_version: Option<(&str, &str)>, kind: &str) -> Value {
    let (group, version) = group_version.unwrap_or(("", ""));
    json!({"group": group, "version": version, "kind": kind})
}

fn scope(namespaced: bool) -> &'static str {
    if namespaced { "Namespaced" } else { "Cluster" }
}

/// The resources of a plain `APIResourceList` as aggregated discovery lists them
/// (`APIResourceDiscovery`): each subresource (`pods/log`) under its resource. Deriving one
/// form from the other keeps the two in agreement.
fn aggregated_resources(list: &Value) -> Vec<Value> {
    let entries = list["resources"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for entry in &entries {
        let name = entry["name"].as_str().unwrap_or_default();
        let kind = entry["kind"].as_str().unwrap_or_default();
        if let Some((parent, subresource)) = name.split_once('/') {
            let group_version = entry["group"].as_str().zip(entry["version"].as_str());
            let sub = json!({
                "subresource": subresource,
                "responseKind": response_kind(group_version, kind),
                "verbs": entry["verbs"],
            });
            if let Some(parent) = out.iter_mut().find(|r| r["resource"] == parent) {
                match parent["subresources"].as_array_mut() {
                    Some(subresources) => subresources.push(sub),
                    None => parent["subresources"] = json!([sub]),
                }
            }
            continue;
        }
        let mut resource = json!({
            "resource": name,
            "responseKind": response_kind(None, kind),
            "scope": scope(entry["namespaced"].as_bool().unwrap_or(false)),
            "singularResource": entry["singularName"],
            "verbs": entry["verbs"],
        });
        if entry["shortNames"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
        {
            resource["shortNames"] = entry["shortNames"].clone();
        }
        if entry["categories"].is_array() {
            resource["categories"] = entry["categories"].clone();
        }
        out.push(resource);
    }
    out
}

/// One group of aggregated discovery (`APIGroupDiscovery`), preferred version first.
fn aggregated_group(group: &str) -> Value {
    let document = group_document(group);
    let versions: Vec<String> = if group.is_empty() {
        vec!["v1".to_owned()]
    } else {
        document["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["version"].as_str().map(str::to_owned))
            .collect()
    };
    let versions: Vec<Value> = versions
        .iter()
        .filter_map(|version| {
            let list = resource_list_document(group, version)?;
            Some(json!({
                "version": version,
                "resources": aggregated_resources(&list),
                "freshness": "Current",
            }))
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// `metrics.k8s.io` in aggregated discovery: read-only NodeMetrics and PodMetrics.
fn aggregated_metrics_group() -> Value {
    let entry = |plural: &str, kind: &str, namespaced: bool| {
        json!({
            "resource": plural,
            "responseKind": response_kind(None, kind),
            "scope": scope(namespaced),
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": crate::nodemetrics::GROUP, "creationTimestamp": null},
        "versions": [{
            "version": crate::nodemetrics::VERSION,
            "resources": [entry("nodes", "NodeMetrics", false), entry("pods", "PodMetrics", true)],
            "freshness": "Current",
        }],
    })
}

/// An `APIGroupDiscoveryList` of `version`, with its exact `Content-Type`.
fn aggregated_response(version: &str, groups: Vec<Value>) -> Response {
    let body = json!({
        "kind": AGGREGATED_DISCOVERY_KIND,
        "apiVersion": format!("{AGGREGATED_DISCOVERY_GROUP}/{version}"),
        "metadata": {},
        "items": groups,
    });
    let content_type = HeaderValue::from_str(&aggregated_discovery_content_type(version))
        .unwrap_or(HeaderValue::from_static("application/json"));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, HeaderValue::from_static("Accept")),
        ],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn aggregated_discovery_follows_the_order_of_accept() {
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        // kubectl 1.30 and later.
        assert_eq!(
            aggregated_discovery_version(&accept(&format!("{v2},{v2beta1},application/json"))),
            Some("v2")
        );
        // kubectl 1.26 to 1.29.
        assert_eq!(
            aggregated_discovery_version(&accept(&format!("{v2beta1},application/json"))),
            Some("v2beta1")
        );
        // Protobuf is skipped for the JSON form that follows it.
        assert_eq!(
            aggregated_discovery_version(&accept(&format!(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,{v2}"
            ))),
            Some("v2")
        );
        // Spaces and parameter order do not matter.
        assert_eq!(
            aggregated_discovery_version(&accept(
                "application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"
            )),
            Some("v2")
        );
        // Plain documents: kubectl 1.20, curl, a preference for plain JSON, q=0.
        for plain in [
            "application/json, */*",
            "*/*",
            "application/json",
            &format!("application/json,{v2}"),
            &format!("{v2};q=0,application/json"),
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
        ] {
            assert_eq!(
                aggregated_discovery_version(&accept(plain)),
                None,
                "{plain}"
            );
        }
        assert_eq!(aggregated_discovery_version(&HeaderMap::new()), None);
    }

    #[test]
    fn aggregated_resources_carry_scope_kind_verbs_names_and_subresources() {
        let apps = aggregated_group("apps");
        assert_eq!(apps["metadata"]["name"], "apps");
        let v1 = &apps["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let deployments = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert_eq!(deployments["singularResource"], "deployment");
        assert_eq!(
            deployments["responseKind"],
            json!({"group": "", "version": "", "kind": "Deployment"})
        );
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["categories"], json!(["all"]));
        assert!(
            deployments["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("watch"))
        );
        assert_eq!(
            deployments["subresources"],
            json!([
                {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]},
                {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Deployment"}, "verbs": ["get", "patch", "update"]},
            ])
        );

        let core = aggregated_group("");
        assert!(core["metadata"].get("name").is_none());
        let pods = core["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        let names: Vec<&str> = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subresource"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["binding", "eviction", "log", "status"]);
        let namespaces = core["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(namespaces["scope"], "Cluster");
    }

    #[test]
    fn self_reviews_are_in_both_forms_of_discovery() {
        assert!(named_groups().contains(&"authorization.k8s.io"));
        assert!(named_groups().contains(&"authentication.k8s.io"));
        let authorization = aggregated_group("authorization.k8s.io");
        let v1 = &authorization["versions"][0];
        assert_eq!(v1["version"], "v1");
        let access = &v1["resources"][0];
        assert_eq!(access["resource"], "selfsubjectaccessreviews");
        assert_eq!(access["scope"], "Cluster");
        assert_eq!(access["verbs"], json!(["create"]));
        assert_eq!(access["responseKind"]["kind"], "SelfSubjectAccessReview");
        assert!(access.get("shortNames").is_none());
        let whoami = aggregated_group("authentication.k8s.io");
        assert_eq!(
            whoami["versions"][0]["resources"][0]["responseKind"]["kind"],
            "SelfSubjectReview"
        );
    }

    #[test]
    fn aggregated_metrics_group_serves_read_only_node_and_pod_metrics() {
        let metrics = aggregated_metrics_group();
        assert_eq!(metrics["metadata"]["name"], "metrics.k8s.io");
        let version = &metrics["versions"][0];
        assert_eq!(version["version"], "v1beta1");
        assert_eq!(version["resources"][0]["resource"], "nodes");
        assert_eq!(version["resources"][0]["scope"], "Cluster");
        assert_eq!(
            version["resources"][1]["responseKind"]["kind"],
            "PodMetrics"
        );
        assert_eq!(version["resources"][1]["verbs"], json!(["get", "list"]));
    }
}
