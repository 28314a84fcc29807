-- Snapshots: a copy of an aggregate's state at a version.
--
-- The primary key serves the only query: the newest snapshot at or below a version,
-- `WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1`, and pruning all but
-- the newest N of a stream. fingerprint: the state's shape (`Aggregate::STATE_FINGERPRINT`), so
-- snapshots of a differently shaped struct are recognised and ignored.
CREATE TABLE {schema}.snapshots (
    stream_id   uuid        NOT NULL,
    version     bigint      NOT NULL,
    timestamp   timestamptz NOT NULL,
    state_type  text        NOT NULL,
    fingerprint bigint      NOT NULL,
    payload     bytea       NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id, version)
);
