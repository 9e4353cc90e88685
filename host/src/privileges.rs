//! Who may run a backup. Plugins are sandboxed, but the host runs dumps (`mysqldump`,
//! `pg_dump`, `ssh`) with its own privileges: as root, a granted command is a root
//! command. So, as the legacy tool did, backups run as a dedicated user: root is refused
//! unless asked for (`--allow-root`), and `RUN_AS_USER`, when set, must name the user
//! running it. Where root-owned folders must be read, grant that user `tar` through sudo
//! (README, "Running as a dedicated user").

use crate::runtime::users::user_name;
use anyhow::{Result, bail};

/// Refuses to go on as the wrong user. `allow_root` is `--allow-root`.
pub fn check(allow_root: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let me = user_name(euid).unwrap_or_else(|| format!("uid {euid}"));
    if let Some(expected) = std::env::var("RUN_AS_USER").ok().filter(|u| !u.is_empty()) {
        if me != expected {
            bail!(
                "RUN_AS_USER is {expected:?} but this is running as {me:?}: \
                 run it as that user (sudo -H -u {expected} backups ...)"
            );
        }
        // The operator named this user, root included: that is the explicit choice.
        return Ok(());
    }
    if euid == 0 && !allow_root {
        bail!(
            "refusing to run as root: granted commands (dumps, ssh) would run as root. \
             Run as a dedicated user (sudo -H -u backups backups ...), or pass --allow-root \
             (or set BACKUPS_ALLOW_ROOT=1) if you mean it"
        );
    }
    Ok(())
}
