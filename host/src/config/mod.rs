//! The job file. The legacy tool's JSON format runs unchanged; new keys are additions.
//!
//! Parsing happens in two steps: the JSON is read into [`Job`] with every entry's own keys
//! kept aside, then [`Job::validate`] checks what the host itself needs. Each plugin's own
//! keys are checked by the plugin (`configure`), and unknown keys are warned about once the
//! plugin has said which keys it knows.

mod secrets;

pub use secrets::{SecretRef, resolve_secrets};

use crate::grants::GrantSpec;
use crate::schedule::{self, Schedule};
use crate::trust::TrustSettings;
use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the job's temporary artifacts go unless `tmpdir` says otherwise.
pub const DEFAULT_TMPDIR: &str = "/var/tmp/backups";
/// Where run state (last scheduled run, locks) lives unless `state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/backups";
/// The retention floor when a destination does not set `min_copies`: three copies, or
/// `retention_copies` if that asks for fewer.
pub const DEFAULT_MIN_COPIES: u32 = 3;
/// A leftover of a killed `put` younger than this may be another machine's upload still in
/// progress: runs leave it alone (`leftover_age`).
pub const DEFAULT_LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);

/// A whole job file.
#[derive(Debug, Clone)]
pub struct Job {
    /// The file it came from, for error messages.
    pub path: PathBuf,
    /// `job`, or the file name without its extension.
    pub name: String,
    pub hostname: String,
    pub tmpdir: PathBuf,
    /// Legacy `modules`: checked against the types in use, otherwise informational.
    pub modules: Vec<String>,
    pub sources: Vec<Entry>,
    pub destinations: Vec<Entry>,
    pub notifications: Vec<Entry>,
    pub limits: Limits,
    /// Where compiled plugins are cached (`cache_dir`).
    pub cache_dir: Option<PathBuf>,
    /// When the job runs (`schedule`, cron), for the scheduler and the freshness check.
    pub schedule: Option<Schedule>,
    /// How old the newest copy may get (`max_age`), overriding what `schedule` implies.
    pub max_age: Option<Duration>,
    /// Where the scheduler keeps run times and locks (`state_dir`).
    pub state_dir: PathBuf,
    /// Which keys sign third-party plugins, and whether a signature is required
    /// (`trusted_plugin_keys`, `require_signed_plugins`).
    pub trust: TrustSettings,
    /// Warnings found while reading (unknown keys...), shown before the run.
    pub warnings: Vec<String>,
}

/// Which list an entry came from: decides the WIT world its plugin must implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Source,
    Destination,
    Notifier,
}

impl Role {
    /// The job-file key of the list.
    pub fn list_key(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Destination => "destinations",
            Role::Notifier => "notifications",
        }
    }
    /// The WIT world a plugin in this role implements.
    pub fn world(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
            Role::Notifier => "notifier",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.world())
    }
}

/// Where an entry's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// First-party, compiled into the binary, chosen by `type`.
    Embedded(String),
    /// A `.wasm` file named by `plugin` (a path, or `{"path": ..., "sha256": ...}`).
    File {
        path: PathBuf,
        sha256: Option<String>,
    },
}

/// How an entry encrypts (sources only).
#[derive(Debug, Clone)]
pub enum Encryption {
    Passphrase(String),
    /// Public key files, or fingerprints/emails looked up in `keyring`.
    Recipients {
        recipients: Vec<String>,
        keyring: Option<PathBuf>,
    },
    /// `compress_only`: gzip without encryption.
    None,
}

/// How a source's artifacts are compressed: `"compression"` per source or for the job,
/// `"gzip"` (the default, as the legacy tool's) or `"zstd"`, or `{"codec": "zstd",
/// "level": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionSetting {
    #[default]
    Gzip,
    /// `None`: zstd's default level.
    Zstd { level: Option<i32> },
}

/// A source's `"incremental": {"full_every": …}`: archive only what changed since the last
/// full, and start a new full this often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullEvery {
    /// `"7d"`: a full when the last one is this old.
    Age(Duration),
    /// `7`: every 7th run is a full (a full, then six increments).
    Runs(u32),
}

/// A destination's `legacy_copies`: what retention does with the copies the legacy Python
/// tool stored there (found by its layouts; they have no manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegacyCopies {
    /// `"read"` (the default): `status`, `list`, `verify` and `restore` see them; retention
    /// neither counts nor deletes them.
    #[default]
    Read,
    /// `"manage"`: retention also counts them as copies, and deletes them under the same
    /// policy, never below the `min_copies` floor (which they help fill).
    Manage,
}

