//! The redb tables and the encoding of revision-log entries.

use bytes::Bytes;
use redb::TableDefinition;

use crate::{Event, EventKind, Revision, StoreError};

/// Current objects: key → (revision of last write, value).
pub const OBJECTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("objects");

/// The revision log: revision → encoded [`Event`]. Entries at or below the compacted revision
/// are removed.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// Small counters: [`META_REVISION`], [`META_COMPACTED`], [`META_SCHEMA`].
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The latest committed revision.
pub const META_REVISION: &str = "revision";
/// The compacted revision: log entries at or below it are gone.
pub const META_COMPACTED: &str = "compacted";
/// The on-disk schema version.
pub const META_SCHEMA: &str = "schema";
/// The schema version this code writes.
pub const SCHEMA_VERSION: u64 = 1;

const TAG_PUT_CREATE: u8 = 1;
const TAG_PUT_UPDATE: u8 = 2;
const TAG_DELETE: u8 = 3;

/// Encodes a log entry as `tag, key length (u32 LE), key, value`.
pub fn encode_event(kind: EventKind, existed_before: bool, key: &str, value: &[u8]) -> Vec<u8> {
    let tag = match (kind, existed_before) {
        (EventKind::Put, false) => TAG_PUT_CREATE,
        (EventKind::Put, true) => TAG_PUT_UPDATE,
        (EventKind::Delete, _) => TAG_DELETE,
    };
    let mut out = Vec::with_capacity(5 + key.len() + value.len());
    out.push(tag);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a log entry written by [`encode_event`].
pub fn decode_event(revision: Revision, raw: &[u8]) -> Result<Event, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("log entry at revision {revision} is malformed"));
    let (&tag, rest) = raw.split_first().ok_or_else(corrupt)?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    let key_len = u32::from_le_bytes(len_bytes) as usize;
    let key = rest.get(4..4 + key_len).ok_or_else(corrupt)?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?.to_owned();
    let value = Bytes::copy_from_slice(&rest[4 + key_len..]);
    let (kind, existed_before) = match tag {
        TAG_PUT_CREATE => (EventKind::Put, false),
        TAG_PUT_UPDATE => (EventKind::Put, true),
        TAG_DELETE => (EventKind::Delete, true),
        _ => return Err(corrupt()),
    };
    Ok(Event {
        revision,
        kind,
        key,
        value,
        existed_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        for (kind, existed) in [
            (EventKind::Put, false),
            (EventKind::Put, true),
            (EventKind::Delete, true),
        ] {
            let raw = encode_event(kind, existed, "core/configmaps/default/a", b"{\"x\":1}");
            let event = decode_event(7, &raw).unwrap();
            assert_eq!(event.kind, kind);
            assert_eq!(event.existed_before, existed);
            assert_eq!(event.key, "core/configmaps/default/a");
            assert_eq!(&event.value[..], b"{\"x\":1}");
            assert_eq!(event.revision, 7);
        }
    }

    #[test]
    fn truncated_log_entries_are_reported_as_corrupt() {
        let raw = encode_event(EventKind::Put, false, "key", b"value");
        for cut in 0..6 {
            assert!(matches!(
                decode_event(1, &raw[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
