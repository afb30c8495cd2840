//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`) on plain JSON.
//!
//! Kubernetes drives strategic merge from the Go struct tags of each API type. Wharf has no
//! typed schema here, so the list strategy is chosen by the list's field NAME alone, wherever
//! it appears: `containers`, `env`, `volumes`, ... merge by `name`, `volumeMounts` by
//! `mountPath`, `conditions` by `type`, and so on (see [`apply`]). That covers the built-in
//! types clients actually patch this way, and keeps the code free of per-kind tables.
//!
//! The rules, applied recursively:
//!
//! * objects merge key by key, and a `null` in the patch deletes the key;
//! * scalars, and lists without a merge key, are replaced by the patch;
//! * lists with a merge key merge element by element; `finalizers` merges as a set;
//! * the directives `$patch`, `$retainKeys`, `$setElementOrder/FIELD` and
//!   `$deleteFromPrimitiveList/FIELD` steer the merge and never appear in the result, and any
//!   other patch key starting with `$` is dropped, so a patch can never store a directive.

use serde_json::{Map, Value};

/// The directive key for `replace` and `delete`, in objects and in list elements.
const PATCH_DIRECTIVE: &str = "$patch";
/// The directive key listing which keys an object keeps.
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
/// The prefix of the directive giving the order of the list named after the `/`.
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
/// The prefix of the directive removing values from the primitive list named after the `/`.
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a JSON object.
    #[error("a strategic merge patch must be a JSON object, not {found}")]
    PatchNotAnObject {
        /// The JSON type that was found instead.
        found: &'static str,
    },
    /// The document being patched is not a JSON object.
    #[error("the object being patched must be a JSON object, not {found}")]
    OriginalNotAnObject {
        /// The JSON type that was found instead.
        found: &'static str,
    },
    /// A directive has the wrong shape or an unknown value.
    #[error("malformed directive at {path}: {message}")]
    MalformedDirective {
        /// Where in the patch the directive is, such as `spec.containers[1]`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An element of a list that merges by key does not carry the key.
    #[error("element at {path} has no merge key {key:?}")]
    MissingMergeKey {
        /// Where in the patch the element is, such as `spec.containers[0]`.
        path: String,
        /// The merge key the list uses.
        key: &'static str,
    },
}

/// Applies a strategic merge `patch` to `original` and returns the patched document.
///
/// Lists of objects merge by a key chosen from the list's field name: `name` for
/// `containers`, `initContainers`, `ephemeralContainers`, `volumes`, `env`,
/// `imagePullSecrets`, `resourceClaims` and `schedulingGates`; `ip` for `hostAliases`,
/// `podIPs` and `hostIPs`; `mountPath` for
/// `volumeMounts`; `devicePath` for `volumeDevices`; `type` for `conditions`; `uid` for
/// `ownerReferences`; `topologyKey` for `topologySpreadConstraints`; and for `ports`,
/// `containerPort` when the elements have that field, otherwise `port`. Patch elements whose
/// key matches an original element merge into it; the others are appended in patch order.
/// `finalizers` merges as an ordered set union, and every other list is replaced.
///
/// Directives:
///
/// * `{"$patch": "delete", KEY: v}` as a list element removes the element with that key;
/// * `{"$patch": "replace"}` as a list element makes the other patch elements the whole list;
/// * `"$patch": "replace"` in an object replaces the object with the rest of the patch object,
///   and `"$patch": "delete"` in an object empties it;
/// * `"$setElementOrder/FIELD": [...]` orders the merged list `FIELD`: elements listed there
///   come first, in that order, and the rest follow in their merged order;
/// * `"$retainKeys": [...]` keeps only the listed keys of the merged object;
/// * `"$deleteFromPrimitiveList/FIELD": [...]` removes those values from the list `FIELD`.
///
/// Unknown `$` keys in the patch are dropped. The patch must be a JSON object, as must the
/// original; a malformed directive or a list element without its merge key is an error.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotAnObject {
            found: json_kind(patch),
        });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotAnObject {
            found: json_kind(original),
        });
    };
    merge_map(original, patch, "").map(Value::Object)
}

