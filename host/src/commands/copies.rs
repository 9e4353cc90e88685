//! `backups list`, `verify` and `restore`: the copies a job stored, read back.

use super::{planned, redacted};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) async fn list(
    path: &Path,
    selection: backups::restore::Selection,
    json: bool,
) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    let copies = backups::restore::list(&plan, &runtime, &selection)
        .await
        .map_err(|e| redacted(&plan, e))?;
    if json {
        match serde_json::to_string_pretty(&copies) {
            Ok(text) => println!("{text}"),
            Err(e) => return Err(e.into()),
        }
    } else {
        println!(
            "{:<14} {:<14} {:<21} {:>10}  object",
            "destination", "source", "created", "size"
        );
        for c in &copies {
            println!(
                "{:<14} {:<14} {:<21} {:>10}  {}{}",
                c.destination_id,
                c.source_id,
                c.created.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
                backups::text::human_bytes(c.size),
                c.object,
                match (&c.full, c.legacy) {
                    (_, true) => "  (the legacy tool's copy: restore it with gpg --decrypt)".into(),
                    (Some(full), _) => format!("  (an increment of {full})"),
                    (None, false) => String::new(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn verify(
    path: &Path,
    selection: backups::restore::Selection,
    secret_keys: &[PathBuf],
) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    let results = backups::restore::verify(&plan, &runtime, &selection, secret_keys)
        .await
        .map_err(|e| redacted(&plan, e))?;
    for v in &results {
        println!(
            "{:<7} {} at {}: {} — {}",
            if v.ok { "ok" } else { "FAILED" },
            v.source_id,
            v.destination_id,
            v.object.as_deref().unwrap_or("-"),
            v.detail
        );
    }
    Ok(if results.iter().all(|v| v.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn restore(
    path: &Path,
    selection: backups::restore::Selection,
    secret_keys: &[PathBuf],
    target: &backups::restore::Target,
) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    // A restore that fails once the job is planned exits 1, not 2: the job was fine,
    // the copy (or the target) was not.
    Ok(
        match backups::restore::restore(&plan, &runtime, &selection, secret_keys, target).await {
            Ok(what) => {
                tracing::info!("{what}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", redacted(&plan, e));
                ExitCode::from(1)
            }
        },
    )
}
