//! # samba — a folder on an SMB/CIFS share (Samba, Windows, a NAS), through smbclient
//!
//! ```json
//! { "id": "bigshare", "type": "samba", "host": "server1.local.lan", "share": "TheShare",
//!   "workgroup": "WORKGROUP",
//!   "credentials": { "username": "backups", "password": "getyourown" },
//!   "suffix": "gpg", "folder": "backups/web1", "retention_copies": 7 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `host` | the SMB server, by name or address |
//! | `share` | the share on it (it must exist, writable by the account) |
//! | `workgroup` | the account's domain or workgroup (optional) |
//! | `credentials.username`, `credentials.password` | the account; also accepted flat as `username` / `password` |
//! | `port` | the server's TCP port (default 445) |
//! | `folder` | a directory inside the share to keep the backups under (created when missing) |
//! | `suffix` | legacy: the extension the old tool gave its files. Objects are now named by the host, `{hostname}/{date}/{time}Z/{id}.tar.gz.gpg` on every destination (retention and restore read that layout), so it is accepted and has no effect |
//!
//! An object `web1/2026-11-22/020000Z/etc.tar.gz.gpg` becomes the file
//! `\folder\web1\2026-11-22\020000Z\etc.tar.gz.gpg` on the share. Every operation is one
//! `smbclient //host/share -p port -A authfile -c '…'` run by the host; the credentials
//! are in a private 0600 file made by the host for this instance and removed with it,
//! never on a command line. A put creates the directories, streams the artifact into
//! smbclient's stdin (`put - NAME.partial`; the bytes go from the host to smbclient and
//! never through the plugin, so memory stays flat), checks the size the server reports,
//! and only then renames the file to its name (replacing one of that name): a failed or
//! interrupted upload never leaves a file under the real name, and its `.partial` is
//! deleted (if the server went away meanwhile, or the run was killed, the `.partial` stays;
//! listings ignore it, and a later run's sweep removes it once it is older than the
//! entry's `leftover_age`). Downloads are `get NAME -` into the host's stream. Listings are recursive `ls`
//! (size and write time, read in UTC), without `.partial` files; deleting the last file of
//! a run's directory removes the emptied directories. Retention (`retention_copies`,
//! `retention_days`) is decided by the host, which deletes through this plugin (the legacy
//! tool never deleted anything here).
//!
//! Failures are typed from smbclient's status: `NT_STATUS_LOGON_FAILURE` and other account
//! problems are `auth`, `NT_STATUS_ACCESS_DENIED` too; `NT_STATUS_BAD_NETWORK_NAME` (no
//! such share) is `invalid_config`; a missing file is `not_found`; a server that cannot
//! be reached (connection refused, timeout, reset) is `transient`, retried by the host.
//!
//! Grants derived from these keys: `run: ["smbclient"]`. smbclient runs as the backups
//! user, outside the sandbox, and connects to `host:port` itself: grant it knowingly.
//! Paths holding `"`, `;` or `\` are refused (smbclient's `-c` scripts cannot quote them).

mod listing;
mod remote;
mod smbclient;

use backups_sdk::{
    About, Context, Destination, ErrorKind, Grants, Leftover, ObjectInfo, ObjectReader,
    ObjectWriter, Plugin, PluginError, Result, process,
};
use remote::Folder;
use serde::Deserialize;
use smbclient::{MAX_LISTING, MAX_REPLY, Share, quoted};

/// Added to the name of a file being uploaded, until it is complete.
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Deserialize)]
pub struct Config {
    host: String,
    share: String,
    workgroup: Option<String>,
    #[serde(default)]
    credentials: Credentials,
    username: Option<String>,
    password: Option<String>,
    #[serde(default = "smb_port")]
    port: u16,
    #[serde(default)]
    folder: String,
    /// Legacy; see the header.
    #[allow(dead_code)]
    suffix: Option<String>,
}

fn smb_port() -> u16 {
    445
}

#[derive(Deserialize, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

