//! OpenPGP for artifacts: what stock GnuPG 2.2 can decrypt.
//!
//! Messages are SEIPDv1 with MDC and AES-256, which `gpg --decrypt` reads: sequoia makes
//! the session key and the key packets, [`super::seipd`] writes the encrypted data.
//! Public-key messages go to every transport-encryption subkey of each recipient that is
//! valid under the standard policy now.

use super::Encryption;
use super::seipd::SeipdWriter;
use crate::config::Encryption as Configured;
use anyhow::{Context as _, Result, bail};
use openpgp::Cert;
use openpgp::Packet;
use openpgp::cert::CertParser;
use openpgp::crypto::Password;
use openpgp::crypto::S2K;
use openpgp::crypto::SessionKey;
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::skesk::SKESK4;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Serialize as _;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;
use std::io::Write;
use std::path::Path;

static POLICY: StandardPolicy = StandardPolicy::new();
/// How much plaintext decryption holds back before releasing it (see `Keys::decrypt`).
const DECRYPT_HOLD_BACK: usize = 64 << 10;

/// Encryption, prepared before the dump starts so that a bad key fails the source
/// before anything is read.
#[derive(Clone)]
pub enum Plan {
    Passphrase(Password),
    Recipients(Vec<Cert>),
    None,
}

impl Plan {
    pub fn prepare(encryption: &Configured, label: &str) -> Result<Plan> {
        match encryption {
            Configured::None => Ok(Plan::None),
            Configured::Passphrase(p) => Ok(Plan::Passphrase(Password::from(p.as_str()))),
            Configured::Recipients {
                recipients,
                keyring,
            } => {
                let mut certs = Vec::new();
                for r in recipients {
                    certs
                        .push(find_cert(r, keyring.as_deref()).with_context(|| label.to_string())?);
                }
                let policy = StandardPolicy::new();
                for cert in &certs {
                    let usable = cert
                        .keys()
                        .with_policy(&policy, None)
                        .supported()
                        .alive()
                        .revoked(false)
                        .for_transport_encryption()
                        .count();
                    if usable == 0 {
                        bail!(
                            "{label}: recipient {} has no valid encryption key (expired, revoked \
                             or signing-only)",
                            cert.fingerprint()
                        );
                    }
                }
                Ok(Plan::Recipients(certs))
            }
        }
    }

    /// Which encryption this is, as the manifest and the object name say it.
    pub fn kind(&self) -> Encryption {
        match self {
            Plan::Passphrase(_) => Encryption::OpenPgpPassphrase,
            Plan::Recipients(_) => Encryption::OpenPgpRecipients,
            Plan::None => Encryption::None,
        }
    }

