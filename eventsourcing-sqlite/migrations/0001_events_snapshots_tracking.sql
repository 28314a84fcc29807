-- Migration 1: the events, snapshots and tracking tables.
--
-- Applied by SqliteStore::migrate() inside one IMMEDIATE transaction and recorded with its
-- SHA-256 checksum in eventsourcing_migrations. Never edit this file once released: add a new
-- numbered migration instead (migrate() refuses a database whose recorded checksum differs).

-- Every event of every stream. The rowid `position` is the global order (the notification log):
-- SQLite has one writer at a time, so positions are assigned in commit order and a reader that
-- asks for `position > last seen` never skips one. AUTOINCREMENT keeps a position from ever being
-- reused, even if the newest rows were deleted by hand.
--   read_log:        WHERE position > ? ORDER BY position LIMIT ?   (the rowid itself)
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      BLOB    NOT NULL CHECK (length(stream_id) = 16),
    version        INTEGER NOT NULL CHECK (version >= 1),
    -- microseconds since the Unix epoch, UTC
    timestamp      INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    -- JSON; NULL when there is no metadata
    metadata       TEXT,
    -- The only index on events. It rejects a second event at the same version, and serves:
    --   load:            WHERE stream_id = ? AND version > ? AND version <= ? ORDER BY version
    --   stream_version:  SELECT max(version) WHERE stream_id = ?   (also append's conflict check)
    UNIQUE (stream_id, version)
) STRICT;

-- Snapshots of aggregate state. The primary key serves the only query:
--   newest snapshot: WHERE stream_id = ? AND version <= ? ORDER BY version DESC LIMIT 1
CREATE TABLE snapshots (
    stream_id   BLOB    NOT NULL CHECK (length(stream_id) = 16),
    version     INTEGER NOT NULL,
    timestamp   INTEGER NOT NULL,
    state_type  TEXT    NOT NULL,
    -- the state's shape fingerprint, a u64 stored with the same 64 bits
    fingerprint INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    PRIMARY KEY (stream_id, version)
) STRICT, WITHOUT ROWID;

-- How far each named consumer (projection, process) has processed an upstream log. Both parts of
-- the upstream position are kept, so a consumer can track a PostgreSQL store too. The primary key
-- serves the only query: WHERE name = ?
CREATE TABLE tracking (
    name            TEXT    NOT NULL PRIMARY KEY,
    position_commit INTEGER NOT NULL,
    position_seq    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
