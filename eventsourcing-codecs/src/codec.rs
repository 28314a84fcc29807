use std::{fmt, sync::Arc};

use eventsourcing_core::{Codec, CodecError, EncodeContext, JsonCodec};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    compress::{self, Compression},
    envelope::{self, KeyRef, NONCE_LEN},
    key::{fill_random, Key, Keyring, TAG_LEN},
    subject::{SubjectKeys, SubjectOf},
    PayloadError,
};

/// The default bound on a decompressed payload: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 << 20;

/// A codec that compresses and/or encrypts what an inner codec (JSON by default) encodes, in
/// that order, inside a small self-describing envelope (see the crate docs).
///
/// With neither stage it writes exactly what the inner codec writes. It always reads payloads
/// written without an envelope (before compression or encryption was turned on) and payloads
/// compressed by any algorithm it knows; encrypted payloads need their key.
///
/// Cheap to clone. `Debug` shows the algorithms and key ids, never a key.
#[derive(Clone)]
pub struct PayloadCodec<C = JsonCodec> {
    inner: C,
    compression: Option<Compression>,
    keyring: Option<Keyring>,
    subject_keys: Option<Arc<dyn SubjectKeys>>,
    subject_of: Option<SubjectOf>,
    max_decompressed: usize,
}

impl<C: fmt::Debug> fmt::Debug for PayloadCodec<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadCodec")
            .field("inner", &self.inner)
            .field("compression", &self.compression)
            .field("cipher", &self.keyring.as_ref().map(|_| "AES-256-GCM"))
            .field("keyring", &self.keyring)
            .field("subject_keys", &self.subject_keys)
            .field("subject_by", &self.subject_of.is_some())
            .field("max_decompressed", &self.max_decompressed)
            .finish()
    }
}

impl Default for PayloadCodec<JsonCodec> {
    fn default() -> Self {
        PayloadCodec::new()
    }
}

impl PayloadCodec<JsonCodec> {
    /// JSON, neither compressed nor encrypted (add stages with the builder methods).
    pub fn new() -> Self {
        PayloadCodec::wrapping(JsonCodec)
    }
}

