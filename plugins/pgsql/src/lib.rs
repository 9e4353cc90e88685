//! # pgsql — a PostgreSQL database, with pg_dump
//!
//! ```json
//! { "id": "livecompanydb", "type": "pgsql", "name": "Live Company Data",
//!   "dbhost": "localhost", "dbname": "livecompany",
//!   "dbuser": "backups", "dbpass": "zzzuserwithreadonlyperms",
//!   "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `dbhost` | server host name or socket directory (default `localhost`) |
//! | `dbport` | server port (default 5432) |
//! | `dbname` | the database |
//! | `dbuser`, `dbpass` | credentials (`dbpass` is a secret: redacted everywhere) |
//! | `format` | `"plain"` (default: SQL, restore with `psql`) or `"custom"` (restore with `pg_restore`) |
//! | `options` | extra pg_dump flags as one string, split on spaces |
//!
//! The password goes into a private pgpass file (mode 0600, in the host's tmpdir, removed
//! afterwards) named by `PGPASSFILE`: never on the command line or in the environment.
//! pg_dump never prompts (`--no-password`) and gives up on an unreachable server after
//! `PGCONNECT_TIMEOUT` seconds. Its output is spliced by the host straight into the
//! compression and encryption pipeline; unless it exits 0 the source fails and nothing is
//! uploaded.
//!
//! Grants derived from these keys: `run: ["pg_dump"]`. The command runs as the backups
//! user, outside the sandbox: grant it knowingly.

use backups_sdk::process::{self, Command};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use serde::Deserialize;

const DUMP: &str = "pg_dump";

#[derive(Deserialize)]
pub struct Config {
    #[serde(default = "localhost")]
    dbhost: String,
    dbport: Option<u16>,
    dbname: Option<String>,
    dbuser: Option<String>,
    dbpass: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    options: String,
}

fn localhost() -> String {
    "localhost".into()
}

#[derive(Deserialize, Default, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Plain,
    Custom,
}

pub struct PgSql {
    config: Config,
    dbname: String,
    extra: Vec<String>,
}

impl Plugin for PgSql {
    type Config = Config;

    fn about() -> About {
        About::new("pgsql", "a PostgreSQL database, dumped with pg_dump")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&[
                "dbhost", "dbport", "dbname", "dbuser", "dbpass", "format", "options",
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
        let dbname = config
            .dbname
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| PluginError::invalid_config("dbname: missing"))?;
        let extra: Vec<String> = config
            .options
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if let Some(bad) = extra.iter().find(|o| {
            o.starts_with("-f")
                || o.starts_with("--file")
                || o.starts_with("-F")
                || o.starts_with("--format")
        }) {
            return Err(PluginError::invalid_config(format!(
                "options: {bad} is not allowed: the output is the artifact; use \"format\""
            )));
        }
        Ok(PgSql {
            config,
            dbname,
            extra,
        })
    }
}

/// A field of a pgpass line: `:` and `\` escaped with a backslash.
fn pgpass_field(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

impl Source for PgSql {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let c = &self.config;
        let port = c.dbport.unwrap_or(5432);
        let mut cmd = Command::new(DUMP)
            .args([
                "--no-password",
                "--host",
                &c.dbhost,
                "--port",
                &port.to_string(),
            ])
            .env("PGCONNECT_TIMEOUT", "20")
            // pg_dump looks for ~/.pgpass and service files under HOME; there is none.
            .env("HOME", "/nonexistent");
        if let Some(user) = &c.dbuser {
            cmd = cmd.args(["--username", user]);
        }
        if let Some(pass) = &c.dbpass {
            let line = format!(
                "*:*:*:{}:{}\n",
                pgpass_field(c.dbuser.as_deref().unwrap_or("*")),
                pgpass_field(pass)
            );
            cmd = cmd.env("PGPASSFILE", process::private_file("pgpass", &line)?);
        }
        let kind = match c.format {
            Format::Plain => "sql",
            Format::Custom => {
                cmd = cmd.arg("--format=custom");
                "pgdump"
            }
        };
        cmd = cmd.args(self.extra.clone()).arg("--").arg(&self.dbname);
        backups_sdk::info!("dumping {} from {}:{port}", self.dbname, c.dbhost);
        process::stream_stdout(&cmd).map_err(|e| e.context("pg_dump"))?;
        Ok(DumpInfo::new(kind))
    }
}

backups_sdk::export_source!(PgSql);
