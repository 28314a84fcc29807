//! Compression and encryption through `Application`, written once against `EventStore` and run
//! on every store by `tests/encryption.rs`: round trips of events and snapshots, rotation,
//! crypto-shredding, wrong and missing keys, and saves that cannot encode writing nothing.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use eventsourcing::codecs::{
    Compression, FileSubjectKeys, Key, Keyring, PayloadError, SubjectKeys,
};
use eventsourcing::prelude::*;
use eventsourcing::{Codec, EventDecodeError, EventSourced, PayloadCodec, Position, Snapshotting};

#[path = "../../examples/common/widget.rs"]
pub(crate) mod widget;

use widget::WidgetRegistryEndpoint as Widget;

/// What the stored payloads must not show when encrypted.
const URL: &str = "https://secret.example.com/endpoint";

pub fn new_widget(name: &str) -> Widget {
    Widget::create(URL.into(), name.into(), "tenant-123".into())
}

/// An application with `codec`, a snapshot every 3 events.
pub fn app<S: EventStore>(store: S, codec: PayloadCodec) -> Application<S, PayloadCodec> {
    Application::with_codec(store, codec).with_snapshotting(Snapshotting::every(3))
}

/// Saves a widget with 7 renames (version 8) in two saves, with snapshots at versions 4 and 8.
pub async fn saved_widget<S: EventStore>(app: &Application<S, PayloadCodec>, name: &str) -> Widget {
    let mut w = new_widget(name);
    for i in 0..3 {
        w.update_name(format!("{name} {i}"));
    }
    app.save(&mut w).await.unwrap();
    for i in 3..7 {
        w.update_name(format!("{name} {i}"));
    }
    app.save(&mut w).await.unwrap();
    w
}

/// The payloads stored for `id`: its events and its newest snapshot.
pub async fn stored_payloads<S: EventStore>(store: &S, id: Uuid) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = store
        .load(id, 0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    let snapshot = store
        .load_snapshot(id, None)
        .await
        .unwrap()
        .expect("a snapshot");
    out.push(snapshot.payload);
    out
}

fn payload_error(err: &Error) -> PayloadError {
    match err {
        Error::Decode {
            source: EventDecodeError::Codec(codec),
            ..
        } => codec
            .downcast_ref::<PayloadError>()
            .cloned()
            .unwrap_or_else(|| panic!("{err:?}")),
        other => panic!("not a codec error: {other:?}"),
    }
}

fn keyring() -> Keyring {
    Keyring::new(Key::generate().unwrap())
}

/// Compressed, encrypted, and both: events and snapshots round-trip, through a fresh
/// application too, and nothing readable is stored when encrypted.
pub async fn round_trip_every_combination<S: EventStore + Clone>(store: S) {
    let ring = keyring();
    // The cipher alone, and each compressor without and with it.
    let mut codecs = vec![("aes".to_owned(), PayloadCodec::new().encrypt(ring.clone()))];
    for c in Compression::ALL {
        let compressed = PayloadCodec::new().compress(c);
        let both = compressed.clone().encrypt(ring.clone());
        codecs.push((c.name().to_owned(), compressed));
        codecs.push((format!("{}+aes", c.name()), both));
    }
    for (label, codec) in codecs {
        let label = label.as_str();
        let writer = app(store.clone(), codec.clone());
        let w = saved_widget(&writer, label).await;
        let encrypted = codec.keyring().is_some();
        for payload in stored_payloads(&store, w.id()).await {
            if encrypted {
                assert!(
                    !payload.windows(URL.len()).any(|x| x == URL.as_bytes()),
                    "{label}"
                );
                assert_eq!(payload[0], 0, "{label}: an envelope");
            }
        }
        // A fresh application (no cached state) loads it, from the snapshot and without.
        let reader = app(store.clone(), codec.clone());
        let loaded: Widget = reader.repository().get(w.id()).await.unwrap();
        assert_eq!(loaded, w, "{label}");
        let no_snap = Application::with_codec(store.clone(), codec.clone())
            .with_snapshotting(Snapshotting::disabled());
        assert_eq!(no_snap.repository().get::<Widget>(w.id()).await.unwrap(), w);
        let at_5: Widget = reader.repository().get_at(w.id(), 5).await.unwrap();
        assert_eq!(at_5.name, format!("{label} 3"));
        // Updates through the helper keep working.
        let renamed: Widget = reader
            .update(w.id(), |w: &mut Widget| w.rename("renamed"))
            .await
            .unwrap();
        assert_eq!(renamed.version(), 9);
    }
}

