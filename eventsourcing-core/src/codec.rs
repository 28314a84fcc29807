use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

/// Turns event payloads (and snapshots) into bytes and back.
///
/// This is the seam where other formats plug in. Byte-level stages such as compression and
/// encryption wrap a codec: a codec that encodes with an inner codec and then transforms the
/// bytes is itself a [`Codec`] (the `eventsourcing-codecs` crate has them).
pub trait Codec: Send + Sync + 'static {
    /// Serializes a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// Deserializes a value.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;

    /// Serializes a value written to a given stream. The application encodes every event and
    /// snapshot through this; codecs whose output depends on the stream (a key per subject,
    /// for crypto-shredding) override it. By default it is [`encode`](Self::encode).
    fn encode_in<T: Serialize + ?Sized>(
        &self,
        context: &EncodeContext,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let _ = context;
        self.encode(value)
    }
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

/// What is being encoded: an event or a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// An event's payload.
    Event,
    /// A snapshot of an aggregate's state.
    Snapshot,
}

/// Where an encoded value will be stored (see [`Codec::encode_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeContext {
    /// The stream (aggregate id).
    pub stream_id: Uuid,
    /// The aggregate type's stored name.
    pub aggregate_type: &'static str,
    /// An event or a snapshot.
    pub kind: PayloadKind,
}

impl EncodeContext {
    /// The context of a payload of `kind` in the stream `stream_id` of `aggregate_type`.
    pub fn new(stream_id: Uuid, aggregate_type: &'static str, kind: PayloadKind) -> Self {
        EncodeContext {
            stream_id,
            aggregate_type,
            kind,
        }
    }
}

/// A codec with its context fixed: its [`encode`](Codec::encode) is the inner codec's
/// [`encode_in`](Codec::encode_in). The application hands this to the generated event code.
#[derive(Debug)]
pub struct InContext<C> {
    codec: Arc<C>,
    context: EncodeContext,
}

impl<C: Codec> InContext<C> {
    /// `codec` encoding for `context`.
    pub fn new(codec: Arc<C>, context: EncodeContext) -> Self {
        InContext { codec, context }
    }
}

impl<C: Codec> Codec for InContext<C> {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        self.codec.encode_in(&self.context, value)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        self.codec.decode(bytes)
    }

    fn encode_in<T: Serialize + ?Sized>(
        &self,
        context: &EncodeContext,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        self.codec.encode_in(context, value)
    }
}

/// A codec failed to encode or decode.
///
/// A codec that keeps a key per subject says when it failed because that subject's key was
/// deleted ([`shredded`](Self::shredded)); loads and saves then fail with
/// [`Error::Shredded`](crate::Error::Shredded). Other causes can be inspected with
/// [`downcast_ref`](Self::downcast_ref).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct CodecError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
    shredded: Option<String>,
}

impl CodecError {
    /// Wraps the underlying error.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        CodecError {
            source: err.into(),
            shredded: None,
        }
    }

    /// The payload belongs to `subject`, whose key was deleted (crypto-shredding).
    pub fn shredded(
        subject: impl Into<String>,
        err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        CodecError {
            source: err.into(),
            shredded: Some(subject.into()),
        }
    }

    /// The subject whose key was deleted, if that is why this failed.
    pub fn shredded_subject(&self) -> Option<&str> {
        self.shredded.as_deref()
    }

    /// The underlying error as `E`, if it is one (e.g. `eventsourcing_codecs::PayloadError`).
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}
