//! # folder — back up a directory as a tar archive
//!
//! ```json
//! { "id": "accountsdata", "type": "folder", "name": "Live Accounts Data",
//!   "path": "/var/lib/myaccountspkg/data", "excludes": ["tmp", "*~"] }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `path` | the file or directory to back up (granted read-only, nothing else is) |
//! | `excludes` | GNU tar `--exclude` patterns, matched as GNU tar matches them when run the legacy tool's way (`cd $(dirname path); tar -cf - --exclude … ./$(basename path)`): against the member name `./{basename of path}/…` and each of its tails after a `/`, with `*` matching `/` too. So a pattern without `/` matches a name anywhere in the tree (`tmp`, `*~`), one with `/` the end of a path (`cache/*.db`, `base/logs/*`); a pattern naming folders above `path` (`data/*` for `/srv/data/base`) or ending in `/` matches nothing. One that matches `path` itself fails the source, naming the pattern (GNU tar would write an empty archive) |
//! | `on_unreadable` | `"fail"` (default): a file that cannot be read fails the source, because an archive missing files is not a whole backup; `"warn"`: archive the rest and report each file |
//!
//! The archive is what `tar -cf - /path` makes: member names are the absolute path with
//! the leading `/` removed, so `tar -xf - -C /` restores in place. Names are kept byte for
//! byte (a latin-1 `caf\xe9.txt` included); permission bits, numeric owners and owner
//! names, and mtimes (before 1970 too) are kept; symlinks are stored as links and never
//! followed; a file with several hard links is stored once, its other names as links to
//! it; FIFOs and device nodes are stored as nodes (type and numbers), never opened;
//! sockets are skipped with a warning (as GNU tar does).
//!
//! What the host lets no plugin read is left out and named in one warning, never a
//! failure: pseudo-filesystems (`/proc`, `/sys`, `/dev`, … — a backup of `/` skips them as
//! `tar --one-file-system` users expect) and the host's own directories (its tmpdir, state
//! dir and cache, when `path` contains them).

mod changes;
mod excludes;
mod members;
mod reading;
mod walk;

use backups_sdk::config::{OneOrMany, absolute_path};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Incremental, IncrementalSource, IndexReader,
    Plugin, PluginError, Result, Source,
};
use changes::{Base, IndexWriter};
use excludes::Excludes;
use serde::Deserialize;
use std::io::{BufWriter, Write};
use walk::{CHUNK, Changes, Walk, shown};

/// How many paths a report line lists before summarising (the log gets them all).
const LIST_AT_MOST: usize = 20;

#[derive(Deserialize)]
pub struct Config {
    path: String,
    /// The legacy tool took a list; a single string is accepted too.
    #[serde(default)]
    excludes: OneOrMany<String>,
    #[serde(default)]
    on_unreadable: OnUnreadable,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnUnreadable {
    #[default]
    Fail,
    Warn,
}

pub struct Folder {
    /// The absolute path, as bytes, without a trailing `/` (except for `/` itself).
    root: Vec<u8>,
    excludes: Excludes,
    /// As written, to name the one that matched.
    patterns: Vec<String>,
    on_unreadable: OnUnreadable,
}

impl Plugin for Folder {
    type Config = Config;

