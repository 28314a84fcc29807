//! The SQL of the store: statement texts only. The migrations that create the tables are in
//! `migrations/`.

/// `SELECT <the columns rows::read_event reads> FROM events <rest>`.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream_id, version, timestamp, event_type, schema_version, ",
            "payload, metadata, stream_type FROM events ",
            $rest
        )
    };
}

/// `SELECT <the columns rows::read_replay reads> FROM events <rest>`: no stream id (the query
/// names it), no metadata (replay reads none).
macro_rules! select_replay {
    ($rest:literal) => {
        concat!(
            "SELECT position, version, timestamp, event_type, schema_version, payload, ",
            "stream_type FROM events ",
            $rest
        )
    };
}

/// One stream's events with `?2 < version <= ?3`.
pub(crate) const LOAD: &str =
    select_events!("WHERE stream_id = ?1 AND version > ?2 AND version <= ?3 ORDER BY version");
/// [`LOAD`] for replay.
pub(crate) const LOAD_REPLAY: &str =
    select_replay!("WHERE stream_id = ?1 AND version > ?2 AND version <= ?3 ORDER BY version");
/// [`LOAD`] with no upper bound (no `?3`): a load to the stream's end compares no version
/// with one on every row (measured: about 4 % of a `load_1000`).
pub(crate) const LOAD_ALL: &str =
    select_events!("WHERE stream_id = ?1 AND version > ?2 ORDER BY version");
/// [`LOAD_REPLAY`] with no upper bound, as [`LOAD_ALL`].
pub(crate) const LOAD_REPLAY_ALL: &str =
    select_replay!("WHERE stream_id = ?1 AND version > ?2 ORDER BY version");
/// A page of the log: at most `?2` events with `position > ?1`.
pub(crate) const READ_LOG: &str = select_events!("WHERE position > ?1 ORDER BY position LIMIT ?2");
/// A page of every event in `(stream_id, version)` order, after `(?1, ?2)`, at most `?3`
/// (`eventsourcing-admin verify`).
pub(crate) const VERIFY_EVENTS: &str =
    select_events!("WHERE (stream_id, version) > (?1, ?2) ORDER BY stream_id, version LIMIT ?3");
pub(crate) const STREAM_VERSION: &str = "SELECT max(version) FROM events WHERE stream_id = ?1";
pub(crate) const INSERT_EVENT: &str = "INSERT INTO events \
     (stream_id, version, timestamp, event_type, schema_version, payload, metadata, stream_type) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub(crate) const READ_TRACKING: &str =
    "SELECT position_commit, position_seq FROM tracking WHERE name = ?1";
pub(crate) const WRITE_TRACKING: &str =
    "INSERT OR REPLACE INTO tracking (name, position_commit, position_seq) VALUES (?1, ?2, ?3)";

pub(crate) const SAVE_SNAPSHOT: &str = "INSERT OR REPLACE INTO snapshots \
     (stream_id, version, timestamp, state_type, fingerprint, payload) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Deletes the snapshots of stream `?1` older than its `?2`-th newest (counting from 0);
/// nothing while it has fewer.
pub(crate) const PRUNE_SNAPSHOTS: &str = "DELETE FROM snapshots WHERE stream_id = ?1 AND \
     version < (SELECT version FROM snapshots WHERE stream_id = ?1 \
     ORDER BY version DESC LIMIT 1 OFFSET ?2)";
pub(crate) const LOAD_SNAPSHOT: &str =
    "SELECT version, timestamp, state_type, fingerprint, payload FROM snapshots \
     WHERE stream_id = ?1 AND version <= ?2 ORDER BY version DESC LIMIT 1";

/// The table recording the applied migrations.
pub(crate) const MIGRATIONS_TABLE: &str = "eventsourcing_migrations";
pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \
     eventsourcing_migrations (
         version     INTEGER NOT NULL PRIMARY KEY,
         description TEXT    NOT NULL,
         checksum    BLOB    NOT NULL,
         applied_at  INTEGER NOT NULL
     ) STRICT";
pub(crate) const LIST_MIGRATIONS: &str =
    "SELECT version, description, checksum, applied_at FROM eventsourcing_migrations \
     ORDER BY version";
pub(crate) const RECORD_MIGRATION: &str = "INSERT INTO eventsourcing_migrations \
     (version, description, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)";
pub(crate) const TABLE_EXISTS: &str =
    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1";
