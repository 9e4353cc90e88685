//! # rds, rds-pgsql — an RDS database, dumped from a restored copy of its newest automated snapshot
//!
//! ```json
//! { "id": "livecompanydb", "type": "rds", "name": "Live Company Data",
//!   "instancename": "livedb1", "region": "eu-west-1",
//!   "security_group": "sg-xxxxxxxx", "instance_class": "db.t3.small",
//!   "dbname": "livecompany", "dbuser": "backups", "dbpass": "zzzuserwithreadonlyperms",
//!   "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc" }
//! ```
//!
//! `type: rds` dumps MySQL/MariaDB with `mysqldump`; `type: rds-pgsql` dumps PostgreSQL
//! with `pg_dump`. Both are this one plugin.
//!
//! | key | meaning |
//! |---|---|
//! | `instancename` | the RDS instance whose newest automated snapshot is dumped (it is never touched) |
//! | `region` | its AWS region |
//! | `security_group` | VPC security group id(s) for the temporary instance (one or a list); it must let this host in on the database port |
//! | `subnet_group` | DB subnet group for the temporary instance (default: the account's default) |
//! | `instance_class` | class of the temporary instance (default `db.t3.small`) |
//! | `dbname` | the database (`rds`: several as a list or separated by spaces) |
//! | `dbuser`, `dbpass` | database credentials (`dbpass` is a secret: redacted everywhere) |
//! | `noevents` | `rds` only: don't pass `--events` to mysqldump |
//! | `credentials.aws_access_key_id`, `credentials.aws_secret_access_key` (, `credentials.aws_session_token`) | AWS keys (secret); without them `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, if the job grants those variables (`grants.env`) |
//! | `wait_minutes` | how long to wait for the temporary instance to become available (default 60) |
//! | `connect_host`, `connect_port` | dump through this address instead of the endpoint RDS reports (an SSH tunnel or a proxy to the temporary instance) |
//! | `endpoint_url` | the RDS API's URL instead of `https://rds.<region>.amazonaws.com` (a VPC endpoint; a local emulator in tests) |
//!
//! What a run does, through the AWS SDK inside the plugin:
//!
//! 1. Sweeps orphans: temporary instances of this same job and entry that an earlier run
//!    left behind (killed before it could clean up) — found by their name prefix
//!    `bk-<entry>-` *and* their tags `backups:temporary`, `backups:job`, `backups:entry` —
//!    are deleted, and each is reported as a warning of the run.
//! 2. Finds the newest *automated* snapshot of `instancename` (none: a `not-found` error
//!    naming the instance; nothing is restored).
//! 3. Restores it to a temporary instance `bk-<entry>-<run id>` of `instance_class`, in
//!    `security_group`, tagged as above plus `backups:run`, without deletion protection,
//!    Multi-AZ or automated backups of its own.
//! 4. Waits until it is `available`, looking every 30 s and logging its state each time,
//!    for at most `wait_minutes`.
//! 5. Dumps it with mysqldump / pg_dump (credentials in a private 0600 file, never on a
//!    command line), spliced by the host straight into compression and encryption.
//! 6. Deletes the temporary instance (`SkipFinalSnapshot`) — **always**: also when the
//!    wait or the dump failed (then the dump's error is what the source reports), and when
//!    the run is interrupted (the host kills the dump command, which fails the dump).
//!    If the deletion itself fails, the source fails with an error naming the orphan and
//!    the commands to delete it by hand; the next run's sweep tries again too.
//!
//! A run killed outright (or stopped at `limits.call_seconds`, which must comfortably
//! exceed `wait_minutes` plus the dump) cannot clean up: that is what the sweep is for.
//!
//! The AWS identity needs `rds:DescribeDBSnapshots`, `rds:DescribeDBInstances`,
//! `rds:RestoreDBInstanceFromDBSnapshot`, `rds:AddTagsToResource` and
//! `rds:DeleteDBInstance` (which can be limited to instances tagged `backups:temporary`).
//!
//! Failures: bad or missing AWS keys are `auth`; an unknown instance or no automated
//! snapshot `not-found`; throttling and 5xx answers (after the SDK's own retries) and
//! unreachable endpoints `transient`; a refused parameter (class, security group)
//! `invalid-config`. A dump that fails (wrong `dbpass`, unknown `dbname`) fails the source
//! and nothing is uploaded.
//!
//! Grants derived from these keys: `net` to `https://rds.<region>.amazonaws.com` (or the
//! `endpoint_url`), `run: ["mysqldump"]` / `["pg_dump"]` (which runs as the backups user,
//! outside the sandbox: grant it knowingly), and `env` for the AWS variables when
//! `credentials` is absent.

