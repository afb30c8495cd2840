//! The embedded store: one redb file, group commit on a dedicated writer thread.
//!
//! Every write goes through one writer thread. It takes all writes that are waiting, applies
//! them one after the other inside ONE redb write transaction (each sees the effect of the ones
//! before it, and a write whose precondition fails is skipped without touching anything), commits
//! with `Durability::Immediate` and only then answers the writers and publishes the events. So
//! concurrent writers share one fsync, and an acknowledged write is always on disk.
//!
//! The same transaction appends each change to the revision log and trims the log to the
//! configured history, which keeps the file bounded under churn: redb reuses freed pages.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::schema::{
    LOG, META, META_COMPACTED, META_REVISION, META_SCHEMA, OBJECTS, SCHEMA_VERSION, decode_event,
    encode_event, key_of_encoded_event,
};
use crate::watch::{self, WatchStream};
use crate::{
    Event, EventKind, KeyValue, ListResult, Precondition, Revision, Store, StoreError, WriteOp,
    WriteResult,
};

/// Tuning of the embedded store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How many revisions of history the log keeps for watches to resume from.
    pub history_revisions: u64,
    /// The most writes that share one commit.
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_revisions: 20_000,
            max_batch: 1024,
        }
    }
}

/// Counters shared between the writer thread and readers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) revision: AtomicU64,
    pub(crate) compacted: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) committed_writes: AtomicU64,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, StoreError>>,
}

/// The open database, or none while it is being reopened after an I/O error (redb refuses
/// every transaction after a failed write until it is closed and opened again).
#[derive(Debug)]
struct DatabaseSlot {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
    /// Serializes reopening (the writer and waiting readers may both try).
    reopening: std::sync::Mutex<()>,
}

