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

/// Whether a session of `store` is encrypted, as the server sees it.
async fn session_is_encrypted(store: &PostgresStore) -> bool {
    let client = store.dedicated_client().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// What connecting with some settings must give.
#[derive(Debug)]
enum Expect {
    /// It connects, the session encrypted or not.
    Encrypted(bool),
    /// It is refused with a message containing each of `all` and one of `any`.
    Refused {
        all: &'static [&'static str],
        any: &'static [&'static str],
    },
    /// A config error naming `var`, its message containing `says`.
    Config {
        var: &'static str,
        says: &'static str,
    },
}

#[tokio::test]
async fn each_sslmode_encrypts_verifies_or_refuses() {
    let schema = TestSchema::new().await;
    // snakeoil is issued to DNS:localhost: connecting by that name verifies, connecting to
    // 127.0.0.1 does not (the address is not in the certificate), even with the root trusted.
    let verify_full_with_root = |host: &str| {
        schema.config_with(|b| {
            b.host(host)
                .ssl_mode(SslMode::VerifyFull)
                .ssl_root_cert(server_cert())
        })
    };
    let cases = [
        (
            "require encrypts the connection",
            schema.config_with(|b| b.ssl_mode(SslMode::Require)),
            Expect::Encrypted(true),
        ),
        (
            "disable does not encrypt",
            schema.config_with(|b| b.ssl_mode(SslMode::Disable)),
            Expect::Encrypted(false),
        ),
        (
            "prefer encrypts when offered",
            schema.config_with(|b| b.ssl_mode(SslMode::Prefer)),
            Expect::Encrypted(true),
        ),
        (
            "verify-ca accepts the server certificate as root",
            schema.config_with(|b| b.ssl_mode(SslMode::VerifyCa).ssl_root_cert(server_cert())),
            Expect::Encrypted(true),
        ),
        (
            "verify-full accepts the name in the certificate",
            verify_full_with_root("localhost"),
            Expect::Encrypted(true),
        ),
        (
            "verify-full rejects another name",
            verify_full_with_root("127.0.0.1"),
            Expect::Refused {
                all: &["TLS handshake"],
                any: &["not valid for name", "NotValidForName"],
            },
        ),
        (
            "verify-full with public roots rejects a self-signed certificate",
            schema.config_with(|b| b.host("localhost").ssl_mode(SslMode::VerifyFull)),
            Expect::Refused {
                all: &[],
                any: &["UnknownIssuer", "unknown issuer"],
            },
        ),
        (
            "a missing root certificate file is a config error",
            schema.config_with(|b| {
                b.ssl_mode(SslMode::VerifyFull)
                    .ssl_root_cert("/nonexistent/root.pem")
            }),
            Expect::Config {
                var: "sslrootcert",
                says: "/nonexistent/root.pem",
            },
        ),
    ];
    for (what, config, expect) in cases {
        match (PostgresStore::connect(config).await, &expect) {
            (Ok(store), Expect::Encrypted(encrypted)) => {
                assert_eq!(session_is_encrypted(&store).await, *encrypted, "{what}");
            }
            (Err(Error::Config(e)), Expect::Config { var, says }) => {
                assert_eq!(e.var, *var, "{what}: {e}");
                assert!(e.to_string().contains(says), "{what}: {e}");
            }
            (Err(e), Expect::Refused { all, any }) if !matches!(e, Error::Config(_)) => {
                let message = e.to_string();
                assert!(
                    all.iter().all(|t| message.contains(t))
                        && any.iter().any(|t| message.contains(t)),
                    "{what}: {message}"
                );
                eprintln!("{what}: {message}");
            }
            (outcome, _) => panic!("{what}: expected {expect:?}, got {outcome:?}"),
        }
    }
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
    assert!(session_is_encrypted(&store).await);
}
