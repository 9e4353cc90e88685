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
//! Grants derived from these keys: `run: ["ssh"]`. To use an ssh agent instead of
//! `identity_file`, also grant `env: ["SSH_AUTH_SOCK"]`.

use backups_sdk::config::{OneOrMany, absolute_path};
use backups_sdk::ssh::{SSH_KEYS, SshTarget};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, Result, Source, process,
};
use serde::Deserialize;

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
        let member = self.config.path.trim_start_matches('/');
        let member = if member.is_empty() { "." } else { member };
        let mut remote = vec!["tar".to_string(), "-cf".into(), "-".into()];
        remote.extend(self.excludes.iter().map(|e| format!("--exclude={e}")));
        remote.extend(["-C".into(), "/".into(), "--".into(), member.to_string()]);
        backups_sdk::info!(
            "archiving {} on {}",
            self.config.path,
            self.config.ssh.display()
        );
        process::stream_stdout(&self.config.ssh.command(&remote))
            .map_err(|e| e.context(format!("tar over ssh to {}", self.config.ssh.display())))?;
        Ok(DumpInfo::new("tar"))
    }
}

backups_sdk::export_source!(FolderSsh);
