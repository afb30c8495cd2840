//! Pure Kubernetes API machinery for Wharf.
//!
//! This crate holds the parts of the Kubernetes API semantics that are independent of storage
//! and HTTP, so the API server (and anything else that needs the same rules, such as
//! controllers filtering their caches) can share one implementation:
//!
//! * [`labels`]: label selectors, in both the `?labelSelector=` string form and the
//!   `metav1.LabelSelector` object form;
//! * [`fields`]: field selectors (`?fieldSelector=`);
//! * [`strategic_merge`]: strategic merge patch on JSON documents;
//! * [`managedfields`]: server-side apply: field ownership (`managedFields`), conflicts and the
//!   apply merge;
//! * [`validation`]: the rules for object names, label keys and values, and annotation keys,
//!   plus `generateName` suffixes.
//!
//! Everything works on `serde_json::Value`, performs no I/O and keeps no state.

pub mod fields;
pub mod labels;
pub mod managedfields;
pub mod strategic_merge;
pub mod validation;

/// JSON with object keys sorted at every level, so equal values have one spelling whatever
/// order their maps were built in (for hashes and set keys).
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}
