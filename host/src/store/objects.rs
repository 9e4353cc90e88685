//! Object names and manifests.
//!
//! An artifact is stored as `{hostname}/{yyyy-mm-dd}/{HHMMSS}Z/{id}.{kind}.gz[.gpg]` (the
//! suffixes are the codecs', see `codec`), the
//! legacy layout with the run's time as one more folder so that several runs a day do not
//! collide. Beside it, `{object}.manifest.json` says what it is. The manifest is written
//! after the artifact, so an artifact with a manifest is a complete copy; retention and
//! freshness count only those.
//!
//! An increment (a folder source with `incremental`) is named for the full it was made
//! against: `{id}.inc-{yyyymmddTHHMMSSZ of the full's run}.tar.gz.gpg`, so that a listing
//! alone says which archive each one needs. An increment whose full is not a complete copy
//! at the same destination restores nothing, and is not a copy there.

use crate::codec::{Compression, Encryption};
use crate::runtime::ObjectInfo;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub const MANIFEST_SUFFIX: &str = ".manifest.json";
pub const MANIFEST_VERSION: u32 = 1;

/// The object name of one source's artifact in one run; `increment_of` is the run time
/// of the full an increment was made against.
pub fn object_key(
    hostname: &str,
    started: Timestamp,
    source_id: &str,
    kind: &str,
    increment_of: Option<Timestamp>,
    (compression, encryption): (Compression, Encryption),
) -> String {
    let utc = started.to_zoned(jiff::tz::TimeZone::UTC);
    let level = increment_of
        .map(|base| format!(".{INCREMENT_TAG}{}", compact_stamp(base)))
        .unwrap_or_default();
    format!(
        "{hostname}/{}/{}Z/{source_id}{level}.{kind}{}{}",
        utc.strftime("%Y-%m-%d"),
        utc.strftime("%H%M%S"),
        compression.suffix(),
        encryption.suffix()
    )
}

/// What starts the name part of an increment that names its full.
const INCREMENT_TAG: &str = "inc-";

