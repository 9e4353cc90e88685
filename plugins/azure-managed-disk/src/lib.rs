//! # azure-managed-disk — a snapshot of an Azure managed disk, kept in Azure
//!
//! ```json
//! { "id": "mydisk1", "type": "azure-managed-disk", "name": "My Disk 1",
//!   "subscription_id": "285adaab-abcd-41cc-1234-9f256543d534",
//!   "source_resource_group": "MC_KUBERNETES_AZURECLUSTER1_NORTHEUROPE",
//!   "destination_resource_group": "MyBackupsResourceGroup",
//!   "disk_name": "mydisk1", "retain_snapshots": 3, "passphrase": "…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `subscription_id` | the Azure subscription (a GUID) |
//! | `source_resource_group` | the resource group the managed disk is in |
//! | `destination_resource_group` | the resource group the snapshots are made in (same subscription) |
//! | `disk_name` | the managed disk's name in `source_resource_group` |
//! | `retain_snapshots` | this disk's snapshots made by backups to keep in the destination group, the new one included (default 1) |
//! | `incremental` | make incremental snapshots (default false: full copies, as the legacy tool made) |
//! | `wait_minutes` | how long to wait for each long-running operation (the snapshot's creation, each deletion) before giving up (default 30) |
//! | `management_endpoint` | Azure Resource Manager (default `https://management.azure.com`; a sovereign cloud's, or a test server) |
//! | `login_endpoint` | Microsoft Entra ID (default `https://login.microsoftonline.com`) |
//! | `token_scope` | the token's scope (default `https://management.azure.com/.default`; a sovereign cloud's ARM, e.g. `https://management.chinacloudapi.cn/.default`) |
//!
//! The service principal comes from the environment, as for the legacy tool: `TENANT_ID`,
//! `CLIENT_ID` and `CLIENT_KEY` (its client secret). It needs a role that lets it read the
//! disk and write, list and delete snapshots in the destination group.
//!
//! One run, through the ARM REST API (Microsoft.Compute api-version `2023-04-02`):
//!
//! 1. a token: `POST {login_endpoint}/{TENANT_ID}/oauth2/v2.0/token`, client-credentials
//!    grant, scope `token_scope`;
//! 2. `GET …/resourceGroups/{source}/providers/Microsoft.Compute/disks/{disk}`: the disk's
//!    id and location;
//! 3. `PUT …/resourceGroups/{destination}/providers/Microsoft.Compute/snapshots/{name}`
//!    with `createOption: Copy` from the disk, named `{disk}-backups-{yyyymmddThhmmssZ}`
//!    (the run's start, UTC) and tagged `created-by: backups`,
//!    `backups-source-disk: {disk id}` (and the job, entry and run); then the
//!    long-running operation is polled (`Azure-AsyncOperation`, else `Location`, else the
//!    snapshot's `provisioningState`, honouring `Retry-After`, each poll logged) until it
//!    ends or `wait_minutes` pass;
//! 4. `GET …/snapshots` of the destination group (every `nextLink` page): of the
//!    snapshots that carry *both* tags for this disk, the new one and the newest
//!    `retain_snapshots - 1` that succeeded are kept; older and failed ones are deleted
//!    (`DELETE`, its operation polled the same way). Snapshots without the tags — made by
//!    hand, by another tool, of another disk — are never touched, nor is one still being
//!    made by another run.
//!
//! The artifact is a JSON status record (kind `json`): the snapshot's name, id, state and
//! creation time, the source disk, what was kept and what was pruned. It is encrypted and
//! stored like any other artifact, so destinations and notifications report the snapshot.
//!
//! Failures: a refused token is `auth`, naming the variable to check (the secret itself is
//! never part of a message); 401/403 from ARM `auth`; a missing disk or resource group
//! `not-found`; throttling (429), 5xx and network errors `transient`; an operation that
//! ends `Failed` or `Canceled` `permanent` with ARM's message — and nothing is written, so
//! nothing is uploaded. A failed deletion of an old snapshot does not fail the backup: it is
//! a warning in the report and in the status record.
//!
//! Grants derived from these keys: `net` to the two endpoints' hosts (and nothing else);
//! `env` `TENANT_ID`, `CLIENT_ID`, `CLIENT_KEY`.

