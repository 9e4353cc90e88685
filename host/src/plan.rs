//! Planning a run: load every entry's plugin, ask it what it is and needs, work out its
//! grants. Any error here stops the job before anything is read or written, so bad input
//! never leaves half a backup behind. `--dry-run` prints the plan.

use crate::audit;
use crate::config::{self, Entry, Job, PluginSource, Role};
use crate::grants::{GrantSpec, Grants, Origin as GrantOrigin};
use crate::redact::Redactor;
use crate::runtime::bindings::About;
use crate::runtime::{CallError, Instance, LoadedPlugin, Runtime};
use crate::store::retention;
use crate::trust::{Signature, TrustPolicy};
use anyhow::Result;

/// An entry ready to run: its plugin, what it says about itself, and its grants.
pub struct Planned {
    pub entry: Entry,
    pub plugin: LoadedPlugin,
    pub about: About,
    pub grants: Grants,
    /// The plugin's config as JSON, secrets resolved.
    pub config_json: String,
}

impl Planned {
    /// Whether this notifier sends after a successful / failed run: the entry's
    /// `notify_on_*`, else the plugin's own default (legacy types keep the legacy tool's).
    pub fn notifies(&self, success: bool) -> bool {
        if success {
            self.entry
                .notify_on_success
                .unwrap_or(self.about.notify_on_success)
        } else {
            self.entry
                .notify_on_failure
                .unwrap_or(self.about.notify_on_failure)
        }
    }
}

pub struct JobPlan {
    pub job: Job,
    pub sources: Vec<Planned>,
    pub destinations: Vec<Planned>,
    pub notifications: Vec<Planned>,
    /// Entries whose plugin loaded but failed to start or to say what it is (a trap, a
    /// limit, a timeout): that entry's failure, reported by the run, never the whole
    /// job's — one broken or hostile plugin must not leave the others without a backup.
    pub unstarted: Vec<Unstarted>,
    pub warnings: Vec<String>,
    pub redactor: Redactor,
}

/// An entry whose plugin could not be started or described, and why.
pub struct Unstarted {
    pub entry: Entry,
    pub error: String,
}

/// Why planning an entry failed: the job is wrong (the run must not start), or only this
/// entry's plugin misbehaved (the run goes on without it, reporting it failed).
pub enum EntryError {
    Job(anyhow::Error),
    Plugin(String),
}

impl From<anyhow::Error> for EntryError {
    fn from(e: anyhow::Error) -> Self {
        EntryError::Job(e)
    }
}

impl From<serde_json::Error> for EntryError {
    fn from(e: serde_json::Error) -> Self {
        EntryError::Job(e.into())
    }
}

/// Loads and checks everything a run needs. Errors name the file, entry and key at fault.
pub async fn plan(job: Job, runtime: &Runtime) -> Result<JobPlan> {
    let redactor = Redactor::new();
    let mut warnings = job.warnings.clone();
    warnings.extend(job.module_warnings());
    for entry in job.entries() {
        redactor.add_all(&entry.secrets);
    }
    let trust = TrustPolicy::load(&job.trust, &job.path.display().to_string())?;
    // Locks and run records: no plugin's grant reaches into them.
    crate::runtime::protect_host_dir(&job.state_dir);
    if let Some(cache) = &job.cache_dir {
        crate::runtime::protect_host_dir(cache);
    }
    let mut lists: Vec<Vec<Planned>> = Vec::new();
    let mut unstarted = Vec::new();
    for list in [&job.sources, &job.destinations, &job.notifications] {
        let mut planned = Vec::new();
        for entry in list {
            match plan_entry(entry, &job, runtime, &trust, &redactor, &mut warnings).await {
                Ok(p) => planned.push(p),
                Err(EntryError::Job(e)) => return Err(e),
                Err(EntryError::Plugin(error)) => {
                    let error = redactor.redact(&error);
                    tracing::error!("{}: {error}", entry.label());
                    unstarted.push(Unstarted {
                        entry: entry.clone(),
                        error,
                    });
                }
            }
        }
        lists.push(planned);
    }
    warnings.extend(exposed_secrets_warning(&job, lists.iter().flatten()));
    let notifications = lists.pop().unwrap_or_default();
    let destinations = lists.pop().unwrap_or_default();
    let sources = lists.pop().unwrap_or_default();
    Ok(JobPlan {
        job,
        sources,
        destinations,
        notifications,
        unstarted,
        warnings,
        redactor,
    })
}

