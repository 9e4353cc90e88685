//! The mysqldump part of the `mysql` and `mysql-ssh` sources: the legacy keys, their
//! checks, the client option file and the command line. The two plugins differ only in
//! where mysqldump runs and how the option file reaches it.

use backups_sdk::config::{OneOrMany, flag};
use backups_sdk::process::{self, Command};
use backups_sdk::{PluginError, Result};
use serde::Deserialize;

/// The keys both plugins accept (besides the ssh ones).
pub const KEYS: &[&str] = &[
    "dbhost",
    "dbport",
    "dbname",
    "dbuser",
    "dbpass",
    "defaults",
    "options",
    "noevents",
    "single_transaction",
];

#[derive(Deserialize, Debug, Clone)]
pub struct MysqlKeys {
    #[serde(default = "localhost")]
    pub dbhost: String,
    pub dbport: Option<u16>,
    #[serde(default)]
    dbname: OneOrMany<String>,
    pub dbuser: Option<String>,
    pub dbpass: Option<String>,
    /// A client option file to use instead of the `db*` credentials.
    pub defaults: Option<String>,
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

/// Checked keys, ready to make command lines from.
#[derive(Debug, Clone)]
pub struct Dump {
    pub keys: MysqlKeys,
    pub databases: Vec<String>,
    extra: Vec<String>,
}

impl MysqlKeys {
    /// Keys for a server found at run time (a restored RDS instance): its address, the
    /// entry's databases and credentials, every other key at its default.
    pub fn for_server(
        host: &str,
        port: u16,
        dbname: Vec<String>,
        dbuser: Option<String>,
        dbpass: Option<String>,
        noevents: bool,
    ) -> MysqlKeys {
        MysqlKeys {
            dbhost: host.to_string(),
            dbport: Some(port),
            dbname: OneOrMany::Many(dbname),
            dbuser,
            dbpass,
            defaults: None,
            options: String::new(),
            noevents,
            single_transaction: true,
        }
    }

    pub fn check(self) -> Result<Dump> {
        let extra: Vec<String> = self
            .options
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let all = extra.iter().any(|o| o == "--all-databases" || o == "-A");
        let databases: Vec<String> = if all {
            Vec::new()
        } else {
            self.dbname
                .to_vec()
                .iter()
                .flat_map(|n| n.split_whitespace().map(str::to_string))
                .collect()
        };
        if databases.is_empty() && !all {
            return Err(PluginError::invalid_config(
                "dbname: missing (or pass --all-databases in options)",
            ));
        }
        if let Some(bad) = extra.iter().find(|o| {
            o.starts_with("--defaults") || o.starts_with("--password") || o.starts_with("-p")
        }) {
            return Err(PluginError::invalid_config(format!(
                "options: {bad} is not allowed: use dbpass or defaults, which stay off every command line"
            )));
        }
        if self.defaults.is_none() && self.dbuser.is_none() {
            return Err(PluginError::invalid_config(
                "dbuser: missing (or give a defaults file)",
            ));
        }
        Ok(Dump {
            keys: self,
            databases,
            extra,
        })
    }
}

/// A value in a MySQL option file: quoted, backslashes and quotes escaped.
fn option_value(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Dump {
    /// The `[client]` option file holding the credentials, or `None` when the job names
    /// its own `defaults` file.
    pub fn option_file(&self) -> Option<String> {
        if self.keys.defaults.is_some() {
            return None;
        }
        let k = &self.keys;
        let mut text = format!("[client]\nhost={}\n", option_value(&k.dbhost));
        if let Some(port) = k.dbport {
            text += &format!("port={port}\n");
        }
        if let Some(user) = &k.dbuser {
            text += &format!("user={}\n", option_value(user));
        }
        if let Some(pass) = &k.dbpass {
            text += &format!("password={}\n", option_value(pass));
        }
        Some(text)
    }

    /// `mysqldump --defaults-file=FILE …`: `defaults_file` is where the option file is (a
    /// private file, `/dev/stdin`), used unless the job names its own.
    pub fn command_line(&self, defaults_file: &str) -> Vec<String> {
        let file = self.keys.defaults.as_deref().unwrap_or(defaults_file);
        // --defaults-file must come first, or mysqldump ignores it.
        let mut args = vec!["mysqldump".to_string(), format!("--defaults-file={file}")];
        if self.keys.single_transaction {
            args.push("--single-transaction".into());
        }
        if !self.keys.noevents {
            args.push("--events".into());
        }
        args.extend(["--routines", "--triggers", "--hex-blob"].map(String::from));
        args.extend(self.extra.iter().cloned());
        // `--databases` for one database too, as the legacy tool passed it: the dump then
        // carries `CREATE DATABASE` and `USE`, and restores with a plain `mysql < dump`.
        if !self.databases.is_empty() {
            args.extend(["--databases".to_string(), "--".to_string()]);
            args.extend(self.databases.iter().cloned());
        }
        args
    }

    /// Runs mysqldump on this machine with its output spliced into the artifact; the
    /// credentials go into a private 0600 file the host removes afterwards. `Ok` means it
    /// exited 0.
    pub fn stream(&self) -> Result<()> {
        let file = match self.option_file() {
            Some(text) => process::private_file("mysql-client.cnf", &text)?,
            None => String::new(),
        };
        let line = self.command_line(&file);
        backups_sdk::info!(
            "dumping {} from {}",
            self.databases.join(", "),
            self.keys.dbhost
        );
        process::stream_stdout(&Command::new(&line[0]).args(line[1..].to_vec()))
            .map_err(|e| e.context("mysqldump"))
    }
}
