//! The bytes around a compressed or encrypted payload.
//!
//! ```text
//! 0x00                      magic: no JSON text starts with a NUL byte, so a payload
//!                           written before compression or encryption was enabled is
//!                           recognised by its first byte and decoded as it is
//! 0x01                      format version
//! compression id            0 none, 1 zlib, 2 zstd
//! cipher id                 0 none, 1 AES-256-GCM
//! -- only when encrypted:
//! key kind                  1: a key of the key ring, 4 bytes of key id follow
//!                           2: a subject's key, 1 byte of length and the subject's UTF-8 follow
//! nonce                     12 random bytes
//! -- then the body: the (compressed) inner encoding, encrypted with the header above as
//!    associated data (so a changed header fails authentication), tag (16 bytes) last
//! ```

use crate::{error::KeyId, PayloadError};

/// The first byte of every envelope.
pub(crate) const MAGIC: u8 = 0x00;
/// The envelope format this code writes and reads.
pub(crate) const FORMAT: u8 = 1;
/// Bytes of nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// The cipher ids.
pub(crate) const CIPHER_NONE: u8 = 0;
pub(crate) const CIPHER_AES_256_GCM: u8 = 1;

const KIND_RING: u8 = 1;
const KIND_SUBJECT: u8 = 2;

/// Whose key encrypted a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRef<'a> {
    Ring(KeyId),
    Subject(&'a str),
}

/// A parsed envelope header, borrowing from the payload.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) compression: u8,
    pub(crate) cipher: Option<(KeyRef<'a>, [u8; NONCE_LEN])>,
    /// The header's bytes (the associated data of the encryption).
    pub(crate) raw: &'a [u8],
    /// What follows the header.
    pub(crate) body: &'a [u8],
}

/// Whether `bytes` is an envelope (and not a plain inner encoding).
pub(crate) fn is_envelope(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC)
}

/// Writes a header; the nonce, if any, is the last 12 bytes written.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    compression: u8,
    cipher: Option<(&KeyRef<'_>, &[u8; NONCE_LEN])>,
) -> Result<(), PayloadError> {
    out.extend_from_slice(&[MAGIC, FORMAT, compression]);
    match cipher {
        None => out.push(CIPHER_NONE),
        Some((key, nonce)) => {
            out.push(CIPHER_AES_256_GCM);
            match key {
                KeyRef::Ring(id) => {
                    out.push(KIND_RING);
                    out.extend_from_slice(&id.0);
                }
                KeyRef::Subject(subject) => {
                    let len = u8::try_from(subject.len())
                        .map_err(|_| PayloadError::SubjectTooLong { len: subject.len() })?;
                    out.push(KIND_SUBJECT);
                    out.push(len);
                    out.extend_from_slice(subject.as_bytes());
                }
            }
            out.extend_from_slice(nonce);
        }
    }
    Ok(())
}

/// Reads the header of an envelope (`is_envelope(bytes)` is true).
pub(crate) fn read_header(bytes: &[u8]) -> Result<Header<'_>, PayloadError> {
    let mut r = Reader { bytes, at: 0 };
    let _magic = r.take(1)?;
    let format = r.byte()?;
    if format != FORMAT {
        return Err(PayloadError::UnknownFormat { version: format });
    }
    let compression = r.byte()?;
    let cipher = match r.byte()? {
        CIPHER_NONE => None,
        CIPHER_AES_256_GCM => {
            let key = match r.byte()? {
                KIND_RING => {
                    let id = r.take(4)?;
                    KeyRef::Ring(KeyId([id[0], id[1], id[2], id[3]]))
                }
                KIND_SUBJECT => {
                    let len = usize::from(r.byte()?);
                    let subject =
                        std::str::from_utf8(r.take(len)?).map_err(|_| PayloadError::Tampered)?;
                    KeyRef::Subject(subject)
                }
                kind => return Err(PayloadError::UnknownKeyKind { kind }),
            };
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(r.take(NONCE_LEN)?);
            Some((key, nonce))
        }
        id => return Err(PayloadError::UnknownCipher { id }),
    };
    let (raw, body) = bytes.split_at(r.at);
    Ok(Header {
        compression,
        cipher,
        raw,
        body,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        let end = self.at + n;
        let taken = self
            .bytes
            .get(self.at..end)
            .ok_or(PayloadError::Truncated {
                needed: end,
                len: self.bytes.len(),
            })?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, PayloadError> {
        Ok(self.take(1)?[0])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_round_trip_and_every_cut_is_truncated() {
        let nonce = [7u8; NONCE_LEN];
        for key in [KeyRef::Ring(KeyId([1, 2, 3, 4])), KeyRef::Subject("alice")] {
            let mut out = Vec::new();
            write_header(&mut out, 2, Some((&key, &nonce))).unwrap();
            let header_len = out.len();
            out.extend_from_slice(b"body");
            let h = read_header(&out).unwrap();
            assert_eq!(h.compression, 2);
            assert_eq!(h.cipher, Some((key.clone(), nonce)));
            assert_eq!(h.raw.len(), header_len);
            assert_eq!(h.body, b"body");
            for cut in 1..header_len {
                assert!(
                    matches!(
                        read_header(&out[..cut]),
                        Err(PayloadError::Truncated { .. })
                    ),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_ids_are_typed() {
        assert_eq!(
            read_header(&[0, 9, 0, 0]).unwrap_err(),
            PayloadError::UnknownFormat { version: 9 }
        );
        assert_eq!(
            read_header(&[0, 1, 0, 7]).unwrap_err(),
            PayloadError::UnknownCipher { id: 7 }
        );
        assert_eq!(
            read_header(&[0, 1, 0, 1, 5]).unwrap_err(),
            PayloadError::UnknownKeyKind { kind: 5 }
        );
        let long = "x".repeat(256);
        let err = write_header(
            &mut Vec::new(),
            0,
            Some((&KeyRef::Subject(&long), &[0; NONCE_LEN])),
        )
        .unwrap_err();
        assert_eq!(err, PayloadError::SubjectTooLong { len: 256 });
    }
}