/// What `full_every` is when `incremental` does not say.
pub const DEFAULT_FULL_EVERY: FullEvery = FullEvery::Age(Duration::from_secs(7 * 86_400));

/// A notifier's call limit unless its entry sets one: a notification server that hangs
/// must not hold the end of a run for the hours a dump may take.
pub const NOTIFIER_CALL_SECONDS: u64 = 300;

/// Per-plugin limits. Defaults are safe for all first-party plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time one call into a plugin may take (a dump is one call).
    pub call_seconds: u64,
    /// Wall-clock time all calls into one instance may take together (a destination
    /// makes one call per artifact, listing and deletion).
    pub total_seconds: u64,
    /// Log bytes one instance may emit before the rest is dropped (and that is said).
    pub log_bytes: u64,
    /// Handles (open files, streams, sockets, pollables) one instance may hold at once:
    /// each may be a host file descriptor, and those are shared by the whole run.
    pub resources: u64,
    /// Core instances and tables one plugin's store may create (a component is a few).
    pub instances: u64,
    pub tables: u64,
    /// `process.private-file` calls one instance may make, and the bytes they may write
    /// together: files in the run's tmpdir that the plugin needs no grant for, so they
    /// must not be a way to fill the disk the other sources' artifacts are written to.
    pub private_files: u64,
    pub private_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            call_seconds: 6 * 3600,
            total_seconds: 24 * 3600,
            log_bytes: 1 << 20,
            resources: 4096,
            instances: 64,
            tables: 64,
            private_files: 16,
            private_file_bytes: 1 << 20,
        }
    }
}

/// One entry of `sources`, `destinations` or `notifications`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub role: Role,
    /// Position in its list, for messages about entries without an id.
    pub index: usize,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub plugin: PluginSource,
    /// The explicit `grants` block, if any; it replaces what a first-party plugin derives.
    pub grants: Option<GrantSpec>,
    pub limits: Limits,
    /// Sources: how to encrypt.
    pub encryption: Option<Encryption>,
    /// Sources: how to compress (the entry's `compression`, else the job's).
    pub compression: CompressionSetting,
    /// Destinations: legacy retention keys.
    pub retention_copies: Option<u32>,
    pub retention_days: Option<u32>,
    /// Destinations: the floor retention never goes below.
    pub min_copies: u32,
    /// Destinations: keep the newest copy of each of the last N days / weeks / months.
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    /// Sources: how old the newest copy may get before `status` calls it stale.
    pub max_age: Option<Duration>,
    /// Sources: archive only what changed since the last full (`incremental`).
    pub incremental: Option<FullEvery>,
    /// Destinations: how old the leftover of a killed `put` must be before a run removes
    /// it (`leftover_age`; default a day, so that a run on another machine that is still
    /// uploading is never hit).
    pub leftover_age: Duration,
    /// Destinations: whether retention manages the legacy tool's copies there.
    pub legacy_copies: LegacyCopies,
    /// Notifiers: when to send, if the entry says; otherwise the plugin's own default.
    pub notify_on_success: Option<bool>,
    pub notify_on_failure: Option<bool>,
    /// Notifiers: also tell when a run starts (legacy key; off unless set).
    pub notify_on_start: bool,
    /// `allow_risky_grants`: a third-party plugin may be granted a path that contains the
    /// job file or a secret file (refused otherwise).
    pub allow_risky_grants: bool,
    /// The files this entry's `{"file": …}` secrets were read from.
    pub secret_files: Vec<PathBuf>,
    /// The keys the plugin gets: `id`, `name`, `type` and its own keys. Host keys
    /// (passphrase, grants, retention...) are never passed to a plugin.
    pub plugin_config: Map<String, Value>,
    /// Secret values (from references, and the passphrase), redacted everywhere.
    pub secrets: Vec<String>,
    /// Of those, the ones written as `{"env": ...}` / `{"file": ...}` references rather
    /// than literally in the job file.
    pub referenced_secrets: Vec<String>,
}

impl Entry {
    /// `sources[2] "db"`: how messages name an entry.
    pub fn label(&self) -> String {
        format!("{}[{}] {:?}", self.role.list_key(), self.index, self.id)
    }
}

/// Keys the host reads itself and never passes to a plugin.
const HOST_KEYS: &[&str] = &[
    "plugin",
    "grants",
    "limits",
    "passphrase",
    "recipients",
    "keyring",
    "compress_only",
    "compression",
    "retention_copies",
    "retention_days",
    "min_copies",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "max_age",
    "incremental",
    "leftover_age",
    "legacy_copies",
    "notify_on_success",
    "notify_on_failure",
    "notify_on_start",
    "allow_risky_grants",
];

