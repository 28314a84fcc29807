use serde::{de::DeserializeOwned, Serialize};

use crate::error::BoxError;

/// Turns event payloads (and snapshots) into bytes and back.
///
/// This is the seam where other formats plug in. Byte-level stages such as compression and
/// encryption wrap a codec: a codec that encodes with an inner codec and then transforms the
/// bytes is itself a [`Codec`].
pub trait Codec: Send + Sync + 'static {
    /// Serializes a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// Deserializes a value.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: JSON through `serde_json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::new)
    }
}

/// A codec failed to encode or decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(#[source] BoxError);

impl CodecError {
    /// Wraps the underlying error.
    pub fn new(err: impl Into<BoxError>) -> Self {
        CodecError(err.into())
    }
}
