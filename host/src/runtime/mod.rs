//! The plugin runtime: wasmtime configured for untrusted components.
//!
//! Every plugin instance gets its own [`Store`] holding nothing ambient: no environment,
//! arguments or stdio, no sockets, no filesystem beyond its grants' preopens. Limits are
//! per instance: a memory cap (a failed grow traps), and a wall-clock limit per call. The
//! engine's epoch ticks every few milliseconds and each store yields at every tick, so a
//! plugin spinning in pure wasm still returns control to tokio, where the per-call timeout
//! fires and drops it.

pub mod bindings;
mod embedded;
mod host_api;
mod http;
pub mod loader;
pub mod sink;
mod state;
mod stdio;
mod users;
pub mod world;

pub use loader::{LoadedPlugin, Origin};

use crate::config::{Entry, Limits, PluginSource, Role};
use crate::grants::Grants;
use crate::redact::Redactor;
use anyhow::{Context as _, Result, bail};
use bindings::{About, Context, DumpInfo, ObjectInfo, PluginError, WitGrants};
use sink::ArtifactSink;
use state::{PluginState, Policy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How often the epoch advances; also how often a running plugin yields.
const TICK: Duration = Duration::from_millis(5);
/// Limit for the calls that only describe a plugin (`describe`, `requested-grants`).
const DESCRIBE_LIMIT: Duration = Duration::from_secs(10);

pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: Option<loader::ComponentCache>,
}

/// Everything an instance needs besides its component.
pub struct InstanceSetup {
    /// How logs name it: `sources[0] "etc"`.
    pub label: String,
    pub grants: Grants,
    pub limits: Limits,
    pub tmpdir: PathBuf,
    pub redactor: Redactor,
}

/// A failed call into a plugin, in words an operator can act on.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The plugin returned an error.
    Plugin(PluginError),
    /// The plugin trapped (panic, memory limit, bad stream use) — it is no longer usable.
    Trap(String),
    /// The call exceeded its wall-clock limit and was stopped.
    Timeout { what: String, limit: Duration },
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
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Plugin(e) => f.write_str(&bindings::describe_error(e)),
            CallError::Trap(why) => write!(f, "plugin crashed: {why}"),
            CallError::Timeout { what, limit } => write!(
                f,
                "{what} did not finish within {}s (limits.call_seconds) and was stopped",
                limit.as_secs()
            ),
            CallError::Poisoned => f.write_str("plugin instance unusable after an earlier crash"),
            CallError::Host(why) => f.write_str(why),
        }
    }
}

