//! Where the agent's Wasm images come from: the control plane's artifact store (`wharf push`)
//! and OCI registries (artifacts with the Wasm layer media types). A reference whose first
//! part is a registry host (`registry.example/app:1`, `127.0.0.1:5000/app:1`) is pulled from
//! that registry; any other name is looked up in the artifact store.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use wharf_apiserver::client::ClusterApi;
use wharf_runtime::RuntimeError;
use wharf_wasmtime::artifact::ImageSource;

/// The layer media types of Wasm OCI artifacts.
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// Whether `image` names a registry (its first path part is a host: has a dot or a port, or
/// is `localhost`).
pub fn names_a_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// Whether a registry host is on this machine (served over plain HTTP, as registries for local
/// development and tests are).
pub fn is_loopback_registry(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Images from the control plane, then from OCI registries.
pub struct WasmImages {
    api: Arc<dyn ClusterApi>,
    https: Client,
    http: Client,
    insecure: Vec<String>,
}

impl std::fmt::Debug for WasmImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmImages").finish_non_exhaustive()
    }
}

impl WasmImages {
    /// A source over the artifact store and registries; `insecure` lists further registries
    /// (besides loopback ones) reached over plain HTTP.
    pub fn new(api: Arc<dyn ClusterApi>, insecure: Vec<String>) -> WasmImages {
        let client = |protocol| {
            Client::new(ClientConfig {
                protocol,
                ..ClientConfig::default()
            })
        };
        WasmImages {
            api,
            https: client(ClientProtocol::Https),
            http: client(ClientProtocol::Http),
            insecure,
        }
    }

    async fn pull(&self, image: &str) -> Result<Bytes, RuntimeError> {
        let not_found = |detail: String| RuntimeError::ImageNotFound {
            image: image.to_owned(),
            detail,
        };
        let reference: Reference = image
            .parse()
            .map_err(|e| not_found(format!("not a valid image reference: {e}")))?;
        let registry = reference.resolve_registry().to_owned();
        let client = if is_loopback_registry(&registry) || self.insecure.contains(&registry) {
            &self.http
        } else {
            &self.https
        };
        let (manifest, _) = client
            .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
            .await
            .map_err(|e| not_found(format!("pulling the manifest from {registry}: {e}")))?;
        let layer = manifest
            .layers
            .iter()
            .find(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
            .ok_or_else(|| RuntimeError::InvalidArtifact {
                image: image.to_owned(),
                detail: format!(
                    "the image has no Wasm layer (media types found: {})",
                    manifest
                        .layers
                        .iter()
                        .map(|l| l.media_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
        client
            .pull_blob(&reference, layer, &mut bytes)
            .await
            .map_err(|e| not_found(format!("pulling the Wasm layer from {registry}: {e}")))?;
        Ok(Bytes::from(bytes))
    }
}

#[async_trait]
impl ImageSource for WasmImages {
    async fn fetch(&self, image: &str) -> Result<Bytes, RuntimeError> {
        if names_a_registry(image) {
            return self.pull(image).await;
        }
        match self.api.artifact(image).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(RuntimeError::ImageNotFound {
                image: image.to_owned(),
                detail: "no artifact of that name was pushed to the control plane (wharf push), and it names no registry".into(),
            }),
            Err(e) => Err(RuntimeError::Other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_are_told_from_artifact_names() {
        assert!(names_a_registry("127.0.0.1:5000/hello:1"));
        assert!(names_a_registry("ghcr.io/org/app:1"));
        assert!(names_a_registry("localhost/app"));
        assert!(!names_a_registry("hello-http:latest"));
        assert!(!names_a_registry("team/app:1"));
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
    }
}
