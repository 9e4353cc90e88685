//! The traits a plugin implements, and the glue the export macros expand to.

use crate::error::{PluginError, Result};
use crate::world::backups::plugin::types as wit;
use serde::de::DeserializeOwned;

pub use wit::Context;

/// What a plugin says about itself. Built with [`About::new`] and its chained setters.
#[derive(Debug, Clone)]
pub struct About {
    name: String,
    summary: String,
    version: String,
    keys: Vec<String>,
    secrets: Vec<String>,
    notify: (bool, bool),
}

impl About {
    /// `name` is the job-file `type` the plugin implements; `summary` is one line.
    pub fn new(name: &str, summary: &str) -> Self {
        Self {
            name: name.into(),
            summary: summary.into(),
            version: "0.0.0".into(),
            keys: Vec::new(),
            secrets: Vec::new(),
            notify: (true, true),
        }
    }
    /// The plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }
    /// Config keys the plugin understands (besides `id`, `name`, `type`): the host warns
    /// about any other key in the entry.
    pub fn keys(mut self, keys: &[&str]) -> Self {
        self.keys.extend(keys.iter().map(|k| k.to_string()));
        self
    }
    /// Notifiers: send after a successful / failed run unless the entry says otherwise
    /// (`notify_on_success` / `notify_on_failure`). Default: both.
    pub fn notify_by_default(mut self, on_success: bool, on_failure: bool) -> Self {
        self.notify = (on_success, on_failure);
        self
    }
    /// Config keys holding secrets (dotted for nested keys, e.g. `credentials.password`):
    /// the host redacts their values from every log line, report and error. `env:NAME`
    /// declares a granted environment variable's value secret (e.g. `env:CLIENT_KEY`);
    /// `KEY@userinfo` only the password a URL in `KEY` carries (`https://user:PASS@host`).
    pub fn secrets(mut self, keys: &[&str]) -> Self {
        self.secrets.extend(keys.iter().map(|k| k.to_string()));
        self
    }
}

impl From<About> for wit::About {
    fn from(a: About) -> Self {
        wit::About {
            name: a.name,
            version: a.version,
            summary: a.summary,
            config_keys: a.keys,
            secret_keys: a.secrets,
            notify_on_success: a.notify.0,
            notify_on_failure: a.notify.1,
        }
    }
}

/// Capabilities a first-party plugin derives from its config. Third-party plugins get only
/// what the job file grants, whatever they ask for here.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Host paths readable by the plugin (directories recursively).
    pub read: Vec<String>,
    /// Host paths writable (and readable) by the plugin.
    pub write: Vec<String>,
    /// Network peers: `host`, `host:port`, `*.domain` or a URL such as `https://host:port`.
    pub net: Vec<String>,
    /// Commands the host may run for the plugin (by name or absolute path).
    pub run: Vec<String>,
    /// Environment variables the plugin may read, by name.
    pub env: Vec<String>,
}

impl From<Grants> for wit::Grants {
    fn from(g: Grants) -> Self {
        wit::Grants {
            read: g.read,
            write: g.write,
            net: g.net,
            run: g.run,
            env: g.env,
        }
    }
}

/// What every plugin implements, whatever its world.
pub trait Plugin: Sized + 'static {
    /// The plugin's config section. Deserialized from the job-file entry (with `id`,
    /// `name` and `type` present; secret references already resolved). Unknown keys are
    /// the host's to warn about, so do not use `deny_unknown_fields`.
    type Config: DeserializeOwned;

    /// What the plugin is: its `type` name, version, summary, config keys and which of
    /// them are secrets (`backups plugins inspect` shows it; the host redacts secrets).
    fn about() -> About;

    /// Grants this plugin needs for `config`. Honoured only for embedded plugins.
    fn requested_grants(_config: &Self::Config) -> Result<Grants> {
        Ok(Grants::default())
    }

    /// Checks the config and builds the instance that serves the rest of the calls.
    fn configure(ctx: Context, config: Self::Config) -> Result<Self>;
}

/// The result of a successful dump.
#[cfg(feature = "source")]
#[derive(Debug, Clone)]
pub struct DumpInfo {
    kind: String,
    warnings: Vec<String>,
}

