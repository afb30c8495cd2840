//! Integration tests of the embedded store, in one test binary.

mod model;
mod redb_store;

use std::path::Path;
use std::time::Duration;

use wharf_store::{RedbStore, StoreConfig, StoreError};

/// Opens a store, retrying while a previous handle of the same file is still closing.
pub fn open_store(path: &Path, config: StoreConfig) -> RedbStore {
    for _ in 0..200 {
        match RedbStore::open(path, config.clone()) {
            Err(StoreError::Locked(_)) => std::thread::sleep(Duration::from_millis(10)),
            other => return other.expect("open store"),
        }
    }
    panic!("store at {} stayed locked", path.display());
}
