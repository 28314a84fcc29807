use std::io::{Read, Write};

use crate::PayloadError;

/// A compression algorithm for payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// zlib (DEFLATE with a zlib header), as the Python library's `ZlibCompressor`.
    Zlib,
    /// Zstandard, level 3.
    Zstd,
}

/// The id stored in the envelope for "not compressed".
pub(crate) const NONE: u8 = 0;

impl Compression {
    /// Every algorithm.
    pub const ALL: [Compression; 2] = [Compression::Zlib, Compression::Zstd];

    /// The id stored in each envelope.
    pub(crate) fn id(self) -> u8 {
        match self {
            Compression::Zlib => 1,
            Compression::Zstd => 2,
        }
    }

    pub(crate) fn from_id(id: u8) -> Result<Option<Self>, PayloadError> {
        match id {
            NONE => Ok(None),
            1 => Ok(Some(Compression::Zlib)),
            2 => Ok(Some(Compression::Zstd)),
            id => Err(PayloadError::UnknownCompression { id }),
        }
    }

    /// The short name (`zlib`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }

    /// `bytes` compressed, whether or not that is smaller (the codec stores a payload
    /// uncompressed when it is not).
    pub fn compressed(self, bytes: &[u8]) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        self.compress(bytes, &mut out)?;
        Ok(out)
    }

    /// Compresses `bytes` into `out`.
    pub(crate) fn compress(self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), PayloadError> {
        let failed = |e: std::io::Error| PayloadError::Decompress {
            reason: format!("compressing: {e}"),
        };
        match self {
            Compression::Zlib => {
                let mut encoder =
                    flate2::write::ZlibEncoder::new(out, flate2::Compression::default());
                encoder.write_all(bytes).map_err(failed)?;
                encoder.finish().map_err(failed)?;
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, 3).map_err(failed)?;
                encoder.write_all(bytes).map_err(failed)?;
                encoder.finish().map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Decompresses `bytes`, refusing output longer than `limit` bytes.
    pub(crate) fn decompress(self, bytes: &[u8], limit: usize) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(3).min(limit));
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let read = match self {
            Compression::Zlib => flate2::read::ZlibDecoder::new(bytes)
                .take(cap)
                .read_to_end(&mut out),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(bytes)
                .and_then(|d| d.take(cap).read_to_end(&mut out)),
        };
        read.map_err(|e| PayloadError::Decompress {
            reason: e.to_string(),
        })?;
        if out.len() > limit {
            return Err(PayloadError::TooLarge { limit });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_refuses_bombs_and_garbage() {
        let text = br#"{"name":"widget","colour":"blue","size":12}"#.repeat(50);
        for c in Compression::ALL {
            let mut packed = Vec::new();
            c.compress(&text, &mut packed).unwrap();
            assert!(packed.len() < text.len(), "{c:?}");
            assert_eq!(c.decompress(&packed, text.len()).unwrap(), text);
            assert_eq!(
                c.decompress(&packed, text.len() - 1).unwrap_err(),
                PayloadError::TooLarge {
                    limit: text.len() - 1
                }
            );
            assert!(matches!(
                c.decompress(b"not compressed at all", 1000),
                Err(PayloadError::Decompress { .. })
            ));
            assert_eq!(Compression::from_id(c.id()).unwrap(), Some(c));
        }
        assert_eq!(
            Compression::from_id(9).unwrap_err(),
            PayloadError::UnknownCompression { id: 9 }
        );
    }
}
