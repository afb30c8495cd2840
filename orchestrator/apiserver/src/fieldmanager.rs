//! Field managers: who writes an object, and the `metadata.managedFields` every write records.
//!
//! The bookkeeping itself (field sets, conflicts, the apply merge) is pure and lives in
//! [`wharf_apimachinery::managedfields`]; this module fits it to the registry's writes: which
//! entry a write belongs to (manager name, operation, apiVersion, subresource), which part of
//! an applied configuration counts (status only through `/status`), and how the request's
//! own `managedFields` are honoured (Kubernetes lets a non-apply write replace them, and a
//! list of one empty entry, `[{}]`, strips them).

use serde_json::{Value, json};
use wharf_apimachinery::managedfields::{self, FieldSet, ManagedFieldsEntry, ManagerId, Operation};

use crate::error::{ApiError, Cause, Subject};
use crate::meta::{now_rfc3339, set_meta};
use crate::registry::Part;
use crate::resources::Resource;

/// The manager recorded for writes made in process (the controllers and the in-process node
/// client), which have no request to name one.
pub const IN_PROCESS_MANAGER: &str = "wharf";

/// The manager Kubernetes records as owning what an object held before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The longest manager name Kubernetes accepts (`FieldManagerMaxLength`).
const MAX_MANAGER_LENGTH: usize = 128;

/// Who makes a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    /// The manager's name: `?fieldManager=`, else derived from the User-Agent.
    pub name: String,
    /// The subresource the write came through, when the registry's [`Part`] does not say it
    /// (`scale`, which writes the object itself).
    pub subresource: Option<&'static str>,
}

impl Manager {
    /// A manager writing the object or its status (as the write's [`Part`] says).
    pub fn new(name: impl Into<String>) -> Manager {
        Manager {
            name: name.into(),
            subresource: None,
        }
    }

    /// The manager of in-process writes ([`IN_PROCESS_MANAGER`]).
    pub fn in_process() -> Manager {
        Manager::new(IN_PROCESS_MANAGER)
    }

    /// The same manager, writing through `subresource`.
    pub fn through(self, subresource: &'static str) -> Manager {
        Manager {
            subresource: Some(subresource),
            ..self
        }
    }

    fn id(&self, resource: &Resource, part: Part, operation: Operation) -> ManagerId {
        let subresource = match (self.subresource, part) {
            (Some(subresource), _) => subresource,
            (None, Part::Status) => "status",
            (None, Part::Main) => "",
        };
        ManagerId {
            manager: self.name.clone(),
            operation,
            api_version: resource.api_version(),
            subresource: subresource.to_owned(),
        }
    }
}

/// The manager of an HTTP write, as Kubernetes picks it: the `fieldManager` query parameter,
/// else the User-Agent up to its first `/` (`kubectl/v1.37.0 (linux/amd64) ...` gives
/// `kubectl`), without unprintable characters and cut to 128 bytes; with neither, the empty
/// name. A `fieldManager` longer than 128 bytes is invalid.
pub fn manager_from_request(
    field_manager: Option<&str>,
    user_agent: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(name) = field_manager.filter(|m| !m.is_empty()) {
        if name.len() > MAX_MANAGER_LENGTH {
            return Err(invalid_options(Cause::invalid(
                "fieldManager",
                name,
                "must be no more than 128 characters",
            )));
        }
        return Ok(name.to_owned());
    }
    let prefix = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut name = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        name.push(c);
    }
    Ok(name)
}

/// The error Kubernetes gives for invalid write options.
fn invalid_options(cause: Cause) -> ApiError {
    ApiError::Invalid(
        Subject {
            kind: "PatchOptions.meta.k8s.io".into(),
            ..Subject::default()
        },
        vec![cause],
    )
}

/// How a write changes field ownership.
#[derive(Clone, Debug)]
pub(crate) enum Ownership<'a> {
    /// A create, update or non-apply patch: the manager takes what it changed.
    Update(&'a Manager),
    /// A server-side apply: the manager owns exactly `applied`.
    Apply(&'a Applied),
}

/// A server-side apply's configuration, made ready to merge.
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    /// Who applies.
    pub manager: Manager,
    /// Take over conflicting fields instead of failing (`force=true`).
    pub force: bool,
    /// The configuration, reduced to the part the write addresses.
    pub config: Value,
    /// The fields the configuration sets.
    pub fields: FieldSet,
    /// The write's part.
    pub part: Part,
}

