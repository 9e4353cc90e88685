//! Whether a third-party plugin may be loaded: its detached OpenPGP signature
//! (`plugin.wasm.sig`), checked against the keys the job trusts (`trusted_plugin_keys`),
//! and the job's policy (`require_signed_plugins`).
//!
//! The signature is checked over the very bytes that are then compiled, never a second
//! read of the file, so a file swapped between check and load cannot slip through.
//! Embedded first-party plugins are part of this binary and trusted by construction.
//!
//! A signature that is present but does not verify is refused whatever the policy: a
//! bad signature next to a plugin is a sign of tampering, not of a missing step.

use anyhow::{Context as _, Result, bail};
use openpgp::Cert;
use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use sequoia_openpgp as openpgp;
use std::fmt;
use std::path::{Path, PathBuf};

static POLICY: StandardPolicy = StandardPolicy::new();

/// The job's trust settings, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSettings {
    /// Public-key files (armored or binary, one or many certificates each).
    pub keyrings: Vec<PathBuf>,
    /// Refuse any third-party plugin without a good signature by a trusted key.
    pub require_signed: bool,
}

/// What is known of a plugin's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Compiled into this binary.
    Embedded,
    /// A good signature by a trusted key.
    Good { signer: String },
    /// No `.sig` file next to the plugin.
    Unsigned,
    /// A `.sig` file exists but the job names no keys to check it with.
    Unchecked,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Embedded => {
                f.write_str("embedded first-party plugin (trusted by construction)")
            }
            Signature::Good { signer } => write!(f, "good signature by {signer}"),
            Signature::Unsigned => f.write_str("UNSIGNED"),
            Signature::Unchecked => {
                f.write_str("signed, but NOT CHECKED (the job names no trusted_plugin_keys)")
            }
        }
    }
}

/// The loaded keys and policy of one job.
pub struct TrustPolicy {
    certs: Vec<Cert>,
    require_signed: bool,
}

impl TrustPolicy {
    /// Reads every keyring; errors name the file. Requiring signatures without naming a
    /// key to check them with is a configuration error, not a policy that refuses all.
    pub fn load(settings: &TrustSettings, at: &str) -> Result<TrustPolicy> {
        if settings.require_signed && settings.keyrings.is_empty() {
            bail!("{at}: require_signed_plugins is set but trusted_plugin_keys names no key file");
        }
        let mut certs = Vec::new();
        for path in &settings.keyrings {
            let parsed = CertParser::from_file(path)
                .with_context(|| {
                    format!("{at}: trusted_plugin_keys: cannot read {}", path.display())
                })?
                .collect::<openpgp::Result<Vec<Cert>>>()
                .with_context(|| {
                    format!(
                        "{at}: trusted_plugin_keys: {} is not an OpenPGP keyring",
                        path.display()
                    )
                })?;
            if parsed.is_empty() {
                bail!("{at}: trusted_plugin_keys: {} holds no key", path.display());
            }
            certs.extend(parsed);
        }
        Ok(TrustPolicy {
            certs,
            require_signed: settings.require_signed,
        })
    }

    /// No keys, no requirement: what a job without trust settings gets.
    pub fn permissive() -> TrustPolicy {
        TrustPolicy {
            certs: Vec::new(),
            require_signed: false,
        }
    }

    /// Checks the detached signature of the plugin file `path`, whose content is `bytes`,
    /// and applies the policy. The error says which file, and why.
    pub fn admit(&self, path: &Path, bytes: &[u8]) -> Result<Signature> {
        let sig_path = signature_path(path);
        let signature = if !sig_path.exists() {
            Signature::Unsigned
        } else if self.certs.is_empty() {
            Signature::Unchecked
        } else {
            let signer = self.verify(&sig_path, bytes).map_err(|why| {
                anyhow::anyhow!(
                    "{}: bad signature ({}): {why}; refusing to load it",
                    path.display(),
                    sig_path.display()
                )
            })?;
            Signature::Good { signer }
        };
        if self.require_signed && !matches!(signature, Signature::Good { .. }) {
            bail!(
                "{}: {} and the job sets require_signed_plugins: refusing to load it \
                 (sign it: gpg --detach-sign -o {} {})",
                path.display(),
                match signature {
                    Signature::Unsigned =>
                        format!("no signature ({} is missing)", sig_path.display()),
                    _ => "its signature cannot be checked".to_string(),
                },
                sig_path.display(),
                path.display()
            );
        }
        Ok(signature)
    }

    /// The fingerprint (and first user id) of the trusted key whose good signature
    /// covers `bytes`.
    fn verify(&self, sig_path: &Path, bytes: &[u8]) -> Result<String> {
        let helper = Helper {
            certs: &self.certs,
            signer: None,
        };
        let mut verifier = DetachedVerifierBuilder::from_file(sig_path)
            .context("not an OpenPGP signature")?
            .with_policy(&POLICY, None, helper)?;
        verifier.verify_bytes(bytes)?;
        verifier
            .into_helper()
            .signer
            .ok_or_else(|| anyhow::anyhow!("no good signature by a trusted key"))
    }
}

/// `plugin.wasm` → `plugin.wasm.sig`, what `gpg --detach-sign` writes with `-o`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

struct Helper<'a> {
    certs: &'a [Cert],
    signer: Option<String>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    /// Accepts when at least one signature is good and made by one of the trusted
    /// certificates; reports the first failure otherwise.
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut failure = None;
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                for result in results {
                    match result {
                        Ok(good) => {
                            let cert = good.ka.cert();
                            let who = cert
                                .userids()
                                .next()
                                .map(|u| {
                                    format!(" ({})", String::from_utf8_lossy(u.userid().value()))
                                })
                                .unwrap_or_default();
                            self.signer = Some(format!("{}{who}", cert.fingerprint()));
                            return Ok(());
                        }
                        Err(e) => {
                            failure.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
        }
        Err(anyhow::anyhow!(failure.unwrap_or_else(|| {
            "the signature file holds no signature".into()
        })))
    }
}
