//! Images in containerd's content store: importing an OCI image archive, resolving a name to
//! its manifest and configuration, and unpacking the layers into the snapshotter. The pieces
//! that store blobs and make an image of them are shared with pulls from registries (`pull`).
//!
//! Import writes every blob of the archive into the content store (checked against its digest
//! here and by containerd at commit), labels the manifest and configuration so that
//! containerd's garbage collector keeps what the image needs, creates the image record and
//! unpacks it. Unpacking applies each layer on top of its parent's snapshot and commits it
//! under the layer's chain id, as containerd's own unpacker does, so images imported here and
//! with `ctr` share snapshots. All of it happens inside a lease, released when done.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, GetImageRequest, Image, Info, InfoRequest,
    ReadContentRequest, UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use containerd_client::tonic::{Code, Status, Streaming};
use containerd_client::types::{Descriptor as ApiDescriptor, Mount};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use wharf_runtime::RuntimeError;

use crate::client::{Client, Held, is_already_exists, is_not_found, status_error, unique_suffix};

/// The snapshotter that holds unpacked images and container root file systems.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

/// The size of one write to the content store.
const CHUNK: usize = 1 << 20;

/// The largest `index.json` or manifest read (they list blobs; real ones are a few KiB).
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;

/// How many manifests deep an image's target may lead: an index may nest another index (two
/// levels are plenty) before the image manifest.
pub(crate) const MAX_NESTING: usize = 3;

/// The media types of an index of manifests (OCI's, and Docker's manifest list).
pub(crate) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// The media types of an image manifest (OCI's, and Docker's schema 2).
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// An OCI content descriptor, as JSON in indexes and manifests.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of a manifest in an index.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image configuration: how to run it and what its layers unpack to.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

/// The run defaults of an image (`config` in the image configuration).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// The layers' uncompressed digests.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// A resolved image: what containers are created from.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedImage {
    /// The name of the image record.
    pub name: String,
    /// The digest of the image's target (manifest or index).
    pub target_digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The chain id of the top layer: the parent snapshot of a container's root file system.
    pub top_chain_id: String,
}

impl ResolvedImage {
    /// The run defaults, empty when the image has none.
    pub(crate) fn run_config(&self) -> RunConfig {
        self.config.config.clone().unwrap_or_default()
    }
}

fn invalid(image: &str, detail: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidArtifact {
        image: image.to_owned(),
        detail: detail.to_string(),
    }
}

/// The chain ids of a stack of layers, from their uncompressed digests: the first is the first
/// diff id, each next one `sha256(parent + " " + diff_id)` (the OCI image spec's definition).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex(&hash))
            }
        };
        chain.push(next);
    }
    chain
}

/// Bytes as lower-case hexadecimal, as digests write them.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names a Kubernetes image reference may have been stored under: as written, with the
/// default tag, and with Docker Hub's default registry and repository prefix.
pub(crate) fn candidate_names(reference: &str) -> Vec<String> {
    let mut names = vec![reference.to_owned()];
    let tagged = with_default_tag(reference);
    if tagged != reference {
        names.push(tagged.clone());
    }
    let first = tagged.split('/').next().unwrap_or("");
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        if tagged.contains('/') {
            names.push(format!("docker.io/{tagged}"));
        } else {
            names.push(format!("docker.io/library/{tagged}"));
        }
    }
    names
}

/// A reference with `:latest` added when it has neither tag nor digest.
pub(crate) fn with_default_tag(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

fn api_descriptor(descriptor: &Descriptor) -> ApiDescriptor {
    ApiDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: HashMap::new(),
    }
}

/// The architecture name OCI uses for this machine.
fn this_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Chooses the manifest for this machine from an index.
fn choose_manifest(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let for_this_machine = manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == this_architecture())
    });
    // An index without platforms, as single-image archives often are, means its one manifest.
    for_this_machine.or(match manifests {
        [only] if only.platform.is_none() => Some(only),
        _ => None,
    })
}

/// Reads a blob from the content store.
async fn read_blob(client: &Client, digest: &str) -> Result<Vec<u8>, Status> {
    let request = ReadContentRequest {
        digest: digest.to_owned(),
        offset: 0,
        size: 0,
    };
    let mut stream = client.content().read(request).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        bytes.extend_from_slice(&message.data);
    }
    Ok(bytes)
}

