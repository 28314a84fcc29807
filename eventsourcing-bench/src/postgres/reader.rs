//! Raw tokio-postgres reading the store's own tables: the hand-written snapshot load and the
//! paged log read the raw sides of `load_snap_N` and `catchup` do, and the log's end.

use eventsourcing::{postgres::PostgresStore, prelude::*, Position, StoredEvent};
use tokio_postgres::{
    types::{FromSql, Json, Type},
    Client, Statement,
};

use super::raw::{connect_prepared, fold_events};
use crate::common::{
    fold::{Fold, Folded},
    BoxError,
};

/// `xid8` (the store's `tx_id`): an 8-byte big-endian unsigned integer in binary form.
struct Xid8(u64);

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Xid8(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }
}

/// The position of the newest event of the store's log (all writers have finished).
pub(crate) async fn log_end(store: &PostgresStore) -> Result<Position, BoxError> {
    let client = store.dedicated_client().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT tx_id, position FROM \"{}\".events \
                 ORDER BY tx_id DESC, position DESC LIMIT 1",
                store.config().schema()
            ),
            &[],
        )
        .await?;
    Ok(match row {
        Some(row) => Position {
            commit: row.try_get::<_, Xid8>(0)?.0,
            seq: u64::try_from(row.try_get::<_, i64>(1)?)?,
        },
        None => Position::START,
    })
}

/// A raw connection reading the store's own tables with prepared statements.
pub(crate) struct Reader {
    client: Client,
    snapshot: Statement,
    events_after: Statement,
    log_page: Statement,
}

impl Reader {
    /// A new raw connection to `store`'s database (without TLS), preparing its statements on
    /// the store's own tables.
    pub(crate) async fn connect(store: &PostgresStore) -> Result<Self, BoxError> {
        let schema = store.config().schema();
        let mut config = store.config().tokio_postgres_config().clone();
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, [snapshot, events_after, log_page]) = connect_prepared(
            &config,
            [
                format!(
                    "SELECT version, state_type, fingerprint, payload FROM \"{schema}\".snapshots \
                     WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
                ),
                format!(
                    "SELECT version, timestamp, event_type, payload FROM \"{schema}\".events \
                     WHERE stream_id = $1 AND version > $2 ORDER BY version"
                ),
                format!(
                    "SELECT stream_id, version, tx_id, position, event_type, schema_version, \
                            timestamp, payload, metadata FROM \"{schema}\".events \
                     WHERE (tx_id, position) > ($1::text::xid8, $2::int8) \
                     ORDER BY tx_id, position LIMIT $3"
                ),
            ],
        )
        .await?;
        Ok(Reader {
            client,
            snapshot,
            events_after,
            log_page,
        })
    }

    /// The newest snapshot (if it is of this shape), then the events after it, folded.
    pub(crate) async fn load_with_snapshot(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let mut fold = Fold::new();
        if let Some(row) = self.client.query_opt(&self.snapshot, &[&stream]).await? {
            fold.snapshot(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            )?;
        }
        let after = i64::try_from(fold.version())?;
        let rows = self
            .client
            .query(&self.events_after, &[&stream, &after])
            .await?;
        fold_events(fold, &rows)
    }

    /// Reads the first `count` events of the store's log in pages of `page`, each row turned
    /// into a `StoredEvent`, and returns the last one's position.
    pub(crate) async fn read_log(&self, count: usize, page: usize) -> Result<Position, BoxError> {
        let (mut after, mut read) = (Position::START, 0usize);
        while read < count {
            let limit = i64::try_from(page.min(count - read))?;
            let commit = after.commit.to_string();
            let seq = i64::try_from(after.seq)?;
            let rows = self
                .client
                .query(&self.log_page, &[&commit, &seq, &limit])
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let metadata: Option<Json<Metadata>> = row.try_get(8)?;
                let event = StoredEvent {
                    stream_id: row.try_get(0)?,
                    version: u64::try_from(row.try_get::<_, i64>(1)?)?,
                    position: Position {
                        commit: row.try_get::<_, Xid8>(2)?.0,
                        seq: u64::try_from(row.try_get::<_, i64>(3)?)?,
                    },
                    event_type: row.try_get(4)?,
                    schema_version: u32::try_from(row.try_get::<_, i32>(5)?)?,
                    timestamp: row.try_get(6)?,
                    payload: row.try_get(7)?,
                    metadata: metadata.map(|Json(m)| m).unwrap_or_default(),
                    stream_type: String::new(),
                    defect: None,
                };
                after = event.position;
                std::hint::black_box(event);
            }
            read += rows.len();
        }
        Ok(after)
    }
}
