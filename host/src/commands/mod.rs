//! The command line: one file per command (`run.rs`: run and check; `status.rs`;
//! `copies.rs`: list, verify, restore; `plugins.rs`; `daemon.rs`). Each handler returns
//! `Result<ExitCode>`; an error is printed here, once, as `error: …` with exit code 2.
//!
//! Exit codes: 0 every source reached every destination; 1 the backup is incomplete (a
//! source or destination failed); 2 the job could not start (bad job file, plugin or
//! grant) — nothing was read, written or deleted.

mod copies;
mod daemon;
mod plugins;
mod run;
mod status;

use anyhow::Result;
use backups::config::Job;
use backups::runtime::{Runtime, loader};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "backups",
    version,
    about = "Back up folders and databases through sandboxed WebAssembly plugins"
)]
pub struct Cli {
    /// More detail: each plugin call and grant decision (-vv: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors (for cron: silence means success).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Run even as root (refused by default: granted commands would run as root).
    #[arg(long, global = true, env = "BACKUPS_ALLOW_ROOT",
          value_parser = clap::builder::BoolishValueParser::new())]
    allow_root: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job: dump every source, store it at every destination, apply retention, notify.
    Run {
        /// The job file (JSON, the legacy tool's format).
        job: PathBuf,
        /// Validate the job, load every plugin and print every effective grant; touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: also list, at each destination (read-only), what the run would
        /// remove of earlier killed runs' uploads.
        #[arg(long, requires = "dry_run")]
        leftovers: bool,
        /// Also print the run report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// What a job would run, for a security review: per plugin instance its digest,
    /// signature, every grant and where it came from, and the grants that are risky
    /// (shells, wildcard network, writes outside the temp dir). Touches nothing.
    Check { job: PathBuf },
    /// Run jobs on their `schedule` (cron), instead of a crontab that can vanish. A job
    /// never overlaps itself; a run missed while the machine was down runs at start-up.
    Daemon {
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
    },
    /// The dead-man's switch: is each source's newest copy at each destination fresh enough?
    /// Exit 0 when all are; 1 when any is stale, missing or unreachable. Reads only the
    /// destinations, so it can run on a monitoring host; run it from its own timer.
    Status {
        job: PathBuf,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// When anything is stale, tell the job's notifiers (those with notify_on_failure).
        #[arg(long)]
        notify: bool,
        /// Write Prometheus metrics (text format) to this file, e.g. for node_exporter's
        /// textfile collector.
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// The complete copies stored at each destination.
    List {
        job: PathBuf,
        #[command(flatten)]
        which: Which,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Fetch the newest (or the named) copy of each source from each destination, check
    /// its sha256 against the manifest, decrypt and decompress it fully, and walk a folder
    /// archive. Exit 1 on any mismatch.
    Verify {
        job: PathBuf,
        #[command(flatten)]
        which: Which,
        /// A secret-key file (e.g. `gpg --export-secret-keys`) for recipient-encrypted copies.
        #[arg(long, value_name = "FILE")]
        secret_key: Vec<PathBuf>,
    },
    /// Fetch, check, decrypt and decompress one copy: to a file (`--to -` for stdout), or
    /// extract a folder archive into a new directory.
    Restore {
        job: PathBuf,
        #[command(flatten)]
        which: Which,
        #[arg(long, value_name = "FILE")]
        secret_key: Vec<PathBuf>,
        /// Write the decrypted, decompressed stream here (`-`: stdout).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "extract",
            required_unless_present = "extract"
        )]
        to: Option<PathBuf>,
        /// Extract a folder archive into this directory (new or empty).
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
    },
    /// Inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

/// Which copies: by source, destination and object name.
#[derive(clap::Args)]
struct Which {
    /// Only this source (its `id`).
    #[arg(long)]
    source: Option<String>,
    /// Only this destination (its `id`).
    #[arg(long)]
    destination: Option<String>,
    /// This object instead of the newest copy (its full name, or its end).
    #[arg(long)]
    artifact: Option<String>,
    /// The newest copy made at or before this time (RFC 3339, `2026-12-01T02:00:00Z`, or
    /// a day, `2026-12-01`: its end, UTC) instead of the newest of all.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<jiff::Timestamp>,
}

/// `--at`: a time, or a day meaning the last second of it (UTC).
fn parse_at(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let day: jiff::civil::Date = text.parse().map_err(|_| {
        format!("{text:?}: a time like 2026-12-01T02:00:00Z or a day like 2026-12-01")
    })?;
    day.at(23, 59, 59, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

impl From<Which> for backups::restore::Selection {
    fn from(w: Which) -> Self {
        backups::restore::Selection {
            source: w.source,
            destination: w.destination,
            artifact: w.artifact,
            at: w.at,
        }
    }
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// The embedded plugins, and those a job names by path.
    List {
        /// A job file whose `.wasm` plugins to list too.
        job: Option<PathBuf>,
    },
    /// What a plugin is: world, WIT version, digest, imports, config keys.
    Inspect {
        /// A `.wasm` file, or the name of an embedded plugin.
        plugin: String,
        /// Check the file's detached signature (`FILE.sig`) against these public keys.
        #[arg(long, value_name = "KEYRING")]
        trusted_keys: Vec<PathBuf>,
    },
    /// The conformance kit: run a plugin with the real runtime and check that it keeps the
    /// contract (round trips, listings, typed errors...). One PASS/FAIL line per check;
    /// exit 0 only when all pass.
    Test {
        /// A `.wasm` file, or the name of an embedded plugin.
        plugin: String,
        /// What it must be.
        #[arg(long, value_parser = ["destination", "source", "notifier"])]
        kind: String,
        /// Its configuration: the keys of a job entry, as JSON.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        config: String,
        /// Its grants, as a job entry's `grants` block (JSON). Default: as a job gives them
        /// (derived for embedded plugins, none for a `.wasm` file).
        #[arg(long, value_name = "JSON")]
        grants: Option<String>,
        /// Size of the streamed object in the destination round trip, in MiB.
        #[arg(long, value_name = "N", default_value_t = 64)]
        large_mib: u64,
    },
    /// Start a plugin: a crate on the SDK that builds for wasm32-wasip2 and passes
    /// `plugins test` as generated. The SDK is not on crates.io, so say where it is.
    #[command(group = clap::ArgGroup::new("sdk_source").required(true).args(["sdk", "sdk_git"]))]
    New {
        /// The plugin's name: its crate name and job-file `type` (`my-store`).
        name: String,
        #[arg(long, value_parser = ["destination", "source", "notifier"])]
        kind: String,
        /// The directory to create the crate in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// A checkout's `sdk/` directory (a path dependency).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
        /// A git repository of the backups workspace (a git dependency).
        #[arg(long, value_name = "URL")]
        sdk_git: Option<String>,
        /// With --sdk-git: the tag, branch or commit to build against.
        #[arg(long, value_name = "REV", requires = "sdk_git")]
        sdk_rev: Option<String>,
    },
}

pub fn main() -> ExitCode {
    // The legacy tool's deployments export `BACKUPS_ALLOW_ROOT=` (empty) to mean "not
    // set"; clap would refuse an empty boolean and so every command.
    if std::env::var_os("BACKUPS_ALLOW_ROOT").is_some_and(|v| v.is_empty()) {
        // SAFETY: no other thread exists yet (the async runtime starts below).
        unsafe { std::env::remove_var("BACKUPS_ALLOW_ROOT") };
    }
    let (args, legacy) = legacy_invocation(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    init_logging(cli.verbose, cli.quiet);
    if let Some(job) = legacy {
        tracing::info!(
            "`backups {job}` is the legacy tool's form: running it as `backups run {job}`"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                dry_run: true,
                job,
                leftovers,
                ..
            } => run::dry_run(&job, leftovers).await,
            Command::Check { job } => run::check(&job).await,
            Command::Run { job, json, .. } => {
                backups::privileges::check(cli.allow_root)?;
                run::run(&job, json, cli.quiet).await
            }
            Command::Daemon { jobs } => {
                backups::privileges::check(cli.allow_root)?;
                daemon::daemon(&jobs).await
            }
            Command::Status {
                job,
                json,
                notify,
                prometheus,
            } => status::status(&job, json, notify, prometheus.as_deref()).await,
            Command::List { job, which, json } => copies::list(&job, which.into(), json).await,
            Command::Verify {
                job,
                which,
                secret_key,
            } => copies::verify(&job, which.into(), &secret_key).await,
            Command::Restore {
                job,
                which,
                secret_key,
                to,
                extract,
            } => {
                backups::privileges::check(cli.allow_root)?;
                let target = match (to, extract) {
                    (Some(to), _) => backups::restore::Target::Stream(to),
                    (None, Some(dir)) => backups::restore::Target::Extract(dir),
                    (None, None) => unreachable!("clap requires one"),
                };
                copies::restore(&job, which.into(), &secret_key, &target).await
            }
            Command::Plugins {
                command: PluginsCommand::List { job },
            } => plugins::plugins_list(job.as_deref()),
            Command::Plugins {
                command:
                    PluginsCommand::Inspect {
                        plugin,
                        trusted_keys,
                    },
            } => plugins::plugins_inspect(&plugin, trusted_keys).await,
            Command::Plugins {
                command:
                    PluginsCommand::Test {
                        plugin,
                        kind,
                        config,
                        grants,
                        large_mib,
                    },
            } => plugins::plugins_test(&plugin, &kind, config, grants.as_deref(), large_mib).await,
            Command::Plugins {
                command:
                    PluginsCommand::New {
                        name,
                        kind,
                        dir,
                        sdk,
                        sdk_git,
                        sdk_rev,
                    },
            } => {
                let sdk = match (sdk, sdk_git) {
                    (Some(path), _) => backups::scaffold::SdkSource::Path(path),
                    (None, Some(url)) => backups::scaffold::SdkSource::Git { url, rev: sdk_rev },
                    (None, None) => unreachable!("clap requires one"),
                };
                plugins::plugins_new(&name, &kind, &dir, &sdk)
            }
        }
    });
    // Everything the command awaited has finished. What may be left is a plugin's file
    // operation stuck in the kernel on tokio's blocking pool (a FIFO it opened, a hung
    // mount) after its call was stopped at its limit; dropping the runtime would wait for
    // it for ever, so the process leaves it behind.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.unwrap_or_else(|e| fail(format!("{e:#}")))
}

/// The legacy tool's command line, `backups [-v] [-d] JOB.json` (its systemd units and
/// Docker image call it so), as `backups [-v|-vv] run JOB.json`. Returns the arguments to
/// parse, and the job file when the legacy form was used.
fn legacy_invocation(args: Vec<std::ffi::OsString>) -> (Vec<std::ffi::OsString>, Option<String>) {
    const COMMANDS: &[&str] = &[
        "run", "check", "daemon", "status", "list", "verify", "restore", "plugins", "help",
    ];
    let positional: Vec<&std::ffi::OsString> = args
        .iter()
        .skip(1)
        .filter(|a| !a.to_string_lossy().starts_with('-'))
        .collect();
    let [job] = positional[..] else {
        return (args, None);
    };
    let shown = job.to_string_lossy().into_owned();
    if COMMANDS.contains(&shown.as_str()) {
        return (args, None);
    }
    let mut rewritten = vec![args[0].clone()];
    for arg in &args[1..] {
        match arg.to_str() {
            // The legacy `-d` (debug) is our `-vv`.
            Some("-d") => rewritten.push("-vv".into()),
            _ if arg == job => {
                rewritten.push("run".into());
                rewritten.push(arg.clone());
            }
            _ => rewritten.push(arg.clone()),
        }
    }
    (rewritten, Some(shown))
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("BACKUPS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,backups={default}")));
    let tty = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .with_target(false)
        .init();
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// An error of a planned job's command, with the job's secrets redacted.
fn redacted(plan: &backups::plan::JobPlan, e: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(plan.redactor.redact(&format!("{e:#}")))
}

fn runtime_for(job: Option<&Job>) -> anyhow::Result<Runtime> {
    let cache = job
        .and_then(|j| j.cache_dir.clone())
        .or_else(loader::default_cache_dir);
    Runtime::new(cache.as_deref())
}

/// Loads, checks and plans a job.
async fn planned(path: &Path) -> Result<(Runtime, backups::plan::JobPlan)> {
    let job = Job::load(path)?;
    let runtime = runtime_for(Some(&job))?;
    let plan = backups::plan::plan(job, &runtime).await?;
    Ok((runtime, plan))
}
