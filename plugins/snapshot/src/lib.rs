//! # snapshot — EBS snapshots of volumes, or of every volume of an EC2 instance
//!
//! ```json
//! { "id": "maindb-volumes", "type": "snapshot", "name": "Main DB volumes",
//!   "instancename": "maindb1", "region": "eu-west-1", "retain_snapshots": 7,
//!   "credentials": { "aws_access_key_id": "…", "aws_secret_access_key": "…" },
//!   "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc" }
//!
//! { "id": "data-volume", "type": "snapshot", "volume_id": "vol-0123456789abcdef0",
//!   "availability_zone": "eu-west-1a",
//!   "aws_access_key_id": "…", "aws_secret_access_key": "…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `volume_id` | the EBS volume to snapshot; several as a list |
//! | `instancename` | instead of `volume_id`: an EC2 instance (its `Name` tag, or its id `i-…`) whose every attached EBS volume is snapshotted |
//! | `region` | the AWS region (default: from `availability_zone`) |
//! | `availability_zone` | legacy: the volumes' zone, e.g. `eu-west-1a`; gives the region when `region` is absent |
//! | `aws_access_key_id`, `aws_secret_access_key` | legacy AWS keys (secret); or the same inside `credentials`; without either `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, if the job grants those variables (`grants.env`) |
//! | `retain_snapshots` | keep this many of the newest completed snapshots this entry made of each volume, delete its older ones (default: delete none) |
//! | `wait_minutes` | how long to wait for the new snapshots to complete (default 60) |
//! | `endpoint_url` | the EC2 API's URL instead of `https://ec2.<region>.amazonaws.com` (a VPC endpoint; a local emulator in tests) |
//!
//! A run creates one snapshot per volume, tagged `backups:made-by` = `backups`,
//! `backups:job`, `backups:entry`, `backups:run` and `Name`; waits until all are
//! `completed`, looking every 15 s and logging their progress, for at most `wait_minutes`;
//! then applies `retain_snapshots`. Retention only ever deletes snapshots that carry this
//! job's and entry's tags (never one made by hand or by another tool or entry), only
//! completed ones, and only after this run's own snapshot has completed — so a failing run
//! never reduces what is kept. A snapshot that AWS will not delete (e.g. it backs an AMI)
//! is a warning, not a failure.
//!
//! The artifact is a JSON status record (kind `json`): the job, entry and run, the
//! region, the volumes and the instance they came from, each new snapshot's id, volume,
//! state and start time, the pruned snapshots, and when the run started and finished. It
//! is encrypted and sent to the destinations like any artifact, so that they and the
//! notifications report the run; the snapshots themselves stay in EBS.
//!
//! Failures: bad keys are `auth`; an unknown volume or instance `not-found`; a snapshot
//! that ends in state `error` `permanent`; one still pending after `wait_minutes`,
//! throttling and 5xx answers (after 4 attempts) `transient`.
//!
//! The AWS identity needs `ec2:CreateSnapshot`, `ec2:CreateTags` (for tags on create),
//! `ec2:DescribeSnapshots`, `ec2:DeleteSnapshot` and, with `instancename`,
//! `ec2:DescribeInstances`.
//!
//! Why not `aws-sdk-ec2`: built for `wasm32-wasip2` (release, as the host builds plugins)
//! on this project's 2-core build machine, `aws-sdk-ec2` 1.274.0 alone took 572 s to
//! compile (10 min 35 s wall, 8 min 30 s CPU for a scratch crate using it; 2.8 MB
//! component) — nearly ten minutes added to every clean build for five API actions. So
//! this plugin speaks the EC2 Query API (form-encoded POST, XML answers) over `wasi:http`,
//! signed by the AWS SDK's own SigV4 crate `aws-sigv4`, and reads answers with
//! `roxmltree`; see `ec2.rs`.
//!
//! Grants derived from these keys: `net` to `https://ec2.<region>.amazonaws.com` (or the
//! `endpoint_url`), and `env` for the AWS variables when no keys are in the entry.

mod ec2;