use aws_sdk_rds::config::retry::RetryConfig;
use aws_sdk_rds::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::types::{DbInstance, Tag};
use backups_aws::{KeyPair, Poll, TAG_ENTRY, TAG_JOB, TAG_RUN, TAG_TEMPORARY, Wait};
use backups_mysqldump::MysqlKeys;
use backups_pgdump::{Format, PG_DUMP, PgDump};
use backups_sdk::config::{OneOrMany, flag};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, ErrorKind, Grants, Plugin, PluginError, Result,
    Source, error_chain,
};
use serde::Deserialize;

/// RDS instance identifiers: at most 63 characters.
const MAX_IDENTIFIER: usize = 63;
const NAME_PREFIX: &str = "bk";
const POLL_SECONDS: u64 = 30;
/// How long to keep asking for a deletion that RDS refuses because of the instance's
/// state (it may still be finishing its creation).
const DELETE_RETRY_MINUTES: u64 = 10;

#[derive(Deserialize)]
pub struct Config {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    instancename: String,
    region: Option<String>,
    #[serde(default)]
    security_group: OneOrMany<String>,
    subnet_group: Option<String>,
    #[serde(default = "small")]
    instance_class: String,
    #[serde(default)]
    dbname: OneOrMany<String>,
    dbuser: Option<String>,
    dbpass: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    noevents: bool,
    #[serde(default)]
    credentials: KeyPair,
    #[serde(default = "sixty")]
    wait_minutes: u64,
    connect_host: Option<String>,
    connect_port: Option<u16>,
    endpoint_url: Option<String>,
}

fn small() -> String {
    "db.t3.small".into()
}
fn sixty() -> u64 {
    60
}

/// The two database engines, and what differs between them.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Engine {
    MySql,
    Postgres,
}

impl Engine {
    fn for_type(kind: &str) -> Engine {
        if kind == "rds-pgsql" {
            Engine::Postgres
        } else {
            Engine::MySql
        }
    }
    fn command(self) -> &'static str {
        match self {
            Engine::MySql => "mysqldump",
            Engine::Postgres => PG_DUMP,
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Engine::MySql => 3306,
            Engine::Postgres => 5432,
        }
    }
    /// Whether an RDS engine name (`mysql`, `mariadb`, `postgres`, …) is dumped by this.
    fn serves(self, rds_engine: &str) -> bool {
        match self {
            Engine::MySql => rds_engine.contains("mysql") || rds_engine.contains("mariadb"),
            Engine::Postgres => rds_engine.contains("postgres"),
        }
    }
    fn type_name(self) -> &'static str {
        match self {
            Engine::MySql => "rds",
            Engine::Postgres => "rds-pgsql",
        }
    }
}

pub struct Rds {
    client: aws_sdk_rds::Client,
    engine: Engine,
    instance: String,
    region: String,
    security_groups: Vec<String>,
    subnet_group: Option<String>,
    instance_class: String,
    databases: Vec<String>,
    dbuser: Option<String>,
    dbpass: Option<String>,
    noevents: bool,
    wait: Wait,
    connect_host: Option<String>,
    connect_port: Option<u16>,
    ctx: Context,
}