/// Keys every entry may carry and the plugin also receives.
pub const COMMON_KEYS: &[&str] = &["id", "name", "type"];

const TOP_LEVEL_KEYS: &[&str] = &[
    "job",
    "hostname",
    "tmpdir",
    "modules",
    "sources",
    "destinations",
    "notifications",
    "limits",
    "compression",
    "cache_dir",
    "schedule",
    "max_age",
    "state_dir",
    "trusted_plugin_keys",
    "require_signed_plugins",
];

impl Job {
    /// Reads and checks a job file. Errors name the file and, where there is one, the key.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the job file", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Job> {
        let shown = path.display();
        let root: Value = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{shown}:{}:{}: not valid JSON: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )
        })?;
        let Value::Object(root) = root else {
            bail!("{shown}: the job file must be a JSON object");
        };
        let mut warnings = Vec::new();
        for key in root.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                warnings.push(format!("{shown}: unknown top-level key {key:?} (ignored)"));
            }
        }

        let name = match root.get("job") {
            Some(v) => string(v, &format!("{shown}: job"))?,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into()),
        };
        let hostname = match root.get("hostname") {
            Some(v) => string(v, &format!("{shown}: hostname"))?,
            None => system_hostname(),
        };
        if hostname.is_empty() || hostname.contains('/') || hostname.starts_with('.') {
            bail!("{shown}: hostname {hostname:?} cannot be the first part of an object name");
        }
        let tmpdir = match root.get("tmpdir") {
            Some(v) => PathBuf::from(string(v, &format!("{shown}: tmpdir"))?),
            None => PathBuf::from(DEFAULT_TMPDIR),
        };
        let modules = match root.get("modules") {
            // `null` is the legacy tool's "the default list".
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| string(v, &format!("{shown}: modules")))
                .collect::<Result<_>>()?,
            Some(_) => bail!("{shown}: modules must be a list of module names"),
        };
        let limits = match root.get("limits") {
            Some(v) => parse_limits(v, Limits::default(), &format!("{shown}: limits"))?,
            None => Limits::default(),
        };
        let compression = root
            .get("compression")
            .map(|v| compression(v, &format!("{shown}: compression")))
            .transpose()?
            .unwrap_or_default();
        let cache_dir = match root.get("cache_dir") {
            Some(v) => Some(PathBuf::from(string(v, &format!("{shown}: cache_dir"))?)),
            None => None,
        };

        let schedule = match root.get("schedule") {
            Some(v) => Some(
                Schedule::parse(&string(v, &format!("{shown}: schedule"))?)
                    .map_err(|e| anyhow::anyhow!("{shown}: schedule: {e}"))?,
            ),
            None => None,
        };
        let max_age = root
            .get("max_age")
            .map(|v| duration(v, &format!("{shown}: max_age")))
            .transpose()?;
        let state_dir = match root.get("state_dir") {
            Some(v) => PathBuf::from(string(v, &format!("{shown}: state_dir"))?),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };

        let base_dir = path.parent().unwrap_or(Path::new("."));
        let trust = TrustSettings {
            keyrings: match root.get("trusted_plugin_keys") {
                None => Vec::new(),
                Some(v) => string_list(v, &format!("{shown}: trusted_plugin_keys"))?
                    .into_iter()
                    .map(|p| base_dir.join(p))
                    .collect(),
            },
            require_signed: root
                .get("require_signed_plugins")
                .map(|v| flag(v, &format!("{shown}: require_signed_plugins")))
                .transpose()?
                .unwrap_or(false),
        };
        let mut lists = Vec::new();
        for role in [Role::Source, Role::Destination, Role::Notifier] {
            let key = role.list_key();
            let items = match root.get(key) {
                None => Vec::new(),
                Some(Value::Array(items)) => items.clone(),
                Some(_) => bail!("{shown}: {key} must be a list"),
            };
            let mut entries = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let ctx = EntryContext {
                    file: path,
                    base_dir,
                    role,
                    index,
                    limits,
                    compression,
                };
                entries.push(ctx.parse(item)?);
            }
            lists.push(entries);
        }
        let notifications = lists.pop().unwrap_or_default();
        let destinations = lists.pop().unwrap_or_default();
        let sources = lists.pop().unwrap_or_default();

        let job = Job {
            path: path.to_path_buf(),
            name,
            hostname,
            tmpdir,
            modules,
            sources,
            destinations,
            notifications,
            limits,
            cache_dir,
            schedule,
            max_age,
            state_dir,
            trust,
            warnings,
        };
        job.validate()?;
        Ok(job)
    }

    /// What the host needs to be true before anything runs.
    fn validate(&self) -> Result<()> {
        let shown = self.path.display();
        if self.sources.is_empty() {
            bail!("{shown}: sources is empty: nothing to back up");
        }
        if self.destinations.is_empty() {
            bail!("{shown}: destinations is empty: nowhere to put the backups");
        }
        for list in [&self.sources, &self.destinations, &self.notifications] {
            let mut seen = std::collections::HashSet::new();
            for entry in list {
                if !seen.insert(&entry.id) {
                    bail!(
                        "{shown}: {}: id {:?} is used twice in {}; ids name objects and must be unique",
                        entry.label(),
                        entry.id,
                        entry.role.list_key()
                    );
                }
            }
        }
        for source in &self.sources {
            if source.encryption.is_none() {
                bail!(
                    "{shown}: {}: no passphrase and no recipients: set \"passphrase\", \
                     \"recipients\", or \"compress_only\": 1 to store it unencrypted",
                    source.label()
                );
            }
        }
        Ok(())
    }

    /// How old a source's newest copy may get, and which setting said so.
    pub fn max_age_for(&self, source: &Entry) -> (Duration, String) {
        if let Some(d) = source.max_age {
            return (d, format!("{}.max_age", source.label()));
        }
        if let Some(d) = self.max_age {
            return (d, "max_age".into());
        }
        if let Some(s) = &self.schedule
            && let Some(d) = s.max_age(jiff::Timestamp::now())
        {
            return (d, format!("schedule {:?} (longest gap + 50%)", s.text()));
        }
        (
            schedule::DEFAULT_MAX_AGE,
            "default: no schedule or max_age, assuming a daily job".into(),
        )
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.sources
            .iter()
            .chain(&self.destinations)
            .chain(&self.notifications)
    }

    /// Files that hold this job's secrets: the job file and every `{"file": …}` secret.
    pub fn sensitive_files(&self) -> Vec<PathBuf> {
        std::iter::once(self.path.clone())
            .chain(self.entries().flat_map(|e| e.secret_files.iter().cloned()))
            .collect()
    }

    /// Warnings for legacy `modules` that name a type no entry uses, or entries whose
    /// module is not listed (the legacy tool needed both; we need neither).
    pub fn module_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for module in &self.modules {
            let used = self.entries().any(|e| module_serves(module, &e.kind));
            if !used {
                out.push(format!(
                    "{}: modules: {module:?} is listed but no entry uses it",
                    self.path.display()
                ));
            }
        }
        out
    }
}