    /// The recipients' fingerprints, for the manifest.
    pub fn recipients(&self) -> Vec<String> {
        match self {
            Plan::Recipients(certs) => certs.iter().map(|c| c.fingerprint().to_hex()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn encrypts(&self) -> bool {
        !matches!(self, Plan::None)
    }

    /// Wraps `sink` so that what is written becomes one OpenPGP message's literal data:
    /// the key packets (sequoia's), then the encrypted data (`seipd`, AES-256).
    pub fn encryptor<W: Write>(&self, mut sink: W) -> Result<SeipdWriter<W>> {
        const ALGO: SymmetricAlgorithm = SymmetricAlgorithm::AES256;
        let session_key = SessionKey::new(ALGO.key_size()?)?;
        match self {
            Plan::Passphrase(p) => {
                let skesk = SKESK4::with_password(ALGO, ALGO, S2K::default(), &session_key, p)?;
                Packet::SKESK(skesk.into()).serialize(&mut sink)?;
            }
            Plan::Recipients(certs) => {
                let keys = certs.iter().flat_map(|cert| {
                    cert.keys()
                        .with_policy(&POLICY, None)
                        .supported()
                        .alive()
                        .revoked(false)
                        .for_transport_encryption()
                });
                for key in keys {
                    let mut pkesk = PKESK3::for_recipient(ALGO, &session_key, key.key())?;
                    pkesk.set_recipient(Some(key.key().keyid()));
                    Packet::PKESK(pkesk.into()).serialize(&mut sink)?;
                }
            }
            Plan::None => bail!("encryptor called for an unencrypted artifact"),
        }
        Ok(SeipdWriter::new(sink, &session_key)?)
    }
}

/// A recipient is a key file (armored or binary), or a fingerprint, key id or email found
/// in `keyring` (an OpenPGP keyring file, e.g. `gpg --export > keyring.gpg`).
fn find_cert(recipient: &str, keyring: Option<&Path>) -> Result<Cert> {
    let as_path = Path::new(recipient);
    if as_path.is_file() {
        return Cert::from_file(as_path)
            .with_context(|| format!("recipients: {recipient}: not an OpenPGP public key"));
    }
    if recipient.contains('/') {
        bail!("recipients: {recipient}: no such key file");
    }
    let Some(keyring) = keyring else {
        bail!(
            "recipients: {recipient:?} is neither a key file nor findable: set \"keyring\" to an \
             exported keyring file (gpg --export > keyring.gpg) to look up fingerprints and emails"
        );
    };
    let wanted = recipient
        .trim_start_matches("0x")
        .replace(' ', "")
        .to_ascii_uppercase();
    let parser = CertParser::from_file(keyring)
        .with_context(|| format!("keyring: {}: cannot read", keyring.display()))?;
    for cert in parser {
        let cert = cert
            .with_context(|| format!("keyring: {}: not an OpenPGP keyring", keyring.display()))?;
        let by_key = cert.keys().any(|k| {
            let fpr = k.key().fingerprint().to_hex();
            fpr == wanted || (wanted.len() >= 16 && fpr.ends_with(&wanted))
        });
        let by_email = cert.userids().any(|u| {
            u.userid()
                .email()
                .ok()
                .flatten()
                .is_some_and(|e| e.eq_ignore_ascii_case(recipient))
        });
        if by_key || by_email {
            return Ok(cert);
        }
    }
    bail!(
        "recipients: {recipient:?} not found in keyring {}",
        keyring.display()
    )
}

/// What may decrypt an artifact: passphrases, and secret keys (unencrypted key material,
/// e.g. `gpg --export-secret-keys` of a key without a passphrase, or one protected by a
/// passphrase listed here too).
#[derive(Default)]
pub struct Keys {
    pub passwords: Vec<Password>,
    pub secret_keys: Vec<Cert>,
}

impl Keys {
    pub fn add_secret_key_file(&mut self, path: &Path) -> Result<()> {
        for cert in CertParser::from_file(path)
            .with_context(|| format!("{}: cannot read", path.display()))?
        {
            let cert = cert.with_context(|| format!("{}: not an OpenPGP key", path.display()))?;
            if !cert.is_tsk() {
                bail!(
                    "{}: {} has no secret key material",
                    path.display(),
                    cert.fingerprint()
                );
            }
            self.secret_keys.push(cert);
        }
        Ok(())
    }

    /// A reader of the plaintext of the OpenPGP message `ciphertext`.
    ///
    /// Plaintext is released as it is decrypted; a modified message fails at its end, when
    /// the MDC is checked. sequoia would otherwise hold back the first 25 MiB, so that a
    /// signature could be checked before any byte is released; artifacts carry no
    /// signature, every copy is checked against its manifest's sha256 before it is
    /// decrypted, and the held-back buffer, copied through sequoia's reader stack, was
    /// most of the memory `verify` and `restore` used.
    pub fn decrypt<'a, R: std::io::Read + Send + Sync + 'a>(
        &'a self,
        ciphertext: R,
    ) -> Result<impl std::io::Read + 'a> {
        use openpgp::parse::stream::DecryptorBuilder;
        let decryptor = DecryptorBuilder::from_reader(ciphertext)?
            .buffer_size(DECRYPT_HOLD_BACK)
            .with_policy(&POLICY, None, Helper { keys: self })
            .context("no passphrase or secret key given decrypts this artifact")?;
        Ok(decryptor)
    }
}

struct Helper<'a> {
    keys: &'a Keys,
}

impl openpgp::parse::stream::VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    // Artifacts are encrypted, not signed: there is nothing to verify here. Integrity is
    // the MDC (checked by the decryptor) and the manifest's sha256.
    fn check(
        &mut self,
        _structure: openpgp::parse::stream::MessageStructure,
    ) -> openpgp::Result<()> {
        Ok(())
    }
}

