-- Drops the CHECK (version > 0) that 0001 put on events. Every save is validated before it
-- reaches the table (a version below 1 is an Error::InvalidEvent naming the event, on every
-- store), and a load reads versions from 1 on (a stream without its version 1 is an
-- Error::Corrupt); the check only repeated that. It cost each INSERT statement more than its
-- own row: PostgreSQL builds a table's CHECK expressions again at the start of every
-- statement that writes it (measured with pgbench -M prepared, one row per statement: about
-- 7 µs of the 80 µs of an insert without the commit's flush, 4-5 % of a committed one).
ALTER TABLE {schema}.events DROP CONSTRAINT IF EXISTS events_version_positive;
