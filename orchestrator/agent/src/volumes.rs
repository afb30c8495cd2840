//! ConfigMap, Secret and emptyDir volumes of a pod, under `POD_DIR/volumes/NAME`, as the
//! kubelet lays them out.
//!
//! - **Secrets never touch the node's disk**: a secret volume's directory is a tmpfs mounted
//!   before anything is written into it (`nosuid,nodev,noexec`, mode 0755), unmounted when the
//!   pod is removed and, for pods that went away while the agent was down, at agent start. If
//!   the tmpfs cannot be mounted (an agent not running as root), the volume fails to set up and
//!   the pod waits: a secret is never written to disk instead. ConfigMap volumes stay on disk,
//!   like the kubelet's (they hold no secrets, and so work without root too).
//! - **Atomic updates** (the kubelet's `AtomicWriter`): the files of a ConfigMap or Secret go
//!   into a new timestamped directory `..2026_11_28_05_03_01.000000001_7`, a `..data` symlink is
//!   switched to it by renaming a temporary symlink over it, and every top-level entry is a
//!   symlink `KEY -> ..data/KEY`; the previous timestamped directory is then removed. A reader
//!   sees the old files or the new ones, never a mix. All links are relative and stay inside
//!   the volume directory, so they resolve the same in a container's bind mount and in a Wasm
//!   guest's preopened directory.
//! - **Updates reach running pods**: the pod worker calls [`PodVolumes::refresh`] every
//!   [`REFRESH_INTERVAL`]; it re-reads every ConfigMap and Secret the pod's volumes use and
//!   rewrites a volume only when its files changed. Polling with `get` (rather than one watch
//!   per object) keeps the agent stateless across API reconnects and works the same over
//!   `InProcessApi` and `HttpApi`; the cost is one `get` per volume per interval, and only pods
//!   with such volumes poll.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::Value;
use wharf_apiserver::client::ClusterApi;
use wharf_apiserver::resources;

/// How often a running pod's ConfigMap and Secret volumes are compared with the API.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The largest a secret volume's tmpfs may grow: two versions of the largest object the API
/// accepts (1 MiB) fit during a swap. Pages are only used for what is written.
const TMPFS_SIZE: &str = "8m";

/// The symlink to the current timestamped directory.
const DATA_DIR: &str = "..data";
/// The symlink renamed over [`DATA_DIR`].
const DATA_DIR_TMP: &str = "..data_tmp";

/// Kubernetes' default file mode of ConfigMap and Secret volumes (0644).
const DEFAULT_MODE: u32 = 0o644;

/// One file of a ConfigMap or Secret volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path inside the volume (a key, or an item's `path`).
    pub path: String,
    /// The file's bytes.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Why a volume could not be set up. The pod stays `ContainerCreating` and a `FailedMount`
/// Event carries [`MountError::event_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountError {
    /// The volume's name.
    pub volume: String,
    /// What went wrong, e.g. `secret "db" not found`.
    pub message: String,
}

impl MountError {
    /// The kubelet's `FailedMount` message:
    /// `MountVolume.SetUp failed for volume "VOL" : secret "NAME" not found`.
    pub fn event_message(&self) -> String {
        format!(
            "MountVolume.SetUp failed for volume {:?} : {}",
            self.volume, self.message
        )
    }
}

/// The source of a ConfigMap or Secret volume.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    /// `ConfigMap` or `Secret`.
    kind: &'static str,
    name: String,
    optional: bool,
    items: Option<Vec<Value>>,
    default_mode: u32,
}

impl Source {
    fn of(volume: &Value) -> Option<Source> {
        let (kind, source) = if volume["secret"].is_object() {
            ("Secret", &volume["secret"])
        } else if volume["configMap"].is_object() {
            ("ConfigMap", &volume["configMap"])
        } else {
            return None;
        };
        Some(Source {
            kind,
            name: source["secretName"]
                .as_str()
                .or_else(|| source["name"].as_str())
                .unwrap_or("")
                .to_owned(),
            optional: source["optional"] == true,
            items: source["items"].as_array().cloned(),
            default_mode: source["defaultMode"]
                .as_u64()
                .map_or(DEFAULT_MODE, |m| m as u32 & 0o777),
        })
    }
}