/// Reads the blob a descriptor names; one that is missing makes the image invalid.
async fn read_content(
    client: &Client,
    image: &str,
    descriptor: &Descriptor,
) -> Result<Vec<u8>, RuntimeError> {
    read_blob(client, &descriptor.digest).await.map_err(|e| {
        if is_not_found(&e) {
            invalid(
                image,
                format!(
                    "blob {} is missing from the content store",
                    descriptor.digest
                ),
            )
        } else {
            status_error("read content", e)
        }
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    image: &str,
    descriptor: &Descriptor,
    bytes: &[u8],
) -> Result<T, RuntimeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            image,
            format!("{} ({}): {e}", descriptor.digest, descriptor.media_type),
        )
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    image: &str,
    descriptor: &Descriptor,
) -> Result<T, RuntimeError> {
    let bytes = read_content(client, image, descriptor).await?;
    parse_json(image, descriptor, &bytes)
}

/// One step on the way from an image's target to the manifest for this machine.
pub(crate) enum Target {
    /// An index: all its manifests, and the one for this machine, which is followed next.
    Index {
        manifests: Vec<Descriptor>,
        chosen: Descriptor,
    },
    /// The image manifest.
    Manifest(Manifest),
}

/// Parses a target's bytes as what its media type says: an index (choosing the manifest for
/// this machine) or an image manifest. Anything else is an invalid image.
pub(crate) fn parse_target(
    image: &str,
    descriptor: &Descriptor,
    bytes: &[u8],
) -> Result<Target, RuntimeError> {
    let media_type = descriptor.media_type.as_str();
    if INDEX_TYPES.contains(&media_type) {
        let index: Index = parse_json(image, descriptor, bytes)?;
        let chosen = choose_manifest(&index.manifests)
            .ok_or_else(|| {
                invalid(
                    image,
                    format!("no manifest for linux/{}", this_architecture()),
                )
            })?
            .clone();
        return Ok(Target::Index {
            manifests: index.manifests,
            chosen,
        });
    }
    if MANIFEST_TYPES.contains(&media_type) {
        return Ok(Target::Manifest(parse_json(image, descriptor, bytes)?));
    }
    Err(invalid(
        image,
        format!("unsupported media type {media_type:?}"),
    ))
}

/// The error for an image whose indexes nest deeper than [`MAX_NESTING`].
pub(crate) fn nested_too_deeply(image: &str) -> RuntimeError {
    invalid(image, "indexes nested too deeply")
}

/// Follows an image's target (a manifest, or an index of manifests) to the manifest for this
/// machine. Returns the manifest's descriptor and the manifest.
async fn resolve_manifest(
    client: &Client,
    image: &str,
    target: &Descriptor,
) -> Result<(Descriptor, Manifest), RuntimeError> {
    let mut descriptor = target.clone();
    for _ in 0..MAX_NESTING {
        let bytes = read_content(client, image, &descriptor).await?;
        match parse_target(image, &descriptor, &bytes)? {
            Target::Index { chosen, .. } => descriptor = chosen,
            Target::Manifest(manifest) => return Ok((descriptor, manifest)),
        }
    }
    Err(nested_too_deeply(image))
}

/// Looks an image up by name (trying the usual spellings of a reference) and reads its
/// manifest and configuration. A missing image is `ImageNotFound`.
pub(crate) async fn resolve(
    client: &Client,
    reference: &str,
) -> Result<ResolvedImage, RuntimeError> {
    let mut found = None;
    for name in candidate_names(reference) {
        match client
            .images()
            .get(GetImageRequest { name: name.clone() })
            .await
        {
            Ok(response) => {
                found = response.into_inner().image;
                break;
            }
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(status_error("look up an image", e)),
        }
    }
    let image = found.ok_or_else(|| RuntimeError::ImageNotFound {
        image: reference.to_owned(),
        detail: "not in containerd's image store (import it with `wharf image import`)".into(),
    })?;
    let target = image
        .target
        .ok_or_else(|| invalid(reference, "the image record has no target"))?;
    let target = Descriptor {
        media_type: target.media_type,
        digest: target.digest,
        size: target.size,
        annotations: HashMap::new(),
        platform: None,
    };
    let (_, manifest) = resolve_manifest(client, reference, &target).await?;
    let config: ImageConfig = read_json(client, reference, &manifest.config).await?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(
            reference,
            format!(
                "the configuration lists {} layers, the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    let top_chain_id = chain_ids(&config.rootfs.diff_ids)
        .pop()
        .ok_or_else(|| invalid(reference, "the image has no layers"))?;
    Ok(ResolvedImage {
        name: image.name,
        target_digest: target.digest,
        manifest,
        config,
        top_chain_id,
    })
}

/// Whether a committed snapshot exists.
async fn snapshot_exists(client: &Client, key: &str) -> Result<bool, RuntimeError> {
    let request = StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        key: key.to_owned(),
    };
    match client.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(status_error("stat a snapshot", e)),
    }
}