/// Whether legacy module `module` (`backups.sources.folderssh`) serves entries of type
/// `kind` (`folder-ssh`): the legacy names drop `-`, use `_` (`azure_managed_disk`) and say
/// `postgresql` where our types say `pgsql`.
fn module_serves(module: &str, kind: &str) -> bool {
    let normal = |name: &str| {
        name.replace(['-', '_'], "")
            .replace("postgresql", "pgsql")
            .replace("email", "smtp")
    };
    normal(module.rsplit('.').next().unwrap_or(module)) == normal(kind)
}

struct EntryContext<'a> {
    file: &'a Path,
    base_dir: &'a Path,
    role: Role,
    index: usize,
    limits: Limits,
    /// The job's `compression`, which a source's own replaces.
    compression: CompressionSetting,
}

impl EntryContext<'_> {
    fn at(&self, key: &str) -> String {
        format!(
            "{}: {}[{}].{key}",
            self.file.display(),
            self.role.list_key(),
            self.index
        )
    }

    fn parse(&self, item: Value) -> Result<Entry> {
        let Value::Object(mut map) = item else {
            bail!(
                "{}: {}[{}] must be an object",
                self.file.display(),
                self.role.list_key(),
                self.index
            );
        };
        let kind = match map.get("type") {
            Some(v) => string(v, &self.at("type"))?,
            None => bail!(
                "{}: missing (which plugin serves this entry?)",
                self.at("type")
            ),
        };
        // Notifications in legacy files often have no id; the type names them well enough.
        let id = match map.get("id") {
            Some(v) => string(v, &self.at("id"))?,
            None if self.role == Role::Notifier => format!("{kind}-{}", self.index),
            None => bail!("{}: missing (ids name the backup objects)", self.at("id")),
        };
        if id.is_empty() || id.contains('/') || id.starts_with('.') || id.contains("..") {
            bail!("{}: {id:?} cannot be part of an object name", self.at("id"));
        }
        let name = match map.get("name") {
            Some(v) => string(v, &self.at("name"))?,
            None => id.clone(),
        };
        map.insert("id".into(), Value::String(id.clone()));
        map.insert("name".into(), Value::String(name.clone()));

        let plugin = match map.get("plugin") {
            None => PluginSource::Embedded(kind.clone()),
            Some(Value::String(p)) => PluginSource::File {
                path: self.base_dir.join(p),
                sha256: None,
            },
            Some(Value::Object(o)) => {
                let path = o
                    .get("path")
                    .map(|v| string(v, &self.at("plugin.path")))
                    .transpose()?
                    .ok_or_else(|| anyhow::anyhow!("{}: missing", self.at("plugin.path")))?;
                let sha256 = o
                    .get("sha256")
                    .map(|v| string(v, &self.at("plugin.sha256")))
                    .transpose()?
                    .map(|s| s.to_ascii_lowercase());
                if let Some(d) = &sha256
                    && (d.len() != 64 || !d.chars().all(|c| c.is_ascii_hexdigit()))
                {
                    bail!(
                        "{}: {d:?} is not a sha256 hex digest",
                        self.at("plugin.sha256")
                    );
                }
                PluginSource::File {
                    path: self.base_dir.join(path),
                    sha256,
                }
            }
            Some(_) => bail!(
                "{}: must be a path or {{\"path\": ..., \"sha256\": ...}}",
                self.at("plugin")
            ),
        };

        // Secret references are resolved for every value the plugin or host will read.
        let mut secret_files = Vec::new();
        for (key, value) in map.iter() {
            if key != "grants" && key != "plugin" {
                secrets::file_references(value, &mut secret_files);
            }
        }
        // The legacy `defaults` of a local database source is a client credentials file
        // (mysqldump's --defaults-file): a secret file like a {"file": …} reference, so no
        // third-party grant reaches it unless its entry allows risky grants.
        if matches!(kind.as_str(), "mysql" | "pgsql")
            && let Some(Value::String(path)) = map.get("defaults")
        {
            secret_files.push(PathBuf::from(path));
        }
        let mut secrets = Vec::new();
        for (key, value) in map.iter_mut() {
            if key == "grants" || key == "plugin" {
                continue;
            }
            resolve_secrets(value, &self.at(key), &mut secrets)?;
        }
        let referenced_secrets = secrets.clone();

        let grants = map
            .get("grants")
            .map(|v| GrantSpec::parse(v, &self.at("grants")))
            .transpose()?;
        let inherited = match self.role {
            Role::Notifier => Limits {
                call_seconds: self.limits.call_seconds.min(NOTIFIER_CALL_SECONDS),
                ..self.limits
            },
            _ => self.limits,
        };
        let limits = match map.get("limits") {
            Some(v) => parse_limits(v, inherited, &self.at("limits"))?,
            None => inherited,
        };

        let encryption = if self.role == Role::Source {
            self.encryption(&map)?
        } else {
            None
        };
        let compression = match map.get("compression") {
            Some(v) if self.role == Role::Source => compression(v, &self.at("compression"))?,
            _ => self.compression,
        };
        let retention_copies = map
            .get("retention_copies")
            .map(|v| retention_rule(v, &self.at("retention_copies")))
            .transpose()?
            .flatten();
        let retention_days = map
            .get("retention_days")
            .map(|v| retention_rule(v, &self.at("retention_days")))
            .transpose()?
            .flatten();
        let min_copies = map
            .get("min_copies")
            .map(|v| count(v, &self.at("min_copies")))
            .transpose()?
            .unwrap_or_else(|| {
                DEFAULT_MIN_COPIES
                    .min(retention_copies.unwrap_or(u32::MAX))
                    .max(1)
            });
        let keep = |key: &str| map.get(key).map(|v| count(v, &self.at(key))).transpose();
        let (keep_daily, keep_weekly, keep_monthly) = (
            keep("keep_daily")?,
            keep("keep_weekly")?,
            keep("keep_monthly")?,
        );
        let max_age = map
            .get("max_age")
            .map(|v| duration(v, &self.at("max_age")))
            .transpose()?;
        let incremental = match map.get("incremental") {
            Some(v) if self.role == Role::Source => Some(incremental(v, &self.at("incremental"))?),
            Some(_) => bail!(
                "{}: only a source archives incrementally",
                self.at("incremental")
            ),
            None => None,
        };
        let leftover_age = map
            .get("leftover_age")
            .map(|v| duration(v, &self.at("leftover_age")))
            .transpose()?
            .unwrap_or(DEFAULT_LEFTOVER_AGE);
        let legacy_copies = match map.get("legacy_copies") {
            None => LegacyCopies::Read,
            Some(_) if self.role != Role::Destination => bail!(
                "{}: only a destination holds copies to manage",
                self.at("legacy_copies")
            ),
            Some(Value::String(s)) if s == "read" => LegacyCopies::Read,
            Some(Value::String(s)) if s == "manage" => LegacyCopies::Manage,
            Some(other) => bail!(
                "{}: must be \"read\" (the default: seen, never deleted) or \"manage\" \
                 (counted and deleted under this destination's retention), found {other}",
                self.at("legacy_copies")
            ),
        };
        if min_copies == 0 {
            bail!(
                "{}: must be at least 1: a destination always keeps its newest copy",
                self.at("min_copies")
            );
        }
        let notify_on_success = map
            .get("notify_on_success")
            .map(|v| flag(v, &self.at("notify_on_success")))
            .transpose()?;
        let notify_on_failure = map
            .get("notify_on_failure")
            .map(|v| flag(v, &self.at("notify_on_failure")))
            .transpose()?;
        let notify_on_start = map
            .get("notify_on_start")
            .map(|v| flag(v, &self.at("notify_on_start")))
            .transpose()?
            .unwrap_or(false);
        let allow_risky_grants = map
            .get("allow_risky_grants")
            .map(|v| flag(v, &self.at("allow_risky_grants")))
            .transpose()?
            .unwrap_or(false);

        if let Some(Value::String(p)) = map.get("passphrase") {
            secrets.push(p.clone());
        }
        let plugin_config: Map<String, Value> = map
            .into_iter()
            .filter(|(k, _)| !HOST_KEYS.contains(&k.as_str()))
            .collect();

        Ok(Entry {
            role: self.role,
            index: self.index,
            id,
            name,
            kind,
            plugin,
            grants,
            limits,
            encryption,
            compression,
            retention_copies,
            retention_days,
            min_copies,
            keep_daily,
            keep_weekly,
            keep_monthly,
            max_age,
            incremental,
            leftover_age,
            legacy_copies,
            notify_on_success,
            notify_on_failure,
            notify_on_start,
            allow_risky_grants,
            secret_files,
            plugin_config,
            secrets,
            referenced_secrets,
        })
    }

    fn encryption(&self, map: &Map<String, Value>) -> Result<Option<Encryption>> {
        let compress_only = map
            .get("compress_only")
            .map(|v| compress_only(v, &self.at("compress_only")))
            .transpose()?
            .unwrap_or(false);
        let recipients: Vec<String> = match map.get("recipients") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| string(v, &self.at("recipients")))
                .collect::<Result<_>>()?,
            Some(_) => bail!(
                "{}: must be a list of key files or fingerprints",
                self.at("recipients")
            ),
        };
        let passphrase = match map.get("passphrase") {
            None | Some(Value::Null) => None,
            Some(v) => Some(string(v, &self.at("passphrase"))?),
        };
        if compress_only {
            return Ok(Some(Encryption::None));
        }
        if !recipients.is_empty() {
            let keyring = map
                .get("keyring")
                .map(|v| string(v, &self.at("keyring")))
                .transpose()?
                .map(|p| self.base_dir.join(p));
            let recipients = recipients
                .into_iter()
                .map(|r| {
                    // A relative key-file path is relative to the job file.
                    let as_path = self.base_dir.join(&r);
                    if r.contains('/') || as_path.is_file() {
                        as_path.display().to_string()
                    } else {
                        r
                    }
                })
                .collect();
            return Ok(Some(Encryption::Recipients {
                recipients,
                keyring,
            }));
        }
        match passphrase {
            Some(p) if p.is_empty() => bail!("{}: is empty", self.at("passphrase")),
            Some(p) => Ok(Some(Encryption::Passphrase(p))),
            None => Ok(None),
        }
    }
}

