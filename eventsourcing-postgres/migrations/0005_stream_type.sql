-- Every event records the aggregate type of its stream (`Aggregate::TYPE_NAME`); '' for events
-- written before this migration or by a raw append that did not say. Loading a stream as
-- another type is refused (Error::WrongType). A column with a constant default is added
-- without rewriting the table (PostgreSQL 11 and later).
ALTER TABLE {schema}.events ADD COLUMN stream_type text NOT NULL DEFAULT '';
