//! The plugin runtime: wasmtime configured for untrusted components. This file builds the
//! engine, the linker and each instance's sandboxed store; [`instance`] makes the calls.
//!
//! Every plugin instance gets its own [`Store`] holding nothing ambient: no environment,
//! arguments or stdio, no sockets, no filesystem beyond its grants' preopens. Limits are
//! per instance: a memory cap (a failed grow traps), and a wall-clock limit per call. The
//! engine's epoch ticks every few milliseconds and each store yields at every tick, so a
//! plugin spinning in pure wasm still returns control to tokio, where the per-call timeout
//! fires and drops it.

mod backstop;
pub mod bindings;
mod broken_input;
mod capped_write;
mod embedded;
mod file_grant;
mod file_input;
mod files;
mod fs_guard;
mod host_api;
mod http;
mod http_send;
mod instance;
pub mod loader;
mod name_lookup;
mod net;
mod policy;
mod report_details;
pub mod sink;
mod state;
mod stdio;
mod storage;
mod tls;
pub mod users;
pub mod world;

pub use fs_guard::protect_host_dir;
pub use instance::{CallError, Instance};
pub use loader::{LoadedPlugin, Origin};
pub use net::is_internal;
pub use storage::{CleanupRule, DeletionRule, Leftover, ObjectInfo};

use crate::config::{Entry, Limits, PluginSource, Role};
use crate::grants::Grants;
use crate::redact::Redactor;
use crate::trust::TrustPolicy;
use anyhow::{Context as _, Result, bail};
use instance::{Bindings, DESCRIBE_CAP, DestinationBindings, SourceBindings};
use policy::Policy;
use state::PluginState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How often the epoch advances; also how often a running plugin yields.
const TICK: Duration = Duration::from_millis(5);

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

impl Runtime {
    /// An engine for untrusted components, with its epoch ticker, and the linker that
    /// offers them WASI, `wasi:http`, `wasi:tls` and our host services.
    pub fn new(cache_dir: Option<&Path>) -> Result<Runtime> {
        raise_open_file_limit();
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
        // Name lookups only for names the plugin's grants name (see name_lookup.rs).
        name_lookup::add_to_linker(&mut linker)?;
        // Opens checked against what no grant reaches (see fs_guard.rs).
        fs_guard::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // wasi:tls (a draft, hence opted in): the handshake over streams a plugin already
        // holds; see tls.rs for why that opens nothing new.
        let mut tls_options = wasmtime_wasi_tls::p2::LinkOptions::default();
        tls_options.tls(true);
        wasmtime_wasi_tls::p2::add_to_linker(&mut linker, &tls_options)?;
        use bindings::source::backups::plugin as ours;
        ours::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::fs_metadata::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::files::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        ours::process::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        report_details::add_to_linker(&mut linker)?;

        let cache = cache_dir.and_then(|d| loader::ComponentCache::open(&engine, d));
        if let Some(dir) = cache_dir {
            protect_host_dir(dir);
        }
        Ok(Runtime {
            engine,
            linker,
            cache,
        })
    }