/// Whether a committed snapshot exists; one that does is held in `client`'s lease. As for
/// blobs (see [`BlobWriter::start`]), another unpack's snapshot may be held only by its lease,
/// which may go before this image refers to the snapshot.
async fn have_snapshot(client: &Client, key: &str) -> Result<bool, RuntimeError> {
    client
        .hold(Held::Snapshot {
            snapshotter: SNAPSHOTTER,
            key,
        })
        .await?;
    snapshot_exists(client, key).await
}

/// Removes a snapshot, ignoring one that is already gone.
pub(crate) async fn remove_snapshot(client: &Client, key: &str) -> Result<(), RuntimeError> {
    let request = RemoveSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        key: key.to_owned(),
    };
    match client.snapshots().remove(request).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(status_error("remove a snapshot", e)),
    }
}

/// Unpacks the image's layers that are not unpacked yet; `client` should hold a lease.
/// Labels the configuration blob with the top snapshot, which keeps the snapshots alive for as
/// long as the image exists.
pub(crate) async fn unpack(client: &Client, image: &ResolvedImage) -> Result<(), RuntimeError> {
    let name = image.name.as_str();
    let chain = chain_ids(&image.config.rootfs.diff_ids);
    let layers = image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids);
    for (i, (layer, diff_id)) in layers.enumerate() {
        if have_snapshot(client, &chain[i]).await? {
            continue;
        }
        let key = format!("wharf-extract-{}-{}", unique_suffix(), chain[i]);
        let parent = if i == 0 {
            String::new()
        } else {
            chain[i - 1].clone()
        };
        let prepared = client
            .snapshots()
            .prepare(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent,
                labels: HashMap::new(),
            })
            .await
            .map_err(|e| status_error("prepare a snapshot for a layer", e))?
            .into_inner();
        let applied = apply_layer(client, name, layer, diff_id, prepared.mounts).await;
        if let Err(e) = applied {
            let _ = remove_snapshot(client, &key).await;
            return Err(e);
        }
        let commit = CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: chain[i].clone(),
            key: key.clone(),
            labels: HashMap::new(),
        };
        match client.snapshots().commit(commit).await {
            Ok(_) => {}
            // Someone else unpacked the same layer meanwhile: theirs is as good as ours.
            Err(e) if is_already_exists(&e) => remove_snapshot(client, &key).await?,
            Err(e) => {
                let _ = remove_snapshot(client, &key).await;
                return Err(status_error("commit a layer snapshot", e));
            }
        }
    }
    set_labels(
        client,
        &image.manifest.config.digest,
        [(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            image.top_chain_id.clone(),
        )]
        .into(),
    )
    .await
}

/// Applies one layer to a prepared snapshot and checks that it unpacked to its diff id.
async fn apply_layer(
    client: &Client,
    image: &str,
    layer: &Descriptor,
    diff_id: &str,
    mounts: Vec<Mount>,
) -> Result<(), RuntimeError> {
    let request = ApplyRequest {
        diff: Some(api_descriptor(layer)),
        mounts,
        payloads: HashMap::new(),
        sync_fs: false,
    };
    let applied = client
        .diff()
        .apply(request)
        .await
        .map_err(|e| {
            invalid(
                image,
                format!("cannot unpack layer {}: {}", layer.digest, e.message()),
            )
        })?
        .into_inner()
        .applied
        .unwrap_or_default();
    if applied.digest != diff_id {
        return Err(invalid(
            image,
            format!(
                "layer {} unpacked to {}, but the configuration says {diff_id}",
                layer.digest, applied.digest
            ),
        ));
    }
    Ok(())
}

