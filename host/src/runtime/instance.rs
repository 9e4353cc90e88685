//! One live plugin instance and the calls into it. Every call runs under the instance's
//! wall-clock limit and comes back as a value or a [`CallError`] an operator can act on;
//! a trap or a timeout poisons the instance.

use super::backstop::Backstop;
use super::bindings::{self, About, Context, DumpInfo, IncrementalInfo, PluginError, WitGrants};
use super::sink::{self, ArtifactSink};
use super::state::PluginState;
use super::stdio;
use super::storage::{CleanupRule, DeletionRule, Leftover, ObjectInfo};
use crate::grants::GrantSpec;
use std::path::Path;
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// The most that start-up and the calls that only describe a plugin (`describe`,
/// `requested-grants`) may take, however long `limits.call_seconds` allows: `check` and
/// planning must not wait hours on a plugin that never answers what it is.
pub(super) const DESCRIBE_CAP: Duration = Duration::from_secs(60);

/// A failed call into a plugin, in words an operator can act on.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The plugin returned an error.
    Plugin(PluginError),
    /// The plugin trapped (panic, memory limit, bad stream use) — it is no longer usable.
    Trap(String),
    /// The call exceeded its wall-clock limit (`total`: the instance's time for all its
    /// calls ran out first) and was stopped.
    Timeout {
        what: String,
        limit: Duration,
        total: bool,
        /// The call was stopped at [`DESCRIBE_CAP`], below `limits.call_seconds`.
        capped: bool,
    },
    /// The instance failed earlier and cannot be called again.
    Poisoned,
    /// The host could not set up the call.
    Host(String),
}

impl CallError {
    /// Worth trying again (the host retries only these).
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Plugin(e) if e.kind == bindings::ErrorKind::Transient)
    }

    /// The plugin said the object (or path, or database) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::Plugin(e) if e.kind == bindings::ErrorKind::NotFound)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Plugin(e) => f.write_str(&bindings::describe_error(e)),
            CallError::Trap(why) => write!(f, "plugin crashed: {why}"),
            CallError::Timeout {
                what,
                limit,
                total: false,
                capped: true,
            } => write!(
                f,
                "{what} did not finish within {}s (the cap on describing a plugin, below \
                 limits.call_seconds) and was stopped",
                limit.as_secs()
            ),
            CallError::Timeout {
                what,
                limit,
                total: false,
                ..
            } => write!(
                f,
                "{what} did not finish within {}s (limits.call_seconds) and was stopped",
                limit.as_secs()
            ),
            CallError::Timeout { what, .. } => write!(
                f,
                "{what} was stopped: the plugin used up its time for all calls \
                 (limits.total_seconds)"
            ),
            CallError::Poisoned => f.write_str("plugin instance unusable after an earlier crash"),
            CallError::Host(why) => f.write_str(why),
        }
    }
}

pub(super) enum Bindings {
    Source(Box<SourceBindings>),
    Destination(Box<DestinationBindings>),
    Notifier(bindings::notifier::Notifier),
}

pub(super) struct SourceBindings {
    pub(super) dump: bindings::source::Source,
    /// `None` for a source that cannot archive incrementally (most; every one before 0.1.3).
    pub(super) incremental: Option<bindings::incremental::SourceIncremental>,
}

pub(super) struct DestinationBindings {
    pub(super) storage: bindings::destination::DestinationBase,
    /// `None` for a destination built against a contract before 0.1.2.
    pub(super) leftovers: Option<bindings::leftovers::DestinationLeftovers>,
}

/// One sandboxed plugin instance and its store.
pub struct Instance {
    pub(super) store: Store<PluginState>,
    pub(super) bindings: Bindings,
    pub(super) label: String,
    pub(super) call_limit: Duration,
    /// What is left of `limits.total_seconds` for this instance.
    pub(super) time_left: Duration,
    pub(super) memory_bytes: u64,
    pub(super) resources: u64,
    pub(super) stderr: stdio::StderrCapture,
    pub(super) poisoned: bool,
}

/// Calls the `plugin` interface, whichever world's bindings the instance has.
macro_rules! plugin_call {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match &$self.bindings {
            Bindings::Source(b) => b.dump.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
            Bindings::Destination(b) => b.storage.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
            Bindings::Notifier(b) => b.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
        }
    };
}

