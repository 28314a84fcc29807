//! The SQL text of every statement the store prepares, for one schema.

/// `name` as a quoted identifier: `"name"` with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns of an event read from a known stream, in this order (see `rows::stream_event`).
const STREAM_COLUMNS: &str =
    "version, tx_id, position, event_type, schema_version, timestamp, payload, metadata, \
     stream_type";

/// The columns replay reads of a stream's event, in this order (see `rows::replay_event`):
/// no position, no metadata.
const REPLAY_COLUMNS: &str = "version, event_type, schema_version, timestamp, payload, stream_type";

/// The columns of an event read from the log: the stream id, then [`STREAM_COLUMNS`] (see
/// `rows::log_event`; `maintenance.rs` reads them for `verify`).
pub(crate) const EVENT_COLUMNS: &str =
    "stream_id, version, tx_id, position, event_type, schema_version, \
     timestamp, payload, metadata, stream_type";

/// The statements a pooled connection prepares (lazily, once each) and caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stmt {
    AppendOne,
    AppendOneNext,
    AppendMany,
    AppendManyGuarded,
    AppendGroup,
    Load,
    StreamVersion,
    ReadLog,
    ReadByTime,
    StreamVersions,
    LogHead,
    SaveSnapshot,
    LoadSnapshot,
    AppendTracked,
    TrackingPosition,
    InsertTracking,
    LockTracking,
    WriteTracking,
    ParkEvent,
    LoadReplay,
    LoadFromSnapshot,
}

/// The statements of one schema: its tables' qualified names, quoted once.
#[derive(Debug)]
pub(crate) struct Sql {
    events: String,
    snapshots: String,
    tracking: String,
    parked_events: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let table = |name: &str| format!("{}.{name}", quote_ident(schema));
        Sql {
            events: table("events"),
            snapshots: table("snapshots"),
            tracking: table("tracking"),
            parked_events: table("parked_events"),
        }
    }

    /// The text of `stmt`, built on each call: a connection prepares each statement once, and
    /// the two run unprepared (`read_by_time`, `append_in`) pay one `format!` beside a round trip.
    pub(crate) fn get(&self, stmt: Stmt) -> String {
        let Sql {
            events,
            snapshots,
            tracking,
            parked_events,
        } = self;
        match stmt {
            Stmt::AppendOne => append(events, Shape::One),
            Stmt::AppendOneNext => append(events, Shape::OneNext),
            Stmt::AppendMany => append(events, Shape::Many),
            Stmt::AppendManyGuarded => append(events, Shape::ManyGuarded),
            Stmt::AppendGroup => append_group(events),
            Stmt::Load => format!(
                "SELECT {STREAM_COLUMNS} FROM {events} \
                 WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version"
            ),
            Stmt::LoadReplay => format!(
                "SELECT {REPLAY_COLUMNS} FROM {events} \
                 WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version"
            ),
            Stmt::StreamVersion => {
                format!("SELECT COALESCE(max(version), 0) FROM {events} WHERE stream_id = $1")
            }
            Stmt::ReadLog => read_log(events),
            Stmt::ReadByTime => format!(
                "SELECT {EVENT_COLUMNS} FROM {events} \
                 WHERE timestamp >= $1 AND timestamp < $2 \
                   AND (tx_id, position) > ($3::xid8, $4::int8) \
                   AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY tx_id, position LIMIT $5"
            ),
            Stmt::StreamVersions => format!(
                "SELECT s.stream_id, \
                        COALESCE((SELECT max(e.version) FROM {events} e \
                                  WHERE e.stream_id = s.stream_id), 0) \
                 FROM unnest($1::uuid[]) AS s(stream_id)"
            ),
            Stmt::LogHead => format!(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()), \
                        (SELECT tx_id FROM {events} ORDER BY tx_id DESC LIMIT 1)"
            ),
            Stmt::SaveSnapshot => save_snapshot(snapshots),
            Stmt::LoadSnapshot => format!(
                "SELECT version, timestamp, state_type, fingerprint, payload FROM {snapshots} \
                 WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1"
            ),
            Stmt::LoadFromSnapshot => load_from_snapshot(events, snapshots),
            Stmt::AppendTracked => append_tracked(events, tracking),
            Stmt::TrackingPosition => {
                format!("SELECT position_commit, position_seq FROM {tracking} WHERE name = $1")
            }
            Stmt::InsertTracking => insert_tracking(tracking),
            Stmt::LockTracking => lock_tracking(tracking),
            Stmt::WriteTracking => write_tracking(tracking),
            Stmt::ParkEvent => park_event(parked_events),
        }
    }
}