/// Adds labels to a blob in the content store.
async fn set_labels(
    client: &Client,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let request = UpdateRequest {
        info: Some(Info {
            digest: digest.to_owned(),
            labels,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    client
        .content()
        .update(request)
        .await
        .map_err(|e| status_error("label content", e))?;
    Ok(())
}

/// Labels an image's blobs so that garbage collection keeps every blob the image needs: an
/// index refers to its manifests, a manifest to its configuration and layers.
async fn label_children(
    client: &Client,
    image: &str,
    target: &Descriptor,
) -> Result<(), RuntimeError> {
    let mut descriptor = target.clone();
    for _ in 0..MAX_NESTING {
        let bytes = read_content(client, image, &descriptor).await?;
        match parse_target(image, &descriptor, &bytes)? {
            Target::Index { manifests, chosen } => {
                let labels = manifests
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        (
                            format!("containerd.io/gc.ref.content.m.{i}"),
                            m.digest.clone(),
                        )
                    })
                    .collect();
                set_labels(client, &descriptor.digest, labels).await?;
                descriptor = chosen;
            }
            Target::Manifest(manifest) => {
                let mut labels: HashMap<String, String> = manifest
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        (
                            format!("containerd.io/gc.ref.content.l.{i}"),
                            l.digest.clone(),
                        )
                    })
                    .collect();
                labels.insert(
                    "containerd.io/gc.ref.content.config".into(),
                    manifest.config.digest.clone(),
                );
                return set_labels(client, &descriptor.digest, labels).await;
            }
        }
    }
    Err(nested_too_deeply(image))
}

/// What the archive reader thread sends.
enum ArchiveItem {
    /// The archive's `index.json`.
    Index(Vec<u8>),
    /// A blob begins.
    BlobStart { digest: String, size: u64 },
    /// The next bytes of the current blob.
    BlobData(Vec<u8>),
    /// The current blob is complete.
    BlobEnd,
    /// The archive is not an OCI image layout in a tar.
    Invalid(String),
}

/// Reads an OCI image archive, sending its index and blobs in the order they appear.
fn read_archive(path: &Path, items: mpsc::Sender<ArchiveItem>) {
    let fail = |detail: String| {
        let _ = items.blocking_send(ArchiveItem::Invalid(detail));
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return fail(format!("cannot open: {e}")),
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return fail(format!("not a tar archive: {e}")),
    };
    let mut saw_index = false;
    let mut saw_docker_manifest = false;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return fail(format!("not a valid tar archive: {e}")),
        };
        let name = match entry.path() {
            Ok(path) => path.to_string_lossy().trim_start_matches("./").to_owned(),
            Err(e) => return fail(format!("bad entry name: {e}")),
        };
        if name == "index.json" {
            if entry.size() > MAX_MANIFEST {
                return fail(format!("index.json is larger than {MAX_MANIFEST} bytes"));
            }
            let mut bytes = Vec::new();
            if let Err(e) = entry.read_to_end(&mut bytes) {
                return fail(format!("cannot read index.json: {e}"));
            }
            saw_index = true;
            if items.blocking_send(ArchiveItem::Index(bytes)).is_err() {
                return;
            }
        } else if name == "manifest.json" {
            saw_docker_manifest = true;
        } else if let Some(encoded) = name.strip_prefix("blobs/sha256/")
            && entry.header().entry_type().is_file()
        {
            if encoded.len() != 64 || !encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
                return fail(format!("{name} is not named by a sha256 digest"));
            }
            let start = ArchiveItem::BlobStart {
                digest: format!("sha256:{}", encoded.to_ascii_lowercase()),
                size: entry.size(),
            };
            if items.blocking_send(start).is_err() {
                return;
            }
            loop {
                let mut chunk = vec![0; CHUNK];
                let n = match entry.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return fail(format!("cannot read {name}: {e}")),
                };
                chunk.truncate(n);
                if items.blocking_send(ArchiveItem::BlobData(chunk)).is_err() {
                    return;
                }
            }
            if items.blocking_send(ArchiveItem::BlobEnd).is_err() {
                return;
            }
        }
    }
    if !saw_index {
        fail(if saw_docker_manifest {
            "a `docker save` archive (manifest.json) is not supported yet: save it as an OCI \
             image layout (e.g. `docker buildx build --output type=oci`)"
                .into()
        } else {
            "no index.json: not an OCI image layout".into()
        });
    }
}

