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
use crate::store::objects::{self, StoredCopy};
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
    /// An increment: the full it is restored on top of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full: Option<String>,
}

/// Which copies a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub source: Option<String>,
    pub destination: Option<String>,
    /// A specific object; otherwise the newest of each source.
    pub artifact: Option<String>,
    /// The newest made at or before this time.
    pub at: Option<jiff::Timestamp>,
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
            let id = &source.entry.id;
            let ours = copies(plan, &mut instance, id).await?;
            let theirs = legacy_copies(plan, &mut instance, id).await?;
            let fulls: Vec<Option<String>> = ours
                .iter()
                .map(|c| c.full_in(&ours).map(|f| f.object.clone()))
                .collect();
            let found = (ours
                .into_iter()
                .zip(fulls)
                .map(|(c, full)| (c.object, c.created, c.size, false, full)))
            .chain(
                theirs
                    .into_iter()
                    .map(|c| (c.object, c.created, c.size, true, None)),
            );
            for (object, created, size, legacy, full) in found {
                out.push(Listed {
                    destination_id: dest.entry.id.clone(),
                    source_id: id.clone(),
                    object,
                    created,
                    size,
                    legacy,
                    full,
                });
            }
        }
    }
    Ok(out)
}

/// A copy chosen to read back: one of this tool's (with its manifest), or one the legacy
/// tool stored (found by its layout, with none).
pub enum Chosen {
    Ours(StoredCopy),
    Legacy(objects::LegacyCopy),
}

impl Chosen {
    pub fn object(&self) -> &str {
        match self {
            Chosen::Ours(c) => &c.object,
            Chosen::Legacy(c) => &c.object,
        }
    }
}

/// The copies a selection names at one destination: the given artifact, or the newest
/// of each selected source (the legacy tool's newest only when there is none of ours).
async fn chosen(
    plan: &JobPlan,
    instance: &mut Instance,
    sources: &[&Planned],
    selection: &Selection,
) -> Result<Vec<(String, Option<Chosen>)>> {
    let mut out = Vec::new();
    for source in sources {
        let id = &source.entry.id;
        let named = |object: &str| match &selection.artifact {
            Some(name) => object == name || object.ends_with(name.as_str()),
            None => true,
        };
        let in_time = |created: jiff::Timestamp| selection.at.is_none_or(|at| created <= at);
        let ours = copies(plan, instance, id).await?;
        let mut pick = ours
            .into_iter()
            .find(|c| named(&c.object) && in_time(c.created))
            .map(Chosen::Ours);
        if pick.is_none() {
            pick = legacy_copies(plan, instance, id)
                .await?
                .into_iter()
                .find(|c| named(&c.object) && in_time(c.created))
                .map(Chosen::Legacy);
        }
        if selection.artifact.is_some() && pick.is_none() && sources.len() > 1 {
            continue;
        }
        out.push((id.clone(), pick));
    }
    Ok(out)
}

/// A fetched, checked copy on local disk, and what decodes it.
pub struct Fetched {
    pub path: PathBuf,
    pub object: String,
    /// Our compression, from the manifest; `None` for a legacy copy that is not gzip
    /// (OpenPGP's own compression, which the decryptor undoes, or none).
    pub compression: Option<Compression>,
    pub encryption: codec::Encryption,
    /// `tar`, `sql`, … (the manifest's, or a legacy file name's).
    pub kind: String,
    /// Bytes the source produced, as the manifest says (a legacy copy has none).
    pub bytes_in: Option<u64>,
    /// What was checked on arrival.
    pub checked: &'static str,
}

/// Fetches a chosen copy. One of ours is checked against its manifest (size, sha256);
/// a legacy copy has no manifest, so only its decryption and format check it.
pub async fn fetch(instance: &mut Instance, chosen: &Chosen, scratch: &Path) -> Result<Fetched> {
    match chosen {
        Chosen::Ours(copy) => fetch_ours(instance, copy, scratch).await,
        Chosen::Legacy(copy) => {
            let path = scratch.join("artifact");
            instance
                .get_to_file(&copy.object, &path, copy.size)
                .await
                .map_err(|e| anyhow::anyhow!("fetching {}: {e}", copy.object))?;
            let file = copy.object.rsplit('/').next().unwrap_or_default();
            // `{id}.{kind}[.gz][.gpg]`, as the legacy tool named its dumps.
            let mut parts = file.split('.').skip(1);
            let kind = parts.next().unwrap_or("data").to_string();
            let rest: Vec<&str> = parts.collect();
            Ok(Fetched {
                path,
                object: copy.object.clone(),
                compression: rest.contains(&"gz").then_some(Compression::Gzip),
                encryption: if rest.last() == Some(&"gpg") {
                    codec::Encryption::OpenPgpPassphrase
                } else {
                    codec::Encryption::None
                },
                kind,
                bytes_in: None,
                checked: "legacy copy (no manifest, no sha256 to check)",
            })
        }
    }
}

