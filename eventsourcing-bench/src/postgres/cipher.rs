//! `-- postgres-cipher`: the cipher figures (`common/cipher.rs`) on a new schema of the server
//! of `EVENTSOURCING_BENCH_POSTGRES_URL`, dropped at the end.

use eventsourcing::postgres::{PostgresConfig, PostgresStore, SslMode};

use super::raw::connect;
use crate::common::{cipher, BoxError};

pub(crate) async fn run(saves: usize) -> Result<(), BoxError> {
    let url = std::env::var("EVENTSOURCING_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| super::DEFAULT_URL.to_owned());
    let schema = format!("es_bench_cipher_{}", std::process::id());
    let config: PostgresConfig = url.parse()?;
    println!(
        "# postgres-cipher: {}:{}/{}, no TLS, {saves} saves per append figure",
        config.host(),
        config.port(),
        config.dbname().unwrap_or("?")
    );
    let mut raw_config: tokio_postgres::Config = config.tokio_postgres_config().clone();
    raw_config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let admin = connect(&raw_config).await?;
    let result = async {
        let store = PostgresStore::connect(
            config
                .to_builder()
                .schema(schema.as_str())
                .ssl_mode(SslMode::Disable)
                .build()?,
        )
        .await?;
        cipher::figures(store, saves).await
    }
    .await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
    {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
    result
}