impl Config {
    /// The text of smbclient's authentication file (`-A`).
    fn auth_file(&self) -> Result<String> {
        let username = self
            .credentials
            .username
            .as_ref()
            .or(self.username.as_ref());
        let password = self
            .credentials
            .password
            .as_ref()
            .or(self.password.as_ref());
        let (Some(username), Some(password)) = (username, password) else {
            return Err(PluginError::invalid_config(
                "credentials: give credentials.username and credentials.password",
            ));
        };
        // The file is line-based, and smbclient drops the blanks that start a value.
        let fields = [
            ("credentials.username", username.as_str()),
            ("credentials.password", password.as_str()),
            ("workgroup", self.workgroup.as_deref().unwrap_or("")),
        ];
        for (key, value) in fields {
            if value.contains(['\n', '\r', '\0']) || value.starts_with([' ', '\t']) {
                return Err(PluginError::invalid_config(format!(
                    "{key}: smbclient cannot read a value with a line break or leading blanks"
                )));
            }
        }
        let mut text = format!("username = {username}\npassword = {password}\n");
        if let Some(workgroup) = self.workgroup.as_deref().filter(|w| !w.is_empty()) {
            text += &format!("domain = {workgroup}\n");
        }
        Ok(text)
    }

    fn service(&self) -> Result<String> {
        let host = self.host.trim();
        if host.is_empty() || host.contains(['/', '\\', ' ']) {
            return Err(PluginError::invalid_config(format!(
                "host: {:?} is not a server name or address",
                self.host
            )));
        }
        let share = self.share.trim_matches(['/', '\\']);
        if share.is_empty() || share.contains(['/', '\\']) {
            return Err(PluginError::invalid_config(format!(
                "share: {:?} is not a share name",
                self.share
            )));
        }
        Ok(format!("//{host}/{share}"))
    }
}

pub struct Samba {
    share: Share,
    folder: Folder,
}

impl Plugin for Samba {
    type Config = Config;

    fn about() -> About {
        About::new(
            "samba",
            "a folder on an SMB/CIFS share (Samba, Windows, NAS), through smbclient",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "host",
            "share",
            "workgroup",
            "credentials",
            "username",
            "password",
            "port",
            "folder",
            "suffix",
        ])
        .secrets(&["credentials.password", "password"])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec!["smbclient".into()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let service = config.service()?;
        let folder = Folder::new(&config.folder)?;
        let auth = config.auth_file()?;
        // Made by the host, 0600, removed when this instance ends.
        let auth_file = process::private_file("smbclient.auth", &auth)?;
        Ok(Samba {
            share: Share {
                service,
                port: config.port,
                auth_file,
            },
            folder,
        })
    }
}

impl Samba {
    /// Uploads to `partial`, checks the size the server got, then renames into `target`.
    fn upload(
        &self,
        key: &str,
        target: &str,
        partial: &str,
        data: &mut ObjectReader,
        size: u64,
    ) -> Result<()> {
        let what = format!("uploading {key} to {}", self.share.service);
        // Creating a directory that exists fails harmlessly; the put is the last command,
        // so its status is smbclient's exit status.
        let mut script: String = remote::parents(target)
            .map(|dir| format!("mkdir {}; ", quoted(dir)))
            .collect();
        script += &format!("put - {}", quoted(partial));
        self.share.upload(&script, data)?.check(&what)?;

        let stored = self.stat(partial)?.map(|e| e.size);
        if stored != Some(size) {
            return Err(PluginError::transient(format!(
                "{what}: the server holds {} of {size} bytes",
                stored.map_or("none".into(), |n| n.to_string())
            )));
        }
        let rename = format!("rename {} {} -f", quoted(partial), quoted(target));
        self.share.run(&rename, MAX_REPLY)?.check(&what)?;
        Ok(())
    }

    /// The listing entry of one file, if it exists.
    fn stat(&self, path: &str) -> Result<Option<listing::Entry>> {
        let reply = self.share.run(&format!("ls {}", quoted(path)), MAX_REPLY)?;
        if reply.exit_code != 0 && reply.says_not_found() {
            return Ok(None);
        }
        let reply = reply.check(&format!("reading the size of {path}"))?;
        let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        Ok(listing::parse(&reply.stdout, parent)
            .into_iter()
            .find(|e| e.path == path))
    }