/// `20261203T180000Z`: a run time in an object's file name.
fn compact_stamp(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The full an object's file name says it is an increment of, if it says so.
fn increment_of(file: &str) -> Option<Timestamp> {
    let tag = file.split('.').nth(1)?.strip_prefix(INCREMENT_TAG)?;
    jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", tag)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Where a full's index is stored beside it: `{id}.index` in place of `{id}.tar`, with the
/// same codec suffixes (`….index.gz.gpg`: `gpg -d | gunzip` reads it).
pub fn index_key(full_object: &str, source_id: &str) -> Option<String> {
    let (folder, file) = full_object.rsplit_once('/')?;
    let suffixes = file.strip_prefix(source_id)?.strip_prefix(".tar")?;
    Some(format!("{folder}/{source_id}.index{suffixes}"))
}

pub fn manifest_key(object: &str) -> String {
    format!("{object}{MANIFEST_SUFFIX}")
}

/// What is known about an artifact, stored beside it as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_version: u32,
    pub job: String,
    pub hostname: String,
    pub run_id: String,
    pub source_id: String,
    pub source_name: String,
    /// `tar`, `sql`, ...: what the decompressed stream is.
    pub kind: String,
    pub object: String,
    /// RFC 3339, UTC: when the run started.
    pub created: String,
    /// Size and sha256 of the stored object (the ciphertext when encrypted).
    pub size: u64,
    pub sha256: String,
    /// Bytes the source produced, before compression.
    pub bytes_in: u64,
    pub compression: String,
    /// `openpgp-passphrase`, `openpgp-recipients` or `none`.
    pub encryption: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    pub tool: String,
    /// An increment: the object name of the full it was made against (at the same
    /// destination), which must be extracted before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// A full of an incremental source: its index, stored beside it (see `increments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

/// The most a manifest may hold (ours are under 2 KiB): a destination that serves a
/// bigger one is refused before it costs the host memory.
pub const MANIFEST_MAX_BYTES: u64 = 64 * 1024;

/// Reads and parses the manifest stored under `key`, capped at [`MANIFEST_MAX_BYTES`].
pub async fn read_manifest(
    instance: &mut crate::runtime::Instance,
    key: &str,
    scratch: &std::path::Path,
) -> anyhow::Result<Manifest> {
    let shown = crate::text::for_terminal(key, 300);
    let bytes = instance
        .get_bytes(key, scratch, MANIFEST_MAX_BYTES)
        .await
        .map_err(|e| anyhow::anyhow!("fetching {shown}: {e}"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{shown}: not a backups manifest: {e}"))
}

/// One complete copy of a source at a destination, found by listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub object: String,
    /// Its manifest's key; empty for a point of the legacy tool's copies, which have none
    /// (see [`legacy_points`]).
    pub manifest: String,
    pub created: Timestamp,
    pub size: u64,
    /// An increment: the run time of its full (a copy at the same destination).
    pub base: Option<Timestamp>,
}

impl StoredCopy {
    /// The full this increment needs, among `copies` (`None` for a full itself, or when
    /// it is missing).
    pub fn full_in<'c>(&self, copies: &'c [StoredCopy]) -> Option<&'c StoredCopy> {
        let base = self.base?;
        copies
            .iter()
            .find(|c| c.base.is_none() && c.created == base)
    }
}

/// Parses `{hostname}/{date}/{time}Z/{id}.{rest}` into (source id, run time).
pub fn parse_key(hostname: &str, key: &str) -> Option<(String, Timestamp)> {
    // Our names hold no control characters; a listed name with one is not ours, and must
    // never reach a terminal as a copy.
    if key.chars().any(char::is_control) {
        return None;
    }
    let rest = key.strip_prefix(hostname)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let (date, time, file) = (parts.next()?, parts.next()?, parts.next()?);
    if file.contains('/') {
        return None;
    }
    let time = time.strip_suffix('Z')?;
    // Names come from a plugin's listing: check before slicing (a multi-byte character
    // would make the byte ranges below panic).
    if time.len() != 6 || date.len() != 10 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let stamp: Timestamp = format!("{date}T{}:{}:{}Z", &time[0..2], &time[2..4], &time[4..6])
        .parse()
        .ok()?;
    let id = file.split('.').next()?.to_string();
    Some((id, stamp))
}

/// The complete copies of `source_id` in a listing, newest first. Artifacts without a
/// manifest (an upload that did not finish), increments whose full is not a complete copy
/// here, and objects of other layouts are not copies.
pub fn copies_of(hostname: &str, source_id: &str, listing: &[ObjectInfo]) -> Vec<StoredCopy> {
    let keys: std::collections::HashSet<&str> = listing.iter().map(|o| o.key.as_str()).collect();
    let mut copies: Vec<StoredCopy> = listing
        .iter()
        .filter(|o| !o.key.ends_with(MANIFEST_SUFFIX))
        .filter_map(|o| {
            let (id, created) = parse_key(hostname, &o.key)?;
            let manifest = manifest_key(&o.key);
            let file = o.key.rsplit('/').next().unwrap_or_default();
            (id == source_id && keys.contains(manifest.as_str())).then(|| StoredCopy {
                object: o.key.clone(),
                manifest,
                created,
                size: o.size,
                base: increment_of(file),
            })
        })
        .collect();
    let whole: Vec<StoredCopy> = copies
        .iter()
        .filter(|c| c.base.is_none())
        .cloned()
        .collect();
    copies.retain(|c| c.base.is_none() || c.full_in(&whole).is_some());
    copies.sort_by(|a, b| b.created.cmp(&a.created).then(b.object.cmp(&a.object)));
    copies
}

/// A copy the legacy Python tool stored: found by its layout, with no manifest. Read-only:
/// it counts for `status` and shows in `list`, and nothing here deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyCopy {
    pub object: String,
    pub created: Timestamp,
    pub size: u64,
}

/// Where the legacy tool's copies of `source_id` are listed: its code's layout under
/// `{id}/`, its README's under `{hostname}/`.
pub fn legacy_prefixes(hostname: &str, source_id: &str) -> [String; 2] {
    [format!("{source_id}/"), format!("{hostname}/")]
}

/// The legacy tool's copies of `source_id` in a listing of [`legacy_prefixes`], newest
/// first. Its layouts:
/// - `{id}/{YYYYmmddHHMMSS}/{file}` (its code: the run's local time, any dump file name);
/// - `{hostname}/{yyyy-mm-dd}/{id}.{sql|tar}….gpg` (its README: the day, local time).
///
/// Times are read in this machine's time zone, as the legacy tool wrote them.
pub fn legacy_copies_of(
    hostname: &str,
    source_id: &str,
    listing: &[ObjectInfo],
) -> Vec<LegacyCopy> {
    let tz = jiff::tz::TimeZone::system();
    let mut copies: Vec<LegacyCopy> = listing
        .iter()
        .filter(|o| !o.key.chars().any(char::is_control))
        .filter_map(|o| {
            let created = legacy_time(hostname, source_id, &o.key, &tz)?;
            Some(LegacyCopy {
                object: o.key.clone(),
                created,
                size: o.size,
            })
        })
        .collect();
    copies.sort_by(|a, b| b.created.cmp(&a.created).then(b.object.cmp(&a.object)));
    copies.dedup_by(|a, b| a.object == b.object);
    copies
}