/// The files of a volume: every key, or the `items` mapping (key → path, with an optional
/// mode), as Kubernetes does. A missing item key is an error unless the source is optional.
pub fn payload(
    kind: &str,
    name: &str,
    data: &[(String, Vec<u8>)],
    items: Option<&[Value]>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<FileEntry>, String> {
    let mut files = Vec::new();
    match items {
        None => {
            for (key, bytes) in data {
                files.push(FileEntry {
                    path: key.clone(),
                    data: bytes.clone(),
                    mode: default_mode,
                });
            }
        }
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or("");
                let path = item["path"].as_str().unwrap_or(key);
                match data.iter().find(|(k, _)| k == key) {
                    Some((_, bytes)) => files.push(FileEntry {
                        path: path.to_owned(),
                        data: bytes.clone(),
                        mode: item["mode"]
                            .as_u64()
                            .map_or(default_mode, |m| m as u32 & 0o777),
                    }),
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "{} references non-existent {} key: {key}",
                            kind.to_lowercase(),
                            if kind == "Secret" { "secret" } else { "config" },
                        ));
                    }
                }
            }
        }
    }
    for file in &files {
        let path = Path::new(&file.path);
        let safe = !file.path.is_empty()
            && !file.path.starts_with("..")
            && path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(format!("invalid path {:?} in {kind} {name:?}", file.path));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Reads a ConfigMap's (`data` and `binaryData`) or Secret's data as bytes; `None` if it does
/// not exist.
async fn source_data(
    api: &dyn ClusterApi,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
    let plural = if kind == "Secret" {
        "secrets"
    } else {
        "configmaps"
    };
    let resource = resources::find("", "v1", plural).expect("served");
    let object = match api.get(resource, Some(namespace), name).await {
        Ok(object) => object,
        Err(wharf_apiserver::ApiError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(format!("cannot read {} {name:?}: {e}", kind.to_lowercase())),
    };
    let decode = |key: &str, text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| {
                format!(
                    "{} {name:?} key {key:?} is not valid base64",
                    kind.to_lowercase()
                )
            })
    };
    let mut pairs = Vec::new();
    for (key, value) in object["data"].as_object().into_iter().flatten() {
        let text = value.as_str().unwrap_or_default();
        let bytes = if kind == "Secret" {
            decode(key, text)?
        } else {
            text.as_bytes().to_vec()
        };
        pairs.push((key.clone(), bytes));
    }
    for (key, value) in object["binaryData"].as_object().into_iter().flatten() {
        pairs.push((
            key.clone(),
            decode(key, value.as_str().unwrap_or_default())?,
        ));
    }
    Ok(Some(pairs))
}