    /// Best effort: the file a failed upload left, if any. Listings skip it if it stays.
    fn remove_partial(&self, path: &str) {
        let error = match self.share.run(&format!("del {}", quoted(path)), MAX_REPLY) {
            Ok(reply) if reply.exit_code == 0 || reply.says_not_found() => return,
            Ok(reply) => smbclient::failure("deleting it", &reply.messages),
            Err(e) => e,
        };
        // A server we cannot reach or log in to now most likely never got the upload
        // either (the upload's own error says why); anything else is worth a warning.
        if matches!(error.kind, ErrorKind::Transient | ErrorKind::Auth) {
            backups_sdk::debug!("not removing {path}: {}", error.message);
        } else {
            backups_sdk::warn!("{path} may be left on the share: {}", error.message);
        }
    }
}

impl Destination for Samba {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let target = self.folder.path_of(key)?;
        let partial = format!("{target}{PARTIAL_SUFFIX}");
        let result = self.upload(key, &target, &partial, data, size);
        if result.is_err() {
            self.remove_partial(&partial);
        }
        result
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        let path = self.folder.path_of(key)?;
        let what = format!("downloading {key} from {}", self.share.service);
        self.share.download(&path, sink, &what)?;
        Ok(())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .files(prefix)?
            .into_iter()
            .filter(|(key, _)| !key.ends_with(PARTIAL_SUFFIX))
            .map(|(key, e)| ObjectInfo {
                key,
                size: e.size,
                modified: e.modified,
            })
            .collect())
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        let path = self.folder.path_of(key)?;
        self.remove(&path, &format!("deleting {key}"))
    }

    /// The `.partial` files of uploads a killed run never finished (a failed upload
    /// removes its own, unless the server went away meanwhile).
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<Leftover>> {
        Ok(self
            .files(prefix)?
            .into_iter()
            .filter_map(|(key, e)| {
                Some(Leftover {
                    key: key.strip_suffix(PARTIAL_SUFFIX)?.to_string(),
                    id: e.path,
                    size: e.size,
                    modified: e.modified.unwrap_or(0),
                })
            })
            .collect())
    }

    fn remove_leftover(&mut self, leftover: &Leftover) -> Result<()> {
        // Only ever a `.partial` file inside this entry's folder, by a name put would use.
        let key = self
            .folder
            .key_of(&leftover.id)
            .filter(|key| key.ends_with(PARTIAL_SUFFIX))
            .ok_or_else(|| {
                PluginError::permanent(format!(
                    "{:?} is not a .partial file in this destination's folder",
                    leftover.id
                ))
            })?;
        let path = self.folder.path_of(&key)?;
        self.remove(&path, &format!("removing the leftover {path}"))
    }
}

impl Samba {
    /// Every file whose key starts with `prefix`, `.partial` ones included, listed
    /// recursively from the deepest directory the prefix names.
    fn files(&self, prefix: &str) -> Result<Vec<(String, listing::Entry)>> {
        let dir = self.folder.dir_of_prefix(prefix)?;
        let mask = if dir.is_empty() {
            "*".to_string()
        } else {
            format!("{dir}/*")
        };
        let reply = self
            .share
            .run(&format!("recurse; ls {}", quoted(&mask)), MAX_LISTING)?;
        if reply.exit_code != 0 && reply.says_not_found() {
            return Ok(Vec::new());
        }
        let reply = reply.check(&format!("listing {prefix:?} on {}", self.share.service))?;
        Ok(listing::parse(&reply.stdout, &dir)
            .into_iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| Some((self.folder.key_of(&e.path)?, e)))
            .filter(|(key, _)| key.starts_with(prefix))
            .collect())
    }

    /// Deletes the file at `path` (a missing one is fine), then the run and date
    /// directories that emptied: removing a directory that still holds something fails
    /// harmlessly, and every command of the script runs whatever the one before it did.
    fn remove(&self, path: &str, what: &str) -> Result<()> {
        let reply = self
            .share
            .run(&format!("del {}", quoted(path)), MAX_REPLY)?;
        if reply.exit_code != 0 && !reply.says_not_found() {
            reply.check(&format!("{what} on {}", self.share.service))?;
        }
        let script: Vec<String> = remote::parents(path)
            .rev()
            .filter(|dir| self.folder.holds(dir))
            .map(|dir| format!("rmdir {}", quoted(dir)))
            .collect();
        if !script.is_empty() {
            let _ = self.share.run(&script.join("; "), MAX_REPLY);
        }
        Ok(())
    }
}

backups_sdk::export_destination!(Samba);