fn parse_limits(value: &Value, base: Limits, at: &str) -> Result<Limits> {
    let Value::Object(map) = value else {
        bail!("{at}: must be an object");
    };
    let mut limits = base;
    for (key, v) in map {
        let n = v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("{at}.{key}: must be a positive whole number"))?;
        match key.as_str() {
            "memory_mib" => limits.memory_bytes = n << 20,
            "call_seconds" => limits.call_seconds = n,
            "log_kib" => limits.log_bytes = n << 10,
            "total_seconds" => limits.total_seconds = n,
            "resources" => limits.resources = n,
            "instances" => limits.instances = n,
            "tables" => limits.tables = n,
            "private_files" => limits.private_files = n,
            "private_file_kib" => limits.private_file_bytes = n << 10,
            _ => bail!(
                "{at}.{key}: unknown limit (memory_mib, call_seconds, total_seconds, log_kib, \
                 resources, instances, tables, private_files, private_file_kib)"
            ),
        }
    }
    Ok(limits)
}

fn string(value: &Value, at: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => bail!("{at}: must be a string, found {}", json_kind(other)),
    }
}

/// One string or a list of strings.
fn string_list(value: &Value, at: &str) -> Result<Vec<String>> {
    match value {
        Value::Array(items) => items.iter().map(|v| string(v, at)).collect(),
        other => Ok(vec![string(other, at)?]),
    }
}

