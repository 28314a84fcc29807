//! The codec on its own: every combination round-trips, and every kind of bad input is a typed
//! error (never a panic, never a wrong value).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use eventsourcing_codecs::{
    Compression, Key, Keyring, MemorySubjectKeys, PayloadCodec, PayloadError, SubjectKeys,
};
use eventsourcing_core::{Codec, CodecError, EncodeContext, JsonCodec, PayloadKind, Uuid};
use proptest::prelude::*;
use serde_json::{json, Value};

fn payload_error(err: &CodecError) -> &PayloadError {
    err.downcast_ref::<PayloadError>()
        .unwrap_or_else(|| panic!("not a PayloadError: {err}"))
}

/// A new random key.
fn key() -> Key {
    Key::generate().unwrap()
}

/// The cipher alone, with `key` as its only key.
fn cipher(key: Key) -> PayloadCodec {
    PayloadCodec::new().encrypt(Keyring::new(key))
}

fn context(stream: Uuid) -> EncodeContext {
    EncodeContext::new(stream, "Widget", PayloadKind::Event)
}

/// Every combination: no stage, each compressor, the cipher, each compressor and the cipher,
/// and the cipher with a key per subject.
fn every_codec(keyring: &Keyring) -> Vec<PayloadCodec> {
    let mut out = vec![PayloadCodec::new()];
    for c in Compression::ALL {
        out.push(PayloadCodec::new().compress(c));
        out.push(PayloadCodec::new().compress(c).encrypt(keyring.clone()));
    }
    out.push(PayloadCodec::new().encrypt(keyring.clone()));
    out.push(
        PayloadCodec::new()
            .compress(Compression::Zstd)
            .encrypt(keyring.clone())
            .subject_keys(Arc::new(MemorySubjectKeys::new())),
    );
    out
}

fn widget() -> Value {
    json!({"name": "blue widget", "colour": "blue", "size": 12, "tags": ["a", "b"]})
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn every_combination_round_trips_any_json(value in json_value(), stream in any::<u128>()) {
        let keyring = Keyring::new(key());
        let ctx = context(Uuid::from_u128(stream));
        // What JSON alone gives back (serde_json may round the last digit of a float).
        let expected: Value = JsonCodec.decode(&JsonCodec.encode(&value).unwrap()).unwrap();
        for codec in every_codec(&keyring) {
            let bytes = codec.encode_in(&ctx, &value).unwrap();
            let back: Value = codec.decode(&bytes).unwrap();
            prop_assert_eq!(&back, &expected, "{:?}", codec);
            let bytes = codec.encode(&value).unwrap();
            let back: Value = codec.decode(&bytes).unwrap();
            prop_assert_eq!(&back, &expected, "{:?}", codec);
        }
    }
}

#[test]
fn plain_json_written_before_encryption_still_decodes() {
    let keyring = Keyring::new(key());
    let legacy = JsonCodec.encode(&widget()).unwrap();
    for codec in every_codec(&keyring) {
        let back: Value = codec.decode(&legacy).unwrap();
        assert_eq!(back, widget());
    }
    // Without any stage the codec writes exactly what the JSON codec writes.
    assert_eq!(PayloadCodec::new().encode(&widget()).unwrap(), legacy);
}

#[test]
fn each_payload_gets_a_fresh_nonce() {
    let codec = cipher(key());
    let a = codec.encode(&widget()).unwrap();
    let b = codec.encode(&widget()).unwrap();
    assert_ne!(a, b);
    assert!(!a.windows(4).any(|w| w == b"blue"), "plaintext visible");
}

#[test]
fn wrong_and_missing_keys_are_typed_errors() {
    let (k1, k2) = (key(), key());
    let writer = cipher(k1.clone());
    let bytes = writer.encode(&widget()).unwrap();

    let wrong = cipher(k2);
    let err = wrong.decode::<Value>(&bytes).unwrap_err();
    assert_eq!(
        payload_error(&err),
        &PayloadError::UnknownKey { key_id: k1.id() }
    );
    assert!(err.to_string().contains(&k1.id().to_string()), "{err}");

    let missing = PayloadCodec::new();
    let err = missing.decode::<Value>(&bytes).unwrap_err();
    assert_eq!(payload_error(&err), &PayloadError::NoKey);
}

#[test]
fn any_changed_byte_is_detected() {
    let ctx = context(Uuid::from_u128(7));
    for codec in [
        cipher(key()),
        PayloadCodec::new()
            .compress(Compression::Zlib)
            .encrypt(Keyring::new(key()))
            .subject_keys(Arc::new(MemorySubjectKeys::new())),
    ] {
        let bytes = codec.encode_in(&ctx, &widget()).unwrap();
        for i in 0..bytes.len() {
            for flip in [1u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                // Never a panic, never a value; flips in the nonce or the ciphertext fail
                // authentication.
                let err = codec.decode::<Value>(&bad).unwrap_err();
                if i >= bytes.len() - 40 {
                    assert_eq!(payload_error(&err), &PayloadError::Tampered, "byte {i}");
                }
            }
        }
    }
}

