use std::sync::Arc;

use eventsourcing_core::{ConfigError, Env, JsonCodec};

use crate::{
    codec::PayloadCodec,
    compress::Compression,
    key::{Key, Keyring},
    subject_file::FileSubjectKeys,
};

/// The cipher: `eventsourcing.cipher:AESCipher` (the Python library's topic),
/// `eventsourcing.cryptography:AESCipher`, or `aes` / `aes-256-gcm`.
pub const CIPHER_TOPIC: &str = "CIPHER_TOPIC";
/// The current key: base64 of 32 random bytes (`openssl rand -base64 32`). Encrypts every new
/// payload.
pub const CIPHER_KEY: &str = "CIPHER_KEY";
/// Earlier keys, base64, separated by commas or spaces: still decrypt, never encrypt.
pub const CIPHER_OLD_KEYS: &str = "CIPHER_OLD_KEYS";
/// A directory of per-subject keys (crypto-shredding; each stream is a subject), wrapped under
/// the current key.
pub const CIPHER_SUBJECT_KEYS: &str = "CIPHER_SUBJECT_KEYS";
/// The compressor: `eventsourcing.compressor:ZlibCompressor` (the Python library's topic),
/// `zlib`, or `zstd`.
pub const COMPRESSOR_TOPIC: &str = "COMPRESSOR_TOPIC";

impl PayloadCodec<JsonCodec> {
    /// The codec the environment asks for (JSON alone when none of the variables is set).
    ///
    /// Errors name the variable and never show a key: a key that is not base64 or not 32
    /// bytes, an unknown topic, a key without a cipher topic (it would silently write
    /// plaintext) or a cipher topic without a key.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut codec = PayloadCodec::new();
        if let Some((name, value)) = env.text(&[COMPRESSOR_TOPIC])? {
            codec = codec.compress(compressor(&name, &value)?);
        }
        let topic = env.text(&[CIPHER_TOPIC])?;
        let key = env.text(&[CIPHER_KEY])?;
        let keyring = match (topic, key) {
            (None, None) => None,
            (None, Some((name, _))) => {
                return Err(ConfigError::new(
                    name,
                    format!("is set but {CIPHER_TOPIC} is not; set {CIPHER_TOPIC}=aes to encrypt payloads (the value is not shown)"),
                ))
            }
            (Some((name, _)), None) => {
                return Err(ConfigError::new(
                    name,
                    format!("needs {CIPHER_KEY} (base64 of 32 random bytes, e.g. from `openssl rand -base64 32`)"),
                ))
            }
            (Some((topic_name, topic)), Some((key_name, key))) => {
                cipher(&topic_name, &topic)?;
                let current = Key::from_base64(&key)
                    .map_err(|e| ConfigError::new(key_name, e.to_string()))?;
                Some(Keyring::new(current).with_old_keys(old_keys(env)?))
            }
        };
        let subject_dir = env.text(&[CIPHER_SUBJECT_KEYS])?;
        match (keyring, subject_dir) {
            (None, None) => {}
            (None, Some((name, _))) => {
                return Err(ConfigError::new(
                    name,
                    format!("needs {CIPHER_TOPIC} and {CIPHER_KEY} (subject keys are wrapped under the cipher key)"),
                ))
            }
            (Some(keyring), None) => codec = codec.encrypt(keyring),
            (Some(keyring), Some((name, dir))) => {
                let keys = FileSubjectKeys::open(dir.trim(), keyring.clone())
                    .map_err(|e| ConfigError::new(name, e.to_string()))?;
                codec = codec.encrypt(keyring).subject_keys(Arc::new(keys));
            }
        }
        Ok(codec)
    }
}

fn compressor(name: &str, value: &str) -> Result<Compression, ConfigError> {
    let short = value.trim().to_ascii_lowercase();
    match short.as_str() {
        "eventsourcing.compressor:zlibcompressor" | "zlib" | "zlibcompressor" => {
            Ok(Compression::Zlib)
        }
        "zstd" | "zstandard" => Ok(Compression::Zstd),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "a known compressor (eventsourcing.compressor:ZlibCompressor, zlib or zstd)",
        )),
    }
}

