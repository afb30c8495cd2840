//! Server-side apply: field ownership (`metadata.managedFields`) and the apply merge.
//!
//! Kubernetes records, for every object, which manager set which fields: a list of entries
//! (manager, operation `Apply` or `Update`, apiVersion, time, subresource) each holding a set of
//! field paths in the `FieldsV1` format. This module is that bookkeeping, done the way
//! Kubernetes' structured-merge-diff does it, on plain JSON:
//!
//! * [`FieldSet`]: a set of paths (`.spec.replicas`, `.spec.containers[name="app"].image`,
//!   `.metadata.finalizers[="x"]`), built from an object ([`FieldSet::from_object`]), combined
//!   (union, difference, intersection) and read from / written as `FieldsV1` JSON;
//! * [`compare`]: which paths a change added, modified and removed;
//! * [`record_update`] and [`record_apply`]: how an entry list changes on a write (an update
//!   takes over what it changed; an apply owns exactly what it applied, and fails with
//!   [`Conflicts`] when it changes a field another manager owns, unless forced);
//! * [`merge`] and [`prune`]: the apply merge (maps merged, lists with merge keys merged item by
//!   item, other lists replaced) and the removal of fields a manager applied before and omits
//!   now, unless someone else owns them.
//!
//! Kubernetes derives list and map semantics from the OpenAPI schema of each type. As the
//! strategic merge patch does here, the strategy is chosen by the field's NAME alone (see
//! [`list_kind`]): `containers`, `env`, `volumes`, ... are maps keyed by `name`, container ports
//! by `containerPort` and `protocol`, `finalizers` is a set, every other list is atomic, and a
//! few structs and maps that Kubernetes marks atomic (`selector`, `nodeSelector`, ...) are.
//!
//! Everything is pure and works on `serde_json::Value`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object (or a key of a map): `f:NAME`.
    Field(String),
    /// An item of a list keyed by merge keys, as the canonical JSON object of its key fields
    /// (sorted by name): `k:{"name":"app"}`.
    Key(String),
    /// An item of a set, as its canonical JSON value: `v:"finalizer"`.
    Value(String),
    /// An item of a list by position: `i:3` (only read from `FieldsV1`, never produced).
    Index(usize),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

/// Why a `FieldsV1` document or a `managedFields` list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    /// The `FieldsV1` document is malformed.
    #[error("invalid FieldsV1 at {path:?}: {message}")]
    InvalidFieldsV1 {
        /// The key where the problem is.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An entry of `managedFields` is malformed.
    #[error("invalid managedFields entry {index}: {message}")]
    InvalidEntry {
        /// The entry's position.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    paths: BTreeSet<Path>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// The paths an object sets, as Kubernetes' `ToFieldSet` gives them: every scalar, every
    /// atomic list or map (as one path), every item of a keyed list or set (the item itself,
    /// plus its fields), and every empty object or null. `metadata.managedFields` is left out.
    pub fn from_object(object: &Value) -> FieldSet {
        FieldSet {
            paths: leaves(object).into_keys().collect(),
        }
    }

    /// Adds a path.
    pub fn insert(&mut self, path: Path) {
        self.paths.insert(path);
    }

    /// Whether the set holds `path` itself.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.paths.contains(path)
    }

    /// Whether the set holds a path strictly below `prefix`.
    pub fn has_descendant(&self, prefix: &[PathElement]) -> bool {
        use std::ops::Bound;
        self.paths
            .range::<[PathElement], _>((Bound::Excluded(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|path| path.len() > prefix.len() && path.starts_with(prefix))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// How many paths the set holds.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter()
    }

    /// The paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.union(&other.paths).cloned().collect(),
        }
    }

    /// The paths of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.difference(&other.paths).cloned().collect(),
        }
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.intersection(&other.paths).cloned().collect(),
        }
    }

    /// Keeps only the paths for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Path) -> bool) {
        self.paths.retain(keep);
    }

    /// The set as a `FieldsV1` document: nested objects keyed `f:`, `k:`, `v:` and `i:`, with
    /// `".": {}` marking a path that is in the set and also has paths below it.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node {
            member: bool,
            children: BTreeMap<PathElement, Node>,
        }
        fn render(node: &Node) -> Value {
            let mut map = Map::new();
            if node.member && !node.children.is_empty() {
                map.insert(".".to_owned(), Value::Object(Map::new()));
            }
            for (element, child) in &node.children {
                map.insert(element_key(element), render(child));
            }
            Value::Object(map)
        }
        let mut root = Node::default();
        for path in &self.paths {
            let mut node = &mut root;
            for element in path {
                node = node.children.entry(element.clone()).or_default();
            }
            node.member = true;
        }
        render(&root)
    }

    /// Reads a `FieldsV1` document.
    pub fn from_fields_v1(document: &Value) -> Result<FieldSet, FieldsError> {
        fn read(
            node: &Value,
            path: &mut Path,
            out: &mut BTreeSet<Path>,
        ) -> Result<(), FieldsError> {
            let invalid = |path: &Path, message: &str| FieldsError::InvalidFieldsV1 {
                path: path_string(path),
                message: message.to_owned(),
            };
            let Value::Object(map) = node else {
                return Err(invalid(path, "expected an object"));
            };
            if map.is_empty() && !path.is_empty() {
                out.insert(path.clone());
            }
            for (key, child) in map {
                if key == "." {
                    if !path.is_empty() {
                        out.insert(path.clone());
                    }
                    continue;
                }
                let element = parse_element_key(key)
                    .ok_or_else(|| invalid(path, &format!("bad key {key:?}")))?;
                path.push(element);
                read(child, path, out)?;
                path.pop();
            }
            Ok(())
        }
        let mut paths = BTreeSet::new();
        read(document, &mut Vec::new(), &mut paths)?;
        Ok(FieldSet { paths })
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> FieldSet {
        FieldSet {
            paths: iter.into_iter().collect(),
        }
    }
}

