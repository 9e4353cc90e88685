//! Codecs: what turns a source's bytes into a stored artifact, and back.
//!
//! Compression and encryption are types here, not strings. A run picks them from the job
//! (gzip or zstd, and OpenPGP or none); the manifest names them; a restore or verify picks
//! its decoders from the manifest, so a copy made with a codec this host does not know is
//! refused by name instead of being fed to the wrong decoder.
//!
//! Adding a compression: a variant of [`Compression`] (its manifest name, its object-name
//! suffix, its decoder), its encoder in a module beside `gzip.rs`, and the match in
//! `pipeline.rs` that builds the encoder.

pub mod gzip;
pub mod openpgp;
mod seipd;
pub mod zstd;

use anyhow::{Result, bail};
use std::io::{self, Read, Write};

/// How an artifact's plaintext is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip -1, block-parallel (one member per block; `gunzip` reads it whole). The
    /// default, as the legacy tool's.
    Gzip,
    /// zstd at a level (libzstd's range; 3 unless the job says), multi-threaded.
    Zstd { level: i32 },
}

impl Compression {
    /// What the manifest's `compression` says.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd { .. } => "zstd",
        }
    }

    /// What the object name carries after `{id}.{kind}`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Zstd { .. } => ".zst",
        }
    }

    /// The compression a manifest names (a decoder needs no level).
    pub fn from_manifest(name: &str) -> Result<Compression> {
        match name {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd {
                level: zstd::DEFAULT_LEVEL,
            }),
            other => bail!(
                "the copy is compressed with {:?}, which this version of backups cannot read",
                crate::text::for_terminal(other, 40)
            ),
        }
    }

    /// A reader of what `compressed` holds, decompressed.
    pub fn decoder<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            // Multi-member: the parallel encoder writes one gzip member per block.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Compression::Zstd { .. } => Box::new(::zstd::stream::read::Decoder::new(compressed)?),
        })
    }

    /// A writer that compresses into `inner` on `workers` threads; [`Compressor::finish`]
    /// ends the stream and gives `inner` back.
    pub fn encoder<W: Write>(self, inner: W, workers: usize) -> io::Result<Compressor<W>> {
        Ok(match self {
            // gzip -1 (as the legacy pipeline): at this level compression is the costliest
            // stage, so it gets every core, block-parallel.
            Compression::Gzip => Compressor::Gzip(gzip::ParallelGzip::new(
                inner,
                flate2::Compression::fast(),
                workers,
            )),
            Compression::Zstd { level } => Compressor::Zstd(zstd::encoder(inner, level, workers)?),
        })
    }
}

impl From<crate::config::CompressionSetting> for Compression {
    fn from(setting: crate::config::CompressionSetting) -> Self {
        match setting {
            crate::config::CompressionSetting::Gzip => Compression::Gzip,
            crate::config::CompressionSetting::Zstd { level } => Compression::Zstd {
                level: level.unwrap_or(zstd::DEFAULT_LEVEL),
            },
        }
    }
}

/// A compressing writer, whichever the codec.
pub enum Compressor<W: Write> {
    Gzip(gzip::ParallelGzip<W>),
    Zstd(::zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Ends the compressed stream; gives the writer underneath back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(gz) => gz.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(gz) => gz.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Gzip(gz) => gz.write_all(buf),
            Compressor::Zstd(z) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(gz) => gz.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

/// How an artifact is encrypted, as its manifest says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    OpenPgpPassphrase,
    OpenPgpRecipients,
}

impl Encryption {
    /// What the manifest's `encryption` says.
    pub fn name(self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::OpenPgpPassphrase => "openpgp-passphrase",
            Encryption::OpenPgpRecipients => "openpgp-recipients",
        }
    }

    /// What the object name carries after the compression's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Encryption::None => "",
            Encryption::OpenPgpPassphrase | Encryption::OpenPgpRecipients => ".gpg",
        }
    }

    /// The encryption a manifest names.
    pub fn from_manifest(name: &str) -> Result<Encryption> {
        [
            Encryption::None,
            Encryption::OpenPgpPassphrase,
            Encryption::OpenPgpRecipients,
        ]
        .into_iter()
        .find(|e| e.name() == name)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the copy is encrypted with {:?}, which this version of backups cannot read",
                crate::text::for_terminal(name, 40)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_round_trip_and_unknown_ones_are_refused_by_name() {
        assert_eq!(
            Compression::from_manifest(Compression::Gzip.name()).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_manifest("zstd").unwrap().name(),
            "zstd",
            "the level is the encoder's, not the manifest's"
        );
        for e in [
            Encryption::None,
            Encryption::OpenPgpPassphrase,
            Encryption::OpenPgpRecipients,
        ] {
            assert_eq!(Encryption::from_manifest(e.name()).unwrap(), e);
        }
        let err = Compression::from_manifest("brotli")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"brotli\""), "{err}");
        assert!(Encryption::from_manifest("rot13").is_err());
    }
}