/// One blob being written into the content store, in lockstep with containerd's answers.
/// Small writes are gathered into chunks of [`CHUNK`] bytes; the bytes are checked against the
/// blob's size as they come and against its digest before the commit (containerd checks both
/// again when it commits).
pub(crate) struct BlobWriter {
    requests: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    reference: String,
    /// The image the blob belongs to, for errors.
    image: String,
    digest: String,
    size: u64,
    /// How many bytes containerd has been sent.
    offset: u64,
    /// Bytes received but not yet sent.
    pending: Vec<u8>,
    /// The digest of every byte received.
    hasher: Sha256,
    received: u64,
}

impl BlobWriter {
    /// Starts writing a blob (of `image`, for errors); `None` if the content store already has
    /// it.
    pub(crate) async fn start(
        client: &Client,
        image: &str,
        digest: &str,
        size: u64,
    ) -> Result<Option<BlobWriter>, RuntimeError> {
        // A blob another import or pull wrote may be held only by that one's lease: if it
        // fails and its lease goes, the blob would be collected before this image refers to
        // it. Holding it first makes "it exists" stay true.
        client.hold(Held::Content(digest)).await?;
        match client
            .content()
            .info(InfoRequest {
                digest: digest.to_owned(),
            })
            .await
        {
            Ok(_) => return Ok(None),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(status_error("look up content", e)),
        }
        let reference = format!("wharf-ingest-{digest}-{}", unique_suffix());
        let (requests, receiver) = mpsc::channel(1);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: i64::try_from(size).unwrap_or(i64::MAX),
            expected: digest.to_owned(),
            ..Default::default()
        };
        // containerd answers (and sends response headers) only after the first request, so it
        // must be queued before the call.
        let _ = requests.send(stat).await;
        let responses = match client.content().write(ReceiverStream::new(receiver)).await {
            Ok(response) => response.into_inner(),
            Err(e) if is_already_exists(&e) => return Ok(None),
            Err(e) => return Err(status_error("write content", e)),
        };
        let mut writer = BlobWriter {
            requests,
            responses,
            reference,
            image: image.to_owned(),
            digest: digest.to_owned(),
            size,
            offset: 0,
            pending: Vec::new(),
            hasher: Sha256::new(),
            received: 0,
        };
        match writer.answer().await {
            Ok(_) => Ok(Some(writer)),
            Err(e) if is_already_exists(&e) => Ok(None),
            Err(e) => Err(status_error("write content", e)),
        }
    }

    async fn answer(&mut self) -> Result<WriteContentResponse, Status> {
        self.responses
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the content store closed the write stream"))
    }

    async fn send(&mut self, request: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        if self.requests.send(request).await.is_err() {
            // The stream ended: containerd's reason is in the response stream.
            return Err(match self.responses.message().await {
                Err(status) => status,
                Ok(_) => Status::unavailable("the write stream closed"),
            });
        }
        self.answer().await
    }

    fn damaged(&self, detail: impl std::fmt::Display) -> RuntimeError {
        invalid(
            &self.image,
            format!("blob {} is damaged: {detail}", self.digest),
        )
    }

    /// Adds the next bytes of the blob, sending them on once a chunk is full. More bytes than
    /// the blob's size are refused at once.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), RuntimeError> {
        self.received += data.len() as u64;
        if self.received > self.size {
            return Err(self.damaged(format!("it is larger than its {} bytes", self.size)));
        }
        self.hasher.update(data);
        self.pending.extend_from_slice(data);
        if self.pending.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.pending);
        let len = data.len() as u64;
        let request = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: i64::try_from(self.offset).unwrap_or(i64::MAX),
            data,
            ..Default::default()
        };
        self.send(request)
            .await
            .map_err(|e| status_error("write content", e))?;
        self.offset += len;
        Ok(())
    }

    /// Gives up the blob, dropping what was written of it.
    pub(crate) async fn abort(self, client: &Client) {
        let BlobWriter {
            requests,
            reference,
            ..
        } = self;
        // Closing the stream first releases containerd's lock on the reference.
        drop(requests);
        let request = AbortRequest { r#ref: reference };
        if let Err(e) = client.content().abort(request).await
            && !is_not_found(&e)
        {
            tracing::warn!(error = %e, "cannot abort an unfinished content write");
        }
    }

    /// Checks the blob's size and digest, and commits it; containerd checks both again.
    pub(crate) async fn commit(&mut self) -> Result<(), RuntimeError> {
        if self.received != self.size {
            return Err(self.damaged(format!("it has {} bytes, not {}", self.received, self.size)));
        }
        let actual = format!(
            "sha256:{}",
            hex(&std::mem::take(&mut self.hasher).finalize())
        );
        if actual != self.digest {
            return Err(self.damaged(format!("its bytes have digest {actual}")));
        }
        self.flush().await?;
        let request = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            total: i64::try_from(self.size).unwrap_or(i64::MAX),
            expected: self.digest.clone(),
            offset: i64::try_from(self.offset).unwrap_or(i64::MAX),
            ..Default::default()
        };
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) if e.code() == Code::FailedPrecondition => Err(self.damaged(format!(
                "its bytes do not match its digest or size ({})",
                e.message()
            ))),
            Err(e) => Err(status_error("commit content", e)),
        }
    }
}