mod arm;

use arm::{Arm, COMPUTE_API_VERSION, Credentials, Endpoints, Outcome, arm_error};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use backups_storage_http as http;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DEFAULT_MANAGEMENT: &str = "https://management.azure.com";
const DEFAULT_LOGIN: &str = "https://login.microsoftonline.com";
const DEFAULT_SCOPE: &str = "https://management.azure.com/.default";
/// The tags that mark a snapshot as this plugin's, for this disk: retention deletes
/// nothing that lacks them.
const TAG_CREATED_BY: &str = "created-by";
const TAG_CREATED_BY_VALUE: &str = "backups";
const TAG_SOURCE_DISK: &str = "backups-source-disk";
/// Snapshot names are at most 80 characters; the suffix `-backups-20260301T020000Z` takes 25.
const MAX_NAME: usize = 80;
const NAME_INFIX: &str = "-backups-";
/// Listing pages followed at most: a `nextLink` that never ends must not hold the run.
const MAX_PAGES: usize = 1000;

#[derive(Deserialize)]
pub struct Config {
    subscription_id: Option<String>,
    source_resource_group: Option<String>,
    destination_resource_group: Option<String>,
    disk_name: Option<String>,
    #[serde(default = "one")]
    retain_snapshots: u32,
    #[serde(default, deserialize_with = "backups_sdk::config::flag")]
    incremental: bool,
    #[serde(default = "thirty")]
    wait_minutes: u64,
    management_endpoint: Option<String>,
    login_endpoint: Option<String>,
    token_scope: Option<String>,
}

fn one() -> u32 {
    1
}
fn thirty() -> u64 {
    30
}

impl Config {
    fn management(&self) -> Result<String> {
        endpoint(
            "management_endpoint",
            self.management_endpoint.as_deref(),
            DEFAULT_MANAGEMENT,
        )
    }

    fn login(&self) -> Result<String> {
        endpoint(
            "login_endpoint",
            self.login_endpoint.as_deref(),
            DEFAULT_LOGIN,
        )
    }
}

/// An endpoint key's URL without its trailing `/`, checked to be one a grant can name.
fn endpoint(key: &str, value: Option<&str>, default: &str) -> Result<String> {
    let url = value.unwrap_or(default).trim().trim_end_matches('/');
    http::grant_for(key, url)?;
    Ok(url.to_string())
}

/// The value of a required key, or `invalid-config` naming it.
fn required<'a>(value: &'a Option<String>, key: &str, what: &str) -> Result<&'a str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PluginError::invalid_config(format!("{key}: missing ({what})")))
}

/// Checks an ARM name against `allowed` characters and `max` length: names go into URL
/// paths, so anything that could change the path (`/`, `?`, `#`, `%`) is refused here.
fn checked_name<'a>(
    value: &'a Option<String>,
    key: &str,
    what: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<&'a str> {
    let name = required(value, key, what)?;
    if name.chars().count() > max || !name.chars().all(allowed) {
        return Err(PluginError::invalid_config(format!(
            "{key}: {name:?} is not {what}"
        )));
    }
    Ok(name)
}

pub struct AzureManagedDisk {
    arm: Arm,
    subscription: String,
    source_group: String,
    destination_group: String,
    disk: String,
    retain: usize,
    incremental: bool,
    wait_minutes: u64,
    ctx: Context,
}

impl Plugin for AzureManagedDisk {
    type Config = Config;

