//! "Stored" means *seen* stored. A destination plugin's `ok` is its word, not a fact: a
//! buggy or lying one returns `ok` having kept nothing, or half. So after every put the
//! host lists the object's folder and looks for the key with exactly the bytes it sent;
//! anything else is a failed put, tried again like a transient error, then a failed copy.
//! And before retention lets old copies go, the copies that stand in for them (the
//! `min_copies` floor) must be the host's own: a manifest it can read back, naming that
//! very object with the size the listing shows.

use super::objects::{self, StoredCopy};
use super::retention;
use crate::redact::Redactor;
use crate::runtime::Instance;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Pauses before the second and third attempt of a put that failed transiently or was not
/// seen stored.
const PUT_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];

/// How many of the newest listed copies retention reads manifests of, at most, to find
/// the `min_copies` it must keep: a listing padded with made-up copies cannot make it
/// read without end, and if they crowd out real ones nothing is deleted.
const CONFIRM_AT_MOST: usize = 16;

/// What a put sends.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// The artifact file and its size.
    File(&'a Path, u64),
    /// A small object held in memory (a manifest).
    Bytes(&'a [u8]),
}

impl Payload<'_> {
    fn size(&self) -> u64 {
        match self {
            Payload::File(_, size) => *size,
            Payload::Bytes(b) => b.len() as u64,
        }
    }
}

/// Puts `payload` under `key` and confirms it by listing; retries transient failures and
/// copies that were not seen. The error is redacted and says what was seen.
pub async fn put_confirmed(
    instance: &mut Instance,
    label: &str,
    key: &str,
    payload: Payload<'_>,
    redactor: &Redactor,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let put = match payload {
            Payload::File(path, size) => instance.put_file(key, path, size).await,
            Payload::Bytes(bytes) => instance.put_bytes(key, bytes.to_vec()).await,
        };
        // Transient errors and copies not seen stored are tried again; others are final.
        let said_ok = put.is_ok();
        let (outcome, final_error) = match put {
            Ok(()) => (confirm(instance, key, payload.size()).await, false),
            Err(e) => (Err(e.to_string()), !e.is_transient()),
        };
        let why = match outcome {
            Ok(()) => return Ok(()),
            Err(why) => redactor.redact(&why),
        };
        let Some(delay) = PUT_RETRY_DELAYS.get(attempt).filter(|_| !final_error) else {
            if said_ok {
                // It claimed a copy that could not be confirmed: what it left must go.
                remove_unconfirmed(instance, label, key).await;
            }
            return Err(why);
        };
        tracing::warn!(
            "{label}: put {key}: {why} — retrying in {}s",
            delay.as_secs()
        );
        tokio::time::sleep(*delay).await;
        attempt += 1;
    }
}

/// What a put that said ok but was not seen stored left under `key` (this run's own, new
/// name: never an existing copy) is deleted, best effort, so that no half or unconfirmed
/// object lingers. (A put that *says* it failed must leave nothing, by the contract.)
async fn remove_unconfirmed(instance: &mut Instance, label: &str, key: &str) {
    match instance.delete(key).await {
        Ok(()) => tracing::info!("{label}: removed what the failed put left under {key}"),
        Err(e) => {
            tracing::warn!("{label}: could not remove what the failed put left under {key}: {e}")
        }
    }
}

/// Is `key` listed with exactly `size` bytes? Lists only the key's folder.
pub async fn confirm(instance: &mut Instance, key: &str, size: u64) -> Result<(), String> {
    let folder = key
        .rsplit_once('/')
        .map_or(String::new(), |(dir, _)| format!("{dir}/"));
    let listing = instance.list(&folder).await.map_err(|e| {
        format!(
            "the put said ok, but the copy could not be confirmed: listing {folder} failed: {e}"
        )
    })?;
    match listing.iter().find(|o| o.key == key) {
        Some(o) if o.size == size => Ok(()),
        Some(o) => Err(format!(
            "the put said ok, but the destination lists {key} with {} bytes, not the {size} sent",
            o.size
        )),
        None => Err(format!(
            "the put said ok, but the destination does not list {key} afterwards"
        )),
    }
}

/// The copies (newest first, as listed) that count towards the `min_copies` floor: this
/// run's `current` copy, just confirmed, and older ones whose manifest reads back as ours
/// and matches the listing, until the floor is met. `None` when the floor cannot be met
/// among the newest [`CONFIRM_AT_MOST`] while more copies remain: then nothing may go.
pub async fn confirm_floor(
    instance: &mut Instance,
    policy: &retention::Policy,
    copies: &[StoredCopy],
    current: &str,
    hostname: &str,
    source_id: &str,
    scratch: &Path,
) -> Option<HashSet<String>> {
    let floor = policy.min_copies.max(1) as usize;
    let mut confirmed = HashSet::new();
    for (looked, copy) in copies.iter().enumerate() {
        if confirmed.len() == floor {
            return Some(confirmed);
        }
        if looked == CONFIRM_AT_MOST {
            return None;
        }
        let ours = copy.object == current
            || match objects::read_manifest(instance, &copy.manifest, scratch).await {
                Ok(m) => {
                    m.object == copy.object
                        && m.size == copy.size
                        && m.source_id == source_id
                        && m.hostname == hostname
                }
                Err(e) => {
                    tracing::warn!("{}: not counted towards min_copies: {e}", instance.label());
                    false
                }
            };
        if ours {
            confirmed.insert(copy.object.clone());
        } else {
            tracing::warn!(
                "{}: {} is listed, but its manifest does not confirm it; it does not count \
                 towards min_copies",
                instance.label(),
                crate::text::for_terminal(&copy.object, 300)
            );
        }
    }
    // Every listed copy was looked at: what was confirmed is all there is.
    Some(confirmed)
}
