//! The Endpoints and EndpointSlice controllers: for every Service with a selector, a v1
//! `Endpoints` object of the same name and `discovery.k8s.io/v1` EndpointSlices listing the
//! pods it selects.
//!
//! [`plan`] is pure. From one Service, the pods of its namespace, its Endpoints (if any) and
//! the EndpointSlices it controls, it decides, as Kubernetes' two controllers do:
//! - **which pods**: those the selector matches that have a pod IP and can still serve (not
//!   `Succeeded`, and not `Failed` unless `restartPolicy: Always`).
//! - **ports**: each Service port's `targetPort` resolved against the pod: a number as is, a
//!   name by the pod's container port of that name (a pod without it gets no such port).
//!   Pods with the same resolved ports are grouped into one subset / one set of slices.
//! - **Endpoints**: `addresses` for ready pods, `notReadyAddresses` for the others, each with
//!   its IP, `nodeName` and `targetRef`; pods being deleted are left out (all pods are
//!   `addresses` with `publishNotReadyAddresses`).
//! - **EndpointSlices** named `SERVICE-xxxxx`, labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, at most
//!   [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, one address type each. Every endpoint has the
//!   conditions `ready` (ready and not being deleted), `serving` (ready) and `terminating`
//!   (being deleted). A Service that selects nothing keeps one empty slice, as in Kubernetes.
//!   Existing slices are reused for the same ports and address type; extra ones are deleted.
//! - Both carry the Service's labels and an owner reference to it, so garbage collection
//!   removes them with the Service. They are written only when their content changes.
//!
//! A Service without a selector is left alone: its Endpoints and slices are the user's.
//!
//! [`run`] applies plans whenever a Service, pod, Endpoints or EndpointSlice changes
//! (re-planning only the namespace that changed) and every
//! [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL). Updates carry the target's uid and
//! resourceVersion, deletions its uid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wharf_apiserver::ApiError;
use wharf_apiserver::registry::{DeleteOptions, Part, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};

use crate::{ObjectKey, PassOutcome, controller_reference, controller_uid, drive, list_typed};

/// The label that names the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that names the controller managing an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`], the same as Kubernetes'.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label Kubernetes puts on the Endpoints and slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The most endpoints in one slice (Kubernetes' `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One write of the Endpoints and EndpointSlice controllers.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the Service's Endpoints.
    CreateEndpoints(Box<Endpoints>),
    /// Replace the Service's Endpoints (the object carries its uid and resourceVersion).
    UpdateEndpoints(Box<Endpoints>),
    /// Create a slice (it has a `generateName`).
    CreateSlice(Box<EndpointSlice>),
    /// Replace a slice (the object carries its uid and resourceVersion).
    UpdateSlice(Box<EndpointSlice>),
    /// Delete a slice that is no longer needed.
    DeleteSlice(ObjectKey),
}

/// One selected pod, as both objects list it.
#[derive(Clone, Debug)]
struct Member {
    ip: String,
    ready: bool,
    terminating: bool,
    node_name: Option<String>,
    target: ObjectReference,
}

/// A Service port resolved for one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResolvedPort {
    name: Option<String>,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

/// Plans the writes for one Service. `pods` are the pods of its namespace, `endpoints` its
/// Endpoints object (same name) if there is one, `slices` the slices it controls.
pub fn plan(
    service: &Service,
    pods: &[Pod],
    endpoints: Option<&Endpoints>,
    slices: &[EndpointSlice],
) -> Vec<Action> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    if crate::is_deleting(&service.metadata) {
        return Vec::new();
    }
    let (Some(name), Some(owner)) = (
        service.metadata.name.as_deref(),
        controller_reference("v1", "Service", &service.metadata),
    ) else {
        return Vec::new();
    };
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);

    // The selected pods, grouped by their resolved ports, in a stable order.
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Member>> = BTreeMap::new();
    for pod in pods {
        if !selected(pod, selector, service) {
            continue;
        }
        let Some(member) = member(pod) else {
            continue;
        };
        groups
            .entry(resolve_ports(service, pod))
            .or_default()
            .push(member);
    }
    for members in groups.values_mut() {
        members.sort_by(|a, b| {
            a.ip.cmp(&b.ip)
                .then_with(|| a.target.name.cmp(&b.target.name))
        });
    }

    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    let mut actions = Vec::new();
    actions.extend(plan_endpoints(
        service,
        name,
        &owner,
        &labels,
        &groups,
        publish_not_ready,
        endpoints,
    ));
    let mut slice_labels = labels;
    slice_labels.insert(SERVICE_NAME_LABEL.to_owned(), name.to_owned());
    slice_labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    actions.extend(plan_slices(
        service,
        name,
        &owner,
        &slice_labels,
        &groups,
        publish_not_ready,
        slices,
    ));
    actions
}

