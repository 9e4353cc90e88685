//! A directory destination whose `list` fails while the file `{path}/.fail-list` exists
//! (a failed listing must mean no deletes), which adds malformed entries to its listing
//! while `{path}/.garbage-list` exists (the host must never act on them), and which
//! reports a bucket-style expiry rule while `{path}/.rule-days` exists (for the audit of
//! a backend's own deletion rules). Every delete is appended to `{path}/.deleted`.
//!
//! And it lies on demand, as a buggy or hostile third-party destination would:
//! - `{path}/.lie-store-nothing`: `put` reads every byte, stores nothing, says ok;
//! - `{path}/.lie-unread`: `put` reads nothing, stores nothing, says ok;
//! - `{path}/.lie-half`: `put` stores the first half of the bytes, says ok;
//! - `{path}/.lie-future`: listings add a complete-looking copy, dated next year, beside
//!   every real one;
//! - `{path}/.lie-phantoms`: listings add complete-looking copies, dated within the last
//!   hour, that were never stored (their manifests cannot be read back);
//! - `{path}/.lie-huge-manifest`: `get` of a manifest sends 1.5 GiB.
//! - `{path}/.lie-leftovers`: `list-leftovers` calls every stored object (copies and
//!   manifests) a leftover, dated 1970, beside one made-up name; `remove-leftover` deletes
//!   whatever it is handed (and logs it to `.deleted`), as a confused plugin would.

use backups_sdk::{
    About, Context, DeletionRule, Destination, Leftover, ObjectInfo, ObjectReader, ObjectWriter,
    Plugin, PluginError, Result,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub struct Config {
    path: String,
}

pub struct Flaky {
    root: PathBuf,
}

impl Plugin for Flaky {
    type Config = Config;
    fn about() -> About {
        About::new(
            "flaky",
            "a directory whose listing fails on demand (test fixture)",
        )
        .keys(&["path"])
    }
    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        Ok(Flaky {
            root: PathBuf::from(config.path),
        })
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(ObjectInfo {
                key,
                size: path.metadata()?.len(),
                modified: None,
            });
        }
    }
    Ok(())
}

