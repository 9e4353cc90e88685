//! The leftovers of killed `put`s: a `.partial` file a SIGKILLed run never renamed, an S3
//! multipart upload it never completed or aborted. A `put` that *fails* cleans up after
//! itself; one that is *killed* cannot, and what it left costs storage (on S3, billed and
//! invisible in every listing) for ever. So each run sweeps every destination where it
//! stored a copy.
//!
//! Two kinds, found two ways:
//! - what a killed `put` left: the destination plugin finds its own (its temporary-name
//!   pattern, its upload ids); the host decides which may go, below;
//! - an artifact whose manifest never followed (the run was killed between the two): not a
//!   copy, and never will be. The killed run's journal (`run_dir`) names it; the host
//!   removes it once the destination says its manifest is not there. Only what this
//!   machine recorded: a listing, which is only the destination's word, is never acted on.
//!
//! Of the plugin's leftovers, the host removes only those that are
//! - named like this job's objects (`{hostname}/{date}/{time}Z/…`): never another tool's,
//!   nor another job's under another hostname;
//! - older than the destination's `leftover_age` (default a day): a younger one may be a
//!   run on another machine that is still uploading.

use crate::redact::Redactor;
use crate::report::LeftoverSweep as Sweep;
use crate::run_dir::RunDir;
use crate::runtime::Instance;
use crate::runtime::{CleanupRule, Leftover};
use crate::store::objects;
use crate::text::for_terminal;
use jiff::Timestamp;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// A plugin's list is someone else's words: at most this many are looked at in one run.
const MOST: usize = 10_000;
/// What a manifest may hold (as `store::confirm` reads them).
const MANIFEST_MOST: u64 = 64 << 10;

/// Whether a leftover last written at `modified` (epoch seconds) is old enough to remove.
/// One whose time the backend does not know (0) never is: it may be a put in progress.
pub fn old_enough(modified: u64, age: Duration, now: Timestamp) -> bool {
    let now = now.as_second().max(0) as u64;
    modified > 0 && now.saturating_sub(modified) >= age.as_secs()
}

/// Lists this job's leftovers at one destination and, unless `dry_run`, removes those older
/// than `age`; with a run's directory, also the artifacts its journal shows begun here and
/// never finished, where they have no manifest (and ends them in the journal).
#[allow(clippy::too_many_arguments)]
pub async fn sweep(
    instance: &mut Instance,
    destination_id: &str,
    hostname: &str,
    age: Duration,
    now: Timestamp,
    dry_run: bool,
    run_dir: Option<&RunDir>,
    redactor: &Redactor,
) -> Sweep {
    let mut sweep = Sweep {
        destination_id: destination_id.to_string(),
        ..Sweep::default()
    };
    if let Err(e) = sweep_plugin_leftovers(instance, hostname, age, now, dry_run, &mut sweep).await
    {
        sweep.error = Some(redactor.redact(&e));
        return sweep;
    }
    let Some(run_dir) = run_dir else {
        return sweep;
    };
    let journaled = run_dir
        .unfinished
        .iter()
        .filter(|c| c.destination_id == destination_id);
    for copy in journaled {
        let scratch = &run_dir.path;
        let object = &copy.object;
        match remove_unvouched(instance, hostname, object, dry_run, scratch, &mut sweep).await {
            Ok(()) if !dry_run => run_dir.journal(false, destination_id, object),
            Ok(()) => {}
            Err(e) => {
                // Still open: the next run tries again.
                sweep.error = Some(redactor.redact(&e));
                return sweep;
            }
        }
    }
    sweep
}