/// Calls the `storage` interface of a destination under the instance's call limit.
macro_rules! storage_call {
    ($self:ident, $what:expr, $method:ident ( $($arg:expr),* )) => {{
        $self.destination()?;
        let limit = $self.call_limit;
        $self
            .guarded($what, limit, async |s| {
                let Bindings::Destination(b) = &s.bindings else {
                    unreachable!("checked by destination()")
                };
                b.storage.backups_plugin_storage().$method(&mut s.store $(, $arg)*).await
            })
            .await
    }};
}

/// Calls the `leftovers` interface of a destination that exports it (callers check) under
/// `limit`.
macro_rules! leftovers_call {
    ($self:ident, $what:expr, $limit:expr, $method:ident ( $($arg:expr),* )) => {
        $self
            .guarded($what, $limit, async |s| {
                let Bindings::Destination(b) = &s.bindings else {
                    unreachable!("checked by destination()")
                };
                let leftovers = b.leftovers.as_ref().expect("checked by the caller");
                leftovers.backups_plugin_leftovers().$method(&mut s.store $(, $arg)*).await
            })
            .await
    };
}

impl Instance {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs one call under the instance's limit and turns every way it can fail into a
    /// [`CallError`]. A trap or timeout poisons the instance.
    async fn guarded<T>(
        &mut self,
        what: &str,
        limit: Duration,
        call: impl AsyncFnOnce(&mut Self) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, CallError> {
        if self.poisoned {
            return Err(CallError::Poisoned);
        }
        tracing::debug!(plugin = %self.label, "call {what}");
        let denials = self.store.data().policy.net_denials.clone();
        let denied_before = denials.load(std::sync::atomic::Ordering::Relaxed);
        // The call's own limit, or what is left of the instance's total, if less.
        let total = self.time_left < limit;
        let capped = limit < self.call_limit && !total;
        let limit = limit.min(self.time_left);
        let started = std::time::Instant::now();
        let backstop = Backstop::for_call(&self.label, what, limit);
        let outcome = tokio::time::timeout(limit, call(self)).await;
        drop(backstop);
        self.time_left = self.time_left.saturating_sub(started.elapsed());
        let denied = denials.load(std::sync::atomic::Ordering::Relaxed) > denied_before;
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if denied => Err(CallError::Plugin(PluginError {
                kind: bindings::ErrorKind::Denied,
                message: format!(
                    "{} — the host refused a network request this call made (no net grant; see the log)",
                    bounded(e.message)
                ),
            })),
            Ok(Ok(Err(e))) => Err(CallError::Plugin(PluginError {
                kind: e.kind,
                message: bounded(e.message),
            })),
            Ok(Err(trap)) => {
                self.poisoned = true;
                Err(CallError::Trap(self.explain_trap(&trap)))
            }
            Err(_) => {
                self.poisoned = true;
                Err(CallError::Timeout {
                    what: what.to_string(),
                    limit,
                    total,
                    capped,
                })
            }
        }
    }

    fn explain_trap(&self, trap: &wasmtime::Error) -> String {
        let text = format!("{trap:#}");
        let mut why = if text.contains("forcing trap when growing memory")
            || text.contains("forcing a memory growth failure")
        {
            format!(
                "exceeded its memory limit of {} MiB (limits.memory_mib)",
                self.memory_bytes >> 20
            )
        } else if text.contains("resource table has no free keys") {
            format!(
                "held more than {} handles at once (limits.resources)",
                self.resources
            )
        } else if let Some(code) = trap.downcast_ref::<wasmtime::Trap>() {
            code.to_string()
        } else {
            trap.root_cause().to_string()
        };
        let stderr = self.stderr.tail();
        if !stderr.is_empty() {
            let last: Vec<&str> = stderr.lines().rev().take(3).collect();
            let last: Vec<&str> = last.into_iter().rev().collect();
            why.push_str(&format!("; its stderr ended: {}", last.join(" | ")));
        }
        why
    }

    /// What the plugin says it is, cut to sizes the host prints (names, summary, key lists).
    pub async fn describe(&mut self) -> Result<About, CallError> {
        let limit = self.call_limit.min(DESCRIBE_CAP);
        let mut about = self
            .guarded("describe", limit, async |s| {
                plugin_call!(s, call_describe()).map(Ok)
            })
            .await?;
        about.name = crate::text::for_terminal(&about.name, 64);
        about.version = crate::text::for_terminal(&about.version, 64);
        about.summary = crate::text::for_terminal(&about.summary, 500);
        for keys in [&mut about.config_keys, &mut about.secret_keys] {
            keys.truncate(256);
            for k in keys.iter_mut() {
                *k = crate::text::for_terminal(k, 128);
            }
        }
        Ok(about)
    }

