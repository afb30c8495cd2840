//! `wharf secrets rotate-key --data-dir DIR`: rotate the key Secrets and ConfigMaps are
//! encrypted with at rest.
//!
//! It runs while the server is stopped (a running server holds the store's lock; the command
//! says so). Steps, each safe to interrupt and repeat:
//! 1. add a new key to `DATA_DIR/encryption.key` and make it current, and save the keyring
//!    before anything is written with the new key;
//! 2. re-write every Secret and ConfigMap (decrypted with whichever key sealed it, sealed again
//!    with the new key; plain JSON from before encryption gets sealed too);
//! 3. drop every old key that nothing sealed uses any more — neither a current value nor an
//!    entry of the watch history that the store still keeps. The store is opened with no
//!    watch history to keep, so the re-writes compact the history (old ciphertexts included),
//!    as etcd's compaction would: after the restart, clients that resume a watch from before
//!    the rotation get 410 Gone and list again. A key still used by history (only when there
//!    was nothing to re-write) is kept and reported; a later rotation drops it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use wharf_apiserver::encryption::{
    ENCRYPTED_PREFIXES, EncryptedStore, KEYRING_FILE, Keyring, sealed_key_id,
};
use wharf_store::{Precondition, RedbStore, Store, StoreConfig, StoreError, WriteOp};

/// `wharf secrets ...`.
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Add a new encryption key, re-encrypt every Secret and ConfigMap with it, and drop old
    /// keys nothing uses any more. Run it while wharf is stopped.
    RotateKey(RotateArgs),
}

/// Flags of `wharf secrets rotate-key`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The data dir of the stopped server.
    #[arg(long, default_value = ".wharf", env = "WHARF_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs a `wharf secrets` command.
pub async fn run(command: SecretsCommand) -> Result<()> {
    match command {
        SecretsCommand::RotateKey(args) => rotate_key(&args.data_dir).await,
    }
}

async fn rotate_key(data_dir: &Path) -> Result<()> {
    let store_path = data_dir.join("state.redb");
    if !store_path.exists() {
        bail!(
            "{} has no store (state.redb); pass the --data-dir of a wharf that has run",
            data_dir.display()
        );
    }
    let config = StoreConfig {
        history_revisions: 0,
        ..StoreConfig::default()
    };
    let store = match RedbStore::open(&store_path, config) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => bail!(
            "the data dir {} is in use by a running wharf; stop it first (the key is rotated while the server is stopped), then run this again",
            data_dir.display()
        ),
        Err(e) => return Err(e).context("cannot open the store"),
    };
    let raw: Arc<dyn Store> = Arc::new(store);
    let keyring_path = data_dir.join(KEYRING_FILE);
    let (mut keyring, _) = Keyring::load_or_create(&keyring_path)?;
    let old_ids = keyring.key_ids();
    let new_id = keyring.add_key();
    keyring.save(&keyring_path)?;

    let encrypted = EncryptedStore::new(raw.clone(), keyring.clone());
    let mut rewritten = 0usize;
    for prefix in ENCRYPTED_PREFIXES {
        let mut start_after: Option<String> = None;
        loop {
            let page = encrypted
                .list(prefix, start_after.as_deref(), Some(256))
                .await
                .with_context(|| format!("cannot read {prefix}"))?;
            for kv in &page.items {
                encrypted
                    .write(WriteOp::Put {
                        key: kv.key.clone(),
                        value: kv.value.clone(),
                        precondition: Precondition::ModRevision(kv.mod_revision),
                    })
                    .await
                    .with_context(|| format!("cannot re-encrypt {}", kv.key))?;
                rewritten += 1;
            }
            if !page.more {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    let in_use = keys_in_use(&raw).await?;
    let dropped: Vec<&String> = old_ids
        .iter()
        .filter(|id| !in_use.contains_key(*id))
        .collect();
    let kept: Vec<(&String, usize)> = old_ids
        .iter()
        .filter_map(|id| in_use.get(id).map(|uses| (id, *uses)))
        .collect();
    keyring.retain(&in_use.keys().cloned().collect());
    keyring.save(&keyring_path)?;
    println!(
        "re-encrypted {rewritten} Secrets and ConfigMaps with the new key {new_id} in {}",
        keyring_path.display()
    );
    if !dropped.is_empty() {
        let dropped: Vec<&str> = dropped.iter().map(|id| id.as_str()).collect();
        println!("dropped old keys no longer used: {}", dropped.join(", "));
    }
    for (id, uses) in kept {
        println!(
            "kept old key {id}: {uses} entries of the store's watch history still use it; it is dropped by a later rotate-key once that history has been compacted"
        );
    }
    Ok(())
}

/// How many sealed values (current values and retained watch history) use each key id.
async fn keys_in_use(raw: &Arc<dyn Store>) -> Result<BTreeMap<String, usize>> {
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |value: &[u8]| {
        if let Some(id) = sealed_key_id(value) {
            *uses.entry(id.to_owned()).or_default() += 1;
        }
    };
    for prefix in ENCRYPTED_PREFIXES {
        let mut start_after: Option<String> = None;
        loop {
            let page = raw.list(prefix, start_after.as_deref(), Some(256)).await?;
            for kv in &page.items {
                count(&kv.value);
            }
            if !page.more {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }
    // The history a watch could still replay. Nothing else writes (the server is stopped), so
    // the replay ends at the current revision; a revision past the last event on these
    // prefixes ends it too (the timeout).
    let current = raw.current_revision();
    for prefix in ENCRYPTED_PREFIXES {
        let mut watch = raw.watch(prefix, raw.compacted_revision()).await?;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), watch.next()).await
        {
            let event = event?;
            count(&event.value);
            if let Some(prev) = &event.prev_value {
                count(prev);
            }
            if event.revision >= current {
                break;
            }
        }
    }
    Ok(uses)
}