fn plan_endpoints(
    service: &Service,
    name: &str,
    owner: &OwnerReference,
    labels: &BTreeMap<String, String>,
    groups: &BTreeMap<Vec<ResolvedPort>, Vec<Member>>,
    publish_not_ready: bool,
    existing: Option<&Endpoints>,
) -> Option<Action> {
    let mut subsets = Vec::new();
    for (ports, members) in groups {
        let address = |m: &Member| EndpointAddress {
            ip: m.ip.clone(),
            node_name: m.node_name.clone(),
            target_ref: Some(m.target.clone()),
            hostname: None,
        };
        // Endpoints leave terminating pods out unless not-ready ones are published.
        let listed = members
            .iter()
            .filter(|m| publish_not_ready || !m.terminating);
        let (ready, not_ready): (Vec<&Member>, Vec<&Member>) =
            listed.partition(|m| publish_not_ready || m.ready);
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let nonempty = |v: Vec<EndpointAddress>| (!v.is_empty()).then_some(v);
        subsets.push(EndpointSubset {
            addresses: nonempty(ready.into_iter().map(address).collect()),
            not_ready_addresses: nonempty(not_ready.into_iter().map(address).collect()),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: Some(p.protocol.clone()),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect()
            }),
        });
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let labels = (!labels.is_empty()).then(|| labels.clone());
    let owners = Some(vec![owner.clone()]);
    match existing {
        None => Some(Action::CreateEndpoints(Box::new(Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: service.metadata.namespace.clone(),
                labels,
                owner_references: owners,
                ..ObjectMeta::default()
            },
            subsets,
        }))),
        Some(current) => {
            let same = current.subsets == subsets
                && current.metadata.labels == labels
                && current.metadata.owner_references == owners;
            (!same).then(|| {
                let mut updated = current.clone();
                updated.subsets = subsets;
                updated.metadata.labels = labels;
                updated.metadata.owner_references = owners;
                Action::UpdateEndpoints(Box::new(updated))
            })
        }
    }
}

fn plan_slices(
    service: &Service,
    name: &str,
    owner: &OwnerReference,
    labels: &BTreeMap<String, String>,
    groups: &BTreeMap<Vec<ResolvedPort>, Vec<Member>>,
    publish_not_ready: bool,
    existing: &[EndpointSlice],
) -> Vec<Action> {
    // The desired slices: per (address type, ports), chunks of at most the maximum.
    let mut desired: Vec<(String, Option<Vec<SlicePort>>, Vec<Endpoint>)> = Vec::new();
    for (ports, members) in groups {
        let slice_ports = Some(
            ports
                .iter()
                .map(|p| SlicePort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: Some(p.protocol.clone()),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect::<Vec<_>>(),
        );
        let mut by_type: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
        for m in members {
            let address_type = if m.ip.contains(':') { "IPv6" } else { "IPv4" };
            by_type.entry(address_type).or_default().push(Endpoint {
                addresses: vec![m.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(publish_not_ready || (m.ready && !m.terminating)),
                    serving: Some(publish_not_ready || m.ready),
                    terminating: Some(m.terminating),
                }),
                node_name: m.node_name.clone(),
                target_ref: Some(m.target.clone()),
                ..Endpoint::default()
            });
        }
        for (address_type, endpoints) in by_type {
            for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
                desired.push((address_type.to_owned(), slice_ports.clone(), chunk.to_vec()));
            }
        }
    }
    if desired.is_empty() {
        // A placeholder, so that a Service selecting nothing still has a slice saying so.
        desired.push(("IPv4".to_owned(), Some(Vec::new()), Vec::new()));
    }

    // Reuse existing slices of the same address type and ports, oldest name first.
    let mut existing: Vec<&EndpointSlice> = existing.iter().collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut used = vec![false; existing.len()];
    let owners = Some(vec![owner.clone()]);
    let labels = Some(labels.clone());
    let mut actions = Vec::new();
    let mut unmatched = Vec::new();
    for (address_type, ports, endpoints) in desired {
        let same_shape = existing.iter().enumerate().position(|(i, s)| {
            !used[i] && s.address_type == address_type && ports_equal(&s.ports, &ports)
        });
        match same_shape {
            Some(i) => {
                used[i] = true;
                actions.extend(update_slice(
                    existing[i],
                    &address_type,
                    &ports,
                    endpoints,
                    &labels,
                    &owners,
                ));
            }
            None => unmatched.push((address_type, ports, endpoints)),
        }
    }
    for (address_type, ports, endpoints) in unmatched {
        // Any leftover slice can be rewritten rather than deleted and created anew.
        match used.iter().position(|u| !u) {
            Some(i) => {
                used[i] = true;
                actions.extend(update_slice(
                    existing[i],
                    &address_type,
                    &ports,
                    endpoints,
                    &labels,
                    &owners,
                ));
            }
            None => actions.push(Action::CreateSlice(Box::new(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: service.metadata.namespace.clone(),
                    labels: labels.clone(),
                    owner_references: owners.clone(),
                    ..ObjectMeta::default()
                },
                address_type,
                endpoints: Some(endpoints),
                ports,
            }))),
        }
    }
    for (slice, used) in existing.iter().zip(used) {
        if !used && let Some(key) = ObjectKey::of(&slice.metadata) {
            actions.push(Action::DeleteSlice(key));
        }
    }
    actions
}

