//! Least privilege: the exact grants an application role needs to run the store (and no right
//! to change or remove an event), and the optional append-only trigger that refuses `UPDATE`,
//! `DELETE` and `TRUNCATE` on events even for the owner. See [Roles](crate#roles).

use eventsourcing_core::Error;
use tokio_postgres::Client;

use crate::{error::pg_error, migrate::MIGRATIONS_TABLE, sql::quote_ident, store::PostgresStore};

/// The setting that lets the owner change events while the append-only trigger is on:
/// `SET LOCAL eventsourcing.allow_archive = 'on'` in the archiving transaction.
pub const ALLOW_ARCHIVE_SETTING: &str = "eventsourcing.allow_archive";

/// The name of the append-only trigger on `events` (and of its function, in the same schema).
pub const APPEND_ONLY_TRIGGER: &str = "eventsourcing_append_only";

/// The `GRANT` statements that let `role` run a store on `schema` of database `dbname`, and
/// nothing more, one statement per string, in order:
///
/// | object | rights | used by |
/// |---|---|---|
/// | the database | `CONNECT` | every connection (PUBLIC has it by default; granted in case it was revoked) |
/// | the schema | `USAGE` | every statement (names the tables) |
/// | `events` | `SELECT, INSERT` | saves (the identity column `position` needs no right on its sequence), loads, the log, the log-head check, `projection_lag`, status |
/// | `snapshots` | `SELECT, INSERT, UPDATE, DELETE` | saving a snapshot (`INSERT … ON CONFLICT DO UPDATE`), pruning to `MAX_SNAPSHOTS` (`DELETE`), loading |
/// | `tracking` | `SELECT, INSERT, UPDATE` | `append_tracked` (upsert), projection batches (`SELECT … FOR UPDATE`, `UPDATE`), `tracking_position`, `projection_lag` |
/// | `parked_events` | `SELECT, INSERT, UPDATE, DELETE` | parking (`INSERT … ON CONFLICT DO UPDATE`), `parked`, `unpark` (`DELETE`) |
/// | `eventsourcing_migrations` | `SELECT` | `check_schema`, `status`, `migration_status` |
///
/// Nothing else is needed: `LISTEN`/`NOTIFY` take no privilege, and the functions the store
/// calls (`pg_current_xact_id`, `pg_current_snapshot`, `pg_snapshot_xmin`, `pg_notify`,
/// `pg_advisory_xact_lock`, `hashtextextended`) are executable by PUBLIC; `pg_stat_activity`
/// (what holds the log horizon) is readable by every role, the other sessions' details only
/// with `pg_read_all_stats`. No `UPDATE`, `DELETE` or `TRUNCATE` on `events`; no `CREATE`
/// anywhere, so the application runs with `CREATE_TABLE=n` and the owner migrates.
pub fn grant_statements(dbname: &str, schema: &str, role: &str) -> Vec<String> {
    let s = quote_ident(schema);
    let r = quote_ident(role);
    vec![
        format!("GRANT CONNECT ON DATABASE {} TO {r}", quote_ident(dbname)),
        format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
        format!("GRANT SELECT, INSERT ON {s}.events TO {r}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.snapshots TO {r}"),
        format!("GRANT SELECT, INSERT, UPDATE ON {s}.tracking TO {r}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.parked_events TO {r}"),
        format!("GRANT SELECT ON {s}.{MIGRATIONS_TABLE} TO {r}"),
    ]
}

/// The statements that install the append-only trigger on `schema`'s events, idempotently: a
/// function, and a statement-level `BEFORE UPDATE OR DELETE OR TRUNCATE` trigger calling it,
/// which raises SQLSTATE 42501 unless [`ALLOW_ARCHIVE_SETTING`] is `on` in the session.
pub fn append_only_statements(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "CREATE OR REPLACE FUNCTION {s}.{APPEND_ONLY_TRIGGER}() RETURNS trigger \
         LANGUAGE plpgsql AS $fn$ \
         BEGIN \
             IF current_setting('{ALLOW_ARCHIVE_SETTING}', true) = 'on' THEN \
                 RETURN NULL; \
             END IF; \
             RAISE EXCEPTION 'events are append-only: % on %.% refused', \
                 TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME \
                 USING ERRCODE = 'insufficient_privilege', \
                       HINT = 'to archive, SET LOCAL {ALLOW_ARCHIVE_SETTING} = ''on'' in the \
                               transaction'; \
         END $fn$;\n\
         DROP TRIGGER IF EXISTS {APPEND_ONLY_TRIGGER} ON {s}.events;\n\
         CREATE TRIGGER {APPEND_ONLY_TRIGGER} BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.events \
         FOR EACH STATEMENT EXECUTE FUNCTION {s}.{APPEND_ONLY_TRIGGER}();"
    )
}

/// The statements that remove the append-only trigger and its function (idempotent).
pub fn remove_append_only_statements(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "DROP TRIGGER IF EXISTS {APPEND_ONLY_TRIGGER} ON {s}.events;\n\
         DROP FUNCTION IF EXISTS {s}.{APPEND_ONLY_TRIGGER}();"
    )
}

/// Runs [`grant_statements`] on `client` (connected as the owner), in one transaction.
///
/// Concurrent runs (say, `grants apply --tenants` beside a deployment's own) wait for each
/// other on a transaction-level advisory lock: two `GRANT`s changing the same catalog row at
/// once (the database's `CONNECT` list) would otherwise fail with "tuple concurrently updated".
pub async fn apply_grants(
    client: &mut Client,
    dbname: &str,
    schema: &str,
    role: &str,
) -> Result<(), Error> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('eventsourcing.grants', 0))",
        &[],
    )
    .await
    .map_err(pg_error)?;
    for statement in grant_statements(dbname, schema, role) {
        tx.batch_execute(&statement).await.map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

/// Installs (`on`) or removes the append-only trigger on `schema`'s events, in one
/// transaction; running it twice changes nothing.
pub async fn set_append_only(client: &mut Client, schema: &str, on: bool) -> Result<(), Error> {
    let sql = if on {
        append_only_statements(schema)
    } else {
        remove_append_only_statements(schema)
    };
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.batch_execute(&sql).await.map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// Whether the append-only trigger is installed on `schema`'s events.
pub async fn is_append_only(client: &Client, schema: &str) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = 'events' AND t.tgname = $2)",
            &[&schema, &APPEND_ONLY_TRIGGER],
        )
        .await
        .map_err(pg_error)?;
    row.try_get(0).map_err(pg_error)
}

impl PostgresStore {
    /// [`grant_statements`] for this store's database and schema.
    pub fn grant_statements(&self, role: &str) -> Vec<String> {
        let config = self.config();
        grant_statements(config.dbname().unwrap_or_default(), config.schema(), role)
    }

    /// [`apply_grants`] on a connection of this store (which must be the owner's).
    pub async fn apply_grants(&self, role: &str) -> Result<(), Error> {
        let config = self.config();
        let mut client = self.dedicated_client().await?;
        let dbname = config.dbname().unwrap_or_default();
        apply_grants(&mut client, dbname, config.schema(), role).await
    }

    /// [`set_append_only`] on a connection of this store (which must be the owner's).
    pub async fn set_append_only(&self, on: bool) -> Result<(), Error> {
        let mut client = self.dedicated_client().await?;
        set_append_only(&mut client, self.config().schema(), on).await
    }

    /// [`is_append_only`] for this store's schema.
    pub async fn is_append_only(&self) -> Result<bool, Error> {
        let conn = self.checkout().await?;
        is_append_only(&conn.client, self.config().schema()).await
    }
}
