-- Migration 3: every event records the aggregate type of its stream.
--
-- Applied by SqliteStore::migrate() inside one IMMEDIATE transaction and recorded with its
-- SHA-256 checksum in eventsourcing_migrations. Never edit this file once released: add a new
-- numbered migration instead.

-- `Aggregate::TYPE_NAME` of the stream's aggregate; '' for events written before this migration
-- or by a raw append that did not say. Loading a stream as another type is refused
-- (Error::WrongType). Adding a column with a constant default rewrites nothing.
ALTER TABLE events ADD COLUMN stream_type TEXT NOT NULL DEFAULT '';
