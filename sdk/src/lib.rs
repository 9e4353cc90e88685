//! Write a [backups](https://example.invalid/backups) plugin: implement one trait, call one
//! macro, build for `wasm32-wasip2`.
//!
//! ```ignore
//! use backups_sdk::{About, Context, Plugin, Result, Source, ArtifactWriter, DumpInfo};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { path: String }
//!
//! struct Hello { config: Config }
//!
//! impl Plugin for Hello {
//!     type Config = Config;
//!     fn about() -> About { About::new("hello", "writes a greeting").keys(&["path"]) }
//!     fn configure(_ctx: Context, config: Config) -> Result<Self> { Ok(Hello { config }) }
//! }
//!
//! impl Source for Hello {
//!     fn dump(&mut self, out: &mut ArtifactWriter) -> Result<DumpInfo> {
//!         use std::io::Write;
//!         writeln!(out, "hello from {}", self.config.path)?;
//!         Ok(DumpInfo::new("txt"))
//!     }
//! }
//!
//! backups_sdk::export_source!(Hello);
//! ```
//!
//! Enable exactly one of the features `source`, `destination` or `notifier`: it selects the
//! WIT world the plugin implements.

#![warn(missing_docs)]

extern crate self as backups_sdk;

#[cfg(not(any(feature = "source", feature = "destination", feature = "notifier")))]
compile_error!("enable one of the backups-sdk features: source, destination or notifier");

#[cfg(any(
    all(feature = "source", feature = "destination"),
    all(feature = "source", feature = "notifier"),
    all(feature = "destination", feature = "notifier"),
))]
compile_error!("enable only one of the backups-sdk features: a plugin implements one world");

#[doc(hidden)]
pub mod world;

mod error;
mod plugin;
#[cfg(any(feature = "source", feature = "destination"))]
mod streams;

pub mod config;
#[cfg(feature = "source")]
pub mod files;
pub mod log;
pub mod metadata;
pub mod process;
pub mod ssh;

pub use error::{ErrorKind, PluginError, Result, error_chain};
pub use plugin::{About, Context, Grants, Plugin};
pub use world::backups::plugin::types::ObjectInfo;

#[cfg(feature = "source")]
pub use plugin::{DumpInfo, Source};
#[cfg(feature = "incremental")]
pub use plugin::{Incremental, IncrementalSource};
#[cfg(feature = "source")]
pub use streams::ArtifactWriter;
#[cfg(feature = "incremental")]
pub use streams::IndexReader;

#[cfg(feature = "destination")]
pub use plugin::Destination;
#[cfg(feature = "destination")]
pub use streams::{ObjectReader, ObjectWriter};
#[cfg(feature = "destination")]
pub use world::exports::backups::plugin::leftovers::{CleanupRule, Leftover};
#[cfg(feature = "destination")]
pub use world::exports::backups::plugin::storage::DeletionRule;

#[cfg(feature = "notifier")]
pub use plugin::Notifier;
#[cfg(feature = "notifier")]
pub use world::backups::plugin::report_details::{Details as ReportDetails, SourceTiming};
#[cfg(feature = "notifier")]
pub use world::exports::backups::plugin::notification::{
    DestinationReport, Freshness, Outcome, Report, ReportKind, SourceReport,
};

/// During [`Notifier::notify`] of a run's report: what the report's records cannot say —
/// the run's time in milliseconds and each dumped source's upload time (contract 0.1.4).
/// `None` for other reports (a start, a stale copy) and outside `notify`.
#[cfg(feature = "notifier")]
pub fn report_details() -> Option<ReportDetails> {
    world::backups::plugin::report_details::current()
}

/// What the export macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::runtime;
    pub use crate::world;
    pub use wit_bindgen;
}
