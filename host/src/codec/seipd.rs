//! The encrypted part of an artifact, written at the speed of the hardware: an OpenPGP
//! SEIPDv1 packet (symmetrically encrypted, integrity-protected data, RFC 4880 5.13 — what
//! GnuPG 2.2 reads) framed here around OpenSSL's AES-256-CFB and SHA-1.
//!
//! Why not sequoia's streaming `Encryptor`, which writes the same packet: it computes the
//! MDC (the SHA-1 that protects the plaintext's integrity) with SHA-1 *collision
//! detection* in software, which on our bench costs more than the cipher itself. Collision
//! detection protects someone *verifying* a hash against crafted collisions; the MDC is
//! checked by the reader, GnuPG computes it with plain SHA-1, and for any input that is
//! not a crafted collision block plain SHA-1 gives the same digest. Everything that needs
//! judgement stays sequoia's: the session key, the S2K and the key packets (SKESK/PKESK)
//! come from `openpgp.rs`; decryption (`restore`, `verify`) is sequoia's too, and every
//! test decrypts with real `gpg`.
//!
//! Layout of what is written (all lengths as partial body chunks of 1 MiB, then a final
//! definite length; RFC 4880 4.2.2.4):
//!
//! ```text
//! SEIPD packet:  CTB 0xD2 | version 1 | AES-CFB( IV=0,
//!     random prefix (16) | its last 2 octets again |
//!     literal packet: CTB 0xCB | 'b' | name length 0 | date 0 | data... |
//!     MDC packet: 0xD3 0x14 | SHA-1(everything above in this parenthesis, up to 0x14) )
//! ```

use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};
use std::io::{self, Write};

/// Partial body chunks of 2^18 octets (the first must be at least 512): framing costs 1
/// octet per 256 KiB, and the two chunk buffers stay small.
const CHUNK_POWER: u8 = 18;
const CHUNK: usize = 1 << CHUNK_POWER;
/// New-format packet tags (RFC 4880 4.2 and 4.3).
const CTB_SEIPD: u8 = 0xC0 | 18;
const CTB_LITERAL: u8 = 0xC0 | 11;
const CTB_MDC: u8 = 0xC0 | 19;
const AES_BLOCK: usize = 16;

/// Writes the plaintext given to it as one SEIPDv1 packet to `sink`, which already holds
/// the key packets. Call [`finish`](Self::finish): without it the packet is incomplete.
pub struct SeipdWriter<W: Write> {
    out: PartialBody<W>,
    cipher: Crypter,
    mdc: Sha1,
    /// The literal packet's body, buffered until a whole chunk can be framed.
    literal: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl<W: Write> SeipdWriter<W> {
    /// `session_key`: 32 octets for AES-256, the algorithm the key packets name.
    pub fn new(mut sink: W, session_key: &[u8]) -> io::Result<Self> {
        sink.write_all(&[CTB_SEIPD])?;
        let mut out = PartialBody::new(sink);
        out.write_all(&[1])?; // SEIPD version 1, not encrypted.
        let cipher = Crypter::new(
            Cipher::aes_256_cfb128(),
            Mode::Encrypt,
            session_key,
            Some(&[0u8; AES_BLOCK]),
        )
        .map_err(io::Error::other)?;
        let mut writer = SeipdWriter {
            out,
            cipher,
            mdc: Sha1::new(),
            literal: Vec::with_capacity(CHUNK),
            ciphertext: Vec::with_capacity(CHUNK + AES_BLOCK),
        };
        let mut prefix = [0u8; AES_BLOCK + 2];
        openssl::rand::rand_bytes(&mut prefix[..AES_BLOCK]).map_err(io::Error::other)?;
        prefix[AES_BLOCK] = prefix[AES_BLOCK - 2];
        prefix[AES_BLOCK + 1] = prefix[AES_BLOCK - 1];
        writer.encrypt(&prefix)?;
        // The literal packet: binary data, no file name, no date (as `gpg -c` of stdin).
        writer.encrypt(&[CTB_LITERAL])?;
        writer.literal.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
        Ok(writer)
    }

    /// Ends the literal packet, appends the MDC, and ends the SEIPD packet.
    pub fn finish(mut self) -> io::Result<W> {
        let mut header = Vec::with_capacity(5);
        definite_length(self.literal.len(), &mut header);
        let rest = std::mem::take(&mut self.literal);
        self.encrypt(&header)?;
        self.encrypt(&rest)?;
        self.encrypt(&[CTB_MDC, 20])?;
        let digest = std::mem::replace(&mut self.mdc, Sha1::new()).finish();
        // The digest itself is encrypted but, of course, not hashed.
        self.encrypt_unhashed(&digest)?;
        let mut tail = [0u8; AES_BLOCK];
        let n = self.cipher.finalize(&mut tail).map_err(io::Error::other)?;
        self.out.write_all(&tail[..n])?;
        self.out.finish()
    }

    fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.mdc.update(plaintext);
        self.encrypt_unhashed(plaintext)
    }

