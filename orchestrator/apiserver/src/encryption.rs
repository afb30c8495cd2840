//! Encryption at rest of Secrets and ConfigMaps, like Kubernetes' `EncryptionConfiguration`.
//!
//! [`EncryptedStore`] wraps any [`Store`]: values written under the Secret and ConfigMap key
//! prefixes are sealed with XChaCha20-Poly1305 under the keyring's current key, with a fresh
//! random 192-bit nonce per write and the object's store key as associated data (a ciphertext
//! copied to another key does not decrypt). Every read path — get, list, the previous value of
//! a write, and watch events — opens them again, so the registry, the watch handler, the
//! in-process client and the controllers (which all read through the registry's store) only
//! ever see JSON. Values written before encryption existed are plain JSON and are read as they
//! are; they are encrypted the next time they are written (or by `wharf secrets rotate-key`).
//!
//! A sealed value is a small self-describing envelope:
//! `wharf:enc:v1:` KEY_ID `:` NONCE (24 bytes) CIPHERTEXT-AND-TAG.
//!
//! The [`Keyring`] lives in `DATA_DIR/encryption.key` (mode 0600): several 32-byte keys by id
//! and the id of the one new writes use. Old keys stay until nothing is sealed with them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use wharf_store::{
    Event, KeyValue, ListResult, Revision, Store, StoreError, StoreStats, WatchStream, WriteOp,
    WriteResult,
};

/// The start of every sealed value.
pub const ENVELOPE_PREFIX: &[u8] = b"wharf:enc:v1:";

/// The name of the keyring file in the data dir.
pub const KEYRING_FILE: &str = "encryption.key";