impl Destination for Flaky {
    /// Written aside (under `.partial/`, which listings skip) and renamed into place only
    /// when every byte arrived: a failed put leaves nothing under `key`.
    fn put(&mut self, key: &str, data: &mut ObjectReader, _size: u64) -> Result<()> {
        if self.root.join(".lie-unread").exists() {
            return Ok(());
        }
        if self.root.join(".lie-store-nothing").exists() {
            std::io::copy(data, &mut std::io::sink())?;
            return Ok(());
        }
        let path = self.root.join(key);
        let aside = self.root.join(".partial").join(key.replace('/', "%2F"));
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::create_dir_all(aside.parent().unwrap())?;
        let half = self.root.join(".lie-half").exists();
        let written = std::fs::File::create(&aside).and_then(|mut file| {
            if half {
                let mut all = Vec::new();
                std::io::Read::read_to_end(data, &mut all)?;
                std::io::Write::write_all(&mut file, &all[..all.len() / 2])
            } else {
                std::io::copy(data, &mut file).map(|_| ())
            }
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&aside);
            return Err(e.into());
        }
        std::fs::rename(&aside, &path)?;
        Ok(())
    }
    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        if key.ends_with(".manifest.json") && self.root.join(".lie-huge-manifest").exists() {
            let block = vec![b' '; 1 << 20];
            for _ in 0..1536 {
                std::io::Write::write_all(sink, &block)?;
            }
            return Ok(());
        }
        let mut file = std::fs::File::open(self.root.join(key))?;
        std::io::copy(&mut file, sink)?;
        Ok(())
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        if self.root.join(".fail-list").exists() {
            return Err(PluginError::transient("listing failed on purpose"));
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out)?;
        out.retain(|o| o.key.starts_with(prefix) && !o.key.starts_with('.'));
        if self.root.join(".garbage-list").exists() {
            out.extend(garbage(prefix));
        }
        if self.root.join(".lie-future").exists() {
            out.extend(relabelled(&out, "2099-01-01/000000Z"));
        }
        if self.root.join(".lie-phantoms").exists() {
            let now = self.root.join(".lie-phantoms");
            let stamp = std::fs::read_to_string(now).unwrap_or_default();
            out.extend(relabelled(&out, stamp.trim()));
        }
        Ok(out)
    }
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<Leftover>> {
        if !self.root.join(".lie-leftovers").exists() {
            return Ok(Vec::new());
        }
        let mut stored = Vec::new();
        walk(&self.root, &self.root, &mut stored)?;
        let mut out: Vec<Leftover> = stored
            .into_iter()
            .filter(|o| o.key.starts_with(prefix) && !o.key.starts_with('.'))
            .map(|o| Leftover {
                id: o.key.clone(),
                key: o.key,
                size: u64::MAX,
                modified: 1,
            })
            .collect();
        out.push(Leftover {
            key: format!("{prefix}2026-01-01/000000Z/made-up.tar.gz.gpg"),
            id: format!("{prefix}2026-01-01/000000Z/made-up.tar.gz.gpg"),
            size: 7,
            modified: 1,
        });
        Ok(out)
    }
    fn remove_leftover(&mut self, leftover: &Leftover) -> Result<()> {
        if !self.root.join(".lie-leftovers").exists() {
            return Err(PluginError::permanent(
                "this destination leaves no leftovers",
            ));
        }
        self.delete(&leftover.id)
    }
    /// `{path}/.rule-days` holding N stands in for a bucket rule expiring objects after N days.
    fn deletion_rules(&mut self) -> Result<Vec<DeletionRule>> {
        match std::fs::read_to_string(self.root.join(".rule-days")) {
            Ok(days) => Ok(vec![DeletionRule {
                id: "expire-old-backups".into(),
                prefix: String::new(),
                expire_after_days: days.trim().parse().unwrap_or(14),
            }]),
            Err(_) => Ok(Vec::new()),
        }
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(".deleted"))?;
        writeln!(log, "{key}")?;
        match std::fs::remove_file(self.root.join(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// For every listed `{host}/{date}/{time}Z/{file}`: the same file under `{host}/{stamp}/`.
fn relabelled(listed: &[ObjectInfo], stamp: &str) -> Vec<ObjectInfo> {
    let mut out = Vec::new();
    for o in listed {
        let parts: Vec<&str> = o.key.splitn(4, '/').collect();
        if let [host, _date, _time, file] = parts[..] {
            let key = format!("{host}/{stamp}/{file}");
            if !listed.iter().any(|l| l.key == key)
                && !out.iter().any(|l: &ObjectInfo| l.key == key)
            {
                out.push(ObjectInfo {
                    key,
                    size: o.size,
                    modified: None,
                });
            }
        }
    }
    out
}

/// Entries no honest listing holds: escapes, absolute paths, empty and absurd names,
/// impossible sizes and times, duplicates, and a flood of look-alikes.
fn garbage(prefix: &str) -> Vec<ObjectInfo> {
    let entry = |key: String, size: u64, modified: Option<u64>| ObjectInfo {
        key,
        size,
        modified,
    };
    let mut out = vec![
        entry(format!("{prefix}../../outside"), 1, None),
        entry("/etc/passwd".into(), 1, None),
        entry(String::new(), 0, None),
        entry(prefix.to_string(), u64::MAX, Some(u64::MAX)),
        entry(
            format!("{prefix}2026-13-45/99:99:99Z/x.tar.gz.gpg"),
            1,
            Some(0),
        ),
        // Six bytes, five characters: byte ranges would cut the `é`.
        entry(
            format!("{prefix}2026-01-01/1é345Z/src.tar.gz.gpg"),
            1,
            Some(0),
        ),
        entry(
            format!("{prefix}2026-01-01/000000Z/../../../outside.tar.gz.gpg"),
            1,
            None,
        ),
        entry(
            format!("{prefix}2026-01-01/000000Z/src.tar.gz.gpg\n/etc/passwd"),
            1,
            None,
        ),
    ];
    for i in 0..20_000 {
        out.push(entry(
            format!("{prefix}1999-01-01/{:06}Z/src.tar.gz.gpg", i % 240_000),
            u64::MAX,
            Some(0),
        ));
    }
    out
}

backups_sdk::export_destination!(Flaky);
