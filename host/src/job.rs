//! One run of a job, end to end.
//!
//! 1. **Plan** ([`crate::plan`]): load every entry's plugin, ask it what it is, work out
//!    its grants. Any error there stops the run before anything is read or written.
//! 2. **Sources**, one at a time: dump → gzip → OpenPGP into one temporary artifact.
//!    A source that fails (error, crash, timeout, denied grant) is reported and the others
//!    still run; its artifact is discarded, never uploaded.
//! 3. **Destinations**, concurrently for each artifact: put, seen stored by listing (with
//!    retries), then the manifest, seen stored, then retention on a fresh listing
//!    ([`crate::store::confirm`]). A failing destination never stops the others.
//! 4. **Notifiers**: each gets the report if its `notify_on_*` says so. A notifier that
//!    fails is reported but never changes the run's outcome.

use crate::codec::Compression;
use crate::codec::openpgp::Plan as CryptoPlan;
use crate::config::{Entry, LegacyCopies};
use crate::increments::{self, Chain, Level};
use crate::notify;
use crate::pipeline;
use crate::plan::{JobPlan, Planned};
use crate::redact::Redactor;
use crate::report::{DestinationResult, NotifierResult, RunReport, SourceResult};
use crate::run_dir::RunDir;
use crate::runtime::{CallError, Instance, ObjectInfo, Runtime, sink};
use crate::session::Session;
use crate::store::confirm::{self, Payload};
use crate::store::leftovers;
use crate::store::objects::{self, Manifest};
use crate::store::retention;
use anyhow::Result;
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared progress counter for the CLI's TTY display: bytes the current source produced.
#[derive(Clone, Default)]
pub struct Progress {
    pub bytes: Arc<AtomicU64>,
}

