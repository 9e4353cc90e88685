//! backups: a backup runner whose sources, destinations and notifiers are sandboxed
//! WebAssembly components.
//!
//! The host owns everything that must be trusted or fast; plugins own only what is
//! specific to one system. One module per concern:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the job file: legacy keys, validation, secret references |
//! | [`conformance`] | `plugins test`: a plugin checked against the contract |
//! | [`grants`] | what each plugin instance may touch, and where each grant came from |
//! | [`runtime`] | wasmtime: loading, caching, sandboxing and calling plugins |
//! | [`pipeline`] | source bytes → compression → encryption → a temporary artifact |
//! | [`codec`] | compression and encryption as types, named in the manifest: gzip on every core, OpenPGP keys, the encrypted packet written fast |
//! | [`cpu_time`] | CPU seconds per stage, for the log |
//! | [`restore`] | getting copies back: list, verify, restore |
//! | [`extract`] | `restore --extract`: a folder archive unpacked as GNU tar unpacks it |
//! | [`store`] | what a destination holds: object names and manifests, "stored" meaning seen stored (puts confirmed by listing, the min_copies floor by manifest), retention |
//! | [`scaffold`] | `plugins new`: a plugin crate to start from |
//! | [`schedule`] | when a job runs, and how old its newest copy may get |
//! | [`plan`] | loading and checking everything a run needs; `--dry-run` |
//! | [`session`] | the one door from a planned entry to a configured plugin instance, for every command |
//! | [`job`] | one run, end to end |
//! | [`lock`] | one run of a job at a time |
//! | [`run_dir`] | a run's directory in the tmpdir, and what killed runs left there |
//! | [`interrupt`] | SIGINT/SIGTERM: stop commands, let plugins clean up |
//! | [`daemon`] | running jobs on their schedule |
//! | [`report`] | what a run did, for humans and notifiers |
//! | [`status`] | the dead-man's switch: is every source's newest copy fresh enough? |
//! | [`redact`] | keeping secrets out of every line we print |
//! | [`text`] | untrusted text made safe to print: control characters escaped, sizes cut |
//! | [`trust`] | plugin signatures and the job's signing policy |
//! | [`audit`] | what `check` says of each grant: where it came from, what is risky |
//! | [`privileges`] | refusing to run as the wrong user (root) |

pub mod audit;
pub mod codec;
pub mod config;
pub mod conformance;
pub mod cpu_time;
pub mod daemon;
pub mod extract;
pub mod grants;
pub mod increments;
pub mod interrupt;
pub mod job;
pub mod lock;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod privileges;
pub mod redact;
pub mod report;
pub mod restore;
pub mod run_dir;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod session;
pub mod status;
pub mod store;
pub mod text;
pub mod trust;