#[test]
fn truncated_envelopes_are_typed_errors() {
    let codec = PayloadCodec::new()
        .compress(Compression::Zlib)
        .encrypt(Keyring::new(key()));
    let bytes = codec.encode(&widget()).unwrap();
    for cut in 1..bytes.len() {
        let err = codec.decode::<Value>(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(
                payload_error(&err),
                PayloadError::Truncated { .. } | PayloadError::Tampered
            ),
            "cut {cut}: {err}"
        );
    }
    // The header alone (13 of its 25 bytes): truncated.
    let err = codec.decode::<Value>(&bytes[..13]).unwrap_err();
    assert!(matches!(
        payload_error(&err),
        PayloadError::Truncated { .. }
    ));
}

#[test]
fn unknown_compression_and_cipher_ids_are_typed_errors() {
    let codec = PayloadCodec::new().compress(Compression::Zstd);
    let mut bytes = codec.encode(&vec![widget(); 20]).unwrap();
    assert_eq!(&bytes[..4], &[0, 1, 2, 0], "zstd envelope");
    bytes[2] = 9;
    let err = codec.decode::<Value>(&bytes).unwrap_err();
    assert_eq!(
        payload_error(&err),
        &PayloadError::UnknownCompression { id: 9 }
    );
    bytes[2] = 2;
    bytes[3] = 3;
    let err = codec.decode::<Value>(&bytes).unwrap_err();
    assert_eq!(payload_error(&err), &PayloadError::UnknownCipher { id: 3 });
}

#[test]
fn a_decompression_bomb_is_refused() {
    // 2 MB of JSON (`[0,0,…]`) that compresses to a few hundred bytes.
    let codec = PayloadCodec::new().compress(Compression::Zstd);
    let bytes = codec.encode(&vec![0u8; 1 << 20]).unwrap();
    assert!(bytes.len() < 4096, "{}", bytes.len());
    let small = codec.clone().max_decompressed(1 << 16);
    let err = small.decode::<Value>(&bytes).unwrap_err();
    assert_eq!(
        payload_error(&err),
        &PayloadError::TooLarge { limit: 1 << 16 }
    );
}

#[test]
fn rotation_old_keys_decrypt_new_payloads_use_the_current_key() {
    let (k1, k2) = (key(), key());
    let before = cipher(k1.clone());
    let old_payload = before.encode(&widget()).unwrap();
    let after = PayloadCodec::new().encrypt(Keyring::new(k2.clone()).with_old_keys([k1]));
    assert_eq!(after.decode::<Value>(&old_payload).unwrap(), widget());
    let new_payload = after.encode(&widget()).unwrap();
    // The new payload is under key 2: a codec with key 2 alone reads it, key 1 alone does not.
    let only_k2 = cipher(k2);
    assert_eq!(only_k2.decode::<Value>(&new_payload).unwrap(), widget());
    assert!(before.decode::<Value>(&new_payload).is_err());
}

#[test]
fn a_shredded_subject_is_a_typed_error_and_others_still_decode() {
    let keys = Arc::new(MemorySubjectKeys::new());
    let codec = PayloadCodec::new()
        .encrypt(Keyring::new(key()))
        .subject_keys(keys.clone());
    let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let a = codec.encode_in(&context(alice), &widget()).unwrap();
    let b = codec.encode_in(&context(bob), &widget()).unwrap();
    assert!(keys.delete(&alice.to_string()).unwrap());

    let err = codec.decode::<Value>(&a).unwrap_err();
    assert_eq!(err.shredded_subject(), Some(alice.to_string().as_str()));
    assert_eq!(codec.decode::<Value>(&b).unwrap(), widget());
    // No new key for a shredded subject: encoding fails too.
    let err = codec.encode_in(&context(alice), &widget()).unwrap_err();
    assert_eq!(err.shredded_subject(), Some(alice.to_string().as_str()));
    // Reading a subject payload without a subject key store is typed as well.
    let no_store = PayloadCodec::new().encrypt(codec.keyring().unwrap().clone());
    let err = no_store.decode::<Value>(&b).unwrap_err();
    assert!(matches!(
        payload_error(&err),
        PayloadError::NoSubjectKeys { .. }
    ));
}

#[test]
fn debug_never_shows_a_key() {
    let key = key();
    let codec = PayloadCodec::new()
        .compress(Compression::Zlib)
        .encrypt(Keyring::new(key.clone()))
        .subject_keys(Arc::new(MemorySubjectKeys::new()));
    let shown = format!("{codec:?}");
    assert!(!shown.contains(key.to_base64().as_str()), "{shown}");
    assert!(
        shown.contains(&key.id().to_string()) && shown.contains("Zlib"),
        "{shown}"
    );
}