#[cfg(feature = "source")]
impl DumpInfo {
    /// `kind` becomes part of the object name: `tar`, `sql`, ...
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.into(),
            warnings: Vec::new(),
        }
    }
    /// Something the operator should read that did not make the dump incomplete.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }
}

/// A source writes one whole backup into the artifact.
#[cfg(feature = "source")]
pub trait Source: Plugin {
    /// Write everything to `out`. Return `Ok` only when the dump is complete: an error
    /// makes the host discard the artifact.
    fn dump(&mut self, out: &mut crate::streams::ArtifactWriter) -> Result<DumpInfo>;
}

/// What an incremental dump wrote.
#[cfg(feature = "incremental")]
#[derive(Debug, Clone)]
pub struct Incremental {
    /// The artifact's kind and warnings, as for a whole dump.
    pub info: DumpInfo,
    /// The archive is whole (level 0): there was no base, or it could not be used.
    pub full: bool,
}

/// A source that can archive only what changed since an earlier full (GNU tar's
/// `--listed-incremental` format). The host keeps the index a full writes and hands it
/// back as `base`; what is in it is the plugin's own business. Export with
/// [`export_incremental_source!`](crate::export_incremental_source).
#[cfg(feature = "incremental")]
pub trait IncrementalSource: Source {
    /// Write the archive to `out` and this run's index to `index`. A `base` the plugin
    /// cannot use (another format, another path) must give a full, never a wrong delta.
    fn dump_incremental(
        &mut self,
        out: &mut crate::streams::ArtifactWriter,
        base: Option<&mut crate::streams::IndexReader>,
        index: &mut crate::streams::ArtifactWriter,
    ) -> Result<Incremental>;
}

/// A destination stores opaque objects under keys the host chooses.
#[cfg(feature = "destination")]
pub trait Destination: Plugin {
    /// Store `size` bytes from `data` under `key`. Never leave a partial object under `key`.
    fn put(&mut self, key: &str, data: &mut crate::streams::ObjectReader, size: u64) -> Result<()>;
    /// Write the object's bytes to `sink`.
    fn get(&mut self, key: &str, sink: &mut crate::streams::ObjectWriter) -> Result<()>;
    /// Every object under `prefix`, recursively; empty is `Ok(vec![])`.
    fn list(&mut self, prefix: &str) -> Result<Vec<wit::ObjectInfo>>;
    /// Remove one object; a missing one is `Ok`.
    fn delete(&mut self, key: &str) -> Result<()>;
    /// The backend's own age-based deletion rules (S3 lifecycle expiration…), for the
    /// host's audit. Most backends have none.
    fn deletion_rules(&mut self) -> Result<Vec<crate::DeletionRule>> {
        Ok(Vec::new())
    }
    /// What killed `put`s left under `prefix`: this plugin's own temporary names or
    /// unfinished uploads, never another tool's objects. A backend whose `put` is one
    /// atomic call leaves nothing, which is the default.
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<crate::Leftover>> {
        let _ = prefix;
        Ok(Vec::new())
    }
    /// Remove one leftover [`Destination::list_leftovers`] returned; one already gone is `Ok`.
    fn remove_leftover(&mut self, leftover: &crate::Leftover) -> Result<()> {
        Err(PluginError::permanent(format!(
            "{}: this destination lists no leftovers, so it removes none",
            leftover.id
        )))
    }
    /// Whether the backend removes leftovers by itself (an S3 lifecycle rule); the
    /// default: it has no such rules.
    fn self_cleaning(&mut self) -> Result<crate::CleanupRule> {
        Ok(crate::CleanupRule::NotApplicable)
    }
}

/// A notifier tells someone how a run went.
#[cfg(feature = "notifier")]
pub trait Notifier: Plugin {
    /// Sends `report` (a run's outcome, a start, or a stale copy found by `status`).
    /// An error is logged and reported; it never fails the backup itself.
    fn notify(&mut self, report: &crate::Report) -> Result<()>;
}

/// Glue between the generated `Guest` traits and the plugin's trait implementation.
#[doc(hidden)]
pub mod runtime {
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        // One plugin instance per component instance: the host gives each job entry its own
        // store, so a global is the instance's state.
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn parse<P: Plugin>(config: &str) -> Result<P::Config> {
        serde_json::from_str(config)
            .map_err(|e| PluginError::invalid_config(format!("config: {e}")))
    }

