//! The redb tables and the encoding of revision-log entries.

use bytes::Bytes;
use redb::TableDefinition;

use crate::{Event, EventKind, Revision, StoreError};

/// Current objects: key → (revision of last write, revision of creation, value).
pub const OBJECTS: TableDefinition<&str, (u64, u64, &[u8])> = TableDefinition::new("objects");

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

/// Encodes a log entry as `tag, key length (u32 LE), key, value length (u32 LE), value`,
/// followed by the previous value for an update. A create has no previous value and a delete's
/// previous value is its value, so neither is stored twice.
pub fn encode_event(kind: EventKind, key: &str, value: &[u8], prev: Option<&[u8]>) -> Vec<u8> {
    let tag = match (kind, prev) {
        (EventKind::Put, None) => TAG_PUT_CREATE,
        (EventKind::Put, Some(_)) => TAG_PUT_UPDATE,
        (EventKind::Delete, _) => TAG_DELETE,
    };
    let stored_prev = if tag == TAG_PUT_UPDATE {
        prev.unwrap_or_default()
    } else {
        &[]
    };
    let mut out = Vec::with_capacity(9 + key.len() + value.len() + stored_prev.len());
    out.push(tag);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(stored_prev);
    out
}

/// Peeks at the key of an encoded event without copying anything.
pub fn key_of_encoded_event(raw: &[u8]) -> Option<&str> {
    let len = u32::from_le_bytes(raw.get(1..5)?.try_into().ok()?) as usize;
    std::str::from_utf8(raw.get(5..5 + len)?).ok()
}

/// Decodes a log entry written by [`encode_event`].
pub fn decode_event(revision: Revision, raw: &[u8]) -> Result<Event, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("log entry at revision {revision} is malformed"));
    let read_len = |at: usize| -> Result<usize, StoreError> {
        let bytes: [u8; 4] = raw
            .get(at..at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        Ok(u32::from_le_bytes(bytes) as usize)
    };
    let tag = *raw.first().ok_or_else(corrupt)?;
    let key_len = read_len(1)?;
    let key = raw.get(5..5 + key_len).ok_or_else(corrupt)?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?.to_owned();
    let value_at = 5 + key_len;
    let value_len = read_len(value_at)?;
    let value = raw
        .get(value_at + 4..value_at + 4 + value_len)
        .ok_or_else(corrupt)?;
    let rest = &raw[value_at + 4 + value_len..];
    let value = Bytes::copy_from_slice(value);
    let (kind, prev_value) = match tag {
        TAG_PUT_CREATE => (EventKind::Put, None),
        TAG_PUT_UPDATE => (EventKind::Put, Some(Bytes::copy_from_slice(rest))),
        TAG_DELETE => (EventKind::Delete, Some(value.clone())),
        _ => return Err(corrupt()),
    };
    Ok(Event {
        revision,
        kind,
        key,
        value,
        prev_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        let cases: [(EventKind, Option<&[u8]>); 3] = [
            (EventKind::Put, None),
            (EventKind::Put, Some(b"old")),
            (EventKind::Delete, Some(b"{\"x\":1}")),
        ];
        for (kind, prev) in cases {
            let raw = encode_event(kind, "core/configmaps/default/a", b"{\"x\":1}", prev);
            assert_eq!(
                key_of_encoded_event(&raw),
                Some("core/configmaps/default/a")
            );
            let event = decode_event(7, &raw).unwrap();
            assert_eq!(event.kind, kind);
            assert_eq!(event.prev_value.as_deref(), prev);
            assert_eq!(event.key, "core/configmaps/default/a");
            assert_eq!(&event.value[..], b"{\"x\":1}");
            assert_eq!(event.revision, 7);
        }
    }

    #[test]
    fn truncated_log_entries_are_reported_as_corrupt() {
        let raw = encode_event(EventKind::Put, "key", b"value", None);
        for cut in 0..raw.len() {
            assert!(
                matches!(decode_event(1, &raw[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
    }
}
