//! Wharf's consistent object store.
//!
//! The store is deliberately shaped like etcd's key-value API so that an etcd backend can
//! replace the embedded one without touching the API server: keys are strings, values are opaque
//! bytes, every successful write gets the next value of ONE global, strictly increasing
//! [`Revision`], writes carry optimistic-concurrency [`Precondition`]s, and a watch streams every
//! change after a revision, in order.
//!
//! The store knows nothing about Kubernetes objects, JSON or HTTP. The API server decides what
//! keys and values mean; in particular the object's `metadata.resourceVersion` is *derived* from
//! [`KeyValue::mod_revision`] when the object is read, never stored inside the value.
//!
//! [`RedbStore`] is the embedded implementation: one redb file holding an object table and a
//! revision log written in the same transaction, with group commit (concurrent writers share
//! one durable commit) and a bounded log (compaction).

mod error;
mod redb_store;
mod schema;
mod watch;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::StoreError;
pub use redb_store::{RedbStore, StoreConfig, StoreStats};
pub use watch::WatchStream;

/// A store revision. Revision 0 means "before any write"; the first write gets revision 1.
pub type Revision = u64;

/// A key, its current value and the revision of the write that produced that value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The opaque value.
    pub value: Bytes,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
}

/// What must be true of a key for a write to it to proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No condition: create or overwrite.
    None,
    /// The key must not exist (create).
    MustNotExist,
    /// The key must exist (unconditional update or delete of an existing key).
    MustExist,
    /// The key must exist and have been last written at exactly this revision.
    ModRevision(Revision),
}

/// One write: a put or a delete of a single key, guarded by a precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        /// The key to write.
        key: String,
        /// The new value.
        value: Bytes,
        /// What must hold before the write.
        precondition: Precondition,
    },
    /// Remove `key`.
    Delete {
        /// The key to remove.
        key: String,
        /// What must hold before the delete.
        precondition: Precondition,
    },
}

impl WriteOp {
    /// The key this operation writes.
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// The outcome of a successful, durable write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// The revision this write was given.
    pub revision: Revision,
    /// The key's value before the write, if it existed.
    pub prev: Option<KeyValue>,
}

/// Whether an event created/updated a key or removed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated; [`Event::value`] is the new value.
    Put,
    /// The key was removed; [`Event::value`] is its last value.
    Delete,
}

/// One committed change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The revision of the write.
    pub revision: Revision,
    /// Put or delete.
    pub kind: EventKind,
    /// The key written.
    pub key: String,
    /// The new value (put) or the last value before removal (delete).
    pub value: Bytes,
    /// The value before this event: `None` for a create, the old value for an update, the
    /// removed value for a delete.
    pub prev_value: Option<Bytes>,
}

/// One page of a prefix listing, read from one consistent snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// The entries, in key order.
    pub items: Vec<KeyValue>,
    /// The store revision of the snapshot the page was read from.
    pub revision: Revision,
    /// Whether more keys under the prefix follow the last returned one.
    pub more: bool,
}

/// The consistent store behind the API server.
///
/// Implementations must give every successful write a revision greater than every earlier one,
/// acknowledge a write only once it is durable, and deliver watch events in revision order
/// without gaps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Lists keys starting with `prefix`, in key order, starting strictly after `start_after` if
    /// given, at most `limit` entries if given.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError>;

    /// Applies one write durably and returns its revision.
    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError>;

    /// Streams every event on keys starting with `prefix` whose revision is greater than
    /// `after`, first the recorded history, then live changes.
    ///
    /// Fails with [`StoreError::Compacted`] if `after` is older than the retained history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Like [`Store::watch`], for a reader that looks only at each event's key, kind and
    /// revision: the values may be left as they are stored (a store that encrypts values
    /// skips opening them, which a reader of keys would pay for on every write).
    async fn watch_keys(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.watch(prefix, after).await
    }

    /// The revision of the latest acknowledged write.
    fn current_revision(&self) -> Revision;

    /// The newest revision whose history has been discarded; watches must start at or after it.
    fn compacted_revision(&self) -> Revision;

    /// Counters for `/metrics`.
    fn stats(&self) -> StoreStats {
        StoreStats {
            revision: self.current_revision(),
            compacted: self.compacted_revision(),
            ..StoreStats::default()
        }
    }
}
