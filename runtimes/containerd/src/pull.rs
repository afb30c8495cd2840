//! Pulling images from OCI registries into containerd's content store.
//!
//! A reference whose first part is a registry host (`registry.example/app:1`,
//! `127.0.0.1:5000/apps/hello:1`) and that containerd does not have yet is pulled: the manifest
//! (following an index to the manifest for linux on this machine's architecture, as archive
//! import does), the configuration and the layers, each streamed into the content store and
//! checked against its digest, inside a lease. The image is then made exactly as an imported
//! one is (`image::register_image`: garbage-collection labels and the image record, named by
//! the reference with its tag), so `prepare` unpacks it as it unpacks imported images.
//!
//! Registries on this machine (loopback) and those configured as insecure are reached over
//! plain HTTP, the rest over HTTPS, as the agent does for Wasm images. Pulls are anonymous.
//! A registry that does not answer, or that has no such image, is `ImageNotFound`, which the
//! agent reports as the pod's `ErrImagePull`.

use std::time::Duration;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as RegistryClient, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use wharf_runtime::RuntimeError;

use crate::client::Client;
use crate::image::{
    self, Descriptor, INDEX_TYPES, MANIFEST_TYPES, MAX_MANIFEST, MAX_NESTING, Target,
};

/// How long connecting to a registry may take before it counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `reference` names a registry: its first path part is a host (has a dot or a port,
/// or is `localhost`).
pub(crate) fn names_a_registry(reference: &str) -> bool {
    match reference.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// Whether a registry host is on this machine (served over plain HTTP, as registries for local
/// development and tests are).
fn is_loopback_registry(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Pulls `reference` from its registry into the content store and creates its image record;
/// returns the record's name. `insecure` lists registries (`host:port`, as in references)
/// besides loopback ones that are reached over plain HTTP.
pub(crate) async fn pull(
    client: &Client,
    reference: &str,
    insecure: &[String],
) -> Result<String, RuntimeError> {
    let parsed: Reference = reference.parse().map_err(|e| RuntimeError::ImageNotFound {
        image: reference.to_owned(),
        detail: format!("not a valid image reference: {e}"),
    })?;
    let registry = parsed.resolve_registry().to_owned();
    let plain_http = is_loopback_registry(&registry) || insecure.contains(&registry);
    let source = Source {
        registry: RegistryClient::new(ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        }),
        reference: parsed,
        registry_name: registry,
        image: reference.to_owned(),
    };
    // Named as `image::resolve` looks it up: as written, with the default tag if it has none.
    let name = image::with_default_tag(reference);
    tracing::info!(image = %reference, registry = %source.registry_name, "pulling an image");
    client
        .with_lease("pull", |client| async move {
            let target = source.fetch(&client).await?;
            image::register_image(&client, &name, &target).await?;
            Ok(name)
        })
        .await
}

/// Where an image is pulled from.
struct Source {
    registry: RegistryClient,
    reference: Reference,
    /// The registry's host, for messages.
    registry_name: String,
    /// The reference as the pod wrote it, for errors.
    image: String,
}

/// Just enough of a manifest or index to tell which it is when the registry's answer is all
/// there is (no descriptor).
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl Source {
    /// Writes the image's blobs into the content store: the manifest the reference names and,
    /// through indexes, the manifest for this machine with its configuration and layers.
    /// Returns the descriptor of what the reference names (the image's target).
    async fn fetch(&self, client: &Client) -> Result<Descriptor, RuntimeError> {
        let (bytes, _) = self
            .fetch_manifest(&self.reference)
            .await
            .map_err(|e| self.not_found("manifest", e))?;
        let kind: Kind = serde_json::from_slice(&bytes)
            .map_err(|e| self.invalid(format!("the manifest is not JSON: {e}")))?;
        let media_type = kind.media_type.unwrap_or_else(|| {
            // Older manifests may leave the media type out; the fields tell.
            if kind.manifests.is_some() {
                INDEX_TYPES[0].to_owned()
            } else {
                MANIFEST_TYPES[0].to_owned()
            }
        });
        let target = Descriptor {
            media_type,
            digest: format!("sha256:{}", image::hex(&Sha256::digest(&bytes))),
            size: bytes.len() as i64,
            annotations: Default::default(),
            platform: None,
        };
        self.store_bytes(client, &target, &bytes).await?;
        let mut descriptor = target.clone();
        let mut bytes = bytes;
        for _ in 0..MAX_NESTING {
            match image::parse_target(&self.image, &descriptor, &bytes)? {
                Target::Index { chosen, .. } => {
                    let by_digest = self.reference.clone_with_digest(chosen.digest.clone());
                    let (chosen_bytes, _) = self
                        .fetch_manifest(&by_digest)
                        .await
                        .map_err(|e| self.not_found(&format!("manifest {}", chosen.digest), e))?;
                    self.store_bytes(client, &chosen, &chosen_bytes).await?;
                    descriptor = chosen;
                    bytes = chosen_bytes;
                }
                Target::Manifest(manifest) => {
                    self.fetch_blob(client, &manifest.config).await?;
                    for layer in &manifest.layers {
                        self.fetch_blob(client, layer).await?;
                    }
                    return Ok(target);
                }
            }
        }
        Err(image::nested_too_deeply(&self.image))
    }

    /// Fetches a manifest or index (by tag or digest); oci-client checks it against the digest
    /// the registry or the reference gives.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Vec<u8>, String), OciDistributionError> {
        let accepted: Vec<&str> = INDEX_TYPES.iter().chain(&MANIFEST_TYPES).copied().collect();
        self.registry
            .pull_manifest_raw(reference, &RegistryAuth::Anonymous, &accepted)
            .await
    }

    /// Writes a blob already in memory (a manifest) into the content store.
    async fn store_bytes(
        &self,
        client: &Client,
        descriptor: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RuntimeError> {
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(self.invalid(format!(
                "manifest {} is larger than {MAX_MANIFEST} bytes",
                descriptor.digest
            )));
        }
        let size = bytes.len() as u64;
        image::write_blob(
            client,
            &self.image,
            &descriptor.digest,
            size,
            || async move { Ok(tokio_stream::once(Ok(Bytes::copy_from_slice(bytes)))) },
        )
        .await?;
        Ok(())
    }

    /// Streams a blob (configuration or layer) from the registry into the content store,
    /// unless the store has it already.
    async fn fetch_blob(
        &self,
        client: &Client,
        descriptor: &Descriptor,
    ) -> Result<(), RuntimeError> {
        let size = u64::try_from(descriptor.size)
            .map_err(|_| self.invalid(format!("blob {} has a negative size", descriptor.digest)))?;
        let what = format!("blob {}", descriptor.digest);
        let what = what.as_str();
        let written = image::write_blob(client, &self.image, &descriptor.digest, size, || async {
            let stream = self
                .registry
                .pull_blob_stream(&self.reference, descriptor.digest.as_str())
                .await
                .map_err(|e| self.not_found(what, e))?;
            Ok(stream.map(|chunk| chunk.map_err(|e| self.download_error(what, &e))))
        })
        .await?;
        if written {
            tracing::debug!(image = %self.image, blob = %descriptor.digest, size, "pulled a blob");
        }
        Ok(())
    }

    /// The error for a blob download that failed part way: the bytes did not match the
    /// digest (oci-client checks at the end of the stream), or the connection broke.
    fn download_error(&self, what: &str, error: &std::io::Error) -> RuntimeError {
        let registry = &self.registry_name;
        let digest_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DigestError>());
        match digest_error {
            Some(e) => self.invalid(format!(
                "{what} from {registry} does not match its digest: {e}"
            )),
            None => RuntimeError::ImageNotFound {
                image: self.image.clone(),
                detail: format!(
                    "the download of {what} from {registry} broke off: {}",
                    error_chain(error)
                ),
            },
        }
    }

    fn invalid(&self, detail: String) -> RuntimeError {
        RuntimeError::InvalidArtifact {
            image: self.image.clone(),
            detail,
        }
    }

    /// The error for a failed request for `what`: `ImageNotFound` saying whether the registry
    /// did not answer, has no such image, or refused; `InvalidArtifact` when what it sent does
    /// not match its digest.
    fn not_found(&self, what: &str, error: OciDistributionError) -> RuntimeError {
        let registry = &self.registry_name;
        let image = self.repository_and_version();
        let detail = match &error {
            OciDistributionError::DigestError(e) => {
                return self.invalid(format!(
                    "{what} from {registry} does not match its digest: {e}"
                ));
            }
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                format!(
                    "the registry {registry} does not answer: {}",
                    error_chain(e)
                )
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let missing = envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                });
                let messages: Vec<&str> =
                    envelope.errors.iter().map(|e| e.message.as_str()).collect();
                let messages = messages.join("; ");
                if missing {
                    format!("{registry} has no {what} for {image} ({messages})")
                } else {
                    format!("{registry} refused to serve {what} for {image}: {messages}")
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => {
                format!("{registry} has no {what} for {image} (404 Not Found)")
            }
            OciDistributionError::RequestError(e)
                if e.status().map(|status| status.as_u16()) == Some(404) =>
            {
                format!("{registry} has no {what} for {image} (404 Not Found)")
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => format!(
                "{registry} refused an anonymous pull of {image} (only anonymous pulls are \
                 supported)"
            ),
            _ => format!(
                "cannot pull {what} for {image} from {registry}: {}",
                error_chain(&error)
            ),
        };
        RuntimeError::ImageNotFound {
            image: self.image.clone(),
            detail,
        }
    }

    /// `repository:tag` (or `@digest`), as the registry knows the image.
    fn repository_and_version(&self) -> String {
        let repository = self.reference.repository();
        match (self.reference.digest(), self.reference.tag()) {
            (Some(digest), _) => format!("{repository}@{digest}"),
            (None, Some(tag)) => format!("{repository}:{tag}"),
            (None, None) => format!("{repository}:latest"),
        }
    }
}

/// An error and its sources, each cause once (HTTP clients nest the same message a few times).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_are_told_from_local_names() {
        assert!(names_a_registry("127.0.0.1:5000/apps/hello:1"));
        assert!(names_a_registry("ghcr.io/org/app:1"));
        assert!(names_a_registry("localhost/app"));
        assert!(!names_a_registry("hello-container:latest"));
        assert!(!names_a_registry("team/app:1"));
        assert!(!names_a_registry("localhost"));
    }

    #[test]
    fn loopback_registries_are_reached_over_plain_http() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("localhost"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
        assert!(!is_loopback_registry("registry.example:5000"));
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let refused = Layer("Connection refused", None);
        let connect = Layer(
            "tcp connect error: Connection refused",
            Some(Box::new(refused)),
        );
        let request = Layer("error sending request", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&request),
            "error sending request: tcp connect error: Connection refused"
        );
    }
}
