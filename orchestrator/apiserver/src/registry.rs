//! The object registry: Kubernetes write semantics over a [`Store`], independent of HTTP.
//!
//! This is where system metadata is owned (uid, creationTimestamp, generation,
//! resourceVersion, deletionTimestamp), where optimistic concurrency is enforced, where
//! finalizers delay deletion, and where the status subresource separates spec writers from
//! status writers. Every write records its field manager in `metadata.managedFields`, and
//! server-side apply merges and checks ownership (see [`crate::fieldmanager`]).
//! Objects are stored as JSON without `metadata.resourceVersion`; it is derived
//! from the store's modification revision on every read, so it can never disagree with the
//! store.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use wharf_apimachinery::{fields::FieldSelector, labels::LabelSelector, strategic_merge};
use wharf_store::{KeyValue, Precondition, Revision, Store, WatchStream, WriteOp};

use crate::admission;
use crate::error::{ApiError, Cause, Subject};
use crate::fieldmanager::{self, Applied, Manager, Ownership};
use crate::meta::{self, finalizers, meta_str, now_rfc3339, set_meta};
use crate::resources::{self, Resource};

/// Namespaces that cannot be deleted, as in Kubernetes.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object itself: spec and metadata; status is kept as it was (if the resource has a
    /// status subresource).
    Main,
    /// The `status` subresource: only status changes.
    Status,
}

/// How a patch body is to be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch.
    Json,
    /// Kubernetes strategic merge patch.
    StrategicMerge,
}

/// Options common to writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every check, write nothing.
    pub dry_run: bool,
}

/// What to do with an object being deleted and its dependents.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// Only delete if the object still has this uid.
    pub precondition_uid: Option<String>,
    /// Only delete if the object is still at this resourceVersion.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `gracePeriodSeconds`: for a pod on a node, how long its containers get to stop (0 removes
    /// the pod at once, which is how its agent finishes a graceful deletion).
    pub grace_period_seconds: Option<u64>,
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose fields match.
    pub field_selector: Option<FieldSelector>,
    /// At most this many items per page.
    pub limit: Option<usize>,
    /// Continue after the key in this token.
    pub continue_token: Option<String>,
}

impl ListOptions {
    /// Whether any selector is set.
    pub fn has_selectors(&self) -> bool {
        self.label_selector.as_ref().is_some_and(|s| !s.is_empty())
            || self.field_selector.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Whether an object passes the selectors.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.label_selector
            .as_ref()
            .is_none_or(|s| s.matches(labels))
            && self
                .field_selector
                .as_ref()
                .is_none_or(|s| s.matches(object))
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The matching objects, each with its resourceVersion.
    pub items: Vec<Value>,
    /// The store revision of the listing.
    pub revision: Revision,
    /// A token to fetch the next page, if there is one.
    pub continue_token: Option<String>,
}

/// Kubernetes object semantics over a store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    service_range: ServiceRange,
}

/// The IPv4 range Services get their cluster IPs from (`--service-cidr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRange {
    network: u32,
    prefix: u8,
}

impl ServiceRange {
    /// Kubernetes' usual range (kubeadm uses 10.96.0.0/12).
    pub const DEFAULT: &str = "10.96.0.0/16";

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: std::net::Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == self.network
    }

    /// The addresses that can be given out: all but the network and broadcast addresses.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        let network = u64::from(self.network);
        (network + 1..network + size.saturating_sub(1).max(1))
            .map(|n| std::net::Ipv4Addr::from(n as u32))
    }
}

impl std::str::FromStr for ServiceRange {
    type Err = String;

    fn from_str(cidr: &str) -> Result<ServiceRange, String> {
        let invalid = || format!("{cidr:?} is not an IPv4 CIDR such as 10.96.0.0/16");
        let (address, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
        let address: std::net::Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{cidr:?}: the prefix must be between /8 and /30"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(ServiceRange {
            network: u32::from(address) & mask,
            prefix,
        })
    }
}

impl Default for ServiceRange {
    fn default() -> ServiceRange {
        ServiceRange::DEFAULT.parse().expect("a valid default")
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Decodes a stored value and sets its resourceVersion from the store.
pub fn decode_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    decode_value(&kv.key, &kv.value, kv.mod_revision)
}

/// Decodes the stored bytes of `key` and sets the object's resourceVersion to `revision`.
pub fn decode_value(key: &str, value: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("stored object {key} is not JSON: {e}")))?;
    set_revision(&mut object, revision);
    Ok(object)
}

