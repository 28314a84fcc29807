-- Migration 2: the parked_events table of projections.
--
-- Applied by SqliteStore::migrate() inside one IMMEDIATE transaction and recorded with its
-- SHA-256 checksum in eventsourcing_migrations. Never edit this file once released: add a new
-- numbered migration instead.

-- Events a projection running with OnError::Park could not handle. Each row is written in the
-- transaction that moves the projection's tracking position past the event, so an event is
-- either handled, parked here, or still ahead of the projection: never skipped silently. An
-- operator lists them with SqliteStore::parked(name) and removes them with unpark(). The
-- primary key serves both: WHERE name = ? ORDER BY position, and WHERE name = ? AND position = ?
CREATE TABLE parked_events (
    name            TEXT    NOT NULL,
    position_commit INTEGER NOT NULL,
    position_seq    INTEGER NOT NULL,
    stream_id       BLOB    NOT NULL CHECK (length(stream_id) = 16),
    version         INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    -- the handler's error and its sources, joined with ": "
    error           TEXT    NOT NULL,
    -- microseconds since the Unix epoch, UTC
    parked_at       INTEGER NOT NULL,
    PRIMARY KEY (name, position_commit, position_seq)
) STRICT, WITHOUT ROWID;
