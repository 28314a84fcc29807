//! Tracking positions: events and a consumer's position written in one statement, so that a
//! process application's effects and its progress commit together (exactly once).

use eventsourcing_core::{Error, NewEvent, Position, Tracking};

use crate::{
    error::{out_of_range, pg_error},
    sql::{quote_ident, Shape, Stmt},
    store::{conflicting_stream, partial_insert, Batch, PostgresStore},
};

/// Appends events and records a tracking position in one statement (one round trip, one
/// transaction).
///
/// The CTE `tracked` upserts the position, but only if it moves forward (the `WHERE` of `DO
/// UPDATE`, evaluated on the newest committed row after waiting for a concurrent writer of the
/// same name) and only if every continued stream's previous version exists (the contiguity
/// guard of `append`, `$8`/`$9`). The events are inserted only if `tracked` wrote a row, and a
/// version that exists already breaks the primary key and fails the whole statement. So either
/// both are written or neither, and `(rows tracked, rows inserted)` says which.
pub(crate) fn append_tracked_sql(schema: &str) -> String {
    let events = format!("{}.events", quote_ident(schema));
    let tracking = format!("{}.tracking", quote_ident(schema));
    format!(
        "WITH tracked AS ( \
             INSERT INTO {tracking} AS cur (name, position_commit, position_seq) \
             SELECT $10::text, $11::int8, $12::int8 \
             WHERE NOT EXISTS ( \
                 SELECT 1 FROM unnest($8::uuid[], $9::int8[]) AS g(stream_id, version) \
                 WHERE NOT EXISTS ( \
                     SELECT 1 FROM {events} p \
                     WHERE p.stream_id = g.stream_id AND p.version = g.version - 1)) \
             ON CONFLICT (name) DO UPDATE SET \
                 position_commit = EXCLUDED.position_commit, \
                 position_seq = EXCLUDED.position_seq, \
                 updated_at = now() \
             WHERE (cur.position_commit, cur.position_seq) \
                   < (EXCLUDED.position_commit, EXCLUDED.position_seq) \
             RETURNING 1), \
         inserted AS ( \
             INSERT INTO {events} \
                 (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                  $5::int4[], $6::bytea[], $7::jsonb[]) \
             WHERE EXISTS (SELECT 1 FROM tracked) \
             RETURNING 1) \
         SELECT (SELECT count(*) FROM tracked), (SELECT count(*) FROM inserted)"
    )
}

/// Records a position without events, if it moves forward.
pub(crate) fn track_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {}.tracking AS cur (name, position_commit, position_seq) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET \
             position_commit = EXCLUDED.position_commit, \
             position_seq = EXCLUDED.position_seq, \
             updated_at = now() \
         WHERE (cur.position_commit, cur.position_seq) \
               < (EXCLUDED.position_commit, EXCLUDED.position_seq)",
        quote_ident(schema)
    )
}

/// A consumer's recorded position.
pub(crate) fn tracking_position_sql(schema: &str) -> String {
    format!(
        "SELECT position_commit, position_seq FROM {}.tracking WHERE name = $1",
        quote_ident(schema)
    )
}

/// A position as the two `bigint` columns of `tracking` (and `parked_events`).
pub(crate) fn position_columns(position: Position) -> Result<(i64, i64), Error> {
    let part = |value: u64, what: &str| {
        i64::try_from(value).map_err(|_| {
            out_of_range(format!(
                "position {what} {value} is above PostgreSQL's bigint range"
            ))
        })
    };
    Ok((part(position.commit, "commit")?, part(position.seq, "seq")?))
}

/// The two `bigint` columns back as a position.
pub(crate) fn position_from_columns(commit: i64, seq: i64) -> Position {
    Position {
        commit: commit.max(0) as u64,
        seq: seq.max(0) as u64,
    }
}

impl PostgresStore {
    /// [`EventStore::append_tracked`](eventsourcing_core::EventStore::append_tracked): one
    /// statement; see [`append_tracked_sql`].
    pub(crate) async fn append_with_tracking(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> Result<(), Error> {
        let (commit, seq) = position_columns(tracking.position)?;
        let name = tracking.name.as_str();
        let Some(batch) = Batch::new(&events)? else {
            let mut conn = self.checkout().await?;
            let stmt = self.statement(&mut conn, Stmt::Track).await?;
            let written = conn
                .client
                .execute(&stmt, &[&name, &commit, &seq])
                .await
                .map_err(|e| self.error(e))?;
            if written == 1 {
                return Ok(());
            }
            let recorded = self.recorded(&mut conn, name).await?;
            return Err(already_processed(&tracking, recorded));
        };
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::AppendTracked).await?;
        let mut params = batch.params(Shape::ManyGuarded);
        params.extend_from_slice(&[&name, &commit, &seq]);
        let hint = match conn.client.query_one(&stmt, &params).await {
            Ok(row) => {
                let tracked: i64 = row.try_get(0).map_err(pg_error)?;
                let inserted: i64 = row.try_get(1).map_err(pg_error)?;
                if tracked == 1 && inserted as usize == events.len() {
                    self.live().appended();
                    return Ok(());
                }
                if tracked == 1 {
                    return Err(partial_insert(inserted.max(0) as u64, events.len()));
                }
                // Nothing written: the position is not new, or the guard held the events back.
                let recorded = self.recorded(&mut conn, name).await?;
                if recorded.is_some_and(|r| r >= tracking.position) {
                    return Err(already_processed(&tracking, recorded));
                }
                None
            }
            Err(e) => match conflicting_stream(&e) {
                Some(hint) => hint,
                None => return Err(self.error(e)),
            },
        };
        Err(self.conflict(&mut conn, &batch, hint).await)
    }

    /// [`EventStore::tracking_position`](eventsourcing_core::EventStore::tracking_position).
    pub(crate) async fn read_tracking_position(&self, name: &str) -> Result<Option<Position>, Error> {
        let mut conn = self.checkout().await?;
        self.recorded(&mut conn, name).await
    }

    async fn recorded(
        &self,
        conn: &mut crate::pool::PgConn,
        name: &str,
    ) -> Result<Option<Position>, Error> {
        let stmt = self.statement(conn, Stmt::TrackingPosition).await?;
        let row = conn
            .client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| self.error(e))?;
        row.map(|row| {
            Ok(position_from_columns(
                row.try_get(0).map_err(pg_error)?,
                row.try_get(1).map_err(pg_error)?,
            ))
        })
        .transpose()
    }
}

fn already_processed(tracking: &Tracking, recorded: Option<Position>) -> Error {
    Error::AlreadyProcessed {
        name: tracking.name.clone(),
        // Only a recorded position at or after the attempted one refuses a write.
        recorded: recorded.unwrap_or(tracking.position),
        attempted: tracking.position,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn positions_round_trip_through_bigints() {
        let p = Position {
            commit: 7,
            seq: 42,
        };
        let (c, s) = position_columns(p).unwrap();
        assert_eq!(position_from_columns(c, s), p);
        assert!(position_columns(Position {
            commit: u64::MAX,
            seq: 0
        })
        .is_err());
    }

    #[test]
    fn statements_name_the_schema() {
        for sql in [
            append_tracked_sql("t s"),
            track_sql("t s"),
            tracking_position_sql("t s"),
        ] {
            assert!(sql.contains("\"t s\".tracking"), "{sql}");
        }
    }
}
