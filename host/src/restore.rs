//! Getting copies back: list them, verify them end to end, restore one.
//!
//! A copy is fetched from its destination into the run's temporary directory, its size
//! and sha256 checked against the manifest stored beside it, then decrypted (passphrase
//! from the job, or a secret key) and decompressed as a stream. Verification reads every
//! byte and, for a folder archive, walks every tar entry; restore writes the stream to a
//! file or extracts the archive.

use crate::codec::openpgp::Keys;
use crate::codec::{self, Compression};
use crate::config::Encryption;
use crate::plan::{JobPlan, Planned};
use crate::runtime::{Instance, Runtime};
use crate::session::Session;
use crate::store::objects::{self, Manifest, StoredCopy};
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One stored copy, as `backups list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub destination_id: String,
    pub source_id: String,
    pub object: String,
    pub created: jiff::Timestamp,
    pub size: u64,
    /// Stored by the legacy Python tool (no manifest): restore it with `gpg --decrypt`.
    pub legacy: bool,
}

/// Which copies a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub source: Option<String>,
    pub destination: Option<String>,
    /// A specific object; otherwise the newest of each source.
    pub artifact: Option<String>,
}

/// The destinations selected, opened (instantiated and configured).
pub async fn open_destinations<'p>(
    plan: &'p JobPlan,
    session: &Session<'_>,
    selection: &Selection,
) -> Result<Vec<(&'p Planned, Instance)>> {
    let mut out = Vec::new();
    for dest in &plan.destinations {
        if selection
            .destination
            .as_ref()
            .is_some_and(|d| *d != dest.entry.id)
        {
            continue;
        }
        let instance = session
            .open(dest)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", dest.entry.label()))?;
        out.push((dest, instance));
    }
    if out.is_empty() {
        bail!(
            "no destination {:?} in {}",
            selection.destination.clone().unwrap_or_default(),
            plan.job.path.display()
        );
    }
    Ok(out)
}

fn selected_sources<'p>(plan: &'p JobPlan, selection: &Selection) -> Result<Vec<&'p Planned>> {
    let sources: Vec<&Planned> = plan
        .sources
        .iter()
        .filter(|s| selection.source.as_ref().is_none_or(|id| *id == s.entry.id))
        .collect();
    if sources.is_empty() {
        bail!(
            "no source {:?} in {}",
            selection.source.clone().unwrap_or_default(),
            plan.job.path.display()
        );
    }
    Ok(sources)
}

/// Complete copies of each selected source at one destination, newest first.
pub async fn copies(
    plan: &JobPlan,
    instance: &mut Instance,
    source_id: &str,
) -> Result<Vec<StoredCopy>> {
    let listing = instance
        .list(&format!("{}/", plan.job.hostname))
        .await
        .map_err(|e| anyhow::anyhow!("listing: {}", plan.redactor.redact(&e.to_string())))?;
    Ok(objects::copies_of(&plan.job.hostname, source_id, &listing))
}

/// The legacy Python tool's copies of a source at one destination, newest first.
pub async fn legacy_copies(
    plan: &JobPlan,
    instance: &mut Instance,
    source_id: &str,
) -> Result<Vec<objects::LegacyCopy>> {
    let mut listing = Vec::new();
    for prefix in objects::legacy_prefixes(&plan.job.hostname, source_id) {
        listing.extend(
            instance.list(&prefix).await.map_err(|e| {
                anyhow::anyhow!("listing: {}", plan.redactor.redact(&e.to_string()))
            })?,
        );
    }
    Ok(objects::legacy_copies_of(
        &plan.job.hostname,
        source_id,
        &listing,
    ))
}

pub async fn list(plan: &JobPlan, runtime: &Runtime, selection: &Selection) -> Result<Vec<Listed>> {
    let session = Session::for_purpose(plan, runtime, "list", &plan.job.tmpdir)?;
    let sources = selected_sources(plan, selection)?;
    let mut out = Vec::new();
    for (dest, mut instance) in open_destinations(plan, &session, selection).await? {
        for source in &sources {
            for c in copies(plan, &mut instance, &source.entry.id).await? {
                out.push(Listed {
                    destination_id: dest.entry.id.clone(),
                    source_id: source.entry.id.clone(),
                    object: c.object,
                    created: c.created,
                    size: c.size,
                    legacy: false,
                });
            }
            for c in legacy_copies(plan, &mut instance, &source.entry.id).await? {
                out.push(Listed {
                    destination_id: dest.entry.id.clone(),
                    source_id: source.entry.id.clone(),
                    object: c.object,
                    created: c.created,
                    size: c.size,
                    legacy: true,
                });
            }
        }
    }
    Ok(out)
}

/// The copies a selection names at one destination: the given artifact, or the newest
/// of each selected source.
async fn chosen(
    plan: &JobPlan,
    instance: &mut Instance,
    sources: &[&Planned],
    selection: &Selection,
) -> Result<Vec<(String, Option<StoredCopy>)>> {
    let mut out = Vec::new();
    for source in sources {
        let all = copies(plan, instance, &source.entry.id).await?;
        let pick = match &selection.artifact {
            Some(name) => all
                .into_iter()
                .find(|c| c.object == *name || c.object.ends_with(name.as_str())),
            None => all.into_iter().next(),
        };
        if selection.artifact.is_some() && pick.is_none() && sources.len() > 1 {
            continue;
        }
        out.push((source.entry.id.clone(), pick));
    }
    Ok(out)
}

/// A fetched, checked copy on local disk.
pub struct Fetched {
    pub manifest: Manifest,
    pub path: PathBuf,
}

/// Fetches a copy and its manifest and checks size and sha256.
pub async fn fetch(instance: &mut Instance, copy: &StoredCopy, scratch: &Path) -> Result<Fetched> {
    let manifest = objects::read_manifest(instance, &copy.manifest, scratch).await?;
    let path = scratch.join("artifact");
    instance
        .get_to_file(&copy.object, &path, manifest.size)
        .await
        .map_err(|e| anyhow::anyhow!("fetching {}: {e}", copy.object))?;
    let mut file = std::fs::File::open(&path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    let digest = hex::encode(hasher.finalize());
    if size != manifest.size {
        bail!(
            "{}: {size} bytes, but the manifest says {}",
            copy.object,
            manifest.size
        );
    }
    if digest != manifest.sha256 {
        bail!(
            "{}: sha256 {digest} does not match the manifest's {}",
            copy.object,
            manifest.sha256
        );
    }
    Ok(Fetched { manifest, path })
}

/// Keys for a source: its passphrase from the job, plus any secret keys given.
pub fn keys_for(
    source: &Planned,
    secret_key_files: &[PathBuf],
    passphrases: &[String],
) -> Result<Keys> {
    let mut keys = Keys::default();
    if let Some(Encryption::Passphrase(p)) = &source.entry.encryption {
        keys.passwords.push(p.as_str().into());
    }
    for p in passphrases {
        keys.passwords.push(p.as_str().into());
    }
    for f in secret_key_files {
        keys.add_secret_key_file(f)?;
    }
    Ok(keys)
}

/// Streams the plaintext (decrypted and decompressed) of a fetched copy into `sink`.
pub fn plaintext(
    fetched: &Fetched,
    keys: &Keys,
    sink: &mut dyn FnMut(&mut dyn Read) -> Result<()>,
) -> Result<()> {
    // Decoders as the manifest names them: a codec this host does not know is refused
    // by name before a byte is read.
    let compression = Compression::from_manifest(&fetched.manifest.compression)?;
    let encryption = codec::Encryption::from_manifest(&fetched.manifest.encryption)?;
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&fetched.path)?);
    let mut plaintext = match encryption {
        codec::Encryption::None => compression.decoder(file)?,
        codec::Encryption::OpenPgpPassphrase | codec::Encryption::OpenPgpRecipients => {
            compression.decoder(keys.decrypt(file)?)?
        }
    };
    sink(&mut plaintext)
}

/// The result of verifying one copy.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub destination_id: String,
    pub source_id: String,
    pub object: Option<String>,
    pub ok: bool,
    pub detail: String,
}

pub async fn verify(
    plan: &JobPlan,
    runtime: &Runtime,
    selection: &Selection,
    secret_keys: &[PathBuf],
) -> Result<Vec<Verified>> {
    let session = Session::for_purpose(plan, runtime, "verify", &plan.job.tmpdir)?;
    let sources = selected_sources(plan, selection)?;
    let mut out = Vec::new();
    for (dest, mut instance) in open_destinations(plan, &session, selection).await? {
        for (source_id, copy) in chosen(plan, &mut instance, &sources, selection).await? {
            let source = sources
                .iter()
                .find(|s| s.entry.id == source_id)
                .expect("chosen from sources");
            let mut v = Verified {
                destination_id: dest.entry.id.clone(),
                source_id: source_id.clone(),
                object: copy.as_ref().map(|c| c.object.clone()),
                ok: false,
                detail: String::new(),
            };
            let Some(copy) = copy else {
                v.detail = "no complete copy found".into();
                out.push(v);
                continue;
            };
            let checked = async {
                let fetched = fetch(&mut instance, &copy, session.dir()).await?;
                let keys = keys_for(source, secret_keys, &[])?;
                let kind = fetched.manifest.kind.clone();
                let mut read = 0u64;
                let mut entries = 0u64;
                plaintext(&fetched, &keys, &mut |stream| {
                    if kind == "tar" {
                        let mut counting = Counting {
                            inner: stream,
                            count: &mut read,
                        };
                        let mut archive = tar::Archive::new(&mut counting);
                        for entry in archive.entries().context("reading the tar archive")? {
                            let mut entry = entry.context("reading a tar entry")?;
                            std::io::copy(&mut entry, &mut std::io::sink())
                                .context("reading a tar entry")?;
                            entries += 1;
                        }
                        // The rest of the stream (tar's end blocks and padding).
                        std::io::copy(&mut counting, &mut std::io::sink())?;
                    } else {
                        read =
                            std::io::copy(stream, &mut std::io::sink()).context("decompressing")?;
                    }
                    Ok(())
                })?;
                if read != fetched.manifest.bytes_in {
                    bail!(
                        "decompressed to {read} bytes, but the source produced {}",
                        fetched.manifest.bytes_in
                    );
                }
                Ok::<_, anyhow::Error>(if kind == "tar" {
                    format!("sha256 ok, decrypted, {read} bytes, {entries} tar entries")
                } else {
                    format!("sha256 ok, decrypted, {read} bytes")
                })
            }
            .await;
            match checked {
                Ok(detail) => {
                    v.ok = true;
                    v.detail = detail;
                }
                Err(e) => v.detail = plan.redactor.redact(&format!("{e:#}")),
            }
            out.push(v);
            let _ = std::fs::remove_file(session.dir().join("artifact"));
        }
    }
    Ok(out)
}

struct Counting<'a, R: ?Sized> {
    inner: &'a mut R,
    count: &'a mut u64,
}

impl<R: Read + ?Sized> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
}

/// Where a restore goes.
pub enum Target {
    /// The decrypted, decompressed stream, to a file (`-`: stdout).
    Stream(PathBuf),
    /// A folder archive, extracted into a directory that must be empty or new.
    Extract(PathBuf),
}

pub async fn restore(
    plan: &JobPlan,
    runtime: &Runtime,
    selection: &Selection,
    secret_keys: &[PathBuf],
    target: &Target,
) -> Result<String> {
    let Some(source_id) = &selection.source else {
        bail!("restore needs --source: which source to restore");
    };
    let session = Session::for_purpose(plan, runtime, "restore", &plan.job.tmpdir)?;
    let sources = selected_sources(plan, selection)?;
    let mut last_error = None;
    for (dest, mut instance) in open_destinations(plan, &session, selection).await? {
        let picked = chosen(plan, &mut instance, &sources, selection).await?;
        let Some((_, Some(copy))) = picked.into_iter().next() else {
            last_error = Some(anyhow::anyhow!(
                "{}: no complete copy of {source_id}",
                dest.entry.label()
            ));
            continue;
        };
        let fetched = match fetch(&mut instance, &copy, session.dir()).await {
            Ok(f) => f,
            Err(e) => {
                // A damaged copy at one destination: try the next one.
                tracing::warn!("{}: {e:#}", dest.entry.label());
                last_error = Some(e);
                continue;
            }
        };
        let keys = keys_for(sources[0], secret_keys, &[])?;
        match target {
            Target::Stream(path) => {
                let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
                    Box::new(std::io::stdout().lock())
                } else {
                    Box::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    )
                };
                plaintext(&fetched, &keys, &mut |stream| {
                    std::io::copy(stream, &mut out)?;
                    out.flush()?;
                    Ok(())
                })?;
            }
            Target::Extract(dir) => {
                if fetched.manifest.kind != "tar" {
                    bail!(
                        "{} is a {} dump, not a folder archive: restore it with --to FILE",
                        copy.object,
                        fetched.manifest.kind
                    );
                }
                if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                    bail!(
                        "{} is not empty: extract into a new or empty directory",
                        dir.display()
                    );
                }
                std::fs::create_dir_all(dir)?;
                plaintext(&fetched, &keys, &mut |stream| {
                    crate::extract::extract(stream, dir)
                })?;
            }
        }
        return Ok(format!("restored {} from {}", copy.object, dest.entry.id));
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no copy of {source_id} found")))
}
