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

use backups_mysqldump::{Dump, KEYS, MysqlKeys};
use backups_sdk::{About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, Result, Source};

pub struct MySql {
    dump: Dump,
}

impl Plugin for MySql {
    type Config = MysqlKeys;

    fn about() -> About {
        About::new("mysql", "MySQL/MariaDB databases, dumped with mysqldump")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(KEYS)
            .secrets(&["dbpass"])
    }

    fn requested_grants(_config: &MysqlKeys) -> Result<Grants> {
        Ok(Grants {
            run: vec!["mysqldump".into()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: MysqlKeys) -> Result<Self> {
        Ok(MySql {
            dump: config.check()?,
        })
    }
}

impl Source for MySql {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        self.dump.stream()?;
        Ok(DumpInfo::new("sql"))
    }
}

backups_sdk::export_source!(MySql);