/// A page of the log after `($1, $2)`, at most `$3` events, below the oldest running
/// transaction (never past a position a later commit could fill), and the log's head as the
/// same snapshot sees it, in one statement: rows of [`EVENT_COLUMNS`], then `newest` (NULL)
/// and `head` (false); and one head row (`head` true) with the horizon in `tx_id`'s place,
/// the newest committed event's `tx_id` (NULL for an empty log) in `newest`, and NULL in the
/// other columns. The head is one backward step of the log index; it tells a short page
/// whether committed events were held back (see `read::caught_up`) without a second round trip.
fn read_log(events: &str) -> String {
    format!(
        "SELECT NULL::uuid, NULL::int8, pg_snapshot_xmin(pg_current_snapshot()), NULL::int8, \
                NULL::text, NULL::int4, NULL::timestamptz, NULL::bytea, NULL::jsonb, \
                NULL::text, (SELECT tx_id FROM {events} ORDER BY tx_id DESC LIMIT 1), true \
         UNION ALL \
         (SELECT {EVENT_COLUMNS}, NULL::xid8, false FROM {events} \
          WHERE (tx_id, position) > ($1::xid8, $2::int8) \
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
          ORDER BY tx_id, position LIMIT $3)"
    )
}

/// The newest snapshot at or below `$2` and the events after it up to `$2`, in one statement
/// (see `rows::snapshot_or_event`): rows of [`REPLAY_COLUMNS`], then the snapshot's
/// fingerprint and whether the row is the snapshot. The snapshot's `state_type` stands in
/// `event_type`'s place; its missing columns are NULL. At most one snapshot row; the event rows
/// come in version order (their branch sorts them; the reader checks it).
fn load_from_snapshot(events: &str, snapshots: &str) -> String {
    format!(
        "WITH snap AS MATERIALIZED ( \
             SELECT version, timestamp, state_type, fingerprint, payload FROM {snapshots} \
             WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1) \
         SELECT version, state_type, NULL::int4, timestamp, payload, NULL::text, fingerprint, \
                true FROM snap \
         UNION ALL \
         (SELECT {REPLAY_COLUMNS}, NULL::int8, false FROM {events} \
          WHERE stream_id = $1 AND version <= $2 \
            AND version > COALESCE((SELECT version FROM snap), 0) \
          ORDER BY version)"
    )
}

/// The shape of a save, which picks its statement: the general one costs more server time than
/// a plain `INSERT … VALUES`, and most saves are one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One event, version 1: the primary key is the whole check.
    One,
    /// One event, version above 1: plus the guard that version - 1 exists.
    OneNext,
    /// Several events, every stream starting at version 1.
    Many,
    /// Several events, some stream starting above version 1.
    ManyGuarded,
}

impl Shape {
    pub(crate) fn stmt(self) -> Stmt {
        match self {
            Shape::One => Stmt::AppendOne,
            Shape::OneNext => Stmt::AppendOneNext,
            Shape::Many => Stmt::AppendMany,
            Shape::ManyGuarded => Stmt::AppendManyGuarded,
        }
    }
}

const INSERT_COLUMNS: &str =
    "(stream_id, version, timestamp, event_type, schema_version, payload, metadata, stream_type)";