/// How the elements of a list combine with the patch's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Objects are matched up by the value of this key.
    MergeByKey(&'static str),
    /// Values are combined as an ordered set union.
    Set,
    /// The patch list replaces the original.
    Replace,
}

/// Picks the strategy for the list called `field`. `ports` needs the elements themselves
/// because container ports and service ports share the field name but not the key.
fn list_strategy(field: &str, original: &[Value], patch: &[Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::MergeByKey("name"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::MergeByKey("ip"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "ports" => {
            let is_container_port = original
                .iter()
                .chain(patch)
                .any(|element| element.get("containerPort").is_some());
            if is_container_port {
                ListStrategy::MergeByKey("containerPort")
            } else {
                ListStrategy::MergeByKey("port")
            }
        }
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Replace,
    }
}

/// The directives found among an object's patch keys, validated.
#[derive(Default)]
struct MapDirectives<'a> {
    retain_keys: Option<Vec<&'a str>>,
    set_element_order: Vec<(&'a str, &'a [Value])>,
    delete_from_primitive_list: Vec<(&'a str, &'a [Value])>,
}

impl<'a> MapDirectives<'a> {
    /// Collects and checks the directives of one patch object (other than `$patch`, which the
    /// caller handles first because it overrides everything else).
    fn collect(patch: &'a Map<String, Value>, path: &str) -> Result<Self, PatchError> {
        let mut directives = MapDirectives::default();
        for (key, value) in patch {
            if key == RETAIN_KEYS_DIRECTIVE {
                let malformed = || {
                    malformed(
                        path,
                        format!("{RETAIN_KEYS_DIRECTIVE} must be a list of strings, got {value}"),
                    )
                };
                let Value::Array(items) = value else {
                    return Err(malformed());
                };
                let mut keys = Vec::with_capacity(items.len());
                for item in items {
                    keys.push(item.as_str().ok_or_else(malformed)?);
                }
                directives.retain_keys = Some(keys);
            } else if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER_PREFIX) {
                let items = directive_list(key, field, value, path)?;
                directives.set_element_order.push((field, items));
            } else if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
                let items = directive_list(key, field, value, path)?;
                directives.delete_from_primitive_list.push((field, items));
            }
        }
        Ok(directives)
    }
}

/// Checks a `$prefix/FIELD: [...]` directive: the field must be named and the value a list.
fn directive_list<'a>(
    key: &str,
    field: &str,
    value: &'a Value,
    path: &str,
) -> Result<&'a [Value], PatchError> {
    if field.is_empty() {
        return Err(malformed(path, format!("{key} does not name a field")));
    }
    match value {
        Value::Array(items) => Ok(items),
        other => Err(malformed(
            path,
            format!("{key} must be a list, got {other}"),
        )),
    }
}

/// Merges a patch object into an original object.
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                // Merging the rest of the patch into nothing gives exactly the patch, minus any
                // nested directives and nulls, which must not be stored either.
                let mut rest = patch.clone();
                rest.remove(PATCH_DIRECTIVE);
                merge_map(&Map::new(), &rest, path)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(malformed(
                path,
                format!(
                    "{PATCH_DIRECTIVE} in an object must be \"replace\" or \"delete\", got {directive}"
                ),
            )),
        };
    }
    let directives = MapDirectives::collect(patch, path)?;
    let mut result = original.clone();

    for (field, doomed) in &directives.delete_from_primitive_list {
        match result.get_mut(*field) {
            None => {}
            Some(Value::Array(items)) => items.retain(|item| !doomed.contains(item)),
            Some(other) => {
                return Err(malformed(
                    path,
                    format!(
                        "{DELETE_FROM_PRIMITIVE_LIST_PREFIX}{field} targets a field that is {}, \
                         not a list",
                        json_kind(other)
                    ),
                ));
            }
        }
    }

    for (key, patch_value) in patch {
        // Directives were handled above; unknown `$` keys are dropped so they never get stored.
        if key.starts_with('$') {
            continue;
        }
        if patch_value.is_null() {
            result.remove(key);
            continue;
        }
        let merged = merge_value(key, result.get(key), patch_value, &child_path(path, key))?;
        result.insert(key.clone(), merged);
    }

    for (field, order) in &directives.set_element_order {
        if let Some(Value::Array(items)) = result.get_mut(*field) {
            let directive_path = child_path(path, &format!("{SET_ELEMENT_ORDER_PREFIX}{field}"));
            reorder(field, items, order, &directive_path)?;
        }
    }

    if let Some(keep) = &directives.retain_keys {
        result.retain(|key, _| keep.contains(&key.as_str()));
    }
    Ok(result)
}

