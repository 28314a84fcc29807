//! Opening the store the environment names, as `application_from_env` does:
//! `PERSISTENCE_MODULE` chooses the store, the seed's variables configure it, and `--app NAME`
//! makes `NAME_`-prefixed variables win. The tool never creates tables as a side effect
//! (`CREATE_TABLE` is ignored): only `migrate` does.

use std::path::Path;

use eventsourcing::{
    postgres::{PostgresConfig, PostgresStore},
    sqlite::{SqliteConfig, SqliteStore},
    AnyStore, Env, StoreKind, PERSISTENCE_MODULE,
};

use serde::Serialize;

use crate::output::{Failure, Output};

/// What every command gets: the settings' source and where to print.
#[derive(Debug)]
pub(crate) struct Context {
    app: Option<String>,
    pub(crate) out: Output,
}

/// Whether opening may create the database (a SQLite file): only `migrate` and `import` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// The database must exist already.
    Existing,
    /// A missing SQLite file is created (then migrated by the caller).
    MayCreate,
}

impl Context {
    pub(crate) fn new(app: Option<String>, out: Output) -> Self {
        Context { app, out }
    }

    /// The process environment, read with the `--app` prefix first.
    pub(crate) fn env(&self) -> Env {
        let env = Env::from_process();
        match &self.app {
            Some(app) => env.with_app_name(app),
            None => env,
        }
    }

    /// Prints `report` about `store`: with `--json` one document, the store's description
    /// (`store`) first, then the report's fields; as text what `text` makes of the description
    /// and the report.
    pub(crate) fn report_on<T: Serialize>(
        &self,
        store: &AnyStore,
        report: &T,
        text: impl FnOnce(&str, &T) -> String,
    ) -> Result<(), Failure> {
        #[derive(Serialize)]
        struct OnStore<'a, T> {
            store: String,
            #[serde(flatten)]
            report: &'a T,
        }
        let report = OnStore {
            store: describe(store),
            report,
        };
        self.out.report(&report, |r| text(&r.store, r.report))
    }

    /// Opens the store the environment names, which must exist, without migrating it.
    pub(crate) async fn open(&self) -> Result<AnyStore, Failure> {
        self.open_as(Open::Existing).await
    }

    /// Opens the store the environment names, creating a missing SQLite file (the caller
    /// migrates it).
    pub(crate) async fn open_or_create(&self) -> Result<AnyStore, Failure> {
        self.open_as(Open::MayCreate).await
    }

    async fn open_as(&self, open: Open) -> Result<AnyStore, Failure> {
        let env = self.env();
        refuse_a_silent_default(&env)?;
        match StoreKind::from_env(&env)? {
            StoreKind::Sqlite => {
                let config = SqliteConfig::from_env(&env)?
                    .to_builder()
                    .create_table(false)
                    .build();
                let dbname = config.dbname().to_owned();
                if open == Open::Existing && !config.is_memory() && !Path::new(&dbname).exists() {
                    return Err(Failure::Usage(format!(
                        "no SQLite database at `{dbname}` (SQLITE_DBNAME): create it with \
                         `eventsourcing-admin migrate`, or point SQLITE_DBNAME at the \
                         application's file"
                    )));
                }
                Ok(AnyStore::Sqlite(SqliteStore::open(config).await?))
            }
            StoreKind::Postgres => {
                // One connection at a time is enough for the tool; never DDL on connect.
                let config = PostgresConfig::from_env(&env)?
                    .to_builder()
                    .create_table(false)
                    .pool_size(0)
                    .max_overflow(2)
                    .build()?;
                Ok(AnyStore::Postgres(PostgresStore::connect(config).await?))
            }
            StoreKind::Memory => Err(Failure::Usage(format!(
                "{PERSISTENCE_MODULE} names the in-memory store, which keeps nothing to \
                 administer: set it to eventsourcing.sqlite or eventsourcing.postgres"
            ))),
        }
    }
}

/// PostgreSQL settings without `PERSISTENCE_MODULE` would open the default, SQLite: an
/// operator who set `DATABASE_URL` meant PostgreSQL, and `migrate` would create a stray SQLite
/// file instead. Say which variable to set.
fn refuse_a_silent_default(env: &Env) -> Result<(), Failure> {
    if env.lookup(&[PERSISTENCE_MODULE]).is_some() {
        return Ok(());
    }
    let postgres = [
        "DATABASE_URL",
        "POSTGRES_HOST",
        "POSTGRES_DBNAME",
        "POSTGRES_DB",
    ];
    match env.lookup(&postgres) {
        Some((var, _)) => Err(Failure::Usage(format!(
            "{PERSISTENCE_MODULE} is not set, so the store would be SQLite, but {var} is set: \
             set {PERSISTENCE_MODULE}=eventsourcing.postgres (or eventsourcing.sqlite)"
        ))),
        None => Ok(()),
    }
}

/// Which database `store` is, for the first line of a report: the SQLite file, or the
/// PostgreSQL server, database and schema (never the password).
pub(crate) fn describe(store: &AnyStore) -> String {
    match store {
        AnyStore::Sqlite(s) => format!("SQLite `{}`", s.config().dbname()),
        AnyStore::Postgres(s) => {
            let c = s.config();
            format!(
                "PostgreSQL {}:{}/{} schema `{}`",
                c.host(),
                c.port(),
                c.dbname().unwrap_or("?"),
                c.schema()
            )
        }
        other => format!("{:?}", other.kind()),
    }
}
