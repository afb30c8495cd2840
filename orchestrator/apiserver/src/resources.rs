//! The registry of API resources Wharf serves: their group, version, kind, plural name, scope and
//! subresources, and the `k8s-openapi` type each one is decoded into.
//!
//! Objects travel through the API server as JSON values; every write is decoded into its typed
//! `k8s-openapi` struct (which rejects ill-typed fields with a path) and encoded back, which also
//! drops unknown fields exactly as Kubernetes does.

use k8s_openapi::api;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes a JSON object into a typed Kubernetes object and encodes it back.
pub type NormalizeFn = fn(Value) -> Result<Value, String>;

/// One served resource.
#[derive(Debug)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Plural resource name used in paths, e.g. `deployments`.
    pub plural: &'static str,
    /// Singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl, e.g. `deploy`.
    pub short_names: &'static [&'static str],
    /// Whether the resource has a `status` subresource (status is then written only there).
    pub has_status: bool,
    /// Whether the resource has a `scale` subresource.
    pub has_scale: bool,
    /// Decode-and-encode through the typed struct.
    pub normalize: NormalizeFn,
}

/// Resources are the same if they have the same group, version and plural name.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && self.version == other.version && self.plural == other.plural
    }
}

impl Eq for Resource {}

impl Resource {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of every object of this resource.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{group}/{}/", self.plural)
    }

    /// The store key prefix of this resource in one namespace (or all, if `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Whether the resource has the `binding` subresource (`POST pods/NAME/binding`, with which
    /// a scheduler assigns a pod to a node). Only core/v1 Pods have it.
    pub fn has_binding(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.plural == "pods"
    }

    /// The verbs advertised in discovery.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

fn normalize<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

macro_rules! resource {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], status: $status:literal,
     scale: $scale:literal, $ty:ty) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            has_status: $status,
            has_scale: $scale,
            normalize: normalize::<$ty>,
        }
    };
}

/// Every resource Wharf serves.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", namespaced: false, short: ["ns"], status: true, scale: false, api::core::v1::Namespace),
    resource!("", "v1", "Pod", "pods", "pod", namespaced: true, short: ["po"], status: true, scale: false, api::core::v1::Pod),
    resource!("", "v1", "Node", "nodes", "node", namespaced: false, short: ["no"], status: true, scale: false, api::core::v1::Node),
    resource!("", "v1", "Service", "services", "service", namespaced: true, short: ["svc"], status: true, scale: false, api::core::v1::Service),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", namespaced: true, short: ["ep"], status: false, scale: false, api::core::v1::Endpoints),
    resource!("", "v1", "Secret", "secrets", "secret", namespaced: true, short: [], status: false, scale: false, api::core::v1::Secret),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", namespaced: true, short: ["cm"], status: false, scale: false, api::core::v1::ConfigMap),
    resource!("", "v1", "Event", "events", "event", namespaced: true, short: ["ev"], status: false, scale: false, api::core::v1::Event),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", namespaced: true, short: ["deploy"], status: true, scale: true, api::apps::v1::Deployment),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", namespaced: true, short: ["rs"], status: true, scale: true, api::apps::v1::ReplicaSet),
    resource!("batch", "v1", "Job", "jobs", "job", namespaced: true, short: [], status: true, scale: false, api::batch::v1::Job),
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", namespaced: true, short: ["hpa"], status: true, scale: false, api::autoscaling::v2::HorizontalPodAutoscaler),
    resource!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", namespaced: false, short: [], status: false, scale: false, api::node::v1::RuntimeClass),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced: true, short: [], status: false, scale: false, api::coordination::v1::Lease),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", namespaced: true, short: [], status: false, scale: false, api::discovery::v1::EndpointSlice),
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", namespaced: true, short: ["ing"], status: true, scale: false, api::networking::v1::Ingress),
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", namespaced: true, short: ["pdb"], status: true, scale: false, api::policy::v1::PodDisruptionBudget),
];

/// Finds a resource by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by apiVersion and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Finds a resource by any name a user may type: plural, singular, short name or kind,
/// optionally qualified by group (`deployments.apps`).
pub fn find_by_user_name(name: &str) -> Option<&'static Resource> {
    let lower = name.to_ascii_lowercase();
    let (bare, group) = match lower.split_once('.') {
        Some((bare, group)) => (bare.to_owned(), Some(group.to_owned())),
        None => (lower, None),
    };
    RESOURCES.iter().find(|r| {
        let names_match = r.plural == bare
            || r.singular == bare
            || r.kind.eq_ignore_ascii_case(&bare)
            || r.short_names.contains(&bare.as_str());
        names_match && group.as_deref().is_none_or(|g| g == r.group)
    })
}

/// The served group versions, core first, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_namespaced_and_cluster_objects_do_not_collide() {
        let cm = find("", "v1", "configmaps").unwrap();
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(cm.key(Some("default"), "a"), "/core/configmaps/default/a");
        assert_eq!(ns.key(None, "default"), "/core/namespaces/default");
        assert!(
            cm.key(Some("default"), "a")
                .starts_with(&cm.namespace_prefix(Some("default")))
        );
        assert!(
            !cm.key(Some("default2"), "a")
                .starts_with(&cm.namespace_prefix(Some("default")))
        );
    }

    #[test]
    fn user_names_resolve_by_plural_singular_short_kind_and_group() {
        for name in [
            "deployments",
            "deployment",
            "deploy",
            "Deployment",
            "deployments.apps",
        ] {
            assert_eq!(
                find_by_user_name(name).unwrap().kind,
                "Deployment",
                "{name}"
            );
        }
        assert!(find_by_user_name("deployments.batch").is_none());
        assert!(find_by_user_name("widgets").is_none());
    }

    #[test]
    fn only_pods_have_the_binding_subresource() {
        let with_binding: Vec<&str> = RESOURCES
            .iter()
            .filter(|r| r.has_binding())
            .map(|r| r.plural)
            .collect();
        assert_eq!(with_binding, ["pods"]);
    }

    #[test]
    fn normalizing_rejects_ill_typed_fields_with_their_path() {
        let cm = find("", "v1", "configmaps").unwrap();
        let err = (cm.normalize)(serde_json::json!({"metadata": {"name": 5}})).unwrap_err();
        assert!(err.contains("metadata.name"), "{err}");
    }

    #[test]
    fn normalizing_drops_unknown_fields() {
        let cm = find("", "v1", "configmaps").unwrap();
        let out = (cm.normalize)(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}, "bogus": 1
        }))
        .unwrap();
        assert!(out.get("bogus").is_none());
        assert_eq!(out["data"]["k"], "v");
    }
}