/// Runs a planned job. Returns the report; the caller decides the exit code from it.
pub async fn run(plan: &JobPlan, runtime: &Runtime, progress: &Progress) -> Result<RunReport> {
    let job = &plan.job;
    // The caller holds the job's run lock (cli, daemon), as a run's session requires.
    let session = Session::for_run(plan, runtime)?;
    let run_dir = session
        .run_dir()
        .expect("a run's session has a run directory");
    let started = session.started();
    let run_id = session.id().to_string();
    let redact = |s: String| plan.redactor.redact(&s);

    // Notifiers that asked to hear of the start (a ping service times the run with it).
    let start = notify::started(&job.name, &job.hostname, &run_id, started);
    for planned in plan
        .notifications
        .iter()
        .filter(|p| p.entry.notify_on_start)
    {
        if let Err(e) = notify::send(plan, &session, planned, &start, None).await {
            tracing::warn!("{}: start notification failed: {e}", planned.entry.label());
        }
    }

    // Destinations are opened once and serve every source; one whose plugin did not start
    // at planning fails every copy, with its reason.
    let mut destinations: Vec<(&Entry, Result<Instance, String>)> = plan
        .unstarted
        .iter()
        .filter(|u| u.entry.role == crate::config::Role::Destination)
        .map(|u| (&u.entry, Err(u.error.clone())))
        .collect();
    for planned in &plan.destinations {
        let opened = session.open(planned).await.map_err(redact);
        if let Err(e) = &opened {
            tracing::error!("{}: {e}", planned.entry.label());
        }
        destinations.push((&planned.entry, opened));
    }

    let mut report = RunReport {
        job: job.name.clone(),
        hostname: job.hostname.clone(),
        run_id: run_id.clone(),
        started,
        finished: started,
        sources: Vec::new(),
        destinations: Vec::new(),
        notifications: Vec::new(),
        leftovers: Vec::new(),
    };

    for unstarted in plan
        .unstarted
        .iter()
        .filter(|u| u.entry.role == crate::config::Role::Source)
    {
        let error = format!("the plugin did not start: {}", unstarted.error);
        record_failed_source(
            &mut report,
            &unstarted.entry,
            &destinations,
            error,
            progress,
            Instant::now(),
        );
    }
    for planned in &plan.sources {
        let entry = &planned.entry;
        let began = Instant::now();
        progress.bytes.store(0, Ordering::Relaxed);
        if crate::interrupt::requested() {
            let e = format!("not started: {}", crate::interrupt::REASON);
            record_failed_source(&mut report, entry, &destinations, e, progress, began);
            continue;
        }
        // Prepared once, before anything is read: a key that cannot be used fails this
        // source alone.
        let encryption = match CryptoPlan::prepare(
            entry.encryption.as_ref().expect("validated"),
            &entry.label(),
        ) {
            Ok(plan) => plan,
            Err(e) => {
                let e = redact(format!("{e:#}"));
                tracing::error!("{}: FAILED: {e}", entry.label());
                record_failed_source(&mut report, entry, &destinations, e, progress, began);
                continue;
            }
        };
        let chain = entry
            .incremental
            .map(|every| (every, Chain::new(&job.state_dir, &job.name, &entry.id)));
        let level = match &chain {
            Some((every, chain)) => {
                if !chain.has_record() {
                    recover_chain(chain, planned, &mut destinations, &job.hostname, &session).await;
                }
                let level = chain.level(*every, started);
                let level =
                    increments::full_everywhere(level, &mut destinations, &job.hostname, &entry.id)
                        .await;
                match &level {
                    Level::Full { why } => tracing::info!("{}: a full ({why})", entry.label()),
                    Level::Increment { base_object, .. } => {
                        tracing::info!("{}: an increment of {base_object}", entry.label())
                    }
                }
                Some(level)
            }
            None => None,
        };
        tracing::info!("{}: dumping ({})", entry.label(), entry.name);
        let dumped = dump(
            &session,
            planned,
            encryption.clone(),
            progress,
            level.as_ref(),
        )
        .await;
        let Dumped {
            artifact,
            kind,
            warnings,
            increment_of,
            index,
        } = match dumped {
            Ok(d) if crate::interrupt::requested() => {
                // Complete, but the operator asked the run to stop: no uploads start now.
                let _ = std::fs::remove_file(&d.artifact.path);
                d.discard_index();
                let e = format!("dumped, not uploaded: {}", crate::interrupt::REASON);
                record_failed_source(&mut report, entry, &destinations, e, progress, began);
                continue;
            }
            Ok(d) => d,
            Err(e) => {
                let e = redact(e);
                tracing::error!("{}: FAILED: {e}", entry.label());
                record_failed_source(&mut report, entry, &destinations, e, progress, began);
                continue;
            }
        };
        let compression = Compression::from(entry.compression);
        let object = objects::object_key(
            &job.hostname,
            started,
            &entry.id,
            &kind,
            increment_of.as_ref().map(|(base, _)| *base),
            (compression, encryption.kind()),
        );
        // A full of an incremental source: its index goes beside it, sealed as it is.
        let index_beside = match (&index, &increment_of) {
            (Some(index), None) => seal_index(index, &object, entry, &encryption, &session),
            _ => None,
        };
        let manifest = Manifest {
            manifest_version: objects::MANIFEST_VERSION,
            job: job.name.clone(),
            hostname: job.hostname.clone(),
            run_id: run_id.clone(),
            source_id: entry.id.clone(),
            source_name: entry.name.clone(),
            kind: kind.clone(),
            object: object.clone(),
            created: started.to_string(),
            size: artifact.size,
            sha256: artifact.sha256.clone(),
            bytes_in: artifact.bytes_in,
            compression: compression.name().into(),
            encryption: encryption.kind().name().into(),
            recipients: encryption.recipients(),
            tool: format!("backups {}", env!("CARGO_PKG_VERSION")),
            base: increment_of.as_ref().map(|(_, object)| object.clone()),
            index: index_beside.as_ref().map(|(key, _, _)| key.clone()),
        };
        let manifest_json = serde_json::to_vec_pretty(&manifest)?;
        tracing::info!(
            "{}: dumped {} → {} ({})",
            entry.label(),
            crate::text::human_bytes(artifact.bytes_in),
            crate::text::human_bytes(artifact.size),
            object
        );
        report.sources.push(SourceResult {
            id: entry.id.clone(),
            name: entry.name.clone(),
            ok: true,
            error: None,
            warnings: warnings.iter().map(|w| redact(w.clone())).collect(),
            bytes_in: artifact.bytes_in,
            bytes_out: artifact.size,
            duration: began.elapsed(),
            upload: Duration::ZERO,
            object: Some(object.clone()),
        });

        let uploads = destinations.iter_mut().map(|(dest, instance)| {
            store_copy(
                dest,
                instance,
                &entry.id,
                &job.hostname,
                &object,
                &artifact,
                &manifest_json,
                index_beside
                    .as_ref()
                    .map(|(key, path, size)| (key.as_str(), path.as_path(), *size)),
                &plan.redactor,
                run_dir,
            )
        });
        let uploading = Instant::now();
        let results = futures_join_all(uploads).await;
        if let Some(source) = report.sources.last_mut() {
            source.upload = uploading.elapsed();
        }
        let stored_somewhere = results.iter().any(|r| r.ok);
        report.destinations.extend(results);
        let _ = std::fs::remove_file(&artifact.path);
        if let Some((_, sealed, _)) = &index_beside {
            let _ = std::fs::remove_file(sealed);
        }
        if let (Some((_, chain)), Some(index)) = (&chain, &index) {
            // Stored nowhere: nothing changes, so a full that was due is due again.
            let recorded = match (stored_somewhere, &increment_of) {
                (false, _) => Ok(()),
                (true, None) => chain.full_stored(index, started, &object),
                (true, Some(_)) => chain.increment_stored(),
            };
            if let Err(e) = recorded {
                let e = format!(
                    "stored, but the incremental state was not saved ({e:#}): the next run \
                     is a full"
                );
                tracing::warn!("{}: {e}", entry.label());
                if let Some(source) = report.sources.last_mut() {
                    source.warnings.push(e);
                }
            }
            let _ = std::fs::remove_file(index);
        }
    }
    if !crate::interrupt::requested() {
        report.leftovers = sweep_leftovers(plan, &mut destinations, &report, run_dir).await;
    }
    drop(destinations);

    report.finished = crate::schedule::now().max(started);
    notify(plan, &session, &mut report).await;
    Ok(report)
}

