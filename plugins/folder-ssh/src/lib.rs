//! # folder-ssh — a folder on another machine, archived there with tar
//!
//! ```json
//! { "id": "webroot", "type": "folder-ssh", "sshhost": "web1.example.com", "sshuser": "backups",
//!   "path": "/var/www", "excludes": ["cache", "*.tmp"],
//!   "identity_file": "/etc/backups/id_ed25519", "known_hosts": "/etc/backups/known_hosts",
//!   "passphrase": "…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `sshhost`, `sshuser`, `sshport` | where to connect |
//! | `identity_file` | the private key to log in with (only this key is offered) |
//! | `known_hosts` | the file holding the remote host key; the host key is always checked |
//! | `path` | the file or directory to archive on the remote machine |
//! | `excludes` | tar `--exclude` patterns, as for the local folder source |
//!
//! Runs `tar -cf - --exclude=… -C / path` on the remote machine (GNU tar) and splices its
//! output into the artifact: member names are the path without its leading `/`, as for
//! the local folder source. Anything but exit status 0 fails the source — including
//! GNU tar's 1, "file changed as we read it", because such an archive may hold a torn
//! file. ssh never prompts, and a host key that does not match fails the source.
//!
//! With `"incremental"` on the entry, GNU tar does the incremental work on the remote
//! machine too (`tar -c -g SNAPSHOT`): the host keeps the snapshot file of the last full and
//! hands it back; the plugin copies it into a private temporary directory there (`mktemp
//! -d`), lets tar compare against it and update it, reads the updated one back as this
//! run's index and removes the directory. Change detection is GNU tar's own (mtime, ctime,
//! device and inode of directories). The snapshot travels in memory: at most 256 MiB, a
//! tree of a few million files.
//!
//! Grants derived from these keys: `run: ["ssh"]`. To use an ssh agent instead of
//! `identity_file`, also grant `env: ["SSH_AUTH_SOCK"]`.

use backups_sdk::config::{OneOrMany, absolute_path};
use backups_sdk::ssh::{SSH_KEYS, SshTarget};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Incremental, IncrementalSource, IndexReader,
    Plugin, PluginError, Result, Source, process,
};
use serde::Deserialize;
use std::io::{Read, Write};

/// What starts this plugin's index, before the remote path and GNU tar's snapshot file.
const INDEX_MAGIC: &[u8] = b"backups-folder-ssh-index 1\n";
/// The largest snapshot file carried back (it travels through memory).
const SNAPSHOT_MOST: u32 = 256 << 20;

#[derive(Deserialize)]
pub struct Config {
    #[serde(flatten)]
    ssh: SshTarget,
    path: String,
    #[serde(default)]
    excludes: OneOrMany<String>,
}

pub struct FolderSsh {
    config: Config,
    excludes: Vec<String>,
}

impl Plugin for FolderSsh {
    type Config = Config;

