//! Watches: replay the revision log after a revision, then follow live commits.
//!
//! A watch subscribes to the live broadcast *before* reading the log, so every commit is seen
//! either in the log read or on the broadcast (events already replayed are skipped by
//! revision). A watcher that falls behind the broadcast (it lags) goes back to the log and
//! catches up from there; only if the log no longer holds the revisions it needs (compaction)
//! does the watch end with [`StoreError::Compacted`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc};

use crate::redb_store::RedbStore;
use crate::{Event, Revision, Store, StoreError};

/// How many log entries one catch-up read examines.
const CATCH_UP_CHUNK: usize = 1024;

/// A stream of events in revision order, ended by dropping it.
#[derive(Debug)]
pub struct WatchStream {
    events: mpsc::Receiver<Result<Event, StoreError>>,
    progress: Arc<AtomicU64>,
}

impl WatchStream {
    /// The next event; `None` if the store has shut down. An error ends the stream.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.events.recv().await
    }

    /// The latest revision this watch has fully processed: every matching event up to it has
    /// been queued for delivery. Used for bookmarks.
    pub fn progress(&self) -> Revision {
        self.progress.load(Ordering::Acquire)
    }

    /// Builds a stream fed by a caller-owned channel (for other [`Store`] implementations).
    pub fn from_channel(
        events: mpsc::Receiver<Result<Event, StoreError>>,
        progress: Arc<AtomicU64>,
    ) -> WatchStream {
        WatchStream { events, progress }
    }
}

pub(crate) fn start(
    store: RedbStore,
    prefix: String,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let compacted = store.compacted_revision();
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let live = store.subscribe();
    let (sender, events) = mpsc::channel(256);
    let progress = Arc::new(AtomicU64::new(after));
    tokio::spawn(follow(store, prefix, after, live, sender, progress.clone()));
    Ok(WatchStream { events, progress })
}

async fn follow(
    store: RedbStore,
    prefix: String,
    after: Revision,
    mut live: broadcast::Receiver<Arc<Event>>,
    sender: mpsc::Sender<Result<Event, StoreError>>,
    progress: Arc<AtomicU64>,
) {
    let mut seen = after;
    loop {
        // Catch up from the log until it holds nothing newer.
        loop {
            let (reader, log_prefix) = (store.clone(), prefix.clone());
            let read = tokio::task::spawn_blocking(move || {
                reader.read_log(&log_prefix, seen, CATCH_UP_CHUNK)
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
            let (events, last) = match read {
                Ok(read) => read,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            for event in events {
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if last == seen {
                break;
            }
            seen = last;
            progress.store(seen, Ordering::Release);
        }
        // Follow live commits until we fall behind.
        loop {
            let event = tokio::select! {
                _ = sender.closed() => return,
                received = live.recv() => match received {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if event.revision <= seen {
                continue;
            }
            if event.revision != seen + 1 {
                // A revision is missing from what we received: the log has it.
                break;
            }
            if event.key.starts_with(&prefix) && sender.send(Ok((*event).clone())).await.is_err() {
                return;
            }
            seen = event.revision;
            progress.store(seen, Ordering::Release);
        }
        // Skip what is queued on the broadcast; the log read covers it.
        live = live.resubscribe();
    }
}