fn update_slice(
    current: &EndpointSlice,
    address_type: &str,
    ports: &Option<Vec<SlicePort>>,
    endpoints: Vec<Endpoint>,
    labels: &Option<BTreeMap<String, String>>,
    owners: &Option<Vec<OwnerReference>>,
) -> Option<Action> {
    let same = current.address_type == address_type
        && ports_equal(&current.ports, ports)
        && current.endpoints.as_deref().unwrap_or_default() == endpoints.as_slice()
        && &current.metadata.labels == labels
        && &current.metadata.owner_references == owners;
    (!same).then(|| {
        let mut updated = current.clone();
        updated.address_type = address_type.to_owned();
        updated.ports = ports.clone();
        updated.endpoints = Some(endpoints);
        updated.metadata.labels = labels.clone();
        updated.metadata.owner_references = owners.clone();
        Action::UpdateSlice(Box::new(updated))
    })
}

fn ports_equal(a: &Option<Vec<SlicePort>>, b: &Option<Vec<SlicePort>>) -> bool {
    a.as_deref().unwrap_or_default() == b.as_deref().unwrap_or_default()
}

/// Whether the Service lists this pod at all.
fn selected(pod: &Pod, selector: &BTreeMap<String, String>, service: &Service) -> bool {
    if pod.metadata.namespace != service.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    if !selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    {
        return false;
    }
    // Kubernetes' `ShouldPodBeInEndpoints`: a pod that has finished for good serves no more.
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    match restart_policy {
        "Never" => !matches!(phase, "Succeeded" | "Failed"),
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// The pod as an endpoint, if it has an IP.
fn member(pod: &Pod) -> Option<Member> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let ready = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Some(Member {
        ip,
        ready,
        terminating: crate::is_deleting(&pod.metadata),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target: ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        },
    })
}

