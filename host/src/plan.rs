//! Planning a run: load every entry's plugin, ask it what it is and needs, work out its
//! grants. Any error here stops the job before anything is read or written, so bad input
//! never leaves half a backup behind. `--dry-run` prints the plan.

use crate::audit;
use crate::config::{self, Entry, Job, PluginSource, Role};
use crate::grants::{GrantSpec, Grants, Origin as GrantOrigin};
use crate::redact::Redactor;
use crate::retention;
use crate::runtime::bindings::About;
use crate::runtime::{LoadedPlugin, Runtime};
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
    pub warnings: Vec<String>,
    pub redactor: Redactor,
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
    let mut lists: Vec<Vec<Planned>> = Vec::new();
    for list in [&job.sources, &job.destinations, &job.notifications] {
        let mut planned = Vec::new();
        for entry in list {
            planned.push(plan_entry(entry, &job, runtime, &trust, &redactor, &mut warnings).await?);
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
) -> Result<Planned> {
    let shown = job.path.display();
    let label = entry.label();
    let plugin = runtime
        .load_entry(entry, trust)
        .map_err(|e| anyhow::anyhow!("{shown}: {e:#}"))?;
    let config_json = serde_json::to_string(&entry.plugin_config)?;

    let mut bare = runtime.instantiate_bare(&plugin, &label).await?;
    let about = bare.describe().await.map_err(|e| {
        anyhow::anyhow!("{shown}: {label}: {}: describe failed: {e}", plugin.origin)
    })?;
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

    let grants = match (&entry.grants, &entry.plugin) {
        (Some(spec), _) => Grants::resolve(
            spec,
            GrantOrigin::Explicit,
            &format!("{shown}: {label}.grants"),
        )?,
        (None, PluginSource::Embedded(kind)) => {
            let asked = bare.requested_grants(&config_json).await.map_err(|e| {
                anyhow::anyhow!("{shown}: {label}: {}", redactor.redact(&e.to_string()))
            })?;
            Grants::resolve(
                &GrantSpec::from(asked),
                GrantOrigin::Derived {
                    plugin: kind.clone(),
                },
                &format!("{shown}: {label} (derived grants)"),
            )?
        }
        (None, PluginSource::File { .. }) => Grants::none(),
    };
    redactor.add_all(&config::secret_env_values(&about.secret_keys, &grants.env));
    Ok(Planned {
        entry: entry.clone(),
        plugin,
        about,
        grants,
        config_json,
    })
}

impl JobPlan {
    /// The `--dry-run` report: every entry, its plugin and every effective grant.
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
                                "none (compress_only: gzip only)".into()
                            }
                            None => "MISSING".into(),
                        };
                        out += &format!("    encryption: {enc}\n");
                    }
                    Role::Destination => {
                        let policy = retention::Policy::for_entry(e);
                        out += &format!(
                            "    retention: {}\n",
                            if policy.is_keep_all() {
                                "keep every copy (no retention_copies / retention_days)".to_string()
                            } else {
                                let n = |v: Option<u32>| v.map_or("-".into(), |c| c.to_string());
                                format!(
                                    "copies {}, days {}, daily {}, weekly {}, monthly {}; never fewer than {}",
                                    n(policy.copies),
                                    n(policy.days),
                                    n(policy.daily),
                                    n(policy.weekly),
                                    n(policy.monthly),
                                    policy.min_copies
                                )
                            }
                        );
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
                if matches!(
                    p.plugin.signature,
                    Signature::Unsigned | Signature::Unchecked
                ) {
                    out += "    RISK: a third-party plugin whose signature is not checked \
                            (see trusted_plugin_keys, require_signed_plugins)\n";
                }
                out += &format!("    grants: {}\n", p.grants.origin);
                for line in audit::grant_provenance(&p.grants, &e.plugin_config) {
                    out += &format!("      {line}\n");
                }
                for risk in audit::risks(&p.grants, &job.tmpdir) {
                    out += &format!("    RISK: {risk}\n");
                }
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