/// Legacy flags are `1`/`0`, `true`/`false` or `"1"`/`"0"`.
fn flag(value: &Value, at: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) if matches!(s.as_str(), "0" | "false" | "no") => Ok(false),
        Value::String(s) if matches!(s.as_str(), "1" | "true" | "yes") => Ok(true),
        other => bail!("{at}: must be 1/0 or true/false, found {other}"),
    }
}

/// `compress_only` as the legacy tool read it (`config['compress_only'] == 1`): 1 or
/// true stores the dump compressed and unencrypted, 0, false or null encrypts it. Any
/// other value the legacy tool read as "encrypt" (a string "1" included), where a reader
/// of the job file would read "do not": ambiguous about whether a backup is encrypted,
/// so an error naming the key.
fn compress_only(value: &Value, at: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        other => bail!(
            "{at}: 1 (or true) stores the dump compressed but unencrypted, 0 (or false) \
             encrypts it; {other} is ambiguous (the legacy tool encrypted for it): write 1 or 0"
        ),
    }
}

/// A legacy retention number: 0 or less is "no such rule", as the legacy tool read it
/// (`if retention_days > 0: …`), not an error.
fn retention_rule(value: &Value, at: &str) -> Result<Option<u32>> {
    let n: i64 = match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("{at}: must be a whole number, found {n}"))?,
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{at}: must be a whole number, found {s:?}"))?,
        other => bail!("{at}: must be a whole number, found {}", json_kind(other)),
    };
    Ok(u32::try_from(n).ok().filter(|n| *n > 0))
}

