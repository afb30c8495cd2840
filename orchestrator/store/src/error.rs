//! The store's error type: a few categories that callers act on, plus the backend's message.

use crate::Revision;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key does not exist.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The key was written since the revision the caller based its write on.
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision actually found.
        actual: Revision,
    },
    /// The requested history has been compacted away.
    #[error("revision {requested} is older than the compacted revision {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compacted revision.
        compacted: Revision,
    },
    /// The data directory is already in use by another process.
    #[error("the store at {0} is already open in another process")]
    Locked(String),
    /// Opening the store failed.
    #[error("cannot open the store: {0}")]
    Open(String),
    /// The backend failed to read or to commit (I/O error, full disk, closed store). Nothing of
    /// the failed operation was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what this version of Wharf wrote.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

macro_rules! unavailable_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Unavailable(e.to_string())
            }
        }
    )*};
}

unavailable_from!(
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError
);
