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
