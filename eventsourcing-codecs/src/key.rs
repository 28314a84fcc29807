use std::{fmt, sync::Arc};

use aes_gcm::{
    aead::{AeadInPlace, KeyInit},
    Aes256Gcm, Nonce, Tag,
};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{envelope::NONCE_LEN, error::KeyId, PayloadError};

/// Bytes in a key (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes in an authentication tag.
pub(crate) const TAG_LEN: usize = 16;

/// An AES-256-GCM key. Cheap to clone; the key bytes are wiped from memory when the last clone
/// is dropped, and never shown: `Debug` prints only the [`KeyId`].
#[derive(Clone)]
pub struct Key {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    id: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be read. Never holds or shows the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not base64 (standard or URL-safe alphabet, padded or not).
    #[error("is not base64 (the value is not shown)")]
    NotBase64,
    /// Decodes to the wrong number of bytes.
    #[error("decodes to {len} bytes; AES-256-GCM needs a key of 32 bytes (make one with `openssl rand -base64 32`)")]
    WrongLength {
        /// The decoded length.
        len: usize,
    },
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let cipher = Aes256Gcm::new(bytes.as_ref().into());
        let digest = Sha256::new()
            .chain_update(b"eventsourcing-rs key id\0")
            .chain_update(bytes.as_ref())
            .finalize();
        let id = KeyId([digest[0], digest[1], digest[2], digest[3]]);
        Key {
            inner: Arc::new(KeyInner { id, bytes, cipher }),
        }
    }

    /// A key from base64 (standard or URL-safe alphabet, padded or not), as `CIPHER_KEY` holds.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let decoded = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or(KeyError::NotBase64)?;
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength { len: decoded.len() })?;
        Ok(Key::from_bytes(bytes))
    }

    /// A new random key.
    pub fn generate() -> Result<Self, PayloadError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Key::from_bytes(*bytes))
    }

    /// The key as base64 (to store it in a secret manager). Handle the result as a secret.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.inner.bytes.as_ref()))
    }

    /// The key's id, stored with each payload it encrypts.
    pub fn id(&self) -> KeyId {
        self.inner.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.inner.bytes
    }

    /// Encrypts `out[from..]` in place and appends the tag; `aad` is authenticated too.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        out: &mut Vec<u8>,
        from: usize,
    ) -> Result<(), PayloadError> {
        let body = out.get_mut(from..).ok_or(PayloadError::Tampered)?;
        let tag = self
            .inner
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, body)
            // Only for bodies over 64 GiB.
            .map_err(|_| PayloadError::TooLarge { limit: 1 << 36 })?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts `sealed` (ciphertext then tag), checking it and `aad`.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, PayloadError> {
        let split = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(PayloadError::Truncated {
                needed: TAG_LEN,
                len: sealed.len(),
            })?;
        let (ciphertext, tag) = sealed.split_at(split);
        let mut plain = ciphertext.to_vec();
        self.inner
            .cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                aad,
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| PayloadError::Tampered)?;
        Ok(plain)
    }
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), PayloadError> {
    getrandom::getrandom(buf).map_err(|e| PayloadError::Random {
        reason: e.to_string(),
    })
}

/// The keys payloads are encrypted with: the current key (every new payload) and older keys
/// (still decrypted, never used to encrypt). Rotate by making a new key current and moving the
/// previous one to the old keys.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field("old", &self.old.iter().map(Key::id).collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A key ring with one key.
    pub fn new(current: Key) -> Self {
        Keyring {
            current,
            old: Vec::new(),
        }
    }

    /// Adds older keys, which decrypt but never encrypt. A key equal to the current one or to
    /// one already added is skipped.
    pub fn with_old_keys(mut self, old: impl IntoIterator<Item = Key>) -> Self {
        for key in old {
            if key.id() != self.current.id() && self.old.iter().all(|k| k.id() != key.id()) {
                self.old.push(key);
            }
        }
        self
    }

    /// The key new payloads are encrypted with.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The key with this id, current or old.
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id() == id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_keys_of_the_right_length_only_and_debug_hides_them() {
        let key = Key::generate().unwrap();
        let text = key.to_base64();
        let back = Key::from_base64(&text).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.bytes(), key.bytes());
        let shown = format!("{key:?} {:?}", Keyring::new(key.clone()));
        assert!(
            !shown.contains(text.as_str()) && shown.contains(&key.id().to_string()),
            "{shown}"
        );

        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert_eq!(
            Key::from_base64(&short).unwrap_err(),
            KeyError::WrongLength { len: 16 }
        );
        assert_eq!(
            Key::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
    }

    #[test]
    fn seal_and_open_detect_any_changed_byte() {
        let key = Key::generate().unwrap();
        let nonce = [3u8; NONCE_LEN];
        let mut out = b"head".to_vec();
        out.extend_from_slice(b"secret body");
        key.seal(&nonce, b"aad", &mut out, 4).unwrap();
        assert_eq!(key.open(&nonce, b"aad", &out[4..]).unwrap(), b"secret body");
        assert_eq!(
            key.open(&nonce, b"AAD", &out[4..]).unwrap_err(),
            PayloadError::Tampered
        );
        for i in 4..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 1;
            assert_eq!(
                key.open(&nonce, b"aad", &bad[4..]).unwrap_err(),
                PayloadError::Tampered
            );
        }
        let other = Key::generate().unwrap();
        assert_eq!(
            other.open(&nonce, b"aad", &out[4..]).unwrap_err(),
            PayloadError::Tampered
        );
    }
}