/// The legacy tool's copies as retention points, newest first, for a destination whose
/// `legacy_copies` is `"manage"`. The objects one of its runs stored in one folder make one
/// point, named by its first object; [`LegacyPoints::parts`] lists every object of each,
/// all deleted together.
pub fn legacy_points(copies: &[LegacyCopy]) -> LegacyPoints {
    let mut points = LegacyPoints::default();
    let mut by_folder: std::collections::BTreeMap<(Timestamp, &str), Vec<&LegacyCopy>> =
        Default::default();
    for c in copies {
        let folder = c.object.rsplit_once('/').map_or("", |(folder, _)| folder);
        by_folder.entry((c.created, folder)).or_default().push(c);
    }
    for ((created, _), mut run) in by_folder.into_iter().rev() {
        run.sort_by(|a, b| a.object.cmp(&b.object));
        let object = run[0].object.clone();
        points.copies.push(StoredCopy {
            object: object.clone(),
            manifest: String::new(),
            created,
            size: run.iter().map(|c| c.size).sum(),
            base: None,
        });
        points
            .parts
            .insert(object, run.iter().map(|c| c.object.clone()).collect());
    }
    points
}

#[derive(Debug, Default)]
pub struct LegacyPoints {
    pub copies: Vec<StoredCopy>,
    /// Every object of each point, by the point's name.
    pub parts: std::collections::HashMap<String, Vec<String>>,
}

fn legacy_time(
    hostname: &str,
    source_id: &str,
    key: &str,
    tz: &jiff::tz::TimeZone,
) -> Option<Timestamp> {
    let parts: Vec<&str> = key.split('/').collect();
    let [first, stamp, file] = parts.as_slice() else {
        return None;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let civil = if *first == source_id && digits(stamp, 14) && !file.is_empty() {
        jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp).ok()?
    } else if *first == hostname
        && stamp.len() == 10
        && file
            .strip_prefix(source_id)
            .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".gpg"))
    {
        jiff::civil::Date::strptime("%Y-%m-%d", stamp)
            .ok()?
            .to_datetime(jiff::civil::Time::midnight())
    } else {
        return None;
    };
    civil.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// A kind becomes part of an object name: 1-16 letters, digits or `-`.
