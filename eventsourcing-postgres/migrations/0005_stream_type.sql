-- A stream records its aggregate type (`Aggregate::TYPE_NAME`) on the event that creates it
-- (version 1); '' on later events, on events written before this migration, and for raw
-- appends that did not say. Loading a stream as another type is refused (Error::WrongType).
-- A column with a constant default is added without rewriting the table (PostgreSQL 11+).
ALTER TABLE {schema}.events ADD COLUMN stream_type text NOT NULL DEFAULT '';
