//! Model-based test: random operation sequences against the real store and a `BTreeMap`
//! model, including restarts of the store and a watch that must see exactly the model's history.

use std::collections::BTreeMap;

use bytes::Bytes;
use wharf_store::{
    Event, EventKind, Precondition, Revision, Store, StoreConfig, StoreError, WriteOp,
};

use crate::open_store;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Model {
    /// key → (mod revision, create revision, value)
    objects: BTreeMap<String, (Revision, Revision, Bytes)>,
    revision: Revision,
    history: Vec<Event>,
}

impl Model {
    fn write(&mut self, op: &WriteOp) -> Result<Revision, StoreError> {
        let key = op.key().to_owned();
        let current = self.objects.get(&key).cloned();
        let precondition = match op {
            WriteOp::Put { precondition, .. } | WriteOp::Delete { precondition, .. } => {
                *precondition
            }
        };
        match (precondition, &current) {
            (Precondition::MustNotExist, Some(_)) => return Err(StoreError::AlreadyExists(key)),
            (Precondition::MustExist | Precondition::ModRevision(_), None) => {
                return Err(StoreError::NotFound(key));
            }
            (Precondition::ModRevision(expected), Some((actual, _, _))) if expected != *actual => {
                return Err(StoreError::Conflict {
                    key,
                    expected,
                    actual: *actual,
                });
            }
            _ => {}
        }
        if matches!(op, WriteOp::Delete { .. }) && current.is_none() {
            return Err(StoreError::NotFound(key));
        }
        self.revision += 1;
        let event = match op {
            WriteOp::Put { value, .. } => {
                let created = current.as_ref().map_or(self.revision, |c| c.1);
                self.objects
                    .insert(key.clone(), (self.revision, created, value.clone()));
                Event {
                    revision: self.revision,
                    kind: EventKind::Put,
                    key,
                    value: value.clone(),
                    prev_value: current.map(|c| c.2),
                }
            }
            WriteOp::Delete { .. } => {
                self.objects.remove(&key);
                let last = current.expect("checked above").2;
                Event {
                    revision: self.revision,
                    kind: EventKind::Delete,
                    key,
                    value: last.clone(),
                    prev_value: Some(last),
                }
            }
        };
        self.history.push(event);
        Ok(self.revision)
    }
}

fn random_op(rng: &mut Rng, model: &Model) -> WriteOp {
    let prefix = ["a/", "b/", "ab/"][rng.below(3) as usize];
    let key = format!("{prefix}{}", rng.below(12));
    let current = model.objects.get(&key).map(|(rev, _, _)| *rev);
    let precondition = match rng.below(5) {
        0 => Precondition::None,
        1 => Precondition::MustNotExist,
        2 => Precondition::MustExist,
        3 => Precondition::ModRevision(current.unwrap_or(1)),
        _ => Precondition::ModRevision(current.map_or(1, |r| r + rng.below(2))),
    };
    if rng.below(4) == 0 {
        WriteOp::Delete { key, precondition }
    } else {
        let value = Bytes::from(format!("v{}", rng.next()));
        WriteOp::Put {
            key,
            value,
            precondition,
        }
    }
}

async fn check_reads(store: &impl Store, model: &Model, rng: &mut Rng) {
    for prefix in ["a/", "b/", "ab/", ""] {
        // Page through the prefix with a random page size and compare to the model.
        let page = 1 + rng.below(5) as usize;
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let result = store
                .list(prefix, after.as_deref(), Some(page))
                .await
                .unwrap();
            assert_eq!(result.revision, model.revision);
            assert!(result.items.len() <= page);
            after = result.items.last().map(|kv| kv.key.clone());
            seen.extend(result.items);
            if !result.more {
                break;
            }
        }
        let expected: Vec<_> = model
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (rev, created, v))| (k.clone(), *rev, *created, v.clone()))
            .collect();
        let actual: Vec<_> = seen
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision, kv.create_revision, kv.value))
            .collect();
        assert_eq!(actual, expected, "listing {prefix:?}");
    }
    for i in 0..12 {
        let key = format!("a/{i}");
        let got = store.get(&key).await.unwrap();
        let want = model.objects.get(&key);
        assert_eq!(
            got.map(|kv| (kv.mod_revision, kv.create_revision, kv.value)),
            want.cloned(),
            "get {key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operation_sequences_match_the_model_across_restarts() {
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut model = Model::default();
        let config = StoreConfig {
            history_revisions: 1_000_000,
            max_batch: 64,
        };
        let mut store = open_store(&path, config.clone());
        let mut watch = store.watch("a", 0).await.unwrap();
        let mut watched = Vec::new();
        for step in 0..300 {
            let op = random_op(&mut rng, &model);
            let expected = model.write(&op);
            let actual = store.write(op.clone()).await.map(|r| r.revision);
            assert_eq!(actual, expected, "seed {seed} step {step}: {op:?}");
            if step % 50 == 49 {
                check_reads(&store, &model, &mut rng).await;
            }
            if step % 100 == 99 {
                // Drain what the watch has so far, then restart the store.
                while watched.len()
                    < model
                        .history
                        .iter()
                        .filter(|e| e.key.starts_with('a'))
                        .count()
                {
                    watched.push(watch.next().await.unwrap().unwrap());
                }
                drop(watch);
                drop(store);
                store = open_store(&path, config.clone());
                assert_eq!(store.current_revision(), model.revision);
                let resume_from = watched.last().map_or(0, |e: &Event| e.revision);
                watch = store.watch("a", resume_from).await.unwrap();
            }
        }
        check_reads(&store, &model, &mut rng).await;
        let expected: Vec<_> = model
            .history
            .iter()
            .filter(|e| e.key.starts_with('a'))
            .cloned()
            .collect();
        while watched.len() < expected.len() {
            watched.push(watch.next().await.unwrap().unwrap());
        }
        assert_eq!(watched, expected, "seed {seed}: watch history");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_increasing_revisions_and_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("s.redb"), StoreConfig::default());
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..25 {
                let result = store
                    .write(WriteOp::Put {
                        key: format!("k/{writer}/{i}"),
                        value: Bytes::from_static(b"x"),
                        precondition: Precondition::MustNotExist,
                    })
                    .await
                    .unwrap();
                revisions.push(result.revision);
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        all.extend(revisions);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=800).collect();
    assert_eq!(all, expected);
    let stats = store.stats();
    assert_eq!(stats.committed_writes, 800);
    assert!(
        stats.commits < 800,
        "32 concurrent writers should share commits, got {} commits",
        stats.commits
    );
}
