//! TLS against the local server, whose certificate is Debian's self-signed `ssl-cert-snakeoil`
//! (issued to DNS:localhost).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use eventsourcing_core::Error;
use eventsourcing_postgres::{testing::TestSchema, PostgresConfig, PostgresStore, SslMode};

/// The certificate the test server presents, to trust as a root for `verify-ca`/`verify-full`.
fn server_cert() -> PathBuf {
    let path = std::env::var("EVENTSOURCING_TEST_POSTGRES_ROOT_CERT")
        .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_owned());
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} does not exist: set EVENTSOURCING_TEST_POSTGRES_ROOT_CERT to the PEM certificate \
         (or its root) that the test server presents",
        path.display()
    );
    path
}

async fn is_encrypted(config: PostgresConfig) -> Result<bool, Error> {
    let store = PostgresStore::connect(config).await?;
    let client = store.dedicated_client().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn require_encrypts_the_connection() {
    let schema = TestSchema::new().await;
    let config = schema
        .config()
        .to_builder()
        .ssl_mode(SslMode::Require)
        .build()
        .unwrap();
    assert!(is_encrypted(config).await.unwrap());
}

#[tokio::test]
async fn require_from_a_connection_string_encrypts_pooled_connections_too() {
    let schema = TestSchema::new().await;
    let url = eventsourcing_postgres::testing::url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let config: PostgresConfig = if url.starts_with("postgres") {
        format!("{url}{sep}sslmode=require")
    } else {
        format!("{url} sslmode=require")
    }
    .parse()
    .unwrap();
    let config = config.to_builder().schema(schema.name()).build().unwrap();
    let store = PostgresStore::connect(config).await.unwrap();
    use eventsourcing_core::EventStore;
    // Goes through the pool: the connection is encrypted, and the store works over it.
    store.stream_version(uuid::Uuid::new_v4()).await.unwrap();
    let client = store.dedicated_client().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn disable_does_not_encrypt_and_prefer_does_when_offered() {
    let schema = TestSchema::new().await;
    let with = |mode| schema.config().to_builder().ssl_mode(mode).build().unwrap();
    assert!(!is_encrypted(with(SslMode::Disable)).await.unwrap());
    assert!(is_encrypted(with(SslMode::Prefer)).await.unwrap());
}

#[tokio::test]
async fn verify_ca_accepts_the_server_certificate_as_root() {
    let schema = TestSchema::new().await;
    let config = schema
        .config()
        .to_builder()
        .ssl_mode(SslMode::VerifyCa)
        .ssl_root_cert(server_cert())
        .build()
        .unwrap();
    assert!(is_encrypted(config).await.unwrap());
}

#[tokio::test]
async fn verify_full_accepts_the_name_in_the_certificate_and_rejects_another() {
    // snakeoil is issued to DNS:localhost: connecting by that name verifies, connecting to
    // 127.0.0.1 does not (the address is not in the certificate), even with the root trusted.
    let schema = TestSchema::new().await;
    let with_host = |host: &str| {
        schema
            .config()
            .to_builder()
            .host(host)
            .ssl_mode(SslMode::VerifyFull)
            .ssl_root_cert(server_cert())
            .build()
            .unwrap()
    };
    assert!(is_encrypted(with_host("localhost")).await.unwrap());
    let err = is_encrypted(with_host("127.0.0.1")).await.unwrap_err();
    let message = format!("{err}");
    assert!(message.contains("TLS handshake"), "{message}");
    assert!(
        message.contains("not valid for name") || message.contains("NotValidForName"),
        "{message}"
    );
    eprintln!("{message}");
}

#[tokio::test]
async fn verify_full_with_public_roots_rejects_a_self_signed_certificate() {
    let schema = TestSchema::new().await;
    let config = schema
        .config()
        .to_builder()
        .host("localhost")
        .ssl_mode(SslMode::VerifyFull)
        .build()
        .unwrap();
    let err = is_encrypted(config).await.unwrap_err();
    let message = format!("{err}");
    assert!(
        message.contains("UnknownIssuer") || message.contains("unknown issuer"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_root_certificate_file_is_a_config_error() {
    let schema = TestSchema::new().await;
    let config = schema
        .config()
        .to_builder()
        .ssl_mode(SslMode::VerifyFull)
        .ssl_root_cert("/nonexistent/root.pem")
        .build()
        .unwrap();
    match PostgresStore::connect(config).await {
        Err(Error::Config(e)) => {
            assert_eq!(e.var, "sslrootcert");
            assert!(e.to_string().contains("/nonexistent/root.pem"), "{e}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