use backups_aws::{KeyPair, Poll, TAG_ENTRY, TAG_JOB, TAG_MADE_BY, TAG_RUN, Wait};
use backups_sdk::config::OneOrMany;
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, ErrorKind, Grants, Plugin, PluginError, Result,
    Source,
};
use ec2::{Ec2, child, child_text, filter_params, items, list_params, parse, tags};
use serde::{Deserialize, Serialize};

const MADE_BY: &str = "backups";

/// A resource's tags: (key, value).
type Tags = Vec<(String, String)>;
const POLL_SECONDS: u64 = 15;

#[derive(Deserialize)]
pub struct Config {
    #[serde(default)]
    volume_id: OneOrMany<String>,
    instancename: Option<String>,
    region: Option<String>,
    availability_zone: Option<String>,
    #[serde(default)]
    credentials: KeyPair,
    /// The legacy table put the keys at the top level.
    #[serde(flatten)]
    top_level_keys: KeyPair,
    retain_snapshots: Option<u32>,
    #[serde(default = "sixty")]
    wait_minutes: u64,
    endpoint_url: Option<String>,
}

fn sixty() -> u64 {
    60
}

pub struct Snapshot {
    ec2: Ec2,
    volumes: Vec<String>,
    instance: Option<String>,
    region: String,
    retain: Option<u32>,
    wait: Wait,
    ctx: Context,
}

/// The status record written as the artifact.
#[derive(Serialize)]
struct Status {
    source: &'static str,
    job: String,
    entry: String,
    run_id: String,
    region: String,
    started_at: String,
    finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<InstanceStatus>,
    volumes: Vec<String>,
    snapshots: Vec<SnapshotStatus>,
    retain_snapshots: Option<u32>,
    pruned: Vec<SnapshotStatus>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct InstanceStatus {
    name: String,
    instance_ids: Vec<String>,
}

#[derive(Serialize, Clone, Debug)]
struct SnapshotStatus {
    snapshot_id: String,
    volume_id: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<String>,
    start_time: String,
}

impl SnapshotStatus {
    fn from_xml(node: roxmltree::Node<'_, '_>) -> SnapshotStatus {
        let text = |name| child_text(node, name).unwrap_or_default().to_string();
        SnapshotStatus {
            snapshot_id: text("snapshotId"),
            volume_id: text("volumeId"),
            state: text("status"),
            progress: child_text(node, "progress")
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            start_time: text("startTime"),
        }
    }

