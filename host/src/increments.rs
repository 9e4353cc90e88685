//! Incremental folder archives: which run is a full, and what an increment is made against.
//!
//! Levels are **differential**: every increment is made against the last full, never
//! against the increment before it. A point in time is then at most two archives (its full
//! and itself), so one lost or damaged increment costs that one point and not every point
//! after it; retention, `verify` and `restore` each deal with pairs, not chains of any
//! length. The price is that an increment holds everything changed since the full, which
//! `full_every` bounds (a week of changes, by default).
//!
//! The host keeps, per job and source, in `{state_dir}/incremental/{job}/`:
//! - `{source}.index`: the plugin's index of the last full (what changed is decided
//!   against it; its format is the plugin's);
//! - `{source}.json`: which full that is, its index's sha256, and how many increments were
//!   stored since.
//!
//! Each full's index is also stored beside it, compressed and encrypted as the full is
//! (`{id}.index.gz.gpg`, named in the full's manifest), so that a new machine, or one whose
//! `state_dir` was lost, continues from the newest full instead of starting a new one (when
//! it can decrypt: a passphrase; with recipients only, it starts a full). Its plaintext
//! begins by naming its full, checked after decryption: a destination that serves another
//! full's index under this name is caught.
//!
//! Anything missing, unreadable or not matching makes the next run a full, never a wrong
//! increment. A run that fails leaves both files as they were, so a full that was due and
//! failed is due again: it is retried as a full, never replaced by an increment against
//! the older full.

use crate::codec::Compression;
use crate::codec::openpgp::{Keys, Plan as CryptoPlan};
use crate::config::{Entry, FullEvery};
use crate::runtime::Instance;
use crate::store::objects;
use anyhow::{Context as _, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The most bytes a plugin's index may take (its entries are a few bytes a file).
pub const INDEX_MOST: u64 = 1 << 30;

/// One source's chain state.
pub struct Chain {
    record: PathBuf,
    index: PathBuf,
}

/// What this run of the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// A whole archive, and why.
    Full { why: String },
    /// Only what changed since the full of `base` (its run time, and its object's name),
    /// whose index is `index`.
    Increment {
        base: Timestamp,
        base_object: String,
        index: PathBuf,
    },
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// The full's run time (its object's time, and what increments are named after).
    full: Timestamp,
    /// Its object name, for messages.
    full_object: String,
    index_sha256: String,
    /// Increments stored since the full.
    increments: u32,
}

impl Chain {
    pub fn new(state_dir: &Path, job: &str, source_id: &str) -> Chain {
        let dir = state_dir
            .join("incremental")
            .join(crate::lock::file_safe(job));
        Chain {
            record: dir.join(format!("{source_id}.json")),
            index: dir.join(format!("{source_id}.index")),
        }
    }

    /// What this run should be, from the state alone (the caller also checks that the
    /// full is still at every destination).
    pub fn level(&self, every: FullEvery, now: Timestamp) -> Level {
        let full = |why: &str| Level::Full { why: why.into() };
        let record: Record = match std::fs::read(&self.record) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return full("no full yet");
            }
            Err(e) => return full(&format!("{}: {e}", self.record.display())),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => return full(&format!("{}: {e}", self.record.display())),
            },
        };
        match sha256_of(&self.index) {
            Ok(digest) if digest == record.index_sha256 => {}
            Ok(_) => return full("the full's index does not match its record"),
            Err(e) => return full(&format!("the full's index: {e:#}")),
        }
        match every {
            FullEvery::Runs(n) if record.increments + 1 >= n => {
                return full(&format!("full_every {n} runs"));
            }
            FullEvery::Age(age)
                if now.duration_since(record.full).as_secs() >= age.as_secs() as i64 =>
            {
                return full(&format!(
                    "the last full ({}) is older than full_every",
                    record.full_object
                ));
            }
            _ => {}
        }
        if record.full > now {
            return full("the last full is dated after now");
        }
        Level::Increment {
            base: record.full,
            base_object: record.full_object,
            index: self.index.clone(),
        }
    }

    /// Records a full stored at one destination at least: `index` (the plugin's, in the
    /// run directory) becomes the index later increments are made against.
    pub fn full_stored(&self, index: &Path, full: Timestamp, object: &str) -> Result<()> {
        let dir = self.record.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // The index first, then the record that names its digest: killed in between, the
        // record does not match and the next run is a full.
        let staged = self.index.with_extension("index.new");
        std::fs::copy(index, &staged)
            .with_context(|| format!("copying the index to {}", staged.display()))?;
        std::fs::File::open(&staged)?.sync_all()?;
        std::fs::rename(&staged, &self.index)?;
        // Object names carry whole seconds: the full is known by its name's time.
        let full = Timestamp::from_second(full.as_second()).expect("a time in range");
        self.write_record(&Record {
            full,
            full_object: object.into(),
            index_sha256: sha256_of(&self.index)?,
            increments: 0,
        })
    }

    /// Whether this machine has a record of a full (when not, `recover` may find one).
    pub fn has_record(&self) -> bool {
        self.record.exists()
    }

    /// Counts an increment stored at one destination at least.
    pub fn increment_stored(&self) -> Result<()> {
        let bytes = std::fs::read(&self.record)?;
        let mut record: Record = serde_json::from_slice(&bytes)?;
        record.increments += 1;
        self.write_record(&record)
    }

    fn set_increments(&self, increments: u32) -> Result<()> {
        let mut record: Record = serde_json::from_slice(&std::fs::read(&self.record)?)?;
        record.increments = increments;
        self.write_record(&record)
    }

    fn write_record(&self, record: &Record) -> Result<()> {
        let staged = self.record.with_extension("json.new");
        std::fs::write(&staged, serde_json::to_vec_pretty(record)?)
            .with_context(|| format!("writing {}", staged.display()))?;
        std::fs::File::open(&staged)?.sync_all()?;
        std::fs::rename(&staged, &self.record)
            .with_context(|| format!("writing {}", self.record.display()))
    }
}