impl<C: Codec> PayloadCodec<C> {
    /// Wraps another inner codec. Its encodings must never start with a NUL byte (JSON's
    /// never do), which marks an envelope.
    pub fn wrapping(inner: C) -> Self {
        PayloadCodec {
            inner,
            compression: None,
            keyring: None,
            subject_keys: None,
            subject_of: None,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    /// Compresses new payloads with `compression` (stored uncompressed when that is not
    /// smaller, which is common for small events).
    pub fn compress(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Encrypts new payloads with AES-256-GCM under the ring's current key (a random 96-bit
    /// nonce each); payloads under its old keys still decrypt.
    pub fn encrypt(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Encrypts each stream's payloads under a key of its own subject, kept in `keys`
    /// (crypto-shredding). The subject is the stream id unless [`subject_by`](Self::subject_by)
    /// says otherwise. Reading a payload needs only its envelope (which names the subject).
    pub fn subject_keys(mut self, keys: Arc<dyn SubjectKeys>) -> Self {
        self.subject_keys = Some(keys);
        self
    }

    /// Chooses the subject of each payload (`None`: the key ring's current key). Subjects are
    /// stored in clear in the envelope, at most 255 bytes: use an opaque id, never a name or
    /// an e-mail address. Applies once [`subject_keys`](Self::subject_keys) is set.
    pub fn subject_by(
        mut self,
        of: impl Fn(&EncodeContext) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.subject_of = Some(Arc::new(of));
        self
    }

    /// Refuses to decompress a payload to more than `bytes` (default 64 MiB).
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// The compression new payloads get, if any.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// The key ring, if payloads are encrypted.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The subject key store, if any: delete a subject's key through it to shred the subject.
    pub fn subject_key_store(&self) -> Option<&Arc<dyn SubjectKeys>> {
        self.subject_keys.as_ref()
    }

    /// The subject of a payload written in `context`, when subject keys are in use: by
    /// default the stream id (each aggregate is a subject).
    pub fn subject_of(&self, context: &EncodeContext) -> Option<String> {
        self.keyring.as_ref()?;
        self.subject_keys.as_ref()?;
        match &self.subject_of {
            Some(of) => of(context),
            None => Some(context.stream_id.to_string()),
        }
    }

    /// Wraps bytes the inner codec wrote, for `subject` (`None`: the key ring's key).
    pub fn seal(&self, plain: Vec<u8>, subject: Option<&str>) -> Result<Vec<u8>, PayloadError> {
        let mut packed = Vec::new();
        let compression = match self.compression {
            Some(c) => {
                c.compress(&plain, &mut packed)?;
                // An envelope that is not smaller than the plain payload is not worth it.
                (packed.len() + 4 < plain.len()).then_some(c)
            }
            None => None,
        };
        let body: &[u8] = if compression.is_some() {
            &packed
        } else {
            &plain
        };
        let compression_id = compression.map_or(compress::NONE, Compression::id);
        let Some(keyring) = &self.keyring else {
            if compression.is_none() {
                return Ok(plain);
            }
            let mut out = Vec::with_capacity(4 + body.len());
            envelope::write_header(&mut out, compression_id, None)?;
            out.extend_from_slice(body);
            return Ok(out);
        };
        let (key_ref, key) = match (subject, &self.subject_keys) {
            (Some(subject), Some(keys)) => (KeyRef::Subject(subject), keys.get_or_create(subject)?),
            _ => (
                KeyRef::Ring(keyring.current().id()),
                keyring.current().clone(),
            ),
        };
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(64 + body.len() + TAG_LEN);
        envelope::write_header(&mut out, compression_id, Some((&key_ref, &nonce)))?;
        let header_len = out.len();
        out.extend_from_slice(body);
        let (aad, _) = out.split_at(header_len);
        let aad = aad.to_vec();
        key.seal(&nonce, &aad, &mut out, header_len)?;
        Ok(out)
    }

    /// Unwraps a stored payload into what the inner codec wrote (a payload without an
    /// envelope is returned as it is).
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, PayloadError> {
        if !envelope::is_envelope(bytes) {
            return Ok(bytes.into());
        }
        let header = envelope::read_header(bytes)?;
        let compression = Compression::from_id(header.compression)?;
        let body = match &header.cipher {
            None => std::borrow::Cow::Borrowed(header.body),
            Some((key_ref, nonce)) => {
                let key = self.key_for(key_ref)?;
                key.open(nonce, header.raw, header.body)?.into()
            }
        };
        match compression {
            None => Ok(body),
            Some(c) => Ok(c.decompress(&body, self.max_decompressed)?.into()),
        }
    }

    fn key_for(&self, key_ref: &KeyRef<'_>) -> Result<Key, PayloadError> {
        let keyring = self.keyring.as_ref().ok_or(PayloadError::NoKey)?;
        match key_ref {
            KeyRef::Ring(id) => keyring
                .get(*id)
                .cloned()
                .ok_or(PayloadError::UnknownKey { key_id: *id }),
            KeyRef::Subject(subject) => {
                let keys =
                    self.subject_keys
                        .as_ref()
                        .ok_or_else(|| PayloadError::NoSubjectKeys {
                            subject: (*subject).to_owned(),
                        })?;
                keys.get(subject)?.ok_or_else(|| PayloadError::Shredded {
                    subject: (*subject).to_owned(),
                })
            }
        }
    }
}

impl<C: Codec> Codec for PayloadCodec<C> {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let plain = self.inner.encode(value)?;
        Ok(self.seal(plain, None)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let plain = self.open(bytes)?;
        self.inner.decode(&plain)
    }

    fn encode_in<T: Serialize + ?Sized>(
        &self,
        context: &EncodeContext,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let plain = self.inner.encode_in(context, value)?;
        Ok(self.seal(plain, self.subject_of(context).as_deref())?)
    }
}