impl Plugin for Rds {
    type Config = Config;

    fn about() -> About {
        About::new(
            "rds",
            "an RDS database: its newest automated snapshot restored to a temporary instance \
             and dumped (types rds and rds-pgsql)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "instancename",
            "region",
            "security_group",
            "subnet_group",
            "instance_class",
            "dbname",
            "dbuser",
            "dbpass",
            "noevents",
            "credentials",
            "wait_minutes",
            "connect_host",
            "connect_port",
            "endpoint_url",
        ])
        .secrets(&[
            "dbpass",
            "credentials.aws_secret_access_key",
            "credentials.aws_session_token",
            "env:AWS_SECRET_ACCESS_KEY",
            "env:AWS_SESSION_TOKEN",
        ])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let region = backups_aws::region(config.region.as_deref(), None)?;
        let endpoint = backups_aws::endpoint(config.endpoint_url.as_deref(), "rds", &region)?;
        Ok(Grants {
            net: vec![backups_aws::net_grant("endpoint_url", &endpoint)?],
            run: vec![Engine::for_type(&config.kind).command().into()],
            env: backups_aws::env_grants(config.credentials.is_set()),
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
        let engine = Engine::for_type(&config.kind);
        if config.instancename.is_empty() {
            return Err(PluginError::invalid_config(
                "instancename: missing (the RDS instance whose snapshot to dump)",
            ));
        }
        let region = backups_aws::region(config.region.as_deref(), None)?;
        let databases: Vec<String> = config
            .dbname
            .to_vec()
            .iter()
            .flat_map(|n| n.split_whitespace().map(str::to_string))
            .collect();
        match (engine, databases.len()) {
            (_, 0) => return Err(PluginError::invalid_config("dbname: missing")),
            (Engine::Postgres, n) if n > 1 => {
                return Err(PluginError::invalid_config(
                    "dbname: rds-pgsql dumps one database; make one entry per database",
                ));
            }
            _ => {}
        }
        if engine == Engine::MySql && config.dbuser.is_none() {
            return Err(PluginError::invalid_config("dbuser: missing"));
        }
        if config.wait_minutes == 0 {
            return Err(PluginError::invalid_config(
                "wait_minutes: must be at least 1",
            ));
        }
        if let Some(host) = &config.connect_host
            && (host.is_empty() || host.contains(char::is_whitespace) || host.starts_with('-'))
        {
            return Err(PluginError::invalid_config(format!(
                "connect_host: {host:?} is not a host name or address"
            )));
        }
        let keys = backups_aws::keys(&[&config.credentials])?;
        let endpoint = backups_aws::endpoint(config.endpoint_url.as_deref(), "rds", &region)?;
        let mut builder = aws_sdk_rds::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(Credentials::new(
                keys.access_key_id,
                keys.secret_access_key,
                keys.session_token,
                None,
                "backups job",
            ))
            .http_client(aws_smithy_wasm::wasi::WasiHttpClientBuilder::new().build())
            .sleep_impl(aws_smithy_wasm::wasi::WasiSleep)
            // Throttling and 5xx answers are retried with backoff before they reach us.
            .retry_config(RetryConfig::standard().with_max_attempts(4));
        if config.endpoint_url.is_some() {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(Rds {
            client: aws_sdk_rds::Client::from_conf(builder.build()),
            engine,
            instance: config.instancename,
            region,
            security_groups: config.security_group.to_vec(),
            subnet_group: config.subnet_group,
            instance_class: config.instance_class,
            databases,
            dbuser: config.dbuser,
            dbpass: config.dbpass,
            noevents: config.noevents,
            wait: Wait::minutes(config.wait_minutes, POLL_SECONDS),
            connect_host: config.connect_host,
            connect_port: config.connect_port,
            ctx,
        })
    }
}

/// Turns an SDK error into one the host can act on.
fn failed<E>(what: &str, err: SdkError<E>) -> PluginError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(e) => backups_aws::error_for(
            what,
            e.err().code().unwrap_or("(no code)"),
            e.err().message().unwrap_or(""),
            e.raw().status().as_u16(),
        ),
        // No answer: the host refused the peer (denied), or the network failed (transient).
        other => backups_aws::no_answer(what, &error_chain(other)),
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    wstd::runtime::block_on(future)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_value<'a>(instance: &'a DbInstance, key: &str) -> Option<&'a str> {
    instance
        .tag_list()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Where to reach a restored instance.
struct Address {
    host: String,
    port: u16,
}

impl Rds {
    fn temporary_name(&self) -> String {
        backups_aws::resource_name(
            NAME_PREFIX,
            &self.ctx.entry_id,
            &self.ctx.run_id,
            MAX_IDENTIFIER,
        )
    }