/// Payloads written before encryption was enabled still load once it is, and the stream then
/// carries both kinds.
pub async fn plain_payloads_still_load_after_encryption_is_enabled<S: EventStore + Clone>(
    store: S,
) {
    let plain = app(store.clone(), PayloadCodec::new());
    let w = saved_widget(&plain, "before").await;
    let encrypted = app(
        store.clone(),
        PayloadCodec::new()
            .compress(Compression::Zlib)
            .encrypt(keyring()),
    );
    let renamed: Widget = encrypted
        .update(w.id(), |w: &mut Widget| w.rename("after"))
        .await
        .unwrap();
    let reloaded: Widget = encrypted.repository().get(w.id()).await.unwrap();
    assert_eq!(reloaded, renamed);
    let payloads = store.load(w.id(), 0, None).await.unwrap();
    assert_eq!(payloads.len(), 9);
    assert!(payloads[..8].iter().all(|e| e.payload[0] == b'{'));
    assert_eq!(payloads[8].payload[0], 0);
}

/// Write with key 1; rotate to key 2 with key 1 old: everything loads, and new payloads are
/// under key 2 (key 2 alone reads them, key 1 alone does not).
pub async fn rotation_keeps_old_payloads_readable<S: EventStore + Clone>(store: S) {
    let k1 = Key::generate().unwrap();
    let k2 = Key::generate().unwrap();
    let before = app(
        store.clone(),
        PayloadCodec::new().encrypt(Keyring::new(k1.clone())),
    );
    let w = saved_widget(&before, "rotating").await;

    let rotated = PayloadCodec::new().encrypt(Keyring::new(k2.clone()).with_old_keys([k1.clone()]));
    let after = app(store.clone(), rotated.clone());
    assert_eq!(after.repository().get::<Widget>(w.id()).await.unwrap(), w);
    let mut fresh = new_widget("new");
    fresh.update_name("new 1".into());
    after.save(&mut fresh).await.unwrap();
    assert_eq!(
        after.repository().get::<Widget>(fresh.id()).await.unwrap(),
        fresh
    );

    let only_k2 = PayloadCodec::new().encrypt(Keyring::new(k2));
    let only_k1 = PayloadCodec::new().encrypt(Keyring::new(k1.clone()));
    for event in store.load(fresh.id(), 0, None).await.unwrap() {
        only_k2.decode::<serde_json::Value>(&event.payload).unwrap();
        let err = only_k1
            .decode::<serde_json::Value>(&event.payload)
            .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<PayloadError>(),
            Some(PayloadError::UnknownKey { .. })
        ));
    }
    // Without the old key the old stream is a typed error, not a panic.
    let forgot = app(store.clone(), only_k2.clone()).with_snapshotting(Snapshotting::disabled());
    let err = forgot.repository().get::<Widget>(w.id()).await.unwrap_err();
    assert_eq!(
        payload_error(&err),
        PayloadError::UnknownKey { key_id: k1.id() }
    );
}

/// A wrong key and a missing key are typed errors naming the stream; nothing panics.
pub async fn wrong_and_missing_keys_are_typed<S: EventStore + Clone>(store: S) {
    let k1 = Key::generate().unwrap();
    let writer = app(
        store.clone(),
        PayloadCodec::new().encrypt(Keyring::new(k1.clone())),
    );
    let w = saved_widget(&writer, "keyed").await;

    let wrong = app(store.clone(), PayloadCodec::new().encrypt(keyring()));
    let err = wrong.repository().get::<Widget>(w.id()).await.unwrap_err();
    assert_eq!(
        payload_error(&err),
        PayloadError::UnknownKey { key_id: k1.id() }
    );
    assert!(err.to_string().contains(&w.id().to_string()), "{err}");

    let missing = app(store.clone(), PayloadCodec::new());
    let err = missing
        .repository()
        .get::<Widget>(w.id())
        .await
        .unwrap_err();
    assert_eq!(payload_error(&err), PayloadError::NoKey);
    // The plain JSON codec fails cleanly as well.
    let json = Application::new(store.clone());
    let err = json.repository().get::<Widget>(w.id()).await.unwrap_err();
    assert!(matches!(err, Error::Decode { version: 1, .. }), "{err:?}");
}