    /// What the plugin asks for, to be resolved like a job entry's `grants` block.
    pub async fn requested_grants(&mut self, config: &str) -> Result<GrantSpec, CallError> {
        let limit = self.call_limit.min(DESCRIBE_CAP);
        let asked: WitGrants = self
            .guarded("requested-grants", limit, async |s| {
                plugin_call!(s, call_requested_grants(config))
            })
            .await?;
        Ok(GrantSpec {
            read: asked.read,
            write: asked.write,
            net: asked.net,
            run: asked.run,
            env: asked.env,
        })
    }

    pub async fn configure(&mut self, ctx: &Context, config: &str) -> Result<(), CallError> {
        let limit = self.call_limit;
        self.guarded("configure", limit, async |s| {
            plugin_call!(s, call_configure(ctx, config))
        })
        .await
    }

    /// Sources: runs the dump, with everything written (or spliced) going to `sink`.
    pub async fn dump(&mut self, sink: &ArtifactSink) -> Result<DumpInfo, CallError> {
        let Bindings::Source(_) = &self.bindings else {
            return Err(CallError::Host(
                "dump called on a plugin that is not a source".into(),
            ));
        };
        let stream: DynOutputStream = Box::new(sink.stream());
        let out = self
            .store
            .data_mut()
            .table
            .push(stream)
            .map_err(|e| CallError::Host(format!("stream table: {e}")))?;
        self.store.data_mut().sink = Some(sink.clone());
        let borrowed = Resource::<DynOutputStream>::new_borrow(out.rep());
        let limit = self.call_limit;
        let result = self
            .guarded("dump", limit, async |s| {
                let Bindings::Source(b) = &s.bindings else {
                    unreachable!()
                };
                b.dump
                    .backups_plugin_dump()
                    .call_dump(&mut s.store, borrowed)
                    .await
            })
            .await;
        // Drop our ends so the pipeline sees the end of the stream.
        self.store.data_mut().sink = None;
        let _ = self.store.data_mut().table.delete(out);
        result
    }

    /// Sources: whether the plugin can archive incrementally (the `incremental` export).
    pub fn has_incremental(&self) -> bool {
        matches!(&self.bindings, Bindings::Source(b) if b.incremental.is_some())
    }