/// The Service's ports as this pod serves them. A named `targetPort` the pod does not declare
/// leaves that port out for this pod.
fn resolve_ports(service: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut resolved: Vec<ResolvedPort> = ports
        .iter()
        .filter_map(|port| {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            let number = match &port.target_port {
                None => port.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => match name.parse::<i32>() {
                    Ok(n) => n,
                    Err(_) => container_port(pod, name, &protocol)?,
                },
            };
            Some(ResolvedPort {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol,
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect();
    resolved.sort();
    resolved
}

/// The number of the pod's container port with this name and protocol.
fn container_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

fn services() -> &'static Resource {
    resources::find("", "v1", "services").expect("services are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

fn endpoints() -> &'static Resource {
    resources::find("", "v1", "endpoints").expect("endpoints are served")
}

fn endpoint_slices() -> &'static Resource {
    resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served")
}

/// One pass over the Services of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let services: Vec<Service> = list_typed(registry, services(), namespaces.as_ref()).await?;
    let with_selector = |s: &&Service| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.selector.as_ref())
            .is_some_and(|sel| !sel.is_empty())
    };
    if !services.iter().any(|s| with_selector(&s)) {
        return Ok(PassOutcome::default());
    }
    let all_pods: Vec<Pod> = list_typed(registry, pods(), namespaces.as_ref()).await?;
    let all_endpoints: Vec<Endpoints> =
        list_typed(registry, endpoints(), namespaces.as_ref()).await?;
    let all_slices: Vec<EndpointSlice> =
        list_typed(registry, endpoint_slices(), namespaces.as_ref()).await?;
    let mut pods_by_namespace: HashMap<String, Vec<Pod>> = HashMap::new();
    for pod in all_pods {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        pods_by_namespace.entry(namespace).or_default().push(pod);
    }
    let endpoints_by_key: HashMap<(String, String), Endpoints> = all_endpoints
        .into_iter()
        .filter_map(|e| {
            let key = (
                e.metadata.namespace.clone().unwrap_or_default(),
                e.metadata.name.clone()?,
            );
            Some((key, e))
        })
        .collect();
    let mut slices_by_owner: HashMap<String, Vec<EndpointSlice>> = HashMap::new();
    for slice in all_slices {
        let managed = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY);
        if let (true, Some(uid)) = (managed, controller_uid(&slice.metadata)) {
            slices_by_owner
                .entry(uid.to_owned())
                .or_default()
                .push(slice);
        }
    }
    let mut outcome = PassOutcome::default();
    for service in services.iter().filter(with_selector) {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let pods = pods_by_namespace
            .get(&namespace)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let current = endpoints_by_key.get(&(namespace, name));
        let slices = slices_by_owner
            .get(&uid)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let actions = plan(service, pods, current, slices);
        outcome = outcome.merge(apply(registry, &actions).await);
    }
    Ok(outcome)
}

/// Applies a plan's actions in order.
async fn apply(registry: &Registry, actions: &[Action]) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    for action in actions {
        match action {
            Action::CreateEndpoints(object) => {
                let result = create(registry, endpoints(), &object.metadata, &**object).await;
                outcome.record("creating Endpoints", result);
            }
            Action::UpdateEndpoints(object) => {
                let result = update(registry, endpoints(), &object.metadata, &**object).await;
                outcome.record("updating Endpoints", result);
            }
            Action::CreateSlice(object) => {
                let result = create(registry, endpoint_slices(), &object.metadata, &**object).await;
                outcome.record("creating an EndpointSlice", result);
            }
            Action::UpdateSlice(object) => {
                let result = update(registry, endpoint_slices(), &object.metadata, &**object).await;
                outcome.record("updating an EndpointSlice", result);
            }
            Action::DeleteSlice(target) => {
                let result = registry
                    .delete(
                        endpoint_slices(),
                        Some(&target.namespace),
                        &target.name,
                        &DeleteOptions {
                            precondition_uid: Some(target.uid.clone()),
                            ..DeleteOptions::default()
                        },
                    )
                    .await;
                outcome.record("deleting an EndpointSlice", result.map(drop));
            }
        }
    }
    outcome
}