fn encode_for_store(object: &Value) -> Result<Bytes, ApiError> {
    let mut object = object.clone();
    set_meta(&mut object, "resourceVersion", Value::Null);
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Merges a Secret's write-only `stringData` into `data` (base64), as Kubernetes does on every
/// write: a `stringData` key wins over the same key in `data`, and `stringData` is not stored.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(object) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = object.remove("stringData") else {
        return;
    };
    let data = object
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if !data.is_object() {
        *data = Value::Object(Default::default());
    }
    let data = data.as_object_mut().expect("data is an object");
    for (key, value) in strings {
        if let Value::String(text) = value {
            data.insert(
                key,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// Sets an object's resourceVersion to the store revision that wrote it.
fn set_revision(object: &mut Value, revision: Revision) {
    set_meta(object, "resourceVersion", json!(revision.to_string()));
}

/// Parses a resourceVersion string into a revision.
pub fn parse_resource_version(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry {
            store,
            service_range: ServiceRange::default(),
        }
    }

    /// The same registry, giving Services cluster IPs from `range`.
    pub fn with_service_range(self, range: ServiceRange) -> Registry {
        Registry {
            service_range: range,
            ..self
        }
    }

    /// The same registry, with Secrets and ConfigMaps encrypted at rest under `keyring`:
    /// the store is wrapped in an [`EncryptedStore`](crate::encryption::EncryptedStore), so
    /// every read path of the registry, and everyone reading through [`Registry::store`] (the
    /// controllers, watches, the in-process client), sees decrypted values.
    pub fn with_encryption(self, keyring: crate::encryption::Keyring) -> Registry {
        Registry {
            store: Arc::new(crate::encryption::EncryptedStore::new(self.store, keyring)),
            ..self
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads one object.
    pub async fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get_with_revision(resource, namespace, name)
            .await
            .map(|(object, _)| object)
    }

    async fn get_with_revision(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(Value, Revision), ApiError> {
        let subject = Subject::new(resource, name);
        let kv = self
            .store
            .get(&resource.key(namespace, name))
            .await
            .map_err(|e| ApiError::from_store(e, subject.clone()))?
            .ok_or(ApiError::NotFound(subject))?;
        Ok((decode_stored(&kv)?, kv.mod_revision))
    }

    /// Lists objects of a resource in a namespace (or all), filtered and paged.
    pub async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let prefix = resource.namespace_prefix(namespace);
        // A continued list reports the revision of its first page, and leaves out objects
        // created since: a client that watches from that revision then sees every later change
        // (objects changed since are listed with their newer state and also arrive as events).
        let (mut start_after, mut revision) = match &options.continue_token {
            Some(token) => {
                let (revision, key) = decode_continue(token, &prefix)?;
                if revision < self.store.compacted_revision() {
                    return Err(ApiError::Gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                    ));
                }
                (Some(key), Some(revision))
            }
            None => (None, None),
        };
        let mut items = Vec::new();
        let limit = options.limit.filter(|l| *l > 0);
        loop {
            // Read a little more than needed, since selectors may filter some out.
            let want = limit.map(|l| (l - items.len()).max(16));
            let page = self
                .store
                .list(&prefix, start_after.as_deref(), want)
                .await
                .map_err(|e| ApiError::from_store(e, Subject::new(resource, "")))?;
            let revision = *revision.get_or_insert(page.revision);
            for (index, kv) in page.items.iter().enumerate() {
                if kv.create_revision > revision {
                    continue;
                }
                let object = decode_stored(kv)?;
                if options.matches(&object) {
                    items.push(object);
                }
                if limit == Some(items.len()) {
                    let more = index + 1 < page.items.len() || page.more;
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token: more.then(|| encode_continue(revision, &kv.key)),
                    });
                }
            }
            if !page.more {
                return Ok(ListPage {
                    items,
                    revision,
                    continue_token: None,
                });
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Creates an object in `namespace` (ignored for cluster-scoped resources), as the
    /// in-process manager.
    pub async fn create(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.create_as(resource, namespace, object, options, &Manager::in_process())
            .await
    }

    /// Creates an object as `manager`, who then owns every field it set (its
    /// `metadata.managedFields` entry).
    pub async fn create_as(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        object: Value,
        options: &WriteOptions,
        manager: &Manager,
    ) -> Result<Value, ApiError> {
        self.create_owned(
            resource,
            namespace,
            object,
            options,
            &Ownership::Update(manager),
        )
        .await
    }

    async fn create_owned(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
        options: &WriteOptions,
        ownership: &Ownership<'_>,
    ) -> Result<Value, ApiError> {
        let namespace = if resource.namespaced {
            let namespace = namespace.unwrap_or("default");
            match meta_str(&object, "namespace") {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::BadRequest(format!(
                        "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
                    )));
                }
                _ => set_meta(&mut object, "namespace", json!(namespace)),
            }
            Some(namespace)
        } else {
            set_meta(&mut object, "namespace", Value::Null);
            None
        };
        if meta_str(&object, "name").is_none_or(str::is_empty)
            && let Some(mut prefix) = meta_str(&object, "generateName").map(str::to_owned)
        {
            // Kubernetes keeps generated names within 63 characters: the prefix is cut to 58.
            while prefix.len() > 58 {
                prefix.pop();
            }
            let suffix = wharf_apimachinery::validation::generate_name_suffix(random_seed());
            set_meta(&mut object, "name", json!(format!("{prefix}{suffix}")));
        }
        let name = meta_str(&object, "name").unwrap_or("").to_owned();
        // System fields are the server's to set.
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            set_meta(&mut object, field, Value::Null);
        }
        set_meta(&mut object, "uid", json!(uuid::Uuid::new_v4().to_string()));
        set_meta(&mut object, "creationTimestamp", json!(now_rfc3339()));
        if object.get("spec").is_some() {
            set_meta(&mut object, "generation", json!(1));
        }
        // Status is written through the status subresource by controllers and agents; a
        // Node is the exception, since its agent registers it with its status.
        if resource.has_status
            && resource.kind != "Node"
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let mut object = self.admit(resource, object, &name)?;
        // Ownership covers what the client sent and the defaults, not what the server adds
        // below (tolerations, a Job's selector, a Service's addresses), as in Kubernetes.
        fieldmanager::record(resource, Part::Main, None, &mut object, ownership)?;
        if resource.kind == "Pod" {
            add_default_toleration_seconds(&mut object);
        }
        if resource.kind == "Job" {
            generate_job_selector(&mut object);
        }
        if let Some(namespace) = namespace {
            self.require_namespace(namespace).await?;
        }
        if resource.kind == "Service" {
            self.allocate_service_addresses(resource, &name, &mut object)
                .await?;
        }
        if options.dry_run {
            return Ok(object);
        }
        let result = self
            .store
            .write(WriteOp::Put {
                key: resource.key(namespace, &name),
                value: encode_for_store(&object)?,
                precondition: Precondition::MustNotExist,
            })
            .await
            .map_err(|e| ApiError::from_store(e, Subject::new(resource, &name)))?;
        set_revision(&mut object, result.revision);
        Ok(object)
    }

    /// Gives a new Service its cluster IP and the node ports it asks for implicitly (type
    /// NodePort or LoadBalancer without `nodePort`), refusing node ports already taken.
    ///
    /// Two Services created at the same instant could be given the same address; the gateway
    /// then serves one of them. A persistent allocator (as kube-apiserver keeps in etcd) would
    /// close that gap.
    async fn allocate_service_addresses(
        &self,
        resource: &Resource,
        name: &str,
        service: &mut Value,
    ) -> Result<(), ApiError> {
        let existing = self
            .list(resource, None, &ListOptions::default())
            .await?
            .items;
        let mut used_ports: Vec<i64> = existing
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        let used_ips: Vec<&str> = existing
            .iter()
            .filter_map(|s| s["spec"]["clusterIP"].as_str())
            .collect();
        let wants_node_ports = matches!(
            service["spec"]["type"].as_str(),
            Some("NodePort" | "LoadBalancer")
        );
        if let Some(ports) = service["spec"]["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                match port["nodePort"].as_i64() {
                    Some(requested) if used_ports.contains(&requested) => {
                        return Err(ApiError::Invalid(
                            Subject::new(resource, name),
                            vec![Cause::invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                &requested.to_string(),
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    Some(requested) => used_ports.push(requested),
                    None if wants_node_ports => {
                        let free = (30000..=32767)
                            .find(|p| !used_ports.contains(p))
                            .ok_or_else(|| {
                                ApiError::Unavailable("no free node port in 30000-32767".into())
                            })?;
                        port["nodePort"] = json!(free);
                        used_ports.push(free);
                    }
                    None => {}
                }
            }
        }
        let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap_or("");
        if cluster_ip.is_empty() && service["spec"]["type"] != "ExternalName" {
            let free = self
                .service_range
                .addresses()
                .map(|ip| ip.to_string())
                .find(|ip| !used_ips.contains(&ip.as_str()))
                .ok_or_else(|| ApiError::Unavailable("no free cluster IP".into()))?;
            service["spec"]["clusterIP"] = json!(free);
            service["spec"]["clusterIPs"] = json!([free]);
        }
        Ok(())
    }

    async fn require_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let namespaces = resources::find("", "v1", "namespaces").expect("namespaces are served");
        let ns = self.get(namespaces, None, namespace).await?;
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Typed decode, defaults and validation: the object as it will be stored.
    fn admit(&self, resource: &Resource, object: Value, name: &str) -> Result<Value, ApiError> {
        let mut object = (resource.normalize)(object).map_err(|e| {
            ApiError::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                resource.kind, resource.version, resource.kind
            ))
        })?;
        admission::apply_defaults(resource, &mut object);
        let causes = admission::validate(resource, &object);
        if !causes.is_empty() {
            return Err(ApiError::Invalid(Subject::new(resource, name), causes));
        }
        if resource.kind == "Secret" {
            fold_string_data(&mut object);
        }
        Ok(object)
    }

    /// Replaces an object (PUT) as the in-process manager. A resourceVersion in the body is a
    /// precondition.
    pub async fn update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.update_as(
            resource,
            namespace,
            name,
            object,
            part,
            options,
            &Manager::in_process(),
        )
        .await
    }

    /// Replaces an object (PUT) as `manager`, who takes over the fields it changes.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_as(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
        options: &WriteOptions,
        manager: &Manager,
    ) -> Result<Value, ApiError> {
        match meta_str(&object, "name") {
            Some(body_name) if body_name != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        if resource.namespaced
            && let (Some(body_ns), Some(ns)) = (meta_str(&object, "namespace"), namespace)
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::BadRequest(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
            )));
        }
        let expected = meta_str(&object, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(parse_resource_version)
            .transpose()?;
        let body_uid = meta_str(&object, "uid").filter(|u| !u.is_empty());
        self.guaranteed_update(
            resource,
            namespace,
            name,
            part,
            options,
            expected,
            &Ownership::Update(manager),
            |current| {
                check_uid(resource, name, body_uid, current)?;
                Ok(object.clone())
            },
        )
        .await
    }

    /// Patches an object as the in-process manager. A resourceVersion in the patch is a
    /// precondition.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.patch_as(
            resource,
            namespace,
            name,
            patch_type,
            patch,
            part,
            options,
            &Manager::in_process(),
        )
        .await
    }

    /// Patches an object as `manager`, who takes over the fields it changes.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_as(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
        options: &WriteOptions,
        manager: &Manager,
    ) -> Result<Value, ApiError> {
        let (expected, patch_uid) = preconditions_of(patch)?;
        self.guaranteed_update(
            resource,
            namespace,
            name,
            part,
            options,
            expected,
            &Ownership::Update(manager),
            |current| {
                check_uid(resource, name, patch_uid, current)?;
                apply_patch(current, patch_type, patch)
            },
        )
        .await
    }

    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`): merges the applied
    /// configuration `config` into the object (creating it if absent, for the main part),
    /// removes what `manager` applied before and omits now (unless another manager owns it),
    /// and records that `manager` owns exactly what it applied. Changing a field another
    /// manager owns is a conflict (409, one cause per field) unless `force`. Returns the
    /// object and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        config: Value,
        part: Part,
        options: &WriteOptions,
        manager: Manager,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        if let Some(body_name) = config.pointer("/metadata/name").and_then(Value::as_str)
            && body_name != name
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        for (field, expected) in [
            ("kind", resource.kind.to_owned()),
            ("apiVersion", resource.api_version()),
        ] {
            match config.get(field).and_then(Value::as_str) {
                Some(given) if given == expected => {}
                Some(given) => {
                    return Err(ApiError::BadRequest(format!(
                        "the {field} of the applied configuration ({given}) does not match the request path ({expected})"
                    )));
                }
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "{field} must be set in the applied configuration"
                    )));
                }
            }
        }
        let (expected, config_uid) = preconditions_of(&config)?;
        let config_uid = config_uid.map(str::to_owned);
        let applied = Applied::new(resource, part, config, manager, force)?;
        loop {
            match self.get(resource, namespace, name).await {
                Err(ApiError::NotFound(_)) if part == Part::Main && expected.is_none() => {
                    let mut object = applied.merge_into(resource, None);
                    set_meta(&mut object, "name", json!(name));
                    set_meta(&mut object, "uid", Value::Null);
                    match self
                        .create_owned(
                            resource,
                            namespace,
                            object,
                            options,
                            &Ownership::Apply(&applied),
                        )
                        .await
                    {
                        // Someone created it meanwhile: apply to theirs.
                        Err(ApiError::AlreadyExists(_)) => continue,
                        result => return result.map(|object| (object, true)),
                    }
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let result = self
                .guaranteed_update(
                    resource,
                    namespace,
                    name,
                    part,
                    options,
                    expected,
                    &Ownership::Apply(&applied),
                    |current| {
                        check_uid(resource, name, config_uid.as_deref(), current)?;
                        Ok(applied.merge_into(resource, Some(current)))
                    },
                )
                .await;
            match result {
                // Deleted meanwhile: create it.
                Err(ApiError::NotFound(_)) if part == Part::Main && expected.is_none() => continue,
                result => return result.map(|object| (object, false)),
            }
        }
    }

    /// Reads, transforms and writes an object, retrying when another writer got in between
    /// (unless the caller pinned a resourceVersion, which then must match).
    #[allow(clippy::too_many_arguments)]
    async fn guaranteed_update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        options: &WriteOptions,
        expected: Option<Revision>,
        ownership: &Ownership<'_>,
        transform: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let subject = Subject::new(resource, name);
        // Unconditional writes retry until they win: every round of conflicts has a winner, so
        // this always ends (Kubernetes' GuaranteedUpdate does the same).
        loop {
            let (current, revision) = self.get_with_revision(resource, namespace, name).await?;
            if let Some(expected) = expected
                && expected != revision
            {
                return Err(ApiError::from_store(
                    wharf_store::StoreError::Conflict {
                        key: String::new(),
                        expected,
                        actual: revision,
                    },
                    subject,
                ));
            }
            let requested = transform(&current)?;
            let mut next = self.prepare_update(resource, &current, requested, part)?;
            fieldmanager::record(resource, part, Some(&current), &mut next, ownership)?;
            if meta::comparable(&next) == meta::comparable(&current) {
                return Ok(current);
            }
            if options.dry_run {
                return Ok(next);
            }
            let key = resource.key(namespace, name);
            let finished = next.pointer("/metadata/deletionTimestamp").is_some()
                && blocking_finalizers(resource, &next).is_empty();
            let op = if finished {
                WriteOp::Delete {
                    key,
                    precondition: Precondition::ModRevision(revision),
                }
            } else {
                WriteOp::Put {
                    key,
                    value: encode_for_store(&next)?,
                    precondition: Precondition::ModRevision(revision),
                }
            };
            match self.store.write(op).await {
                Ok(result) => {
                    set_revision(&mut next, result.revision);
                    return Ok(next);
                }
                Err(wharf_store::StoreError::Conflict { .. }) if expected.is_none() => continue,
                Err(e) => return Err(ApiError::from_store(e, subject)),
            }
        }
    }

    /// Builds the object to store from the current one and what the client asked for.
    fn prepare_update(
        &self,
        resource: &Resource,
        current: &Value,
        requested: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let name = meta_str(current, "name").unwrap_or("").to_owned();
        let mut next = match part {
            Part::Status => {
                let mut next = current.clone();
                match requested.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                next
            }
            Part::Main => {
                let mut next = requested;
                if resource.has_status {
                    match current.get("status") {
                        Some(status) => next["status"] = status.clone(),
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                next
            }
        };
        if !next.is_object() {
            return Err(ApiError::BadRequest(
                "the object must be a JSON object".into(),
            ));
        }
        next["apiVersion"] = json!(resource.api_version());
        next["kind"] = json!(resource.kind);
        // Metadata the server owns is carried over from the current object.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            let value = current
                .get("metadata")
                .and_then(|m| m.get(field))
                .cloned()
                .unwrap_or(Value::Null);
            set_meta(&mut next, field, value);
        }
        set_meta(&mut next, "resourceVersion", Value::Null);
        let mut next = self.admit(resource, next, &name)?;
        if resource.kind == "Pod" && part == Part::Main {
            check_pod_spec_update(resource, &name, current, &next)?;
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            let added: Vec<String> = finalizers(&next)
                .into_iter()
                .filter(|f| !finalizers(current).contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::Invalid(
                    Subject::new(resource, &name),
                    vec![Cause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".into(),
                        message: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    }],
                ));
            }
        }
        // Objects that got a generation at creation (those with a spec) count spec changes.
        if let Some(generation) = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            && meta::spec_part(&next) != meta::spec_part(current)
        {
            set_meta(&mut next, "generation", json!(generation + 1));
        }
        Ok(next)
    }

    /// Deletes an object, or marks it for deletion if finalizers hold it.
    pub async fn delete(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let subject = Subject::new(resource, name);
        if resource.kind == "Namespace" && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::Forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        loop {
            let (current, revision) = self.get_with_revision(resource, namespace, name).await?;
            if let Some(uid) = &options.precondition_uid
                && meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::Conflict(
                    subject,
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &options.precondition_resource_version
                && parse_resource_version(rv)? != revision
            {
                return Err(ApiError::Conflict(
                    subject,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
                    ),
                ));
            }
            let policy_finalizer = match options.propagation_policy.as_deref() {
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Orphan") => Some("orphan"),
                Some("Background") | None => None,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid propagationPolicy {other:?}: must be Orphan, Background or Foreground"
                    )));
                }
            };
            let mut next = current.clone();
            let mut metadata_finalizers = finalizers(&current);
            if let Some(finalizer) = policy_finalizer
                && current.pointer("/metadata/deletionTimestamp").is_none()
                && !metadata_finalizers.iter().any(|f| f == finalizer)
            {
                metadata_finalizers.push(finalizer.to_owned());
                set_meta(&mut next, "finalizers", json!(metadata_finalizers));
            }
            // A pod running on a node is stopped by its agent first (SIGTERM, the grace
            // period, SIGKILL): deletion only marks it, and the agent removes it with a grace
            // period of 0 once its containers are gone, as Kubernetes' kubelet does.
            let graceful_pod = resource.kind == "Pod"
                && options.grace_period_seconds != Some(0)
                && current
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|node| !node.is_empty())
                && !matches!(
                    current.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                );
            let grace = if graceful_pod {
                options
                    .grace_period_seconds
                    .or_else(|| {
                        current
                            .pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_u64)
                    })
                    .unwrap_or(30)
            } else {
                0
            };
            let key = resource.key(namespace, name);
            let op = if blocking_finalizers(resource, &next).is_empty() && !graceful_pod {
                WriteOp::Delete {
                    key,
                    precondition: Precondition::ModRevision(revision),
                }
            } else {
                if next.pointer("/metadata/deletionTimestamp").is_none() {
                    set_meta(&mut next, "deletionTimestamp", json!(now_rfc3339()));
                    set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
                    if resource.kind == "Namespace" {
                        next["status"]["phase"] = json!("Terminating");
                    }
                }
                if meta::comparable(&next) == meta::comparable(&current) {
                    return Ok(current);
                }
                WriteOp::Put {
                    key,
                    value: encode_for_store(&next)?,
                    precondition: Precondition::ModRevision(revision),
                }
            };
            if options.dry_run {
                return Ok(next);
            }
            match self.store.write(op).await {
                Ok(result) => {
                    set_revision(&mut next, result.revision);
                    return Ok(next);
                }
                Err(wharf_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, subject)),
            }
        }
    }

    /// Watches a resource in a namespace (or all) from a revision.
    pub async fn watch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<WatchStream, ApiError> {
        self.store
            .watch(&resource.namespace_prefix(namespace), after)
            .await
            .map_err(|e| ApiError::from_store(e, Subject::new(resource, "")))
    }

    /// Assigns an unbound pod to `node`, as `POST pods/NAME/binding` does (Kubernetes'
    /// `BindingREST`): sets `spec.nodeName` and the `PodScheduled=True` condition in one write,
    /// so no reader ever sees a bound pod without the condition. Returns the updated pod.
    ///
    /// Like Kubernetes, this bypasses the pod's update strategy: a binding is the one way to
    /// change `spec.nodeName`, and it does not bump `metadata.generation`. A pod that is already
    /// bound, being deleted or held by scheduling gates is a 409 Conflict; a missing pod is a
    /// 404; `uid`, if given, must be the pod's uid.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let pods = resources::find("", "v1", "pods").expect("pods are served");
        // Kubernetes reports binding failures about the `pods/binding` resource.
        let binding = Subject {
            name: name.to_owned(),
            group: String::new(),
            resource: "pods/binding".into(),
            kind: "Binding".into(),
        };
        if node.is_empty() {
            return Err(ApiError::Invalid(
                binding,
                vec![Cause::required("target.name", "")],
            ));
        }
        let conflict = |message: String| ApiError::Conflict(binding.clone(), message);
        loop {
            let (current, revision) = self.get_with_revision(pods, Some(namespace), name).await?;
            let stored_uid = meta_str(&current, "uid").unwrap_or("");
            if let Some(uid) = uid
                && uid != stored_uid
            {
                return Err(conflict(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored_uid}"
                )));
            }
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            if let Some(assigned) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node {assigned:?}"
                )));
            }
            if current
                .pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .is_some_and(|gates| !gates.is_empty())
            {
                return Err(conflict(format!(
                    "pod {name} has non-empty .spec.schedulingGates"
                )));
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            set_pod_condition(&mut next, "PodScheduled", "True");
            if options.dry_run {
                return Ok(next);
            }
            let op = WriteOp::Put {
                key: pods.key(Some(namespace), name),
                value: encode_for_store(&next)?,
                precondition: Precondition::ModRevision(revision),
            };
            match self.store.write(op).await {
                Ok(result) => {
                    set_revision(&mut next, result.revision);
                    return Ok(next);
                }
                // Another writer (say, the agent updating status) got in between: the checks
                // above are repeated on the newer pod.
                Err(wharf_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, Subject::new(pods, name))),
            }
        }
    }
}

/// Sets a pod condition the way Kubernetes' `UpdatePodCondition` does: the transition time
/// moves only when the condition's status changes.
fn set_pod_condition(pod: &mut Value, condition_type: &str, status: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"]
        .as_array_mut()
        .expect("conditions was just made an array");
    match conditions.iter_mut().find(|c| c["type"] == condition_type) {
        Some(existing) if existing["status"] == status => {}
        Some(existing) => {
            existing["status"] = json!(status);
            existing["lastTransitionTime"] = json!(now_rfc3339());
        }
        None => conditions.push(json!({
            "type": condition_type,
            "status": status,
            "lastTransitionTime": now_rfc3339(),
        })),
    }
}

/// How long a pod stays bound to a node that became not ready or unreachable before the node
/// lifecycle controller evicts it, unless the pod says otherwise (Kubernetes' admission plugin
/// `DefaultTolerationSeconds`, `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Adds to a new pod the tolerations of the `node.kubernetes.io/not-ready` and
/// `node.kubernetes.io/unreachable` NoExecute taints, for [`DEFAULT_TOLERATION_SECONDS`], unless
/// it already tolerates them (a toleration with that key or no key, and effect NoExecute or
/// none, as Kubernetes' plugin decides). Only on create, as in Kubernetes: an update keeps the
/// tolerations it is given.
fn add_default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    let list = tolerations.as_array_mut().expect("made an array above");
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let t_key = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (t_key.is_empty() || t_key == key) && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

