//! `backups plugins test`: the conformance kit. It runs a plugin with the host's real
//! runtime, sandbox and grants — exactly as a job would — and checks that it keeps the
//! contract in wit/: bytes come back identical, listings are right, deletes delete, a
//! missing object is `not-found`, a dump ends cleanly with a valid kind, and every failure
//! is a typed `plugin-error`, never a trap.
//!
//! Each check is one [`Check`]; the caller prints them as they come and fails when any did.

use crate::config::{Limits, Role};
use crate::grants::{GrantSpec, Grants};
use crate::plan::EntryError;
use crate::redact::Redactor;
use crate::runtime::bindings::About;
use crate::runtime::{CallError, Instance, LoadedPlugin, Origin, Runtime, sink};
use crate::session::{Failed, Session, Start};
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What to test and how.
pub struct Options {
    /// The plugin's config: a job entry's keys. `id`, `name` and `type` are filled in
    /// when absent, as a job entry always has them.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Explicit grants (a job entry's `grants` block); `None`: as a job would — derived
    /// for an embedded plugin, none for a `.wasm` file.
    pub grants: Option<serde_json::Value>,
    /// Size of the streamed object in the destination round trip.
    pub large_bytes: u64,
}

/// One check's outcome.
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        write!(f, "{verdict} {}: {}", self.name, self.detail)
    }
}

/// Runs every check for `plugin`'s kind, handing each to `report` as it completes.
/// An `Err` means the kit could not run at all (bad options, no temp dir).
pub async fn run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    options: &Options,
    report: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>> {
    // Shared with the session: secrets added once the plugin has described itself are
    // redacted from its instances' logs too.
    let redactor = Redactor::new();
    let session = Session::for_kit(runtime, &redactor)?;
    let mut kit = Kit {
        runtime,
        plugin,
        options,
        config_json: String::new(),
        secret_keys: Vec::new(),
        redactor,
        session: &session,
        checks: Vec::new(),
        report,
    };
    let about = kit.check_describe().await;
    if let Some(about) = &about {
        // Secrets given in --config stay out of every line printed, as in a run.
        kit.redactor.add_all(&crate::config::secret_values(
            &options.config,
            &about.secret_keys,
        ));
        kit.secret_keys = about.secret_keys.clone();
    }
    kit.config_json = entry_config(&options.config, plugin, about.map(|a| a.name).as_deref());
    match plugin.world.role {
        Role::Destination => kit.destination().await?,
        Role::Source => kit.source().await?,
        Role::Notifier => kit.notifier().await?,
    }
    kit.without_grants().await;
    Ok(kit.checks)
}

/// Unique enough for names of one run: pid and nanoseconds.
/// How much of a cut-short `put` arrives before its data fails: more than one part of S3
/// (5-16 MiB), one GCS/Drive chunk (8 MiB) and one Dropbox chunk (16 MiB), so that a
/// backend that uploads in pieces has already committed some before the failure.
const CUT_SHORT_GOOD_BYTES: u64 = (17 << 20) + 3;

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

struct Kit<'a> {
    runtime: &'a Runtime,
    plugin: &'a LoadedPlugin,
    options: &'a Options,
    /// The config handed to `requested-grants` and `configure`.
    config_json: String,
    /// The plugin's `secret_keys`: `env:NAME` ones are redacted once the grants are known.
    secret_keys: Vec<String>,
    redactor: Redactor,
    /// The one door to a running instance, as in a job's run.
    session: &'a Session<'a>,
    checks: Vec<Check>,
    report: &'a mut dyn FnMut(&Check),
}

/// `config` with the keys every job entry has: a plugin may read `type` (s3 tells minio
/// apart by it).
fn entry_config(
    config: &serde_json::Map<String, serde_json::Value>,
    plugin: &LoadedPlugin,
    described_name: Option<&str>,
) -> String {
    let mut config = config.clone();
    let kind = match &plugin.origin {
        Origin::Embedded(name) => Some(name.as_str()),
        Origin::File(_) => described_name,
    };
    if let Some(kind) = kind {
        config.entry("type").or_insert_with(|| kind.into());
    }
    config
        .entry("id")
        .or_insert_with(|| "plugin-under-test".into());
    config
        .entry("name")
        .or_insert_with(|| "conformance kit".into());
    serde_json::Value::Object(config).to_string()
}