    /// The names of the plugins compiled into this binary.
    /// Job-file types served by an embedded plugin of another name: (type, plugin).
    pub fn type_aliases() -> &'static [(&'static str, &'static str)] {
        embedded::ALIASES
    }

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
            &TrustPolicy::permissive(),
        )
    }

    /// A third-party `.wasm`, checked against its pinned digest and the job's trust policy.
    pub fn load_file(
        &self,
        path: &Path,
        sha256: Option<&str>,
        trust: &TrustPolicy,
    ) -> Result<LoadedPlugin> {
        let bytes = loader::read_file(path)?;
        loader::load(
            &self.engine,
            self.cache.as_ref(),
            Origin::File(path.to_path_buf()),
            &bytes,
            sha256,
            trust,
        )
    }

    /// The plugin serving a job entry, checked to implement the entry's role.
    pub fn load_entry(&self, entry: &Entry, trust: &TrustPolicy) -> Result<LoadedPlugin> {
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
                .load_file(path, sha256.as_deref(), trust)
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

    fn store(
        &self,
        setup: &InstanceSetup,
        origin: &Origin,
    ) -> Result<(Store<PluginState>, stdio::StderrCapture)> {
        let grants = &setup.grants;
        for line in grants.describe() {
            tracing::debug!(plugin = %setup.label, "grant {line} ({})", grants.origin);
        }
        let mut wasi = WasiCtxBuilder::new();
        // Each file a plugin opens, reads or stats is, by default, a round trip to tokio's
        // blocking pool: two thread wake-ups per call. For the folder plugin that was most
        // of what the sandbox cost (two calls per file, tens of thousands of files).
        // First-party plugins do their file operations on the calling thread instead (the
        // folder plugin's run fell from 6.3-6.7 s to 5.1-5.4 s on the bench corpus). The
        // price is that such a call cannot be abandoned at `limits.call_seconds` while the
        // thread is in the kernel, so it is paid only by code we ship, which opens nothing
        // but regular files (the folder plugin checks with lstat first); a hung mount is
        // left to the backstop (backstop.rs). A third-party plugin could open a FIFO in its
        // grant and wait for ever; its file calls stay on the pool, where the call limit
        // still stops it.
        wasi.allow_blocking_current_thread(matches!(origin, Origin::Embedded(_)));
        let stderr =
            stdio::StderrCapture::new(&setup.label, setup.redactor.clone(), setup.limits.log_bytes);
        wasi.stderr(stderr.clone());
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        let mut grant_dirs = Vec::new();
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
                // A write grant's directory that does not exist yet is made, private, as
                // the legacy tool's local destination made its path (`os.makedirs`).
                if perms == FsPerms::ReadWrite && !g.dir.exists() {
                    use std::os::unix::fs::DirBuilderExt;
                    // Judged before anything is made: where the nearest existing folder
                    // above it leads (a host directory, a pseudo-filesystem) is refused
                    // without leaving an empty directory behind.
                    if let Some(why) = g
                        .dir
                        .ancestors()
                        .find(|a| a.exists())
                        .and_then(|a| std::fs::File::open(a).ok())
                        .and_then(|opened| fs_guard::refuses_opened(&opened))
                    {
                        bail!("{}: grant {}: {why}", setup.label, g.dir.display());
                    }
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&g.dir)
                        .with_context(|| {
                            format!("{}: creating granted path {}", setup.label, g.dir.display())
                        })?;
                    tracing::info!(
                        "{}: created {} (mode 0700): the granted path did not exist",
                        setup.label,
                        g.dir.display()
                    );
                }
                // A grant is judged by where it leads (symlinks resolved): one of a
                // pseudo-filesystem or of the host's own directories is refused outright.
                if let Some(why) = std::fs::File::open(&g.path)
                    .ok()
                    .and_then(|opened| fs_guard::refuses_opened(&opened))
                {
                    bail!("{}: grant {}: {why}", setup.label, g.path.display());
                }
                let host_dir = if g.widened_from_file && perms == FsPerms::ReadOnly {
                    let private = file_grant::private_dir(&g.path, &setup.tmpdir)
                        .with_context(|| format!("{}: grant {}", setup.label, g.path.display()))?;
                    grant_dirs.push(private.clone());
                    private
                } else {
                    g.dir.clone()
                };
                wasi.preopened_dir(&host_dir, guest, perms).map_err(|e| {
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
                let allowed = net::socket_allowed(&grants, &label, addr).await;
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
            private_files_most: setup.limits.private_files,
            private_file_bytes_most: setup.limits.private_file_bytes,
            net_denials,
        });
        let limits = StoreLimitsBuilder::new()
            .memory_size(setup.limits.memory_bytes.try_into().unwrap_or(usize::MAX))
            .instances(setup.limits.instances.try_into().unwrap_or(usize::MAX))
            .tables(setup.limits.tables.try_into().unwrap_or(usize::MAX))
            .memories(16)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState {
            wasi: wasi.build(),
            table: {
                let mut table = wasmtime::component::ResourceTable::new();
                table.set_max_capacity(setup.limits.resources.try_into().unwrap_or(usize::MAX));
                table
            },
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::GrantedHttp {
                policy: policy.clone(),
            },
            tls: tls::context(),
            limits,
            log_left: setup.limits.log_bytes,
            log_truncated: false,
            policy,
            sink: None,
            private_files: Vec::new(),
            private_file_bytes: 0,
            grant_dirs,
            roots: Vec::new(),
            report_details: None,
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
        let (mut store, stderr) = self.store(&setup, &plugin.origin)?;
        let component = &plugin.component;
        let linker = &self.linker;
        let started = async {
            Ok::<_, wasmtime::Error>(match plugin.world.role {
                Role::Source => {
                    let instance = linker.instantiate_async(&mut store, component).await?;
                    let dump = bindings::source::Source::new(&mut store, &instance)?;
                    // Only sources that archive incrementally export it (since 0.1.3).
                    let incremental =
                        bindings::incremental::SourceIncremental::new(&mut store, &instance).ok();
                    Bindings::Source(Box::new(SourceBindings { dump, incremental }))
                }
                Role::Destination => {
                    let instance = linker.instantiate_async(&mut store, component).await?;
                    let storage =
                        bindings::destination::DestinationBase::new(&mut store, &instance)?;
                    // Absent from destinations built before 0.1.2.
                    let leftovers =
                        bindings::leftovers::DestinationLeftovers::new(&mut store, &instance).ok();
                    Bindings::Destination(Box::new(DestinationBindings { storage, leftovers }))
                }
                Role::Notifier => Bindings::Notifier(
                    bindings::notifier::Notifier::instantiate_async(&mut store, component, linker)
                        .await?,
                ),
            })
        };
        // The entry's own limits hold from the first instruction on: a plugin whose
        // start-up (its component's initialisers) runs long is stopped like any call.
        let call_limit = Duration::from_secs(setup.limits.call_seconds);
        let start_limit = call_limit.min(DESCRIBE_CAP);
        let bindings = match tokio::time::timeout(start_limit, started).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if format!("{e:#}").contains("count too high") => bail!(
                "{}: {}: cannot instantiate: {e:#} (limits.instances, limits.tables)",
                setup.label,
                plugin.origin
            ),
            Ok(Err(e)) => bail!(
                "{}: {}: cannot instantiate: {e:#}",
                setup.label,
                plugin.origin
            ),
            Err(_) => bail!(
                "{}: {}: instantiation did not finish within {}s ({}) and was stopped",
                setup.label,
                plugin.origin,
                start_limit.as_secs(),
                if start_limit < call_limit {
                    "the cap on starting a plugin, below limits.call_seconds"
                } else {
                    "limits.call_seconds"
                }
            ),
        };
        Ok(Instance {
            store,
            bindings,
            label: setup.label,
            call_limit: Duration::from_secs(setup.limits.call_seconds),
            time_left: Duration::from_secs(setup.limits.total_seconds),
            memory_bytes: setup.limits.memory_bytes,
            resources: setup.limits.resources,
            stderr,
            poisoned: false,
        })
    }

    /// An instance with no grants at all, under `limits` (the entry's, so that they hold
    /// from the first call): enough to ask a plugin what it is and needs.
    pub async fn instantiate_bare(
        &self,
        plugin: &LoadedPlugin,
        label: &str,
        limits: Limits,
    ) -> Result<Instance> {
        self.instantiate(
            plugin,
            InstanceSetup {
                label: label.to_string(),
                grants: Grants::none(),
                limits,
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

/// Plugins' open files, sockets and streams are host descriptors, shared by every
/// instance of the run; each instance is capped (`limits.resources`), and the process
/// takes the whole allowance the system gives it (soft limit up to the hard one), as
/// servers do, so that those caps and not the default 1024 are what bound a run.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