/// The `FieldsV1` key of a path element.
fn element_key(element: &PathElement) -> String {
    match element {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(key) => format!("k:{key}"),
        PathElement::Value(value) => format!("v:{value}"),
        PathElement::Index(index) => format!("i:{index}"),
    }
}

/// Reads a `FieldsV1` key (other than `.`).
fn parse_element_key(key: &str) -> Option<PathElement> {
    let (kind, rest) = key.split_at_checked(2)?;
    match kind {
        "f:" => Some(PathElement::Field(rest.to_owned())),
        "k:" => match serde_json::from_str::<Value>(rest).ok()? {
            key @ Value::Object(_) => Some(PathElement::Key(crate::canonical_json(&key))),
            _ => None,
        },
        "v:" => Some(PathElement::Value(crate::canonical_json(
            &serde_json::from_str(rest).ok()?,
        ))),
        "i:" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="app"].image`,
/// `.metadata.finalizers[="x"]`, `.spec.ports[port=80,protocol="TCP"]`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(key) => {
                let fields: Vec<String> = match serde_json::from_str::<Value>(key) {
                    Ok(Value::Object(map)) => map
                        .iter()
                        .map(|(name, value)| format!("{name}={}", go_string(value)))
                        .collect(),
                    _ => vec![key.clone()],
                };
                let _ = write!(out, "[{}]", fields.join(","));
            }
            PathElement::Value(value) => {
                let value = serde_json::from_str(value).unwrap_or(Value::Null);
                let _ = write!(out, "[={}]", go_string(&value));
            }
            PathElement::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

/// A value as structured-merge-diff prints it: strings quoted, everything else as JSON.
fn go_string(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

/// How a list's items are identified and merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// The list is one value: owned, compared and replaced whole.
    Atomic,
    /// The items are distinct scalars, each owned on its own (`listType=set`).
    Set,
    /// The items are objects identified by these key fields (`listType=map`).
    Map(&'static [&'static str]),
}

/// The kind of the list in the field `field`, as Kubernetes' schemas declare it for the
/// built-in types: keyed lists merge by their keys (ports by port and protocol, protocol
/// defaulting to TCP), `finalizers` is a set, and every other list is atomic. A keyed list with
/// an item that is not an object carrying a key is treated as atomic.
pub fn list_kind(field: Option<&str>, items: &[Value]) -> ListKind {
    let kind = match field.unwrap_or("") {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListKind::Map(&["name"]),
        "hostAliases" | "podIPs" | "hostIPs" => ListKind::Map(&["ip"]),
        "volumeMounts" => ListKind::Map(&["mountPath"]),
        "volumeDevices" => ListKind::Map(&["devicePath"]),
        "conditions" => ListKind::Map(&["type"]),
        "ownerReferences" => ListKind::Map(&["uid"]),
        "topologySpreadConstraints" => ListKind::Map(&["topologyKey", "whenUnsatisfiable"]),
        "ports" => {
            if items.iter().any(|item| item.get("containerPort").is_some()) {
                ListKind::Map(&["containerPort", "protocol"])
            } else {
                ListKind::Map(&["port", "protocol"])
            }
        }
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    };
    match kind {
        ListKind::Map(keys) => {
            let keyed = items.iter().all(|item| {
                item.as_object()
                    .is_some_and(|item| keys.iter().any(|key| item.contains_key(*key)))
            });
            if keyed { kind } else { ListKind::Atomic }
        }
        ListKind::Set if items.iter().any(|item| item.is_object() || item.is_array()) => {
            ListKind::Atomic
        }
        other => other,
    }
}

/// Structs and maps Kubernetes marks atomic (`structType=atomic`, `mapType=atomic`): label
/// selectors, node selectors and the references inside env sources. They are owned and
/// replaced whole.
fn is_atomic_map(field: &str) -> bool {
    matches!(
        field,
        "selector"
            | "nodeSelector"
            | "labelSelector"
            | "namespaceSelector"
            | "configMapKeyRef"
            | "secretKeyRef"
            | "fieldRef"
            | "resourceFieldRef"
            | "requiredDuringSchedulingIgnoredDuringExecution"
    )
}

/// The value a key field takes when an item leaves it out (Kubernetes' schema defaults).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".to_owned()))
}

/// The path element of a list item of the given kind (`None` for atomic lists).
fn item_element(kind: ListKind, item: &Value) -> Option<PathElement> {
    match kind {
        ListKind::Atomic => None,
        ListKind::Set => Some(PathElement::Value(crate::canonical_json(item))),
        ListKind::Map(keys) => {
            let mut key = Map::new();
            for name in keys {
                if let Some(value) = item.get(*name).cloned().or_else(|| key_default(name)) {
                    key.insert((*name).to_owned(), value);
                }
            }
            Some(PathElement::Key(crate::canonical_json(&Value::Object(key))))
        }
    }
}

/// Marks list items in [`leaves`]: an item's own value is not compared (its fields are).
const ITEM_MARKER: Value = Value::Bool(true);

/// Every path of [`FieldSet::from_object`] with the value that tells whether it changed: the
/// scalar or atomic value, `{}` or null for empty objects and nulls, a marker for list items.
fn leaves(object: &Value) -> BTreeMap<Path, Value> {
    fn walk(value: &Value, field: Option<&str>, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
        match value {
            Value::Object(map) => {
                if field.is_some_and(is_atomic_map) && !path.is_empty() {
                    out.insert(path.clone(), value.clone());
                    return;
                }
                for (key, child) in map {
                    // Ownership is about the object's content, never about ownership itself.
                    if key == "managedFields"
                        && path.len() == 1
                        && path[0] == PathElement::Field("metadata".to_owned())
                    {
                        continue;
                    }
                    path.push(PathElement::Field(key.clone()));
                    match child {
                        Value::Null => {
                            out.insert(path.clone(), Value::Null);
                        }
                        Value::Object(inner) if inner.is_empty() => {
                            out.insert(path.clone(), child.clone());
                        }
                        _ => walk(child, Some(key), path, out),
                    }
                    path.pop();
                }
            }
            Value::Array(items) => {
                let kind = list_kind(field, items);
                if kind == ListKind::Atomic {
                    out.insert(path.clone(), value.clone());
                    return;
                }
                for item in items {
                    let Some(element) = item_element(kind, item) else {
                        continue;
                    };
                    path.push(element);
                    if kind != ListKind::Set {
                        walk(item, None, path, out);
                    }
                    out.insert(path.clone(), ITEM_MARKER);
                    path.pop();
                }
            }
            scalar => {
                out.insert(path.clone(), scalar.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if object.is_object() {
        walk(object, None, &mut Vec::new(), &mut out);
    }
    out
}

/// What a change did to an object's paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Paths set now and not before.
    pub added: FieldSet,
    /// Paths set before and now, with a different value.
    pub modified: FieldSet,
    /// Paths set before and not now.
    pub removed: FieldSet,
}

impl Comparison {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// The paths that got a (new) value: added and modified.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compares two versions of an object path by path.
pub fn compare(old: &Value, new: &Value) -> Comparison {
    let before = leaves(old);
    let after = leaves(new);
    let mut comparison = Comparison::default();
    for (path, value) in &after {
        match before.get(path) {
            None => comparison.added.insert(path.clone()),
            Some(previous) if previous != value => comparison.modified.insert(path.clone()),
            Some(_) => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            comparison.removed.insert(path.clone());
        }
    }
    comparison
}

/// Paths no manager ever owns: identity and server-owned metadata (Kubernetes' `stripMeta`).
fn is_stripped(path: &[PathElement]) -> bool {
    let field = |element: &PathElement, name: &str| *element == PathElement::Field(name.to_owned());
    match path {
        [top] => field(top, "apiVersion") || field(top, "kind") || field(top, "metadata"),
        [top, name] if field(top, "metadata") => [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ]
        .iter()
        .any(|n| field(name, n)),
        _ => false,
    }
}

/// Removes the paths no manager owns (see [`is_stripped`]).
fn strip(mut set: FieldSet) -> FieldSet {
    set.retain(|path| !is_stripped(path));
    set
}

/// The operation of a `managedFields` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write: create, update, non-apply patch.
    Update,
}

impl Operation {
    /// The name Kubernetes writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who a `managedFields` entry belongs to. Entries are told apart by manager, operation and
/// subresource, and for updates also by apiVersion (an applier keeps one entry across
/// versions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManagerId {
    /// The field manager's name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The apiVersion the manager wrote with.
    pub api_version: String,
    /// The subresource written through (`status`, `scale`), or empty for the object itself.
    pub subresource: String,
}

impl ManagerId {
    /// Whether an entry with identity `other` is this manager's.
    pub fn matches(&self, other: &ManagerId) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The manager as Kubernetes names it in conflicts: `"kubectl"`, `"kubectl" with
    /// subresource "scale" using apps/v1`, `"kubectl-client-side-apply" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            let _ = write!(text, " with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            let _ = write!(text, " using {}", self.api_version);
        }
        text
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// Whose entry it is.
    pub id: ManagerId,
    /// When the manager last changed the object (RFC 3339), if known.
    pub time: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields` (a JSON list of entries). A missing list is empty.
pub fn decode_entries(list: Option<&Value>) -> Result<Vec<ManagedFieldsEntry>, FieldsError> {
    let Some(list) = list.filter(|l| !l.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return Err(FieldsError::InvalidEntry {
            index: 0,
            message: "managedFields must be a list".to_owned(),
        });
    };
    let mut entries: Vec<ManagedFieldsEntry> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let invalid = |message: &str| FieldsError::InvalidEntry {
            index,
            message: message.to_owned(),
        };
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let operation = match item.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(invalid("operation must be Apply or Update")),
        };
        match item.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") => {}
            _ => return Err(invalid("fieldsType must be FieldsV1")),
        }
        let fields = match item.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(document) => FieldSet::from_fields_v1(document)?,
        };
        let id = ManagerId {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            subresource: text("subresource"),
        };
        if entries.iter().any(|e| e.id.matches(&id)) {
            return Err(invalid("duplicate manager"));
        }
        entries.push(ManagedFieldsEntry {
            id,
            time: item.get("time").and_then(Value::as_str).map(str::to_owned),
            fields,
        });
    }
    Ok(entries)
}

/// Writes entries as `metadata.managedFields`, in Kubernetes' order (Apply before Update, then
/// by time, manager, apiVersion and subresource), leaving out entries that own nothing.
pub fn encode_entries(entries: &[ManagedFieldsEntry]) -> Value {
    let mut sorted: Vec<&ManagedFieldsEntry> =
        entries.iter().filter(|e| !e.fields.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            a.id.operation,
            &a.time,
            &a.id.manager,
            &a.id.api_version,
            &a.id.subresource,
        )
            .cmp(&(
                b.id.operation,
                &b.time,
                &b.id.manager,
                &b.id.api_version,
                &b.id.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|entry| {
                let mut item = Map::new();
                if !entry.id.manager.is_empty() {
                    item.insert("manager".into(), Value::String(entry.id.manager.clone()));
                }
                item.insert(
                    "operation".into(),
                    Value::String(entry.id.operation.as_str().to_owned()),
                );
                item.insert(
                    "apiVersion".into(),
                    Value::String(entry.id.api_version.clone()),
                );
                if let Some(time) = &entry.time {
                    item.insert("time".into(), Value::String(time.clone()));
                }
                item.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                item.insert("fieldsV1".into(), entry.fields.to_fields_v1());
                if !entry.id.subresource.is_empty() {
                    item.insert(
                        "subresource".into(),
                        Value::String(entry.id.subresource.clone()),
                    );
                }
                Value::Object(item)
            })
            .collect(),
    )
}

/// Records an update (any write but an apply) by `who` that turned `old` into `new` (`{}` for
/// a create): the writer takes over every field it added or changed, from whoever owned it,
/// and nobody owns a removed field any more. The writer's time moves only if it changed
/// something.
pub fn record_update(
    entries: &mut Vec<ManagedFieldsEntry>,
    old: &Value,
    new: &Value,
    who: &ManagerId,
    now: &str,
) {
    let comparison = compare(old, new);
    let changed = strip(comparison.changed());
    for entry in entries.iter_mut() {
        entry.fields = entry
            .fields
            .difference(&changed)
            .difference(&comparison.removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.id.matches(who)) {
            Some(entry) => {
                entry.fields = entry.fields.union(&changed);
                entry.time = Some(now.to_owned());
            }
            None => entries.push(ManagedFieldsEntry {
                id: who.clone(),
                time: Some(now.to_owned()),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// One field an apply would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns the field.
    pub owner: ManagerId,
    /// The field.
    pub path: Path,
}

impl Conflict {
    /// The cause message Kubernetes gives: `conflict with "kubectl" using apps/v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.owner.describe())
    }

    /// The field as Kubernetes prints it: `.spec.replicas`.
    pub fn field(&self) -> String {
        path_string(&self.path)
    }
}