/// A job file readable by other users must not hold secrets in clear: say which ones.
fn exposed_secrets_warning<'a>(
    job: &Job,
    planned: impl Iterator<Item = &'a Planned>,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&job.path).ok()?.permissions().mode();
    if mode & 0o077 == 0 {
        return None;
    }
    let literal: Vec<String> = planned
        .flat_map(|p| {
            config::literal_secret_keys(&p.entry, &p.about.secret_keys)
                .into_iter()
                .map(|k| format!("{}.{k}", p.entry.label()))
        })
        .collect();
    if literal.is_empty() {
        return None;
    }
    Some(format!(
        "{}: readable by group or others (mode {:03o}) and holds secrets in clear ({}): \
         chmod 600 it, or write them as {{\"env\": \"NAME\"}} / {{\"file\": \"/path\"}}",
        job.path.display(),
        mode & 0o777,
        literal.join(", ")
    ))
}

async fn plan_entry(
    entry: &Entry,
    job: &Job,
    runtime: &Runtime,
    trust: &TrustPolicy,
    redactor: &Redactor,
    warnings: &mut Vec<String>,
) -> Result<Planned, EntryError> {
    let shown = job.path.display();
    let label = entry.label();
    let plugin = runtime
        .load_entry(entry, trust)
        .map_err(|e| anyhow::anyhow!("{shown}: {e:#}"))?;
    let config_json = serde_json::to_string(&entry.plugin_config)?;

    let mut bare = runtime
        .instantiate_bare(&plugin, &label, entry.limits)
        .await
        .map_err(|e| EntryError::Plugin(format!("{e:#}")))?;
    let about = bare
        .describe()
        .await
        .map_err(|e| EntryError::Plugin(format!("{}: describe failed: {e}", plugin.origin)))?;
    if entry.incremental.is_some() && !bare.has_incremental() {
        return Err(EntryError::Job(anyhow::anyhow!(
            "{shown}: {label}: incremental: its plugin ({}) cannot archive incrementally \
             (it has no `incremental` export, contract 0.1.3); remove the key",
            plugin.origin
        )));
    }
    for key in config::unknown_keys(entry, &about.config_keys) {
        warnings.push(format!(
            "{shown}: {label}: unknown key {key:?} for type {:?} (ignored)",
            entry.kind
        ));
    }
    redactor.add_all(&config::secret_values(
        &entry.plugin_config,
        &about.secret_keys,
    ));

    let embedded = match &entry.plugin {
        PluginSource::Embedded(kind) => Some(kind.as_str()),
        PluginSource::File { .. } => None,
    };
    let grants = resolve_grants(
        entry.grants.as_ref(),
        embedded,
        &mut bare,
        &config_json,
        &format!("{shown}: {label}"),
        redactor,
    )
    .await?;
    redactor.add_all(&config::secret_env_values(&about.secret_keys, &grants.env));
    if let PluginSource::File { path, .. } = &entry.plugin
        && !entry.allow_risky_grants
        && let Some((grant, file)) = audit::exposed_files(&grants, &job.sensitive_files())
            .into_iter()
            .next()
    {
        return Err(EntryError::Job(anyhow::anyhow!(
            "{shown}: {label}: the grant {grant} contains {file}, which holds this job's \
             secrets; a third-party plugin ({}) gets such a grant only with \
             \"allow_risky_grants\": true in its entry",
            path.display()
        )));
    }
    Ok(Planned {
        entry: entry.clone(),
        plugin,
        about,
        grants,
        config_json,
    })
}

/// The grants an entry runs with: its `grants` block; else, for the embedded first-party
/// plugin of type `embedded`, what that plugin asks for from its own keys (the folder
/// source's `path`, read-only), so legacy job files run unchanged; else (a third-party
/// `.wasm`) nothing. `bare` is the entry's unconfigured instance; `at` names the entry.
pub async fn resolve_grants(
    explicit: Option<&GrantSpec>,
    embedded: Option<&str>,
    bare: &mut Instance,
    config_json: &str,
    at: &str,
    redactor: &Redactor,
) -> Result<Grants, EntryError> {
    Ok(match (explicit, embedded) {
        (Some(spec), _) => Grants::resolve(spec, GrantOrigin::Explicit, &format!("{at}.grants"))?,
        (None, Some(kind)) => {
            let asked = bare
                .requested_grants(config_json)
                .await
                .map_err(|e| match e {
                    // The plugin read its keys and refused them: the job is wrong.
                    CallError::Plugin(_) => EntryError::Job(anyhow::anyhow!(
                        "{at}: {}",
                        redactor.redact(&e.to_string())
                    )),
                    other => EntryError::Plugin(format!("requested-grants failed: {other}")),
                })?;
            Grants::resolve(
                &asked,
                GrantOrigin::Derived {
                    plugin: kind.to_string(),
                },
                &format!("{at} (derived grants)"),
            )?
        }
        (None, None) => Grants::none(),
    })
}