fn count(value: &Value, at: &str) -> Result<u32> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("{at}: must be a whole number ≥ 0, found {n}")),
        Value::String(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("{at}: must be a whole number ≥ 0, found {s:?}")),
        other => bail!("{at}: must be a whole number, found {}", json_kind(other)),
    }
}

/// `{"full_every": "7d"}` (an age) or `{"full_every": 7}` (a count of runs); `{}` is a
/// full every 7 days.
fn incremental(value: &Value, at: &str) -> Result<FullEvery> {
    let Value::Object(map) = value else {
        bail!(
            "{at}: must be an object like {{\"full_every\": \"7d\"}}, found {}",
            json_kind(value)
        );
    };
    if let Some(key) = map.keys().find(|k| k.as_str() != "full_every") {
        bail!("{at}.{key}: unknown key (incremental takes full_every)");
    }
    let at = format!("{at}.full_every");
    match map.get("full_every") {
        None => Ok(DEFAULT_FULL_EVERY),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(runs) if runs >= 1 => Ok(FullEvery::Runs(runs)),
            _ => bail!("{at}: a count of runs is a whole number ≥ 1, found {n}"),
        },
        Some(v @ Value::String(_)) => Ok(FullEvery::Age(duration(v, &at)?)),
        Some(other) => bail!(
            "{at}: must be a duration like \"7d\" or a count of runs, found {}",
            json_kind(other)
        ),
    }
}