    fn about() -> About {
        About::new(
            "folder-ssh",
            "a folder on another machine, archived there with tar over ssh",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(SSH_KEYS)
        .keys(&["path", "excludes"])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec!["ssh".into()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        absolute_path("path", &config.path)?;
        let excludes = config.excludes.to_vec();
        Ok(FolderSsh { config, excludes })
    }
}

impl Source for FolderSsh {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        self.archive(&[])?;
        Ok(DumpInfo::new("tar"))
    }
}

impl IncrementalSource for FolderSsh {
    fn dump_incremental(
        &mut self,
        _out: &mut ArtifactWriter,
        base: Option<&mut IndexReader>,
        index: &mut ArtifactWriter,
    ) -> Result<Incremental> {
        let snapshot = match base.map(|b| self.snapshot_in(b)).transpose()? {
            Some(Ok(snapshot)) => Some(snapshot),
            Some(Err(why)) => {
                backups_sdk::log::warn(&format!("a full instead of an increment: {why}"));
                None
            }
            None => None,
        };
        let full = snapshot.is_none();
        // A private directory on the remote machine, holding the base snapshot if any
        // (without one, tar makes a level-0 archive and writes a new snapshot there).
        let make = match &snapshot {
            Some(_) => r#"umask 077; d=$(mktemp -d) && cat > "$d/snar" && echo "$d""#,
            None => "umask 077; mktemp -d",
        };
        let mut command = self.config.ssh.command(["sh", "-c", make]);
        if let Some(snapshot) = snapshot {
            command = command.stdin(snapshot);
        }
        let made = self.checked(
            process::run(&command, 4096)?,
            "making a temporary directory",
        )?;
        let dir = String::from_utf8(made)
            .unwrap_or_default()
            .trim()
            .to_string();
        if !dir.starts_with('/') || dir.contains(char::is_whitespace) || dir.contains('\'') {
            return Err(PluginError::permanent(format!(
                "mktemp -d on {} answered {dir:?}, not a directory",
                self.config.ssh.display()
            )));
        }
        let snar = format!("{dir}/snar");
        let archived = self.archive(&["-g".to_string(), snar]);
        // The updated snapshot, and the directory removed whatever happened.
        let fetch =
            r#"if [ "$2" = yes ]; then cat "$1/snar"; s=$?; else s=0; fi; rm -rf "$1"; exit $s"#;
        let wanted = if archived.is_ok() { "yes" } else { "no" };
        let fetched = process::run(
            &self
                .config
                .ssh
                .command(["sh", "-c", fetch, "sh", dir.as_str(), wanted]),
            SNAPSHOT_MOST,
        );
        archived?;
        let snapshot = self.checked(fetched?, "reading the snapshot back")?;
        index.write_all(INDEX_MAGIC)?;
        index.write_all(self.config.path.as_bytes())?;
        index.write_all(b"\n")?;
        index.write_all(&snapshot)?;
        Ok(Incremental {
            info: DumpInfo::new("tar"),
            full,
        })
    }
}

impl FolderSsh {
    /// Splices `tar -c [extra…] -f - --exclude=… -C / -- path`, run remotely, into the
    /// artifact.
    fn archive(&self, extra: &[String]) -> Result<()> {
        let member = self.config.path.trim_start_matches('/');
        let member = if member.is_empty() { "." } else { member };
        let mut remote = vec!["tar".to_string(), "-c".into()];
        remote.extend(extra.iter().cloned());
        remote.extend(["-f".into(), "-".into()]);
        remote.extend(self.excludes.iter().map(|e| format!("--exclude={e}")));
        remote.extend(["-C".into(), "/".into(), "--".into(), member.to_string()]);
        backups_sdk::info!(
            "archiving {} on {}",
            self.config.path,
            self.config.ssh.display()
        );
        process::stream_stdout(&self.config.ssh.command(&remote))
            .map_err(|e| e.context(format!("tar over ssh to {}", self.config.ssh.display())))
    }

    /// GNU tar's snapshot file in a base index this plugin wrote for the same path, or
    /// why it cannot be used.
    fn snapshot_in(&self, base: &mut IndexReader) -> Result<std::result::Result<Vec<u8>, String>> {
        let mut bytes = Vec::new();
        base.read_to_end(&mut bytes)?;
        let Some(rest) = bytes.strip_prefix(INDEX_MAGIC) else {
            return Ok(Err("the base index is not one this plugin wrote".into()));
        };
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            return Ok(Err("the base index is cut short".into()));
        };
        if rest[..newline] != *self.config.path.as_bytes() {
            return Ok(Err("the base index is of another path".into()));
        }
        Ok(Ok(rest[newline + 1..].to_vec()))
    }

    /// A control command's stdout, when it exited 0.
    fn checked(&self, out: process::CommandOutput, what: &str) -> Result<Vec<u8>> {
        if out.exit_code != 0 {
            return Err(PluginError::permanent(format!(
                "{what} on {}: exit status {}: {}",
                self.config.ssh.display(),
                out.exit_code,
                out.stderr.trim()
            )));
        }
        Ok(out.stdout)
    }
}

backups_sdk::export_incremental_source!(FolderSsh);
