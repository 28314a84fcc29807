-- How far each projection or process application has read the log: written in the same
-- transaction as its effects, so that each event takes effect exactly once.
--
-- The primary key serves the only query: the position of one named reader.
CREATE TABLE {schema}.tracking (
    name            text        NOT NULL,
    position_commit bigint      NOT NULL,
    position_seq    bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tracking_pkey PRIMARY KEY (name)
);
