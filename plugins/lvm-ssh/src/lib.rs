//! # lvm-ssh — an LVM logical volume on another machine, from a snapshot
//!
//! ```json
//! { "id": "mydisk1", "type": "lvm-ssh", "name": "My Disk 1",
//!   "sshhost": "hostname.domain.com", "sshuser": "root",
//!   "vg_name": "ubuntu-vg", "lv_name": "mydisk1", "size": "5G", "retain_snapshots": 3,
//!   "passphrase": "…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `sshhost`, `sshuser`, `sshport`, `identity_file`, `known_hosts` | as for `folder-ssh` (the user must be allowed to run the LVM commands and `mount`) |
//! | `vg_name`, `lv_name` | the volume to back up |
//! | `size` | space reserved for the snapshot's copy-on-write changes, e.g. `5G` |
//! | `retain_snapshots` | snapshot volumes of this LV to leave in place afterwards (default 1); older ones are removed |
//! | `mount_options` | default `ro`; XFS needs `ro,nouuid` |
//! | `mount_dir` | where snapshots are mounted, default `/mnt` |
//!
//! On the remote machine, in this order:
//!
//! 1. `lvcreate --snapshot --size SIZE --name LV-backups-EPOCH /dev/VG/LV`
//! 2. `mkdir -p MOUNT_DIR/backups-SNAPSHOT` and `mount -o ro /dev/VG/SNAPSHOT` there
//! 3. `tar -cf - -C MOUNT_DIR/backups-SNAPSHOT .`, spliced into the artifact
//! 4. `umount` and `rmdir` — also when mounting or tar failed
//! 5. `lvs` the volume group and `lvremove -f` all but the newest `retain_snapshots`
//!    snapshots named `LV-backups-*` — also when the backup failed, so failures do not
//!    pile up snapshots until the volume group is full.
//!
//! The backup is the tar of a frozen view of the filesystem: consistent, without stopping
//! the services writing to it. Grants derived from these keys: `run: ["ssh"]`.

use backups_sdk::process::{self, Command};
use backups_sdk::ssh::{SSH_KEYS, SshTarget};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use serde::Deserialize;

/// Stdout kept from a control command (`lvs` of a large volume group fits easily).
const CONTROL_OUTPUT: u32 = 1 << 20;

#[derive(Deserialize)]
pub struct Config {
    #[serde(flatten)]
    ssh: SshTarget,
    vg_name: String,
    lv_name: String,
    size: String,
    #[serde(default = "one")]
    retain_snapshots: u32,
    #[serde(default = "ro")]
    mount_options: String,
    #[serde(default = "mnt")]
    mount_dir: String,
}

fn mnt() -> String {
    "/mnt".into()
}

fn one() -> u32 {
    1
}
fn ro() -> String {
    "ro".into()
}

pub struct LvmSsh {
    config: Config,
    started_at: u64,
}

/// LVM names: letters, digits and `+_.-`, not starting with `-`.
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

impl Plugin for LvmSsh {
    type Config = Config;