/// Writes one blob into the content store from a stream of its bytes, unless the store has it
/// already: `open` is called only for a missing blob. The bytes are checked against `digest`
/// and `size` as [`BlobWriter`] does; a failed write leaves no partial blob behind. Returns
/// whether the blob was written. `client` should hold a lease.
pub(crate) async fn write_blob<S, Open, Opened>(
    client: &Client,
    image: &str,
    digest: &str,
    size: u64,
    open: Open,
) -> Result<bool, RuntimeError>
where
    Open: FnOnce() -> Opened,
    Opened: Future<Output = Result<S, RuntimeError>>,
    S: Stream<Item = Result<Bytes, RuntimeError>> + Unpin,
{
    if !digest.starts_with("sha256:") {
        return Err(invalid(
            image,
            format!("blob {digest}: only sha256 digests are supported"),
        ));
    }
    let Some(mut writer) = BlobWriter::start(client, image, digest, size).await? else {
        return Ok(false);
    };
    let written = async {
        let mut bytes = open().await?;
        while let Some(data) = bytes.next().await {
            writer.write(&data?).await?;
        }
        writer.commit().await
    }
    .await;
    match written {
        Ok(()) => Ok(true),
        Err(e) => {
            writer.abort(client).await;
            Err(e)
        }
    }
}

/// Makes an image of blobs already in the content store: labels them so that garbage
/// collection keeps what the image needs, then creates the image record `name` (or points an
/// existing one at `target`). `client` should hold the lease the blobs were written in, so
/// that nothing is collected before the record refers to it.
pub(crate) async fn register_image(
    client: &Client,
    name: &str,
    target: &Descriptor,
) -> Result<(), RuntimeError> {
    label_children(client, name, target).await?;
    create_image(client, name, target).await
}

/// Imports an OCI image archive: its blobs into the content store, an image record for every
/// manifest the index names (`io.containerd.image.name`), each unpacked. Returns the names.
pub(crate) async fn import_archive(
    client: &Client,
    path: &Path,
) -> Result<Vec<String>, RuntimeError> {
    let archive = path.display().to_string();
    client
        .with_lease("import", |client| async move {
            let index = write_blobs(&client, path, &archive).await?;
            let index: Index = serde_json::from_slice(&index)
                .map_err(|e| invalid(&archive, format!("index.json: {e}")))?;
            if let Some(media_type) = &index.media_type
                && !INDEX_TYPES.contains(&media_type.as_str())
            {
                return Err(invalid(
                    &archive,
                    format!("index.json has media type {media_type:?}"),
                ));
            }
            let mut names = Vec::new();
            for target in &index.manifests {
                let Some(name) = image_name(target) else {
                    continue;
                };
                register_image(&client, &name, target).await?;
                let image = resolve(&client, &name).await?;
                unpack(&client, &image).await?;
                names.push(name);
            }
            if names.is_empty() {
                return Err(invalid(
                    &archive,
                    "the index names no image (no io.containerd.image.name annotation)",
                ));
            }
            Ok(names)
        })
        .await
}