fn duration(value: &Value, at: &str) -> Result<Duration> {
    match value {
        Value::Number(n) => match n.as_u64().filter(|n| *n > 0) {
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => bail!("{at}: must be a positive number of seconds or a duration like 36h"),
        },
        Value::String(s) => schedule::parse_duration(s).map_err(|e| anyhow::anyhow!("{at}: {e}")),
        other => bail!(
            "{at}: must be a duration like 36h, found {}",
            json_kind(other)
        ),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `"gzip"`, `"zstd"`, or `{"codec": "gzip"|"zstd", "level": N}` (zstd's levels; gzip
/// has none to choose: it is always -1, as the legacy pipeline's).
fn compression(value: &Value, at: &str) -> Result<CompressionSetting> {
    let (codec, level) = match value {
        Value::String(codec) => (codec.as_str(), None),
        Value::Object(map) => {
            if let Some(key) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "codec" | "level"))
            {
                bail!("{at}: unknown key {key:?} (codec, level)");
            }
            let codec = match map.get("codec") {
                Some(Value::String(c)) => c.as_str(),
                _ => bail!("{at}.codec: missing (\"gzip\" or \"zstd\")"),
            };
            let level = match map.get("level") {
                None => None,
                Some(Value::Number(n)) => match n.as_i64().and_then(|l| i32::try_from(l).ok()) {
                    Some(l) => Some(l),
                    None => bail!("{at}.level: must be a whole number"),
                },
                Some(other) => bail!("{at}.level: must be a number, found {}", json_kind(other)),
            };
            (codec, level)
        }
        other => bail!(
            "{at}: must be \"gzip\", \"zstd\" or {{\"codec\": …, \"level\": …}}, found {}",
            json_kind(other)
        ),
    };
    match (codec, level) {
        ("gzip", None) => Ok(CompressionSetting::Gzip),
        ("gzip", Some(_)) => {
            bail!(
                "{at}.level: gzip is always level 1 here (as the legacy tool's); choose zstd for levels"
            )
        }
        ("zstd", Some(l)) if !(-7..=22).contains(&l) => {
            bail!("{at}.level: zstd levels here run from -7 (fast) to 22 (small), not {l}")
        }
        ("zstd", level) => Ok(CompressionSetting::Zstd { level }),
        (other, _) => bail!("{at}: unknown codec {other:?} (gzip or zstd)"),
    }
}

/// serde_json appends " at line X column Y"; we print the position first, as compilers do.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Unknown keys of an entry, given the keys its plugin declared.
pub fn unknown_keys(entry: &Entry, known: &[String]) -> Vec<String> {
    entry
        .plugin_config
        .keys()
        .filter(|k| !COMMON_KEYS.contains(&k.as_str()) && !known.iter().any(|n| n == *k))
        .cloned()
        .collect()
}

/// Values of `secret_keys` (dotted paths) in an entry's plugin config, for redaction.
pub fn secret_values(config: &Map<String, Value>, secret_keys: &[String]) -> Vec<String> {
    secret_keys
        .iter()
        .filter_map(|key| secret_value(config, key))
        .collect()
}

/// Values of the environment variables a plugin declares secret (`env:NAME` in its
/// `secret_keys`, e.g. a client secret that legacy configs keep in the environment) and
/// its grants pass to it, for redaction. A variable it is not granted never reaches the
/// plugin, so there is nothing of it to hide.
pub fn secret_env_values(secret_keys: &[String], granted_env: &[String]) -> Vec<String> {
    secret_keys
        .iter()
        .filter_map(|key| key.strip_prefix("env:"))
        .filter(|name| granted_env.iter().any(|g| g == name))
        .filter_map(|name| std::env::var(name).ok())
        .filter(|value| !value.is_empty())
        .collect()
}

/// The value of one secret key (a dotted path), if set. `url@userinfo` names only the
/// password a URL carries (`https://user:PASS@host/`): the rest of that URL (its host,
/// which `check` prints in the grants) is no secret.
fn secret_value(config: &Map<String, Value>, key: &str) -> Option<String> {
    if let Some(key) = key.strip_suffix("@userinfo") {
        let url = secret_value(config, key)?;
        let authority = url.split_once("://")?.1.split('/').next()?;
        let (userinfo, _) = authority.rsplit_once('@')?;
        let secret = userinfo.split_once(':').map_or(userinfo, |(_, pass)| pass);
        return (!secret.is_empty()).then(|| secret.to_string());
    }
    let mut parts = key.split('.');
    let mut cur = parts.next().and_then(|p| config.get(p));
    for p in parts {
        cur = cur.and_then(|v| v.get(p));
    }
    match cur {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The entry's secrets written literally in the job file (not as references), by key:
/// the plugin's `secret_keys`, and the passphrase.
pub fn literal_secret_keys(entry: &Entry, secret_keys: &[String]) -> Vec<String> {
    let literal = |v: &String| !entry.referenced_secrets.contains(v);
    let mut keys: Vec<String> = secret_keys
        .iter()
        .filter(|k| secret_value(&entry.plugin_config, k).is_some_and(|v| literal(&v)))
        .cloned()
        .collect();
    if let Some(Encryption::Passphrase(p)) = &entry.encryption
        && literal(p)
    {
        keys.push("passphrase".into());
    }
    keys
}

#[cfg(test)]
mod tests;
