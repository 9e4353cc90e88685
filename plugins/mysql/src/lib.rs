//! # mysql — MySQL and MariaDB databases, with mysqldump
//!
//! ```json
//! { "id": "livecompanydb", "type": "mysql", "name": "Live Company Data",
//!   "dbhost": "localhost", "dbname": "livecompany",
//!   "dbuser": "backups", "dbpass": "zzzuserwithreadonlyperms",
//!   "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `dbhost` | server host name (default `localhost`) |
//! | `dbport` | server port (default 3306) |
//! | `dbname` | the database; several as a list or separated by spaces (then each gets `CREATE DATABASE`/`USE`) |
//! | `dbuser`, `dbpass` | credentials (`dbpass` is a secret: redacted everywhere) |
//! | `defaults` | a client option file to use instead of `db*` credentials (`--defaults-file`) |
//! | `options` | extra mysqldump flags as one string, split on spaces; `--all-databases` makes `dbname` unnecessary |
//! | `noevents` | don't pass `--events` (for servers older than 5.1) |
//! | `single_transaction` | `--single-transaction`, a consistent snapshot of InnoDB tables without locking (default true) |
//!
//! The credentials go into a private client option file (mode 0600, in the host's tmpdir,
//! removed afterwards) passed as `--defaults-file`: never on the command line, where `ps`
//! would show them. mysqldump's output is spliced by the host straight into the
//! compression and encryption pipeline; it exits 0 or the source fails and nothing is
//! uploaded (a wrong password, an unknown database, a killed dump all fail the source).
//!
//! Grants derived from these keys: `run: ["mysqldump"]`. The command runs as the backups
//! user, outside the sandbox: grant it knowingly.

use backups_sdk::process::{self, Command};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use serde::Deserialize;

const DUMP: &str = "mysqldump";

#[derive(Deserialize)]
pub struct Config {
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

/// One name, several in a list, or several separated by spaces.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Names {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Names {
    fn list(&self) -> Vec<String> {
        match self {
            Names::None => Vec::new(),
            Names::One(s) => s.split_whitespace().map(str::to_string).collect(),
            Names::Many(v) => v.clone(),
        }
    }
}

/// Legacy flags: 1/0, true/false, "1"/"0".
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::Number(n) => Ok(n.as_u64() != Some(0)),
        serde_json::Value::String(s) => Ok(!matches!(s.as_str(), "" | "0" | "false" | "no")),
        _ => Ok(false),
    }
}

pub struct MySql {
    config: Config,
    databases: Vec<String>,
    extra: Vec<String>,
}

impl Plugin for MySql {
    type Config = Config;

    fn about() -> About {
        About::new("mysql", "MySQL/MariaDB databases, dumped with mysqldump")
            .version(env!("CARGO_PKG_VERSION"))
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
            run: vec![DUMP.into()],
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
        let databases = if all {
            Vec::new()
        } else {
            config.dbname.list()
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
                "options: {bad} is not allowed here: use dbpass or defaults, which stay off the command line"
            )));
        }
        if config.defaults.is_none() && config.dbuser.is_none() {
            return Err(PluginError::invalid_config(
                "dbuser: missing (or give a defaults file)",
            ));
        }
        Ok(MySql {
            config,
            databases,
            extra,
        })
    }
}

/// A value in a MySQL option file: quoted, with backslashes and quotes escaped.
fn option_value(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl MySql {
    fn defaults_file(&self) -> Result<String> {
        if let Some(path) = &self.config.defaults {
            return Ok(path.clone());
        }
        let c = &self.config;
        let mut text = String::from("[client]\n");
        text += &format!("host={}\n", option_value(&c.dbhost));
        if let Some(port) = c.dbport {
            text += &format!("port={port}\n");
        }
        if let Some(user) = &c.dbuser {
            text += &format!("user={}\n", option_value(user));
        }
        if let Some(pass) = &c.dbpass {
            text += &format!("password={}\n", option_value(pass));
        }
        process::private_file("mysql-client.cnf", &text)
    }
}

impl Source for MySql {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        // --defaults-file must come first, or mysqldump ignores it.
        let mut cmd = Command::new(DUMP).arg(format!("--defaults-file={}", self.defaults_file()?));
        if self.config.single_transaction {
            cmd = cmd.arg("--single-transaction");
        }
        if !self.config.noevents {
            cmd = cmd.arg("--events");
        }
        cmd = cmd
            .args(["--routines", "--triggers", "--hex-blob"])
            .args(self.extra.clone());
        cmd = match self.databases.as_slice() {
            [] => cmd,
            [one] => cmd.arg("--").arg(one),
            many => cmd.arg("--databases").arg("--").args(many.to_vec()),
        };
        backups_sdk::info!(
            "dumping {} from {}",
            self.databases.join(", "),
            self.config.dbhost
        );
        process::stream_stdout(&cmd).map_err(|e| e.context("mysqldump"))?;
        Ok(DumpInfo::new("sql"))
    }
}

backups_sdk::export_source!(MySql);