/// The name of a new timestamped directory, like the kubelet's `..2006_01_02_15_04_05.N`.
fn timestamped_name(now: SystemTime) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stamp = wharf_runtime::logs::format_timestamp(now);
    let stamp = stamp.trim_end_matches('Z').replace(['-', 'T', ':'], "_");
    format!("..{stamp}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The files the volume at `dir` shows now (through `..data`), to compare with a new payload.
pub fn current_payload(dir: &Path) -> Option<Vec<FileEntry>> {
    let data = dir.join(DATA_DIR);
    std::fs::symlink_metadata(&data).ok()?;
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(data.join(&relative)).ok()?.flatten() {
            let path = relative.join(entry.file_name());
            let metadata = entry.metadata().ok()?;
            if metadata.is_dir() {
                pending.push(path);
            } else {
                files.push(FileEntry {
                    path: path.to_string_lossy().into_owned(),
                    data: std::fs::read(entry.path()).ok()?,
                    mode: metadata.permissions().mode() & 0o777,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Some(files)
}

/// Writes `files` into the volume directory `dir` atomically (see the module docs): a new
/// timestamped directory, `..data` swapped to it, `KEY -> ..data/KEY` links for the top-level
/// entries, stale links and the previous directory removed. Returns whether anything changed
/// (an identical payload is left alone).
pub fn write_atomically(dir: &Path, files: &[FileEntry]) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    if current_payload(dir).as_deref() == Some(files) {
        return Ok(false);
    }
    let previous = std::fs::read_link(dir.join(DATA_DIR)).ok();
    let name = timestamped_name(SystemTime::now());
    let new_dir = dir.join(&name);
    std::fs::create_dir(&new_dir)?;
    std::fs::set_permissions(&new_dir, std::fs::Permissions::from_mode(0o755))?;
    for file in files {
        let path = new_dir.join(&file.path);
        if let Some(parent) = path.parent()
            && parent != new_dir
        {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    }
    // The switch: a new symlink renamed over the old one is atomic.
    let tmp = dir.join(DATA_DIR_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA_DIR))?;
    // The user-visible entries: one link per top-level name, the stale ones removed.
    let mut top: Vec<&str> = files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .collect();
    top.sort_unstable();
    top.dedup();
    for entry in top.iter().copied() {
        let link = dir.join(entry);
        let target = Path::new(DATA_DIR).join(entry);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        // Anything else by that name (a plain file of an older layout) gives way to the link.
        remove_entry(&link);
        std::os::unix::fs::symlink(&target, &link)?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !file_name.starts_with("..") && !top.contains(&file_name.as_ref()) {
            remove_entry(&entry.path());
        }
    }
    if let Some(previous) = previous
        && previous != Path::new(&name)
    {
        let _ = std::fs::remove_dir_all(dir.join(previous));
    }
    Ok(true)
}

/// Removes a file, symlink or directory tree, if there is one.
fn remove_entry(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Whether `dir` is a mount point (it is on another device than its parent).
fn is_mount_point(dir: &Path) -> bool {
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Mounts a memory-backed tmpfs at `dir` (created if needed) unless one is there already (a
/// pod taken over after an agent restart keeps its volumes).
pub fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    use rustix::mount::{MountFlags, mount};
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = std::ffi::CString::new(format!("mode=0755,size={TMPFS_SIZE}"))
        .expect("no NUL in the options");
    mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        options.as_c_str(),
    )
    .map_err(|e| {
        let hint = if e == rustix::io::Errno::PERM {
            " (secret volumes live in memory, which needs an agent running as root; they are \
             never written to disk instead)"
        } else {
            ""
        };
        format!("cannot mount a tmpfs at {}: {e}{hint}", dir.display())
    })
}

/// Unmounts every tmpfs under `POD_DIR/volumes` (lazily, so a mount still in use goes away
/// when released) and removes the volumes. Safe to call on a pod with no volumes.
pub fn remove_pod_volumes(pod_dir: &Path) {
    let root = pod_dir.join("volumes");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if is_mount_point(&dir)
            && let Err(error) = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!(dir = %dir.display(), %error, "cannot unmount a volume");
        }
    }
    // Never descend into something still mounted: remove only what is not a mount point.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            if !is_mount_point(&entry.path()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(&root);
}

/// At agent start: removes the volumes (unmounting their tmpfs) of pod directories under
/// `DATA_DIR/pods` whose pod uid is not in `live`. Returns how many pods it cleaned.
pub fn remove_stale_volumes(data_dir: &Path, live: &std::collections::HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("pods")) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        // Pod directories are NAMESPACE_NAME_UID; names and uids have no `_`.
        let Some((_, uid)) = file_name.to_str().and_then(|n| n.rsplit_once('_')) else {
            continue;
        };
        if live.contains(uid) || !entry.path().join("volumes").exists() {
            continue;
        }
        remove_pod_volumes(&entry.path());
        removed += 1;
    }
    removed
}

/// [`remove_stale_volumes`] for the pods `agent` is not running (called at agent start and
/// whenever it lists its pods again).
pub fn remove_stale(agent: &crate::Agent) {
    let live: std::collections::HashSet<String> = agent
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    let removed = remove_stale_volumes(&agent.config.data_dir, &live);
    if removed > 0 {
        tracing::info!(removed, "removed the volumes of pods that are gone");
    }
}

/// The ConfigMap, Secret and emptyDir volumes of one pod: set up when a container needs them,
/// refreshed while the pod runs, removed with the pod.
#[derive(Debug)]
pub struct PodVolumes {
    root: PathBuf,
    namespace: String,
    /// ConfigMap and Secret volumes set up so far, by volume name, with their volume spec.
    sources: Mutex<HashMap<String, Source>>,
    /// One writer at a time: containers of the pod set up shared volumes concurrently.
    writing: tokio::sync::Mutex<()>,
}

impl PodVolumes {
    /// The volumes of the pod whose directory is `pod_dir`.
    pub fn new(pod_dir: &Path, namespace: &str) -> PodVolumes {
        PodVolumes {
            root: pod_dir.join("volumes"),
            namespace: namespace.to_owned(),
            sources: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The directory of volume `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Sets up `volume` (a pod's `spec.volumes` entry) if it is not yet, else brings its files
    /// up to date; returns its directory.
    pub async fn set_up(
        &self,
        api: &dyn ClusterApi,
        volume: &Value,
    ) -> Result<PathBuf, MountError> {
        let name = volume["name"].as_str().unwrap_or("").to_owned();
        let failed = |message: String| MountError {
            volume: name.clone(),
            message,
        };
        let dir = self.dir(&name);
        let _writing = self.writing.lock().await;
        if volume["emptyDir"].is_object() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
            return Ok(dir);
        }
        let Some(source) = Source::of(volume) else {
            return Err(failed(
                "only configMap, secret and emptyDir volumes are supported".into(),
            ));
        };
        if source.kind == "Secret" {
            mount_tmpfs(&dir).map_err(failed)?;
        }
        self.write(api, &dir, &source).await.map_err(failed)?;
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, source);
        Ok(dir)
    }

    async fn write(
        &self,
        api: &dyn ClusterApi,
        dir: &Path,
        source: &Source,
    ) -> Result<bool, String> {
        let data = match source_data(api, source.kind, &self.namespace, &source.name).await? {
            Some(data) => data,
            None if source.optional => Vec::new(),
            None => {
                return Err(format!(
                    "{} {:?} not found",
                    source.kind.to_lowercase(),
                    source.name
                ));
            }
        };
        let files = payload(
            source.kind,
            &source.name,
            &data,
            source.items.as_deref(),
            source.default_mode,
            source.optional,
        )?;
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &files))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot write the files: {e}"))
    }

    /// Whether the pod has ConfigMap or Secret volumes set up (that [`PodVolumes::refresh`]
    /// keeps up to date).
    pub fn any(&self) -> bool {
        !self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Rewrites the ConfigMap and Secret volumes whose source changed. A source that went
    /// away or cannot be read keeps its last files, as with the kubelet.
    pub async fn refresh(&self, api: &dyn ClusterApi) {
        let sources: Vec<(String, Source)> = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, source)| (name.clone(), source.clone()))
            .collect();
        let _writing = self.writing.lock().await;
        for (name, source) in sources {
            match self.write(api, &self.dir(&name), &source).await {
                Ok(true) => tracing::info!(volume = %name, "volume updated"),
                Ok(false) => {}
                Err(error) => tracing::debug!(volume = %name, %error, "volume not refreshed"),
            }
        }
    }

    /// Unmounts and removes every volume of the pod.
    pub fn remove(&self) {
        if let Some(pod_dir) = self.root.parent() {
            remove_pod_volumes(pod_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(path: &str, data: &str, mode: u32) -> FileEntry {
        FileEntry {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_linked_through_the_data_symlink() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("vol");
        let changed = write_atomically(
            &dir,
            &[file("password", "one", 0o644), file("user", "u", 0o600)],
        )
        .unwrap();
        assert!(changed);
        let entries = names(&dir);
        assert_eq!(entries.len(), 4, "{entries:?}");
        assert!(entries.iter().any(|n| n.starts_with("..20")), "{entries:?}");
        assert!(entries.contains(&"..data".to_owned()));
        assert_eq!(
            std::fs::read_link(dir.join("password")).unwrap(),
            Path::new("..data/password")
        );
        let target = std::fs::read_link(dir.join("..data")).unwrap();
        assert!(target.is_relative() && target.to_string_lossy().starts_with("..20"));
        assert_eq!(
            std::fs::read_to_string(dir.join("password")).unwrap(),
            "one"
        );
        let mode = std::fs::metadata(dir.join("user"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_update_swaps_the_data_link_and_removes_the_old_directory_and_keys() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("vol");
        write_atomically(&dir, &[file("a", "1", 0o644), file("b", "2", 0o644)]).unwrap();
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        write_atomically(&dir, &[file("a", "changed", 0o644)]).unwrap();
        let second = std::fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists(), "the old directory is removed");
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert!(
            std::fs::symlink_metadata(dir.join("b")).is_err(),
            "a key that went away loses its link"
        );
        assert_eq!(names(&dir).len(), 3, "{:?}", names(&dir));
    }

    #[test]
    fn plain_files_of_an_older_layout_give_way_to_links() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("vol");
        std::fs::create_dir_all(dir.join("old-dir")).unwrap();
        std::fs::write(dir.join("a"), "stale").unwrap();
        std::fs::write(dir.join("old-dir/x"), "stale").unwrap();
        write_atomically(&dir, &[file("a", "fresh", 0o644)]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "fresh");
        assert!(std::fs::read_link(dir.join("a")).is_ok());
        assert!(!dir.join("old-dir").exists());
    }

    #[test]
    fn an_identical_payload_is_not_rewritten() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("vol");
        let files = [file("a", "1", 0o644), file("sub/b", "2", 0o400)];
        assert!(write_atomically(&dir, &files).unwrap());
        let before = std::fs::read_link(dir.join("..data")).unwrap();
        assert!(!write_atomically(&dir, &files).unwrap());
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), before);
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
    }

    #[test]
    fn items_choose_keys_paths_and_modes() {
        let data = vec![
            ("user".to_owned(), b"admin".to_vec()),
            ("password".to_owned(), b"pw".to_vec()),
        ];
        let items = [
            json!({"key": "password", "path": "db/pass", "mode": 0o400}),
            json!({"key": "user", "path": "user.txt"}),
        ];
        let files = payload("Secret", "db", &data, Some(&items), 0o644, false).unwrap();
        assert_eq!(
            files,
            [
                file("db/pass", "pw", 0o400),
                file("user.txt", "admin", 0o644)
            ]
        );
        let missing = [json!({"key": "nope", "path": "x"})];
        assert_eq!(
            payload("Secret", "db", &data, Some(&missing), 0o644, false).unwrap_err(),
            "secret references non-existent secret key: nope"
        );
        assert!(
            payload("Secret", "db", &data, Some(&missing), 0o644, true)
                .unwrap()
                .is_empty()
        );
        let escaping = [json!({"key": "user", "path": "../etc/passwd"})];
        assert!(payload("Secret", "db", &data, Some(&escaping), 0o644, false).is_err());
    }

    #[test]
    fn a_failed_mount_reads_like_the_kubelets() {
        let error = MountError {
            volume: "creds".into(),
            message: "secret \"db\" not found".into(),
        };
        assert_eq!(
            error.event_message(),
            "MountVolume.SetUp failed for volume \"creds\" : secret \"db\" not found"
        );
    }

    #[test]
    fn a_tmpfs_holds_the_files_and_goes_with_the_pod() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("volumes/creds");
        if let Err(error) = mount_tmpfs(&dir) {
            // Not root: the error says why, and nothing is written.
            assert!(error.contains("cannot mount a tmpfs"), "{error}");
            return;
        }
        assert!(is_mount_point(&dir));
        // Mounting again (a pod taken over after a restart) keeps the one mount.
        mount_tmpfs(&dir).unwrap();
        write_atomically(&dir, &[file("password", "pw", 0o644)]).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let point = dir.canonicalize().unwrap().display().to_string();
        let ours: Vec<&str> = mounts
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(point.as_str()))
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(
            ours[0].starts_with("tmpfs ") && ours[0].contains("nosuid"),
            "{ours:?}"
        );
        remove_pod_volumes(temp.path());
        assert!(!temp.path().join("volumes").exists());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&point), "unmounted");
    }

    #[test]
    fn stale_pod_volumes_are_removed_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let pods = temp.path().join("pods");
        for uid in ["live-1", "gone-2"] {
            let dir = pods.join(format!("default_web_{uid}")).join("volumes/cm");
            write_atomically(&dir, &[file("k", "v", 0o644)]).unwrap();
        }
        let live = ["live-1".to_owned()].into_iter().collect();
        assert_eq!(remove_stale_volumes(temp.path(), &live), 1);
        assert!(pods.join("default_web_live-1/volumes/cm/k").exists());
        assert!(!pods.join("default_web_gone-2/volumes").exists());
    }
}