/// On a machine with no record of the source's last full (a new one, a lost `state_dir`):
/// continue from the index stored beside the newest full, when this job can decrypt it.
async fn recover_chain(
    chain: &Chain,
    planned: &Planned,
    destinations: &mut [(&Entry, Result<Instance, String>)],
    hostname: &str,
    session: &Session<'_>,
) {
    let entry = &planned.entry;
    let decryptable = matches!(
        entry.encryption,
        Some(crate::config::Encryption::Passphrase(_) | crate::config::Encryption::None)
    );
    if !decryptable {
        return;
    }
    let Ok(keys) = crate::restore::keys_for(planned, &[], &[]) else {
        return;
    };
    let found = increments::recover(
        chain,
        destinations,
        hostname,
        &entry.id,
        &keys,
        session.dir(),
    )
    .await;
    if let Some(full) = found {
        tracing::info!(
            "{}: no local record of the last full: continuing from {full}, with its index \
             stored beside it",
            entry.label()
        );
    }
}

/// Seals a full's index for storing beside it: (its key, the sealed file, its size).
/// Without it the full is still a whole copy, so a failure is only logged.
fn seal_index(
    index: &std::path::Path,
    object: &str,
    entry: &Entry,
    encryption: &CryptoPlan,
    session: &Session<'_>,
) -> Option<(String, PathBuf, u64)> {
    let key = objects::index_key(object, &entry.id)?;
    let sealed = session.dir().join(format!("{}.index.sealed", entry.id));
    let compression = Compression::from(entry.compression);
    match increments::seal(index, &sealed, object, compression, encryption) {
        Ok(size) => Some((key, sealed, size)),
        Err(e) => {
            let _ = std::fs::remove_file(&sealed);
            tracing::warn!(
                "{}: the index is not stored beside the full ({e:#}): a new machine would \
                 start with a full",
                entry.label()
            );
            None
        }
    }
}

