//! Running smbclient against one share, and reading its failures.
//!
//! smbclient is run by the host (the plugin's `run` grant), never through a shell, with
//! the credentials in a private 0600 file (`-A`) and one `-c` script per call. Two facts
//! about smbclient shape this module:
//! - in a `-c` script, `;` separates commands even inside quotes, and only the last
//!   command's status becomes the exit status; callers put the command whose outcome
//!   matters last, and paths are checked to hold no `;` or `"` (see `crate::remote`);
//! - failures (`NT_STATUS_…`) are printed on stdout unless `-E` sends every message to
//!   stderr; a download uses `-E` so that stdout carries only the object's bytes.

use backups_sdk::process::{self, Command};
use backups_sdk::{ErrorKind, ObjectReader, ObjectWriter, PluginError, Result};

/// stdout kept from a control command (a few lines, or a listing).
pub const MAX_REPLY: u32 = 1 << 20;
/// stdout kept from a recursive listing: about 150 000 entries.
pub const MAX_LISTING: u32 = 16 << 20;

/// One share, reached with one set of credentials.
pub struct Share {
    /// `//host/share`, as smbclient names a service.
    pub service: String,
    pub port: u16,
    /// The private credentials file made by the host for this instance.
    pub auth_file: String,
}

/// What one smbclient call printed, and how it ended.
pub struct Reply {
    pub exit_code: i32,
    pub stdout: String,
    /// stdout and stderr together: where smbclient's messages are, whichever stream.
    pub messages: String,
}

impl Reply {
    fn from(output: process::CommandOutput) -> Reply {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        Reply {
            exit_code: output.exit_code,
            messages: format!("{stdout}\n{}", output.stderr),
            stdout,
        }
    }

    /// The reply, or the typed error its messages describe (`what` says what was done).
    pub fn check(self, what: &str) -> Result<Reply> {
        if self.exit_code == 0 {
            Ok(self)
        } else {
            Err(failure(what, &self.messages))
        }
    }

    /// smbclient says the path it was given does not exist.
    pub fn says_not_found(&self) -> bool {
        matches!(
            status_in(&self.messages).map(kind_of),
            Some((ErrorKind::NotFound, _))
        )
    }
}

impl Share {
    fn command(&self, script: &str, messages_on_stderr: bool) -> Command {
        let command = Command::new("smbclient")
            .arg(&self.service)
            .args(["-p", &self.port.to_string()])
            .args(["-A", &self.auth_file]);
        let command = if messages_on_stderr {
            command.arg("-E")
        } else {
            command
        };
        command
            .args(["-c", script])
            // `ls` prints times in the client's zone; the listing parser reads UTC.
            .env("TZ", "UTC")
    }

    /// Runs a control script (mkdir, ls, rename, del) and returns what it printed.
    pub fn run(&self, script: &str, max_stdout: u32) -> Result<Reply> {
        process::run(&self.command(script, false), max_stdout)
            .map(Reply::from)
            .map_err(|e| e.context("smbclient"))
    }

    /// Runs a script ending in `put - NAME` with the object as smbclient's stdin.
    pub fn upload(&self, script: &str, data: &mut ObjectReader) -> Result<Reply> {
        process::stdin_from(&self.command(script, false), data, MAX_REPLY)
            .map(Reply::from)
            .map_err(|e| e.context("smbclient"))
    }

    /// Runs `get NAME -` with smbclient's stdout going to `sink`; returns the bytes written.
    pub fn download(&self, path: &str, sink: &mut ObjectWriter, what: &str) -> Result<u64> {
        let command = self.command(&format!("get {} -", quoted(path)), true);
        process::stdout_to(&command, sink).map_err(|e| match status_in(&e.message) {
            // The host's error carries smbclient's stderr: type it like any other reply.
            Some(_) => failure(what, &e.message),
            None => e.context(what),
        })
    }
}

/// A path as one argument of an smbclient command (paths never hold `"`; see `remote`).
pub fn quoted(path: &str) -> String {
    format!("\"{path}\"")
}

