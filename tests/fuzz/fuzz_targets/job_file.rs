//! Any text as a job file: parsed or refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = backups::config::Job::parse(std::path::Path::new("/fuzz/job.json"), text);
});
