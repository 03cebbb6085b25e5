//! TLS record protection after the handshake: sealing and opening
//! application records in place with `ring`'s AEADs, from the traffic secrets
//! rustls hands over once its handshake is done (its kernel-connection API,
//! made for kTLS; this is the same thing in user space).
//!
//! Why: rustls 0.23's unbuffered API still copies every record twice inside
//! (a decrypted record is queued as a fresh `Vec`, and each outgoing record is
//! sealed in a fresh `Vec` and copied into the caller's buffer). Here a
//! received record is decrypted where it lies in the incoming buffer, and an
//! outgoing one is written once into the outgoing buffer and sealed there.
//!
//! Only the record layer is here: which records may come when (alerts,
//! post-handshake messages) is `UTls`'s business. The rules kept from RFC 8446
//! §5 and RFC 5246 §6.2 (and as rustls applies them):
//! - nonces: the IV XOR the 64-bit sequence number (TLS 1.3, and TLS 1.2 with
//!   ChaCha20-Poly1305); TLS 1.2 AES-GCM sends the 8 explicit bytes of that
//!   same nonce (so never one twice) and opens with the 4-byte salt + the
//!   explicit bytes the record carries (RFC 5288);
//! - additional data: the record header (TLS 1.3); sequence number, type,
//!   version and plaintext length (TLS 1.2);
//! - sizes: ciphertext at most 2^14 + 256 (TLS 1.3) or 2^14 + 2048 (TLS 1.2),
//!   plaintext at most 2^14, else `record_overflow`; TLS 1.3 inner content
//!   type after the zero padding, an all-zero plaintext refused;
//! - a sequence number is never used twice: exhausting it is an error
//!   (the confidentiality limit comes far earlier and is `UTls`'s to handle).

use std::ops::Range;

use ring::aead;
use rustls::{ConnectionTrafficSecrets, Error, ProtocolVersion};

/// The record header: type, version, length.
pub(crate) const HEADER: usize = 5;
/// The largest plaintext in one record.
pub(crate) const MAX_PLAIN: usize = 16 * 1024;
/// AEAD tag length of every suite here.
const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce part, sent in each record.
const EXPLICIT: usize = 8;

/// Content types (RFC 8446 §5.1).
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// How records are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protection {
    /// RFC 8446 §5.2.
    Tls13,
    /// RFC 5288: salt + explicit nonce.
    Tls12Gcm,
    /// RFC 7905: nonce as TLS 1.3.
    Tls12Chacha,
}

/// One direction's keys and sequence number.
pub(crate) struct Keys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    protection: Protection,
}

