//! The object registry: Kubernetes write semantics over a [`Store`], independent of HTTP.
//!
//! This is where system metadata is owned (uid, creationTimestamp, generation,
//! resourceVersion, deletionTimestamp), where optimistic concurrency is enforced, where
//! finalizers delay deletion, and where the status subresource separates spec writers from
//! status writers. Objects are stored as JSON without `metadata.resourceVersion`; it is derived
//! from the store's modification revision on every read, so it can never disagree with the
//! store.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use wharf_apimachinery::{fields::FieldSelector, labels::LabelSelector, strategic_merge};
use wharf_store::{KeyValue, Precondition, Revision, Store, WatchStream, WriteOp};

use crate::admission;
use crate::error::{ApiError, Cause, Subject};
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
    set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
    Ok(object)
}

fn encode_for_store(object: &Value) -> Result<Bytes, ApiError> {
    let mut object = object.clone();
    set_meta(&mut object, "resourceVersion", Value::Null);
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Parses a resourceVersion string into a revision.
pub fn parse_resource_version(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry { store }
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

    /// Creates an object in `namespace` (ignored for cluster-scoped resources).
    pub async fn create(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
        options: &WriteOptions,
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
            && let Some(prefix) = meta_str(&object, "generateName").map(str::to_owned)
        {
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
        if let Some(namespace) = namespace {
            self.require_namespace(namespace).await?;
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
        set_meta(
            &mut object,
            "resourceVersion",
            json!(result.revision.to_string()),
        );
        Ok(object)
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
        Ok(object)
    }

    /// Replaces an object (PUT). A resourceVersion in the body is a precondition.
    pub async fn update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
        options: &WriteOptions,
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
            |current| {
                check_uid(resource, name, body_uid, current)?;
                Ok(object.clone())
            },
        )
        .await
    }

    /// Patches an object. A resourceVersion in the patch is a precondition.
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
        let expected = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(parse_resource_version)
            .transpose()?;
        self.guaranteed_update(
            resource,
            namespace,
            name,
            part,
            options,
            expected,
            |current| apply_patch(current, patch_type, patch),
        )
        .await
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
                    set_meta(
                        &mut next,
                        "resourceVersion",
                        json!(result.revision.to_string()),
                    );
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
            let key = resource.key(namespace, name);
            let op = if blocking_finalizers(resource, &next).is_empty() {
                WriteOp::Delete {
                    key,
                    precondition: Precondition::ModRevision(revision),
                }
            } else {
                if next.pointer("/metadata/deletionTimestamp").is_none() {
                    set_meta(&mut next, "deletionTimestamp", json!(now_rfc3339()));
                    set_meta(&mut next, "deletionGracePeriodSeconds", json!(0));
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
                    set_meta(
                        &mut next,
                        "resourceVersion",
                        json!(result.revision.to_string()),
                    );
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