/// The conflicts that failed an apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with "m" using v1: .a.b`,
    /// or for several, grouped by manager: `Apply failed with 2 conflicts: conflicts with "m"
    /// using v1:\n- .a\n- .b`.
    pub fn message(&self) -> String {
        if let [only] = self.0.as_slice() {
            return format!(
                "Apply failed with 1 conflict: {}: {}",
                only.message(),
                only.field()
            );
        }
        let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for conflict in &self.0 {
            by_owner
                .entry(conflict.owner.describe())
                .or_default()
                .push(conflict.field());
        }
        let mut lines = Vec::new();
        for (owner, fields) in by_owner {
            lines.push(format!("conflicts with {owner}:"));
            lines.extend(fields.into_iter().map(|f| format!("- {f}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

/// Records an apply by `who` that turned `old` into `new`, where `applied` is
/// [`FieldSet::from_object`] of the applied configuration. Any field the apply changes that
/// another manager owns is a conflict; with `force` the applier takes it over instead. The
/// applier then owns exactly `applied`; its time moves only if the object changed.
pub fn record_apply(
    entries: &mut Vec<ManagedFieldsEntry>,
    old: &Value,
    new: &Value,
    applied: &FieldSet,
    who: &ManagerId,
    force: bool,
    now: &str,
) -> Result<(), Conflicts> {
    let comparison = compare(old, new);
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| !e.id.matches(who)) {
        for path in entry.fields.intersection(&changed).iter() {
            conflicts.push(Conflict {
                owner: entry.id.clone(),
                path: path.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }
    for entry in entries.iter_mut().filter(|e| !e.id.matches(who)) {
        entry.fields = entry
            .fields
            .difference(&changed)
            .difference(&comparison.removed);
    }
    let fields = strip(applied.clone());
    let time = (!comparison.is_empty()).then(|| now.to_owned());
    match entries.iter_mut().find(|e| e.id.matches(who)) {
        Some(entry) => {
            entry.id.api_version = who.api_version.clone();
            entry.fields = fields;
            if time.is_some() {
                entry.time = time;
            }
        }
        None => entries.push(ManagedFieldsEntry {
            id: who.clone(),
            time,
            fields,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(())
}

/// Merges an applied configuration into the live object, as structured merge does: objects
/// merge field by field (a null removes the field), atomic maps and lists and scalars are
/// replaced, keyed lists and sets merge item by item (the configuration's order wins for the
/// items it names; live items it does not name keep their place).
pub fn merge(live: &Value, config: &Value) -> Value {
    merge_value(None, Some(live), config)
}

fn merge_value(field: Option<&str>, live: Option<&Value>, config: &Value) -> Value {
    match config {
        Value::Object(config_map) => {
            if field.is_some_and(is_atomic_map) {
                return config.clone();
            }
            let mut result = match live {
                Some(Value::Object(live_map)) => live_map.clone(),
                _ => Map::new(),
            };
            for (key, value) in config_map {
                if value.is_null() {
                    result.remove(key);
                    continue;
                }
                let merged = merge_value(Some(key), result.get(key), value);
                result.insert(key.clone(), merged);
            }
            Value::Object(result)
        }
        Value::Array(config_items) => {
            let live_items: &[Value] = match live {
                Some(Value::Array(items)) => items,
                _ => &[],
            };
            let all: Vec<Value> = live_items.iter().chain(config_items).cloned().collect();
            let kind = list_kind(field, &all);
            if kind == ListKind::Atomic {
                return config.clone();
            }
            Value::Array(merge_list(kind, live_items, config_items))
        }
        scalar => scalar.clone(),
    }
}

/// Merges keyed or set items the way structured-merge-diff orders them: walking both lists,
/// items in both merge where the configuration has them, live-only items stay where they are,
/// configuration-only items come where the configuration puts them.
fn merge_list(kind: ListKind, live: &[Value], config: &[Value]) -> Vec<Value> {
    let element = |item: &Value| item_element(kind, item).expect("keyed or set list");
    let live_keys: Vec<PathElement> = live.iter().map(element).collect();
    let config_keys: Vec<PathElement> = config.iter().map(element).collect();
    let merge_item = |live_index: Option<usize>, config_index: usize| -> Value {
        let config_item = &config[config_index];
        if kind == ListKind::Set {
            return config_item.clone();
        }
        merge_value(None, live_index.map(|i| &live[i]), config_item)
    };
    let find_live = |key: &PathElement| live_keys.iter().position(|k| k == key);
    let in_config = |key: &PathElement| config_keys.contains(key);
    // The items both lists have, in the configuration's order: each is emitted when the walk
    // over the configuration reaches it.
    let mut shared = config_keys.iter().filter(|key| live_keys.contains(key));
    let mut next_shared = shared.next();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut c) = (0, 0);
    while l < live.len() || c < config.len() {
        if l < live.len() && c < config.len() {
            if live_keys[l] == config_keys[c] {
                out.push(merge_item(Some(l), c));
                l += 1;
                c += 1;
                next_shared = shared.next();
                continue;
            }
            if in_config(&live_keys[l]) && next_shared.is_some_and(|key| *key != live_keys[l]) {
                // A shared item, but not the next one in the configuration's order.
                l += 1;
                continue;
            }
        }
        if l < live.len() && !in_config(&live_keys[l]) {
            out.push(live[l].clone());
            l += 1;
            continue;
        }
        if c < config.len() {
            let key = &config_keys[c];
            out.push(merge_item(find_live(key), c));
            if next_shared == Some(key) {
                next_shared = shared.next();
            }
            c += 1;
            continue;
        }
        // Only live items the configuration names remain, and those were emitted with it.
        l += 1;
    }
    out
}

/// After an apply, removes from `merged` what `who` applied last time (its entry in `entries`,
/// still the previous one) and no longer applies (`applied`), unless another manager owns it
/// or something below it.
pub fn prune(
    mut merged: Value,
    entries: &[ManagedFieldsEntry],
    who: &ManagerId,
    applied: &FieldSet,
) -> Value {
    let Some(last) = entries.iter().find(|e| e.id.matches(who)) else {
        return merged;
    };
    let mut owned = strip(applied.clone());
    for entry in entries.iter().filter(|e| !e.id.matches(who)) {
        owned = owned.union(&entry.fields);
    }
    for path in last.fields.difference(&owned).iter() {
        if !owned.has_descendant(path) && !is_key_field(path) {
            remove_path(&mut merged, path);
        }
    }
    merged
}

/// Whether `path` is a key field of a keyed list item (`...containers[name="x"].name`): it
/// stays as long as its item does.
fn is_key_field(path: &[PathElement]) -> bool {
    match path {
        [.., PathElement::Key(key), PathElement::Field(name)] => {
            serde_json::from_str::<Value>(key).is_ok_and(|key| key.get(name).is_some())
        }
        _ => false,
    }
}

/// Removes the field or list item at `path`, if it is there.
pub fn remove_path(object: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    let mut field: Option<String> = None;
    for element in parents {
        let next = match (element, current) {
            (PathElement::Field(name), Value::Object(map)) => map.get_mut(name),
            (PathElement::Index(index), Value::Array(items)) => items.get_mut(*index),
            (element, Value::Array(items)) => {
                let kind = list_kind(field.as_deref(), items);
                items
                    .iter_mut()
                    .find(|item| item_element(kind, item).as_ref() == Some(element))
            }
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        field = match element {
            PathElement::Field(name) => Some(name.clone()),
            _ => None,
        };
        current = next;
    }
    match (last, current) {
        (PathElement::Field(name), Value::Object(map)) => {
            map.remove(name);
        }
        (PathElement::Index(index), Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
        }
        (PathElement::Index(_), _) => {}
        (element, Value::Array(items)) => {
            let kind = list_kind(field.as_deref(), items);
            items.retain(|item| item_element(kind, item).as_ref() != Some(element));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(json: Value) -> PathElement {
        PathElement::Key(crate::canonical_json(&json))
    }

    fn paths(set: &FieldSet) -> Vec<String> {
        set.iter().map(|p| path_string(p)).collect()
    }

    fn id(manager: &str, operation: Operation) -> ManagerId {
        ManagerId {
            manager: manager.to_owned(),
            operation,
            api_version: "apps/v1".to_owned(),
            subresource: String::new(),
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": image,
                        "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    #[test]
    fn an_objects_field_set_has_leaves_items_and_atomic_values() {
        let set = FieldSet::from_object(&deployment(2, "nginx"));
        assert_eq!(
            paths(&set),
            [
                ".apiVersion",
                ".kind",
                ".metadata.labels.app",
                ".metadata.name",
                ".spec.replicas",
                ".spec.selector",
                ".spec.template.metadata.labels.app",
                ".spec.template.spec.containers[name=\"app\"]",
                ".spec.template.spec.containers[name=\"app\"].image",
                ".spec.template.spec.containers[name=\"app\"].name",
                ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
    }

    #[test]
    fn sets_empty_objects_and_atomic_lists() {
        let set = FieldSet::from_object(&json!({
            "metadata": {"finalizers": ["a", "b"], "annotations": {}},
            "spec": {"args": ["x", "y"], "tolerations": [], "gone": null}
        }));
        assert_eq!(
            paths(&set),
            [
                ".metadata.annotations",
                ".metadata.finalizers[=\"a\"]",
                ".metadata.finalizers[=\"b\"]",
                ".spec.args",
                ".spec.gone",
                ".spec.tolerations",
            ]
        );
    }

    #[test]
    fn managed_fields_are_not_part_of_the_field_set() {
        let set = FieldSet::from_object(&json!({"metadata": {"managedFields": [{"a": 1}]}}));
        assert!(set.is_empty());
    }

    #[test]
    fn fields_v1_round_trips_in_kubernetes_format() {
        let set = FieldSet::from_object(&deployment(2, "nginx"));
        let document = set.to_fields_v1();
        assert_eq!(
            document["f:spec"]["f:template"]["f:spec"]["f:containers"],
            json!({"k:{\"name\":\"app\"}": {
                ".": {},
                "f:image": {},
                "f:name": {},
                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:containerPort": {}
                }}
            }})
        );
        assert_eq!(document["f:spec"]["f:selector"], json!({}));
        assert_eq!(FieldSet::from_fields_v1(&document).unwrap(), set);

        let finalizers = FieldSet::from_object(&json!({"metadata": {"finalizers": ["x"]}}));
        let document = finalizers.to_fields_v1();
        assert_eq!(
            document,
            json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&document).unwrap(), finalizers);
    }

    #[test]
    fn fields_v1_from_kubernetes_reads_keys_in_any_order_and_indexes() {
        let document = json!({
            "f:spec": {"f:ports": {"k:{\"protocol\":\"TCP\",\"port\":80}": {".": {}, "f:port": {}}}},
            "f:status": {"f:items": {"i:2": {}}}
        });
        let set = FieldSet::from_fields_v1(&document).unwrap();
        assert_eq!(
            paths(&set),
            [
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].port",
                ".status.items[2]",
            ]
        );
        assert!(set.contains(&[
            field("spec"),
            field("ports"),
            key(json!({"port": 80, "protocol": "TCP"}))
        ]));
        assert!(FieldSet::from_fields_v1(&json!({"x:1": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn set_operations() {
        let a: FieldSet = [vec![field("a")], vec![field("b")]].into_iter().collect();
        let b: FieldSet = [vec![field("b")], vec![field("c"), field("d")]]
            .into_iter()
            .collect();
        assert_eq!(paths(&a.union(&b)), [".a", ".b", ".c.d"]);
        assert_eq!(paths(&a.difference(&b)), [".a"]);
        assert_eq!(paths(&a.intersection(&b)), [".b"]);
        assert!(b.has_descendant(&[field("c")]));
        assert!(!b.has_descendant(&[field("b")]));
        assert!(!b.has_descendant(&[field("c"), field("d")]));
    }

    #[test]
    fn compare_finds_added_modified_and_removed_paths() {
        let old = json!({"spec": {"replicas": 1, "paused": true,
            "containers": [{"name": "a", "image": "x"}]}});
        let new = json!({"spec": {"replicas": 2,
            "containers": [{"name": "a", "image": "x"}, {"name": "b"}]}});
        let comparison = compare(&old, &new);
        assert_eq!(
            paths(&comparison.added),
            [
                ".spec.containers[name=\"b\"]",
                ".spec.containers[name=\"b\"].name"
            ]
        );
        assert_eq!(paths(&comparison.modified), [".spec.replicas"]);
        assert_eq!(paths(&comparison.removed), [".spec.paused"]);
        assert!(compare(&old, &old).is_empty());
    }

    #[test]
    fn a_create_gives_the_creator_every_field_but_identity_metadata() {
        let mut entries = Vec::new();
        let who = id("kubectl-create", Operation::Update);
        record_update(&mut entries, &json!({}), &deployment(1, "a"), &who, "T1");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].time.as_deref(), Some("T1"));
        let owned = paths(&entries[0].fields);
        assert!(owned.contains(&".spec.replicas".to_owned()));
        assert!(owned.contains(&".metadata.labels.app".to_owned()));
        for stripped in [".apiVersion", ".kind", ".metadata.name"] {
            assert!(!owned.contains(&stripped.to_owned()), "{stripped}");
        }
    }

    #[test]
    fn an_update_takes_changed_fields_from_their_owner_and_removed_fields_from_everyone() {
        let mut entries = Vec::new();
        let creator = id("creator", Operation::Update);
        let scaler = id("scaler", Operation::Update);
        let v1 = deployment(1, "a");
        record_update(&mut entries, &json!({}), &v1, &creator, "T1");
        let mut v2 = v1.clone();
        v2["spec"]["replicas"] = json!(5);
        v2["metadata"]["labels"] = json!({});
        record_update(&mut entries, &v1, &v2, &scaler, "T2");
        let creator_owns = paths(&entries[0].fields);
        assert!(!creator_owns.contains(&".spec.replicas".to_owned()));
        assert!(!creator_owns.contains(&".metadata.labels.app".to_owned()));
        assert_eq!(entries[1].id, scaler);
        assert_eq!(
            paths(&entries[1].fields),
            [".metadata.labels", ".spec.replicas"]
        );
        // A write that changes nothing changes no entry, not even a time.
        let before = entries.clone();
        record_update(&mut entries, &v2, &v2, &scaler, "T3");
        assert_eq!(entries, before);
    }

    #[test]
    fn an_apply_owns_exactly_what_it_applied() {
        let mut entries = Vec::new();
        let who = id("kubectl", Operation::Apply);
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "1"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u"}, "data": {"a": "1"}});
        record_apply(
            &mut entries,
            &json!({}),
            &live,
            &FieldSet::from_object(&config),
            &who,
            false,
            "T1",
        )
        .unwrap();
        assert_eq!(paths(&entries[0].fields), [".data.a"]);
        assert_eq!(
            encode_entries(&entries),
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "time": "T1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}])
        );
    }

    #[test]
    fn applying_a_different_value_to_a_field_someone_else_owns_is_a_conflict() {
        let mut entries = Vec::new();
        let client = id("kubectl-client-side-apply", Operation::Update);
        let applier = id("kubectl", Operation::Apply);
        let live = deployment(2, "a");
        record_update(&mut entries, &json!({}), &live, &client, "T1");
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let merged = merge(&live, &config);
        let applied = FieldSet::from_object(&config);
        let conflicts = record_apply(
            &mut entries.clone(),
            &live,
            &merged,
            &applied,
            &applier,
            false,
            "T2",
        )
        .unwrap_err();
        assert_eq!(
            conflicts.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(conflicts.0[0].field(), ".spec.replicas");
        assert_eq!(
            conflicts.0[0].message(),
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );

        // Forced, the applier takes the field over.
        record_apply(&mut entries, &live, &merged, &applied, &applier, true, "T2").unwrap();
        let client_owns = paths(&entries.iter().find(|e| e.id == client).unwrap().fields);
        assert!(!client_owns.contains(&".spec.replicas".to_owned()));
        assert!(client_owns.contains(&".spec.template.metadata.labels.app".to_owned()));
        let applier_entry = entries.iter().find(|e| e.id == applier).unwrap();
        assert_eq!(paths(&applier_entry.fields), [".spec.replicas"]);
        assert_eq!(applier_entry.time.as_deref(), Some("T2"));
    }

    #[test]
    fn applying_the_same_value_shares_the_field_without_conflict() {
        let mut entries = Vec::new();
        let client = id("other", Operation::Update);
        let applier = id("kubectl", Operation::Apply);
        let live = deployment(2, "a");
        record_update(&mut entries, &json!({}), &live, &client, "T1");
        let config = json!({"spec": {"replicas": 2}});
        let merged = merge(&live, &config);
        assert_eq!(merged, live);
        record_apply(
            &mut entries,
            &live,
            &merged,
            &FieldSet::from_object(&config),
            &applier,
            false,
            "T2",
        )
        .unwrap();
        let owners: Vec<&str> = entries
            .iter()
            .filter(|e| e.fields.contains(&[field("spec"), field("replicas")]))
            .map(|e| e.id.manager.as_str())
            .collect();
        assert_eq!(owners, ["other", "kubectl"]);
        // Nothing changed, so the applier's entry has no time.
        assert_eq!(entries[1].time, None);
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let scale = ManagerId {
            subresource: "scale".into(),
            ..id("kubectl", Operation::Update)
        };
        let conflicts = Conflicts(vec![
            Conflict {
                owner: id("a", Operation::Apply),
                path: vec![field("spec"), field("x")],
            },
            Conflict {
                owner: scale.clone(),
                path: vec![field("spec"), field("replicas")],
            },
            Conflict {
                owner: id("a", Operation::Apply),
                path: vec![field("spec"), field("y")],
            },
        ]);
        assert_eq!(
            conflicts.message(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.x\n- .spec.y\nconflicts with \"kubectl\" with subresource \"scale\" using apps/v1:\n- .spec.replicas"
        );
        assert_eq!(
            scale.describe(),
            "\"kubectl\" with subresource \"scale\" using apps/v1"
        );
    }

    #[test]
    fn merge_merges_maps_and_keyed_lists_and_replaces_atomic_ones() {
        let live = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {
                "selector": {"matchLabels": {"a": "1", "b": "2"}},
                "args": ["--old"],
                "containers": [
                    {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
                    {"name": "b", "image": "b:1"}
                ],
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
            }
        });
        let config = json!({
            "metadata": {"labels": {"a": "9", "b": null}, "finalizers": ["y"]},
            "spec": {
                "selector": {"matchLabels": {"a": "1"}},
                "args": ["--new"],
                "containers": [{"name": "c", "image": "c:1"}, {"name": "a", "image": "a:2"}],
                "ports": [{"containerPort": 80, "name": "web"}]
            }
        });
        assert_eq!(
            merge(&live, &config),
            json!({
                "metadata": {"labels": {"a": "9"}, "finalizers": ["x", "y"]},
                "spec": {
                    "selector": {"matchLabels": {"a": "1"}},
                    "args": ["--new"],
                    "containers": [
                        {"name": "c", "image": "c:1"},
                        {"name": "a", "image": "a:2", "imagePullPolicy": "Always"},
                        {"name": "b", "image": "b:1"}
                    ],
                    "ports": [{"containerPort": 80, "protocol": "TCP", "name": "web"}]
                }
            })
        );
    }

    #[test]
    fn merge_keeps_live_only_items_in_place() {
        let live = json!({"env": [{"name": "A"}, {"name": "X"}, {"name": "B"}]});
        let config = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        assert_eq!(
            merge(&live, &config),
            json!({"env": [{"name": "A", "value": "1"}, {"name": "X"}, {"name": "B", "value": "2"}]})
        );
        let reordered = json!({"env": [{"name": "B"}, {"name": "A"}]});
        assert_eq!(
            merge(&live, &reordered),
            json!({"env": [{"name": "X"}, {"name": "B"}, {"name": "A"}]})
        );
    }

    #[test]
    fn prune_removes_what_the_applier_stopped_applying_unless_someone_else_owns_it() {
        let applier = id("kubectl", Operation::Apply);
        let other = id("editor", Operation::Update);
        let first = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}},
            "spec": {"containers": [{"name": "x", "image": "x"}, {"name": "y", "image": "y"}]}});
        let mut entries = Vec::new();
        record_apply(
            &mut entries,
            &json!({}),
            &first,
            &FieldSet::from_object(&first),
            &applier,
            false,
            "T1",
        )
        .unwrap();
        // Someone else also sets label c (same value: shared ownership).
        let edited = first.clone();
        entries.push(ManagedFieldsEntry {
            id: other.clone(),
            time: None,
            fields: [vec![field("metadata"), field("labels"), field("c")]]
                .into_iter()
                .collect(),
        });
        let second = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "x", "image": "x"}]}});
        let applied = FieldSet::from_object(&second);
        let merged = prune(merge(&edited, &second), &entries, &applier, &applied);
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"a": "1", "c": "3"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]}})
        );
        record_apply(
            &mut entries,
            &edited,
            &merged,
            &applied,
            &applier,
            false,
            "T2",
        )
        .unwrap();
        let applier_entry = entries.iter().find(|e| e.id == applier).unwrap();
        assert_eq!(applier_entry.fields, applied);
        let other_entry = entries.iter().find(|e| e.id == other).unwrap();
        assert_eq!(paths(&other_entry.fields), [".metadata.labels.c"]);
    }

    #[test]
    fn prune_keeps_an_item_when_someone_else_owns_a_field_in_it() {
        let applier = id("kubectl", Operation::Apply);
        let live = json!({"spec": {"containers": [{"name": "x", "image": "x", "tty": true}]}});
        let entries = vec![
            ManagedFieldsEntry {
                id: applier.clone(),
                time: None,
                fields: FieldSet::from_object(
                    &json!({"spec": {"containers": [{"name": "x", "image": "x"}]}}),
                ),
            },
            ManagedFieldsEntry {
                id: id("editor", Operation::Update),
                time: None,
                fields: [vec![
                    field("spec"),
                    field("containers"),
                    key(json!({"name": "x"})),
                    field("tty"),
                ]]
                .into_iter()
                .collect(),
            },
        ];
        let pruned = prune(
            live.clone(),
            &entries,
            &applier,
            &FieldSet::from_object(&json!({"spec": {}})),
        );
        assert_eq!(
            pruned,
            json!({"spec": {"containers": [{"name": "x", "tty": true}]}})
        );
    }

    #[test]
    fn remove_path_reaches_keyed_items_and_set_values() {
        let mut object = json!({"metadata": {"finalizers": ["a", "b"]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 81}]}});
        remove_path(
            &mut object,
            &[
                field("metadata"),
                field("finalizers"),
                PathElement::Value("\"a\"".into()),
            ],
        );
        remove_path(
            &mut object,
            &[
                field("spec"),
                field("ports"),
                key(json!({"port": 81, "protocol": "TCP"})),
            ],
        );
        remove_path(&mut object, &[field("nothing"), field("here")]);
        assert_eq!(
            object,
            json!({"metadata": {"finalizers": ["b"]},
                "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
        );
    }

    #[test]
    fn entries_round_trip_and_sort_like_kubernetes() {
        let list = json!([
            {"manager": "z", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-01-02T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "agent", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}, "subresource": "status"}
        ]);
        let entries = decode_entries(Some(&list)).unwrap();
        let decoded = decode_entries(Some(&encode_entries(&entries))).unwrap();
        let managers: Vec<&str> = decoded.iter().map(|e| e.id.manager.as_str()).collect();
        assert_eq!(managers, ["kubectl", "agent", "z"]);
        assert_eq!(entries[2].id.subresource, "status");
        assert!(decode_entries(Some(&json!([{}]))).is_err());
        assert!(
            decode_entries(Some(
                &json!([{"operation": "Apply", "fieldsType": "FieldsV2"}])
            ))
            .is_err()
        );
        assert_eq!(decode_entries(None).unwrap(), []);
    }

    #[test]
    fn an_applier_and_an_updater_of_the_same_name_are_different_managers() {
        let apply = id("kubectl", Operation::Apply);
        let update = id("kubectl", Operation::Update);
        assert!(!apply.matches(&update));
        let other_version = ManagerId {
            api_version: "apps/v2".into(),
            ..apply.clone()
        };
        assert!(apply.matches(&other_version));
        assert!(!update.matches(&ManagerId {
            api_version: "apps/v2".into(),
            ..update.clone()
        }));
    }
}
