//! Compression and encryption on every store (memory, SQLite, PostgreSQL): the suite in
//! `tests/codecs/`, plus payloads tampered with in the database itself, and the codec that
//! `application_from` builds from the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod codecs;

use eventsourcing::codecs::{Key, Keyring, PayloadError};
use eventsourcing::prelude::*;
use eventsourcing::{EventDecodeError, PayloadCodec};

use codecs::{app, saved_widget, widget::WidgetRegistryEndpoint as Widget};

mod memory {
    async fn store() -> (eventsourcing::MemoryStore, ()) {
        (eventsourcing::MemoryStore::new(), ())
    }
    crate::codecs::codec_tests!(store);
}

mod sqlite {
    async fn store() -> (
        eventsourcing::sqlite::SqliteStore,
        eventsourcing::sqlite::testing::TempGuard,
    ) {
        eventsourcing::sqlite::testing::temp_file_store()
    }
    crate::codecs::codec_tests!(store);
}

mod postgres {
    crate::codecs::codec_tests!(eventsourcing::postgres::testing::fresh);
}

fn assert_tampered(err: &Error) {
    match err {
        Error::Decode {
            source: EventDecodeError::Codec(codec),
            ..
        } => assert_eq!(
            codec.downcast_ref::<PayloadError>(),
            Some(&PayloadError::Tampered),
            "{err}"
        ),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// One changed byte of one stored event is detected on load; a changed snapshot is only
/// skipped (the load replays the events instead, which are intact, and replaces it).
async fn tampering_is_detected<S: EventStore + Clone>(
    store: S,
    flip_last_byte: impl AsyncFn(&'static str, Uuid, u64),
) {
    let codec = PayloadCodec::new().encrypt(Keyring::new(Key::generate().unwrap()));
    let app = app(store.clone(), codec);
    let w = saved_widget(&app, "tampered").await;

    let snapshot = store.load_snapshot(w.id(), None).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 8);
    flip_last_byte("snapshots", w.id(), 8).await;
    assert_eq!(app.repository().get::<Widget>(w.id()).await.unwrap(), w);

    // The load replaced the damaged snapshot with a good one.
    let replaced = store.load_snapshot(w.id(), None).await.unwrap().unwrap();
    assert_eq!(replaced.version, 8);
    assert_ne!(replaced.payload, snapshot.payload);

    // Events are read in full when snapshots are off: the changed one is reported.
    flip_last_byte("events", w.id(), 2).await;
    let replay = Application::with_codec(store.clone(), app.codec().clone())
        .with_snapshotting(eventsourcing::Snapshotting::disabled());
    let err = replay.repository().get::<Widget>(w.id()).await.unwrap_err();
    assert_tampered(&err);
    assert!(matches!(err, Error::Decode { version: 2, .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampered_byte_is_detected() {
    let (store, guard) = eventsourcing::sqlite::testing::temp_file_store();
    let path = guard.path().to_owned();
    tampering_is_detected(
        store,
        async |table: &'static str, id: Uuid, version: u64| {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let sql = format!("SELECT payload FROM {table} WHERE stream_id = ?1 AND version = ?2");
            let mut payload: Vec<u8> = conn
                .query_row(&sql, (id.as_bytes().as_slice(), version as i64), |r| {
                    r.get(0)
                })
                .unwrap();
            let last = payload.len() - 1;
            payload[last] ^= 1;
            let sql =
                format!("UPDATE {table} SET payload = ?1 WHERE stream_id = ?2 AND version = ?3");
            let n = conn
                .execute(&sql, (payload, id.as_bytes().as_slice(), version as i64))
                .unwrap();
            assert_eq!(n, 1);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tampered_byte_is_detected() {
    let (store, schema) = eventsourcing::postgres::testing::fresh().await;
    let client = schema.client().await.unwrap();
    let name = schema.name().to_owned();
    tampering_is_detected(
        store,
        async |table: &'static str, id: Uuid, version: u64| {
            let sql = format!(
                "UPDATE {name}.{table} SET payload = set_byte(payload, length(payload) - 1, \
             get_byte(payload, length(payload) - 1) # 1) WHERE stream_id = $1 AND version = $2"
            );
            let n = client
                .execute(&sql, &[&id, &(version as i64)])
                .await
                .unwrap();
            assert_eq!(n, 1);
        },
    )
    .await;
}

/// `application_from` (what `application_from_env` calls) applies the codec settings to events
/// and snapshots; a bad key fails before any store is opened, naming the variable.
#[tokio::test]
async fn application_from_env_applies_cipher_and_compressor() {
    let key = Key::generate().unwrap().to_base64();
    let env = eventsourcing::Env::from_map([
        ("PERSISTENCE_MODULE", "eventsourcing.popo"),
        ("WIDGETS_CIPHER_TOPIC", "eventsourcing.cipher:AESCipher"),
        ("WIDGETS_CIPHER_KEY", key.as_str()),
        (
            "COMPRESSOR_TOPIC",
            "eventsourcing.compressor:ZlibCompressor",
        ),
        ("SNAPSHOT_INTERVAL", "3"),
    ])
    .with_app_name("widgets");
    let app = eventsourcing::application_from(&env).await.unwrap();
    assert!(app.codec().keyring().is_some() && app.codec().compression().is_some());
    let w = saved_widget(&app, "from env").await;
    assert_eq!(app.repository().get::<Widget>(w.id()).await.unwrap(), w);
    let stored = app.store().load(w.id(), 0, None).await.unwrap();
    assert!(stored.iter().all(|e| e.payload[0] == 0));
    let snapshot = app
        .store()
        .load_snapshot(w.id(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.payload[0], 0);

    let env = eventsourcing::Env::from_map([
        ("PERSISTENCE_MODULE", "postgres"),
        ("POSTGRES_HOST", "unreachable.invalid"),
        ("CIPHER_TOPIC", "aes"),
        ("CIPHER_KEY", "c2hvcnQ="),
    ]);
    match eventsourcing::application_from(&env).await {
        Err(Error::Config(e)) => {
            assert_eq!(e.var, "CIPHER_KEY");
            assert!(!e.to_string().contains("c2hvcnQ="), "{e}");
        }
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}