pub fn valid_kind(kind: &str) -> bool {
    (1..=16).contains(&kind.len()) && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_the_legacy_tools_layouts_are_recognised_and_nothing_else() {
        let listing: Vec<ObjectInfo> = [
            "db/20261101020000/db.sql.gpg",
            "db/20261102020000/db.sql.gz",
            "h/2026-10-30/db.sql.gpg",
            "h/2026-10-31/db.tar.gpg",
            // Not copies of `db` in a legacy layout:
            "h/2026-11-03/020000Z/db.sql.gz.gpg",
            "h/2026-10-30/dbx.sql.gpg",
            "h/2026-10-30/db.sql",
            "db/2026110102/db.sql.gpg",
            "db/20261101020000/sub/db.sql.gpg",
            "other/20261101020000/db.sql.gpg",
        ]
        .iter()
        .map(|k| ObjectInfo {
            key: k.to_string(),
            size: 9,
            modified: None,
        })
        .collect();
        let found: Vec<String> = legacy_copies_of("h", "db", &listing)
            .into_iter()
            .map(|c| c.object)
            .collect();
        assert_eq!(
            found,
            [
                "db/20261102020000/db.sql.gz",
                "db/20261101020000/db.sql.gpg",
                "h/2026-10-31/db.tar.gpg",
                "h/2026-10-30/db.sql.gpg"
            ]
        );
    }

    #[test]
    fn the_objects_of_one_legacy_run_make_one_retention_point() {
        let listing: Vec<ObjectInfo> = [
            "db/20261101020000/db-a.sql.gpg",
            "db/20261101020000/db-b.sql.gpg",
            "db/20261102020000/db.sql.gpg",
            "h/2026-10-30/db.sql.gpg",
        ]
        .iter()
        .map(|k| obj(k))
        .collect();
        let points = legacy_points(&legacy_copies_of("h", "db", &listing));
        let named: Vec<(&str, u64)> = points
            .copies
            .iter()
            .map(|c| (c.object.as_str(), c.size))
            .collect();
        assert_eq!(
            named,
            [
                ("db/20261102020000/db.sql.gpg", 10),
                ("db/20261101020000/db-a.sql.gpg", 20),
                ("h/2026-10-30/db.sql.gpg", 10)
            ]
        );
        assert!(
            points
                .copies
                .iter()
                .all(|c| c.manifest.is_empty() && c.base.is_none())
        );
        assert_eq!(
            points.parts["db/20261101020000/db-a.sql.gpg"],
            [
                "db/20261101020000/db-a.sql.gpg",
                "db/20261101020000/db-b.sql.gpg"
            ]
        );
    }

    fn obj(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            modified: None,
        }
    }

    #[test]
    fn names_round_trip_through_parse() {
        let t: Timestamp = "2026-11-22T02:03:04Z".parse().unwrap();
        let key = object_key(
            "db1.example.com",
            t,
            "etc",
            "tar",
            None,
            (Compression::Gzip, Encryption::OpenPgpPassphrase),
        );
        assert_eq!(key, "db1.example.com/2026-11-22/020304Z/etc.tar.gz.gpg");
        assert_eq!(parse_key("db1.example.com", &key), Some(("etc".into(), t)));
        assert_eq!(parse_key("other", &key), None);
    }

    #[test]
    fn an_increment_names_its_full_and_counts_only_beside_it() {
        let full: Timestamp = "2026-11-20T01:00:00Z".parse().unwrap();
        let then: Timestamp = "2026-11-21T01:00:00Z".parse().unwrap();
        let key = object_key(
            "h",
            then,
            "etc",
            "tar",
            Some(full),
            (Compression::Gzip, Encryption::OpenPgpPassphrase),
        );
        assert_eq!(
            key,
            "h/2026-11-21/010000Z/etc.inc-20261120T010000Z.tar.gz.gpg"
        );
        assert_eq!(parse_key("h", &key), Some(("etc".into(), then)));
        let with_manifest = |k: &str| [obj(k), obj(&manifest_key(k))];
        let orphan = "h/2026-11-22/010000Z/etc.inc-20261119T010000Z.tar.gz.gpg";
        let listing: Vec<ObjectInfo> = [
            "h/2026-11-20/010000Z/etc.tar.gz.gpg",
            key.as_str(),
            // Its full (the 19th) is not here: it restores nothing, so it is no copy.
            orphan,
        ]
        .iter()
        .flat_map(|k| with_manifest(k))
        .collect();
        let copies = copies_of("h", "etc", &listing);
        let found: Vec<(&str, Option<Timestamp>)> =
            copies.iter().map(|c| (c.object.as_str(), c.base)).collect();
        assert_eq!(
            found,
            [
                (key.as_str(), Some(full)),
                ("h/2026-11-20/010000Z/etc.tar.gz.gpg", None)
            ]
        );
        assert_eq!(copies[0].full_in(&copies).map(|c| c.created), Some(full));
    }

    #[test]
    fn names_a_plugin_made_up_are_refused_not_panicked_on() {
        for key in [
            "h/2026-01-01/1é345Z/etc.tar.gz.gpg",
            "h/2026-01-01/12:45Z/etc.tar.gz.gpg",
            "h/2026-13-45/010000Z/etc.tar.gz.gpg",
            "h/2026-01-01/010000Z/../../etc.tar.gz.gpg",
            "h//010000Z/etc",
            "h/",
            "",
        ] {
            assert_eq!(parse_key("h", key), None, "{key:?}");
        }
    }

    #[test]
    fn only_artifacts_with_manifests_count_newest_first() {
        let listing = vec![
            obj("h/2026-11-20/010000Z/etc.tar.gz.gpg"),
            obj("h/2026-11-20/010000Z/etc.tar.gz.gpg.manifest.json"),
            obj("h/2026-11-21/010000Z/etc.tar.gz.gpg"),
            obj("h/2026-11-21/010000Z/etc.tar.gz.gpg.manifest.json"),
            // interrupted upload: no manifest
            obj("h/2026-11-22/010000Z/etc.tar.gz.gpg"),
            // another source
            obj("h/2026-11-22/010000Z/db.sql.gz.gpg"),
            obj("h/2026-11-22/010000Z/db.sql.gz.gpg.manifest.json"),
            // legacy layout, not ours to count
            obj("h/2026-11-19/etc.tar.gpg"),
        ];
        let copies = copies_of("h", "etc", &listing);
        let names: Vec<_> = copies.iter().map(|c| c.object.as_str()).collect();
        assert_eq!(
            names,
            [
                "h/2026-11-21/010000Z/etc.tar.gz.gpg",
                "h/2026-11-20/010000Z/etc.tar.gz.gpg"
            ]
        );
    }
}