    fn encrypt_unhashed(&mut self, plaintext: &[u8]) -> io::Result<()> {
        for piece in plaintext.chunks(CHUNK) {
            self.ciphertext.resize(piece.len() + AES_BLOCK, 0);
            let n = self
                .cipher
                .update(piece, &mut self.ciphertext)
                .map_err(io::Error::other)?;
            self.out.write_all(&self.ciphertext[..n])?;
        }
        Ok(())
    }

    /// Frames and encrypts one full chunk of the literal packet's body.
    fn flush_literal_chunk(&mut self) -> io::Result<()> {
        // Taken out (not copied) for the borrow, and put back to be refilled.
        let chunk = std::mem::take(&mut self.literal);
        self.encrypt(&[partial_length_octet()])?;
        self.encrypt(&chunk)?;
        self.literal = chunk;
        self.literal.clear();
        Ok(())
    }
}

impl<W: Write> Write for SeipdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.literal.len());
        self.literal.extend_from_slice(&buf[..n]);
        if self.literal.len() == CHUNK {
            self.flush_literal_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are framed when full: flushing a partial one would need a length that
        // is not a power of two, which only the last chunk may have.
        Ok(())
    }
}

/// A packet body in partial chunks of `CHUNK` octets, then a definite length for the rest.
struct PartialBody<W: Write> {
    sink: W,
    buffer: Vec<u8>,
}

impl<W: Write> PartialBody<W> {
    fn new(sink: W) -> Self {
        PartialBody {
            sink,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    fn finish(mut self) -> io::Result<W> {
        let mut header = Vec::with_capacity(5);
        definite_length(self.buffer.len(), &mut header);
        self.sink.write_all(&header)?;
        self.sink.write_all(&self.buffer)?;
        self.sink.flush()?;
        Ok(self.sink)
    }
}

impl<W: Write> Write for PartialBody<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.sink.write_all(&[partial_length_octet()])?;
            self.sink.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn partial_length_octet() -> u8 {
    224 + CHUNK_POWER
}

/// A new-format definite body length (RFC 4880 4.2.2.1-3).
fn definite_length(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=191 => out.push(len as u8),
        192..=8383 => {
            let v = len - 192;
            out.push((v >> 8) as u8 + 192);
            out.push(v as u8);
        }
        _ => {
            out.push(255);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_lengths_use_the_shortest_form() {
        let enc = |n| {
            let mut v = Vec::new();
            definite_length(n, &mut v);
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(191), [191]);
        assert_eq!(enc(192), [192, 0]);
        assert_eq!(enc(8383), [223, 255]);
        assert_eq!(enc(8384), [255, 0, 0, 0x20, 0xc0]);
        let mut five = vec![255];
        five.extend_from_slice(&((CHUNK - 1) as u32).to_be_bytes());
        assert_eq!(enc(CHUNK - 1), five);
    }
}
