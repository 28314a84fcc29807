//! Compression and authenticated encryption of event and snapshot payloads, key rotation and
//! crypto-shredding, for `eventsourcing`.
//!
//! [`PayloadCodec`] wraps the JSON codec (or any [`Codec`](eventsourcing_core::Codec)): it
//! compresses (zlib or zstd) and then encrypts (AES-256-GCM, a random 96-bit nonce per
//! payload, from the RustCrypto `aes-gcm` crate) what the inner codec writes. Each payload
//! carries a small envelope (see `envelope.rs`): a magic byte, the format version, the
//! compression and cipher ids, the key id (or the subject) and the nonce. So:
//!
//! - payloads written before compression or encryption was enabled still decode (they have no
//!   envelope);
//! - a payload compressed by an unknown algorithm, encrypted under a key that is not
//!   configured, cut short or changed in any byte is a typed [`PayloadError`], never a panic;
//! - rotating keys is configuration: the current key encrypts, old keys still decrypt;
//! - with [`SubjectKeys`], each subject (by default each stream) gets a key of its own, kept
//!   wrapped under the current key ([`FileSubjectKeys`]); deleting it makes that subject's
//!   events and snapshots fail to load with
//!   [`Error::Shredded`](eventsourcing_core::Error::Shredded), while others load.
//!
//! From the environment ([`PayloadCodec::from_env`], used by the facade's
//! `application_from_env`): [`CIPHER_TOPIC`], [`CIPHER_KEY`], [`CIPHER_OLD_KEYS`],
//! [`CIPHER_SUBJECT_KEYS`], [`COMPRESSOR_TOPIC`].
//!
//! Keys are never shown: `Debug` prints key ids, errors name variables.
//!
//! Modules (each uses only those above it): `error`, `envelope`, `compress`, `key`,
//! `subject`, `subject_file`, `codec`, `env`.

mod codec;
mod compress;
mod env;
mod envelope;
mod error;
mod key;
mod subject;
mod subject_file;

pub use codec::{PayloadCodec, DEFAULT_MAX_DECOMPRESSED};
pub use compress::Compression;
pub use env::{CIPHER_KEY, CIPHER_OLD_KEYS, CIPHER_SUBJECT_KEYS, CIPHER_TOPIC, COMPRESSOR_TOPIC};
pub use error::{KeyId, PayloadError};
pub use key::{Key, KeyError, Keyring, KEY_LEN};
pub use subject::{MemorySubjectKeys, SubjectKeys, SubjectOf};
pub use subject_file::FileSubjectKeys;