    /// What an operator runs when an instance could not be deleted.
    fn delete_by_hand(&self, name: &str) -> String {
        format!(
            "delete it by hand: aws rds delete-db-instance --region {region} \
             --db-instance-identifier {name} --skip-final-snapshot (if it has deletion \
             protection, first: aws rds modify-db-instance --region {region} \
             --db-instance-identifier {name} --no-deletion-protection --apply-immediately)",
            region = self.region
        )
    }

    /// Deletes this entry's temporary instances that earlier runs left behind.
    fn sweep_orphans(&self, info: &mut DumpInfo) -> Result<()> {
        let prefix = backups_aws::name_prefix(NAME_PREFIX, &self.ctx.entry_id, MAX_IDENTIFIER);
        let mut marker: Option<String> = None;
        let mut orphans = Vec::new();
        loop {
            let page = run(self
                .client
                .describe_db_instances()
                .set_marker(marker.clone())
                .send())
            .map_err(|e| failed("listing DB instances to find ones left by earlier runs", e))?;
            for db in page.db_instances() {
                let name = db.db_instance_identifier().unwrap_or_default();
                // The name prefix narrows it down; the tags decide: only instances this
                // plugin made for this very job and entry are ever deleted.
                if name.starts_with(&prefix)
                    && tag_value(db, TAG_TEMPORARY).is_some()
                    && tag_value(db, TAG_JOB) == Some(self.ctx.job.as_str())
                    && tag_value(db, TAG_ENTRY) == Some(self.ctx.entry_id.as_str())
                {
                    orphans.push((
                        name.to_string(),
                        tag_value(db, TAG_RUN).unwrap_or("?").to_string(),
                        db.db_instance_status().unwrap_or_default().to_string(),
                    ));
                }
            }
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        for (name, run_id, status) in orphans {
            if status == "deleting" {
                backups_sdk::info!("{name} (left by run {run_id}) is already being deleted");
                continue;
            }
            let warning = match self.delete_instance(&name) {
                Ok(()) => format!(
                    "deleted the temporary instance {name}, left behind by run {run_id} \
                     (which was stopped before it could delete it)"
                ),
                Err(e) => format!(
                    "the temporary instance {name}, left behind by run {run_id}, could not be \
                     deleted ({}); {}",
                    e.message,
                    self.delete_by_hand(&name)
                ),
            };
            backups_sdk::warn!("{warning}");
            info.warn(warning);
        }
        Ok(())
    }

    /// The identifier of the newest automated snapshot of the instance.
    fn newest_automated_snapshot(&self) -> Result<String> {
        let mut marker: Option<String> = None;
        let mut newest: Option<(i64, String, String)> = None;
        loop {
            let page = run(self
                .client
                .describe_db_snapshots()
                .db_instance_identifier(&self.instance)
                .snapshot_type("automated")
                .set_marker(marker.clone())
                .send())
            .map_err(|e| failed(&format!("listing the snapshots of {}", self.instance), e))?;
            for snap in page.db_snapshots() {
                if snap.status() != Some("available") {
                    continue;
                }
                let created = snap.snapshot_create_time().map_or(0, |t| t.secs());
                let Some(id) = snap.db_snapshot_identifier() else {
                    continue;
                };
                if newest.as_ref().is_none_or(|(t, _, _)| created > *t) {
                    newest = Some((
                        created,
                        id.to_string(),
                        snap.engine().unwrap_or_default().to_string(),
                    ));
                }
            }
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        let Some((_, id, engine)) = newest else {
            return Err(PluginError::not_found(format!(
                "instancename {:?}: no available automated snapshot in {} (is the instance \
                 name right, and are automated backups enabled for it?)",
                self.instance, self.region
            )));
        };
        if !engine.is_empty() && !self.engine.serves(&engine) {
            return Err(PluginError::invalid_config(format!(
                "instancename {:?} is a {engine} instance, which type {:?} does not dump{}",
                self.instance,
                self.engine.type_name(),
                if Engine::Postgres.serves(&engine) {
                    " (use type rds-pgsql)"
                } else if Engine::MySql.serves(&engine) {
                    " (use type rds)"
                } else {
                    ""
                }
            )));
        }
        Ok(id)
    }

    fn restore(&self, snapshot: &str, name: &str) -> Result<()> {
        backups_sdk::info!(
            "restoring snapshot {snapshot} of {} to the temporary instance {name} ({})",
            self.instance,
            self.instance_class
        );
        run(self
            .client
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(name)
            .db_snapshot_identifier(snapshot)
            .db_instance_class(&self.instance_class)
            .set_vpc_security_group_ids(
                (!self.security_groups.is_empty()).then(|| self.security_groups.clone()),
            )
            .set_db_subnet_group_name(self.subnet_group.clone())
            // A throwaway copy: nothing may stand in the way of deleting it, and nothing
            // about it should cost more than it must.
            .deletion_protection(false)
            .multi_az(false)
            .backup_retention_period(0)
            .copy_tags_to_snapshot(false)
            .tags(tag(TAG_TEMPORARY, "true"))
            .tags(tag(TAG_JOB, &self.ctx.job))
            .tags(tag(TAG_ENTRY, &self.ctx.entry_id))
            .tags(tag(TAG_RUN, &self.ctx.run_id))
            .send())
        .map(|_| ())
        .map_err(|e| failed(&format!("restoring {snapshot} to {name}"), e))
    }

    /// Waits until the instance is available; its endpoint.
    fn wait_available(&self, name: &str) -> Result<Address> {
        self.wait
            .until(&format!("temporary instance {name}"), || {
                let out = run(self
                    .client
                    .describe_db_instances()
                    .db_instance_identifier(name)
                    .send())
                .map_err(|e| failed(&format!("looking at {name}"), e))?;
                let Some(db) = out.db_instances().first() else {
                    return Ok(Poll::Pending("not listed yet".into()));
                };
                let status = db.db_instance_status().unwrap_or("unknown");
                match status {
                    "available" => {}
                    "failed"
                    | "incompatible-restore"
                    | "incompatible-parameters"
                    | "incompatible-network"
                    | "storage-full"
                    | "inaccessible-encryption-credentials"
                    | "deleting" => {
                        return Err(PluginError::permanent(format!(
                            "the temporary instance {name} went to state {status:?} instead of \
                             available"
                        )));
                    }
                    other => return Ok(Poll::Pending(other.to_string())),
                }
                let endpoint = db.endpoint();
                let reported = endpoint.and_then(|e| e.address()).map(str::to_string);
                let port = endpoint
                    .and_then(|e| e.port())
                    .and_then(|p| u16::try_from(p).ok());
                let host = match (&self.connect_host, reported) {
                    (Some(h), _) => h.clone(),
                    (None, Some(h)) => h,
                    (None, None) => {
                        return Err(PluginError::permanent(format!(
                            "the temporary instance {name} is available but has no endpoint"
                        )));
                    }
                };
                Ok(Poll::Ready(Address {
                    host,
                    port: self
                        .connect_port
                        .or(port)
                        .unwrap_or(self.engine.default_port()),
                }))
            })
            .inspect(|_| backups_sdk::info!("the temporary instance {name} is available"))
    }

    fn dump_from(&self, address: &Address) -> Result<()> {
        match self.engine {
            Engine::MySql => MysqlKeys::for_server(
                &address.host,
                address.port,
                self.databases.clone(),
                self.dbuser.clone(),
                self.dbpass.clone(),
                self.noevents,
            )
            .check()?
            .stream(),
            Engine::Postgres => PgDump {
                host: address.host.clone(),
                port: address.port,
                dbname: self.databases[0].clone(),
                user: self.dbuser.clone(),
                password: self.dbpass.clone(),
                passfile: None,
                format: Format::Plain,
                extra: Vec::new(),
            }
            .stream(),
        }
    }

    /// Asks RDS to delete an instance without a final snapshot. Retries for a while when
    /// RDS refuses because of the instance's state (e.g. still being created); an
    /// instance that is already gone counts as deleted.
    fn delete_instance(&self, name: &str) -> Result<()> {
        let refused_state = Wait::minutes(DELETE_RETRY_MINUTES, POLL_SECONDS);
        refused_state.until(&format!("deleting {name}"), || {
            let sent = run(self
                .client
                .delete_db_instance()
                .db_instance_identifier(name)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send());
            match sent {
                Ok(_) => Ok(Poll::Ready(())),
                Err(SdkError::ServiceError(e)) if e.err().code() == Some("DBInstanceNotFound") => {
                    Ok(Poll::Ready(()))
                }
                Err(SdkError::ServiceError(e))
                    if e.err().code() == Some("InvalidDBInstanceState") =>
                {
                    Ok(Poll::Pending(format!(
                        "refused for now ({})",
                        e.err().message().unwrap_or("invalid state")
                    )))
                }
                Err(e) => Err(failed(&format!("deleting {name}"), e)),
            }
        })?;
        backups_sdk::info!("deleted the temporary instance {name}");
        Ok(())
    }

    /// The error for a temporary instance that could not be deleted: it names the orphan
    /// and how to delete it.
    fn orphaned(&self, name: &str, err: PluginError) -> PluginError {
        let kind = match err.kind {
            // Nothing in the entry caused it.
            ErrorKind::InvalidConfig => ErrorKind::Permanent,
            other => other,
        };
        PluginError::new(
            kind,
            format!(
                "the temporary instance {name} was NOT deleted and keeps running (and costing): \
                 {}; {}; the next run of this entry will try again",
                err.message,
                self.delete_by_hand(name)
            ),
        )
    }
}

impl Source for Rds {
    fn dump(&mut self, _out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let mut info = DumpInfo::new("sql");
        self.sweep_orphans(&mut info)?;
        let snapshot = self.newest_automated_snapshot()?;
        let name = self.temporary_name();
        // From the restore request on, every way out goes through the deletion below: even
        // a restore that reports a failure may have created the instance (an answer lost
        // on the way back).
        let dumped = self
            .restore(&snapshot, &name)
            .and_then(|()| self.wait_available(&name))
            .and_then(|address| self.dump_from(&address));
        let deleted = self.delete_instance(&name);
        match (dumped, deleted) {
            (Ok(()), Ok(())) => Ok(info),
            (Err(dump), Ok(())) => Err(dump),
            (Ok(()), Err(delete)) => Err(self.orphaned(&name, delete)),
            (Err(dump), Err(delete)) => {
                let orphan = self.orphaned(&name, delete);
                Err(PluginError::new(
                    dump.kind,
                    format!("{}; and {}", dump.message, orphan.message),
                ))
            }
        }
    }
}

backups_sdk::export_source!(Rds);