/// The name an index entry gives its image: containerd's annotation, or an OCI reference name
/// that is a full reference.
fn image_name(descriptor: &Descriptor) -> Option<String> {
    if let Some(name) = descriptor.annotations.get("io.containerd.image.name") {
        return Some(name.clone());
    }
    descriptor
        .annotations
        .get("org.opencontainers.image.ref.name")
        .filter(|name| name.contains(':') || name.contains('/'))
        .cloned()
}

/// Writes every blob of the archive into the content store; returns `index.json`.
async fn write_blobs(client: &Client, path: &Path, archive: &str) -> Result<Vec<u8>, RuntimeError> {
    let (sender, mut items) = mpsc::channel(4);
    let owned_path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_archive(&owned_path, sender));
    let mut index = None;
    let mut writer: Option<BlobWriter> = None;
    let written = async {
        // A blob the store already has is skipped: its bytes are read and dropped.
        let mut skipping = false;
        while let Some(item) = items.recv().await {
            match item {
                ArchiveItem::Index(bytes) => index = Some(bytes),
                ArchiveItem::Invalid(detail) => return Err(invalid(archive, detail)),
                ArchiveItem::BlobStart { digest, size } => {
                    writer = BlobWriter::start(client, archive, &digest, size).await?;
                    skipping = writer.is_none();
                }
                ArchiveItem::BlobData(data) => {
                    if let Some(writer) = writer.as_mut() {
                        writer.write(&data).await?;
                    } else if !skipping {
                        return Err(invalid(archive, "blob data outside a blob"));
                    }
                }
                ArchiveItem::BlobEnd => {
                    if let Some(writer) = writer.as_mut() {
                        writer.commit().await?;
                    }
                    writer = None;
                    skipping = false;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        // A half-written blob would keep its ingest (and its lock) in the content store.
        if let Some(writer) = writer.take() {
            writer.abort(client).await;
        }
        drop(items);
        let _ = reader.await;
        return Err(e);
    }
    reader
        .await
        .map_err(|e| RuntimeError::Other(format!("the archive reader failed: {e}")))?;
    index.ok_or_else(|| invalid(archive, "no index.json: not an OCI image layout"))
}

/// Creates the image record, or points an existing one at the new target.
async fn create_image(
    client: &Client,
    name: &str,
    target: &Descriptor,
) -> Result<(), RuntimeError> {
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let image = Image {
        name: name.to_owned(),
        labels: HashMap::new(),
        target: Some(api_descriptor(target)),
        created_at: Some(now),
        updated_at: Some(now),
    };
    let created = client
        .images()
        .create(CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => {
            client
                .images()
                .update(UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                })
                .await
                .map_err(|e| status_error("update an image", e))?;
            Ok(())
        }
        Err(e) => Err(status_error("create an image", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs containerd's garbage collector now: deleting a lease with `sync` waits for it.
    async fn collect_garbage(client: &Client) {
        use containerd_client::services::v1::{CreateRequest, DeleteRequest};
        let id = format!("wharf-test-gc-{}", unique_suffix());
        client
            .leases()
            .create(CreateRequest {
                id: id.clone(),
                labels: HashMap::new(),
            })
            .await
            .unwrap();
        client
            .leases()
            .delete(DeleteRequest { id, sync: true })
            .await
            .unwrap();
    }

    /// Two imports of images that share blobs and layers run at once: what the first wrote,
    /// the second skips. If the first then fails, its lease goes and the garbage collector
    /// runs before the second image refers to them: they must still be there for the second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blobs_and_snapshots_another_lease_wrote_stay_while_this_lease_relies_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let containerd = crate::ManagedContainerd::start(
            Path::new("containerd"),
            &dir.path().join("containerd"),
        )
        .await
        .unwrap();
        let client = Client::connect(containerd.socket(), "wharf-test")
            .await
            .unwrap();
        let blob = Bytes::from_static(b"a layer two images share");
        let digest = format!("sha256:{}", hex(&Sha256::digest(&blob)));
        let size = blob.len() as u64;
        let (client, digest, blob) = (&client, digest.as_str(), &blob);

        let result = client
            .with_lease("second", |second| async move {
                let second = &second;
                client
                    .with_lease("first", |first| async move {
                        let written = write_blob(&first, "first", digest, size, || async {
                            Ok(tokio_stream::iter([Ok(blob.clone())]))
                        })
                        .await?;
                        assert!(written);
                        let active = "wharf-test-active";
                        first
                            .snapshots()
                            .prepare(PrepareSnapshotRequest {
                                snapshotter: SNAPSHOTTER.into(),
                                key: active.into(),
                                parent: String::new(),
                                labels: HashMap::new(),
                            })
                            .await
                            .unwrap();
                        first
                            .snapshots()
                            .commit(CommitSnapshotRequest {
                                snapshotter: SNAPSHOTTER.into(),
                                name: "wharf-test-layer".into(),
                                key: active.into(),
                                labels: HashMap::new(),
                            })
                            .await
                            .unwrap();
                        // The second import finds both and skips them.
                        let writer = BlobWriter::start(second, "second", digest, size).await?;
                        assert!(writer.is_none(), "the blob is there already");
                        assert!(have_snapshot(second, "wharf-test-layer").await?);
                        Ok(())
                    })
                    .await?;
                // The first import is gone with its lease.
                collect_garbage(client).await;
                let read = read_blob(second, digest).await;
                assert_eq!(read.map_err(|e| e.code()), Ok(blob.to_vec()));
                assert!(snapshot_exists(second, "wharf-test-layer").await?);
                Ok(())
            })
            .await;
        result.unwrap();
        // Once the second lease goes too, nothing refers to them any more.
        collect_garbage(client).await;
        let read = read_blob(client, digest).await;
        assert_eq!(read.map_err(|e| e.code()), Err(Code::NotFound));
        assert!(!snapshot_exists(client, "wharf-test-layer").await.unwrap());
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let diff_ids = vec!["sha256:aaa".to_owned(), "sha256:bbb".to_owned()];
        let chain = chain_ids(&diff_ids);
        assert_eq!(chain[0], "sha256:aaa");
        let expected = Sha256::digest(b"sha256:aaa sha256:bbb");
        assert_eq!(chain[1], format!("sha256:{}", hex(&expected)));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn a_reference_is_looked_up_under_its_usual_spellings() {
        assert_eq!(
            candidate_names("hello-container"),
            [
                "hello-container",
                "hello-container:latest",
                "docker.io/library/hello-container:latest"
            ]
        );
        assert_eq!(
            candidate_names("hello-container:1"),
            ["hello-container:1", "docker.io/library/hello-container:1"]
        );
        assert_eq!(
            candidate_names("team/app:2"),
            ["team/app:2", "docker.io/team/app:2"]
        );
        assert_eq!(
            candidate_names("localhost:5000/app"),
            ["localhost:5000/app", "localhost:5000/app:latest"]
        );
        assert_eq!(
            candidate_names("registry.example/app@sha256:abc"),
            ["registry.example/app@sha256:abc"]
        );
    }

    #[test]
    fn the_manifest_for_this_machine_is_chosen_from_an_index() {
        let manifest = |arch: &str| Descriptor {
            media_type: MANIFEST_TYPES[0].into(),
            digest: format!("sha256:{arch}"),
            size: 1,
            annotations: HashMap::new(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
            }),
        };
        let index = [manifest("s390x"), manifest(this_architecture())];
        assert_eq!(
            choose_manifest(&index).map(|d| d.digest.clone()),
            Some(format!("sha256:{}", this_architecture()))
        );
        assert_eq!(choose_manifest(&index[..1]), None);
        let mut plain = manifest("any");
        plain.platform = None;
        assert_eq!(choose_manifest(std::slice::from_ref(&plain)), Some(&plain));
    }

    #[test]
    fn an_image_is_named_by_containerds_annotation_or_a_full_reference() {
        let with = |key: &str, value: &str| Descriptor {
            media_type: String::new(),
            digest: String::new(),
            size: 0,
            annotations: [(key.to_owned(), value.to_owned())].into(),
            platform: None,
        };
        assert_eq!(
            image_name(&with("io.containerd.image.name", "app:1")).as_deref(),
            Some("app:1")
        );
        assert_eq!(
            image_name(&with("org.opencontainers.image.ref.name", "app:1")).as_deref(),
            Some("app:1")
        );
        assert_eq!(
            image_name(&with("org.opencontainers.image.ref.name", "latest")),
            None
        );
    }
}
