//! The control plane's artifact store, for `wharf push` and `wharf image import`: Wasm
//! artifacts and OCI image archives uploaded over HTTP,
//! kept content-addressed by sha256 in the data dir, with `NAME:TAG` references recorded in the
//! store. Pods name them in `image:` (`hello-http:latest`, or `hello-http`, meaning `:latest`).
//!
//! `PUT /wharf/v1/artifacts/NAME:TAG` uploads, `GET /wharf/v1/artifacts/NAME:TAG` describes,
//! `GET /wharf/v1/artifacts/NAME:TAG/content` downloads, `GET /wharf/v1/artifacts` lists.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wharf_store::{Precondition, Store, WriteOp};

use crate::ApiServer;
use crate::error::ApiError;
use crate::http::json_response;

/// The largest artifact accepted.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

const KEY_PREFIX: &str = "/wharf/artifacts/";

/// A reference split into name and tag (`latest` when absent).
pub fn parse_reference(reference: &str) -> (String, String) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (reference[..at].to_owned(), reference[at + 1..].to_owned())
        }
        None => (reference.to_owned(), "latest".to_owned()),
    }
}

/// Content-addressed artifacts on disk, references in the store.
pub struct ArtifactStore {
    dir: PathBuf,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ArtifactStore {
    /// A store keeping blobs under `dir/sha256/`.
    pub fn new(dir: impl Into<PathBuf>, store: Arc<dyn Store>) -> std::io::Result<ArtifactStore> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("sha256"))?;
        Ok(ArtifactStore { dir, store })
    }

    fn blob_path(&self, digest_hex: &str) -> PathBuf {
        self.dir.join("sha256").join(digest_hex)
    }

    /// Stores an artifact under `reference`; returns its description.
    pub async fn push(&self, reference: &str, bytes: &[u8]) -> Result<Value, ApiError> {
        let kind = if bytes.starts_with(b"\0asm\x0d\0\x01\0") {
            "component"
        } else if bytes.starts_with(b"\0asm\x01\0\0\0") {
            "module"
        } else if bytes.get(257..262) == Some(b"ustar") {
            // A tar: an OCI image archive for the containerd runtime (`wharf image import`).
            "oci-archive"
        } else {
            return Err(ApiError::BadRequest(
                "the artifact is not a WebAssembly module or component, nor an OCI image archive"
                    .into(),
            ));
        };
        let (name, tag) = parse_reference(reference);
        if name.is_empty() || tag.is_empty() || name.contains("..") {
            return Err(ApiError::BadRequest(format!(
                "invalid artifact reference {reference:?}: use NAME[:TAG]"
            )));
        }
        let digest: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = self.blob_path(&digest);
        if !path.exists() {
            // The blob is durable before the reference to it is written.
            let tmp = path.with_extension("tmp");
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write()
                .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
        }
        let description = json!({
            "name": name,
            "tag": tag,
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "kind": kind,
            "mediaType": match kind {
                "component" => "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
                "module" => "application/vnd.wasm.content.layer.v1+wasm",
                _ => "application/vnd.oci.image.layout.v1+tar",
            },
            "pushedAt": crate::meta::now_rfc3339(),
        });
        self.store
            .write(WriteOp::Put {
                key: format!("{KEY_PREFIX}{name}:{tag}"),
                value: Bytes::from(description.to_string()),
                precondition: Precondition::None,
            })
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(description)
    }

    /// The description of `reference`, if it was pushed.
    pub async fn describe(&self, reference: &str) -> Result<Option<Value>, ApiError> {
        let (name, tag) = parse_reference(reference);
        let kv = self
            .store
            .get(&format!("{KEY_PREFIX}{name}:{tag}"))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// The bytes of `reference`, if it was pushed.
    pub async fn read(&self, reference: &str) -> Result<Option<Bytes>, ApiError> {
        let Some(description) = self.describe(reference).await? else {
            return Ok(None);
        };
        let digest = description["digest"].as_str().unwrap_or("");
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let bytes = tokio::fs::read(self.blob_path(hex))
            .await
            .map_err(|e| ApiError::Internal(format!("artifact blob {digest} is missing: {e}")))?;
        Ok(Some(Bytes::from(bytes)))
    }

    /// Every pushed reference.
    pub async fn list(&self) -> Result<Vec<Value>, ApiError> {
        let page = self
            .store
            .list(KEY_PREFIX, None, None)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(page
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }
}

fn artifacts(server: &ApiServer) -> Result<&ArtifactStore, ApiError> {
    server
        .artifacts
        .as_deref()
        .ok_or_else(|| ApiError::PathNotFound("this server keeps no artifacts".into()))
}

/// `PUT /wharf/v1/artifacts/{reference}`.
pub async fn push(
    State(server): State<Arc<ApiServer>>,
    Path(reference): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let store = artifacts(&server)?;
        let bytes = axum::body::to_bytes(body, MAX_ARTIFACT_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(MAX_ARTIFACT_BYTES))?;
        store.push(&reference, &bytes).await
    }
    .await;
    match result {
        Ok(description) => json_response(StatusCode::CREATED, &description),
        Err(e) => e.into_response(),
    }
}

/// `GET /wharf/v1/artifacts/{reference}` and `.../content`.
pub async fn get(State(server): State<Arc<ApiServer>>, Path(path): Path<String>) -> Response {
    let result = async {
        let store = artifacts(&server)?;
        let (reference, content) = match path.strip_suffix("/content") {
            Some(reference) => (reference, true),
            None => (path.as_str(), false),
        };
        let missing = || ApiError::PathNotFound(format!("artifact {reference:?} not found"));
        if content {
            let bytes = store.read(reference).await?.ok_or_else(missing)?;
            let mut response = bytes.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/wasm"),
            );
            Ok(response)
        } else {
            let description = store.describe(reference).await?.ok_or_else(missing)?;
            Ok(json_response(StatusCode::OK, &description))
        }
    }
    .await;
    result.unwrap_or_else(|e: ApiError| e.into_response())
}

/// `GET /wharf/v1/artifacts`.
pub async fn list(State(server): State<Arc<ApiServer>>) -> Response {
    let result = async { artifacts(&server)?.list().await }.await;
    match result {
        Ok(items) => json_response(StatusCode::OK, &json!({"items": items})),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(parse_reference("hello:1"), ("hello".into(), "1".into()));
        assert_eq!(parse_reference("hello"), ("hello".into(), "latest".into()));
        assert_eq!(
            parse_reference("registry:5000/team/app"),
            ("registry:5000/team/app".into(), "latest".into())
        );
        assert_eq!(
            parse_reference("registry:5000/team/app:v2"),
            ("registry:5000/team/app".into(), "v2".into())
        );
    }
}