/// A pod's spec is fixed once created, except for the fields Kubernetes lets change: container
/// images, `activeDeadlineSeconds`, `tolerations` and `terminationGracePeriodSeconds`. (The
/// node is set through `pods/binding`, which does not come through here.)
fn check_pod_spec_update(
    resource: &Resource,
    name: &str,
    current: &Value,
    next: &Value,
) -> Result<(), ApiError> {
    let fixed_part = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or_default();
        if let Some(map) = spec.as_object_mut() {
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                map.remove(field);
            }
            for list in ["containers", "initContainers"] {
                if let Some(containers) = map.get_mut(list).and_then(Value::as_array_mut) {
                    for container in containers {
                        if let Some(c) = container.as_object_mut() {
                            c.remove("image");
                        }
                    }
                }
            }
        }
        spec
    };
    if fixed_part(current) == fixed_part(next) {
        return Ok(());
    }
    Err(ApiError::Invalid(
        Subject::new(resource, name),
        vec![Cause {
            reason: "FieldValueForbidden",
            field: "spec".into(),
            message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds`".into(),
        }],
    ))
}

/// What holds an object back from removal once it is being deleted: `metadata.finalizers`, and
/// for a Namespace also `spec.finalizers` (the namespace controller's `kubernetes`, removed once
/// the namespace is empty).
pub fn blocking_finalizers(resource: &Resource, object: &Value) -> Vec<String> {
    let mut all = finalizers(object);
    if resource.kind == "Namespace"
        && let Some(list) = object.pointer("/spec/finalizers").and_then(Value::as_array)
    {
        all.extend(list.iter().filter_map(|f| f.as_str().map(str::to_owned)));
    }
    all
}

/// A uid in a write's body is a precondition: it must be the stored object's uid, so a write
/// meant for an earlier object of the same name cannot land on its successor.
fn check_uid(
    resource: &Resource,
    name: &str,
    requested: Option<&str>,
    current: &Value,
) -> Result<(), ApiError> {
    let stored = meta_str(current, "uid").unwrap_or("");
    match requested {
        Some(uid) if uid != stored => Err(ApiError::Conflict(
            Subject::new(resource, name),
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The preconditions a patch or an applied configuration carries: a resourceVersion the object
/// must be at, and a uid it must have (the garbage collector and the controllers rely on the
/// uid never letting them patch a newer object of the name).
fn preconditions_of(patch: &Value) -> Result<(Option<Revision>, Option<&str>), ApiError> {
    let expected = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .map(parse_resource_version)
        .transpose()?;
    let uid = patch
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    Ok((expected, uid))
}

/// Applies a patch of the given type to an object.
pub fn apply_patch(
    current: &Value,
    patch_type: PatchType,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            let mut next = current.clone();
            json_patch::merge(&mut next, patch);
            Ok(next)
        }
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            let mut next = current.clone();
            json_patch::patch(&mut next, &operations).map_err(|e| {
                ApiError::Invalid(
                    Subject::default(),
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: "patch".into(),
                        message: format!("the JSON patch could not be applied: {e}"),
                    }],
                )
            })?;
            Ok(next)
        }
        PatchType::StrategicMerge => strategic_merge::apply(current, patch)
            .map_err(|e| ApiError::BadRequest(format!("invalid strategic merge patch: {e}"))),
    }
}

/// A continue token: the list's revision and the last key returned, base64-encoded JSON.
fn encode_continue(revision: Revision, last_key: &str) -> String {
    use base64::Engine;
    let token = json!({"rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine;
    let bad = || ApiError::BadRequest("continue key is not valid".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let token: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let revision = token["rv"].as_u64().ok_or_else(bad)?;
    let key = token["start"].as_str().ok_or_else(bad)?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok((revision, key.to_owned()))
}

fn random_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Kubernetes' Job selector generation: unless `spec.manualSelector` is true, a new Job selects
/// its pods by its uid, and its pod template carries the labels that say so (which the Job
/// controller also puts on every pod), so `kubectl logs job/NAME` and `describe` find them.
fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let (Some(uid), Some(name)) = (
        meta_str(job, "uid").map(str::to_owned),
        meta_str(job, "name").map(str::to_owned),
    ) else {
        return;
    };
    let spec = &mut job["spec"];
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut spec["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[key] = json!(value);
    }
}

#[cfg(test)]
mod tests {
    use super::{ServiceRange, add_default_toleration_seconds, fold_string_data};
    use serde_json::json;
    use std::net::Ipv4Addr;

    #[test]
    fn secret_string_data_is_folded_into_data_and_wins_over_it() {
        let mut secret = json!({
            "kind": "Secret",
            "data": {"a": "b2xk", "keep": "eA=="},
            "stringData": {"a": "new", "b": "two"},
        });
        fold_string_data(&mut secret);
        assert_eq!(
            secret,
            json!({"kind": "Secret", "data": {"a": "bmV3", "keep": "eA==", "b": "dHdv"}})
        );
    }

    #[test]
    fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_300_seconds_unless_they_say_otherwise()
    {
        let mut plain = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        add_default_toleration_seconds(&mut plain);
        assert_eq!(
            plain["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // A pod that tolerates one of them keeps its own toleration and gets the other.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 2});
        let mut fast = json!({"spec": {"tolerations": [own.clone()]}});
        add_default_toleration_seconds(&mut fast);
        let keys: Vec<(&str, i64)> = fast["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap(),
                    t["tolerationSeconds"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("node.kubernetes.io/unreachable", 2),
                ("node.kubernetes.io/not-ready", 300)
            ]
        );
        // A toleration of every taint (no key, no effect) tolerates both already.
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_toleration_seconds(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"],
            json!([{"operator": "Exists"}])
        );
        // A NoSchedule toleration of the key does not count.
        let mut no_schedule = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
        ]}});
        add_default_toleration_seconds(&mut no_schedule);
        assert_eq!(
            no_schedule["spec"]["tolerations"].as_array().unwrap().len(),
            3
        );
    }

    #[test]
    fn service_ranges_give_out_host_addresses_only() {
        let range: ServiceRange = "10.20.30.128/25".parse().unwrap();
        let all: Vec<Ipv4Addr> = range.addresses().collect();
        assert_eq!(all.len(), 126);
        assert_eq!(all[0], Ipv4Addr::new(10, 20, 30, 129));
        assert_eq!(all[125], Ipv4Addr::new(10, 20, 30, 254));
        assert!(range.contains(Ipv4Addr::new(10, 20, 30, 200)));
        assert!(!range.contains(Ipv4Addr::new(10, 20, 30, 2)));
        // Host bits in the text are ignored, as Kubernetes' flags do.
        assert_eq!(
            "10.96.7.9/16".parse::<ServiceRange>().unwrap(),
            ServiceRange::default()
        );
        assert!("10.96.0.0".parse::<ServiceRange>().is_err());
        assert!("10.96.0.0/31".parse::<ServiceRange>().is_err());
        assert!("fd00::/64".parse::<ServiceRange>().is_err());
    }
}