async fn sweep_plugin_leftovers(
    instance: &mut Instance,
    hostname: &str,
    age: Duration,
    now: Timestamp,
    dry_run: bool,
    sweep: &mut Sweep,
) -> Result<(), String> {
    let prefix = format!("{hostname}/");
    let listed = match instance.list_leftovers(&prefix).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            sweep.unsupported = true;
            return Ok(());
        }
        Err(e) => return Err(format!("listing failed: {e}")),
    };
    let leftovers: Vec<&Leftover> = listed
        .iter()
        .take(MOST)
        .filter(|l| objects::parse_key(hostname, &l.key).is_some())
        .collect();
    if leftovers.is_empty() {
        return Ok(());
    }
    // What a plugin calls a leftover is never something it also lists as stored: a
    // confused plugin must not be asked to remove a copy.
    let stored = instance
        .list(&prefix)
        .await
        .map_err(|e| format!("listing failed: {e}"))?;
    let stored: HashSet<&str> = stored.iter().map(|o| o.key.as_str()).collect();
    for leftover in leftovers {
        if stored.contains(leftover.key.as_str()) {
            continue;
        }
        sweep.found += 1;
        sweep.found_bytes = sweep.found_bytes.saturating_add(leftover.size);
        if !old_enough(leftover.modified, age, now) {
            sweep.young += 1;
            continue;
        }
        if !dry_run {
            instance.remove_leftover(leftover).await.map_err(|e| {
                format!(
                    "removing the leftover of {}: {e}",
                    for_terminal(&leftover.key, 300)
                )
            })?;
        }
        sweep.removed.push(for_terminal(&leftover.key, 300));
        sweep.removed_bytes = sweep.removed_bytes.saturating_add(leftover.size);
    }
    Ok(())
}

/// Removes `object`, an artifact a killed run began to store here, if its manifest is not
/// there (with it, the copy is complete and stays).
async fn remove_unvouched(
    instance: &mut Instance,
    hostname: &str,
    object: &str,
    dry_run: bool,
    scratch: &Path,
    sweep: &mut Sweep,
) -> Result<(), String> {
    if objects::parse_key(hostname, object).is_none() {
        return Ok(()); // not a name of this job's: a journal of another hostname
    }
    let manifest = objects::manifest_key(object);
    match instance.get_bytes(&manifest, scratch, MANIFEST_MOST).await {
        // Vouched for: a copy, retention's to judge.
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(format!("reading {}: {e}", for_terminal(&manifest, 300))),
    }
    let size = match instance.list(object).await {
        Ok(listed) => listed.iter().find(|o| o.key == object).map(|o| o.size),
        Err(e) => return Err(format!("listing failed: {e}")),
    };
    let Some(size) = size else {
        return Ok(()); // the artifact never landed either
    };
    sweep.found += 1;
    sweep.found_bytes = sweep.found_bytes.saturating_add(size);
    if !dry_run {
        instance
            .delete(object)
            .await
            .map_err(|e| format!("deleting {}: {e}", for_terminal(object, 300)))?;
    }
    sweep.removed.push(for_terminal(object, 300));
    sweep.removed_bytes = sweep.removed_bytes.saturating_add(size);
    Ok(())
}

/// `status`'s words on a backend's own cleanup, when it has something to recommend.
pub fn self_cleaning_advice(cleaning: &CleanupRule) -> Option<String> {
    match cleaning {
        CleanupRule::Absent => Some(
            "the bucket has no AbortIncompleteMultipartUpload lifecycle rule: add one (e.g. \
             7 days) so that uploads a killed run left are removed even if no run follows"
                .into(),
        ),
        CleanupRule::NotApplicable
        | CleanupRule::AfterDays(_)
        | CleanupRule::ExpiresAfterDays(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_younger_than_the_age_is_left_alone() {
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let day = Duration::from_secs(86_400);
        let t = now.as_second() as u64;
        assert!(!old_enough(t - 3600, day, now));
        assert!(old_enough(t - 86_400, day, now));
        // A date in the future (clock skew) is young, not ancient; an unknown one too.
        assert!(!old_enough(t + 3600, day, now));
        assert!(!old_enough(0, day, now));
    }
}