impl Applied {
    /// Checks an applied configuration and reduces it to what the write addresses: a main
    /// write leaves status out (when the resource has a status subresource), a status write
    /// keeps only status.
    pub fn new(
        resource: &Resource,
        part: Part,
        config: Value,
        manager: Manager,
        force: bool,
    ) -> Result<Applied, ApiError> {
        if manager.name.is_empty() {
            return Err(invalid_options(Cause::required(
                "fieldManager",
                "is required for apply patch",
            )));
        }
        let Value::Object(mut map) = config else {
            return Err(ApiError::BadRequest(
                "the applied configuration must be an object".into(),
            ));
        };
        if map
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        match part {
            Part::Main if resource.has_status => {
                map.remove("status");
            }
            Part::Main => {}
            Part::Status => {
                map.retain(|key, _| matches!(key.as_str(), "apiVersion" | "kind" | "status"));
            }
        }
        let config = Value::Object(map);
        Ok(Applied {
            fields: FieldSet::from_object(&config),
            manager,
            force,
            config,
            part,
        })
    }

    /// The live object with the configuration merged in, and what this manager applied
    /// before and no longer applies removed (unless another manager owns it).
    pub fn merge_into(&self, resource: &Resource, live: Option<&Value>) -> Value {
        let empty = json!({});
        let live_object = live.unwrap_or(&empty);
        let entries = entries_for_apply(resource, live);
        let who = self.manager.id(resource, self.part, Operation::Apply);
        let merged = managedfields::merge(live_object, &self.config);
        managedfields::prune(merged, &entries, &who, &self.fields)
    }
}

/// The entries an apply starts from: the live object's, or for an existing object that has
/// none (written before managed fields, or stripped), one `before-first-apply` update entry
/// owning everything it holds, as Kubernetes does.
fn entries_for_apply(resource: &Resource, live: Option<&Value>) -> Vec<ManagedFieldsEntry> {
    let Some(live) = live else {
        return Vec::new();
    };
    let entries = live_entries(live);
    if !entries.is_empty() || live.pointer("/metadata/managedFields").is_some() {
        return entries;
    }
    let mut entries = Vec::new();
    let who = Manager::new(BEFORE_FIRST_APPLY).id(resource, Part::Main, Operation::Update);
    managedfields::record_update(&mut entries, &json!({}), live, &who, &now_rfc3339());
    entries
}

/// The stored object's entries; unreadable ones count as none, as in Kubernetes.
fn live_entries(live: &Value) -> Vec<ManagedFieldsEntry> {
    managedfields::decode_entries(live.pointer("/metadata/managedFields")).unwrap_or_default()
}

/// Whether a request's `managedFields` is Kubernetes' "strip them all": one empty entry.
fn is_reset(requested: &Value) -> bool {
    requested
        .as_array()
        .is_some_and(|list| list.len() == 1 && list[0].as_object().is_some_and(|e| e.is_empty()))
}

