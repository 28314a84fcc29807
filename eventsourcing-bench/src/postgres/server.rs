//! The server every PostgreSQL mode runs on: the store's settings from
//! `EVENTSOURCING_BENCH_POSTGRES_URL` (default `postgresql://root@127.0.0.1:5432/test`), the raw
//! driver's settings, both without TLS, and an admin connection that creates what the raw
//! sides need and drops each mode's schemas at its end.

use std::future::Future;

use eventsourcing::postgres::{PostgresConfig, PostgresConfigBuilder, SslMode};
use tokio_postgres::Client;

use super::raw::connect;
use crate::common::BoxError;

const DEFAULT_URL: &str = "postgresql://root@127.0.0.1:5432/test";

pub(crate) struct Server {
    config: PostgresConfig,
    /// The raw driver's settings: the same server, no TLS.
    pub(crate) raw_config: tokio_postgres::Config,
    /// A raw connection for set-up and clean-up.
    pub(crate) admin: Client,
}

impl Server {
    /// The server of `EVENTSOURCING_BENCH_POSTGRES_URL`, and its admin connection.
    pub(crate) async fn connect() -> Result<Self, BoxError> {
        let url = std::env::var("EVENTSOURCING_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let config: PostgresConfig = url.parse()?;
        let mut raw_config = config.tokio_postgres_config().clone();
        raw_config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let admin = connect(&raw_config).await?;
        Ok(Server {
            config,
            raw_config,
            admin,
        })
    }

    /// Prints the header line of `mode`: where it runs and how many saves an append figure
    /// makes.
    pub(crate) fn describe(&self, mode: &str, saves: usize) {
        println!(
            "# {mode}: {}:{}/{}, no TLS, {saves} saves per append figure",
            self.config.host(),
            self.config.port(),
            self.config.dbname().unwrap_or("?")
        );
    }

    /// The store's settings on `schema` of this server, without TLS.
    pub(crate) fn store_config(&self, schema: &str) -> PostgresConfigBuilder {
        self.config
            .to_builder()
            .schema(schema)
            .ssl_mode(SslMode::Disable)
    }

    /// Runs `figures`, then drops `schemas` (also when the figures failed); returns what the
    /// figures returned.
    pub(crate) async fn dropping<T>(
        &self,
        schemas: &[&str],
        figures: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        let result = figures.await;
        for schema in schemas {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(e) = self.admin.batch_execute(&drop).await {
                eprintln!("warning: could not drop schema {schema}: {e}");
            }
        }
        result
    }
}
