//! `backups status`: the dead-man's switch, from the destinations' listings.

use super::planned;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub(super) async fn status(
    path: &Path,
    json: bool,
    notify: bool,
    prometheus: Option<&Path>,
) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    let session = backups::session::Session::for_purpose(
        &plan,
        &runtime,
        "status",
        // Not the job's tmpdir: status may run as a monitoring user, even on another
        // machine, where that directory is not theirs (or does not exist).
        &std::env::temp_dir(),
    )?;
    let now = session.started();
    let checked = backups::status::check(&plan, &session).await;
    let results = &checked.freshness;
    let all_fresh = checked.ok();
    if json {
        match serde_json::to_string_pretty(&checked) {
            Ok(text) => println!("{}", plan.redactor.redact(&text)),
            Err(e) => return Err(e.into()),
        }
    } else {
        print!("{}", backups::status::table(results));
    }
    for w in &checked.warnings {
        tracing::warn!("{w}");
    }
    if let Some(file) = prometheus {
        let text = backups::status::prometheus(&plan, results);
        let tmp = file.with_extension("prom.tmp");
        // Written aside and renamed, so a scraper never reads half a file.
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, file)) {
            return Err(anyhow::anyhow!("{}: {e}", file.display()));
        }
    }
    for f in results.iter().filter(|f| !f.ok()) {
        tracing::error!(
            "{} at {}: {}",
            f.source_id,
            f.destination_id,
            match &f.state {
                backups::status::State::Stale => format!(
                    "newest copy is {} old, more than the {} allowed ({})",
                    backups::schedule::human_duration(f.age.unwrap_or_default()),
                    backups::schedule::human_duration(f.max_age),
                    f.max_age_from
                ),
                backups::status::State::Missing => "no complete copy at all".into(),
                backups::status::State::Unreachable(e) =>
                    format!("cannot list the destination: {e}"),
                backups::status::State::Fresh => unreachable!(),
            }
        );
    }
    if notify && !all_fresh {
        let report = backups::notify::stale_report(&plan, results, now);
        for (label, sent) in backups::notify::alert(&plan, &session, &report).await {
            match sent {
                Ok(()) => tracing::info!("{label}: alerted"),
                Err(e) => tracing::error!("{label}: alert failed: {e}"),
            }
        }
    }
    Ok(if all_fresh {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