    fn about() -> About {
        About::new(
            "folder",
            "a file or directory, archived with tar inside the sandbox",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["path", "excludes", "on_unreadable"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            read: vec![config.path.clone()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let root = absolute_path("path", &config.path)?;
        let mut root = root.to_string_lossy().into_owned().into_bytes();
        while root.len() > 1 && root.ends_with(b"/") {
            root.pop();
        }
        let patterns = config.excludes.to_vec();
        Ok(Folder {
            root,
            excludes: Excludes::new(&patterns),
            patterns,
            on_unreadable: config.on_unreadable,
        })
    }
}

impl Source for Folder {
    fn dump(&mut self, out: &mut ArtifactWriter) -> Result<DumpInfo> {
        self.archive(out, None)
    }
}

/// With `"incremental"` on the entry, the host asks for GNU tar's incremental format: a
/// dumpdir member per directory (what it holds, so that `tar -xG` deletes what is gone)
/// and only the entries that changed since the full whose index is `base`.
impl IncrementalSource for Folder {
    fn dump_incremental(
        &mut self,
        out: &mut ArtifactWriter,
        base: Option<&mut IndexReader>,
        index: &mut ArtifactWriter,
    ) -> Result<Incremental> {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let base = match base.map(|input| Base::read(input, &self.root)) {
            Some(Ok(base)) => Some(base),
            Some(Err(why)) => {
                backups_sdk::log::warn(&format!("a full instead of an increment: {why}"));
                None
            }
            None => None,
        };
        let full = base.is_none();
        let index = IndexWriter::start(index, &self.root, started)
            .map_err(|e| PluginError::from_io(&e, "writing the index"))?;
        let info = self.archive(out, Some(Changes { base, index }))?;
        Ok(Incremental { info, full })
    }
}

impl Folder {
    /// The archive of the tree: whole, or (with `changes`) in the incremental format.
    fn archive<'a>(
        &'a self,
        out: &mut ArtifactWriter,
        changes: Option<Changes<'a>>,
    ) -> Result<DumpInfo> {
        let mut info = DumpInfo::new("tar");
        let mut walk = Walk::new(
            BufWriter::with_capacity(CHUNK, out),
            &self.root,
            &self.excludes,
        );
        if let Some(changes) = changes {
            walk = walk.incremental(changes);
        }
        if let Some(pattern) = walk
            .exclude_name(&self.root)
            .and_then(|name| self.excludes.matching(&name))
            .map(|i| &self.patterns[i])
        {
            return Err(PluginError::invalid_config(format!(
                "excludes: {pattern:?} matches {} itself (GNU tar matches patterns against \
                 the member names ./{}/…), so the archive would hold nothing",
                shown(&self.root),
                shown(self.root.rsplit(|&b| b == b'/').next().unwrap_or_default()),
            )));
        }
        walk.run(&self.root)?;
        let Walk {
            archive,
            members,
            unchanged,
            unreadable,
            skipped,
            warnings,
            ..
        } = walk;
        archive
            .finish()
            .and_then(|mut buffered| buffered.flush())
            .map_err(|e| PluginError::from_io(&e, "finishing the archive"))?;

        if members + unchanged == 0 {
            return Err(PluginError::permanent(format!(
                "{}: the archive holds no member at all{}",
                shown(&self.root),
                unreadable
                    .first()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            )));
        }
        for warning in warnings {
            info.warn(warning);
        }
        if !skipped.is_empty() {
            info.warn(format!(
                "not archived, as the host lets no plugin read them: {}",
                at_most(&skipped)
            ));
        }
        if !unreadable.is_empty() {
            // Every one in the log; the report line stays readable.
            for path in &unreadable {
                backups_sdk::log::warn(&format!("not archived: {path}"));
            }
            if self.on_unreadable == OnUnreadable::Fail {
                return Err(PluginError::permanent(format!(
                    "{} path(s) could not be read, so the archive would not be whole \
                     (set \"on_unreadable\": \"warn\" to archive the rest): {}",
                    unreadable.len(),
                    at_most(&unreadable)
                )));
            }
            info.warn(format!(
                "{} path(s) not archived (on_unreadable is \"warn\"; each is in the log): {}",
                unreadable.len(),
                at_most(&unreadable)
            ));
        }
        Ok(info)
    }
}

/// The first [`LIST_AT_MOST`] of `paths`, and how many more.
fn at_most(paths: &[String]) -> String {
    let mut list: Vec<&str> = paths
        .iter()
        .take(LIST_AT_MOST)
        .map(String::as_str)
        .collect();
    let more = paths.len().saturating_sub(LIST_AT_MOST);
    let tail = format!("… and {more} more");
    if more > 0 {
        list.push(&tail);
    }
    list.join("; ")
}

backups_sdk::export_incremental_source!(Folder);
