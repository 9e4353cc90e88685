//! The pg_dump part of the `pgsql` and `rds-pgsql` sources: the command line, and the
//! password in a private pgpass file (mode 0600, in the host's tmpdir, removed afterwards)
//! named by `PGPASSFILE` — never on the command line or in the environment. pg_dump never
//! prompts (`--no-password`) and gives up on an unreachable server after
//! `PGCONNECT_TIMEOUT` seconds.

use backups_sdk::Result;
use backups_sdk::process::{self, Command};
use serde::Deserialize;

pub const PG_DUMP: &str = "pg_dump";

/// Output formats (the `format` key): what the artifact's kind becomes.
#[derive(Deserialize, Debug, Default, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SQL text; restore with `psql`.
    #[default]
    Plain,
    /// pg_dump's archive; restore with `pg_restore`.
    Custom,
}

impl Format {
    /// The artifact kind for its object name.
    pub fn kind(self) -> &'static str {
        match self {
            Format::Plain => "sql",
            Format::Custom => "pgdump",
        }
    }
}

/// One database to dump.
#[derive(Debug, Clone)]
pub struct PgDump {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A pgpass file of the operator's (the legacy `defaults` key), read by pg_dump itself
    /// when there is no `password`.
    pub passfile: Option<String>,
    pub format: Format,
    /// Extra flags, already checked by the caller.
    pub extra: Vec<String>,
}

/// A field of a pgpass line: `:` and `\` escaped with a backslash.
fn pgpass_field(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

impl PgDump {
    /// The pg_dump command. Writes the pgpass file (through the host) when there is a
    /// password; names the operator's own when there is none and `passfile` is set.
    pub fn command(&self) -> Result<Command> {
        let mut cmd = Command::new(PG_DUMP)
            .args([
                "--no-password",
                "--host",
                &self.host,
                "--port",
                &self.port.to_string(),
            ])
            .env("PGCONNECT_TIMEOUT", "20")
            // pg_dump looks for ~/.pgpass and service files under HOME; there is none.
            .env("HOME", "/nonexistent");
        if let Some(user) = &self.user {
            cmd = cmd.args(["--username", user]);
        }
        if let Some(pass) = &self.password {
            let line = format!(
                "*:*:*:{}:{}\n",
                pgpass_field(self.user.as_deref().unwrap_or("*")),
                pgpass_field(pass)
            );
            cmd = cmd.env("PGPASSFILE", process::private_file("pgpass", &line)?);
        } else if let Some(file) = &self.passfile {
            cmd = cmd.env("PGPASSFILE", file);
        }
        if self.format == Format::Custom {
            cmd = cmd.arg("--format=custom");
        }
        Ok(cmd.args(self.extra.clone()).arg("--").arg(&self.dbname))
    }

    /// Runs pg_dump with its output spliced into the artifact. `Ok` means it exited 0.
    pub fn stream(&self) -> Result<()> {
        backups_sdk::info!("dumping {} from {}:{}", self.dbname, self.host, self.port);
        process::stream_stdout(&self.command()?).map_err(|e| e.context(PG_DUMP))
    }
}