/// One subject's key deleted: its stream fails to load and to save with `Error::Shredded`
/// (through its snapshot too), and writes nothing; another subject loads.
pub async fn shredded_subject_fails_typed_and_others_load<S: EventStore + Clone>(store: S) {
    let dir = tempfile::tempdir().unwrap();
    let ring = keyring();
    let keys = Arc::new(FileSubjectKeys::open(dir.path(), ring.clone()).unwrap());
    let codec = PayloadCodec::new()
        .compress(Compression::Zstd)
        .encrypt(ring.clone())
        .subject_keys(keys.clone());
    let app = app(store.clone(), codec);
    let alice = saved_widget(&app, "alice").await;
    let bob = saved_widget(&app, "bob").await;

    assert!(keys.delete(&alice.id().to_string()).unwrap());
    // A new process (new key store instance, same directory) sees the deletion too.
    let reopened = Arc::new(FileSubjectKeys::open(dir.path(), ring.clone()).unwrap());
    let other_app = self::app(
        store.clone(),
        PayloadCodec::new()
            .encrypt(ring.clone())
            .subject_keys(reopened),
    );
    for app in [&app, &other_app] {
        let err = app
            .repository()
            .get::<Widget>(alice.id())
            .await
            .unwrap_err();
        match &err {
            Error::Shredded { stream_id, subject } => {
                assert_eq!(*stream_id, alice.id());
                assert_eq!(*subject, alice.id().to_string());
            }
            other => panic!("expected Shredded, got {other:?}"),
        }
        assert!(err.is_shredded());
        assert_eq!(app.repository().get::<Widget>(bob.id()).await.unwrap(), bob);
    }
    // Saving to the shredded stream writes nothing.
    let mut stale = alice.clone();
    stale.update_name("after shredding".into());
    let err = app.save(&mut stale).await.unwrap_err();
    assert!(err.is_shredded(), "{err:?}");
    assert_eq!(store.stream_version(alice.id()).await.unwrap(), 8);
    assert_eq!(stale.pending_events().len(), 1, "pending events are kept");
    let err = app
        .update(alice.id(), |w: &mut Widget| w.rename("x"))
        .await
        .unwrap_err();
    assert!(err.is_shredded(), "{err:?}");
    // Projections see the typed error per event.
    let log = store.read_log(Position::START, 100).await.unwrap();
    let alice_event = log.iter().find(|e| e.stream_id == alice.id()).unwrap();
    let err = alice_event
        .decode::<<Widget as EventSourced>::Event, _>(app.codec())
        .unwrap_err();
    assert!(err.is_shredded(), "{err:?}");
}

/// A save whose payload cannot be encoded (a subject name too long for an envelope) fails with
/// a typed error and writes nothing.
pub async fn a_save_that_cannot_encode_writes_nothing<S: EventStore + Clone>(store: S) {
    let codec = PayloadCodec::new()
        .encrypt(keyring())
        .subject_keys(Arc::new(eventsourcing::codecs::MemorySubjectKeys::new()))
        .subject_by(|_| Some("s".repeat(300)));
    let app = app(store.clone(), codec);
    let mut good = new_widget("good");
    let mut bad = new_widget("bad");
    let err = app.save((&mut good, &mut bad)).await.unwrap_err();
    match &err {
        Error::Encode { source, .. } => assert_eq!(
            source.downcast_ref::<PayloadError>(),
            Some(&PayloadError::SubjectTooLong { len: 300 })
        ),
        other => panic!("expected Encode, got {other:?}"),
    }
    assert_eq!(store.stream_version(good.id()).await.unwrap(), 0);
    assert_eq!(store.stream_version(bad.id()).await.unwrap(), 0);
    assert!(store
        .read_log(Position::START, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Runs every test above against a store made by `$fixture`.
macro_rules! codec_tests {
    ($fixture:path) => {
        $crate::codecs::codec_tests!(@tests $fixture;
            round_trip_every_combination,
            plain_payloads_still_load_after_encryption_is_enabled,
            rotation_keeps_old_payloads_readable,
            wrong_and_missing_keys_are_typed,
            shredded_subject_fails_typed_and_others_load,
            a_save_that_cannot_encode_writes_nothing,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture().await;
                $crate::codecs::$name(store).await;
            }
        )*
    };
}
pub(crate) use codec_tests;