async fn create(
    registry: &Registry,
    resource: &Resource,
    metadata: &ObjectMeta,
    object: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let value = serde_json::to_value(object).map_err(|e| ApiError::Internal(e.to_string()))?;
    registry
        .create(
            resource,
            metadata.namespace.as_deref(),
            value,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// Replaces an object; its uid and resourceVersion (from the snapshot) are preconditions.
async fn update(
    registry: &Registry,
    resource: &Resource,
    metadata: &ObjectMeta,
    object: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let value = serde_json::to_value(object).map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = metadata.name.as_deref().unwrap_or_default();
    registry
        .update(
            resource,
            metadata.namespace.as_deref(),
            name,
            value,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// Runs the Endpoints and EndpointSlice controllers until `stopping` resolves.
pub async fn run(registry: Registry, stopping: impl Future<Output = ()>) {
    let registry = &registry;
    drive(
        registry,
        "endpoints",
        &[services(), pods(), endpoints(), endpoint_slices()],
        stopping,
        move |namespaces| pass(registry, namespaces),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    fn service(extra: Value) -> Service {
        let mut value = json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "svc-uid",
                "labels": {"app": "web"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP"},
                ],
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    /// A running pod of the Service with IP `ip`, ready or not, with extra fields merged in.
    fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"},
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "app", "image": "app:1", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                ]}],
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn created_endpoints(actions: &[Action]) -> &Endpoints {
        actions
            .iter()
            .find_map(|a| match a {
                Action::CreateEndpoints(e) | Action::UpdateEndpoints(e) => Some(&**e),
                _ => None,
            })
            .expect("an Endpoints write")
    }

    fn written_slices(actions: &[Action]) -> Vec<&EndpointSlice> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateSlice(s) | Action::UpdateSlice(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    /// Turns created objects into stored ones (name, uid, resourceVersion), as the next pass
    /// would see them.
    fn stored(actions: &[Action]) -> (Option<Endpoints>, Vec<EndpointSlice>) {
        let mut endpoints = None;
        let mut slices = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            match action {
                Action::CreateEndpoints(e) | Action::UpdateEndpoints(e) => {
                    let mut e = (**e).clone();
                    e.metadata.uid = Some("ep-uid".into());
                    e.metadata.resource_version = Some("5".into());
                    endpoints = Some(e);
                }
                Action::CreateSlice(s) | Action::UpdateSlice(s) => {
                    let mut s = (**s).clone();
                    if s.metadata.name.is_none() {
                        s.metadata.name = Some(format!("web-{i:05}"));
                        s.metadata.uid = Some(format!("slice-uid-{i}"));
                    }
                    s.metadata.resource_version = Some("6".into());
                    slices.push(s);
                }
                Action::DeleteSlice(_) => {}
            }
        }
        (endpoints, slices)
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_with_named_ports_resolved() {
        let service = service(json!({}));
        let pods = [
            pod("web-b", "10.0.0.2", true, json!({})),
            pod("web-a", "10.0.0.1", true, json!({})),
            pod("web-c", "10.0.0.3", false, json!({})),
            pod(
                "other",
                "10.0.0.9",
                true,
                json!({"metadata": {"labels": {"app": "db"}}}),
            ),
            pod("no-ip", "", true, json!({})),
        ];
        let actions = plan(&service, &pods, None, &[]);
        let endpoints = created_endpoints(&actions);
        assert_eq!(endpoints.metadata.name.as_deref(), Some("web"));
        assert_eq!(endpoints.metadata.labels.as_ref().unwrap()["app"], "web");
        let owner = &endpoints.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        let subsets = endpoints.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
        let first = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(first.node_name.as_deref(), Some("node-1"));
        let target = first.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("web-a"), Some("uid-web-a"))
        );
        let ports: Vec<(Option<&str>, i32)> = subsets[0]
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(ports, [(Some("http"), 8080), (Some("metrics"), 9091)]);

        let slices = written_slices(&actions);
        assert_eq!(slices.len(), 1);
        let slice = slices[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], "endpointslice-controller.k8s.io");
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(
            slice.metadata.owner_references.as_ref().unwrap()[0].uid,
            "svc-uid"
        );
        let endpoints: Vec<(&str, Option<bool>)> = slice
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                (
                    e.addresses[0].as_str(),
                    e.conditions.as_ref().unwrap().ready,
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                ("10.0.0.1", Some(true)),
                ("10.0.0.2", Some(true)),
                ("10.0.0.3", Some(false))
            ]
        );
        let first = &slice.endpoints.as_ref().unwrap()[0];
        assert_eq!(first.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            first.target_ref.as_ref().unwrap().name.as_deref(),
            Some("web-a")
        );
        let ports: Vec<(Option<&str>, Option<i32>)> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(
            ports,
            [(Some("http"), Some(8080)), (Some("metrics"), Some(9091))]
        );
    }

    #[test]
    fn terminating_pods_are_not_ready_and_marked_terminating() {
        let service = service(json!({}));
        let pods = [
            pod("web-a", "10.0.0.1", true, json!({})),
            pod(
                "web-b",
                "10.0.0.2",
                true,
                json!({"metadata": {"deletionTimestamp": "2027-01-01T00:00:00Z"}}),
            ),
        ];
        let actions = plan(&service, &pods, None, &[]);
        let subsets = created_endpoints(&actions).subsets.clone().unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), Vec::<&str>::new());
        let slice = written_slices(&actions)[0];
        let terminating = &slice.endpoints.as_ref().unwrap()[1];
        assert_eq!(terminating.addresses, ["10.0.0.2"]);
        assert_eq!(
            terminating.conditions,
            Some(EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true),
            })
        );
    }

    #[test]
    fn finished_pods_are_left_out() {
        let service = service(json!({}));
        let never =
            |phase: &str| json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": phase}});
        let pods = [
            pod("done", "10.0.0.1", false, never("Succeeded")),
            pod("failed", "10.0.0.2", false, never("Failed")),
            pod("running", "10.0.0.3", true, never("Running")),
        ];
        let actions = plan(&service, &pods, None, &[]);
        let subsets = created_endpoints(&actions).subsets.clone().unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.3"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
    }

    #[test]
    fn pods_without_a_named_port_get_their_own_subset_and_slice() {
        let service = service(json!({}));
        let pods = [
            pod("web-a", "10.0.0.1", true, json!({})),
            pod(
                "web-b",
                "10.0.0.2",
                true,
                json!({"spec": {"containers": [{"name": "app", "image": "app:1"}]}}),
            ),
        ];
        let actions = plan(&service, &pods, None, &[]);
        let subsets = created_endpoints(&actions).subsets.clone().unwrap();
        assert_eq!(subsets.len(), 2);
        let summary: Vec<(Vec<&str>, Vec<i32>)> = subsets
            .iter()
            .map(|s| {
                (
                    ips(&s.addresses),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect();
        assert!(
            summary.contains(&(vec!["10.0.0.1"], vec![8080, 9091])),
            "{summary:?}"
        );
        assert!(
            summary.contains(&(vec!["10.0.0.2"], vec![9091])),
            "{summary:?}"
        );
        assert_eq!(written_slices(&actions).len(), 2);
    }

    #[test]
    fn nothing_is_written_again_when_nothing_changed() {
        let service = service(json!({}));
        let pods = [
            pod("web-a", "10.0.0.1", true, json!({})),
            pod("web-c", "10.0.0.3", false, json!({})),
        ];
        let first = plan(&service, &pods, None, &[]);
        let (endpoints, slices) = stored(&first);
        assert_eq!(plan(&service, &pods, endpoints.as_ref(), &slices), []);
        // A pod becoming ready updates both in place.
        let pods = [
            pod("web-a", "10.0.0.1", true, json!({})),
            pod("web-c", "10.0.0.3", true, json!({})),
        ];
        let actions = plan(&service, &pods, endpoints.as_ref(), &slices);
        assert!(
            matches!(&actions[..], [Action::UpdateEndpoints(e), Action::UpdateSlice(s)]
            if e.metadata.uid.as_deref() == Some("ep-uid")
                && e.metadata.resource_version.as_deref() == Some("5")
                && s.metadata.name == slices[0].metadata.name),
            "{actions:?}"
        );
    }

    #[test]
    fn a_service_selecting_nothing_has_empty_endpoints_and_one_empty_slice() {
        let service = service(json!({}));
        let actions = plan(&service, &[], None, &[]);
        assert_eq!(created_endpoints(&actions).subsets, None);
        let slices = written_slices(&actions);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].endpoints.as_deref(), Some(&[][..]));
        // Extra slices (say, after a scale-down) are deleted.
        let (endpoints, mut slices) = stored(&actions);
        let mut extra = slices[0].clone();
        extra.metadata.name = Some("web-zzzzz".into());
        extra.metadata.uid = Some("extra-uid".into());
        extra.ports = Some(vec![SlicePort {
            name: Some("old".into()),
            port: Some(1),
            ..SlicePort::default()
        }]);
        slices.push(extra);
        let actions = plan(&service, &[], endpoints.as_ref(), &slices);
        assert_eq!(
            actions,
            [Action::DeleteSlice(ObjectKey {
                namespace: "default".into(),
                name: "web-zzzzz".into(),
                uid: "extra-uid".into(),
            })]
        );
    }

    #[test]
    fn a_service_without_a_selector_is_left_alone() {
        let service = service(json!({"spec": {"selector": null}}));
        let pods = [pod("web-a", "10.0.0.1", true, json!({}))];
        assert_eq!(plan(&service, &pods, None, &[]), []);
        let empty = service_with_empty_selector();
        assert_eq!(plan(&empty, &pods, None, &[]), []);
    }

    fn service_with_empty_selector() -> Service {
        service(json!({"spec": {"selector": {"app": null}}}))
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let service = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let pods = [pod("web-c", "10.0.0.3", false, json!({}))];
        let actions = plan(&service, &pods, None, &[]);
        let subsets = created_endpoints(&actions).subsets.clone().unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.3"]);
        let slice = written_slices(&actions)[0];
        assert_eq!(
            slice.endpoints.as_ref().unwrap()[0]
                .conditions
                .as_ref()
                .unwrap()
                .ready,
            Some(true)
        );
    }

    #[test]
    fn large_services_are_split_into_slices_of_at_most_a_hundred() {
        let service = service(json!({}));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("web-{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                    json!({}),
                )
            })
            .collect();
        let actions = plan(&service, &pods, None, &[]);
        let sizes: Vec<usize> = written_slices(&actions)
            .iter()
            .map(|s| s.endpoints.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