    /// Seconds since the epoch of its start time, for ordering (0 when unreadable, so
    /// that an unreadable one counts as the oldest — it is never the newest kept copy).
    fn started(&self) -> i64 {
        self.start_time
            .parse::<jiff::Timestamp>()
            .map_or(0, |t| t.as_second())
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Plugin for Snapshot {
    type Config = Config;

    fn about() -> About {
        About::new(
            "snapshot",
            "EBS snapshots of volumes or of an EC2 instance's volumes, kept to retain_snapshots",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "volume_id",
            "instancename",
            "region",
            "availability_zone",
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "credentials",
            "retain_snapshots",
            "wait_minutes",
            "endpoint_url",
        ])
        .secrets(&[
            "aws_secret_access_key",
            "aws_session_token",
            "credentials.aws_secret_access_key",
            "credentials.aws_session_token",
            "env:AWS_SECRET_ACCESS_KEY",
            "env:AWS_SESSION_TOKEN",
        ])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let region = backups_aws::region(
            config.region.as_deref(),
            config.availability_zone.as_deref(),
        )?;
        let endpoint = backups_aws::endpoint(config.endpoint_url.as_deref(), "ec2", &region)?;
        Ok(Grants {
            net: vec![backups_aws::net_grant("endpoint_url", &endpoint)?],
            env: backups_aws::env_grants(
                config.credentials.is_set() || config.top_level_keys.is_set(),
            ),
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
        let volumes = config.volume_id.to_vec();
        let instance = config.instancename.clone().filter(|n| !n.is_empty());
        match (volumes.is_empty(), &instance) {
            (true, None) => {
                return Err(PluginError::invalid_config(
                    "volume_id: missing (or name the EC2 instance in instancename)",
                ));
            }
            (false, Some(_)) => {
                return Err(PluginError::invalid_config(
                    "volume_id and instancename: give one of them, not both",
                ));
            }
            _ => {}
        }
        if let Some(bad) = volumes.iter().find(|v| !v.starts_with("vol-")) {
            return Err(PluginError::invalid_config(format!(
                "volume_id: {bad:?} is not an EBS volume id (vol-…)"
            )));
        }
        if config.retain_snapshots == Some(0) {
            return Err(PluginError::invalid_config(
                "retain_snapshots: must be at least 1 (leave it out to keep every snapshot)",
            ));
        }
        if config.wait_minutes == 0 {
            return Err(PluginError::invalid_config(
                "wait_minutes: must be at least 1",
            ));
        }
        let region = backups_aws::region(
            config.region.as_deref(),
            config.availability_zone.as_deref(),
        )?;
        let endpoint = backups_aws::endpoint(config.endpoint_url.as_deref(), "ec2", &region)?;
        let keys = backups_aws::keys(&[&config.credentials, &config.top_level_keys])?;
        Ok(Snapshot {
            ec2: Ec2::new(endpoint, region.clone(), keys),
            volumes,
            instance,
            region,
            retain: config.retain_snapshots,
            wait: Wait::minutes(config.wait_minutes, POLL_SECONDS),
            ctx,
        })
    }
}

impl Snapshot {
    /// The instance ids and the EBS volumes attached to them, for `instancename`.
    fn volumes_of(&self, name: &str) -> Result<(Vec<String>, Vec<String>)> {
        let mut params = if name.starts_with("i-") {
            list_params("InstanceId", &[name.to_string()])
        } else {
            filter_params(&[("tag:Name", vec![name.to_string()])])
        };
        // Terminated instances linger in listings for a while; they have nothing to snapshot.
        let n = params.iter().filter(|(k, _)| k.ends_with(".Name")).count() + 1;
        params.push((
            format!("Filter.{n}.Name"),
            "instance-state-name".to_string(),
        ));
        for (i, state) in ["pending", "running", "stopping", "stopped"]
            .iter()
            .enumerate()
        {
            params.push((format!("Filter.{n}.Value.{}", i + 1), state.to_string()));
        }
        let mut instances = Vec::new();
        let mut volumes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page_params = params.clone();
            if let Some(t) = &token {
                page_params.push(("NextToken".into(), t.clone()));
            }
            let text = self.ec2.call("DescribeInstances", &page_params)?;
            let doc = parse("DescribeInstances", &text)?;
            let root = doc.root_element();
            for reservation in items(root, "reservationSet") {
                for instance in items(reservation, "instancesSet") {
                    instances.push(
                        child_text(instance, "instanceId")
                            .unwrap_or_default()
                            .to_string(),
                    );
                    for mapping in items(instance, "blockDeviceMapping") {
                        if let Some(volume) =
                            child(mapping, "ebs").and_then(|e| child_text(e, "volumeId"))
                        {
                            volumes.push(volume.to_string());
                        }
                    }
                }
            }
            token = child_text(root, "nextToken")
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        match instances.len() {
            0 => Err(PluginError::not_found(format!(
                "instancename {name:?}: no such EC2 instance in {} (looked for its Name tag \
                 or instance id)",
                self.region
            ))),
            1 => {
                if volumes.is_empty() {
                    return Err(PluginError::not_found(format!(
                        "instancename {name:?} ({}): no EBS volume is attached",
                        instances[0]
                    )));
                }
                Ok((instances, volumes))
            }
            _ => Err(PluginError::invalid_config(format!(
                "instancename {name:?}: several instances carry that name ({}); name one by \
                 its instance id",
                instances.join(", ")
            ))),
        }
    }

    fn create(&self, volume: &str) -> Result<SnapshotStatus> {
        let description = format!(
            "backups: job {} entry {} run {}",
            self.ctx.job, self.ctx.entry_id, self.ctx.run_id
        );
        let tags = [
            (TAG_MADE_BY, MADE_BY),
            (TAG_JOB, self.ctx.job.as_str()),
            (TAG_ENTRY, self.ctx.entry_id.as_str()),
            (TAG_RUN, self.ctx.run_id.as_str()),
            ("Name", &format!("backups {} {volume}", self.ctx.entry_id)),
        ];
        let mut params = vec![
            ("VolumeId".to_string(), volume.to_string()),
            ("Description".to_string(), description),
            (
                "TagSpecification.1.ResourceType".to_string(),
                "snapshot".to_string(),
            ),
        ];
        for (i, (key, value)) in tags.iter().enumerate() {
            params.push((
                format!("TagSpecification.1.Tag.{}.Key", i + 1),
                key.to_string(),
            ));
            params.push((
                format!("TagSpecification.1.Tag.{}.Value", i + 1),
                value.to_string(),
            ));
        }
        let text = self
            .ec2
            .call("CreateSnapshot", &params)
            .map_err(|e| e.context(format!("snapshotting {volume}")))?;
        let doc = parse("CreateSnapshot", &text)?;
        let created = SnapshotStatus::from_xml(doc.root_element());
        if created.snapshot_id.is_empty() {
            return Err(PluginError::permanent(format!(
                "CreateSnapshot of {volume} answered without a snapshot id: {text}"
            )));
        }
        backups_sdk::info!("snapshot {} of {volume} started", created.snapshot_id);
        Ok(created)
    }

    /// Snapshots by id, or by filters; every page.
    fn describe(&self, params: &[(String, String)]) -> Result<Vec<(SnapshotStatus, Tags)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page_params = params.to_vec();
            if let Some(t) = &token {
                page_params.push(("NextToken".into(), t.clone()));
            }
            let text = self.ec2.call("DescribeSnapshots", &page_params)?;
            let doc = parse("DescribeSnapshots", &text)?;
            let root = doc.root_element();
            for item in items(root, "snapshotSet") {
                out.push((SnapshotStatus::from_xml(item), tags(item)));
            }
            token = child_text(root, "nextToken")
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Waits until every snapshot is `completed`; their final states.
    fn wait_completed(&self, started: &[SnapshotStatus]) -> Result<Vec<SnapshotStatus>> {
        let ids: Vec<String> = started.iter().map(|s| s.snapshot_id.clone()).collect();
        self.wait
            .until(&format!("snapshots {}", ids.join(", ")), || {
                let now: Vec<SnapshotStatus> = self
                    .describe(&list_params("SnapshotId", &ids))?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                if let Some(failed) = now.iter().find(|s| s.state == "error") {
                    return Err(PluginError::permanent(format!(
                        "snapshot {} of {} failed (state error)",
                        failed.snapshot_id, failed.volume_id
                    )));
                }
                if let Some(missing) = ids
                    .iter()
                    .find(|id| !now.iter().any(|s| &s.snapshot_id == *id))
                {
                    return Ok(Poll::Pending(format!("{missing} not listed yet")));
                }
                let pending: Vec<String> = now
                    .iter()
                    .filter(|s| s.state != "completed")
                    .map(|s| {
                        format!(
                            "{} {} {}",
                            s.snapshot_id,
                            s.state,
                            s.progress.as_deref().unwrap_or("")
                        )
                        .trim_end()
                        .to_string()
                    })
                    .collect();
                if pending.is_empty() {
                    Ok(Poll::Ready(now))
                } else {
                    Ok(Poll::Pending(pending.join(", ")))
                }
            })
    }

    /// Deletes this entry's older completed snapshots of `volume` beyond the newest `keep`.
    /// Returns what was deleted; snapshots AWS refuses to delete become warnings.
    fn prune(
        &self,
        volume: &str,
        keep: u32,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<SnapshotStatus>> {
        let mut params = list_params("Owner", &["self".to_string()]);
        params.extend(filter_params(&[
            ("volume-id", vec![volume.to_string()]),
            (&format!("tag:{TAG_ENTRY}"), vec![self.ctx.entry_id.clone()]),
        ]));
        let listed = self.describe(&params)?;
        let wanted = [
            (TAG_MADE_BY, MADE_BY),
            (TAG_JOB, self.ctx.job.as_str()),
            (TAG_ENTRY, self.ctx.entry_id.as_str()),
        ];
        // The server's filters narrow the listing; these checks decide. Only what carries
        // every one of this entry's tags is ever deleted.
        let mut ours: Vec<SnapshotStatus> = listed
            .into_iter()
            .filter(|(s, tags)| {
                s.volume_id == volume
                    && s.state == "completed"
                    && wanted
                        .iter()
                        .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .map(|(s, _)| s)
            .collect();
        ours.sort_by(|a, b| {
            b.started()
                .cmp(&a.started())
                .then_with(|| b.snapshot_id.cmp(&a.snapshot_id))
        });
        let mut pruned = Vec::new();
        for old in ours.into_iter().skip(keep as usize) {
            match self.ec2.call(
                "DeleteSnapshot",
                &[("SnapshotId".to_string(), old.snapshot_id.clone())],
            ) {
                Ok(_) => {
                    backups_sdk::info!(
                        "deleted snapshot {} of {volume} from {} (retain_snapshots: {keep})",
                        old.snapshot_id,
                        old.start_time
                    );
                    pruned.push(old);
                }
                Err(e) if e.kind != ErrorKind::Transient && e.kind != ErrorKind::Auth => {
                    let warning = format!(
                        "snapshot {} of {volume} is past retain_snapshots but was not deleted: {}",
                        old.snapshot_id, e.message
                    );
                    backups_sdk::warn!("{warning}");
                    warnings.push(warning);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pruned)
    }
}

impl Source for Snapshot {
    fn dump(&mut self, out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let started_at = now();
        let (instance, volumes) = match &self.instance {
            Some(name) => {
                let (ids, volumes) = self.volumes_of(name)?;
                backups_sdk::info!(
                    "instance {name} ({}) has volumes {}",
                    ids.join(", "),
                    volumes.join(", ")
                );
                (
                    Some(InstanceStatus {
                        name: name.clone(),
                        instance_ids: ids,
                    }),
                    volumes,
                )
            }
            None => (None, self.volumes.clone()),
        };
        let mut started = Vec::new();
        for volume in &volumes {
            match self.create(volume) {
                Ok(s) => started.push(s),
                Err(e) if !started.is_empty() => {
                    let made: Vec<&str> = started
                        .iter()
                        .map(|s: &SnapshotStatus| s.snapshot_id.as_str())
                        .collect();
                    return Err(e.context(format!(
                        "(snapshots already started, kept: {})",
                        made.join(", ")
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let snapshots = self.wait_completed(&started)?;
        backups_sdk::info!(
            "snapshots completed: {}",
            snapshots
                .iter()
                .map(|s| format!("{} ({})", s.snapshot_id, s.volume_id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut warnings = Vec::new();
        let mut pruned = Vec::new();
        if let Some(keep) = self.retain {
            for volume in &volumes {
                pruned.extend(self.prune(volume, keep, &mut warnings)?);
            }
        }
        let status = Status {
            source: "snapshot",
            job: self.ctx.job.clone(),
            entry: self.ctx.entry_id.clone(),
            run_id: self.ctx.run_id.clone(),
            region: self.region.clone(),
            started_at,
            finished_at: now(),
            instance,
            volumes,
            snapshots,
            retain_snapshots: self.retain,
            pruned,
            warnings: warnings.clone(),
        };
        serde_json::to_writer_pretty(&mut *out, &status)
            .map_err(|e| PluginError::transient(format!("writing the status record: {e}")))?;
        let mut info = DumpInfo::new("json");
        for w in warnings {
            info.warn(w);
        }
        Ok(info)
    }
}

backups_sdk::export_source!(Snapshot);
