//! One door from a planned entry to a running plugin.
//!
//! Every command that runs a job's plugins — a backup run, `status`, `list`, `verify`,
//! `restore` — opens one `Session`. It owns what all of that session's plugin instances
//! share: the session id and start time (the WIT `Context` each instance is configured
//! with), the private directory their temporary files go in (removed when the session
//! ends), and the redactor. [`Session::open`] is the only way from a [`Planned`] entry to
//! a configured [`Instance`]: the grants, limits and tmpdir it gets are the plan's, the
//! same whichever command asked.

use crate::config::Limits;
use crate::grants::Grants;
use crate::plan::{JobPlan, Planned};
use crate::redact::Redactor;
use crate::run_dir::RunDir;
use crate::runtime::bindings::Context;
use crate::runtime::{CallError, Instance, InstanceSetup, LoadedPlugin, Runtime};
use anyhow::{Context as _, Result};
use jiff::Timestamp;
use std::path::{Path, PathBuf};

pub struct Session<'a> {
    runtime: &'a Runtime,
    job: String,
    hostname: String,
    id: String,
    started: Timestamp,
    redactor: Redactor,
    dir: SessionDir,
}

/// Where a session's instances keep their temporary files.
enum SessionDir {
    /// A backup run's directory: its artifacts too; what a killed run left is swept by
    /// the next (see `run_dir`).
    Run(RunDir),
    /// Any other session's: fetched copies and plugin tmp files, removed at the end.
    Scratch(Scratch),
}

impl<'a> Session<'a> {
    /// A backup run of `plan`. The caller holds the job's run lock (cli, daemon), as
    /// [`RunDir::create`] requires.
    pub fn for_run(plan: &JobPlan, runtime: &'a Runtime) -> Result<Session<'a>> {
        let started = crate::schedule::now();
        let id = format!(
            "{}-{:x}",
            started
                .to_zoned(jiff::tz::TimeZone::UTC)
                .strftime("%Y%m%dT%H%M%SZ"),
            std::process::id()
        );
        let dir = RunDir::create(&plan.job.tmpdir, &plan.job.name, &id)?;
        Ok(Session::new(
            plan,
            runtime,
            id,
            started,
            SessionDir::Run(dir),
        ))
    }

    /// A session for a plugin outside any job (`plugins test`): job `conformance`, host
    /// `conformance-kit`, a scratch directory in the system's temp dir.
    pub fn for_kit(runtime: &'a Runtime, redactor: &Redactor) -> Result<Session<'a>> {
        let started = crate::schedule::now();
        Ok(Session {
            runtime,
            job: "conformance".into(),
            hostname: "conformance-kit".into(),
            id: format!(
                "conformance-{}-{}",
                std::process::id(),
                started.as_nanosecond()
            ),
            started,
            redactor: redactor.clone(),
            dir: SessionDir::Scratch(Scratch::new(&std::env::temp_dir())?),
        })
    }

    /// A session that reads what runs stored (`status`, `list`, `verify`, `restore`):
    /// its id is `{purpose}-{unix seconds}`, its directory a scratch one in `tmpdir`.
    pub fn for_purpose(
        plan: &JobPlan,
        runtime: &'a Runtime,
        purpose: &str,
        tmpdir: &Path,
    ) -> Result<Session<'a>> {
        let started = crate::schedule::now();
        let id = format!("{purpose}-{}", started.as_second());
        let scratch = Scratch::new(tmpdir)?;
        Ok(Session::new(
            plan,
            runtime,
            id,
            started,
            SessionDir::Scratch(scratch),
        ))
    }

    fn new(
        plan: &JobPlan,
        runtime: &'a Runtime,
        id: String,
        started: Timestamp,
        dir: SessionDir,
    ) -> Session<'a> {
        Session {
            runtime,
            job: plan.job.name.clone(),
            hostname: plan.job.hostname.clone(),
            id,
            started,
            redactor: plan.redactor.clone(),
            dir,
        }
    }

    /// The session's id: a run's `run_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// The session's private directory.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            SessionDir::Run(run) => &run.path,
            SessionDir::Scratch(scratch) => &scratch.dir,
        }
    }

    /// A backup run's directory (with its journal of copies); `None` for other sessions.
    pub fn run_dir(&self) -> Option<&RunDir> {
        match &self.dir {
            SessionDir::Run(run) => Some(run),
            SessionDir::Scratch(_) => None,
        }
    }

    /// What an instance for entry `entry_id` is configured with.
    pub fn context(&self, entry_id: &str) -> Context {
        Context {
            job: self.job.clone(),
            run_id: self.id.clone(),
            hostname: self.hostname.clone(),
            started_at: self.started.as_second().max(0) as u64,
            entry_id: entry_id.to_string(),
        }
    }

    /// Instantiates `planned`'s plugin with the plan's grants and limits, and configures
    /// it. The error says which step failed.
    pub async fn open(&self, planned: &Planned) -> Result<Instance, String> {
        let entry = &planned.entry;
        let start = Start {
            plugin: &planned.plugin,
            label: entry.label(),
            grants: planned.grants.clone(),
            limits: entry.limits,
            entry_id: &entry.id,
            config_json: &planned.config_json,
        };
        self.start(start).await.map_err(|e| match e {
            Failed::Instantiating(e) => format!("{e:#}"),
            Failed::Configuring(e) => format!("configure: {e}"),
        })
    }

    /// What [`Self::open`] does, for a plugin that is not a job's entry (the conformance
    /// kit's): instantiate under `start`'s grants and limits, then configure.
    pub async fn start(&self, start: Start<'_>) -> Result<Instance, Failed> {
        let mut instance = self
            .runtime
            .instantiate(
                start.plugin,
                InstanceSetup {
                    label: start.label,
                    grants: start.grants,
                    limits: start.limits,
                    tmpdir: self.dir().to_path_buf(),
                    redactor: self.redactor.clone(),
                },
            )
            .await
            .map_err(Failed::Instantiating)?;
        instance
            .configure(&self.context(start.entry_id), start.config_json)
            .await
            .map_err(Failed::Configuring)?;
        Ok(instance)
    }
}

/// A plugin instance to start: what a planned entry holds, named one by one.
pub struct Start<'p> {
    pub plugin: &'p LoadedPlugin,
    pub label: String,
    pub grants: Grants,
    pub limits: Limits,
    pub entry_id: &'p str,
    pub config_json: &'p str,
}

/// Which step of [`Session::start`] failed.
pub enum Failed {
    /// The host could not make the instance (grants, limits, the component).
    Instantiating(anyhow::Error),
    /// The plugin refused its config, or broke the contract doing so.
    Configuring(CallError),
}

/// A private scratch directory (mode 0700) that no plugin grant reaches, removed when
/// dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tmpdir: &Path) -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(tmpdir)
            .with_context(|| format!("tmpdir {}", tmpdir.display()))?;
        let dir = tmpdir.join(format!(
            "fetch-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        crate::runtime::protect_host_dir(&dir);
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
