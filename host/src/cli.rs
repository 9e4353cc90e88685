//! The command line: `backups run`, `backups plugins list|inspect|test|new`.
//!
//! Exit codes: 0 every source reached every destination; 1 the backup is incomplete (a
//! source or destination failed); 2 the job could not start (bad job file, plugin or
//! grant) — nothing was read, written or deleted.

use backups::config::{Job, PluginSource, Role};
use backups::job::{self, Progress};
use backups::runtime::{Runtime, loader, world};
use backups::trust::{TrustPolicy, TrustSettings};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

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
}

impl From<Which> for backups::restore::Selection {
    fn from(w: Which) -> Self {
        backups::restore::Selection {
            source: w.source,
            destination: w.destination,
            artifact: w.artifact,
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
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
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
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run {
                dry_run: true, job, ..
            }
            | Command::Check { job } => check(&job).await,
            Command::Run { job, json, .. } => {
                if let Err(e) = backups::privileges::check(cli.allow_root) {
                    return fail(format!("{e:#}"));
                }
                run(&job, json, cli.quiet).await
            }
            Command::Daemon { jobs } => {
                if let Err(e) = backups::privileges::check(cli.allow_root) {
                    return fail(format!("{e:#}"));
                }
                daemon(&jobs).await
            }
            Command::Status {
                job,
                json,
                notify,
                prometheus,
            } => status(&job, json, notify, prometheus.as_deref()).await,
            Command::List { job, which, json } => list(&job, which.into(), json).await,
            Command::Verify {
                job,
                which,
                secret_key,
            } => verify(&job, which.into(), &secret_key).await,
            Command::Restore {
                job,
                which,
                secret_key,
                to,
                extract,
            } => {
                if let Err(e) = backups::privileges::check(cli.allow_root) {
                    return fail(format!("{e:#}"));
                }
                let target = match (to, extract) {
                    (Some(to), _) => backups::restore::Target::Stream(to),
                    (None, Some(dir)) => backups::restore::Target::Extract(dir),
                    (None, None) => unreachable!("clap requires one"),
                };
                restore(&job, which.into(), &secret_key, &target).await
            }
            Command::Plugins {
                command: PluginsCommand::List { job },
            } => plugins_list(job.as_deref()),
            Command::Plugins {
                command:
                    PluginsCommand::Inspect {
                        plugin,
                        trusted_keys,
                    },
            } => plugins_inspect(&plugin, trusted_keys).await,
            Command::Plugins {
                command:
                    PluginsCommand::Test {
                        plugin,
                        kind,
                        config,
                        grants,
                        large_mib,
                    },
            } => plugins_test(&plugin, &kind, config, grants.as_deref(), large_mib).await,
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
                plugins_new(&name, &kind, &dir, &sdk)
            }
        }
    });
    // Everything the command awaited has finished. What may be left is a plugin's file
    // operation stuck in the kernel on tokio's blocking pool (a FIFO it opened, a hung
    // mount) after its call was stopped at its limit; dropping the runtime would wait for
    // it for ever, so the process leaves it behind.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
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

fn runtime_for(job: Option<&Job>) -> anyhow::Result<Runtime> {
    let cache = job
        .and_then(|j| j.cache_dir.clone())
        .or_else(loader::default_cache_dir);
    Runtime::new(cache.as_deref())
}

async fn daemon(paths: &[PathBuf]) -> ExitCode {
    let jobs = match backups::daemon::load(paths) {
        Ok(j) => j,
        Err(e) => return fail(format!("{e:#}")),
    };
    let runtime = match runtime_for(jobs.first().map(|(j, _)| j)) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => return fail(format!("{e:#}")),
    };
    match backups::daemon::serve(jobs, runtime).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

/// `check` and `run --dry-run`: the plan, every grant and its origin, the risks.
async fn check(path: &Path) -> ExitCode {
    let (_runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let described = plan.describe();
    print!("{described}");
    let risks = described
        .lines()
        .filter(|l| l.trim_start().starts_with("RISK:"))
        .count();
    println!("\n{risks} risk(s) flagged; dry run: nothing was read, written or deleted");
    if plan.unstarted.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(path: &Path, json: bool, quiet: bool) -> ExitCode {
    let (runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let _lock = match backups::lock::RunLock::acquire(&plan.job.tmpdir, &plan.job.name) {
        Ok(l) => l,
        Err(e) => return fail(format!("{e:#}")),
    };

    let progress = Progress::default();
    let ticker = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bytes = progress.bytes.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut last = 0;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let now = bytes.load(Ordering::Relaxed);
                if now != last {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "  … {} read ({}/s)",
                        backups::report::human_bytes(now),
                        backups::report::human_bytes((now as f64 / secs) as u64)
                    );
                    last = now;
                }
            }
        })
    });

    // From here a signal stops the commands plugins started and lets plugins clean up.
    backups::interrupt::install();
    let report = match job::run(&plan, &runtime, &progress).await {
        Ok(r) => r,
        Err(e) => return fail(plan.redactor.redact(&format!("{e:#}"))),
    };
    if let Some(t) = ticker {
        t.abort();
    }
    let summary = report.summary();
    if !quiet || !report.success() {
        eprint!("\n{summary}");
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{}", plan.redactor.redact(&text)),
            Err(e) => return fail(e),
        }
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Loads, checks and plans a job; on error prints it and gives the exit code.
async fn planned(path: &Path) -> Result<(Runtime, job::JobPlan), ExitCode> {
    let job = Job::load(path).map_err(|e| fail(format!("{e:#}")))?;
    let runtime = runtime_for(Some(&job)).map_err(|e| fail(format!("{e:#}")))?;
    let plan = job::plan(job, &runtime)
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    Ok((runtime, plan))
}