/// The typed error for smbclient's `messages` about `what`.
pub fn failure(what: &str, messages: &str) -> PluginError {
    let detail = messages
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !benign(l))
        .collect::<Vec<_>>()
        .join("; ");
    let detail = if detail.is_empty() {
        "smbclient failed without saying why".to_string()
    } else {
        detail
    };
    match status_in(messages).map(kind_of) {
        Some((kind, hint)) => PluginError::new(kind, format!("{what}: {detail}{hint}")),
        None => PluginError::permanent(format!("{what}: {detail}")),
    }
}

/// Statuses smbclient prints for commands whose failure is expected (creating a
/// directory that exists) and that say nothing about the call's outcome.
fn benign(line: &str) -> bool {
    line.contains("NT_STATUS_OBJECT_NAME_COLLISION") && line.contains("making remote directory")
}

/// Stands for any status of a connection that could not be made at all.
const UNREACHABLE: &str = "do_connect";

/// The first status that matters in smbclient's messages, e.g. `NT_STATUS_LOGON_FAILURE`,
/// or [`UNREACHABLE`].
fn status_in(messages: &str) -> Option<&str> {
    for line in messages.lines().filter(|l| !benign(l)) {
        // "do_connect: Connection to host failed (Error NT_STATUS_…)": whichever status,
        // the server could not be reached.
        if line.contains("do_connect:") {
            return Some(UNREACHABLE);
        }
        if let Some(at) = line.find("NT_STATUS_") {
            let status = &line[at..];
            let end = status
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(status.len());
            return Some(&status[..end]);
        }
    }
    None
}

/// The kind of error a status is, and a hint for the operator.
fn kind_of(status: &str) -> (ErrorKind, &'static str) {
    use ErrorKind::*;
    match status {
        "NT_STATUS_LOGON_FAILURE"
        | "NT_STATUS_WRONG_PASSWORD"
        | "NT_STATUS_NO_SUCH_USER"
        | "NT_STATUS_ACCOUNT_DISABLED"
        | "NT_STATUS_ACCOUNT_LOCKED_OUT"
        | "NT_STATUS_ACCOUNT_RESTRICTION"
        | "NT_STATUS_ACCOUNT_EXPIRED"
        | "NT_STATUS_PASSWORD_EXPIRED"
        | "NT_STATUS_PASSWORD_MUST_CHANGE"
        | "NT_STATUS_LOGON_TYPE_NOT_GRANTED"
        | "NT_STATUS_INVALID_LOGON_HOURS"
        | "NT_STATUS_INVALID_WORKSTATION" => (
            Auth,
            " (check credentials.username, credentials.password and workgroup)",
        ),
        "NT_STATUS_ACCESS_DENIED" | "NT_STATUS_NETWORK_ACCESS_DENIED" => (
            Auth,
            " (the account lacks a permission on the share or folder)",
        ),
        "NT_STATUS_BAD_NETWORK_NAME" => (InvalidConfig, " (share: no such share on host)"),
        "NT_STATUS_OBJECT_NAME_NOT_FOUND"
        | "NT_STATUS_OBJECT_PATH_NOT_FOUND"
        | "NT_STATUS_NO_SUCH_FILE"
        | "NT_STATUS_NOT_FOUND" => (NotFound, ""),
        UNREACHABLE
        | "NT_STATUS_CONNECTION_REFUSED"
        | "NT_STATUS_CONNECTION_RESET"
        | "NT_STATUS_CONNECTION_DISCONNECTED"
        | "NT_STATUS_CONNECTION_ABORTED"
        | "NT_STATUS_IO_TIMEOUT"
        | "NT_STATUS_HOST_UNREACHABLE"
        | "NT_STATUS_NETWORK_UNREACHABLE"
        | "NT_STATUS_NETWORK_NAME_DELETED"
        | "NT_STATUS_PIPE_BROKEN"
        | "NT_STATUS_INSUFFICIENT_RESOURCES"
        | "NT_STATUS_NETWORK_BUSY"
        | "NT_STATUS_REQUEST_NOT_ACCEPTED"
        | "NT_STATUS_SHARING_VIOLATION" => (Transient, " (is the server up and reachable?)"),
        "NT_STATUS_DISK_FULL" | "NT_STATUS_QUOTA_EXCEEDED" => {
            (Permanent, " (the share is out of space)")
        }
        _ => (Permanent, ""),
    }
}