impl DatabaseSlot {
    fn now(&self) -> Option<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The database for a reader. While the writer reopens it (a few milliseconds), readers
    /// wait; if the writer's reopen failed, a reader tries again itself. Reads must keep
    /// working when writes fail (e.g. on a full disk).
    fn get(&self, shared: &Shared) -> Result<Arc<Database>, StoreError> {
        for _ in 0..100 {
            if let Some(db) = self.now() {
                return Ok(db);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _one_at_a_time = self.reopening.lock().unwrap_or_else(|e| e.into_inner());
        match self.now() {
            Some(db) => Ok(db),
            None => self.reopen_locked(shared),
        }
    }

    /// Closes the database (waiting briefly for readers to let go) and opens it again. On
    /// failure the slot stays empty and the next write tries again.
    fn reopen(&self, shared: &Shared) -> Result<Arc<Database>, StoreError> {
        let _one_at_a_time = self.reopening.lock().unwrap_or_else(|e| e.into_inner());
        self.reopen_locked(shared)
    }

    fn reopen_locked(&self, shared: &Shared) -> Result<Arc<Database>, StoreError> {
        let old = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(old) = old {
            // Readers hold the database only for one short read transaction.
            for _ in 0..500 {
                if Arc::strong_count(&old) == 1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            drop(old);
        }
        let db = open_database(&self.path)?;
        let (revision, compacted) = init_schema(&db)?;
        shared.revision.store(revision, Ordering::Release);
        shared.compacted.store(compacted, Ordering::Release);
        let db = Arc::new(db);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        tracing::info!(path = %self.path.display(), revision, "store reopened");
        Ok(db)
    }
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
        other => StoreError::Open(format!("{}: {other}", path.display())),
    })
}

/// The embedded redb-backed [`Store`].
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<DatabaseSlot>,
    writer: mpsc::UnboundedSender<WriteRequest>,
    events: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Statistics for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The latest committed revision.
    pub revision: Revision,
    /// The compacted revision.
    pub compacted: Revision,
    /// How many durable commits were made since the store was opened.
    pub commits: u64,
    /// How many writes those commits carried.
    pub committed_writes: u64,
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` and starts its writer thread.
    ///
    /// Fails with [`StoreError::Locked`] if another process has the file open.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = open_database(&path)?;
        let (revision, compacted) = init_schema(&db)?;
        let shared = Arc::new(Shared {
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            ..Shared::default()
        });
        let db = Arc::new(DatabaseSlot {
            path: path.clone(),
            current: RwLock::new(Some(Arc::new(db))),
            reopening: std::sync::Mutex::new(()),
        });
        let (events, _) = broadcast::channel(4096);
        let (writer, requests) = mpsc::unbounded_channel();
        let thread_db = db.clone();
        let thread_events = events.clone();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("wharf-store-writer".into())
            .spawn(move || {
                writer_loop(
                    &thread_db,
                    requests,
                    &thread_events,
                    &thread_shared,
                    &config,
                )
            })
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            db,
            writer,
            events,
            shared,
            path,
        })
    }

    fn counters(&self) -> StoreStats {
        StoreStats {
            revision: self.shared.revision.load(Ordering::Acquire),
            compacted: self.shared.compacted.load(Ordering::Acquire),
            commits: self.shared.commits.load(Ordering::Relaxed),
            committed_writes: self.shared.committed_writes.load(Ordering::Relaxed),
        }
    }

    /// Reads the log entries after `after`, at most `limit` of them, that start with `prefix`.
    /// Returns them and the highest revision examined.
    pub(crate) fn read_log(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<(Vec<Event>, Revision), StoreError> {
        let txn = self.db.get(&self.shared)?.begin_read()?;
        let compacted = read_meta(&txn, META_COMPACTED)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let log = txn.open_table(LOG)?;
        let mut events = Vec::new();
        let mut last = after;
        for entry in log.range(after + 1..)?.take(limit) {
            let (rev, raw) = entry?;
            let rev = rev.value();
            last = rev;
            let raw = raw.value();
            if key_of_encoded_event(raw).is_some_and(|k| k.starts_with(prefix)) {
                events.push(decode_event(rev, raw)?);
            }
        }
        Ok((events, last))
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Counts the entries of the object table and of the revision log.
    pub fn table_sizes(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.get(&self.shared)?.begin_read()?;
        let objects = txn.open_table(OBJECTS)?.len()?;
        let log = txn.open_table(LOG)?.len()?;
        Ok((objects, log))
    }
}

fn read_meta(txn: &redb::ReadTransaction, key: &str) -> Result<u64, StoreError> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(key)?.map(|v| v.value()).unwrap_or(0))
}

/// Creates the tables on first open and checks the schema version; returns (revision, compacted).
fn init_schema(db: &Database) -> Result<(Revision, Revision), StoreError> {
    let txn = db.begin_write()?;
    let result = {
        let mut meta = txn.open_table(META)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(LOG)?;
        let schema = meta.get(META_SCHEMA)?.map(|v| v.value());
        match schema {
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "schema version {other} is not supported (this build writes {SCHEMA_VERSION})"
                )));
            }
        }
        let revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0);
        let compacted = meta.get(META_COMPACTED)?.map(|v| v.value()).unwrap_or(0);
        (revision, compacted)
    };
    txn.commit()?;
    Ok(result)
}

/// The writer thread: drain waiting writes, apply them in one transaction, commit, answer.
fn writer_loop(
    db: &DatabaseSlot,
    mut requests: mpsc::UnboundedReceiver<WriteRequest>,
    events: &broadcast::Sender<Arc<Event>>,
    shared: &Shared,
    config: &StoreConfig,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < config.max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let database = match db.now().map_or_else(|| db.reopen(shared), Ok) {
            Ok(database) => database,
            Err(error) => {
                tracing::error!(%error, "the store cannot be reopened; refusing writes");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
                continue;
            }
        };
        let failed = commit_batch(&database, &mut batch, events, shared, config);
        drop(database);
        if failed {
            // The next batch must not inherit redb's "previous I/O error" state.
            if let Err(error) = db.reopen(shared) {
                tracing::error!(%error, "reopening the store failed; will retry on the next write");
            }
        }
    }
    tracing::debug!("store writer stopped: all handles dropped");
}

type Outcome = Result<(WriteResult, Event), StoreError>;

/// Commits one batch and answers its writers; returns whether the commit failed.
fn commit_batch(
    db: &Database,
    batch: &mut Vec<WriteRequest>,
    events: &broadcast::Sender<Arc<Event>>,
    shared: &Shared,
    config: &StoreConfig,
) -> bool {
    let base_revision = shared.revision.load(Ordering::Acquire);
    let result = (|| -> Result<(Vec<Outcome>, Revision, Revision), StoreError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut revision = base_revision;
        let mut outcomes = Vec::with_capacity(batch.len());
        let compacted;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            for request in batch.iter() {
                let outcome = apply_one(&mut objects, &mut log, revision + 1, &request.op)?;
                if outcome.is_ok() {
                    revision += 1;
                }
                outcomes.push(outcome);
            }
            compacted = trim_log(&mut log, &mut meta, revision, config.history_revisions)?;
            meta.insert(META_REVISION, revision)?;
        }
        txn.commit()?;
        Ok((outcomes, revision, compacted))
    })();

    match result {
        Ok((outcomes, revision, compacted)) => {
            shared.revision.store(revision, Ordering::Release);
            shared.compacted.store(compacted, Ordering::Release);
            shared.commits.fetch_add(1, Ordering::Relaxed);
            shared
                .committed_writes
                .fetch_add(revision - base_revision, Ordering::Relaxed);
            // Publish before answering, so that a writer that watches from its own revision
            // right after the acknowledgement cannot miss its event.
            for (request, outcome) in batch.drain(..).zip(outcomes) {
                let answer = outcome.map(|(result, event)| {
                    // An error here only means that nobody is watching.
                    let _ = events.send(Arc::new(event));
                    result
                });
                let _ = request.reply.send(answer);
            }
            false
        }
        Err(error) => {
            tracing::error!(%error, "store commit failed; the batch was not written");
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(error.clone()));
            }
            true
        }
    }
}

/// Applies one write inside the transaction. The outer error aborts the whole batch (backend
/// failure); the inner one is this write's own precondition failure.
fn apply_one(
    objects: &mut redb::Table<&str, (u64, u64, &[u8])>,
    log: &mut redb::Table<u64, &[u8]>,
    revision: Revision,
    op: &WriteOp,
) -> Result<Outcome, StoreError> {
    let key = op.key();
    let prev = objects
        .get(key)?
        .map(|guard| stored_key_value(key, guard.value()));
    let precondition = match op {
        WriteOp::Put { precondition, .. } | WriteOp::Delete { precondition, .. } => *precondition,
    };
    if let Err(e) = check_precondition(key, precondition, prev.as_ref()) {
        return Ok(Err(e));
    }
    let prev_value = prev.as_ref().map(|kv| kv.value.clone());
    let event = match op {
        WriteOp::Put { value, .. } => {
            let created = prev.as_ref().map_or(revision, |kv| kv.create_revision);
            objects.insert(key, (revision, created, &value[..]))?;
            let entry = encode_event(EventKind::Put, key, value, prev_value.as_deref());
            log.insert(revision, &entry[..])?;
            Event {
                revision,
                kind: EventKind::Put,
                key: key.to_owned(),
                value: value.clone(),
                prev_value,
            }
        }
        WriteOp::Delete { .. } => {
            let Some(prev) = &prev else {
                return Ok(Err(StoreError::NotFound(key.to_owned())));
            };
            objects.remove(key)?;
            let entry = encode_event(EventKind::Delete, key, &prev.value, None);
            log.insert(revision, &entry[..])?;
            Event {
                revision,
                kind: EventKind::Delete,
                key: key.to_owned(),
                value: prev.value.clone(),
                prev_value,
            }
        }
    };
    Ok(Ok((WriteResult { revision, prev }, event)))
}

fn stored_key_value(
    key: &str,
    (mod_revision, create_revision, value): (u64, u64, &[u8]),
) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        mod_revision,
        create_revision,
    }
}

fn check_precondition(
    key: &str,
    precondition: Precondition,
    prev: Option<&KeyValue>,
) -> Result<(), StoreError> {
    match (precondition, prev) {
        (Precondition::None, _) => Ok(()),
        (Precondition::MustNotExist, Some(_)) => Err(StoreError::AlreadyExists(key.to_owned())),
        (Precondition::MustNotExist, None) => Ok(()),
        (Precondition::MustExist | Precondition::ModRevision(_), None) => {
            Err(StoreError::NotFound(key.to_owned()))
        }
        (Precondition::MustExist, Some(_)) => Ok(()),
        (Precondition::ModRevision(expected), Some(kv)) if kv.mod_revision == expected => Ok(()),
        (Precondition::ModRevision(expected), Some(kv)) => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: kv.mod_revision,
        }),
    }
}

/// Drops log entries older than `history` revisions; returns the compacted revision.
fn trim_log(
    log: &mut redb::Table<u64, &[u8]>,
    meta: &mut redb::Table<&str, u64>,
    revision: Revision,
    history: u64,
) -> Result<Revision, StoreError> {
    let compacted = meta.get(META_COMPACTED)?.map(|v| v.value()).unwrap_or(0);
    let target = revision.saturating_sub(history);
    if target <= compacted {
        return Ok(compacted);
    }
    log.retain_in(compacted..=target, |_, _| false)?;
    meta.insert(META_COMPACTED, target)?;
    Ok(target)
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.db.get(&self.shared)?.begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        Ok(objects
            .get(key)?
            .map(|guard| stored_key_value(key, guard.value())))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError> {
        let txn = self.db.get(&self.shared)?.begin_read()?;
        let revision = read_meta(&txn, META_REVISION)?;
        let objects = txn.open_table(OBJECTS)?;
        let start = match start_after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut items = Vec::new();
        let mut more = false;
        let limit = limit.unwrap_or(usize::MAX);
        for entry in objects.range(start..)? {
            let (key, value) = entry?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if Some(key) == start_after {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(stored_key_value(key, value.value()));
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest { op, reply })
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        watch::start(self.clone(), prefix.to_owned(), after)
    }

    fn current_revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    fn stats(&self) -> StoreStats {
        self.counters()
    }
}