    fn about() -> About {
        About::new(
            "azure-managed-disk",
            "a snapshot of an Azure managed disk, made and pruned through Azure Resource Manager",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "subscription_id",
            "source_resource_group",
            "destination_resource_group",
            "disk_name",
            "retain_snapshots",
            "incremental",
            "wait_minutes",
            "management_endpoint",
            "login_endpoint",
            "token_scope",
        ])
        // The client secret comes from the environment: the host redacts its value.
        .secrets(&["env:CLIENT_KEY"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let mut net = vec![
            http::grant_for("login_endpoint", &config.login()?)?,
            http::grant_for("management_endpoint", &config.management()?)?,
        ];
        net.dedup();
        Ok(Grants {
            net,
            env: [arm::TENANT_ENV, arm::CLIENT_ENV, arm::SECRET_ENV]
                .map(String::from)
                .to_vec(),
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
        let subscription = checked_name(
            &config.subscription_id,
            "subscription_id",
            "a subscription id (a GUID)",
            64,
            |c| c.is_ascii_alphanumeric() || c == '-',
        )?;
        // Resource groups: letters, digits, `_-.()`, at most 90; disks: `_-.`, at most 80.
        let group_char = |c: char| c.is_alphanumeric() || "_-.()".contains(c);
        let source_group = checked_name(
            &config.source_resource_group,
            "source_resource_group",
            "a resource group name",
            90,
            group_char,
        )?;
        let destination_group = checked_name(
            &config.destination_resource_group,
            "destination_resource_group",
            "a resource group name",
            90,
            group_char,
        )?;
        let disk = checked_name(
            &config.disk_name,
            "disk_name",
            "a managed disk name",
            80,
            |c| c.is_ascii_alphanumeric() || "_-.".contains(c),
        )?;
        if config.retain_snapshots == 0 {
            return Err(PluginError::invalid_config(
                "retain_snapshots: must be at least 1 (the snapshot just made is always kept)",
            ));
        }
        if !(1..=720).contains(&config.wait_minutes) {
            return Err(PluginError::invalid_config(format!(
                "wait_minutes: {} is out of range (1 to 720)",
                config.wait_minutes
            )));
        }
        let scope = config
            .token_scope
            .clone()
            .unwrap_or_else(|| DEFAULT_SCOPE.to_string());
        if scope.trim().is_empty() {
            return Err(PluginError::invalid_config("token_scope: empty"));
        }
        let endpoints = Endpoints {
            login: config.login()?,
            management: config.management()?,
            scope,
        };
        let credentials = Credentials::from_env()?;
        Ok(AzureManagedDisk {
            arm: Arm::new(credentials, endpoints),
            subscription: subscription.to_string(),
            source_group: source_group.to_string(),
            destination_group: destination_group.to_string(),
            disk: disk.to_string(),
            retain: config.retain_snapshots as usize,
            incremental: config.incremental,
            wait_minutes: config.wait_minutes,
            ctx,
        })
    }
}

/// A snapshot as the listing describes it: what retention needs.
struct Listed {
    name: String,
    state: String,
    created: Option<jiff::Timestamp>,
}

impl AzureManagedDisk {
    fn group_url(&self, group: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute",
            self.arm.management(),
            http::encode_path(&self.subscription),
            http::encode_path(group)
        )
    }

    fn disk_url(&self) -> String {
        format!(
            "{}/disks/{}?api-version={COMPUTE_API_VERSION}",
            self.group_url(&self.source_group),
            http::encode_path(&self.disk)
        )
    }

    fn snapshot_url(&self, name: &str) -> String {
        format!(
            "{}/snapshots/{}?api-version={COMPUTE_API_VERSION}",
            self.group_url(&self.destination_group),
            http::encode_path(name)
        )
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.wait_minutes * 60)
    }

    /// `{disk}-backups-{yyyymmddThhmmssZ}` of the run's start: unique per disk and run
    /// second, sorted by time, and within ARM's 80 characters.
    fn snapshot_name(&self) -> Result<String> {
        let stamp = stamp(self.ctx.started_at)?.strftime("%Y%m%dT%H%M%SZ");
        let stamp = stamp.to_string();
        let room = MAX_NAME - NAME_INFIX.len() - stamp.len();
        let disk: String = self.disk.chars().take(room).collect();
        Ok(format!("{disk}{NAME_INFIX}{stamp}"))
    }

    /// The source disk's ARM id and location.
    fn source_disk(&mut self) -> Result<(String, String)> {
        let url = self.disk_url();
        let reply = self.arm.request("GET", &url, None)?;
        if reply.status == 404 {
            return Err(PluginError::not_found(format!(
                "disk {:?} not found in resource group {:?} of subscription {}: {}",
                self.disk,
                self.source_group,
                self.subscription,
                arm_error("GET disk", &reply).message
            )));
        }
        if !reply.is_success() {
            return Err(arm_error(&format!("reading disk {:?}", self.disk), &reply));
        }
        let disk: Value = reply.json("the disk")?;
        match (disk["id"].as_str(), disk["location"].as_str()) {
            (Some(id), Some(location)) => Ok((id.to_string(), location.to_string())),
            _ => Err(PluginError::permanent(format!(
                "disk {:?}: ARM's answer has no id or location",
                self.disk
            ))),
        }
    }

    /// Creates the snapshot and waits for it: its resource, as ARM describes it after the
    /// operation succeeded.
    fn create_snapshot(&mut self, name: &str, disk_id: &str, location: &str) -> Result<Value> {
        let started = stamp(self.ctx.started_at)?.to_string();
        let body = json!({
            "location": location,
            "tags": {
                TAG_CREATED_BY: TAG_CREATED_BY_VALUE,
                TAG_SOURCE_DISK: disk_id,
                "backups-job": self.ctx.job,
                "backups-entry": self.ctx.entry_id,
                "backups-run": self.ctx.run_id,
                "backups-started": started,
            },
            "properties": {
                "creationData": { "createOption": "Copy", "sourceResourceId": disk_id },
                "incremental": self.incremental,
            },
        });
        let url = self.snapshot_url(name);
        let what = format!("snapshot {name}");
        let reply = self.arm.request("PUT", &url, Some(&body))?;
        if !(200..=202).contains(&reply.status) {
            return Err(arm_error(&format!("creating {what}"), &reply));
        }
        backups_sdk::info!(
            "creating {what} of disk {} in resource group {} (HTTP {})",
            self.disk,
            self.destination_group,
            reply.status
        );
        let deadline = self.deadline();
        match self
            .arm
            .wait(&what, &reply, Some(&url), deadline, self.wait_minutes)?
        {
            Outcome::Succeeded => {}
            Outcome::Failed { status, error } => {
                return Err(PluginError::permanent(format!(
                    "{what} of disk {}: the operation ended {status}: {}",
                    self.disk,
                    error.describe()
                )));
            }
        }
        let reply = self.arm.request("GET", &url, None)?;
        if !reply.is_success() {
            return Err(arm_error(&format!("reading {what}"), &reply));
        }
        let snapshot: Value = reply.json(&what)?;
        let state = snapshot["properties"]["provisioningState"]
            .as_str()
            .unwrap_or("Succeeded");
        if !state.eq_ignore_ascii_case("succeeded") {
            return Err(PluginError::permanent(format!(
                "{what}: the operation succeeded but the snapshot is {state}"
            )));
        }
        Ok(snapshot)
    }

    /// Every snapshot in the destination group that this plugin made of this disk.
    fn own_snapshots(&mut self, disk_id: &str) -> Result<Vec<Listed>> {
        let mut url = format!(
            "{}/snapshots?api-version={COMPUTE_API_VERSION}",
            self.group_url(&self.destination_group)
        );
        let mut own = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self.arm.request("GET", &url, None)?;
            if !reply.is_success() {
                return Err(arm_error("listing snapshots", &reply));
            }
            let page: Value = reply.json("the snapshot listing")?;
            for snapshot in page["value"].as_array().into_iter().flatten() {
                let tags = &snapshot["tags"];
                let ours = tags[TAG_CREATED_BY].as_str() == Some(TAG_CREATED_BY_VALUE)
                    && tags[TAG_SOURCE_DISK]
                        .as_str()
                        .is_some_and(|d| d.eq_ignore_ascii_case(disk_id));
                let Some(name) = snapshot["name"].as_str() else {
                    continue;
                };
                if ours {
                    let properties = &snapshot["properties"];
                    own.push(Listed {
                        name: name.to_string(),
                        state: properties["provisioningState"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        created: properties["timeCreated"]
                            .as_str()
                            .and_then(|t| t.parse().ok()),
                    });
                }
            }
            match page["nextLink"].as_str().filter(|l| !l.is_empty()) {
                Some(next) => url = next.to_string(),
                None => return Ok(own),
            }
        }
        Err(PluginError::permanent(format!(
            "listing snapshots: more than {MAX_PAGES} pages"
        )))
    }

    /// Deletes this disk's snapshots beyond `retain_snapshots`: returns the names kept
    /// (newest first), those deleted, and what went wrong.
    fn prune(&mut self, disk_id: &str, new: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut own = match self.own_snapshots(disk_id) {
            Ok(own) => own,
            Err(e) => return (vec![new.to_string()], Vec::new(), vec![e.message]),
        };
        // Newest first; a snapshot without a creation time sorts as oldest, then by name
        // (which carries the run's time).
        own.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        let mut kept = vec![new.to_string()];
        let mut doomed = Vec::new();
        for snapshot in own {
            if snapshot.name.eq_ignore_ascii_case(new) {
                continue;
            }
            let state = snapshot.state.to_ascii_lowercase();
            if !matches!(state.as_str(), "succeeded" | "failed" | "canceled") {
                // Still being made (or deleted) by someone else: not ours to judge yet.
                continue;
            }
            if state == "succeeded" && kept.len() < self.retain {
                kept.push(snapshot.name);
            } else {
                doomed.push(snapshot.name);
            }
        }
        let mut deleted = Vec::new();
        let mut problems = Vec::new();
        for name in doomed {
            match self.delete_snapshot(&name) {
                Ok(()) => deleted.push(name),
                Err(e) => problems.push(e.message),
            }
        }
        if !deleted.is_empty() {
            backups_sdk::info!("deleted old snapshots: {}", deleted.join(", "));
        }
        (kept, deleted, problems)
    }

    fn delete_snapshot(&mut self, name: &str) -> Result<()> {
        let url = self.snapshot_url(name);
        let what = format!("deleting snapshot {name}");
        let reply = self.arm.request("DELETE", &url, None)?;
        match reply.status {
            // Gone already, or gone now.
            404 | 200 | 204 => Ok(()),
            202 => {
                let deadline = self.deadline();
                match self
                    .arm
                    .wait(&what, &reply, None, deadline, self.wait_minutes)?
                {
                    Outcome::Succeeded => Ok(()),
                    Outcome::Failed { status, error } => Err(PluginError::permanent(format!(
                        "{what}: the operation ended {status}: {}",
                        error.describe()
                    ))),
                }
            }
            _ => Err(arm_error(&what, &reply)),
        }
    }
}

/// The run's start as a timestamp.
fn stamp(unix: u64) -> Result<jiff::Timestamp> {
    jiff::Timestamp::from_second(unix as i64)
        .map_err(|e| PluginError::permanent(format!("the run's start time {unix}: {e}")))
}

impl Source for AzureManagedDisk {
    fn dump(&mut self, out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let began = Instant::now();
        let name = self.snapshot_name()?;
        let (disk_id, location) = self.source_disk()?;
        let snapshot = self.create_snapshot(&name, &disk_id, &location)?;
        let properties = &snapshot["properties"];
        backups_sdk::info!(
            "snapshot {name} of disk {} succeeded after {}s",
            self.disk,
            began.elapsed().as_secs()
        );
        let (kept, pruned, problems) = self.prune(&disk_id, &name);
        let mut info = DumpInfo::new("json");
        for problem in &problems {
            info.warn(format!("pruning old snapshots: {problem}"));
        }
        let status = json!({
            "type": "azure-managed-disk",
            "subscription_id": self.subscription,
            "source_disk": {
                "name": self.disk,
                "resource_group": self.source_group,
                "id": disk_id,
            },
            "snapshot": {
                "name": snapshot["name"].as_str().unwrap_or(&name),
                "id": snapshot["id"],
                "resource_group": self.destination_group,
                "location": location,
                "provisioning_state": properties["provisioningState"],
                "time_created": properties["timeCreated"],
                "disk_size_gb": properties["diskSizeGB"],
                "incremental": self.incremental,
            },
            "run_started_at": stamp(self.ctx.started_at)?.to_string(),
            "seconds_taken": began.elapsed().as_secs(),
            "retain_snapshots": self.retain,
            "retained": kept,
            "pruned": pruned,
            "prune_errors": problems,
        });
        serde_json::to_writer_pretty(&mut *out, &status)
            .map_err(|e| PluginError::transient(format!("writing the status record: {e}")))?;
        std::io::Write::write_all(out, b"\n")
            .map_err(|e| PluginError::from_io(&e, "writing the status record"))?;
        Ok(info)
    }
}

backups_sdk::export_source!(AzureManagedDisk);
