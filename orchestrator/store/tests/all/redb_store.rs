//! Behaviour of the redb store that the model test does not cover: locking, compaction,
//! bounded file size, watches that lag behind the live broadcast.

use bytes::Bytes;
use wharf_store::{EventKind, Precondition, RedbStore, Store, StoreConfig, StoreError, WriteOp};

use crate::open_store;

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        precondition: Precondition::None,
    }
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _first = RedbStore::open(&path, StoreConfig::default()).unwrap();
    let second = RedbStore::open(&path, StoreConfig::default());
    assert!(matches!(second, Err(StoreError::Locked(_))), "{second:?}");
}

#[tokio::test]
async fn watches_older_than_the_retained_history_fail_as_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        history_revisions: 10,
        max_batch: 8,
    };
    let store = open_store(&dir.path().join("s.redb"), config);
    for i in 0..30 {
        store.write(put(&format!("k/{i}"), "v")).await.unwrap();
    }
    assert_eq!(store.current_revision(), 30);
    assert_eq!(store.compacted_revision(), 20);
    let old = store.watch("k/", 5).await;
    assert!(
        matches!(
            old,
            Err(StoreError::Compacted {
                requested: 5,
                compacted: 20
            })
        ),
        "{old:?}"
    );
    // From the compacted revision on, the history is complete.
    let mut watch = store.watch("k/", 20).await.unwrap();
    for expected in 21..=30 {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision, expected);
    }
    assert_eq!(store.table_sizes().unwrap(), (30, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_stays_bounded_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let config = StoreConfig {
        history_revisions: 500,
        max_batch: 256,
    };
    let store = open_store(&path, config);
    let value = "x".repeat(2048);
    let churn = |round: usize| {
        let store = store.clone();
        let value = value.clone();
        async move {
            let mut tasks = Vec::new();
            for w in 0..16 {
                let store = store.clone();
                let value = value.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..100 {
                        let key = format!("churn/{w}/{}", i % 10);
                        store.write(put(&key, &value)).await.unwrap();
                    }
                    for i in 0..10 {
                        let key = format!("churn/{w}/{i}");
                        store
                            .write(WriteOp::Delete {
                                key,
                                precondition: Precondition::None,
                            })
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let _ = round;
        }
    };
    churn(0).await;
    let size_after_first = std::fs::metadata(&path).unwrap().len();
    for round in 1..6 {
        churn(round).await;
    }
    let size_after_all = std::fs::metadata(&path).unwrap().len();
    // Six times the writes must not make a file several times larger: freed pages are reused.
    assert!(
        size_after_all < size_after_first * 2,
        "file grew from {size_after_first} to {size_after_all} bytes"
    );
    let (objects, log) = store.table_sizes().unwrap();
    assert_eq!(objects, 0);
    assert_eq!(log, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_the_broadcast_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("s.redb"), StoreConfig::default());
    let mut watch = store.watch("w/", 0).await.unwrap();
    // Write far more than the broadcast and the watch channel buffer, without reading.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1000 {
                store.write(put(&format!("w/{w}/{i}"), "v")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for expected in 1..=8000 {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision, expected);
        assert_eq!(event.kind, EventKind::Put);
    }
}

#[tokio::test]
async fn a_failed_precondition_leaves_the_rest_of_its_batch_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("s.redb"), StoreConfig::default());
    store.write(put("x/taken", "1")).await.unwrap();
    let writes = ["x/taken", "x/a", "x/b"].map(|key| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(WriteOp::Put {
                    key: key.into(),
                    value: Bytes::from_static(b"2"),
                    precondition: Precondition::MustNotExist,
                })
                .await
        })
    });
    let mut results = Vec::new();
    for w in writes {
        results.push(w.await.unwrap());
    }
    assert!(matches!(results[0], Err(StoreError::AlreadyExists(_))));
    assert!(results[1].is_ok() && results[2].is_ok());
    assert_eq!(store.current_revision(), 3);
    let taken = store.get("x/taken").await.unwrap().unwrap();
    assert_eq!(&taken.value[..], b"1");
}

#[tokio::test]
async fn deleting_reports_the_last_value_and_a_missing_key_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("s.redb"), StoreConfig::default());
    store.write(put("d/one", "last")).await.unwrap();
    let deleted = store
        .write(WriteOp::Delete {
            key: "d/one".into(),
            precondition: Precondition::ModRevision(1),
        })
        .await
        .unwrap();
    assert_eq!(deleted.revision, 2);
    assert_eq!(&deleted.prev.unwrap().value[..], b"last");
    let missing = store
        .write(WriteOp::Delete {
            key: "d/one".into(),
            precondition: Precondition::None,
        })
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
    assert_eq!(store.current_revision(), 2);
}
