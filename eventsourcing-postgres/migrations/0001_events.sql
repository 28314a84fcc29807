-- The events of every stream, and the global log order.
--
-- position: taken from an identity sequence at INSERT; it orders the events of one
--   transaction and breaks ties, but on its own is NOT a safe reading order (a lower number can
--   commit after a higher one).
-- tx_id: the writing transaction's 64-bit id. Readers of the log read only rows whose tx_id is
--   below the oldest transaction still running (pg_snapshot_xmin), ordered by (tx_id, position):
--   no row can ever appear below a position a reader has passed. See the crate docs.
-- metadata: NULL when the save carried no metadata.
CREATE TABLE {schema}.events (
    stream_id      uuid        NOT NULL,
    version        bigint      NOT NULL,
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    timestamp      timestamptz NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        bytea       NOT NULL,
    metadata       jsonb,
    -- Serves: load (stream_id = $1 AND version BETWEEN ..), stream_version (max(version)),
    -- the append's contiguity guard (stream_id, version - 1), and the concurrency check itself
    -- (a second writer of the same version fails with SQLSTATE 23505).
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, version),
    CONSTRAINT events_version_positive CHECK (version > 0)
);

-- Serves: read_log, `WHERE (tx_id, position) > ($1, $2) AND tx_id < xmin ORDER BY tx_id,
-- position LIMIT $3`, and the log-head check of `eventsourcing-admin status`.
CREATE INDEX events_log_idx ON {schema}.events (tx_id, position);

-- Serves: read_by_time, `WHERE timestamp >= $1 AND timestamp < $2`. BRIN, not B-tree: events
-- arrive in roughly timestamp order, so a block-range summary finds a time window at a tiny
-- fraction of a B-tree's size and insert cost. autosummarize: a filled block range is
-- summarized by autovacuum right away (unsummarized ranges match every query).
CREATE INDEX events_timestamp_brin ON {schema}.events USING brin (timestamp)
    WITH (autosummarize = on);