/// Merges one patch value into the original value of the field `field` (which may be absent).
/// Objects and lists merge; anything else, or a change of JSON type, replaces.
fn merge_value(
    field: &str,
    original: Option<&Value>,
    patch: &Value,
    path: &str,
) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => {
            let empty = Map::new();
            let base = match original {
                Some(Value::Object(original)) => original,
                _ => &empty,
            };
            merge_map(base, patch, path).map(Value::Object)
        }
        Value::Array(patch) => {
            let base: &[Value] = match original {
                Some(Value::Array(original)) => original,
                _ => &[],
            };
            merge_list(field, base, patch, path).map(Value::Array)
        }
        scalar => Ok(scalar.clone()),
    }
}

/// Makes a patch value storable on its own: nested directives applied, nulls dropped.
fn sanitize(value: &Value, path: &str) -> Result<Value, PatchError> {
    // A list directly inside a list has no field name, so it is simply replaced.
    merge_value("", None, value, path)
}

/// Merges a patch list into the original list of the field `field`.
fn merge_list(
    field: &str,
    original: &[Value],
    patch: &[Value],
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut deletions = Vec::new();
    let mut elements = Vec::new();
    for (index, element) in patch.iter().enumerate() {
        let element_path = format!("{path}[{index}]");
        match element.get(PATCH_DIRECTIVE) {
            None => elements.push((element_path, element)),
            Some(directive) => match directive.as_str() {
                Some("replace") => replace = true,
                Some("delete") => deletions.push((element_path, element)),
                _ => {
                    return Err(malformed(
                        &element_path,
                        format!(
                            "{PATCH_DIRECTIVE} in a list element must be \"replace\" or \
                             \"delete\", got {directive}"
                        ),
                    ));
                }
            },
        }
    }

    if replace {
        // As in Kubernetes, the replace marker wins over everything else in the list,
        // including deletions, which have nothing left to delete from.
        return elements
            .iter()
            .map(|(element_path, element)| sanitize(element, element_path))
            .collect();
    }

    let mut strategy = list_strategy(field, original, patch);
    // Field names are matched regardless of path, so a custom resource may well have, say, a
    // `volumes` list of strings. Merging by key only makes sense for objects; anything else is
    // replaced like an ordinary list.
    if matches!(strategy, ListStrategy::MergeByKey(_))
        && !elements.iter().all(|(_, element)| element.is_object())
    {
        strategy = ListStrategy::Replace;
    }

    let key = match strategy {
        ListStrategy::MergeByKey(key) => key,
        ListStrategy::Set | ListStrategy::Replace => {
            if let Some((element_path, _)) = deletions.first() {
                return Err(malformed(
                    element_path,
                    format!(
                        "{PATCH_DIRECTIVE}: delete needs a list that merges by key, and \
                         '{field}' does not (use {DELETE_FROM_PRIMITIVE_LIST_PREFIX}{field} for \
                         primitive lists)"
                    ),
                ));
            }
            return if strategy == ListStrategy::Set {
                let mut result = original.to_vec();
                for (element_path, element) in &elements {
                    let element = sanitize(element, element_path)?;
                    if !result.contains(&element) {
                        result.push(element);
                    }
                }
                Ok(result)
            } else {
                elements
                    .iter()
                    .map(|(element_path, element)| sanitize(element, element_path))
                    .collect()
            };
        }
    };

    let mut result = original.to_vec();
    for (element_path, element) in &deletions {
        let doomed = merge_key_value(element, key, element_path)?;
        result.retain(|existing| existing.get(key) != Some(doomed));
    }
    for (element_path, element) in &elements {
        let wanted = merge_key_value(element, key, element_path)?;
        match result
            .iter()
            .position(|existing| existing.get(key) == Some(wanted))
        {
            Some(position) => {
                result[position] = merge_value("", Some(&result[position]), element, element_path)?;
            }
            None => result.push(sanitize(element, element_path)?),
        }
    }
    Ok(result)
}