/// Removes what earlier killed runs' `put`s left (old enough, and named like this job's
/// objects: see `store::leftovers`) at every destination that stored a copy in this run,
/// as retention runs only there: one that failed (a wrong key, a server down) would only
/// fail again.
async fn sweep_leftovers(
    plan: &JobPlan,
    destinations: &mut [(&Entry, Result<Instance, String>)],
    report: &RunReport,
    run_dir: &RunDir,
) -> Vec<crate::report::LeftoverSweep> {
    let now = crate::schedule::now();
    let hostname = &plan.job.hostname;
    let sweeps = destinations.iter_mut().filter_map(|(dest, instance)| {
        let stored_here = report
            .destinations
            .iter()
            .any(|d| d.destination_id == dest.id && d.ok);
        if !stored_here {
            return None;
        }
        let instance = instance.as_mut().ok()?;
        Some(async move {
            let sweep = leftovers::sweep(
                instance,
                &dest.id,
                hostname,
                dest.leftover_age,
                now,
                false,
                Some(run_dir),
                &plan.redactor,
            )
            .await;
            match sweep.describe(false) {
                Some(line) if sweep.error.is_some() => tracing::warn!("{}: {line}", dest.label()),
                Some(line) => tracing::info!("{}: {line}", dest.label()),
                None => {}
            }
            if sweep.unsupported {
                tracing::debug!(
                    "{}: its plugin predates contract 0.1.2 and cannot list leftovers",
                    dest.label()
                );
            }
            sweep
        })
    });
    futures_join_all(sweeps).await
}

/// `run --dry-run --leftovers`: what this run's sweep would remove at each destination,
/// from listings alone (nothing is removed). Opening a destination is what a run does
/// first, so a `local` directory that does not exist yet is created, as a run would.
/// The journal of a killed run's unfinished copies is left to the run itself.
pub async fn leftovers_dry_run(
    plan: &JobPlan,
    runtime: &Runtime,
) -> Result<Vec<crate::report::LeftoverSweep>> {
    let session = Session::for_purpose(plan, runtime, "dry-run", &plan.job.tmpdir)?;
    let now = crate::schedule::now();
    let mut sweeps = Vec::new();
    for planned in &plan.destinations {
        let dest = &planned.entry;
        let sweep = match session.open(planned).await {
            Ok(mut instance) => {
                leftovers::sweep(
                    &mut instance,
                    &dest.id,
                    &plan.job.hostname,
                    dest.leftover_age,
                    now,
                    true,
                    None,
                    &plan.redactor,
                )
                .await
            }
            Err(e) => crate::report::LeftoverSweep {
                destination_id: dest.id.clone(),
                error: Some(format!("not opened: {e}")),
                ..Default::default()
            },
        };
        sweeps.push(sweep);
    }
    Ok(sweeps)
}

/// A source that produced no artifact, and so no copy at any destination.
fn record_failed_source(
    report: &mut RunReport,
    entry: &Entry,
    destinations: &[(&Entry, Result<Instance, String>)],
    error: String,
    progress: &Progress,
    began: Instant,
) {
    report.sources.push(SourceResult {
        id: entry.id.clone(),
        name: entry.name.clone(),
        ok: false,
        error: Some(error),
        warnings: Vec::new(),
        bytes_in: progress.bytes.load(Ordering::Relaxed),
        bytes_out: 0,
        duration: began.elapsed(),
        upload: Duration::ZERO,
        object: None,
    });
    for (dest, _) in destinations {
        report.destinations.push(DestinationResult {
            destination_id: dest.id.clone(),
            source_id: entry.id.clone(),
            ok: false,
            object: None,
            error: Some("not uploaded: the source failed".into()),
            retained: None,
            deleted: Vec::new(),
            retention_error: None,
        });
    }
}

/// A source's complete artifact.
struct Dumped {
    artifact: pipeline::Artifact,
    kind: String,
    warnings: Vec<String>,
    /// An increment: the run time and object name of its full.
    increment_of: Option<(Timestamp, String)>,
    /// An incremental source's index of this run (in the run directory).
    index: Option<PathBuf>,
}

impl Dumped {
    fn discard_index(&self) {
        if let Some(index) = &self.index {
            let _ = std::fs::remove_file(index);
        }
    }
}

