//! `/openapi/v2`: the Swagger 2.0 document of the served kinds, as JSON or as the protobuf
//! encoding of gnostic's `openapi.v2.Document` (what kubectl asks for).
//!
//! kubectl 1.20 to 1.28 download this document before `apply` and `create` to validate
//! manifests on the client (later ones fall back to it without `/openapi/v3`), and their
//! `kubectl explain` reads field descriptions from it; without it they fail with `NotFound`. Only
//! `definitions` are served, each kind's carrying its `x-kubernetes-group-version-kind`, which
//! is all kubectl reads; `paths` stays empty. The definitions are `k8s-openapi`'s schemas,
//! shaped as Kubernetes' own v2 document shapes them: a reference keeps its description beside
//! `$ref`, `IntOrString` is a string of format `int-or-string`, `Quantity` a string, and the
//! lists Kubernetes merges by key declare `x-kubernetes-patch-merge-key`, which client-side
//! `kubectl apply` uses to compute its patches.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::resources::RESOURCES;

/// The media type of the protobuf encoding as Kubernetes answers it. kubectl asks for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but a `@` is not valid in a
/// media type and Go's `mime.ParseMediaType` rejects it, so the answer spells it with a `.`.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: protobuf if `Accept` asks for it, JSON otherwise.
pub async fn document(headers: HeaderMap) -> Response {
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/com.github.proto-openapi.spec.v2"));
    let (content_type, body) = if wants_protobuf {
        (PROTOBUF_CONTENT_TYPE, protobuf_document())
    } else {
        ("application/json", json_document())
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::VARY, HeaderValue::from_static("Accept")),
        ],
        body.clone(),
    )
        .into_response()
}

/// The document as a JSON value (built once: it only changes with the code).
pub fn swagger() -> &'static Value {
    static SWAGGER: OnceLock<Value> = OnceLock::new();
    SWAGGER.get_or_init(|| {
        let settings = SchemaSettings::draft07().with(|s| {
            // Swagger 2.0 keeps `description` beside `$ref`, which kubectl's parser expects;
            // draft 7's transform would wrap such references in `allOf`, which it ignores.
            s.transforms.clear();
            s.meta_schema = None;
        });
        let mut definitions = crate::openapi::kind_definitions(RESOURCES, settings);
        for (name, definition) in definitions.iter_mut() {
            shape_definition(name, definition);
        }
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": crate::discovery::version()["gitVersion"]},
            "paths": {},
            "definitions": definitions,
        })
    })
}

fn json_document() -> &'static bytes::Bytes {
    static JSON: OnceLock<bytes::Bytes> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_vec(swagger()).unwrap_or_default().into())
}

fn protobuf_document() -> &'static bytes::Bytes {
    static PROTOBUF: OnceLock<bytes::Bytes> = OnceLock::new();
    PROTOBUF.get_or_init(|| encode_document(swagger()).into())
}

/// Lists Kubernetes merges by a key on client-side apply: (definition, property) → merge key.
const PATCH_MERGE_KEYS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "name"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip"),
    ("io.k8s.api.core.v1.Container", "env", "name"),
    ("io.k8s.api.core.v1.Container", "ports", "containerPort"),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
    ),
];

/// Shapes one `k8s-openapi` definition as Kubernetes' v2 document has it.
fn shape_definition(name: &str, definition: &mut Value) {
    let Some(object) = definition.as_object_mut() else {
        return;
    };
    if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !object.contains_key("type")
    {
        object.insert("type".into(), json!("string"));
        if name.ends_with(".IntOrString") {
            object.insert("format".into(), json!("int-or-string"));
        }
    }
    for (definition_name, property, key) in PATCH_MERGE_KEYS {
        if *definition_name != name {
            continue;
        }
        if let Some(property) = object
            .get_mut("properties")
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        }
    }
    if name == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        && let Some(finalizers) = object
            .get_mut("properties")
            .and_then(|p| p.get_mut("finalizers"))
            .and_then(Value::as_object_mut)
    {
        finalizers.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
    }
}

/// Protobuf wire types.
const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_tag(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    write_varint(out, (field << 3) | wire_type);
}

fn write_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    write_tag(out, field, LENGTH_DELIMITED);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn write_string(out: &mut Vec<u8>, field: u64, text: &str) {
    if !text.is_empty() {
        write_bytes(out, field, text.as_bytes());
    }
}

