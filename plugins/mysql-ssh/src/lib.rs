//! # mysql-ssh — MySQL/MariaDB databases dumped on another machine
//!
//! ```json
//! { "id": "shopdb", "type": "mysql-ssh", "sshhost": "db1.example.com", "sshuser": "backups",
//!   "identity_file": "/etc/backups/id_ed25519", "known_hosts": "/etc/backups/known_hosts",
//!   "dbname": "shop", "dbuser": "backups", "dbpass": "…", "passphrase": "…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `sshhost`, `sshuser`, `sshport`, `identity_file`, `known_hosts` | as for `folder-ssh` |
//! | `dbhost`, `dbport` | the server as seen from the remote machine (default `localhost`) |
//! | `dbname` | the database; several as a list or separated by spaces |
//! | `dbuser`, `dbpass` | credentials (`dbpass` is a secret) |
//! | `defaults` | an option file **on the remote machine** to use instead of `db*` credentials |
//! | `options`, `noevents`, `single_transaction` | as for `mysql` |
//!
//! mysqldump runs on the remote machine; the credentials travel as an option file on its
//! standard input through the ssh channel (`--defaults-file=/dev/stdin`), so they appear
//! in no command line on either machine and in no file on the remote one. The dump comes
//! back over ssh and is spliced into the artifact; anything but exit status 0 fails the
//! source.
//!
//! Grants derived from these keys: `run: ["ssh"]`.

use backups_mysqldump::{Dump, KEYS, MysqlKeys};
use backups_sdk::process;
use backups_sdk::ssh::{SSH_KEYS, SshTarget};
use backups_sdk::{About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, Result, Source};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    #[serde(flatten)]
    ssh: SshTarget,
    #[serde(flatten)]
    mysql: MysqlKeys,
}

pub struct MySqlSsh {
    ssh: SshTarget,
    dump: Dump,
}

impl Plugin for MySqlSsh {
    type Config = Config;

    fn about() -> About {
        About::new(
            "mysql-ssh",
            "MySQL/MariaDB databases dumped on another machine over ssh",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(SSH_KEYS)
        .keys(KEYS)
        .secrets(&["dbpass"])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec!["ssh".into()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        Ok(MySqlSsh {
            ssh: config.ssh,
            dump: config.mysql.check()?,
        })
    }
}

impl Source for MySqlSsh {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        // The option file reaches the remote mysqldump on its stdin, through the ssh channel.
        let line = self.dump.command_line("/dev/stdin");
        let mut cmd = self.ssh.command(&line);
        if let Some(text) = self.dump.option_file() {
            cmd = cmd.stdin(text.into_bytes());
        }
        backups_sdk::info!(
            "dumping {} via {}",
            self.dump.databases.join(", "),
            self.ssh.display()
        );
        process::stream_stdout(&cmd)
            .map_err(|e| e.context(format!("mysqldump over ssh to {}", self.ssh.display())))?;
        Ok(DumpInfo::new("sql"))
    }
}

backups_sdk::export_source!(MySqlSsh);
