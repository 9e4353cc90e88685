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

use backups_sdk::process;
use backups_sdk::ssh::{SSH_KEYS, SshTarget};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    #[serde(flatten)]
    ssh: SshTarget,
    #[serde(default = "localhost")]
    dbhost: String,
    dbport: Option<u16>,
    #[serde(default)]
    dbname: Names,
    dbuser: Option<String>,
    dbpass: Option<String>,
    defaults: Option<String>,
    #[serde(default)]
    options: String,
    #[serde(default, deserialize_with = "flag")]
    noevents: bool,
    #[serde(default = "yes", deserialize_with = "flag")]
    single_transaction: bool,
}

fn localhost() -> String {
    "localhost".into()
}
fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Names {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::Number(n) => Ok(n.as_u64() != Some(0)),
        serde_json::Value::String(s) => Ok(!matches!(s.as_str(), "" | "0" | "false" | "no")),
        _ => Ok(false),
    }
}

pub struct MySqlSsh {
    config: Config,
    databases: Vec<String>,
    extra: Vec<String>,
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
        .keys(&[
            "dbhost",
            "dbport",
            "dbname",
            "dbuser",
            "dbpass",
            "defaults",
            "options",
            "noevents",
            "single_transaction",
        ])
        .secrets(&["dbpass"])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec!["ssh".into()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let extra: Vec<String> = config
            .options
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let all = extra.iter().any(|o| o == "--all-databases" || o == "-A");
        let databases = match &config.dbname {
            _ if all => Vec::new(),
            Names::None => Vec::new(),
            Names::One(s) => s.split_whitespace().map(str::to_string).collect(),
            Names::Many(v) => v.clone(),
        };
        if databases.is_empty() && !all {
            return Err(PluginError::invalid_config(
                "dbname: missing (or pass --all-databases in options)",
            ));
        }
        if let Some(bad) = extra
            .iter()
            .find(|o| o.starts_with("--defaults") || o.starts_with("--password") || *o == "-p")
        {
            return Err(PluginError::invalid_config(format!(
                "options: {bad} is not allowed here: use dbpass or defaults"
            )));
        }
        if config.defaults.is_none() && config.dbuser.is_none() {
            return Err(PluginError::invalid_config(
                "dbuser: missing (or give a remote defaults file)",
            ));
        }
        Ok(MySqlSsh {
            config,
            databases,
            extra,
        })
    }
}

fn option_value(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Source for MySqlSsh {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let c = &self.config;
        let mut remote = vec!["mysqldump".to_string()];
        let mut stdin = None;
        match &c.defaults {
            Some(file) => remote.push(format!("--defaults-file={file}")),
            None => {
                let mut text = format!("[client]\nhost={}\n", option_value(&c.dbhost));
                if let Some(port) = c.dbport {
                    text += &format!("port={port}\n");
                }
                if let Some(user) = &c.dbuser {
                    text += &format!("user={}\n", option_value(user));
                }
                if let Some(pass) = &c.dbpass {
                    text += &format!("password={}\n", option_value(pass));
                }
                remote.push("--defaults-file=/dev/stdin".into());
                stdin = Some(text.into_bytes());
            }
        }
        if c.single_transaction {
            remote.push("--single-transaction".into());
        }
        if !c.noevents {
            remote.push("--events".into());
        }
        remote.extend(["--routines", "--triggers", "--hex-blob"].map(String::from));
        remote.extend(self.extra.iter().cloned());
        match self.databases.as_slice() {
            [] => {}
            [one] => remote.extend(["--".to_string(), one.clone()]),
            many => {
                remote.extend(["--databases".to_string(), "--".to_string()]);
                remote.extend(many.iter().cloned());
            }
        }
        let mut cmd = c.ssh.command(&remote);
        if let Some(bytes) = stdin {
            cmd = cmd.stdin(bytes);
        }
        backups_sdk::info!(
            "dumping {} via {}",
            self.databases.join(", "),
            c.ssh.display()
        );
        process::stream_stdout(&cmd)
            .map_err(|e| e.context(format!("mysqldump over ssh to {}", c.ssh.display())))?;
        Ok(DumpInfo::new("sql"))
    }
}

backups_sdk::export_source!(MySqlSsh);
