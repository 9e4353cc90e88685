//! The end-to-end suite, one binary (as wasmtime's `tests/all`): the real `backups`
//! binary against real servers on 127.0.0.1, one module per area. One binary links once
//! and shares one `support` module, where twenty-two binaries each compiled their own.
//!
//! `cargo test -- <area>::` runs one area, e.g. `cargo test -- hostile_plugins::`.

mod support;

mod azure;
mod b2_dropbox;
mod bad_input;
mod cli;
mod cloud_snapshots;
mod codecs;
mod conformance;
mod daemon;
mod databases;
mod example_plugin;
mod folder_fidelity;
mod folder_to_local;
mod google;
mod honest_storage;
mod hostile_plugins;
mod incremental;
mod killed_runs;
mod legacy;
mod never_without;
mod notifiers;
mod process;
mod restore;
mod s3;
mod samba;
mod ssh;
mod trust;