/// Dumps one source into a complete artifact, or says why not. With a `level`, the
/// source archives incrementally (see `increments`).
async fn dump(
    session: &Session<'_>,
    planned: &Planned,
    encryption: CryptoPlan,
    progress: &Progress,
    level: Option<&Level>,
) -> Result<Dumped, String> {
    let entry = &planned.entry;
    let mut instance = session.open(planned).await?;
    let index = session.dir().join(format!("{}.index", entry.id));

    let path = session.dir().join(format!("{}.artifact", entry.id));
    let (sink, chunks) = sink::artifact_channel();
    let writer = pipeline::spawn(
        chunks,
        path.clone(),
        Compression::from(entry.compression),
        encryption,
        progress.bytes.clone(),
    );
    let dumped = match level {
        None => instance
            .dump(&sink)
            .await
            .map(|d| (d.kind, d.warnings, None)),
        Some(level) => {
            let base = match level {
                Level::Increment { index, .. } => Some(index.as_path()),
                Level::Full { .. } => None,
            };
            instance
                .dump_incremental(&sink, base, &index, increments::INDEX_MOST)
                .await
                .map(|d| (d.kind, d.warnings, Some(d.full)))
        }
    };
    drop(sink);
    drop(instance);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| format!("artifact writer: {e}"))?
        .map_err(|_| "artifact writer panicked".to_string())?;

    let discard = || {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&index);
    };
    match (dumped, written) {
        (Ok((kind, warnings, full)), Ok(artifact)) => {
            if !objects::valid_kind(&kind) {
                discard();
                return Err(format!(
                    "the plugin named its artifact kind {kind:?}; a kind is 1-16 letters, digits or -"
                ));
            }
            let increment_of = match (level, full) {
                (
                    Some(Level::Increment {
                        base, base_object, ..
                    }),
                    Some(false),
                ) => Some((*base, base_object.clone())),
                (Some(Level::Full { .. }), Some(false)) => {
                    discard();
                    return Err(
                        "the plugin called its archive an increment, but it was asked for a \
                         full (no base)"
                            .into(),
                    );
                }
                _ => None,
            };
            Ok(Dumped {
                artifact,
                kind,
                warnings: bounded_warnings(warnings),
                increment_of,
                index: level.map(|_| index),
            })
        }
        (dumped, written) => {
            discard();
            // The writer's error is the cause when it failed first (the plugin then only
            // saw its stream close).
            Err(match (dumped, written) {
                (_, Err(w)) => format!("writing the artifact failed: {w:#}"),
                (Err(d), _) => d.to_string(),
                _ => unreachable!(),
            })
        }
    }
}

/// A plugin's warnings go into the report, logs and notifications: a few, each short.
fn bounded_warnings(mut warnings: Vec<String>) -> Vec<String> {
    const MOST: usize = 20;
    const LONGEST: usize = 500;
    let dropped = warnings.len().saturating_sub(MOST);
    warnings.truncate(MOST);
    for w in &mut warnings {
        *w = crate::text::for_terminal(w, LONGEST);
    }
    if dropped > 0 {
        warnings.push(format!("… and {dropped} more warnings from the plugin"));
    }
    warnings
}