fn cipher(name: &str, value: &str) -> Result<(), ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "eventsourcing.cipher:aescipher"
        | "eventsourcing.cryptography:aescipher"
        | "aes"
        | "aescipher"
        | "aes-256-gcm"
        | "aes256gcm" => Ok(()),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "a known cipher (eventsourcing.cipher:AESCipher or aes, which is AES-256-GCM)",
        )),
    }
}

fn old_keys(env: &Env) -> Result<Vec<Key>, ConfigError> {
    let Some((name, value)) = env.text(&[CIPHER_OLD_KEYS])? else {
        return Ok(Vec::new());
    };
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, text)| {
            Key::from_base64(text).map_err(|e| {
                ConfigError::new(name.clone(), format!("key {} of the list {e}", i + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::Engine;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn reads_python_topics_short_names_and_prefixes() {
        let key = b64(&[7u8; 32]);
        let old = b64(&[8u8; 32]);
        let env = Env::from_map([
            ("WIDGETS_CIPHER_TOPIC", "eventsourcing.cipher:AESCipher"),
            ("CIPHER_KEY", key.as_str()),
            ("CIPHER_OLD_KEYS", &format!("{old}, {key}")),
            (
                "COMPRESSOR_TOPIC",
                "eventsourcing.compressor:ZlibCompressor",
            ),
        ])
        .with_app_name("widgets");
        let codec = PayloadCodec::from_env(&env).unwrap();
        assert_eq!(codec.compression(), Some(Compression::Zlib));
        let ring = codec.keyring().unwrap();
        assert_eq!(ring.current().id(), Key::from_bytes([7u8; 32]).id());
        assert!(ring.get(Key::from_bytes([8u8; 32]).id()).is_some());

        let codec = PayloadCodec::from_env(&Env::from_map([("COMPRESSOR_TOPIC", "ZSTD")])).unwrap();
        assert_eq!(codec.compression(), Some(Compression::Zstd));
        assert!(codec.keyring().is_none());
        let none = PayloadCodec::from_env(&Env::from_map::<&str, &str>([])).unwrap();
        assert!(none.compression().is_none() && none.keyring().is_none());
    }

    #[test]
    fn bad_settings_name_the_variable_and_never_show_a_key() {
        let good = b64(&[1u8; 32]);
        let short = b64(&[2u8; 16]);
        // CIPHER_TOPIC and CIPHER_KEY set, as most cases have them.
        let cipher = |topic: &str, key: &str| {
            vec![
                ("CIPHER_TOPIC", topic.to_owned()),
                ("CIPHER_KEY", key.to_owned()),
            ]
        };
        let old_keys = ("CIPHER_OLD_KEYS", format!("{good},{short}"));
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (cipher("aes", &short), "WIDGETS_CIPHER_KEY"),
            (cipher("aes", "%%%secret%%%"), "WIDGETS_CIPHER_KEY"),
            (vec![("CIPHER_TOPIC", "aes".into())], "WIDGETS_CIPHER_TOPIC"),
            (vec![("CIPHER_KEY", good.clone())], "WIDGETS_CIPHER_KEY"),
            (cipher("rot13", &good), "WIDGETS_CIPHER_TOPIC"),
            (
                [cipher("aes", &good), vec![old_keys]].concat(),
                "WIDGETS_CIPHER_OLD_KEYS",
            ),
            (
                vec![("COMPRESSOR_TOPIC", "lzma".into())],
                "WIDGETS_COMPRESSOR_TOPIC",
            ),
            (
                vec![("CIPHER_SUBJECT_KEYS", "/tmp/x".into())],
                "WIDGETS_CIPHER_SUBJECT_KEYS",
            ),
        ];
        for (vars, var) in cases {
            let prefixed: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (format!("WIDGETS_{k}"), v.clone()))
                .collect();
            let err = PayloadCodec::from_env(&Env::from_map(prefixed).with_app_name("widgets"))
                .unwrap_err();
            assert_eq!(err.var, var, "{err}");
            let shown = format!("{err} {err:?}");
            for secret in [&good, &short, &"secret".to_owned()] {
                assert!(!shown.contains(secret.as_str()), "{shown}");
            }
        }
    }
}