/// An increment only when the full it would be made against is a complete copy at every
/// destination: where it is not, the increment would restore nothing. A destination that
/// cannot say (it did not start, its listing failed) gets a full too.
pub async fn full_everywhere(
    level: Level,
    destinations: &mut [(&Entry, Result<Instance, String>)],
    hostname: &str,
    source_id: &str,
) -> Level {
    let Level::Increment {
        base, base_object, ..
    } = &level
    else {
        return level;
    };
    for (dest, instance) in destinations.iter_mut() {
        let missing = match instance {
            Err(_) => Some(format!("{} did not start", dest.label())),
            Ok(instance) => match instance.list(&format!("{hostname}/")).await {
                Err(e) => Some(format!("{}: its listing failed: {e}", dest.label())),
                Ok(listing) => (!objects::copies_of(hostname, source_id, &listing)
                    .iter()
                    .any(|c| c.base.is_none() && c.created == *base))
                .then(|| format!("{base_object} is not a complete copy at {}", dest.label())),
            },
        };
        if let Some(why) = missing {
            return Level::Full { why };
        }
    }
    level
}

/// The first line of a stored index's plaintext.
fn sealed_header(full_object: &str) -> String {
    format!("backups index of {full_object}\n")
}

/// Writes `index`, headed by the name of its full, compressed and encrypted as the full
/// was, to `out` (created new); returns its size.
pub fn seal(
    index: &Path,
    out: &Path,
    full_object: &str,
    compression: Compression,
    encryption: &CryptoPlan,
) -> Result<u64> {
    let mut plain = std::fs::File::open(index)?;
    let file =
        std::fs::File::create_new(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = std::io::BufWriter::new(file);
    let mut compress = |sink: &mut dyn Write| -> Result<()> {
        let mut compressor = compression.encoder(sink, 1)?;
        compressor.write_all(sealed_header(full_object).as_bytes())?;
        std::io::copy(&mut plain, &mut compressor)?;
        compressor.finish()?;
        Ok(())
    };
    if encryption.encrypts() {
        let mut message = encryption.encryptor(&mut written)?;
        compress(&mut message)?;
        message.finish()?;
    } else {
        compress(&mut written)?;
    }
    let file = written.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// The index of `full_object` from a stored one's plaintext (decrypted, decompressed) into
/// `out`, when its header names that full.
pub fn unseal(plaintext: &mut dyn Read, full_object: &str, out: &Path) -> Result<()> {
    let header = sealed_header(full_object);
    let mut found = vec![0u8; header.len()];
    plaintext
        .read_exact(&mut found)
        .context("the stored index is cut short")?;
    if found != header.as_bytes() {
        anyhow::bail!("the stored index is not the one of {full_object}");
    }
    let mut file = std::fs::File::create(out)?;
    std::io::copy(&mut plaintext.take(INDEX_MOST), &mut file)?;
    Ok(())
}

/// On a machine without a record: the newest full at the first destination that has it
/// with its stored index, whose index becomes this machine's record (with the increments
/// made on it since). Returns that full's name; `None` when there is none to continue
/// (then the run is a full).
pub async fn recover(
    chain: &Chain,
    destinations: &mut [(&Entry, Result<Instance, String>)],
    hostname: &str,
    source_id: &str,
    keys: &Keys,
    scratch: &Path,
) -> Option<String> {
    for (dest, instance) in destinations.iter_mut() {
        let Ok(instance) = instance else { continue };
        match recover_from(chain, instance, hostname, source_id, keys, scratch).await {
            Ok(Some(full)) => return Some(full),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "{}: the stored index of the last full could not be used: {e:#}",
                dest.label()
            ),
        }
    }
    None
}

async fn recover_from(
    chain: &Chain,
    instance: &mut Instance,
    hostname: &str,
    source_id: &str,
    keys: &Keys,
    scratch: &Path,
) -> Result<Option<String>> {
    let listing = instance
        .list(&format!("{hostname}/"))
        .await
        .map_err(|e| anyhow::anyhow!("listing: {e}"))?;
    let copies = objects::copies_of(hostname, source_id, &listing);
    let Some(full) = copies.iter().find(|c| c.base.is_none()) else {
        return Ok(None);
    };
    let manifest = objects::read_manifest(instance, &full.manifest, scratch).await?;
    let Some(key) = manifest
        .index
        .filter(|k| listing.iter().any(|o| &o.key == k))
    else {
        return Ok(None);
    };
    let sealed = scratch.join(format!("{source_id}.index.sealed"));
    instance
        .get_to_file(&key, &sealed, INDEX_MOST)
        .await
        .map_err(|e| anyhow::anyhow!("fetching {key}: {e}"))?;
    let recovered = scratch.join(format!("{source_id}.index.recovered"));
    let unsealed = (|| -> Result<()> {
        let file = std::io::BufReader::new(std::fs::File::open(&sealed)?);
        let compression = Compression::from_manifest(&manifest.compression)?;
        let mut plaintext = match crate::codec::Encryption::from_manifest(&manifest.encryption)? {
            crate::codec::Encryption::None => compression.decoder(file)?,
            _ => compression.decoder(keys.decrypt(file)?)?,
        };
        unseal(&mut plaintext, &full.object, &recovered)
    })();
    let _ = std::fs::remove_file(&sealed);
    let recorded = unsealed.and_then(|()| {
        let increments = copies
            .iter()
            .filter(|c| c.base == Some(full.created))
            .count();
        chain.full_stored(&recovered, full.created, &full.object)?;
        chain.set_increments(increments as u32)
    });
    let _ = std::fs::remove_file(&recovered);
    recorded?;
    Ok(Some(full.object.clone()))
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_until_one_is_stored_then_increments_until_full_every() {
        let state = tempfile::tempdir().unwrap();
        let chain = Chain::new(state.path(), "job", "files");
        let week = FullEvery::Age(Duration::from_secs(7 * 86_400));
        let monday = at("2026-11-02T01:00:00Z");
        assert!(matches!(chain.level(week, monday), Level::Full { .. }));

        let index = state.path().join("from-the-plugin");
        std::fs::write(&index, b"index").unwrap();
        chain.full_stored(&index, monday, "h/full").unwrap();
        let tuesday = at("2026-11-03T01:00:00Z");
        assert_eq!(
            chain.level(week, tuesday),
            Level::Increment {
                base: monday,
                base_object: "h/full".into(),
                index: chain.index.clone()
            }
        );
        assert!(matches!(
            chain.level(week, at("2026-11-09T01:00:00Z")),
            Level::Full { .. }
        ));

        // Counted: the third run after the full is a full with full_every 3.
        assert!(matches!(
            chain.level(FullEvery::Runs(3), tuesday),
            Level::Increment { .. }
        ));
        chain.increment_stored().unwrap();
        assert!(matches!(
            chain.level(FullEvery::Runs(3), tuesday),
            Level::Increment { .. }
        ));
        chain.increment_stored().unwrap();
        assert!(matches!(
            chain.level(FullEvery::Runs(3), tuesday),
            Level::Full { .. }
        ));
    }

    #[test]
    fn an_index_that_does_not_match_its_record_makes_a_full() {
        let state = tempfile::tempdir().unwrap();
        let chain = Chain::new(state.path(), "job", "files");
        let index = state.path().join("from-the-plugin");
        std::fs::write(&index, b"index").unwrap();
        let monday = at("2026-11-02T01:00:00Z");
        chain.full_stored(&index, monday, "h/full").unwrap();
        std::fs::write(&chain.index, b"another index").unwrap();
        let Level::Full { why } = chain.level(FullEvery::Runs(7), monday) else {
            panic!("an increment against an index that is not the full's")
        };
        assert!(why.contains("does not match"), "{why}");
        std::fs::remove_file(&chain.index).unwrap();
        assert!(matches!(
            chain.level(FullEvery::Runs(7), monday),
            Level::Full { .. }
        ));
    }
}