/// Reads the merge key of a patch list element, which must be present and not null.
fn merge_key_value<'a>(
    element: &'a Value,
    key: &'static str,
    path: &str,
) -> Result<&'a Value, PatchError> {
    element
        .get(key)
        .filter(|value| !value.is_null())
        .ok_or_else(|| PatchError::MissingMergeKey {
            path: path.to_string(),
            key,
        })
}

/// Applies `$setElementOrder/FIELD`: elements named in `order` come first, in that order, then
/// the rest in their current order. Entries that name no element are ignored, because the
/// element may have been deleted by the same patch.
fn reorder(
    field: &str,
    items: &mut Vec<Value>,
    order: &[Value],
    path: &str,
) -> Result<(), PatchError> {
    let key = match list_strategy(field, items, order) {
        ListStrategy::MergeByKey(key) if items.iter().all(Value::is_object) => Some(key),
        _ => None,
    };
    let mut remaining: Vec<Option<Value>> = items.drain(..).map(Some).collect();
    let mut ordered = Vec::with_capacity(remaining.len());
    for (index, entry) in order.iter().enumerate() {
        let position = match key {
            // For a list merged by key, entries carry just the key, like `{"name": "app"}`.
            Some(key) => {
                let wanted = entry
                    .get(key)
                    .filter(|value| !value.is_null())
                    .ok_or_else(|| {
                        malformed(
                            path,
                            format!("entry {index} ({entry}) has no merge key {key:?}"),
                        )
                    })?;
                remaining.iter().position(|slot| {
                    slot.as_ref()
                        .is_some_and(|element| element.get(key) == Some(wanted))
                })
            }
            None => remaining
                .iter()
                .position(|slot| slot.as_ref() == Some(entry)),
        };
        if let Some(element) = position.and_then(|position| remaining[position].take()) {
            ordered.push(element);
        }
    }
    ordered.extend(remaining.into_iter().flatten());
    *items = ordered;
    Ok(())
}

fn malformed(path: &str, message: String) -> PatchError {
    PatchError::MalformedDirective {
        path: display_path(path).to_string(),
        message,
    }
}

