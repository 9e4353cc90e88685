//! Codecs: what turns a source's bytes into a stored artifact, and back.
//!
//! Compression and encryption are types here, not strings. A run picks them from the job
//! (today: gzip, and OpenPGP or none); the manifest names them; a restore or verify picks
//! its decoders from the manifest, so a copy made with a codec this host does not know is
//! refused by name instead of being fed to the wrong decoder.
//!
//! Adding a compression: a variant of [`Compression`] (its manifest name, its object-name
//! suffix, its decoder), its encoder in a module beside `gzip.rs`, and the match in
//! `pipeline.rs` that builds the encoder.

pub mod gzip;
pub mod openpgp;
mod seipd;

use anyhow::{Result, bail};
use std::io::Read;

/// How an artifact's plaintext is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip -1, block-parallel (one member per block; `gunzip` reads it whole).
    Gzip,
}

impl Compression {
    /// What the manifest's `compression` says.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
        }
    }

    /// What the object name carries after `{id}.{kind}`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
        }
    }

    /// The compression a manifest names.
    pub fn from_manifest(name: &str) -> Result<Compression> {
        match name {
            "gzip" => Ok(Compression::Gzip),
            other => bail!(
                "the copy is compressed with {:?}, which this version of backups cannot read",
                crate::text::for_terminal(other, 40)
            ),
        }
    }

    /// A reader of what `compressed` holds, decompressed.
    pub fn decoder<'a>(self, compressed: impl Read + 'a) -> Box<dyn Read + 'a> {
        match self {
            // Multi-member: the parallel encoder writes one gzip member per block.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
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
        for e in [
            Encryption::None,
            Encryption::OpenPgpPassphrase,
            Encryption::OpenPgpRecipients,
        ] {
            assert_eq!(Encryption::from_manifest(e.name()).unwrap(), e);
        }
        let err = Compression::from_manifest("zstd").unwrap_err().to_string();
        assert!(err.contains("\"zstd\""), "{err}");
        assert!(Encryption::from_manifest("rot13").is_err());
    }
}