    /// Sources: an incremental dump into `sink`, compared against the index in the file
    /// `base` (none: a full), writing this run's index to the file `index` (created new,
    /// at most `index_most` bytes: a plugin cannot fill the host's disk through it).
    pub async fn dump_incremental(
        &mut self,
        sink: &ArtifactSink,
        base: Option<&Path>,
        index: &Path,
        index_most: u64,
    ) -> Result<IncrementalInfo, CallError> {
        if !self.has_incremental() {
            return Err(CallError::Host(
                "this source cannot archive incrementally (no `incremental` export)".into(),
            ));
        }
        let host =
            |what: &Path, e: std::io::Error| CallError::Host(format!("{}: {e}", what.display()));
        let base_stream: Option<DynInputStream> = match base {
            Some(path) => Some(Box::new(super::file_input::FileInput::new(
                std::fs::File::open(path).map_err(|e| host(path, e))?,
            ))),
            None => None,
        };
        let index_file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(index)
            .await
            .map_err(|e| host(index, e))?;
        let (capped, overflowed) = super::capped_write::CappedWrite::new(index_file, index_most);
        let index_stream: DynOutputStream = Box::new(
            wasmtime_wasi::p2::pipe::AsyncWriteStream::new(sink::CHUNK_BYTES, capped),
        );
        let table_error = |e: wasmtime::component::ResourceTableError| {
            CallError::Host(format!("stream table: {e}"))
        };
        let table = &mut self.store.data_mut().table;
        let out = table
            .push(Box::new(sink.stream()) as DynOutputStream)
            .map_err(table_error)?;
        let index_out = table.push(index_stream).map_err(table_error)?;
        let base_in = base_stream
            .map(|s| table.push(s))
            .transpose()
            .map_err(table_error)?;
        self.store.data_mut().sink = Some(sink.clone());
        let borrowed = Resource::<DynOutputStream>::new_borrow(out.rep());
        let index_borrowed = Resource::<DynOutputStream>::new_borrow(index_out.rep());
        let base_borrowed = base_in
            .as_ref()
            .map(|b| Resource::<DynInputStream>::new_borrow(b.rep()));
        let limit = self.call_limit;
        let result = self
            .guarded("dump-incremental", limit, async |s| {
                let Bindings::Source(b) = &s.bindings else {
                    unreachable!()
                };
                let incremental = b.incremental.as_ref().expect("checked above");
                incremental
                    .backups_plugin_incremental()
                    .call_dump_incremental(&mut s.store, borrowed, base_borrowed, index_borrowed)
                    .await
            })
            .await;
        self.store.data_mut().sink = None;
        let table = &mut self.store.data_mut().table;
        let _ = table.delete(out);
        let _ = table.delete(index_out);
        if let Some(b) = base_in {
            let _ = table.delete(b);
        }
        if overflowed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CallError::Host(format!(
                "the plugin's index grew past {} (a plugin's index is a few bytes a file)",
                crate::text::human_bytes(index_most)
            )));
        }
        result
    }

    fn destination(&self) -> Result<&DestinationBindings, CallError> {
        match &self.bindings {
            Bindings::Destination(b) => Ok(b),
            _ => Err(CallError::Host("not a destination plugin".into())),
        }
    }

    /// Destinations: stores the file at `path` under `key`.
    pub async fn put_file(&mut self, key: &str, path: &Path, size: u64) -> Result<(), CallError> {
        self.destination()?;
        let file = std::fs::File::open(path)
            .map_err(|e| CallError::Host(format!("{}: {e}", path.display())))?;
        let stream: DynInputStream = Box::new(super::file_input::FileInput::new(file));
        self.put_stream(key, stream, size).await
    }

    /// Destinations: stores `bytes` under `key` (manifests).
    pub async fn put_bytes(&mut self, key: &str, bytes: Vec<u8>) -> Result<(), CallError> {
        self.destination()?;
        let size = bytes.len() as u64;
        let stream: DynInputStream = Box::new(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(bytes));
        self.put_stream(key, stream, size).await
    }

    /// Destinations: a `put` of `size` bytes whose data stream fails after `good`: for the
    /// conformance kit's check that an upload cut short leaves nothing behind.
    pub async fn put_broken(
        &mut self,
        key: &str,
        good: Vec<u8>,
        size: u64,
    ) -> Result<(), CallError> {
        self.destination()?;
        let stream: DynInputStream = Box::new(super::broken_input::BrokenInput::new(good));
        self.put_stream(key, stream, size).await
    }

    async fn put_stream(
        &mut self,
        key: &str,
        stream: DynInputStream,
        size: u64,
    ) -> Result<(), CallError> {
        let input = self
            .store
            .data_mut()
            .table
            .push(stream)
            .map_err(|e| CallError::Host(format!("stream table: {e}")))?;
        let borrowed = Resource::<DynInputStream>::new_borrow(input.rep());
        let result = storage_call!(self, &format!("put {key}"), call_put(key, borrowed, size));
        let _ = self.store.data_mut().table.delete(input);
        result
    }

    /// Destinations: writes the object `key` into the file at `path`. A destination that
    /// sends more than `most` bytes (what the manifest or listing said the object holds)
    /// sees its writes fail: it cannot fill the host's disk by serving a bigger object.
    pub async fn get_to_file(
        &mut self,
        key: &str,
        path: &Path,
        most: u64,
    ) -> Result<(), CallError> {
        self.destination()?;
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| CallError::Host(format!("{}: {e}", path.display())))?;
        let (capped, overflowed) = super::capped_write::CappedWrite::new(file, most);
        let stream: DynOutputStream = Box::new(wasmtime_wasi::p2::pipe::AsyncWriteStream::new(
            sink::CHUNK_BYTES,
            capped,
        ));
        let out = self
            .store
            .data_mut()
            .table
            .push(stream)
            .map_err(|e| CallError::Host(format!("stream table: {e}")))?;
        let borrowed = Resource::<DynOutputStream>::new_borrow(out.rep());
        let result = storage_call!(self, &format!("get {key}"), call_get(key, borrowed));
        let _ = self.store.data_mut().table.delete(out);
        if overflowed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CallError::Host(format!(
                "get {}: the destination sent more than the {most} bytes expected{}",
                crate::text::for_terminal(key, 300),
                result.err().map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
        result
    }

    /// Destinations: the object `key`, read into memory, at most `most` bytes (manifests).
    pub async fn get_bytes(
        &mut self,
        key: &str,
        scratch: &Path,
        most: u64,
    ) -> Result<Vec<u8>, CallError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = scratch.join(format!(".get-{}-{n}", std::process::id()));
        let got = self.get_to_file(key, &path, most).await;
        let bytes = got.and_then(|()| {
            std::fs::read(&path).map_err(|e| CallError::Host(format!("{}: {e}", path.display())))
        });
        let _ = std::fs::remove_file(&path);
        bytes
    }

    pub async fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>, CallError> {
        let listed = storage_call!(self, &format!("list {prefix}"), call_list(prefix))?;
        Ok(listed.into_iter().map(ObjectInfo::from).collect())
    }

    pub async fn deletion_rules(&mut self) -> Result<Vec<DeletionRule>, CallError> {
        let rules = storage_call!(self, "deletion-rules", call_deletion_rules())?;
        Ok(rules.into_iter().map(DeletionRule::from).collect())
    }

    /// Whether this destination can report the leftovers of killed `put`s (contract 0.1.2).
    pub fn has_leftovers(&self) -> bool {
        matches!(&self.bindings, Bindings::Destination(b) if b.leftovers.is_some())
    }

    /// Destinations: what killed `put`s left under `prefix`; `Ok(None)` for a destination
    /// built against a contract that cannot say.
    pub async fn list_leftovers(
        &mut self,
        prefix: &str,
    ) -> Result<Option<Vec<Leftover>>, CallError> {
        if self.destination()?.leftovers.is_none() {
            return Ok(None);
        }
        let limit = self.call_limit;
        let listed = leftovers_call!(
            self,
            &format!("list-leftovers {prefix}"),
            limit,
            call_list_leftovers(prefix)
        )?;
        Ok(Some(listed.into_iter().map(Leftover::from).collect()))
    }

    /// Destinations: removes one leftover `list_leftovers` returned.
    pub async fn remove_leftover(&mut self, leftover: &Leftover) -> Result<(), CallError> {
        if self.destination()?.leftovers.is_none() {
            return Err(CallError::Host(
                "this destination's contract (before 0.1.2) has no leftovers".into(),
            ));
        }
        let limit = self.call_limit;
        let what = format!("remove-leftover {}", leftover.id);
        let leftover = bindings::Leftover::from(leftover);
        leftovers_call!(self, &what, limit, call_remove_leftover(&leftover))
    }

    /// Destinations: whether the backend removes leftovers by itself; `Ok(None)` before 0.1.2.
    pub async fn self_cleaning(&mut self) -> Result<Option<CleanupRule>, CallError> {
        if self.destination()?.leftovers.is_none() {
            return Ok(None);
        }
        let limit = self.call_limit.min(DESCRIBE_CAP);
        let rule = leftovers_call!(self, "self-cleaning", limit, call_self_cleaning())?;
        Ok(Some(CleanupRule::from(rule)))
    }

    pub async fn delete(&mut self, key: &str) -> Result<(), CallError> {
        storage_call!(self, &format!("delete {key}"), call_delete(key))
    }

    /// Notifiers: sends `report`; during the call, `report-details.current` answers
    /// `details`.
    pub async fn notify(
        &mut self,
        report: &bindings::report_types::Report,
        details: Option<bindings::ReportDetails>,
    ) -> Result<(), CallError> {
        let Bindings::Notifier(_) = &self.bindings else {
            return Err(CallError::Host(
                "notify called on a plugin that is not a notifier".into(),
            ));
        };
        let limit = self.call_limit;
        self.store.data_mut().report_details = details;
        let sent = self
            .guarded("notify", limit, async |s| {
                let Bindings::Notifier(b) = &s.bindings else {
                    unreachable!()
                };
                b.backups_plugin_notification()
                    .call_notify(&mut s.store, report)
                    .await
            })
            .await;
        self.store.data_mut().report_details = None;
        sent
    }
}

/// An error message from a plugin goes into logs, reports and notifications: cut it to a
/// size a person reads, its control characters made visible.
fn bounded(message: String) -> String {
    crate::text::for_terminal(&message, 2000)
}
