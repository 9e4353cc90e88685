//! Running commands on another machine through a granted `ssh`.
//!
//! ssh hands the remote side one string that the remote user's shell parses again, so
//! every argument is quoted here for a POSIX shell: a path with spaces or a pattern with
//! `*` reaches the remote command as one literal argument. Host keys are always checked
//! (`StrictHostKeyChecking=yes`, never `accept-new`), and ssh never prompts
//! (`BatchMode=yes`): a changed host key or a missing key fails the source.

use crate::process::Command;
use serde::Deserialize;

/// The keys every ssh-based plugin accepts.
#[derive(Deserialize, Clone, Debug)]
pub struct SshTarget {
    /// The remote host (`sshhost`), as ssh resolves it.
    pub sshhost: String,
    /// The remote user (`sshuser`); default: ssh's (the backups user's name).
    pub sshuser: Option<String>,
    /// The remote port (`sshport`); default 22.
    pub sshport: Option<u16>,
    /// Private key file (`ssh -i`); only this key is offered.
    pub identity_file: Option<String>,
    /// A known_hosts file holding the remote host key; default: the backups user's own.
    pub known_hosts: Option<String>,
}

/// Config keys of [`SshTarget`], for `About::keys`.
pub const SSH_KEYS: &[&str] = &[
    "sshhost",
    "sshuser",
    "sshport",
    "identity_file",
    "known_hosts",
];

impl SshTarget {
    /// `ssh … host -- 'program' 'arg' …`: `remote` is the remote command and its arguments.
    pub fn command<I, S>(&self, remote: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cmd = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30"]);
        if let Some(file) = &self.known_hosts {
            cmd = cmd.args(["-o", &format!("UserKnownHostsFile={file}")]);
        }
        if let Some(identity) = &self.identity_file {
            cmd = cmd.args(["-i", identity, "-o", "IdentitiesOnly=yes"]);
        }
        if let Some(port) = self.sshport {
            cmd = cmd.args(["-p", &port.to_string()]);
        }
        if let Some(user) = &self.sshuser {
            cmd = cmd.args(["-l", user]);
        }
        // An agent, when the job grants its socket.
        if let Ok(sock) = std::env::var("SSH_AUTH_SOCK") {
            cmd = cmd.env("SSH_AUTH_SOCK", sock);
        }
        let line: Vec<String> = remote
            .into_iter()
            .map(|a| shell_quote(a.as_ref()))
            .collect();
        cmd.arg("--").arg(&self.sshhost).arg(line.join(" "))
    }

    /// `user@host:port`, for messages.
    pub fn display(&self) -> String {
        format!(
            "{}{}{}",
            self.sshuser
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.sshhost,
            self.sshport.map(|p| format!(":{p}")).unwrap_or_default()
        )
    }
}

/// Quotes `arg` for a POSIX shell: `it's` → `'it'\''s'`.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}