/// An `openapi.v2.Any` holding `value` as YAML (JSON text is YAML).
fn encode_any(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&mut out, 2, &value.to_string());
    out
}

/// An `openapi.v2.NamedSchema` or `NamedAny`: a name and an encoded message.
fn encode_named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&mut out, 1, name);
    write_bytes(&mut out, 2, value);
    out
}

/// The protobuf encoding of gnostic's `openapi.v2.Document` with `info` and `definitions`.
pub fn encode_document(document: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&mut out, 1, document["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Vec::new();
    write_string(
        &mut info,
        1,
        document["info"]["title"].as_str().unwrap_or(""),
    );
    write_string(
        &mut info,
        2,
        document["info"]["version"].as_str().unwrap_or(""),
    );
    write_bytes(&mut out, 2, &info);
    write_bytes(&mut out, 8, &[]);
    let mut definitions = Vec::new();
    if let Some(map) = document["definitions"].as_object() {
        for (name, schema) in map {
            write_bytes(
                &mut definitions,
                1,
                &encode_named(name, &encode_schema(schema)),
            );
        }
    }
    write_bytes(&mut out, 9, &definitions);
    out
}

/// The protobuf encoding of gnostic's `openapi.v2.Schema` (the fields Kubernetes' definitions
/// use; field numbers from gnostic's `OpenAPIv2.proto`).
pub fn encode_schema(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(object) = schema.as_object() else {
        return out;
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
    write_string(&mut out, 1, text("$ref"));
    write_string(&mut out, 2, text("format"));
    write_string(&mut out, 3, text("title"));
    write_string(&mut out, 4, text("description"));
    if let Some(default) = object.get("default") {
        write_bytes(&mut out, 5, &encode_any(default));
    }
    write_string(&mut out, 13, text("pattern"));
    for required in object
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        write_string(&mut out, 19, required);
    }
    for value in object
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        write_bytes(&mut out, 20, &encode_any(value));
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Vec::new();
            write_tag(&mut item, 2, VARINT);
            write_varint(&mut item, u64::from(*allowed));
            write_bytes(&mut out, 21, &item);
        }
        Some(additional @ Value::Object(_)) => {
            let mut item = Vec::new();
            write_bytes(&mut item, 1, &encode_schema(additional));
            write_bytes(&mut out, 21, &item);
        }
        _ => {}
    }
    let types: Vec<&str> = match object.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut item = Vec::new();
        for t in types {
            write_string(&mut item, 1, t);
        }
        write_bytes(&mut out, 22, &item);
    }
    let items: Vec<&Value> = match object.get("items") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    };
    if !items.is_empty() {
        let mut item = Vec::new();
        for schema in items {
            write_bytes(&mut item, 1, &encode_schema(schema));
        }
        write_bytes(&mut out, 23, &item);
    }
    for schema in object
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        write_bytes(&mut out, 24, &encode_schema(schema));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let mut item = Vec::new();
        for (name, schema) in properties {
            write_bytes(&mut item, 1, &encode_named(name, &encode_schema(schema)));
        }
        write_bytes(&mut out, 25, &item);
    }
    let extensions: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, value) in &extensions {
        write_bytes(&mut out, 31, &encode_named(name, &encode_any(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf field as the tests read it back: a varint or length-delimited bytes.
    #[derive(Debug)]
    enum Field {
        Varint(u64),
        Bytes(Vec<u8>),
    }

    fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    fn decode(bytes: &[u8]) -> Vec<(u64, Field)> {
        let mut at = 0;
        let mut fields = Vec::new();
        while at < bytes.len() {
            let tag = read_varint(bytes, &mut at);
            let field = match tag & 7 {
                0 => Field::Varint(read_varint(bytes, &mut at)),
                2 => {
                    let len = read_varint(bytes, &mut at) as usize;
                    at += len;
                    Field::Bytes(bytes[at - len..at].to_vec())
                }
                other => panic!("unexpected wire type {other}"),
            };
            fields.push((tag >> 3, field));
        }
        fields
    }

    fn bytes_of(fields: &[(u64, Field)], number: u64) -> Vec<&[u8]> {
        fields
            .iter()
            .filter_map(|(n, f)| match f {
                Field::Bytes(b) if *n == number => Some(b.as_slice()),
                _ => None,
            })
            .collect()
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// The named entries (`NamedSchema`/`NamedAny`) of a repeated field, by name.
    fn named(fields: &[(u64, Field)], number: u64) -> Vec<(String, Vec<u8>)> {
        bytes_of(fields, number)
            .into_iter()
            .map(|entry| {
                let entry = decode(entry);
                (
                    text(bytes_of(&entry, 1)[0]).to_owned(),
                    bytes_of(&entry, 2)[0].to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn every_served_kind_has_a_definition_with_its_group_version_kind() {
        let definitions = swagger()["definitions"].as_object().unwrap();
        for resource in RESOURCES {
            let found = definitions.values().any(|d| {
                d["x-kubernetes-group-version-kind"]
                    == json!([{"group": resource.group, "kind": resource.kind, "version": resource.version}])
            });
            assert!(found, "no definition for {}", resource.kind);
        }
    }

    #[test]
    fn references_point_into_definitions_and_keep_their_description() {
        let definitions = swagger()["definitions"].as_object().unwrap();
        let spec = &definitions["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("desired behavior")
        );
        let text = serde_json::to_string(definitions).unwrap();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let name = reference.split('"').next().unwrap();
            let name = name
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{name}"));
            assert!(
                definitions.contains_key(name),
                "dangling reference to {name}"
            );
        }
        assert!(!text.contains("allOf"), "kubectl 1.20 cannot follow allOf");
    }

    #[test]
    fn int_or_string_and_quantity_are_strings_as_in_kubernetes() {
        let definitions = swagger()["definitions"].as_object().unwrap();
        let int_or_string = &definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["type"], "string");
        assert_eq!(int_or_string["format"], "int-or-string");
        let quantity = &definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(quantity["type"], "string");
    }

    #[test]
    fn containers_merge_by_name_on_client_side_apply() {
        let pod_spec = &swagger()["definitions"]["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            pod_spec["properties"]["containers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
    }

    #[test]
    fn protobuf_document_encodes_definitions_as_gnostic_reads_them() {
        let document = decode(&encode_document(swagger()));
        assert_eq!(text(bytes_of(&document, 1)[0]), "2.0");
        let definitions = decode(bytes_of(&document, 9)[0]);
        let definitions = named(&definitions, 1);
        let (_, deployment) = definitions
            .iter()
            .find(|(name, _)| name == "io.k8s.api.apps.v1.Deployment")
            .expect("Deployment definition");
        let deployment = decode(deployment);
        // type: [object]
        let types = decode(bytes_of(&deployment, 22)[0]);
        assert_eq!(text(bytes_of(&types, 1)[0]), "object");
        // properties.spec.$ref
        let properties = named(&decode(bytes_of(&deployment, 25)[0]), 1);
        let (_, spec) = properties.iter().find(|(name, _)| name == "spec").unwrap();
        assert_eq!(
            text(bytes_of(&decode(spec), 1)[0]),
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        // x-kubernetes-group-version-kind as YAML in an Any.
        let extensions = named(&deployment, 31);
        let (_, gvk) = extensions
            .iter()
            .find(|(name, _)| name == "x-kubernetes-group-version-kind")
            .unwrap();
        let yaml: Value = serde_json::from_str(text(bytes_of(&decode(gvk), 2)[0])).unwrap();
        assert_eq!(
            yaml,
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
    }

    #[test]
    fn map_schemas_encode_additional_properties_as_a_schema() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "string"}});
        let fields = decode(&encode_schema(&schema));
        let additional = decode(bytes_of(&fields, 21)[0]);
        let inner = decode(bytes_of(&additional, 1)[0]);
        let types = decode(bytes_of(&inner, 22)[0]);
        assert_eq!(text(bytes_of(&types, 1)[0]), "string");
    }

    #[test]
    fn closed_objects_encode_additional_properties_as_a_boolean() {
        let schema = json!({"type": "object", "additionalProperties": false});
        let fields = decode(&encode_schema(&schema));
        let additional = decode(bytes_of(&fields, 21)[0]);
        assert!(
            matches!(additional.as_slice(), [(2, Field::Varint(0))]),
            "{additional:?}"
        );
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        write_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
