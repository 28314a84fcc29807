//! The checks every store makes on a save before writing anything, so that the same save is
//! accepted or refused alike on every store (memory, SQLite, PostgreSQL).

use uuid::Uuid;

use crate::{error::Error, event::NewEvent};

/// The largest version and schema version a store keeps: SQL's signed integer ranges
/// (`bigint` for versions, `integer` for schema versions), whatever the store.
const MAX_VERSION: u64 = i64::MAX as u64;
const MAX_SCHEMA_VERSION: u32 = i32::MAX as u32;

/// Checks a save and returns its streams, each with the version its first new event has, in
/// the order they first appear.
///
/// Fails, before anything is written, with [`Error::Conflict`] when a stream's versions are not
/// contiguous and ascending within the save, and with [`Error::InvalidEvent`] naming the event
/// for what no store could keep alike: version 0 or above `i64::MAX`, a schema version above
/// `i32::MAX`, an empty event type, or a NUL character in the event type or in any metadata key
/// or value (PostgreSQL's `text` and `jsonb` refuse it).
pub fn check_save(events: &[NewEvent]) -> Result<Vec<(Uuid, u64)>, Error> {
    // (stream, first version, last version seen): few streams per save, so a Vec beats a map.
    let mut streams: Vec<(Uuid, u64, u64)> = Vec::new();
    for event in events {
        check_event(event)?;
        match streams.iter_mut().find(|s| s.0 == event.stream_id) {
            None => streams.push((event.stream_id, event.version, event.version)),
            Some(stream) => {
                if event.version != stream.2.saturating_add(1) {
                    return Err(Error::Conflict {
                        stream_id: event.stream_id,
                        expected: stream.2,
                        actual: stream.2,
                    });
                }
                stream.2 = event.version;
            }
        }
    }
    Ok(streams
        .into_iter()
        .map(|(id, first, _)| (id, first))
        .collect())
}

fn check_event(event: &NewEvent) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidEvent {
        stream_id: event.stream_id,
        version: event.version,
        reason,
    };
    if event.version == 0 || event.version > MAX_VERSION {
        return Err(invalid(format!(
            "version {} is outside 1..={MAX_VERSION}",
            event.version
        )));
    }
    if event.schema_version > MAX_SCHEMA_VERSION {
        return Err(invalid(format!(
            "schema version {} is above {MAX_SCHEMA_VERSION}",
            event.schema_version
        )));
    }
    if event.event_type.is_empty() {
        return Err(invalid("the event type is empty".into()));
    }
    if event.event_type.contains('\0') {
        return Err(invalid("the event type contains a NUL character".into()));
    }
    let metadata = &event.metadata;
    if let Some(key) = metadata
        .values
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| k)
    {
        return Err(invalid(format!(
            "metadata `{}` contains a NUL character",
            key.escape_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(version: u64) -> NewEvent {
        NewEvent::new(Uuid::nil(), version, "Happened", Vec::new())
    }

    #[test]
    fn contiguous_saves_give_each_stream_its_first_version() {
        let other = Uuid::from_u128(7);
        let mut events = vec![event(3), event(4)];
        events.push(NewEvent::new(other, 1, "Happened", Vec::new()));
        events.push(event(5));
        assert_eq!(check_save(&events).unwrap(), [(Uuid::nil(), 3), (other, 1)]);
        let err = check_save(&[event(1), event(3)]).unwrap_err();
        assert!(err.is_conflict(), "{err}");
    }

    #[test]
    fn what_no_store_could_keep_alike_is_refused_naming_the_event() {
        let nul_value = NewEvent {
            metadata: crate::Metadata::default().with("user", "a\0b"),
            ..event(2)
        };
        let nul_key = NewEvent {
            metadata: crate::Metadata::default().with("us\0er", "a"),
            ..event(2)
        };
        let nul_type = NewEvent::new(Uuid::nil(), 2, "Hap\0pened", Vec::new());
        let empty_type = NewEvent::new(Uuid::nil(), 2, "", Vec::new());
        let schema = NewEvent {
            schema_version: u32::MAX,
            ..event(2)
        };
        for (bad, says) in [
            (event(0), "version 0"),
            (event(u64::MAX), "outside"),
            (schema, "schema version"),
            (empty_type, "empty"),
            (nul_type, "event type contains a NUL"),
            (nul_value, "metadata `user`"),
            (nul_key, "metadata `us\\u{0}er`"),
        ] {
            let err = check_save(&[bad]).unwrap_err();
            assert!(matches!(err, Error::InvalidEvent { .. }), "{says}: {err:?}");
            assert!(err.to_string().contains(says), "{says}: {err}");
            assert!(err.to_string().contains("stream 00000000"), "{err}");
        }
    }
}