    pub fn about<P: Plugin>() -> wit::About {
        P::about().into()
    }

    pub fn requested_grants<P: Plugin>(config: String) -> Result<wit::Grants, wit::PluginError> {
        let config = parse::<P>(&config)?;
        Ok(P::requested_grants(&config)?.into())
    }

    pub fn configure<P: Plugin>(ctx: Context, config: String) -> Result<(), wit::PluginError> {
        let config = parse::<P>(&config)?;
        let instance = P::configure(ctx, config)?;
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(instance)));
        Ok(())
    }

    #[cfg(feature = "source")]
    pub fn dump_info(info: DumpInfo) -> crate::world::exports::backups::plugin::dump::DumpInfo {
        crate::world::exports::backups::plugin::dump::DumpInfo {
            kind: info.kind,
            warnings: info.warnings,
        }
    }

    /// Runs `f` on the configured instance.
    pub fn with<P: Plugin, R>(f: impl FnOnce(&mut P) -> Result<R>) -> Result<R, wit::PluginError> {
        INSTANCE.with(|slot| {
            let mut slot = slot.borrow_mut();
            let instance = slot
                .as_mut()
                .and_then(|b| b.downcast_mut::<P>())
                .ok_or_else(|| {
                    PluginError::permanent("the host called the plugin before `configure`")
                })?;
            f(instance).map_err(Into::into)
        })
    }
}

/// Exports a [`Source`] implementation as this component's `source` world.
#[cfg(all(feature = "source", not(feature = "incremental")))]
#[macro_export]
macro_rules! export_source {
    ($plugin:ty) => {
        $crate::__export_plugin_interface!($plugin);
        $crate::__export_dump!($plugin);
        $crate::__private::world::__export_world!(__BackupsPluginExports);
    };
}

/// Exports an [`IncrementalSource`] as this component's `incremental-source` world.
#[cfg(feature = "incremental")]
#[macro_export]
macro_rules! export_incremental_source {
    ($plugin:ty) => {
        $crate::__export_plugin_interface!($plugin);
        $crate::__export_dump!($plugin);
        const _: () = {
            use $crate::__private::runtime;
            use $crate::__private::world::backups::plugin::types::PluginError;
            use $crate::__private::world::exports::backups::plugin::incremental;
            use $crate::__private::world::wasi::io::streams::{InputStream, OutputStream};
            impl incremental::Guest for __BackupsPluginExports {
                fn dump_incremental(
                    out: &OutputStream,
                    base: Option<&InputStream>,
                    index: &OutputStream,
                ) -> ::std::result::Result<incremental::IncrementalInfo, PluginError> {
                    runtime::with::<$plugin, _>(|p| {
                        let mut writer = $crate::ArtifactWriter::new(out);
                        let mut index_writer = $crate::ArtifactWriter::new(index);
                        let mut base = base.map($crate::IndexReader::new);
                        let done = $crate::IncrementalSource::dump_incremental(
                            p,
                            &mut writer,
                            base.as_mut(),
                            &mut index_writer,
                        )?;
                        writer.finish()?;
                        index_writer.finish()?;
                        let info = runtime::dump_info(done.info);
                        Ok(incremental::IncrementalInfo {
                            kind: info.kind,
                            warnings: info.warnings,
                            full: done.full,
                        })
                    })
                }
            }
        };
        $crate::__private::world::__export_world!(__BackupsPluginExports);
    };
}

/// The `dump` export of a [`Source`], for both source worlds.
#[cfg(feature = "source")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_dump {
    ($plugin:ty) => {
        const _: () = {
            use $crate::__private::runtime;
            use $crate::__private::world::exports::backups::plugin::dump;
            impl dump::Guest for __BackupsPluginExports {
                fn dump(
                    out: &$crate::__private::world::wasi::io::streams::OutputStream,
                ) -> ::std::result::Result<
                    dump::DumpInfo,
                    $crate::__private::world::backups::plugin::types::PluginError,
                > {
                    runtime::with::<$plugin, _>(|p| {
                        let mut writer = $crate::ArtifactWriter::new(out);
                        let info = $crate::Source::dump(p, &mut writer)?;
                        writer.finish()?;
                        Ok(runtime::dump_info(info))
                    })
                }
            }
        };
    };
}