/// Why a failed call is a contract violation, or `None` when it is a typed plugin error.
fn untyped(e: &CallError) -> Option<String> {
    match e {
        CallError::Plugin(_) => None,
        other => Some(format!("not a typed plugin-error: {other}")),
    }
}

impl Kit<'_> {
    fn record(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        let check = Check {
            name: name.to_string(),
            passed,
            detail: self.redactor.redact(&detail.into()),
        };
        (self.report)(&check);
        self.checks.push(check);
    }

    /// Records a call that must succeed; gives its value when it did.
    fn expect_ok<T>(&mut self, name: &str, result: Result<T, CallError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.record(name, false, e.to_string());
                None
            }
        }
    }

    /// What the kit starts: the plugin under test, with `grants`. A kit run must end: an
    /// hour per call is plenty for the streamed object.
    fn start(&self, grants: Grants) -> Start<'_> {
        Start {
            plugin: self.plugin,
            label: format!("conformance {}", self.plugin.origin),
            grants,
            limits: Limits {
                call_seconds: 3600,
                total_seconds: 4 * 3600,
                ..Limits::default()
            },
            entry_id: "plugin-under-test",
            config_json: &self.config_json,
        }
    }

    /// The grants a job would give, resolved as the job's plan resolves them.
    async fn grants(&mut self) -> Result<Grants> {
        let explicit = match &self.options.grants {
            Some(value) => Some(GrantSpec::parse(value, "--grants")?),
            None => None,
        };
        let embedded = match &self.plugin.origin {
            Origin::Embedded(name) => Some(name.as_str()),
            Origin::File(_) => None,
        };
        let mut bare = self
            .runtime
            .instantiate_bare(self.plugin, "conformance", Limits::default())
            .await?;
        crate::plan::resolve_grants(
            explicit.as_ref(),
            embedded,
            &mut bare,
            &self.config_json,
            "plugin-under-test",
            &self.redactor,
        )
        .await
        .map_err(|e| match e {
            EntryError::Job(e) => e,
            EntryError::Plugin(e) => anyhow::anyhow!(e),
        })
    }

    /// A configured instance with the job's grants.
    async fn open(&mut self) -> Result<Option<Instance>> {
        let grants = self.grants().await?;
        self.redactor.add_all(&crate::config::secret_env_values(
            &self.secret_keys,
            &grants.env,
        ));
        match self.session.start(self.start(grants)).await {
            Ok(instance) => Ok(Some(instance)),
            Err(Failed::Instantiating(e)) => Err(e),
            Err(Failed::Configuring(e)) => {
                self.record("configure", false, e.to_string());
                Ok(None)
            }
        }
    }

    /// Checks `describe`; gives what the plugin says it is.
    async fn check_describe(&mut self) -> Option<About> {
        let described = match self
            .runtime
            .instantiate_bare(self.plugin, "conformance", Limits::default())
            .await
        {
            Ok(mut bare) => bare.describe().await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        match described {
            Ok(about) if about.name.is_empty() => self.record("describe", false, "empty name"),
            Ok(about) => {
                self.record(
                    "describe",
                    true,
                    format!(
                        "{} {} ({} world, WIT {})",
                        about.name,
                        about.version,
                        self.plugin.world.role,
                        self.plugin.world.version
                    ),
                );
                return Some(about);
            }
            Err(e) => self.record("describe", false, e),
        }
        None
    }

    async fn destination(&mut self) -> Result<()> {
        let Some(mut dest) = self.open().await? else {
            return Ok(());
        };
        let prefix = format!("conformance-{}/", unique());
        let objects = self.sample_objects(&prefix)?;

        for object in &objects {
            let name = format!("put+get {}", object.what);
            let put = dest.put_file(&object.key, &object.path, object.size).await;
            if self.expect_ok(&name, put).is_none() {
                continue;
            }
            // What a run does after every put: the key listed with exactly the bytes sent.
            let seen = crate::store::confirm::confirm(&mut dest, &object.key, object.size).await;
            self.record(
                &format!("put+list {}", object.what),
                seen.is_ok(),
                seen.err()
                    .unwrap_or_else(|| format!("listed with exactly {} bytes", object.size)),
            );
            let back = self.session.dir().join("got");
            let got = dest.get_to_file(&object.key, &back, object.size).await;
            if self.expect_ok(&name, got).is_none() {
                continue;
            }
            let (size, digest) = file_digest(&back)?;
            let _ = std::fs::remove_file(&back);
            if (size, &digest) == (object.size, &object.sha256) {
                self.record(&name, true, format!("{size} bytes back identical"));
            } else {
                self.record(
                    &name,
                    false,
                    format!(
                        "stored {} bytes (sha256 {}), got back {size} bytes (sha256 {digest})",
                        object.size, object.sha256
                    ),
                );
            }
        }

        let listed = dest.list(&prefix).await;
        if let Some(listed) = self.expect_ok("list", listed) {
            let mut wrong = Vec::new();
            for object in &objects {
                match listed.iter().find(|o| o.key == object.key) {
                    None => wrong.push(format!("{} missing", object.key)),
                    Some(o) if o.size != object.size => wrong.push(format!(
                        "{} listed with size {} instead of {}",
                        object.key, o.size, object.size
                    )),
                    Some(o) if o.modified.is_some_and(implausible_time) => wrong.push(format!(
                        "{} listed with an implausible time {:?}",
                        object.key, o.modified
                    )),
                    Some(_) => {}
                }
            }
            if let Some(stray) = listed.iter().find(|o| !o.key.starts_with(&prefix)) {
                wrong.push(format!("{} is outside the prefix", stray.key));
            }
            self.record(
                "list",
                wrong.is_empty(),
                if wrong.is_empty() {
                    format!(
                        "{} objects under {prefix} with the right sizes",
                        listed.len()
                    )
                } else {
                    wrong.join("; ")
                },
            );
        }

        self.check_leftovers(&mut dest, &prefix, &objects).await;

        let empty_prefix = format!("conformance-{}-empty/", unique());
        let empty = dest.list(&empty_prefix).await;
        if let Some(listed) = self.expect_ok("list empty prefix", empty) {
            self.record(
                "list empty prefix",
                listed.is_empty(),
                format!("{} objects under {empty_prefix}", listed.len()),
            );
        }

        let mut deleted = true;
        for object in &objects {
            let result = dest.delete(&object.key).await;
            deleted &= self.expect_ok("delete", result).is_some();
        }
        if deleted {
            let after = dest.list(&prefix).await;
            if let Some(after) = self.expect_ok("delete", after) {
                self.record(
                    "delete",
                    after.is_empty(),
                    format!("{} objects left under {prefix} after deleting", after.len()),
                );
            }
        }

        let missing = &objects[0].key;
        match dest.delete(missing).await {
            Ok(()) => self.record("delete missing", true, "ok, as the contract says"),
            Err(e) if e.is_not_found() => self.record("delete missing", true, "typed not-found"),
            Err(e) => self.record("delete missing", false, format!("must be ok: {e}")),
        }
        let back = self.session.dir().join("missing");
        match dest.get_to_file(missing, &back, 1 << 20).await {
            Err(e) if e.is_not_found() => self.record("get missing", true, "typed not-found"),
            Ok(()) => self.record("get missing", false, "succeeded for a deleted object"),
            Err(e) => self.record(
                "get missing",
                false,
                untyped(&e).unwrap_or_else(|| format!("must be not-found: {e}")),
            ),
        }
        drop(dest);
        self.check_cut_short_put(&prefix).await
    }

    /// The `leftovers` export (contract 0.1.2): it lists only what is under the prefix and
    /// never a stored object, and `remove-leftover` handed a stored object's name (as a
    /// confused or hostile caller might) leaves that object alone.
    async fn check_leftovers(&mut self, dest: &mut Instance, prefix: &str, objects: &[Sample]) {
        const NAME: &str = "leftovers";
        if !dest.has_leftovers() {
            self.record(
                NAME,
                true,
                "not exported (a contract before 0.1.2): runs sweep only artifacts without manifests",
            );
            return;
        }
        let listed = dest
            .list_leftovers(prefix)
            .await
            .map(Option::unwrap_or_default);
        let Some(listed) = self.expect_ok(NAME, listed) else {
            return;
        };
        let mut wrong = Vec::new();
        if let Some(stray) = listed.iter().find(|l| !l.key.starts_with(prefix)) {
            wrong.push(format!("{} is outside the prefix", stray.key));
        }
        if let Some(stored) = listed
            .iter()
            .find(|l| objects.iter().any(|o| o.key == l.key))
        {
            wrong.push(format!("{} is a stored object, not a leftover", stored.key));
        }
        self.record(
            NAME,
            wrong.is_empty(),
            if wrong.is_empty() {
                format!(
                    "{} under {prefix}, none of them a stored object",
                    listed.len()
                )
            } else {
                wrong.join("; ")
            },
        );

        const REMOVE: &str = "remove-leftover spares stored objects";
        let object = &objects[0];
        let bogus = crate::runtime::Leftover {
            key: object.key.clone(),
            id: object.key.clone(),
            size: object.size,
            modified: 0,
        };
        let _ = dest.remove_leftover(&bogus).await;
        let after = dest.list(prefix).await;
        if let Some(after) = self.expect_ok(REMOVE, after) {
            let kept = after
                .iter()
                .any(|o| o.key == object.key && o.size == object.size);
            self.record(
                REMOVE,
                kept,
                if kept {
                    format!("{} still stored after remove-leftover named it", object.key)
                } else {
                    format!(
                        "{} is gone: remove-leftover removed a stored object",
                        object.key
                    )
                },
            );
        }
        let cleaning = dest.self_cleaning().await;
        if let Some(cleaning) = self.expect_ok("self-cleaning", cleaning) {
            self.record("self-cleaning", true, format!("{cleaning:?}"));
        }
    }

    /// A `put` whose data fails part-way (past the first part or chunk of any backend that
    /// uploads in pieces) must fail, and leave nothing under its key: not a truncated
    /// object, not an object of the declared size. Checked with a fresh instance, as the
    /// next run would see the destination.
    async fn check_cut_short_put(&mut self, prefix: &str) -> Result<()> {
        const NAME: &str = "put cut short leaves nothing";
        let Some(mut dest) = self.open().await? else {
            return Ok(());
        };
        let key = format!("{prefix}cut-short.bin");
        let good_bytes = CUT_SHORT_GOOD_BYTES;
        let mut good = vec![0u8; good_bytes as usize];
        pseudo_random(&mut 0x9e37_79b9_7f4a_7c15u64, &mut good);
        let declared = good_bytes + (8 << 20);
        let outcome = dest.put_broken(&key, good, declared).await;
        drop(dest);
        let failed_typed = match outcome {
            Ok(()) => {
                self.record(
                    NAME,
                    false,
                    format!(
                        "put succeeded though its data failed after {good_bytes} of {declared} bytes"
                    ),
                );
                false
            }
            Err(e) => match untyped(&e) {
                // A trap is not the contract, but what matters most here is what is left.
                Some(why) => {
                    self.record(NAME, false, why);
                    false
                }
                None => true,
            },
        };
        let Some(mut dest) = self.open().await? else {
            return Ok(());
        };
        let listed = dest.list(prefix).await;
        let Some(listed) = self.expect_ok(NAME, listed) else {
            return Ok(());
        };
        // Nor a leftover: a put that fails cleans up after itself (only a killed one cannot).
        if let Ok(Some(left)) = dest.list_leftovers(prefix).await {
            let ours: Vec<String> = left
                .iter()
                .filter(|l| l.key == key)
                .map(|l| format!("{} ({} bytes)", l.id, l.size))
                .collect();
            self.record(
                "put cut short leaves no leftover",
                ours.is_empty(),
                if ours.is_empty() {
                    "nothing of it in list-leftovers".to_string()
                } else {
                    format!("list-leftovers still shows {}", ours.join(", "))
                },
            );
            for l in left.iter().filter(|l| l.key == key) {
                let _ = dest.remove_leftover(l).await;
            }
        }
        match listed.iter().find(|o| o.key == key) {
            Some(left) => {
                self.record(
                    NAME,
                    false,
                    format!("{key} exists after a failed put ({} bytes)", left.size),
                );
                let _ = dest.delete(&key).await;
            }
            None if failed_typed => self.record(
                NAME,
                true,
                format!("typed error after {good_bytes} of {declared} bytes, and no object"),
            ),
            None => {}
        }
        Ok(())
    }

    /// The objects of the round trip, written to scratch files: small, empty, large.
    fn sample_objects(&self, prefix: &str) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for (what, size) in [
            ("small", 1000 + 17),
            ("empty", 0),
            ("large", self.options.large_bytes),
        ] {
            let path = self.session.dir().join(what);
            let sha256 = write_pseudo_random(&path, size)?;
            out.push(Sample {
                what: format!("{what} ({})", crate::text::human_bytes(size)),
                key: format!("{prefix}{what}.bin"),
                path,
                size,
                sha256,
            });
        }
        Ok(out)
    }

    async fn source(&mut self) -> Result<()> {
        let Some(mut source) = self.open().await? else {
            return Ok(());
        };
        let (artifact, mut chunks) = sink::artifact_channel();
        // Drained and counted, never kept: a dump of any size runs in the same memory.
        let drained = tokio::spawn(async move {
            let mut bytes = 0u64;
            while let Some(chunk) = chunks.recv().await {
                bytes += chunk.len() as u64;
            }
            bytes
        });
        let dumped = source.dump(&artifact).await;
        drop(artifact);
        drop(source);
        let bytes = drained.await.context("draining the dump")?;
        let Some(info) = self.expect_ok("dump", dumped) else {
            return Ok(());
        };
        self.record(
            "dump",
            true,
            format!("stream ended cleanly after {bytes} bytes"),
        );
        // The rule a run applies to a kind before it names an object after it.
        let kind_ok = crate::store::objects::valid_kind(&info.kind);
        self.record(
            "dump kind",
            kind_ok,
            if kind_ok {
                format!("{:?}", info.kind)
            } else {
                format!(
                    "{:?}: a kind is 1-16 letters, digits or -",
                    crate::text::shorten(info.kind, 40)
                )
            },
        );
        Ok(())
    }

    async fn notifier(&mut self) -> Result<()> {
        let Some(mut notifier) = self.open().await? else {
            return Ok(());
        };
        for (outcome, success) in [("successful", true), ("failed", false)] {
            let name = format!("notify {outcome} run");
            let sample = sample_report(success);
            let details = crate::notify::run_details(&sample);
            let sent = notifier
                .notify(&crate::notify::run_report(&sample), Some(details))
                .await;
            if self.expect_ok(&name, sent).is_some() {
                self.record(
                    &name,
                    true,
                    format!("a sample {outcome} run's report was accepted"),
                );
            }
        }
        Ok(())
    }

    /// Run with no grants at all, the plugin must fail with a typed error (or need
    /// nothing) — never trap or hang.
    async fn without_grants(&mut self) {
        const NAME: &str = "no grants";
        let started = self.session.start(self.start(Grants::none())).await;
        let result = match started {
            Err(Failed::Instantiating(e)) => return self.record(NAME, false, format!("{e:#}")),
            Err(Failed::Configuring(e)) => Err(e),
            Ok(mut instance) => match self.plugin.world.role {
                Role::Source => {
                    let (artifact, mut chunks) = sink::artifact_channel();
                    let drained =
                        tokio::spawn(async move { while chunks.recv().await.is_some() {} });
                    let dumped = instance.dump(&artifact).await.map(|_| ());
                    drop(artifact);
                    drop(instance);
                    let _ = drained.await;
                    dumped
                }
                Role::Destination => instance.list("").await.map(|_| ()),
                Role::Notifier => {
                    let sample = sample_report(true);
                    let details = crate::notify::run_details(&sample);
                    instance
                        .notify(&crate::notify::run_report(&sample), Some(details))
                        .await
                }
            },
        };
        match result {
            Ok(()) => self.record(NAME, true, "works without grants (needs none)"),
            Err(e) => match untyped(&e) {
                Some(why) => self.record(NAME, false, why),
                None => self.record(NAME, true, format!("typed failure: {e}")),
            },
        }
    }
}