async fn fetch_ours(instance: &mut Instance, copy: &StoredCopy, scratch: &Path) -> Result<Fetched> {
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
    // Decoders as the manifest names them: a codec this host does not know is refused
    // by name before a byte is read.
    Ok(Fetched {
        path,
        object: copy.object.clone(),
        compression: Some(Compression::from_manifest(&manifest.compression)?),
        encryption: codec::Encryption::from_manifest(&manifest.encryption)?,
        kind: manifest.kind.clone(),
        bytes_in: Some(manifest.bytes_in),
        checked: "sha256 ok",
    })
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
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&fetched.path)?);
    let decrypted: Box<dyn Read> = match fetched.encryption {
        codec::Encryption::None => Box::new(file),
        codec::Encryption::OpenPgpPassphrase | codec::Encryption::OpenPgpRecipients => {
            Box::new(keys.decrypt(file)?)
        }
    };
    let mut plaintext = match fetched.compression {
        Some(compression) => compression.decoder(decrypted)?,
        None => decrypted,
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
                object: copy.as_ref().map(|c| c.object().to_string()),
                ok: false,
                detail: String::new(),
            };
            let Some(copy) = copy else {
                v.detail = "no complete copy found".into();
                out.push(v);
                continue;
            };
            // A point that is an increment is whole only with its full: both are checked.
            let full = match &copy {
                Chosen::Ours(c) if c.base.is_some() => copies(plan, &mut instance, &source_id)
                    .await
                    .ok()
                    .and_then(|all| c.full_in(&all).cloned()),
                _ => None,
            };
            let needs_full = matches!(&copy, Chosen::Ours(c) if c.base.is_some());
            let checked = async {
                if needs_full && full.is_none() {
                    bail!("an increment whose full could not be found again");
                }
                let mut details = Vec::new();
                if let Some(full) = full {
                    let detail = check_copy(
                        &mut instance,
                        &Chosen::Ours(full.clone()),
                        source,
                        secret_keys,
                        session.dir(),
                    )
                    .await
                    .with_context(|| format!("its full {}", full.object))?;
                    details.push(format!("full {}: {detail}", full.object));
                }
                let detail =
                    check_copy(&mut instance, &copy, source, secret_keys, session.dir()).await?;
                details.push(if details.is_empty() {
                    detail
                } else {
                    format!("increment: {detail}")
                });
                Ok::<_, anyhow::Error>(details.join("; "))
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

/// Fetches one copy, checks it against its manifest, decrypts and reads it through.
async fn check_copy(
    instance: &mut Instance,
    copy: &Chosen,
    source: &Planned,
    secret_keys: &[PathBuf],
    scratch: &Path,
) -> Result<String> {
    let fetched = fetch(instance, copy, scratch).await?;
    let checked = read_through(&fetched, source, secret_keys);
    let _ = std::fs::remove_file(&fetched.path);
    checked
}

/// Decrypts and decompresses a fetched copy, reading a tar archive member by member;
/// says what was checked.
fn read_through(fetched: &Fetched, source: &Planned, secret_keys: &[PathBuf]) -> Result<String> {
    let keys = keys_for(source, secret_keys, &[])?;
    let kind = fetched.kind.clone();
    let mut read = 0u64;
    let mut entries = 0u64;
    plaintext(fetched, &keys, &mut |stream| {
        if kind == "tar" {
            let mut counting = Counting {
                inner: stream,
                count: &mut read,
            };
            let mut archive = tar::Archive::new(&mut counting);
            for entry in archive.entries().context("reading the tar archive")? {
                let mut entry = entry.context("reading a tar entry")?;
                std::io::copy(&mut entry, &mut std::io::sink()).context("reading a tar entry")?;
                entries += 1;
            }
            // The rest of the stream (tar's end blocks and padding).
            std::io::copy(&mut counting, &mut std::io::sink())?;
        } else {
            read = std::io::copy(stream, &mut std::io::sink()).context("decompressing")?;
        }
        Ok(())
    })?;
    if let Some(bytes_in) = fetched.bytes_in
        && read != bytes_in
    {
        bail!("decompressed to {read} bytes, but the source produced {bytes_in}");
    }
    let checked = fetched.checked;
    Ok(if kind == "tar" {
        format!("{checked}, decrypted, {read} bytes, {entries} tar entries")
    } else {
        format!("{checked}, decrypted, {read} bytes")
    })
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
        // An increment is restored on top of its full: both are fetched, the full first.
        let full = match &copy {
            Chosen::Ours(c) if c.base.is_some() && matches!(target, Target::Extract(_)) => {
                let all = copies(plan, &mut instance, source_id).await?;
                match c.full_in(&all) {
                    Some(full) => Some(Chosen::Ours(full.clone())),
                    None => {
                        last_error = Some(anyhow::anyhow!(
                            "{}: the full {} needs is gone",
                            dest.entry.label(),
                            c.object
                        ));
                        continue;
                    }
                }
            }
            _ => None,
        };
        let keys = keys_for(sources[0], secret_keys, &[])?;
        let chain: Vec<&Chosen> = full.iter().chain([&copy]).collect();
        let mut done = Vec::new();
        let mut failed = None;
        for (i, link) in chain.iter().enumerate() {
            let fetched = match fetch(&mut instance, link, session.dir()).await {
                Ok(f) => f,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
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
                    if fetched.kind != "tar" {
                        bail!(
                            "{} is a {} dump, not a folder archive: restore it with --to FILE",
                            fetched.object,
                            fetched.kind
                        );
                    }
                    if i == 0 {
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
                    } else {
                        plaintext(&fetched, &keys, &mut |stream| {
                            crate::extract::extract_increment(stream, dir)
                        })?;
                    }
                }
            }
            let _ = std::fs::remove_file(&fetched.path);
            done.push(fetched.object);
        }
        if let Some(e) = failed {
            // A damaged copy at one destination: try the next one (an extraction begun
            // into the target is refused there, as it is no longer empty).
            tracing::warn!("{}: {e:#}", dest.entry.label());
            last_error = Some(e);
            continue;
        }
        let restored = done.join(", then ");
        let note = match (&copy, target) {
            (Chosen::Ours(c), Target::Stream(_)) if c.base.is_some() => {
                " (an increment: extract its full first, then this, with tar -xG; or use \
                 --extract, which does both)"
                    .to_string()
            }
            _ => String::new(),
        };
        return Ok(format!("restored {restored} from {}{note}", dest.entry.id));
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no copy of {source_id} found")))
}