/// Exports a [`Destination`] implementation as this component's `destination` world.
#[cfg(feature = "destination")]
#[macro_export]
macro_rules! export_destination {
    ($plugin:ty) => {
        $crate::__export_plugin_interface!($plugin);
        const _: () = {
            use $crate::__private::runtime;
            use $crate::__private::world::backups::plugin::types::{ObjectInfo, PluginError};
            use $crate::__private::world::exports::backups::plugin::{leftovers, storage};
            use $crate::__private::world::wasi::io::streams::{InputStream, OutputStream};
            type R<T> = ::std::result::Result<T, PluginError>;
            impl storage::Guest for __BackupsPluginExports {
                fn put(key: String, data: &InputStream, size: u64) -> R<()> {
                    runtime::with::<$plugin, _>(|p| {
                        let mut reader = $crate::ObjectReader::new(data);
                        $crate::Destination::put(p, &key, &mut reader, size)
                    })
                }
                fn get(key: String, sink: &OutputStream) -> R<()> {
                    runtime::with::<$plugin, _>(|p| {
                        let mut writer = $crate::ObjectWriter::new(sink);
                        $crate::Destination::get(p, &key, &mut writer)?;
                        writer.finish()
                    })
                }
                fn list(prefix: String) -> R<Vec<ObjectInfo>> {
                    runtime::with::<$plugin, _>(|p| $crate::Destination::list(p, &prefix))
                }
                fn delete(key: String) -> R<()> {
                    runtime::with::<$plugin, _>(|p| $crate::Destination::delete(p, &key))
                }
                fn deletion_rules() -> R<Vec<storage::DeletionRule>> {
                    runtime::with::<$plugin, _>(|p| $crate::Destination::deletion_rules(p))
                }
            }
            impl leftovers::Guest for __BackupsPluginExports {
                fn list_leftovers(prefix: String) -> R<Vec<leftovers::Leftover>> {
                    runtime::with::<$plugin, _>(|p| $crate::Destination::list_leftovers(p, &prefix))
                }
                fn remove_leftover(leftover: leftovers::Leftover) -> R<()> {
                    runtime::with::<$plugin, _>(|p| {
                        $crate::Destination::remove_leftover(p, &leftover)
                    })
                }
                fn self_cleaning() -> R<leftovers::CleanupRule> {
                    runtime::with::<$plugin, _>(|p| $crate::Destination::self_cleaning(p))
                }
            }
        };
        $crate::__private::world::__export_world!(__BackupsPluginExports);
    };
}

/// Exports a [`Notifier`] implementation as this component's `notifier` world.
#[cfg(feature = "notifier")]
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ty) => {
        $crate::__export_plugin_interface!($plugin);
        const _: () = {
            use $crate::__private::runtime;
            use $crate::__private::world::backups::plugin::types::PluginError;
            use $crate::__private::world::exports::backups::plugin::notification;
            impl notification::Guest for __BackupsPluginExports {
                fn notify(report: notification::Report) -> ::std::result::Result<(), PluginError> {
                    runtime::with::<$plugin, _>(|p| $crate::Notifier::notify(p, &report))
                }
            }
        };
        $crate::__private::world::__export_world!(__BackupsPluginExports);
    };
}

/// The `plugin` interface, common to all worlds.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_interface {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __BackupsPluginExports;
        const _: () = {
            use $crate::__private::runtime;
            use $crate::__private::world::backups::plugin::types::{
                About, Context, Grants, PluginError,
            };
            use $crate::__private::world::exports::backups::plugin::plugin;
            impl plugin::Guest for __BackupsPluginExports {
                fn describe() -> About {
                    runtime::about::<$plugin>()
                }
                fn requested_grants(config: String) -> ::std::result::Result<Grants, PluginError> {
                    runtime::requested_grants::<$plugin>(config)
                }
                fn configure(
                    ctx: Context,
                    config: String,
                ) -> ::std::result::Result<(), PluginError> {
                    runtime::configure::<$plugin>(ctx, config)
                }
            }
        };
    };
}
