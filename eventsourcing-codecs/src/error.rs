use std::fmt;

/// Why a payload could not be encoded or decoded, or a key could not be used.
///
/// Reaches callers inside [`CodecError`](eventsourcing_core::CodecError) (see
/// [`CodecError::downcast_ref`](eventsourcing_core::CodecError::downcast_ref)); a deleted
/// subject key also makes loads and saves fail with
/// [`Error::Shredded`](eventsourcing_core::Error::Shredded). No variant holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The envelope is shorter than its header says (a cut or damaged payload).
    #[error("the payload envelope is truncated: {len} bytes, at least {needed} needed")]
    Truncated {
        /// The bytes needed to read the header so far.
        needed: usize,
        /// The payload's length.
        len: usize,
    },
    /// The envelope was written in a format this code does not read (a newer version).
    #[error("the payload envelope has format version {version}; this code reads version 1")]
    UnknownFormat {
        /// The stored format version.
        version: u8,
    },
    /// The payload was compressed by an algorithm this code does not know.
    #[error("the payload was compressed by an unknown algorithm (id {id}; known: 1 zlib, 2 zstd)")]
    UnknownCompression {
        /// The stored algorithm id.
        id: u8,
    },
    /// The payload was encrypted by a cipher this code does not know.
    #[error("the payload was encrypted by an unknown cipher (id {id}; known: 1 AES-256-GCM)")]
    UnknownCipher {
        /// The stored cipher id.
        id: u8,
    },
    /// The envelope names a key kind this code does not know.
    #[error("the payload envelope names an unknown key kind ({kind})")]
    UnknownKeyKind {
        /// The stored key kind.
        kind: u8,
    },
    /// The payload is encrypted but no cipher key is configured (`CIPHER_KEY`).
    #[error("the payload is encrypted, but no cipher key is configured (set CIPHER_TOPIC and CIPHER_KEY)")]
    NoKey,
    /// The payload was encrypted under a key that is neither the current key nor an old one.
    #[error("the payload was encrypted under key {key_id}, which is not configured (add it to CIPHER_OLD_KEYS)")]
    UnknownKey {
        /// The stored key id (derived from the key, not the key).
        key_id: KeyId,
    },
    /// The payload is encrypted under a subject's key, but no subject key store is configured.
    #[error("the payload was encrypted under the key of subject `{subject}`, but no subject key store is configured")]
    NoSubjectKeys {
        /// The subject.
        subject: String,
    },
    /// The subject's key was deleted (crypto-shredding), or never existed in this key store.
    #[error("the key of subject `{subject}` was deleted")]
    Shredded {
        /// The subject.
        subject: String,
    },
    /// Authentication failed: the ciphertext, its header or its tag was changed, or the key
    /// with this id is not the one it was written with.
    #[error("the encrypted payload failed authentication (tampered with, or another key under the same id)")]
    Tampered,
    /// The compressed body does not decompress.
    #[error("the payload does not decompress: {reason}")]
    Decompress {
        /// The decompressor's message.
        reason: String,
    },
    /// The payload decompresses to more than the configured limit (a damaged or hostile
    /// payload).
    #[error("the payload decompresses to more than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A subject name longer than an envelope can hold (255 bytes of UTF-8).
    #[error("subject names are at most 255 bytes, this one has {len}")]
    SubjectTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The operating system's random source failed (no nonce, no new key).
    #[error("no random bytes from the operating system: {reason}")]
    Random {
        /// The error's message.
        reason: String,
    },
    /// The subject key store failed or holds a damaged entry.
    #[error("subject key store: {reason}")]
    KeyStore {
        /// What went wrong (never key material).
        reason: String,
    },
}

/// A key's id: the first four bytes of a SHA-256 of the key (with a fixed prefix), shown as
/// eight hex digits. Stored in each encrypted payload to find the key that decrypts it; it
/// reveals nothing usable about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl From<PayloadError> for eventsourcing_core::CodecError {
    fn from(err: PayloadError) -> Self {
        match &err {
            PayloadError::Shredded { subject } => {
                eventsourcing_core::CodecError::shredded(subject.clone(), err)
            }
            _ => eventsourcing_core::CodecError::new(err),
        }
    }
}
