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
//! | `defaults` | a pgpass file (`host:port:database:user:password` lines) that pg_dump reads when there is no `dbpass` |
//! | `format` | `"plain"` (default: SQL, restore with `psql`) or `"custom"` (restore with `pg_restore`) |
//! | `options` | extra pg_dump flags as one string, split on spaces |
//!
//! The password goes into a private pgpass file (mode 0600, in the host's tmpdir, removed
//! afterwards) named by `PGPASSFILE`: never on the command line or in the environment.
//! A job that keeps its credentials in a file of its own names it as `defaults` (the key
//! the legacy tool accepted beside mysql's): pg_dump reads it where it is, the plugin never
//! does, and the host counts it as a secret file, so no other plugin's grant may reach it.
//! `dbpass` wins when both are given, as it did in the legacy tool, which ignored
//! `defaults`. libpq skips a pgpass file that group or others can read: keep it 0600.
//! pg_dump never prompts (`--no-password`) and gives up on an unreachable server after
//! `PGCONNECT_TIMEOUT` seconds. Its output is spliced by the host straight into the
//! compression and encryption pipeline; unless it exits 0 the source fails and nothing is
//! uploaded.
//!
//! Grants derived from these keys: `run: ["pg_dump"]`. The command runs as the backups
//! user, outside the sandbox: grant it knowingly.

use backups_pgdump::{Format, PG_DUMP, PgDump};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    #[serde(default = "localhost")]
    dbhost: String,
    dbport: Option<u16>,
    dbname: Option<String>,
    dbuser: Option<String>,
    dbpass: Option<String>,
    defaults: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    options: String,
}

fn localhost() -> String {
    "localhost".into()
}

pub struct PgSql {
    dump: PgDump,
}

impl Plugin for PgSql {
    type Config = Config;

    fn about() -> About {
        About::new("pgsql", "a PostgreSQL database, dumped with pg_dump")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&[
                "dbhost", "dbport", "dbname", "dbuser", "dbpass", "defaults", "format", "options",
            ])
            .secrets(&["dbpass"])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec![PG_DUMP.into()],
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
            dump: PgDump {
                port: config.dbport.unwrap_or(5432),
                host: config.dbhost,
                dbname,
                user: config.dbuser,
                password: config.dbpass,
                passfile: config.defaults.filter(|f| !f.is_empty()),
                format: config.format,
                extra,
            },
        })
    }
}

impl Source for PgSql {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        self.dump.stream()?;
        Ok(DumpInfo::new(self.dump.format.kind()))
    }
}

backups_sdk::export_source!(PgSql);