impl JobPlan {
    /// The `--dry-run` report: every entry, its plugin and every effective grant.
    /// How many risks [`Self::describe`] flags, counted from the same findings.
    pub fn risk_count(&self) -> usize {
        self.sources
            .iter()
            .chain(&self.destinations)
            .chain(&self.notifications)
            .map(|p| {
                let (signature, grants) = self.risks_of(p);
                usize::from(signature.is_some()) + grants.len()
            })
            .sum()
    }

    /// What `check` flags for one entry: its signature, then its grants.
    fn risks_of(&self, p: &Planned) -> (Option<&'static str>, Vec<String>) {
        let unchecked = matches!(
            p.plugin.signature,
            Signature::Unsigned | Signature::Unchecked
        );
        let job = &self.job;
        (
            unchecked.then_some(
                "a third-party plugin whose signature is not checked \
                 (see trusted_plugin_keys, require_signed_plugins)",
            ),
            audit::risks(&p.grants, &job.tmpdir, &job.sensitive_files()),
        )
    }

    pub fn describe(&self) -> String {
        let job = &self.job;
        let mut out = format!(
            "job {:?} ({})\n  hostname: {}\n  tmpdir:   {}\n  limits:   memory {} MiB, {}s per call, {}s in all, {} KiB of log, {} handles per plugin\n",
            job.name,
            job.path.display(),
            job.hostname,
            job.tmpdir.display(),
            job.limits.memory_bytes >> 20,
            job.limits.call_seconds,
            job.limits.total_seconds,
            job.limits.log_bytes >> 10,
            job.limits.resources,
        );
        for (title, list) in [
            ("sources", &self.sources),
            ("destinations", &self.destinations),
            ("notifications", &self.notifications),
        ] {
            out += &format!("\n{title}:\n");
            if list.is_empty() {
                out += "  (none)\n";
            }
            for p in list {
                let e = &p.entry;
                out += &format!(
                    "  {} type {:?}: {} — {} plugin, WIT {}, sha256 {}\n",
                    e.label(),
                    e.kind,
                    p.plugin.origin,
                    p.plugin.world.role,
                    p.plugin.world.version,
                    p.plugin.digest
                );
                match e.role {
                    Role::Source => {
                        let enc = match &e.encryption {
                            Some(config::Encryption::Passphrase(_)) => {
                                "OpenPGP, passphrase".to_string()
                            }
                            Some(config::Encryption::Recipients { recipients, .. }) => {
                                format!("OpenPGP, recipients {}", recipients.join(", "))
                            }
                            Some(config::Encryption::None) => {
                                "none (compress_only: compressed only)".into()
                            }
                            None => "MISSING".into(),
                        };
                        out += &format!("    encryption: {enc}\n");
                        let compression = match crate::codec::Compression::from(e.compression) {
                            crate::codec::Compression::Gzip => {
                                "gzip -1 (block-parallel)".to_string()
                            }
                            crate::codec::Compression::Zstd { level } => format!("zstd -{level}"),
                        };
                        out += &format!("    compression: {compression}\n");
                    }
                    Role::Destination => {
                        let policy = retention::Policy::for_entry(e);
                        out += &format!("    retention: {}\n", policy.in_words());
                        if e.legacy_copies == crate::config::LegacyCopies::Manage {
                            out += "    the legacy tool's copies: counted and deleted under \
                                    this retention (legacy_copies: manage)\n";
                        }
                    }
                    Role::Notifier => {
                        out += &format!(
                            "    notify on success: {}{}, on failure: {}{}\n",
                            yes_no(p.notifies(true)),
                            if e.notify_on_success.is_none() {
                                " (the plugin's default)"
                            } else {
                                ""
                            },
                            yes_no(p.notifies(false)),
                            if e.notify_on_failure.is_none() {
                                " (the plugin's default)"
                            } else {
                                ""
                            },
                        );
                    }
                }
                out += &format!("    signature: {}\n", p.plugin.signature);
                let (signature_risk, grant_risks) = self.risks_of(p);
                if let Some(risk) = signature_risk {
                    out += &format!("    RISK: {risk}\n");
                }
                out += &format!("    grants: {}\n", p.grants.origin);
                for line in audit::grant_provenance(&p.grants, &e.plugin_config) {
                    out += &format!("      {line}\n");
                }
                for risk in grant_risks {
                    out += &format!("    RISK: {risk}\n");
                }
            }
        }
        if !self.unstarted.is_empty() {
            out += "\nfailed to start (each is that entry's failure; the other entries run):\n";
            for u in &self.unstarted {
                out += &format!("  FAILED: {}: {}\n", u.entry.label(), u.error);
            }
        }
        if !self.warnings.is_empty() {
            out += "\nwarnings:\n";
            for w in &self.warnings {
                out += &format!("  {w}\n");
            }
        }
        self.redactor.redact(&out)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