struct Sample {
    what: String,
    key: String,
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// Seconds since the epoch before 2000 or more than a day ahead: no real store says that.
/// Before 2000, or after now plus the clock skew retention allows: a listing dated in the
/// future would make retention and `status` believe in copies that are not there yet.
fn implausible_time(secs: u64) -> bool {
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let skew = crate::store::retention::CLOCK_SKEW.as_secs().max(0) as u64;
    secs < 946_684_800 || secs > now + skew
}

/// Writes `size` bytes of a fixed pseudo-random sequence (incompressible, so no backend
/// can shortcut it) to `path`, a MiB at a time; gives its sha256.
fn write_pseudo_random(path: &Path, size: u64) -> Result<String> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut hasher = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        pseudo_random(&mut state, &mut chunk[..n]);
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Fills `buf` from the xorshift64 sequence at `state`: fast, and good enough to defeat
/// compression and dedup.
fn pseudo_random(state: &mut u64, buf: &mut [u8]) {
    for word in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
}

/// Size and sha256 of a file, read a MiB at a time.
fn file_digest(path: &Path) -> Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// A run report: one source stored at one destination, and when `!success` a second
/// source that failed — the shapes a notifier must render.
fn sample_report(success: bool) -> crate::report::RunReport {
    use crate::report::{DestinationResult, RunReport, SourceResult};
    let finished = jiff::Timestamp::now();
    let source = |id: &str, ok: bool| SourceResult {
        id: id.into(),
        name: format!("{id} (conformance sample)"),
        ok,
        error: (!ok).then(|| "pg_dump: connection refused (transient)".into()),
        warnings: Vec::new(),
        bytes_in: if ok { 4096 } else { 0 },
        bytes_out: if ok { 1024 } else { 0 },
        duration: std::time::Duration::from_millis(1500),
        upload: std::time::Duration::from_millis(if ok { 700 } else { 0 }),
        object: ok.then(|| format!("{id}/2026-01-01/020000Z/{id}.tar.gz.gpg")),
    };
    RunReport {
        job: "conformance".into(),
        hostname: "conformance-kit".into(),
        run_id: unique(),
        started: finished - jiff::SignedDuration::from_secs(2),
        finished,
        sources: if success {
            vec![source("etc", true)]
        } else {
            vec![source("etc", true), source("db", false)]
        },
        destinations: vec![DestinationResult {
            destination_id: "disk".into(),
            source_id: "etc".into(),
            ok: true,
            object: Some("etc/2026-01-01/020000Z/etc.tar.gz.gpg".into()),
            error: None,
            retained: Some(3),
            deleted: vec!["etc/2025-12-29/020000Z/etc.tar.gz.gpg".into()],
            retention_error: None,
        }],
        notifications: Vec::new(),
        leftovers: Vec::new(),
    }
}