/// The one statement of a save, autocommitted, so atomic on its own.
///
/// Several events travel as arrays turned back into rows by `unnest`: every event of every
/// stream in one INSERT. The primary key rejects a version that exists. The guard rejects a
/// first version that would leave a hole: for every stream whose first new version v is above
/// 1, version v - 1 must exist (one primary-key probe per such stream). In the array form the
/// guard is uncorrelated with the inserted rows, so PostgreSQL evaluates it once (an
/// InitPlan). If it fails no row is inserted and the caller sees 0 rows affected.
fn append(events: &str, shape: Shape) -> String {
    match shape {
        Shape::One => {
            format!("INSERT INTO {events} {INSERT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        }
        Shape::OneNext => format!(
            "INSERT INTO {events} {INSERT_COLUMNS} \
             SELECT $1::uuid, $2::int8, $3::timestamptz, $4::text, $5::int4, $6::bytea, \
                    $7::jsonb, $8::text \
             WHERE EXISTS (SELECT 1 FROM {events} p \
                           WHERE p.stream_id = $1::uuid AND p.version = $2::int8 - 1)"
        ),
        Shape::Many => format!(
            "INSERT INTO {events} {INSERT_COLUMNS} \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                  $5::int4[], $6::bytea[], $7::jsonb[], $8::text[])"
        ),
        Shape::ManyGuarded => format!(
            "INSERT INTO {events} {INSERT_COLUMNS} \
             SELECT e.stream_id, e.version, e.timestamp, e.event_type, e.schema_version, \
                    e.payload, e.metadata, e.stream_type \
             FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::int4[], \
                         $6::bytea[], $7::jsonb[], $8::text[]) \
                  AS e(stream_id, version, timestamp, event_type, schema_version, payload, \
                       metadata, stream_type) \
             WHERE NOT EXISTS ( \
                 SELECT 1 FROM unnest($9::uuid[], $10::int8[]) AS g(stream_id, version) \
                 WHERE NOT EXISTS ( \
                     SELECT 1 FROM {events} p \
                     WHERE p.stream_id = g.stream_id AND p.version = g.version - 1))"
        ),
    }
}

/// The saves of a group (see `group.rs`) in one autocommitted statement, each all or nothing.
///
/// `$1`–`$8` are the events of every save, as in the `Many` shape, and `$9` the save each
/// belongs to (its index in the group). `$10`–`$12` list every stream of every save with its
/// first new version: a save is `rejected` if one of its first versions exists already (a
/// concurrent save got there first) or, above 1, lacks its predecessor (a hole). The rejected
/// saves insert nothing, the others everything, in the order given, so that each save's events
/// take consecutive positions of the group's one transaction. `rejected` is evaluated once (an
/// InitPlan) from the statement's snapshot; a save of another transaction committing the same
/// version after it still fails the whole statement on the primary key (the caller then writes
/// each save alone). The result: the rejected saves and the number of events inserted.
///
/// Each array is read through a scalar subquery so that no plan knows its length: a plan that
/// did (PostgreSQL's custom plans, for the first executions of a prepared statement) would be
/// estimated cheaper than the generic one every time, so the server would plan this statement
/// anew on each execution (measured: custom plans only, and about half the group's throughput).
fn append_group(events: &str) -> String {
    format!(
        "WITH rejected AS ( \
             SELECT DISTINCT g.save \
             FROM unnest((SELECT $10::int4[]), (SELECT $11::uuid[]), (SELECT $12::int8[])) AS g(save, stream_id, version) \
             WHERE EXISTS (SELECT 1 FROM {events} p \
                           WHERE p.stream_id = g.stream_id AND p.version = g.version) \
                OR (g.version > 1 AND NOT EXISTS ( \
                        SELECT 1 FROM {events} p \
                        WHERE p.stream_id = g.stream_id AND p.version = g.version - 1))), \
         inserted AS ( \
             INSERT INTO {events} {INSERT_COLUMNS} \
             SELECT e.stream_id, e.version, e.timestamp, e.event_type, e.schema_version, \
                    e.payload, e.metadata, e.stream_type \
             FROM unnest((SELECT $1::uuid[]), (SELECT $2::int8[]), (SELECT $3::timestamptz[]), (SELECT $4::text[]), (SELECT $5::int4[]), \
                         (SELECT $6::bytea[]), (SELECT $7::jsonb[]), (SELECT $8::text[]), (SELECT $9::int4[])) \
                  AS e(stream_id, version, timestamp, event_type, schema_version, payload, \
                       metadata, stream_type, save) \
             WHERE e.save <> ALL (ARRAY(SELECT save FROM rejected)) \
             RETURNING 1) \
         SELECT ARRAY(SELECT save FROM rejected), (SELECT count(*) FROM inserted)"
    )
}

/// Events and a consumer's tracking position in one statement, both or neither.
///
/// `ok`: the guard (as in the `ManyGuarded` save). `tracked`: the tracking row is inserted, or
/// moved forward only if the new position is after the recorded one; `ON CONFLICT DO UPDATE`
/// locks the row, so a concurrent writer of the same name waits and then sees the newer
/// position. `inserted`: the events, only if the position was taken. A stale version still
/// fails the whole statement on the primary key. The result tells which case happened:
/// `(ok, tracked, inserted)`.
fn append_tracked(events: &str, tracking: &str) -> String {
    format!(
        "WITH ok AS ( \
             SELECT NOT EXISTS ( \
                 SELECT 1 FROM unnest($9::uuid[], $10::int8[]) AS g(stream_id, version) \
                 WHERE NOT EXISTS ( \
                     SELECT 1 FROM {events} p \
                     WHERE p.stream_id = g.stream_id AND p.version = g.version - 1)) AS ok), \
         tracked AS ( \
             INSERT INTO {tracking} AS t (name, position_commit, position_seq) \
             SELECT $11::text, $12::int8, $13::int8 WHERE (SELECT ok FROM ok) \
             ON CONFLICT (name) DO UPDATE \
                 SET position_commit = EXCLUDED.position_commit, \
                     position_seq = EXCLUDED.position_seq, updated_at = now() \
                 WHERE (t.position_commit, t.position_seq) \
                       < (EXCLUDED.position_commit, EXCLUDED.position_seq) \
             RETURNING 1), \
         inserted AS ( \
             INSERT INTO {events} {INSERT_COLUMNS} \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                  $5::int4[], $6::bytea[], $7::jsonb[], $8::text[]) \
             WHERE EXISTS (SELECT 1 FROM tracked) \
             RETURNING 1) \
         SELECT (SELECT ok FROM ok), (SELECT count(*) FROM tracked), \
                (SELECT count(*) FROM inserted)"
    )
}

/// Writes (or replaces) a snapshot and prunes all but the newest `$7` of the stream, in one
/// statement, as every store does. The DELETE sees the table as it was before the statement
/// and cannot delete the row being written, so a snapshot that would not be among the newest
/// `$7` is not written at all (an older row at its version is pruned like any other); the
/// `written` step runs whether or not the DELETE reads it. `NULL` (no `keep`) keeps all.
fn save_snapshot(snapshots: &str) -> String {
    format!(
        "WITH written AS ( \
             INSERT INTO {snapshots} \
                 (stream_id, version, timestamp, state_type, fingerprint, payload) \
             SELECT $1, $2, $3, $4, $5, $6 \
             WHERE $7::int8 IS NULL \
                OR (SELECT count(*) FROM {snapshots} WHERE stream_id = $1 AND version > $2) \
                   < $7::int8 \
             ON CONFLICT (stream_id, version) DO UPDATE SET \
                 timestamp = EXCLUDED.timestamp, state_type = EXCLUDED.state_type, \
                 fingerprint = EXCLUDED.fingerprint, payload = EXCLUDED.payload \
             RETURNING version), \
         kept AS ( \
             SELECT version FROM ( \
                 SELECT version FROM {snapshots} WHERE stream_id = $1 \
                 UNION SELECT $2::int8) AS v \
             ORDER BY version DESC LIMIT $7::int8) \
         DELETE FROM {snapshots} s \
         WHERE s.stream_id = $1 AND s.version NOT IN (SELECT version FROM kept)"
    )
}

/// Inserts the tracking row of a projection that has none, at the start of the log; a batch
/// that commits always moves it to a real position.
fn insert_tracking(tracking: &str) -> String {
    format!(
        "INSERT INTO {tracking} (name, position_commit, position_seq) VALUES ($1, 0, 0) \
         ON CONFLICT (name) DO NOTHING"
    )
}

/// Locks a projection's tracking row for the batch's transaction and reads it (after waiting
/// for another runner's batch, its newest committed value).
fn lock_tracking(tracking: &str) -> String {
    format!("SELECT position_commit, position_seq FROM {tracking} WHERE name = $1 FOR UPDATE")
}

/// Moves a locked tracking row.
fn write_tracking(tracking: &str) -> String {
    format!(
        "UPDATE {tracking} SET position_commit = $2, position_seq = $3, updated_at = now() \
         WHERE name = $1"
    )
}

/// Parks an event (again, if an operator unparked it and the position was rewound).
fn park_event(parked_events: &str) -> String {
    format!(
        "INSERT INTO {parked_events} \
             (name, position_commit, position_seq, stream_id, version, event_type, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name, position_commit, position_seq) DO UPDATE SET \
             stream_id = EXCLUDED.stream_id, version = EXCLUDED.version, \
             event_type = EXCLUDED.event_type, error = EXCLUDED.error, parked_at = now()"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(Sql::new("x y").get(Stmt::Load).contains("\"x y\".events"));
    }
}