async fn status(path: &Path, json: bool, notify: bool, prometheus: Option<&Path>) -> ExitCode {
    let (runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let now = backups::schedule::now();
    let checked = backups::status::check(&plan, &runtime, now).await;
    let results = &checked.freshness;
    let all_fresh = checked.ok();
    if json {
        match serde_json::to_string_pretty(&checked) {
            Ok(text) => println!("{}", plan.redactor.redact(&text)),
            Err(e) => return fail(e),
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
            return fail(format!("{}: {e}", file.display()));
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
        let report = backups::status::stale_report(&plan, results, now);
        for (label, sent) in backups::status::alert(&plan, &runtime, &report).await {
            match sent {
                Ok(()) => tracing::info!("{label}: alerted"),
                Err(e) => tracing::error!("{label}: alert failed: {e}"),
            }
        }
    }
    if all_fresh {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn list(path: &Path, selection: backups::restore::Selection, json: bool) -> ExitCode {
    let (runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let copies = match backups::restore::list(&plan, &runtime, &selection).await {
        Ok(c) => c,
        Err(e) => return fail(plan.redactor.redact(&format!("{e:#}"))),
    };
    if json {
        match serde_json::to_string_pretty(&copies) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e),
        }
    } else {
        println!(
            "{:<14} {:<14} {:<21} {:>10}  object",
            "destination", "source", "created", "size"
        );
        for c in &copies {
            println!(
                "{:<14} {:<14} {:<21} {:>10}  {}",
                c.destination_id,
                c.source_id,
                c.created.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
                backups::report::human_bytes(c.size),
                c.object
            );
        }
    }
    ExitCode::SUCCESS
}

async fn verify(
    path: &Path,
    selection: backups::restore::Selection,
    secret_keys: &[PathBuf],
) -> ExitCode {
    let (runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let results = match backups::restore::verify(&plan, &runtime, &selection, secret_keys).await {
        Ok(r) => r,
        Err(e) => return fail(plan.redactor.redact(&format!("{e:#}"))),
    };
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
    if results.iter().all(|v| v.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn restore(
    path: &Path,
    selection: backups::restore::Selection,
    secret_keys: &[PathBuf],
    target: &backups::restore::Target,
) -> ExitCode {
    let (runtime, plan) = match planned(path).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    match backups::restore::restore(&plan, &runtime, &selection, secret_keys, target).await {
        Ok(what) => {
            tracing::info!("{what}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", plan.redactor.redact(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn plugins_list(job_path: Option<&Path>) -> ExitCode {
    let runtime = match runtime_for(None) {
        Ok(r) => r,
        Err(e) => return fail(format!("{e:#}")),
    };
    println!("embedded:");
    for name in Runtime::embedded_names() {
        match runtime.load_embedded(name) {
            Ok(p) => println!(
                "  {name:<12} {:<12} WIT {}  sha256 {}",
                p.world.role.to_string(),
                p.world.version,
                &p.digest[..16]
            ),
            Err(e) => println!("  {name:<12} BROKEN: {e:#}"),
        }
    }
    if let Some(path) = job_path {
        let job = match Job::load(path) {
            Ok(j) => j,
            Err(e) => return fail(format!("{e:#}")),
        };
        println!("named by {}:", path.display());
        let trust = match TrustPolicy::load(&job.trust, &path.display().to_string()) {
            Ok(t) => t,
            Err(e) => return fail(format!("{e:#}")),
        };
        for entry in job.entries() {
            if let PluginSource::File { path, sha256 } = &entry.plugin {
                match runtime.load_file(path, sha256.as_deref(), &trust) {
                    Ok(p) => println!(
                        "  {} {} — {} WIT {} sha256 {}{}; {}",
                        entry.label(),
                        path.display(),
                        p.world.role,
                        p.world.version,
                        p.digest,
                        if sha256.is_some() { " (pinned)" } else { "" },
                        p.signature
                    ),
                    Err(e) => println!("  {} BROKEN: {e:#}", entry.label()),
                }
            }
        }
    }
    ExitCode::SUCCESS
}

async fn plugins_inspect(plugin: &str, trusted_keys: Vec<PathBuf>) -> ExitCode {
    let runtime = match runtime_for(None) {
        Ok(r) => r,
        Err(e) => return fail(format!("{e:#}")),
    };
    let settings = TrustSettings {
        keyrings: trusted_keys,
        require_signed: false,
    };
    let trust = match TrustPolicy::load(&settings, "--trusted-keys") {
        Ok(t) => t,
        Err(e) => return fail(format!("{e:#}")),
    };
    let loaded = match load_named(&runtime, plugin, &trust) {
        Ok(l) => l,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut instance = match runtime
        .instantiate_bare(&loaded, plugin, backups::config::Limits::default())
        .await
    {
        Ok(i) => i,
        Err(e) => return fail(format!("{e:#}")),
    };
    let about = match instance.describe().await {
        Ok(a) => a,
        Err(e) => return fail(format!("{plugin}: describe failed: {e}")),
    };
    println!("plugin:      {}", loaded.origin);
    println!(
        "type:        {} {} — {}",
        about.name, about.version, about.summary
    );
    println!(
        "world:       {}/{}@{}",
        world::PACKAGE,
        loaded.world.role,
        loaded.world.version
    );
    println!("sha256:      {}", loaded.digest);
    println!(
        "size:        {}",
        backups::report::human_bytes(loaded.size as u64)
    );
    println!(
        "trust:       {}",
        match loaded.origin {
            backups::runtime::Origin::Embedded(_) => "first-party, embedded in this binary",
            backups::runtime::Origin::File(_) =>
                "third-party file: gets only the grants a job gives it",
        }
    );
    println!("signature:   {}", loaded.signature);
    println!("config keys: {}", list_or_none(&about.config_keys));
    println!("secret keys: {}", list_or_none(&about.secret_keys));
    println!("imports (what it can ask the host for; each is still checked against grants):");
    for import in world::imports(runtime.engine(), &loaded.component) {
        println!("  {import}");
    }
    ExitCode::SUCCESS
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// A plugin named on the command line: a `.wasm` file, else an embedded plugin.
fn load_named(
    runtime: &Runtime,
    plugin: &str,
    trust: &TrustPolicy,
) -> anyhow::Result<backups::runtime::LoadedPlugin> {
    let as_path = Path::new(plugin);
    if as_path.exists() || plugin.ends_with(".wasm") {
        runtime.load_file(as_path, None, trust)
    } else {
        runtime.load_embedded(plugin)
    }
}

async fn plugins_test(
    plugin: &str,
    kind: &str,
    config: String,
    grants: Option<&str>,
    large_mib: u64,
) -> ExitCode {
    let runtime = match runtime_for(None) {
        Ok(r) => r,
        Err(e) => return fail(format!("{e:#}")),
    };
    let loaded = match load_named(&runtime, plugin, &TrustPolicy::permissive()) {
        Ok(l) => l,
        Err(e) => return fail(format!("{e:#}")),
    };
    if loaded.world.role.world() != kind {
        println!(
            "FAIL world: {} implements the {} world, not {kind}",
            loaded.origin, loaded.world.role
        );
        return ExitCode::from(1);
    }
    let config = match serde_json::from_str(&config) {
        Ok(c) => c,
        Err(e) => return fail(format!("--config: not a JSON object: {e}")),
    };
    let grants = match grants.map(serde_json::from_str::<serde_json::Value>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return fail(format!("--grants: not JSON: {e}")),
    };
    let options = backups::conformance::Options {
        config,
        grants,
        large_bytes: large_mib << 20,
    };
    let checks = match backups::conformance::run(&runtime, &loaded, &options, &mut |c| {
        println!("{c}")
    })
    .await
    {
        Ok(c) => c,
        Err(e) => return fail(format!("{e:#}")),
    };
    let failed = checks.iter().filter(|c| !c.passed).count();
    println!(
        "{} checks, {failed} failed: {}",
        checks.len(),
        if failed == 0 {
            "the plugin conforms"
        } else {
            "the plugin does NOT conform"
        }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn plugins_new(name: &str, kind: &str, dir: &Path, sdk: &backups::scaffold::SdkSource) -> ExitCode {
    let role = match kind {
        "source" => Role::Source,
        "destination" => Role::Destination,
        _ => Role::Notifier,
    };
    match backups::scaffold::create(name, role, dir, sdk) {
        Ok(root) => {
            println!("created {} ({kind} plugin `{name}`)", root.display());
            println!(
                "next: cd {} && cargo build --release --target wasm32-wasip2",
                root.display()
            );
            println!(
                "then: backups plugins test target/wasm32-wasip2/release/{}.wasm --kind {kind} --config ... --grants ...",
                name.replace('-', "_")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}")),
    }
}