#[cfg(test)]
impl Clone for Keys {
    fn clone(&self) -> Self {
        Keys {
            key: self.key.clone(),
            iv: self.iv,
            seq: self.seq,
            protection: self.protection,
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the IV.
        f.debug_struct("Keys")
            .field("seq", &self.seq)
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys for `version` from rustls's extracted `(sequence number, secrets)`.
    pub(crate) fn new(
        version: ProtocolVersion,
        (seq, secrets): (u64, ConnectionTrafficSecrets),
    ) -> Result<Self, Error> {
        let (alg, key, iv, tls12) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&aead::AES_128_GCM, key, iv, Protection::Tls12Gcm)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&aead::AES_256_GCM, key, iv, Protection::Tls12Gcm)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, Protection::Tls12Chacha)
            }
            _ => return Err(Error::General("cipher suite not supported".into())),
        };
        let protection = match version {
            ProtocolVersion::TLSv1_3 => Protection::Tls13,
            ProtocolVersion::TLSv1_2 => tls12,
            _ => return Err(Error::General("protocol version not supported".into())),
        };
        let key = aead::UnboundKey::new(alg, key.as_ref())
            .map_err(|_| Error::General("bad traffic key".into()))?;
        let iv: [u8; 12] = iv
            .as_ref()
            .try_into()
            .map_err(|_| Error::General("bad traffic IV".into()))?;
        Ok(Keys {
            key: aead::LessSafeKey::new(key),
            iv,
            seq,
            protection,
        })
    }

    /// The sequence number of the next record.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    fn nonce(&self) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    fn advance(&mut self) -> Result<(), Error> {
        self.seq = self.seq.checked_add(1).ok_or(Error::EncryptError)?;
        Ok(())
    }

    /// Bytes before the plaintext in a sealed record.
    pub(crate) fn prefix(&self) -> usize {
        match self.protection {
            Protection::Tls12Gcm => HEADER + EXPLICIT,
            _ => HEADER,
        }
    }

    /// The wire size of a record carrying `n` bytes of plaintext.
    pub(crate) fn sealed_len(&self, n: usize) -> usize {
        let inner_type = usize::from(self.protection == Protection::Tls13);
        self.prefix() + n + inner_type + TAG
    }

    /// The largest ciphertext (behind the header) a peer may send.
    fn max_ciphertext(&self) -> usize {
        match self.protection {
            Protection::Tls13 => MAX_PLAIN + 256,
            _ => MAX_PLAIN + 2048,
        }
    }

    /// Seals a record of type `typ` in place: `rec` is exactly
    /// [`Keys::sealed_len`]`(n)` long with the `n` plaintext bytes at
    /// `rec[prefix()..]`; the header, nonce, inner type and tag are filled in.
    pub(crate) fn seal_in_place(&mut self, typ: u8, rec: &mut [u8], n: usize) -> Result<(), Error> {
        debug_assert!(n <= MAX_PLAIN);
        if rec.len() != self.sealed_len(n) {
            return Err(Error::EncryptError);
        }
        let nonce = self.nonce();
        let body_len = rec.len() - HEADER;
        let len = u16::try_from(body_len).map_err(|_| Error::EncryptError)?;
        let outer = match self.protection {
            Protection::Tls13 => APPLICATION_DATA,
            _ => typ,
        };
        let header = [outer, 3, 3, (len >> 8) as u8, len as u8];
        rec[..HEADER].copy_from_slice(&header);
        let start = self.prefix();
        let mut end = start + n;
        let mut aad_buf = [0u8; 13];
        let aad = match self.protection {
            Protection::Tls13 => {
                rec[end] = typ;
                end += 1;
                aad_buf[..HEADER].copy_from_slice(&header);
                &aad_buf[..HEADER]
            }
            _ => {
                aad_buf = tls12_aad(self.seq, typ, [3, 3], n);
                &aad_buf[..]
            }
        };
        if self.protection == Protection::Tls12Gcm {
            rec[HEADER..start].copy_from_slice(&nonce[4..]);
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut rec[start..end],
            )
            .map_err(|_| Error::EncryptError)?;
        rec[end..end + TAG].copy_from_slice(tag.as_ref());
        self.advance()
    }

    /// Seals `plain` as one record of type `typ` at the start of `out`
    /// (which must have [`Keys::sealed_len`] room): the bytes written.
    pub(crate) fn seal(&mut self, typ: u8, plain: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let len = self.sealed_len(plain.len());
        let rec = out.get_mut(..len).ok_or(Error::EncryptError)?;
        let start = self.prefix();
        rec[start..start + plain.len()].copy_from_slice(plain);
        self.seal_in_place(typ, rec, plain.len())?;
        Ok(len)
    }

    /// The length of the first record in `buf` once all of it is there
    /// (`None` until then). A header announcing more than a peer may send is
    /// `record_overflow`.
    pub(crate) fn complete_record(&self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let Some(header) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let body = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if body > self.max_ciphertext() {
            return Err(Error::PeerSentOversizedRecord);
        }
        let len = HEADER + body;
        Ok((buf.len() >= len).then_some(len))
    }

    /// Opens one complete record in place (`rec` is the whole record, as
    /// [`Keys::complete_record`] measured it): its content type and where its
    /// plaintext now lies in `rec`.
    pub(crate) fn open_in_place(&mut self, rec: &mut [u8]) -> Result<(u8, Range<usize>), Error> {
        let header: [u8; HEADER] = rec
            .get(..HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::DecryptError)?;
        if rec.len() - HEADER > self.max_ciphertext() {
            return Err(Error::PeerSentOversizedRecord);
        }
        if usize::from(u16::from_be_bytes([header[3], header[4]])) != rec.len() - HEADER {
            // Not what `complete_record` measured: TLS 1.2 would not notice
            // (its additional data has the plaintext length, not this one).
            return Err(Error::DecryptError);
        }
        let start = self.prefix();
        if rec.len() < start + TAG {
            return Err(Error::DecryptError);
        }
        let mut nonce = self.nonce();
        let mut aad_buf = [0u8; 13];
        let aad = match self.protection {
            Protection::Tls13 => {
                if header[0] != APPLICATION_DATA {
                    return Err(Error::General(
                        "unprotected record after the handshake".into(),
                    ));
                }
                aad_buf[..HEADER].copy_from_slice(&header);
                &aad_buf[..HEADER]
            }
            Protection::Tls12Gcm | Protection::Tls12Chacha => {
                if self.protection == Protection::Tls12Gcm {
                    nonce[4..].copy_from_slice(&rec[HEADER..start]);
                }
                let plain_len = rec.len() - start - TAG;
                let version = [header[1], header[2]];
                aad_buf = tls12_aad(self.seq, header[0], version, plain_len);
                &aad_buf[..]
            }
        };
        let plain_len = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut rec[start..],
            )
            .map_err(|_| Error::DecryptError)?
            .len();
        self.advance()?;
        let (typ, end) = match self.protection {
            Protection::Tls13 => {
                // The inner type is the last non-zero byte; zeros after it
                // are padding.
                let inner = &rec[start..start + plain_len];
                let Some(at) = inner.iter().rposition(|b| *b != 0) else {
                    return Err(Error::General("record without a content type".into()));
                };
                (inner[at], start + at)
            }
            _ => (header[0], start + plain_len),
        };
        if end - start > MAX_PLAIN {
            return Err(Error::PeerSentOversizedRecord);
        }
        Ok((typ, start..end))
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], plain_len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    // At most 2^14 + 2048 (checked by the caller).
    aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
    aad
}

#[cfg(test)]
mod tests;