/// Records a write in `next.metadata.managedFields`: `current` is the stored object (`None`
/// for a create), `next` the object about to be stored (as admitted, before server-set fields
/// such as a Service's cluster IP). Fails only for an apply with conflicts.
pub(crate) fn record(
    resource: &Resource,
    part: Part,
    current: Option<&Value>,
    next: &mut Value,
    ownership: &Ownership<'_>,
) -> Result<(), ApiError> {
    let requested = next.pointer("/metadata/managedFields").cloned();
    let mut entries = match ownership {
        Ownership::Apply(_) => entries_for_apply(resource, current),
        Ownership::Update(manager) => {
            let live = current.map(live_entries).unwrap_or_default();
            let changed_by_request = requested.as_ref().is_some_and(|requested| {
                Some(requested) != current.and_then(|c| c.pointer("/metadata/managedFields"))
            });
            if part == Part::Main && manager.subresource.is_none() && changed_by_request {
                let requested = requested.as_ref().expect("checked above");
                if is_reset(requested) {
                    set_meta(next, "managedFields", Value::Null);
                    return Ok(());
                }
                match managedfields::decode_entries(Some(requested)) {
                    Ok(entries) if !entries.is_empty() => entries,
                    _ => live,
                }
            } else {
                live
            }
        }
    };
    let empty = json!({});
    let old = current.unwrap_or(&empty);
    let now = now_rfc3339();
    match ownership {
        Ownership::Update(manager) => {
            let who = manager.id(resource, part, Operation::Update);
            managedfields::record_update(&mut entries, old, next, &who, &now);
        }
        Ownership::Apply(applied) => {
            let who = applied.manager.id(resource, part, Operation::Apply);
            managedfields::record_apply(
                &mut entries,
                old,
                next,
                &applied.fields,
                &who,
                applied.force,
                &now,
            )
            .map_err(|conflicts| {
                let causes = conflicts
                    .0
                    .iter()
                    .map(|conflict| Cause {
                        reason: "FieldManagerConflict",
                        field: conflict.field(),
                        message: conflict.message(),
                    })
                    .collect();
                ApiError::ApplyConflict(conflicts.message(), causes)
            })?;
        }
    }
    let encoded = managedfields::encode_entries(&entries);
    let is_empty = encoded.as_array().is_none_or(Vec::is_empty);
    set_meta(
        next,
        "managedFields",
        if is_empty { Value::Null } else { encoded },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static Resource {
        crate::resources::find("apps", "v1", "deployments").unwrap()
    }

    fn managers(object: &Value) -> Vec<(String, String, String)> {
        object["metadata"]["managedFields"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        (
                            e["manager"].as_str().unwrap_or("").to_owned(),
                            e["operation"].as_str().unwrap().to_owned(),
                            e["subresource"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_manager_comes_from_the_query_else_the_user_agent() {
        assert_eq!(
            manager_from_request(Some("mine"), Some("kubectl/v1.37.0")).unwrap(),
            "mine"
        );
        assert_eq!(
            manager_from_request(None, Some("kubectl/v1.37.0 (linux/amd64) kubernetes/abc"))
                .unwrap(),
            "kubectl"
        );
        assert_eq!(
            manager_from_request(Some(""), Some("Python-urllib/3.12")).unwrap(),
            "Python-urllib"
        );
        assert_eq!(manager_from_request(None, None).unwrap(), "");
        assert_eq!(
            manager_from_request(None, Some(&"x".repeat(300)))
                .unwrap()
                .len(),
            128
        );
        assert!(manager_from_request(Some(&"x".repeat(129)), None).is_err());
    }

    #[test]
    fn a_status_write_is_recorded_under_the_status_subresource() {
        let resource = deployments();
        let current = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let mut next = current.clone();
        next["status"] = json!({"replicas": 1});
        record(
            resource,
            Part::Status,
            Some(&current),
            &mut next,
            &Ownership::Update(&Manager::new("controller")),
        )
        .unwrap();
        assert_eq!(
            managers(&next),
            [("controller".into(), "Update".into(), "status".into())]
        );
        assert_eq!(
            next["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:status": {"f:replicas": {}}})
        );
    }

    #[test]
    fn a_request_can_replace_or_strip_managed_fields() {
        let resource = deployments();
        let mut current = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        record(
            resource,
            Part::Main,
            None,
            &mut current,
            &Ownership::Update(&Manager::new("creator")),
        )
        .unwrap();
        assert_eq!(managers(&current).len(), 1);

        // One empty entry strips them all.
        let mut next = current.clone();
        next["metadata"]["managedFields"] = json!([{}]);
        next["spec"]["replicas"] = json!(2);
        record(
            resource,
            Part::Main,
            Some(&current),
            &mut next,
            &Ownership::Update(&Manager::new("editor")),
        )
        .unwrap();
        assert!(next["metadata"].get("managedFields").is_none(), "{next:#}");

        // An empty list changes nothing: the live entries stay.
        let mut next = current.clone();
        next["metadata"]["managedFields"] = json!([]);
        record(
            resource,
            Part::Main,
            Some(&current),
            &mut next,
            &Ownership::Update(&Manager::new("editor")),
        )
        .unwrap();
        assert_eq!(managers(&next), managers(&current));
    }

    #[test]
    fn the_first_apply_to_an_object_without_entries_meets_before_first_apply() {
        let resource = deployments();
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let applied = Applied::new(
            resource,
            Part::Main,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d"}, "spec": {"replicas": 3}}),
            Manager::new("kubectl"),
            false,
        )
        .unwrap();
        let mut next = applied.merge_into(resource, Some(&live));
        let error = record(
            resource,
            Part::Main,
            Some(&live),
            &mut next,
            &Ownership::Apply(&applied),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn an_apply_needs_a_manager_and_no_managed_fields() {
        let resource = deployments();
        let error =
            Applied::new(resource, Part::Main, json!({}), Manager::new(""), false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let error = Applied::new(
            resource,
            Part::Main,
            json!({"metadata": {"managedFields": []}}),
            Manager::new("m"),
            false,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "metadata.managedFields must be nil");
    }

    #[test]
    fn a_status_apply_only_applies_status() {
        let resource = deployments();
        let applied = Applied::new(
            resource,
            Part::Status,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"replicas": 9}, "status": {"replicas": 2}}),
            Manager::new("m"),
            false,
        )
        .unwrap();
        assert_eq!(
            applied
                .fields
                .iter()
                .map(|p| managedfields::path_string(p))
                .collect::<Vec<_>>(),
            [".apiVersion", ".kind", ".status.replicas"]
        );
        let main = Applied::new(
            resource,
            Part::Main,
            json!({"spec": {"replicas": 9}, "status": {"replicas": 2}}),
            Manager::new("m"),
            false,
        )
        .unwrap();
        assert!(main.config.get("status").is_none());
    }
}
