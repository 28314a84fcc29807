-- Migration 3: a stream records its aggregate type, on the event that creates it.
--
-- Applied by SqliteStore::migrate() inside one IMMEDIATE transaction and recorded with its
-- SHA-256 checksum in eventsourcing_migrations. Never edit this file once released: add a new
-- numbered migration instead.

-- `Aggregate::TYPE_NAME` of the stream's aggregate on its version-1 event; '' on later events,
-- on events written before this migration, and for raw appends that did not say. Loading a stream as another type is refused
-- (Error::WrongType). Adding a column with a constant default rewrites nothing.
ALTER TABLE events ADD COLUMN stream_type TEXT NOT NULL DEFAULT '';
