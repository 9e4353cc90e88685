//! A destination's listing is whatever a plugin returns: names and sizes of any shape.
//! Finding the copies in it, and the manifest each names, must never panic.
#![no_main]

use backups::store::objects::{copies_of, manifest_key, parse_key};
use backups::runtime::bindings::ObjectInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, Vec<(String, u64, Option<u64>)>)| {
    let (hostname, entries) = input;
    let listing: Vec<ObjectInfo> = entries
        .into_iter()
        .map(|(key, size, modified)| ObjectInfo { key, size, modified })
        .collect();
    for o in &listing {
        let _ = parse_key(&hostname, &o.key);
        let _ = manifest_key(&o.key);
    }
    for source in ["etc", "db", ""] {
        let _ = copies_of(&hostname, source, &listing);
    }
});