/// Extends a dotted path with an object key.
fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Names a path in messages; the empty path is the top level of the patch.
fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// Names the JSON type of a value, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(original: Value, patch: Value) -> Value {
        apply(&original, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
    }

    fn directive_error(original: Value, patch: Value) -> (String, String) {
        match apply(&original, &patch) {
            Err(PatchError::MalformedDirective { path, message }) => (path, message),
            other => panic!("expected a malformed directive error, got {other:?}"),
        }
    }

    /// Fails if any key anywhere in `value` starts with `$`.
    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    assert!(!key.starts_with('$'), "directive {key} leaked into {value}");
                    assert_no_directives(child);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    #[test]
    fn patch_must_be_an_object() {
        assert_eq!(
            apply(&json!({}), &json!([1])),
            Err(PatchError::PatchNotAnObject { found: "a list" })
        );
        assert_eq!(
            apply(&json!({}), &json!(null)).unwrap_err().to_string(),
            "a strategic merge patch must be a JSON object, not null"
        );
    }

    #[test]
    fn original_must_be_an_object() {
        assert_eq!(
            apply(&json!("x"), &json!({})),
            Err(PatchError::OriginalNotAnObject { found: "a string" })
        );
    }

    #[test]
    fn scheduling_gates_and_pod_ips_merge_by_their_keys_as_in_kubernetes() {
        let result = patched(
            json!({"spec": {"schedulingGates": [{"name": "a"}]},
                   "status": {"podIPs": [{"ip": "10.0.0.1"}]}}),
            json!({"spec": {"schedulingGates": [{"name": "b"}]},
                   "status": {"podIPs": [{"ip": "fd00::1"}]}}),
        );
        assert_eq!(
            result,
            json!({"spec": {"schedulingGates": [{"name": "a"}, {"name": "b"}]},
                   "status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}})
        );
    }

    #[test]
    fn empty_patch_changes_nothing() {
        let original = json!({"a": 1, "b": {"c": [1, 2]}});
        assert_eq!(patched(original.clone(), json!({})), original);
    }

    #[test]
    fn maps_merge_recursively() {
        let result = patched(
            json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}}}),
            json!({"metadata": {"labels": {"tier": "be", "new": "x"}}}),
        );
        assert_eq!(
            result,
            json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "be", "new": "x"}}})
        );
    }

    #[test]
    fn null_in_the_patch_deletes_the_key() {
        let result = patched(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null, "missing": null}}}),
        );
        assert_eq!(result, json!({"metadata": {"labels": {"b": "2"}}}));
    }

    #[test]
    fn nulls_inside_new_objects_are_not_stored() {
        let result = patched(json!({}), json!({"spec": {"a": 1, "b": null}}));
        assert_eq!(result, json!({"spec": {"a": 1}}));
    }

    #[test]
    fn scalars_are_replaced() {
        let result = patched(
            json!({"spec": {"replicas": 1, "paused": false}}),
            json!({"spec": {"replicas": 3, "paused": true}}),
        );
        assert_eq!(result, json!({"spec": {"replicas": 3, "paused": true}}));
    }

    #[test]
    fn value_of_a_different_type_replaces_the_original() {
        let result = patched(
            json!({"a": {"x": 1}, "b": [1], "c": "s"}),
            json!({"a": "now a string", "b": {"y": 2}, "c": [3]}),
        );
        assert_eq!(
            result,
            json!({"a": "now a string", "b": {"y": 2}, "c": [3]})
        );
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let result = patched(
            json!({"args": ["a", "b"], "command": ["sh"], "rules": [{"x": 1}]}),
            json!({"args": ["c"], "rules": [{"y": 2}]}),
        );
        assert_eq!(
            result,
            json!({"args": ["c"], "command": ["sh"], "rules": [{"y": 2}]})
        );
    }

    #[test]
    fn containers_merge_by_name_and_new_ones_are_appended_in_patch_order() {
        let result = patched(
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:1", "args": ["x"]},
                {"name": "sidecar", "image": "side:1"}
            ]}}),
            json!({"spec": {"containers": [
                {"name": "zz-new", "image": "z:1"},
                {"name": "app", "image": "app:2"},
                {"name": "aa-new", "image": "a:1"}
            ]}}),
        );
        assert_eq!(
            result,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "args": ["x"]},
                {"name": "sidecar", "image": "side:1"},
                {"name": "zz-new", "image": "z:1"},
                {"name": "aa-new", "image": "a:1"}
            ]}})
        );
    }

    #[test]
    fn merge_key_lists_merge_at_any_depth() {
        let result = patched(
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"mountPath": "/data", "name": "data"}]
            }]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
            }]}}}}),
        );
        assert_eq!(
            result,
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "3"},
                    {"name": "C", "value": "4"}
                ],
                "volumeMounts": [{"mountPath": "/data", "name": "data", "readOnly": true}]
            }]}}}})
        );
    }

    #[test]
    fn every_name_keyed_list_merges_by_name() {
        for field in [
            "containers",
            "initContainers",
            "ephemeralContainers",
            "volumes",
            "env",
            "imagePullSecrets",
            "resourceClaims",
        ] {
            let result = patched(
                json!({ field: [{"name": "a", "x": 1}, {"name": "b"}] }),
                json!({ field: [{"name": "a", "y": 2}] }),
            );
            assert_eq!(
                result,
                json!({ field: [{"name": "a", "x": 1, "y": 2}, {"name": "b"}] }),
                "{field}"
            );
        }
    }

    #[test]
    fn special_lists_merge_by_their_own_keys() {
        let cases = [
            ("hostAliases", "ip", json!("10.0.0.1")),
            ("volumeMounts", "mountPath", json!("/data")),
            ("volumeDevices", "devicePath", json!("/dev/xvda")),
            ("conditions", "type", json!("Ready")),
            ("ownerReferences", "uid", json!("1234")),
            ("topologySpreadConstraints", "topologyKey", json!("zone")),
        ];
        for (field, key, value) in cases {
            let result = patched(
                json!({ field: [{ key: value.clone(), "old": 1 }, { key: "other" }] }),
                json!({ field: [{ key: value.clone(), "new": 2 }] }),
            );
            assert_eq!(
                result,
                json!({ field: [{ key: value.clone(), "old": 1, "new": 2 }, { key: "other" }] }),
                "{field}"
            );
        }
    }

    #[test]
    fn container_ports_merge_by_container_port() {
        let result = patched(
            json!({"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}),
            json!({"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090}]}),
        );
        assert_eq!(
            result,
            json!({"ports": [
                {"containerPort": 80, "name": "http", "protocol": "TCP"},
                {"containerPort": 443},
                {"containerPort": 9090}
            ]})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let result = patched(
            json!({"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}),
            json!({"ports": [{"port": 80, "targetPort": 9090}]}),
        );
        assert_eq!(
            result,
            json!({"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]})
        );
    }

    #[test]
    fn env_from_is_replaced() {
        let result = patched(
            json!({"envFrom": [{"configMapRef": {"name": "a"}}]}),
            json!({"envFrom": [{"secretRef": {"name": "b"}}]}),
        );
        assert_eq!(result, json!({"envFrom": [{"secretRef": {"name": "b"}}]}));
    }

    #[test]
    fn finalizers_merge_as_an_ordered_set() {
        let result = patched(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "d", "c"]}}),
        );
        assert_eq!(
            result,
            json!({"metadata": {"finalizers": ["a", "b", "c", "d"]}})
        );
    }

    #[test]
    fn finalizers_can_be_added_to_an_object_without_any() {
        let result = patched(
            json!({"metadata": {}}),
            json!({"metadata": {"finalizers": ["x"]}}),
        );
        assert_eq!(result, json!({"metadata": {"finalizers": ["x"]}}));
    }

    #[test]
    fn other_primitive_lists_are_replaced() {
        let result = patched(
            json!({"spec": {"finalizersLike": ["a"], "tolerations": ["x"]}}),
            json!({"spec": {"finalizersLike": ["b"], "tolerations": []}}),
        );
        assert_eq!(
            result,
            json!({"spec": {"finalizersLike": ["b"], "tolerations": []}})
        );
    }

    #[test]
    fn keyed_field_holding_primitives_is_replaced() {
        let result = patched(json!({"volumes": ["a", "b"]}), json!({"volumes": ["c"]}));
        assert_eq!(result, json!({"volumes": ["c"]}));
    }

    #[test]
    fn delete_directive_removes_the_matching_element() {
        let result = patched(
            json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
            json!({"containers": [{"$patch": "delete", "name": "b"}, {"name": "d"}]}),
        );
        assert_eq!(
            result,
            json!({"containers": [{"name": "a"}, {"name": "c"}, {"name": "d"}]})
        );
    }

    #[test]
    fn delete_directive_for_an_absent_element_is_a_no_op() {
        let original = json!({"env": [{"name": "A", "value": "1"}]});
        let result = patched(
            original.clone(),
            json!({"env": [{"$patch": "delete", "name": "Z"}]}),
        );
        assert_eq!(result, original);
        let from_nothing = patched(
            json!({}),
            json!({"env": [{"$patch": "delete", "name": "Z"}]}),
        );
        assert_eq!(from_nothing, json!({"env": []}));
    }

    #[test]
    fn delete_directive_without_the_merge_key_is_rejected() {
        assert_eq!(
            apply(
                &json!({"containers": [{"name": "a"}]}),
                &json!({"spec": {"containers": [{"$patch": "delete", "image": "x"}]}})
            ),
            Err(PatchError::MissingMergeKey {
                path: "spec.containers[0]".to_string(),
                key: "name"
            })
        );
    }

    #[test]
    fn delete_directive_in_a_list_without_merge_key_is_rejected() {
        let (path, message) = directive_error(
            json!({"args": ["a"]}),
            json!({"args": [{"$patch": "delete", "name": "a"}]}),
        );
        assert_eq!(path, "args[0]");
        assert!(message.contains("'args' does not"), "{message}");
    }

    #[test]
    fn patch_element_without_the_merge_key_is_rejected() {
        let error = apply(
            &json!({"spec": {"containers": [{"name": "a"}]}}),
            &json!({"spec": {"containers": [{"name": "a"}, {"image": "x"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "element at spec.containers[1] has no merge key \"name\""
        );
    }

    #[test]
    fn replace_directive_in_a_map_replaces_the_map() {
        let result = patched(
            json!({"spec": {"selector": {"a": "1", "b": "2"}, "keep": true}}),
            json!({"spec": {"selector": {"$patch": "replace", "c": "3"}}}),
        );
        assert_eq!(
            result,
            json!({"spec": {"selector": {"c": "3"}, "keep": true}})
        );
    }

    #[test]
    fn delete_directive_in_a_map_empties_the_map() {
        let result = patched(
            json!({"spec": {"selector": {"a": "1"}, "keep": true}}),
            json!({"spec": {"selector": {"$patch": "delete"}}}),
        );
        assert_eq!(result, json!({"spec": {"selector": {}, "keep": true}}));
    }

    #[test]
    fn replace_directive_at_the_top_level_replaces_the_whole_object() {
        let result = patched(
            json!({"a": 1, "b": 2}),
            json!({"$patch": "replace", "c": {"d": null, "e": 1}}),
        );
        assert_eq!(result, json!({"c": {"e": 1}}));
    }

    #[test]
    fn replace_directive_in_a_list_replaces_the_list() {
        let result = patched(
            json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b"}]}),
            json!({"containers": [{"name": "c"}, {"$patch": "replace"}, {"name": "a"}]}),
        );
        assert_eq!(
            result,
            json!({"containers": [{"name": "c"}, {"name": "a"}]})
        );
    }

    #[test]
    fn replace_directive_in_a_primitive_list_replaces_it() {
        let result = patched(
            json!({"finalizers": ["a", "b"]}),
            json!({"finalizers": [{"$patch": "replace"}, "c"]}),
        );
        assert_eq!(result, json!({"finalizers": ["c"]}));
    }

    #[test]
    fn unknown_patch_directive_value_is_rejected() {
        let (path, message) = directive_error(json!({}), json!({"spec": {"$patch": "merge"}}));
        assert_eq!(path, "spec");
        assert!(message.contains("\"merge\""), "{message}");
        let (path, _) = directive_error(
            json!({}),
            json!({"spec": {"containers": [{"name": "a"}, {"$patch": 5}]}}),
        );
        assert_eq!(path, "spec.containers[1]");
    }

    #[test]
    fn set_element_order_reorders_the_merged_list() {
        let result = patched(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "d"}, {"name": "c"}, {"name": "a"}],
                "containers": [{"name": "d"}]
            }}),
        );
        assert_eq!(
            result,
            json!({"spec": {"containers": [
                {"name": "d"}, {"name": "c"}, {"name": "a"}, {"name": "b"}
            ]}})
        );
        assert_no_directives(&result);
    }

    #[test]
    fn set_element_order_works_without_the_list_in_the_patch() {
        let result = patched(
            json!({"env": [{"name": "A"}, {"name": "B"}]}),
            json!({"$setElementOrder/env": [{"name": "B"}, {"name": "A"}]}),
        );
        assert_eq!(result, json!({"env": [{"name": "B"}, {"name": "A"}]}));
    }

    #[test]
    fn set_element_order_orders_primitive_lists_by_value() {
        let result = patched(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "x", "a"]}}),
        );
        assert_eq!(result, json!({"metadata": {"finalizers": ["c", "a", "b"]}}));
    }

    #[test]
    fn set_element_order_ignores_entries_for_deleted_elements() {
        let result = patched(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"$patch": "delete", "name": "b"}]
            }),
        );
        assert_eq!(result, json!({"containers": [{"name": "a"}]}));
    }

    #[test]
    fn set_element_order_for_an_absent_field_is_ignored() {
        let result = patched(json!({"a": 1}), json!({"$setElementOrder/containers": []}));
        assert_eq!(result, json!({"a": 1}));
    }

    #[test]
    fn malformed_set_element_order_is_rejected() {
        let (path, message) = directive_error(
            json!({"containers": [{"name": "a"}]}),
            json!({"$setElementOrder/containers": {"name": "a"}}),
        );
        assert_eq!(path, "(root)");
        assert!(message.contains("must be a list"), "{message}");

        let (path, message) = directive_error(
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}),
        );
        assert_eq!(path, "spec.$setElementOrder/containers");
        assert!(message.contains("no merge key \"name\""), "{message}");

        let (_, message) = directive_error(json!({}), json!({"$setElementOrder/": []}));
        assert!(message.contains("does not name a field"), "{message}");
    }

    #[test]
    fn retain_keys_keeps_only_the_listed_keys_after_merging() {
        let result = patched(
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
            json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate", "extra": 1}}),
        );
        assert_eq!(result, json!({"strategy": {"type": "Recreate"}}));
    }

    #[test]
    fn malformed_retain_keys_is_rejected() {
        let (path, message) = directive_error(json!({}), json!({"spec": {"$retainKeys": "type"}}));
        assert_eq!(path, "spec");
        assert!(
            message.contains("$retainKeys must be a list of strings"),
            "{message}"
        );
        let (_, message) = directive_error(json!({}), json!({"$retainKeys": ["a", 1]}));
        assert!(
            message.contains("$retainKeys must be a list of strings"),
            "{message}"
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_the_values() {
        let result = patched(
            json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
        );
        assert_eq!(result, json!({"metadata": {"finalizers": ["a", "c"]}}));
        assert_no_directives(&result);
    }

    #[test]
    fn delete_from_primitive_list_combines_with_a_set_merge() {
        let result = patched(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "finalizers": ["c"]
            }}),
        );
        assert_eq!(result, json!({"metadata": {"finalizers": ["b", "c"]}}));
    }

    #[test]
    fn delete_from_primitive_list_on_an_absent_field_is_a_no_op() {
        let result = patched(
            json!({"a": 1}),
            json!({"$deleteFromPrimitiveList/args": ["x"]}),
        );
        assert_eq!(result, json!({"a": 1}));
    }

    #[test]
    fn malformed_delete_from_primitive_list_is_rejected() {
        let (_, message) = directive_error(
            json!({"args": ["a"]}),
            json!({"$deleteFromPrimitiveList/args": "a"}),
        );
        assert!(message.contains("must be a list"), "{message}");
        let (_, message) = directive_error(
            json!({"args": "a"}),
            json!({"$deleteFromPrimitiveList/args": ["a"]}),
        );
        assert!(message.contains("not a list"), "{message}");
    }

    #[test]
    fn unknown_dollar_keys_are_never_stored() {
        let result = patched(
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({
                "$unknown": 1,
                "spec": {
                    "$other": {"x": 1},
                    "containers": [
                        {"name": "a", "$bogus": true},
                        {"name": "b", "env": [{"name": "E", "$x": 1}]}
                    ],
                    "args": [{"$y": 1, "z": 2}],
                    "selector": {"$patch": "replace", "a": {"$deep": 1}}
                },
                "metadata": {"$patch": "replace", "labels": {"$q": 1}}
            }),
        );
        assert_no_directives(&result);
        assert_eq!(
            result,
            json!({
                "spec": {
                    "containers": [{"name": "a"}, {"name": "b", "env": [{"name": "E"}]}],
                    "args": [{"z": 2}],
                    "selector": {"a": {}}
                },
                "metadata": {"labels": {}}
            })
        );
    }

    #[test]
    fn new_keyed_lists_drop_their_directives() {
        let result = patched(
            json!({}),
            json!({"containers": [{"name": "a"}, {"$patch": "delete", "name": "b"}]}),
        );
        assert_eq!(result, json!({"containers": [{"name": "a"}]}));
    }

    #[test]
    fn original_is_left_untouched() {
        let original = json!({"a": {"b": 1}, "list": [{"name": "x"}]});
        let snapshot = original.clone();
        let _ = apply(&original, &json!({"a": null, "list": [{"name": "y"}]})).unwrap();
        assert_eq!(original, snapshot);
    }
}