impl Runtime {
    /// An engine for untrusted components, with its epoch ticker, and the linker that
    /// offers them WASI, `wasi:http` and our host services.
    pub fn new(cache_dir: Option<&Path>) -> Result<Runtime> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("starting the WebAssembly engine: {e}"))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .context("starting the epoch ticker")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        use bindings::source::backups::plugin as ours;
        ours::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::fs_metadata::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::process::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

        let cache = cache_dir.and_then(|d| loader::ComponentCache::open(&engine, d));
        Ok(Runtime {
            engine,
            linker,
            cache,
        })
    }

    /// The names of the plugins compiled into this binary.
    pub fn embedded_names() -> Vec<&'static str> {
        embedded::PLUGINS.iter().map(|(name, _)| *name).collect()
    }

    pub fn load_embedded(&self, name: &str) -> Result<LoadedPlugin> {
        let name = embedded::plugin_for(name);
        let Some((_, bytes)) = embedded::PLUGINS.iter().find(|(n, _)| *n == name) else {
            bail!(
                "no embedded plugin `{name}` (embedded: {})",
                Self::embedded_names().join(", ")
            );
        };
        loader::load(
            &self.engine,
            self.cache.as_ref(),
            Origin::Embedded(name.to_string()),
            bytes,
            None,
        )
    }

    pub fn load_file(&self, path: &Path, sha256: Option<&str>) -> Result<LoadedPlugin> {
        let bytes = loader::read_file(path)?;
        loader::load(
            &self.engine,
            self.cache.as_ref(),
            Origin::File(path.to_path_buf()),
            &bytes,
            sha256,
        )
    }

    /// The plugin serving a job entry, checked to implement the entry's role.
    pub fn load_entry(&self, entry: &Entry) -> Result<LoadedPlugin> {
        let plugin = match &entry.plugin {
            PluginSource::Embedded(kind) => self.load_embedded(kind).map_err(|_| {
                anyhow::anyhow!(
                    "{}: unknown type {kind:?}: no embedded plugin has that name (embedded: {}); \
                     give a .wasm with \"plugin\"",
                    entry.label(),
                    Self::embedded_names().join(", ")
                )
            })?,
            PluginSource::File { path, sha256 } => self
                .load_file(path, sha256.as_deref())
                .with_context(|| entry.label())?,
        };
        if plugin.world.role != entry.role {
            bail!(
                "{}: {} implements the {} world, but {} needs a {} plugin",
                entry.label(),
                plugin.origin,
                plugin.world.role,
                entry.role.list_key(),
                entry.role
            );
        }
        Ok(plugin)
    }

    fn store(&self, setup: &InstanceSetup) -> Result<(Store<PluginState>, stdio::StderrCapture)> {
        let grants = &setup.grants;
        for line in grants.describe() {
            tracing::debug!(plugin = %setup.label, "grant {line} ({})", grants.origin);
        }
        let mut wasi = WasiCtxBuilder::new();
        let stderr =
            stdio::StderrCapture::new(&setup.label, setup.redactor.clone(), setup.limits.log_bytes);
        wasi.stderr(stderr.clone());
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        for (list, perms) in [
            (&grants.read, FsPerms::ReadOnly),
            (&grants.write, FsPerms::ReadWrite),
        ] {
            for g in list {
                let guest = g.dir.to_str().with_context(|| {
                    format!(
                        "{}: grant {} is not valid UTF-8",
                        setup.label,
                        g.dir.display()
                    )
                })?;
                wasi.preopened_dir(&g.dir, guest, perms).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: cannot open granted path {}: {e}",
                        setup.label,
                        g.dir.display()
                    )
                })?;
            }
        }
        let net = !grants.net.is_empty();
        wasi.allow_tcp(net);
        wasi.allow_udp(false);
        wasi.allow_ip_name_lookup(net);
        let check_grants = Arc::new(grants.clone());
        let check_label: Arc<str> = setup.label.as_str().into();
        let net_denials = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let check_denials = net_denials.clone();
        wasi.socket_addr_check(move |addr, usage| {
            let grants = check_grants.clone();
            let label = check_label.clone();
            let denials = check_denials.clone();
            Box::pin(async move {
                // A TCP connect first binds to an ephemeral port on the unspecified
                // address; that bind is what every outgoing connection needs. Every
                // connect is still checked against the grants.
                if matches!(usage, wasmtime_wasi::sockets::SocketAddrUse::TcpBind)
                    && addr.ip().is_unspecified()
                    && addr.port() == 0
                    && !grants.net.is_empty()
                {
                    return true;
                }
                let allowed = socket_allowed(&grants, &label, addr).await;
                if !allowed {
                    denials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                allowed
            })
        });

        let policy = Arc::new(Policy {
            label: setup.label.clone(),
            grants: setup.grants.clone(),
            redactor: setup.redactor.clone(),
            tmpdir: setup.tmpdir.clone(),
            log_budget: setup.limits.log_bytes,
            net_denials,
        });
        let limits = StoreLimitsBuilder::new()
            .memory_size(setup.limits.memory_bytes.try_into().unwrap_or(usize::MAX))
            .instances(64)
            .tables(64)
            .memories(16)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState {
            wasi: wasi.build(),
            table: wasmtime::component::ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::GrantedHttp {
                policy: policy.clone(),
            },
            limits,
            log_left: setup.limits.log_bytes,
            log_truncated: false,
            policy,
            sink: None,
            private_files: Vec::new(),
            roots: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok((store, stderr))
    }

    /// A live instance of `plugin`, sandboxed by `setup`.
    pub async fn instantiate(
        &self,
        plugin: &LoadedPlugin,
        setup: InstanceSetup,
    ) -> Result<Instance> {
        let (mut store, stderr) = self.store(&setup)?;
        let component = &plugin.component;
        let linker = &self.linker;
        let started = async {
            Ok::<_, wasmtime::Error>(match plugin.world.role {
                Role::Source => Bindings::Source(
                    bindings::source::Source::instantiate_async(&mut store, component, linker)
                        .await?,
                ),
                Role::Destination => Bindings::Destination(
                    bindings::destination::Destination::instantiate_async(
                        &mut store, component, linker,
                    )
                    .await?,
                ),
                Role::Notifier => Bindings::Notifier(
                    bindings::notifier::Notifier::instantiate_async(&mut store, component, linker)
                        .await?,
                ),
            })
        };
        let bindings = match tokio::time::timeout(DESCRIBE_LIMIT, started).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => bail!(
                "{}: {}: cannot instantiate: {e:#}",
                setup.label,
                plugin.origin
            ),
            Err(_) => bail!(
                "{}: {}: instantiation did not finish in time",
                setup.label,
                plugin.origin
            ),
        };
        Ok(Instance {
            store,
            bindings,
            label: setup.label,
            call_limit: Duration::from_secs(setup.limits.call_seconds),
            memory_bytes: setup.limits.memory_bytes,
            stderr,
            poisoned: false,
        })
    }

    /// An instance with no grants at all: enough to ask a plugin what it is and needs.
    pub async fn instantiate_bare(&self, plugin: &LoadedPlugin, label: &str) -> Result<Instance> {
        self.instantiate(
            plugin,
            InstanceSetup {
                label: label.to_string(),
                grants: Grants::none(),
                limits: Limits::default(),
                tmpdir: std::env::temp_dir(),
                redactor: Redactor::new(),
            },
        )
        .await
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Sockets: only to peers a `net` grant names. Hostname grants are resolved here and
/// compared by address; `*.suffix` grants cannot be checked by address and are for HTTP.
async fn socket_allowed(grants: &Grants, label: &str, addr: std::net::SocketAddr) -> bool {
    for rule in &grants.net {
        if rule.is_wildcard() || rule.matches(&addr.ip().to_string(), addr.port()) {
            return true;
        }
    }
    for rule in &grants.net {
        if let Some((host, port)) = rule.exact_host_port(addr.port())
            && let Ok(mut addrs) = tokio::net::lookup_host((host.as_str(), port)).await
            && addrs.any(|a| a == addr)
        {
            return true;
        }
    }
    tracing::warn!(
        plugin = label,
        capability = "net",
        wanted = %addr,
        "denied: no net grant matches socket address {addr}"
    );
    false
}

enum Bindings {
    Source(bindings::source::Source),
    Destination(bindings::destination::Destination),
    Notifier(bindings::notifier::Notifier),
}

/// One sandboxed plugin instance and its store.
pub struct Instance {
    store: Store<PluginState>,
    bindings: Bindings,
    label: String,
    call_limit: Duration,
    memory_bytes: u64,
    stderr: stdio::StderrCapture,
    poisoned: bool,
}

/// Calls the `plugin` interface, whichever world's bindings the instance has.
macro_rules! plugin_call {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match &$self.bindings {
            Bindings::Source(b) => b.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
            Bindings::Destination(b) => b.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
            Bindings::Notifier(b) => b.backups_plugin_plugin().$method(&mut $self.store $(, $arg)*).await,
        }
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
        let outcome = tokio::time::timeout(limit, call(self)).await;
        let denied = denials.load(std::sync::atomic::Ordering::Relaxed) > denied_before;
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if denied => Err(CallError::Plugin(PluginError {
                kind: bindings::ErrorKind::Denied,
                message: format!(
                    "{} — the host refused a network request this call made (no net grant; see the log)",
                    e.message
                ),
            })),
            Ok(Ok(Err(e))) => Err(CallError::Plugin(PluginError {
                kind: e.kind,
                message: e.message,
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

    pub async fn describe(&mut self) -> Result<About, CallError> {
        self.guarded("describe", DESCRIBE_LIMIT, async |s| {
            plugin_call!(s, call_describe()).map(Ok)
        })
        .await
    }

    pub async fn requested_grants(&mut self, config: &str) -> Result<WitGrants, CallError> {
        self.guarded("requested-grants", DESCRIBE_LIMIT, async |s| {
            plugin_call!(s, call_requested_grants(config))
        })
        .await
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
                b.backups_plugin_dump()
                    .call_dump(&mut s.store, borrowed)
                    .await
            })
            .await;
        // Drop our ends so the pipeline sees the end of the stream.
        self.store.data_mut().sink = None;
        let _ = self.store.data_mut().table.delete(out);
        result
    }

    fn destination(&self) -> Result<&bindings::destination::Destination, CallError> {
        match &self.bindings {
            Bindings::Destination(b) => Ok(b),
            _ => Err(CallError::Host("not a destination plugin".into())),
        }
    }

    /// Destinations: stores the file at `path` under `key`.
    pub async fn put_file(&mut self, key: &str, path: &Path, size: u64) -> Result<(), CallError> {
        self.destination()?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| CallError::Host(format!("{}: {e}", path.display())))?;
        let stream: DynInputStream = Box::new(wasmtime_wasi::p2::pipe::AsyncReadStream::new(file));
        self.put_stream(key, stream, size).await
    }

    /// Destinations: stores `bytes` under `key` (manifests).
    pub async fn put_bytes(&mut self, key: &str, bytes: Vec<u8>) -> Result<(), CallError> {
        self.destination()?;
        let size = bytes.len() as u64;
        let stream: DynInputStream = Box::new(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(bytes));
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
        let limit = self.call_limit;
        let result = self
            .guarded(&format!("put {key}"), limit, async |s| {
                let Bindings::Destination(b) = &s.bindings else {
                    unreachable!()
                };
                b.backups_plugin_storage()
                    .call_put(&mut s.store, key, borrowed, size)
                    .await
            })
            .await;
        let _ = self.store.data_mut().table.delete(input);
        result
    }

    /// Destinations: writes the object `key` into the file at `path`.
    pub async fn get_to_file(&mut self, key: &str, path: &Path) -> Result<(), CallError> {
        self.destination()?;
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| CallError::Host(format!("{}: {e}", path.display())))?;
        let stream: DynOutputStream = Box::new(wasmtime_wasi::p2::pipe::AsyncWriteStream::new(
            sink::CHUNK_BYTES,
            file,
        ));
        let out = self
            .store
            .data_mut()
            .table
            .push(stream)
            .map_err(|e| CallError::Host(format!("stream table: {e}")))?;
        let borrowed = Resource::<DynOutputStream>::new_borrow(out.rep());
        let limit = self.call_limit;
        let result = self
            .guarded(&format!("get {key}"), limit, async |s| {
                let Bindings::Destination(b) = &s.bindings else {
                    unreachable!()
                };
                b.backups_plugin_storage()
                    .call_get(&mut s.store, key, borrowed)
                    .await
            })
            .await;
        let _ = self.store.data_mut().table.delete(out);
        result
    }

    pub async fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>, CallError> {
        self.destination()?;
        let limit = self.call_limit;
        self.guarded(&format!("list {prefix}"), limit, async |s| {
            let Bindings::Destination(b) = &s.bindings else {
                unreachable!()
            };
            b.backups_plugin_storage()
                .call_list(&mut s.store, prefix)
                .await
        })
        .await
    }

    pub async fn deletion_rules(
        &mut self,
    ) -> Result<
        Vec<bindings::destination::exports::backups::plugin::storage::DeletionRule>,
        CallError,
    > {
        self.destination()?;
        let limit = self.call_limit;
        self.guarded("deletion-rules", limit, async |s| {
            let Bindings::Destination(b) = &s.bindings else {
                unreachable!()
            };
            b.backups_plugin_storage()
                .call_deletion_rules(&mut s.store)
                .await
        })
        .await
    }

    pub async fn delete(&mut self, key: &str) -> Result<(), CallError> {
        self.destination()?;
        let limit = self.call_limit;
        self.guarded(&format!("delete {key}"), limit, async |s| {
            let Bindings::Destination(b) = &s.bindings else {
                unreachable!()
            };
            b.backups_plugin_storage()
                .call_delete(&mut s.store, key)
                .await
        })
        .await
    }

    pub async fn notify(
        &mut self,
        report: &bindings::report_types::Report,
    ) -> Result<(), CallError> {
        let Bindings::Notifier(_) = &self.bindings else {
            return Err(CallError::Host(
                "notify called on a plugin that is not a notifier".into(),
            ));
        };
        let limit = self.call_limit;
        self.guarded("notify", limit, async |s| {
            let Bindings::Notifier(b) = &s.bindings else {
                unreachable!()
            };
            b.backups_plugin_notification()
                .call_notify(&mut s.store, report)
                .await
        })
        .await
    }
}
