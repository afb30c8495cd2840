//! The objects every Wharf cluster has from its first start: namespaces `default`,
//! `kube-system`, `kube-public`, `kube-node-lease`, and the RuntimeClasses `wasmtime` and `runc`.
//! Idempotent: existing objects are left as they are.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};
use crate::resources;

/// The namespaces created at bootstrap.
pub const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The RuntimeClasses created at bootstrap: name and handler.
pub const RUNTIME_CLASSES: &[&str] = &["wasmtime", "runc"];

/// Creates whatever of the bootstrap objects is missing.
pub async fn ensure_bootstrap_objects(registry: &Registry) -> Result<(), ApiError> {
    let namespaces = resources::find("", "v1", "namespaces").expect("namespaces are served");
    let runtime_classes =
        resources::find("node.k8s.io", "v1", "runtimeclasses").expect("runtimeclasses are served");
    for name in NAMESPACES {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        create_if_missing(registry, namespaces, object).await?;
    }
    for name in RUNTIME_CLASSES {
        let object = json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": name}, "handler": name,
        });
        create_if_missing(registry, runtime_classes, object).await?;
    }
    Ok(())
}

async fn create_if_missing(
    registry: &Registry,
    resource: &resources::Resource,
    object: Value,
) -> Result<(), ApiError> {
    match registry
        .create(resource, None, object, &WriteOptions::default())
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