/// Puts one artifact and its manifest at one destination, then applies retention there.
#[allow(clippy::too_many_arguments)]
async fn store_copy(
    dest: &Entry,
    instance: &mut Result<Instance, String>,
    source_id: &str,
    hostname: &str,
    object: &str,
    artifact: &pipeline::Artifact,
    manifest_json: &[u8],
    index_beside: Option<(&str, &std::path::Path, u64)>,
    redactor: &Redactor,
    run_dir: &RunDir,
) -> DestinationResult {
    let scratch = run_dir.path.as_path();
    let mut result = DestinationResult {
        destination_id: dest.id.clone(),
        source_id: source_id.to_string(),
        ok: false,
        object: None,
        error: None,
        retained: None,
        deleted: Vec::new(),
        retention_error: None,
    };
    let instance = match instance {
        Ok(i) => i,
        Err(e) => {
            result.error = Some(e.clone());
            return result;
        }
    };
    let label = dest.label();

    // The artifact, seen stored; only then its manifest, seen stored: a copy with a
    // manifest is a complete copy, so the manifest must never vouch for bytes that are
    // not there.
    let manifest_key = objects::manifest_key(object);
    let artifact_payload = Payload::File(&artifact.path, artifact.size);
    // Journaled, so that if this process is killed before the end the next run knows
    // which artifact may be stored without its manifest (see `run_dir`).
    run_dir.journal(true, &dest.id, object);
    let stored = match confirm::put_confirmed(instance, &label, object, artifact_payload, redactor)
        .await
    {
        Ok(()) => {
            let manifest = Payload::Bytes(manifest_json);
            let vouched =
                confirm::put_confirmed(instance, &label, &manifest_key, manifest, redactor).await;
            if vouched.is_err() {
                // Not a copy without its manifest: leave neither half to cost storage
                // (the manifest first, as retention deletes, in case it did land).
                let _ = instance.delete(&manifest_key).await;
                let _ = instance.delete(object).await;
            }
            vouched
        }
        Err(e) => Err(e),
    };
    run_dir.journal(false, &dest.id, object);
    if let Err(e) = stored {
        tracing::error!("{label}: storing {object} FAILED: {e}");
        result.error = Some(e);
        return result;
    }
    tracing::info!(
        "{label}: stored {object} (confirmed by listing: {} bytes)",
        artifact.size
    );
    result.ok = true;
    result.object = Some(object.to_string());
    // After the manifest: the copy is whole without it, and a killed put of it leaves a
    // leftover the next runs sweep.
    if let Some((key, path, size)) = index_beside
        && let Err(e) =
            confirm::put_confirmed(instance, &label, key, Payload::File(path, size), redactor).await
    {
        tracing::warn!(
            "{label}: the full's index was not stored beside it ({e}): a new machine would start with a full"
        );
    }

    // Retention, on a listing taken now. A listing that fails means no deletes here.
    let policy = retention::Policy::for_entry(dest);
    let listing = match instance.list(&format!("{hostname}/")).await {
        Ok(l) => l,
        Err(e) => {
            let e = redactor.redact(&e.to_string());
            tracing::warn!("{label}: listing failed, so nothing is deleted: {e}");
            result.retention_error = Some(format!("listing failed: {e}"));
            return result;
        }
    };
    let copies = objects::copies_of(hostname, source_id, &listing);
    // The legacy tool's copies, when this destination manages them: retention points of
    // their own, on the same policy. A listing of them that fails means no deletes here.
    let legacy = match dest.legacy_copies {
        LegacyCopies::Read => objects::LegacyPoints::default(),
        LegacyCopies::Manage => {
            match legacy_points(instance, hostname, source_id, &listing).await {
                Ok(points) => points,
                Err(e) => {
                    let e = redactor.redact(&e.to_string());
                    tracing::warn!(
                        "{label}: listing the legacy tool's copies failed, so nothing is deleted: {e}"
                    );
                    result.retention_error =
                        Some(format!("listing the legacy tool's copies failed: {e}"));
                    return result;
                }
            }
        }
    };
    if !copies.iter().any(|c| c.object == object) {
        // Our own new copy is not listed: the listing cannot be trusted for deletes.
        result.retention_error = Some(format!("the new copy {object} is missing from the listing"));
        result.retained = Some(copies.len() as u32);
        return result;
    }
    let now = crate::schedule::now();
    let (copies, mut future) = retention::split_future(copies, now);
    let (legacy_copies, legacy_future) = retention::split_future(legacy.copies, now);
    future.extend(legacy_future);
    if !future.is_empty() {
        let shown: Vec<String> = future
            .iter()
            .take(5)
            .map(|c| crate::text::for_terminal(&c.object, 200))
            .collect();
        tracing::warn!(
            "{label}: {} listed copies are dated after now (+{} min of clock skew) and are \
             ignored by retention (neither counted nor deleted): {}{}",
            future.len(),
            retention::CLOCK_SKEW.as_mins(),
            shown.join(", "),
            if future.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    let confirmed = if policy.is_keep_all() {
        Some(Default::default())
    } else {
        confirm::confirm_floor(
            instance, &policy, &copies, object, hostname, source_id, scratch,
        )
        .await
    };
    let Some(mut confirmed) = confirmed else {
        result.retention_error = Some(format!(
            "nothing deleted: fewer than {} of the newest listed copies have a manifest \
             that matches the listing (min_copies counts only copies the host can confirm)",
            policy.min_copies.max(1)
        ));
        result.retained = Some(copies.len() as u32);
        return result;
    };
    // The legacy tool's copies have no manifest to confirm, yet they are good copies as far
    // as anyone knows: they help fill the floor, so that the first nights after migrating
    // never leave fewer than `min_copies` copies of either tool.
    confirmed.extend(legacy_copies.iter().map(|c| c.object.clone()));
    let safeguards = retention::Safeguards {
        current: object,
        confirmed: &confirmed,
    };
    let copies = copies.into_iter().chain(legacy_copies).collect();
    let decision = retention::decide(&policy, copies, now, &safeguards);
    result.retained = Some(decision.keep.len() as u32);
    for copy in &decision.delete {
        if let Some(parts) = legacy.parts.get(&copy.object) {
            match delete_all(instance, parts).await {
                Ok(()) => {
                    tracing::info!(
                        "{label}: retention deleted the legacy tool's copy {}",
                        copy.object
                    );
                    result.deleted.extend(parts.iter().cloned());
                    continue;
                }
                Err(e) => {
                    let e = redactor.redact(&e.to_string());
                    tracing::warn!("{label}: retention could not delete {}: {e}", copy.object);
                    result.retention_error = Some(format!("deleting {}: {e}", copy.object));
                    break;
                }
            }
        }
        // A full's index first (a full without it is still whole), then the manifest:
        // without it the copy stops counting as complete at once.
        let index_beside = objects::index_key(&copy.object, source_id)
            .filter(|key| listing.iter().any(|o| &o.key == key));
        let deleted = match index_beside {
            Some(key) => instance.delete(&key).await,
            None => Ok(()),
        };
        let deleted = match deleted {
            Ok(()) => instance.delete(&copy.manifest).await,
            Err(e) => Err(e),
        };
        let deleted = match deleted {
            Ok(()) => instance.delete(&copy.object).await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => {
                tracing::info!("{label}: retention deleted {}", copy.object);
                result.deleted.push(copy.object.clone());
            }
            Err(e) => {
                let e = redactor.redact(&e.to_string());
                tracing::warn!("{label}: retention could not delete {}: {e}", copy.object);
                result.retention_error = Some(format!("deleting {}: {e}", copy.object));
                break;
            }
        }
    }
    result
}

/// The legacy tool's copies of `source_id` at a destination, as retention points: its
/// layout under `{hostname}/` is in `by_host` already, the one under `{id}/` is listed here.
async fn legacy_points(
    instance: &mut Instance,
    hostname: &str,
    source_id: &str,
    by_host: &[ObjectInfo],
) -> Result<objects::LegacyPoints, CallError> {
    let [by_id, _] = objects::legacy_prefixes(hostname, source_id);
    let mut seen = instance.list(&by_id).await?;
    seen.extend(by_host.iter().cloned());
    Ok(objects::legacy_points(&objects::legacy_copies_of(
        hostname, source_id, &seen,
    )))
}

/// Deletes every object of a legacy point, stopping at the first failure.
async fn delete_all(instance: &mut Instance, keys: &[String]) -> Result<(), CallError> {
    for key in keys {
        instance.delete(key).await?;
    }
    Ok(())
}

async fn notify(plan: &JobPlan, session: &Session<'_>, report: &mut RunReport) {
    let success = report.success();
    let wit_report = notify::run_report(report);
    let details = notify::run_details(report);
    for planned in &plan.notifications {
        let entry = &planned.entry;
        let wanted = planned.notifies(success);
        if !wanted {
            report.notifications.push(NotifierResult {
                id: entry.id.clone(),
                sent: false,
                error: None,
            });
            continue;
        }
        let sent = notify::send(plan, session, planned, &wit_report, Some(details.clone())).await;
        let error = sent.err();
        if let Some(e) = &error {
            tracing::warn!("{}: notification failed: {e}", entry.label());
        }
        report.notifications.push(NotifierResult {
            id: entry.id.clone(),
            sent: error.is_none(),
            error,
        });
    }
    for unstarted in plan
        .unstarted
        .iter()
        .filter(|u| u.entry.role == crate::config::Role::Notifier)
    {
        report.notifications.push(NotifierResult {
            id: unstarted.entry.id.clone(),
            sent: false,
            error: Some(format!("the plugin did not start: {}", unstarted.error)),
        });
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<_> = futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