/// Store key prefixes whose values are sealed: Secrets and ConfigMaps.
pub const ENCRYPTED_PREFIXES: &[&str] = &["/core/secrets/", "/core/configmaps/"];

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// Why a value could not be sealed or opened, or a keyring not loaded.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The value names a key that the keyring does not hold.
    #[error(
        "{key} is encrypted with key {key_id:?}, which is not in the keyring (is this the data dir's own encryption.key?)"
    )]
    UnknownKey {
        /// The store key of the value.
        key: String,
        /// The key id the value names.
        key_id: String,
    },
    /// Authentication failed: a different key with the same id, or the value was altered or
    /// moved from another store key.
    #[error(
        "cannot decrypt {key} with key {key_id:?}: wrong key, or the value was altered or moved from another key"
    )]
    Decrypt {
        /// The store key of the value.
        key: String,
        /// The key id the value names.
        key_id: String,
    },
    /// The envelope is cut short or malformed.
    #[error("the encrypted value of {0} is malformed")]
    Malformed(String),
    /// The keyring file is unreadable or invalid.
    #[error("keyring {path}: {message}")]
    Keyring {
        /// The keyring file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl From<EncryptionError> for StoreError {
    fn from(e: EncryptionError) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

/// Whether values under `key` are sealed.
pub fn is_encrypted_key(key: &str) -> bool {
    ENCRYPTED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The key id a stored value is sealed with, or `None` for a plain value.
pub fn sealed_key_id(value: &[u8]) -> Option<&str> {
    let rest = value.strip_prefix(ENVELOPE_PREFIX)?;
    let end = rest.iter().position(|b| *b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The keys values are sealed with: several by id, and the current one for new writes.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
    raw: BTreeMap<String, [u8; KEY_LEN]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// The keyring file's contents.
#[derive(Serialize, Deserialize)]
struct KeyringFile {
    current: String,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    id: String,
    /// The 32-byte key, base64.
    secret: String,
}

impl Keyring {
    /// A keyring with one new random key, `k1`.
    pub fn generate() -> Keyring {
        let mut keyring = Keyring {
            current: String::new(),
            keys: BTreeMap::new(),
            raw: BTreeMap::new(),
        };
        keyring.add_key();
        keyring
    }

    /// Adds a new random key and makes it current; returns its id.
    pub fn add_key(&mut self) -> String {
        let next = self
            .raw
            .keys()
            .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut raw = [0u8; KEY_LEN];
        raw.copy_from_slice(&key);
        self.insert(id.clone(), raw);
        self.current = id.clone();
        id
    }

    fn insert(&mut self, id: String, raw: [u8; KEY_LEN]) {
        self.keys
            .insert(id.clone(), XChaCha20Poly1305::new((&raw).into()));
        self.raw.insert(id, raw);
    }

    /// The id of the key new writes use.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// The ids of all keys held.
    pub fn key_ids(&self) -> Vec<String> {
        self.raw.keys().cloned().collect()
    }

    /// Drops every key not in `keep` (the current key is always kept).
    pub fn retain(&mut self, keep: &std::collections::BTreeSet<String>) {
        let current = self.current.clone();
        self.raw.retain(|id, _| *id == current || keep.contains(id));
        self.keys
            .retain(|id, _| *id == current || keep.contains(id));
    }

    /// Loads the keyring at `path`, or creates it (with one new key, mode 0600) if there is
    /// none. Returns the keyring and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), EncryptionError> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((Keyring::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = Keyring::generate();
                keyring.save(path)?;
                Ok((keyring, true))
            }
            Err(e) => Err(keyring_error(path, e.to_string())),
        }
    }

    /// Loads the keyring at `path`.
    pub fn load(path: &Path) -> Result<Keyring, EncryptionError> {
        let text = std::fs::read(path).map_err(|e| keyring_error(path, e.to_string()))?;
        let file: KeyringFile = serde_json::from_slice(&text)
            .map_err(|e| keyring_error(path, format!("not a Wharf keyring: {e}")))?;
        let mut keyring = Keyring {
            current: file.current,
            keys: BTreeMap::new(),
            raw: BTreeMap::new(),
        };
        for entry in file.keys {
            if entry.id.is_empty() || entry.id.contains(':') {
                return Err(keyring_error(
                    path,
                    format!("invalid key id {:?}", entry.id),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(entry.secret.trim())
                .map_err(|_| keyring_error(path, format!("key {:?} is not base64", entry.id)))?;
            let raw: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
                keyring_error(path, format!("key {:?} is not {KEY_LEN} bytes", entry.id))
            })?;
            keyring.insert(entry.id, raw);
        }
        if !keyring.raw.contains_key(&keyring.current) {
            return Err(keyring_error(
                path,
                format!("the current key {:?} is not in the file", keyring.current),
            ));
        }
        Ok(keyring)
    }

    /// Writes the keyring to `path` atomically (a temporary file renamed over it), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), EncryptionError> {
        let file = KeyringFile {
            current: self.current.clone(),
            keys: self
                .raw
                .iter()
                .map(|(id, raw)| KeyEntry {
                    id: id.clone(),
                    secret: base64::engine::general_purpose::STANDARD.encode(raw),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&file).expect("a keyring serializes");
        let temporary = path.with_extension("key.tmp");
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut out = options.open(&temporary)?;
            out.write_all(&text)?;
            out.sync_all()?;
            std::fs::rename(&temporary, path)?;
            if let Some(dir) = path.parent() {
                // Make the rename durable too.
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        };
        write().map_err(|e| keyring_error(path, e.to_string()))
    }

    /// Seals `plaintext` for store key `key` with the current key and a random nonce.
    pub fn seal(&self, key: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = &self.keys[&self.current];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: key.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(
            ENVELOPE_PREFIX.len() + self.current.len() + 1 + NONCE_LEN + sealed.len(),
        );
        out.extend_from_slice(ENVELOPE_PREFIX);
        out.extend_from_slice(self.current.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens the stored value of `key`: a sealed envelope is decrypted, anything else (plain
    /// JSON written before encryption) is returned as it is.
    pub fn open(&self, key: &str, stored: &Bytes) -> Result<Bytes, EncryptionError> {
        let Some(rest) = stored.strip_prefix(ENVELOPE_PREFIX) else {
            return Ok(stored.clone());
        };
        let malformed = || EncryptionError::Malformed(key.to_owned());
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(malformed)?;
        let key_id = std::str::from_utf8(&rest[..colon]).map_err(|_| malformed())?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN {
            return Err(malformed());
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| EncryptionError::UnknownKey {
                key: key.to_owned(),
                key_id: key_id.to_owned(),
            })?;
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: key.as_bytes(),
                },
            )
            .map(Bytes::from)
            .map_err(|_| EncryptionError::Decrypt {
                key: key.to_owned(),
                key_id: key_id.to_owned(),
            })
    }

    /// Seals `value` if `key` is one whose values are encrypted.
    fn seal_for(&self, key: &str, value: Bytes) -> Bytes {
        if is_encrypted_key(key) {
            Bytes::from(self.seal(key, &value))
        } else {
            value
        }
    }
}

fn keyring_error(path: &Path, message: String) -> EncryptionError {
    EncryptionError::Keyring {
        path: path.display().to_string(),
        message,
    }
}

/// A [`Store`] that seals Secret and ConfigMap values on write and opens them on every read.
#[derive(Clone)]
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    keyring: Arc<Keyring>,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// Wraps `inner`, sealing with `keyring`'s current key.
    pub fn new(inner: Arc<dyn Store>, keyring: Keyring) -> EncryptedStore {
        EncryptedStore {
            inner,
            keyring: Arc::new(keyring),
        }
    }

    /// The wrapped store (raw, sealed values).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        if is_encrypted_key(&kv.key) {
            kv.value = self.keyring.open(&kv.key, &kv.value)?;
        }
        Ok(kv)
    }
}

fn open_event(keyring: &Keyring, mut event: Event) -> Result<Event, StoreError> {
    if is_encrypted_key(&event.key) {
        event.value = keyring.open(&event.key, &event.value)?;
        if let Some(prev) = event.prev_value.take() {
            event.prev_value = Some(keyring.open(&event.key, &prev)?);
        }
    }
    Ok(event)
}

/// Whether a watch of `prefix` can see keys whose values are sealed.
fn watch_sees_encrypted(prefix: &str) -> bool {
    ENCRYPTED_PREFIXES
        .iter()
        .any(|p| p.starts_with(prefix) || prefix.starts_with(p))
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.open_kv(kv))
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError> {
        let mut page = self.inner.list(prefix, start_after, limit).await?;
        page.items = page
            .items
            .into_iter()
            .map(|kv| self.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(page)
    }

    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let op = match op {
            WriteOp::Put {
                key,
                value,
                precondition,
            } => WriteOp::Put {
                value: self.keyring.seal_for(&key, value),
                key,
                precondition,
            },
            delete @ WriteOp::Delete { .. } => delete,
        };
        let mut result = self.inner.write(op).await?;
        result.prev = result.prev.map(|kv| self.open_kv(kv)).transpose()?;
        Ok(result)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let inner = self.inner.watch(prefix, after).await?;
        if !watch_sees_encrypted(prefix) {
            return Ok(inner);
        }
        Ok(forward_opened(inner, self.keyring.clone()))
    }

    /// The inner store's events as they are: sealed values stay sealed.
    async fn watch_keys(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch_keys(prefix, after).await
    }

    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// How often a forwarded watch copies the inner watch's progress (for bookmarks) and checks
/// whether its reader has gone.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// A watch stream that delivers `inner`'s events with sealed values opened.
fn forward_opened(mut inner: WatchStream, keyring: Arc<Keyring>) -> WatchStream {
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    let progress = Arc::new(AtomicU64::new(inner.progress()));
    let shared = progress.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let forward = |event: Option<Result<Event, StoreError>>| {
            event.map(|event| event.and_then(|event| open_event(&keyring, event)))
        };
        loop {
            let next = tokio::select! {
                event = inner.next() => forward(event),
                _ = tick.tick() => {
                    if sender.is_closed() {
                        return;
                    }
                    // Every event up to `reached` is queued in `inner`; once those queued now
                    // are forwarded, this stream has processed up to `reached` as well.
                    let reached = inner.progress();
                    while let Some(event) = inner.next().now_or_never() {
                        let Some(event) = forward(event) else { return };
                        let failed = event.is_err();
                        if sender.send(event).await.is_err() || failed {
                            return;
                        }
                    }
                    shared.fetch_max(reached, Ordering::AcqRel);
                    continue;
                }
            };
            let Some(event) = next else { return };
            let failed = event.is_err();
            if sender.send(event).await.is_err() || failed {
                return;
            }
        }
    });
    WatchStream::from_channel(receiver, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_KEY: &str = "/core/secrets/default/db";

    #[test]
    fn sealed_values_round_trip_and_hide_the_plaintext() {
        let keyring = Keyring::generate();
        let plaintext = br#"{"data":{"password":"aHVudGVyMg=="}}"#;
        let sealed = keyring.seal(SECRET_KEY, plaintext);
        assert!(sealed.starts_with(ENVELOPE_PREFIX));
        assert_eq!(sealed_key_id(&sealed), Some("k1"));
        assert!(!sealed.windows(8).any(|w| w == b"aHVudGVy"));
        let opened = keyring.open(SECRET_KEY, &Bytes::from(sealed)).unwrap();
        assert_eq!(&opened[..], plaintext);
    }

    #[test]
    fn each_write_gets_a_fresh_nonce() {
        let keyring = Keyring::generate();
        assert_ne!(
            keyring.seal(SECRET_KEY, b"{}"),
            keyring.seal(SECRET_KEY, b"{}")
        );
    }

    #[test]
    fn a_different_key_with_the_same_id_fails_clearly() {
        let sealed = Bytes::from(Keyring::generate().seal(SECRET_KEY, b"{}"));
        let error = Keyring::generate().open(SECRET_KEY, &sealed).unwrap_err();
        assert!(matches!(error, EncryptionError::Decrypt { .. }), "{error}");
        assert!(error.to_string().contains("wrong key"), "{error}");
    }

    #[test]
    fn a_value_sealed_with_a_key_not_in_the_keyring_names_that_key() {
        let mut newer = Keyring::generate();
        newer.add_key();
        let sealed = Bytes::from(newer.seal(SECRET_KEY, b"{}"));
        let error = Keyring::generate().open(SECRET_KEY, &sealed).unwrap_err();
        assert!(error.to_string().contains("\"k2\""), "{error}");
    }

    #[test]
    fn a_ciphertext_moved_to_another_key_does_not_decrypt() {
        let keyring = Keyring::generate();
        let sealed = Bytes::from(keyring.seal(SECRET_KEY, b"{}"));
        let error = keyring
            .open("/core/secrets/default/other", &sealed)
            .unwrap_err();
        assert!(matches!(error, EncryptionError::Decrypt { .. }), "{error}");
    }

    #[test]
    fn a_truncated_envelope_is_malformed() {
        let keyring = Keyring::generate();
        let sealed = keyring.seal(SECRET_KEY, b"{}");
        let cut = Bytes::copy_from_slice(&sealed[..ENVELOPE_PREFIX.len() + 5]);
        assert!(matches!(
            keyring.open(SECRET_KEY, &cut),
            Err(EncryptionError::Malformed(_))
        ));
    }

    #[test]
    fn plain_json_written_before_encryption_is_read_as_it_is() {
        let plain = Bytes::from_static(br#"{"kind":"Secret"}"#);
        assert_eq!(Keyring::generate().open(SECRET_KEY, &plain).unwrap(), plain);
    }

    #[test]
    fn old_keys_still_open_after_rotation_and_new_writes_use_the_new_key() {
        let mut keyring = Keyring::generate();
        let old = Bytes::from(keyring.seal(SECRET_KEY, b"old"));
        assert_eq!(keyring.add_key(), "k2");
        let new = keyring.seal(SECRET_KEY, b"new");
        assert_eq!(sealed_key_id(&new), Some("k2"));
        assert_eq!(&keyring.open(SECRET_KEY, &old).unwrap()[..], b"old");
        keyring.retain(&Default::default());
        assert_eq!(keyring.key_ids(), vec!["k2".to_owned()]);
        assert!(keyring.open(SECRET_KEY, &old).is_err());
    }

    #[test]
    fn the_keyring_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYRING_FILE);
        let (keyring, created) = Keyring::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = Bytes::from(keyring.seal(SECRET_KEY, b"x"));
        let (loaded, created) = Keyring::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(&loaded.open(SECRET_KEY, &sealed).unwrap()[..], b"x");
    }

    /// A redb store in a temporary directory (kept alive by the returned guard).
    fn redb_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = wharf_store::RedbStore::open(
            dir.path().join("state.redb"),
            wharf_store::StoreConfig::default(),
        )
        .unwrap();
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn a_watch_through_the_encrypted_store_opens_values_and_reports_progress() {
        let (_dir, raw) = redb_store();
        let store = EncryptedStore::new(raw.clone(), Keyring::generate());
        let mut watch = store.watch("/", 0).await.unwrap();
        let put = |key: &str, value: &'static [u8]| WriteOp::Put {
            key: key.into(),
            value: Bytes::from_static(value),
            precondition: wharf_store::Precondition::None,
        };
        store.write(put(SECRET_KEY, b"first")).await.unwrap();
        let result = store.write(put(SECRET_KEY, b"second")).await.unwrap();
        assert_eq!(&result.prev.unwrap().value[..], b"first");
        store
            .write(put("/core/pods/default/p", b"pod"))
            .await
            .unwrap();
        let stored = raw.get(SECRET_KEY).await.unwrap().unwrap();
        assert!(stored.value.starts_with(ENVELOPE_PREFIX));

        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = watch.next().await.unwrap().unwrap();
            seen.push((event.value.to_vec(), event.prev_value.map(|p| p.to_vec())));
        }
        assert_eq!(
            seen,
            [
                (b"first".to_vec(), None),
                (b"second".to_vec(), Some(b"first".to_vec())),
                (b"pod".to_vec(), None),
            ]
        );
        // Bookmarks: the progress catches up with the store once everything is forwarded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while watch.progress() < raw.current_revision() {
            assert!(tokio::time::Instant::now() < deadline, "progress stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_watch_of_keys_leaves_sealed_values_sealed() {
        let (_dir, raw) = redb_store();
        let store = EncryptedStore::new(raw, Keyring::generate());
        let mut keys = store.watch_keys("/", 0).await.unwrap();
        store
            .write(WriteOp::Put {
                key: SECRET_KEY.into(),
                value: Bytes::from_static(b"hunter2"),
                precondition: wharf_store::Precondition::None,
            })
            .await
            .unwrap();
        let event = keys.next().await.unwrap().unwrap();
        assert_eq!(event.key, SECRET_KEY);
        assert!(event.value.starts_with(ENVELOPE_PREFIX), "not opened");
        assert!(!event.value.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn only_secrets_and_configmaps_are_encrypted() {
        let find = |plural| {
            crate::resources::find("", "v1", plural)
                .unwrap()
                .key_prefix()
        };
        assert_eq!(ENCRYPTED_PREFIXES, [find("secrets"), find("configmaps")]);
        assert!(is_encrypted_key("/core/secrets/ns/a"));
        assert!(!is_encrypted_key("/core/pods/ns/a"));
        assert!(watch_sees_encrypted("/"));
        assert!(watch_sees_encrypted("/core/secrets/ns/"));
        assert!(!watch_sees_encrypted("/core/pods/"));
    }
}
