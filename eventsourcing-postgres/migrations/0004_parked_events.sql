-- Events a projection running with OnError::Park could not handle. Each row is written in the
-- transaction that moves the projection's tracking position past the event, so an event is
-- either handled, parked here, or still ahead of the projection: never skipped silently. An
-- operator lists them with PostgresStore::parked(name) and removes them with unpark().
--
-- The primary key serves both: `WHERE name = $1 ORDER BY position_commit, position_seq` and
-- `WHERE name = $1 AND position_commit = $2 AND position_seq = $3`.
CREATE TABLE {schema}.parked_events (
    name            text        NOT NULL,
    position_commit bigint      NOT NULL,
    position_seq    bigint      NOT NULL,
    stream_id       uuid        NOT NULL,
    version         bigint      NOT NULL,
    event_type      text        NOT NULL,
    -- the handler's error and its sources, joined with ": "
    error           text        NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT parked_events_pkey PRIMARY KEY (name, position_commit, position_seq)
);
