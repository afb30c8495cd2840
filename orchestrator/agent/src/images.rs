//! Where the agent's Wasm images come from: the control plane's artifact store
//! (`wharf push`). OCI registries come next.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use wharf_apiserver::artifacts::ArtifactStore;
use wharf_runtime::RuntimeError;
use wharf_wasmtime::artifact::ImageSource;

/// Images pushed to this control plane, read in process.
#[derive(Clone, Debug)]
pub struct ControlPlaneImages {
    store: Arc<ArtifactStore>,
}

impl ControlPlaneImages {
    /// A source over the control plane's artifact store.
    pub fn new(store: Arc<ArtifactStore>) -> ControlPlaneImages {
        ControlPlaneImages { store }
    }
}

#[async_trait]
impl ImageSource for ControlPlaneImages {
    async fn fetch(&self, image: &str) -> Result<Bytes, RuntimeError> {
        match self.store.read(image).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(RuntimeError::ImageNotFound {
                image: image.to_owned(),
                detail: "no artifact of that name was pushed to the control plane (wharf push)"
                    .into(),
            }),
            Err(e) => Err(RuntimeError::Other(e.to_string())),
        }
    }
}
