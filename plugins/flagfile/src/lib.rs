//! # flagfile — touch a file after every successful run
//!
//! ```json
//! { "type": "flagfile", "flagfile": "/backups/gitdata.ok" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `flagfile` | the file to write (`filename` is accepted too, as the legacy README's table named it) |
//!
//! After a run in which every source reached every destination, the file is rewritten
//! holding `OK` (as the legacy tool wrote it: checks that read the file keep working), so
//! its mtime is the time of the last good backup. Monitoring
//! then alerts on the file's age (the legacy README's `file_age_secs` over SNMP, or
//! node_exporter's textfile collector). A failed run leaves the file alone — which is the
//! point: its age keeps growing.
//!
//! Grant: WASI grants directories, so the flag file's directory is granted read-write.
//! Keep the flag file in a directory of its own.

use backups_sdk::{
    About, Context, Grants, Notifier, Plugin, PluginError, Report, ReportKind, Result,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub struct Config {
    flagfile: Option<String>,
    filename: Option<String>,
}

impl Config {
    fn path(&self) -> Result<PathBuf> {
        let path = self
            .flagfile
            .as_ref()
            .or(self.filename.as_ref())
            .ok_or_else(|| PluginError::invalid_config("flagfile: missing (the file to touch)"))?;
        if !path.starts_with('/') {
            return Err(PluginError::invalid_config(format!(
                "flagfile: {path:?} must be absolute"
            )));
        }
        Ok(PathBuf::from(path))
    }
}

pub struct FlagFile {
    path: PathBuf,
}

impl Plugin for FlagFile {
    type Config = Config;

    fn about() -> About {
        About::new("flagfile", "touch a file after each successful run")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&["flagfile", "filename"])
            // As the legacy tool: a flag file marks success and nothing else.
            .notify_by_default(true, false)
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let path = config.path()?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        Ok(Grants {
            write: vec![dir.display().to_string()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        Ok(FlagFile {
            path: config.path()?,
        })
    }
}

impl Notifier for FlagFile {
    fn notify(&mut self, report: &Report) -> Result<()> {
        if report.kind != ReportKind::Run || !report.success {
            return Ok(());
        }
        std::fs::write(&self.path, "OK")
            .map_err(|e| PluginError::from_io(&e, format!("writing {}", self.path.display())))
    }
}

backups_sdk::export_notifier!(FlagFile);