impl openpgp::parse::stream::DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[openpgp::packet::PKESK],
        skesks: &[openpgp::packet::SKESK],
        sym_algo: Option<openpgp::types::SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(
            Option<openpgp::types::SymmetricAlgorithm>,
            &openpgp::crypto::SessionKey,
        ) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for cert in &self.keys.secret_keys {
            for key in cert
                .keys()
                .with_policy(&POLICY, None)
                .supported()
                .for_transport_encryption()
                .secret()
            {
                let mut candidates = vec![key.key().clone()];
                for p in &self.keys.passwords {
                    if let Ok(k) = key.key().clone().decrypt_secret(p) {
                        candidates.push(k);
                    }
                }
                for secret in candidates {
                    let Ok(mut pair) = secret.into_keypair() else {
                        continue;
                    };
                    for pkesk in pkesks {
                        if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                            && decrypt(algo, &sk)
                        {
                            return Ok(Some(cert.clone()));
                        }
                    }
                }
            }
        }
        for skesk in skesks {
            for p in &self.keys.passwords {
                if let Ok((algo, sk)) = skesk.decrypt(p)
                    && decrypt(algo, &sk)
                {
                    return Ok(None);
                }
            }
        }
        Err(anyhow::anyhow!(
            "no passphrase or secret key given decrypts this artifact"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn encrypt(plan: &Plan, data: &[u8], piece: usize) -> Vec<u8> {
        let mut message = plan.encryptor(Vec::new()).unwrap();
        for part in data.chunks(piece.max(1)) {
            message.write_all(part).unwrap();
        }
        message.finish().unwrap()
    }

    /// Sizes around every framing boundary: the literal packet's 6 header octets make its
    /// first 256 KiB chunk fill at 2^18 - 6 octets of data; the ciphertext's at others.
    #[test]
    fn sequoia_decrypts_what_seipd_writes_at_every_chunk_boundary() {
        let plan = Plan::Passphrase(Password::from("correct horse"));
        let keys = Keys {
            passwords: vec![Password::from("correct horse")],
            secret_keys: Vec::new(),
        };
        const K: usize = 1 << 18;
        for len in [
            0,
            1,
            191,
            192,
            8383,
            8384,
            K - 7,
            K - 6,
            K - 5,
            K,
            13 * K + 17,
        ] {
            let data = sample(len);
            let message = encrypt(&plan, &data, 65_537);
            let mut back = Vec::new();
            keys.decrypt(&message[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap_or_else(|e| panic!("{len} octets: {e}"));
            assert!(back == data, "{len} octets came back different");
        }
    }

    #[test]
    fn a_tampered_message_fails_its_integrity_check() {
        let plan = Plan::Passphrase(Password::from("pw"));
        let keys = Keys {
            passwords: vec![Password::from("pw")],
            secret_keys: Vec::new(),
        };
        let mut message = encrypt(&plan, &sample(100_000), 4096);
        let middle = message.len() / 2;
        message[middle] ^= 1;
        let mut back = Vec::new();
        let read = keys
            .decrypt(&message[..])
            .and_then(|mut r| Ok(r.read_to_end(&mut back)?));
        assert!(read.is_err(), "a flipped bit went unnoticed");
    }
}
