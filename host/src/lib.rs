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
//! | [`pipeline`] | source bytes → gzip → OpenPGP → a temporary artifact |
//! | [`parallel_gzip`] | gzip on every core, one member per block |
//! | [`crypto`] | OpenPGP keys and encryptors |
//! | [`seipd`] | the encrypted packet, written fast (AES-CFB and SHA-1 from OpenSSL) |
//! | [`artifact`] | object names and manifests |
//! | [`restore`] | getting copies back: list, verify, restore |
//! | [`extract`] | `restore --extract`: a folder archive unpacked as GNU tar unpacks it |
//! | [`retention`] | which copies a destination keeps |
//! | [`stored`] | "stored" means seen stored: puts confirmed by listing, the min_copies floor confirmed by manifest |
//! | [`scaffold`] | `plugins new`: a plugin crate to start from |
//! | [`schedule`] | when a job runs, and how old its newest copy may get |
//! | [`plan`] | loading and checking everything a run needs; `--dry-run` |
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

pub mod artifact;
pub mod audit;
pub mod config;
pub mod conformance;
pub mod crypto;
pub mod daemon;
pub mod extract;
pub mod grants;
pub mod interrupt;
pub mod job;
pub mod lock;
pub mod parallel_gzip;
pub mod pipeline;
pub mod plan;
pub mod privileges;
pub mod redact;
pub mod report;
pub mod restore;
pub mod retention;
pub mod run_dir;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod seipd;
pub mod status;
pub mod stored;
pub mod text;
pub mod trust;