    fn about() -> About {
        About::new(
            "lvm-ssh",
            "an LVM volume on another machine, archived from a read-only snapshot",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(SSH_KEYS)
        .keys(&[
            "vg_name",
            "lv_name",
            "size",
            "retain_snapshots",
            "mount_options",
            "mount_dir",
        ])
    }

    fn requested_grants(_config: &Config) -> Result<Grants> {
        Ok(Grants {
            run: vec!["ssh".into()],
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
        for (key, value) in [("vg_name", &config.vg_name), ("lv_name", &config.lv_name)] {
            if !valid_lvm_name(value) {
                return Err(PluginError::invalid_config(format!(
                    "{key}: {value:?} is not an LVM name"
                )));
            }
        }
        if !config.mount_dir.starts_with('/') {
            return Err(PluginError::invalid_config(
                "mount_dir: must be an absolute path",
            ));
        }
        let size_ok = config.size.len() > 1
            && config.size[..config.size.len() - 1]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.')
            && config
                .size
                .ends_with(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T']);
        if !size_ok {
            return Err(PluginError::invalid_config(format!(
                "size: {:?} is not an LVM size such as 5G or 500M",
                config.size
            )));
        }
        Ok(LvmSsh {
            config,
            started_at: ctx.started_at,
        })
    }
}

impl LvmSsh {
    fn prefix(&self) -> String {
        format!("{}-backups-", self.config.lv_name)
    }

    /// Runs one control command on the remote machine; a non-zero exit is an error.
    fn remote(&self, what: &str, args: &[&str]) -> Result<String> {
        let cmd: Command = self.config.ssh.command(args);
        let out = process::run(&cmd, CONTROL_OUTPUT)?;
        if out.exit_code != 0 {
            return Err(PluginError::permanent(format!(
                "{what}: `{}` exited with status {}: {}",
                args.join(" "),
                out.exit_code,
                out.stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Removes all but the newest `retain_snapshots` snapshots made by this plugin.
    fn prune(&self) -> Result<Vec<String>> {
        let vg = &self.config.vg_name;
        let listing = self.remote(
            "listing snapshots",
            &["lvs", "--noheadings", "-o", "lv_name", vg],
        )?;
        let prefix = self.prefix();
        let mut ours: Vec<&str> = listing
            .lines()
            .map(str::trim)
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        // Epoch seconds of equal width sort as numbers; compare numerically to be sure.
        ours.sort_by_key(|n| n[prefix.len()..].parse::<u64>().unwrap_or(0));
        let excess = ours
            .len()
            .saturating_sub(self.config.retain_snapshots as usize);
        let mut removed = Vec::new();
        for name in &ours[..excess] {
            self.remote(
                "removing an old snapshot",
                &["lvremove", "-f", &format!("{vg}/{name}")],
            )?;
            removed.push(name.to_string());
        }
        Ok(removed)
    }
}

impl Source for LvmSsh {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let c = &self.config;
        let snapshot = format!("{}{}", self.prefix(), self.started_at);
        let origin = format!("/dev/{}/{}", c.vg_name, c.lv_name);
        let device = format!("/dev/{}/{snapshot}", c.vg_name);
        let mountpoint = format!("{}/backups-{snapshot}", c.mount_dir.trim_end_matches('/'));

        self.remote(
            "creating the snapshot",
            &[
                "lvcreate",
                "--snapshot",
                "--size",
                &c.size,
                "--name",
                &snapshot,
                &origin,
            ],
        )?;
        backups_sdk::info!(
            "snapshot {device} of {origin} created on {}",
            c.ssh.display()
        );

        let archived = self.archive(&device, &mountpoint);
        let pruned = self.prune();
        archived?;
        let removed = pruned?;
        if !removed.is_empty() {
            backups_sdk::info!("removed old snapshots: {}", removed.join(", "));
        }
        Ok(DumpInfo::new("tar"))
    }
}

impl LvmSsh {
    /// Mounts the snapshot, splices a tar of it into the artifact, and always unmounts
    /// what it mounted and removes the mount point. A cleanup failure after a good tar is
    /// still a failure: it leaves a mounted snapshot behind that an operator must see.
    fn archive(&self, device: &str, mountpoint: &str) -> Result<()> {
        let c = &self.config;
        self.remote("making the mount point", &["mkdir", "-p", mountpoint])?;
        let mut problems = Vec::new();
        let archived = match self.remote(
            "mounting the snapshot",
            &["mount", "-o", &c.mount_options, device, mountpoint],
        ) {
            Ok(_) => {
                let tar = c.ssh.command(["tar", "-cf", "-", "-C", mountpoint, "."]);
                let result =
                    process::stream_stdout(&tar).map_err(|e| e.context("tar of the snapshot"));
                if let Err(e) = self.remote("unmounting", &["umount", mountpoint]) {
                    problems.push(e.message);
                }
                result
            }
            Err(e) => Err(e),
        };
        if let Err(e) = self.remote("removing the mount point", &["rmdir", mountpoint]) {
            problems.push(e.message);
        }
        archived?;
        match problems.is_empty() {
            true => Ok(()),
            false => Err(PluginError::permanent(problems.join("; "))),
        }
    }
}

backups_sdk::export_source!(LvmSsh);
