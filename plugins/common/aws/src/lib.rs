//! What the AWS sources (`rds`/`rds-pgsql` through the AWS SDK, `snapshot` through the EC2
//! Query API) share: where their credentials come from, which endpoint they talk to and the
//! `net` grant that follows from it, what an AWS error code means to the host, a bounded
//! and logged wait, and the names and tags they give to what they create.

use backups_sdk::{PluginError, Result};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The variables read when an entry has no keys of its own (as the AWS CLI reads them).
pub const KEY_ENV: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Tags on everything these plugins create, so that a later run (or an operator) can tell
/// what it is, which job and entry made it, and whether it may be removed.
pub const TAG_JOB: &str = "backups:job";
pub const TAG_ENTRY: &str = "backups:entry";
pub const TAG_RUN: &str = "backups:run";
/// On resources that exist only for the length of one run (restored RDS instances).
pub const TAG_TEMPORARY: &str = "backups:temporary";
/// On resources kept after the run (EBS snapshots), which retention may remove later.
pub const TAG_MADE_BY: &str = "backups:made-by";

/// An access key pair, as the legacy `credentials` object (or the legacy top-level keys of
/// the `snapshot` source) wrote it.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct KeyPair {
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    /// For temporary (STS) credentials.
    pub aws_session_token: Option<String>,
}

impl KeyPair {
    pub fn is_set(&self) -> bool {
        self.aws_access_key_id.is_some() || self.aws_secret_access_key.is_some()
    }
}

/// Resolved credentials.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The first of `pairs` that is set (both halves required), or else the `AWS_*`
/// variables, which the host shows the plugin only when the job grants them.
pub fn keys(pairs: &[&KeyPair]) -> Result<Keys> {
    if let Some(pair) = pairs.iter().find(|p| p.is_set()) {
        return match (&pair.aws_access_key_id, &pair.aws_secret_access_key) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Keys {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: pair.aws_session_token.clone(),
            }),
            _ => Err(PluginError::invalid_config(
                "credentials: give both aws_access_key_id and aws_secret_access_key",
            )),
        };
    }
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) => Ok(Keys {
            access_key_id: id,
            secret_access_key: secret,
            session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
        }),
        _ => Err(PluginError::auth(
            "no AWS credentials: set credentials in the entry, or grant env AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)",
        )),
    }
}

/// The `env` grant: the AWS variables, only when the entry carries no keys of its own.
pub fn env_grants(has_keys: bool) -> Vec<String> {
    if has_keys {
        Vec::new()
    } else {
        KEY_ENV.map(String::from).to_vec()
    }
}

/// The region from `region`, or from an availability zone (`eu-west-1a` → `eu-west-1`).
pub fn region(region: Option<&str>, availability_zone: Option<&str>) -> Result<String> {
    let region = match (region, availability_zone) {
        (Some(r), _) if !r.is_empty() => r.to_string(),
        (_, Some(az)) if az.len() > 1 && az.ends_with(|c: char| c.is_ascii_lowercase()) => {
            az[..az.len() - 1].to_string()
        }
        _ => {
            return Err(PluginError::invalid_config(
                "region: missing (e.g. \"eu-west-1\")",
            ));
        }
    };
    // It becomes part of a host name: nothing but what region names are made of.
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(PluginError::invalid_config(format!(
            "region: {region:?} is not a region name"
        )));
    }
    Ok(region)
}

/// The API's base URL: `endpoint_url` when given (a local emulator, a VPC endpoint), else
/// AWS's regional endpoint `https://<service>.<region>.amazonaws.com`.
pub fn endpoint(endpoint_url: Option<&str>, service: &str, region: &str) -> Result<String> {
    match endpoint_url {
        Some(url) => {
            net_grant("endpoint_url", url)?;
            Ok(url.trim_end_matches('/').to_string())
        }
        None => Ok(format!("https://{service}.{region}.amazonaws.com")),
    }
}

/// The `net` grant for a base URL: `scheme://host[:port]`.
pub fn net_grant(key: &str, url: &str) -> Result<String> {
    let bad = || {
        PluginError::invalid_config(format!(
            "{key}: {url:?} must be http(s)://host[:port] with no user info"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "https" | "http") {
        return Err(bad());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// What an AWS error code (with its HTTP status) means to the host. `what` says what was
/// being done; the message keeps AWS's code and text, which is what an operator searches.
pub fn error_for(what: &str, code: &str, message: &str, status: u16) -> PluginError {
    let detail = format!("{what}: {code} {message} (HTTP {status})");
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "UnrecognizedClientException"
        | "OptInRequired" => PluginError::auth(detail),
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "ServiceUnavailable"
        | "Unavailable"
        | "InternalFailure"
        | "InternalError"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "InsufficientDBInstanceCapacity"
        | "SnapshotCreationPerVolumeRateExceeded" => PluginError::transient(detail),
        "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "InvalidDBInstanceIdentifier"
        | "InvalidVolumeID.Malformed"
        | "InvalidInstanceID.Malformed"
        | "InvalidGroup.NotFound"
        | "InvalidVPCNetworkStateFault"
        | "InvalidSubnet"
        | "DBSubnetGroupNotFoundFault"
        | "DBSecurityGroupNotFound" => PluginError::invalid_config(detail),
        _ if code.ends_with("NotFound")
            || code.ends_with("NotFoundFault")
            || code.ends_with(".NotFound") =>
        {
            PluginError::not_found(detail)
        }
        _ if status >= 500 || status == 429 => PluginError::transient(detail),
        _ if status == 401 || status == 403 => PluginError::auth(detail),
        _ if status == 404 => PluginError::not_found(detail),
        _ => PluginError::permanent(detail),
    }
}

/// A request that got no answer. The host's refusal of an ungranted peer is `denied` (a
/// retry cannot help); a refused or cut connection, a timeout, is worth another try.
pub fn no_answer(what: &str, detail: &str) -> PluginError {
    let message = format!("{what}: {detail}");
    if message.to_ascii_lowercase().contains("denied") {
        PluginError::denied(message)
    } else {
        PluginError::transient(message)
    }
}

/// One look at something being waited for.
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the state to log (e.g. `creating`, `pending 40%`).
    Pending(String),
}

/// How long to wait, and how often to look.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub limit: Duration,
    pub every: Duration,
}

impl Wait {
    pub fn minutes(limit: u64, every_seconds: u64) -> Wait {
        Wait {
            limit: Duration::from_secs(limit * 60),
            every: Duration::from_secs(every_seconds),
        }
    }

    /// Calls `poll` until it is ready, logging the state at every look, for at most
    /// `limit`. Past it: a `transient` error naming `what` and the last state (a later run
    /// may well succeed; `wait_minutes` raises the bound).
    pub fn until<T>(&self, what: &str, mut poll: impl FnMut() -> Result<Poll<T>>) -> Result<T> {
        let started = Instant::now();
        loop {
            let state = match poll()? {
                Poll::Ready(value) => return Ok(value),
                Poll::Pending(state) => state,
            };
            let waited = started.elapsed();
            if waited + self.every > self.limit {
                return Err(PluginError::transient(format!(
                    "{what}: still {state} after {} (wait_minutes: {}); gave up waiting",
                    minutes_seconds(waited),
                    self.limit.as_secs() / 60
                )));
            }
            backups_sdk::info!(
                "{what}: {state} after {} (waiting up to {} min, next look in {}s)",
                minutes_seconds(waited),
                self.limit.as_secs() / 60,
                self.every.as_secs()
            );
            std::thread::sleep(self.every);
        }
    }
}

fn minutes_seconds(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// A name for something this run creates: `prefix-<entry>-<run>`, lower-case letters,
/// digits and single hyphens, starting with a letter, at most `max` characters. The entry
/// part is cut first when too long, so the run part (what makes it unique) survives.
/// The same entry always gives the same [`name_prefix`].
pub fn resource_name(prefix: &str, entry_id: &str, run_id: &str, max: usize) -> String {
    let head = name_prefix(prefix, entry_id, max);
    let run = slug(run_id);
    let room = max.saturating_sub(head.len());
    // Keep the end of the run id: its start is a timestamp that other runs share less
    // often than its end (the process id).
    let run = &run[run.len().saturating_sub(room)..];
    let name = format!("{head}{}", run.trim_start_matches('-'));
    name.trim_end_matches('-').to_string()
}

/// `prefix-<entry>-`: what every [`resource_name`] of one entry starts with (for the same
/// `max`), for finding ones left behind. The entry part takes at most half of `max`.
pub fn name_prefix(prefix: &str, entry_id: &str, max: usize) -> String {
    let entry = slug(entry_id);
    let entry = entry[..entry.len().min(max / 2)].trim_end_matches('-');
    let entry = if entry.is_empty() { "x" } else { entry };
    format!("{}-{entry}-", slug(prefix))
}

/// Lower-case ASCII letters and digits, anything else one hyphen, none at either end.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_rds_identifier(name: &str) -> bool {
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.contains("--")
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_valid_rds_identifiers_and_keep_the_entry_prefix() {
        let run = "20261122T201533Z-3af1";
        for entry in [
            "livecompanydb",
            "Live_Company DB!!",
            "--",
            "x".repeat(200).as_str(),
            "a-b--c__d",
            "ünïcode",
        ] {
            let name = resource_name("bk", entry, run, 63);
            assert!(valid_rds_identifier(&name), "{entry:?} → {name:?}");
            assert!(name.starts_with(&name_prefix("bk", entry, 63)), "{name}");
            assert!(name.ends_with("3af1"), "{name}");
        }
        assert_eq!(
            resource_name("bk", "livecompanydb", run, 63),
            "bk-livecompanydb-20261122t201533z-3af1"
        );
    }

    #[test]
    fn regions_come_from_the_zone_when_not_given() {
        assert_eq!(region(None, Some("eu-west-1b")).unwrap(), "eu-west-1");
        assert_eq!(
            region(Some("us-east-2"), Some("eu-west-1b")).unwrap(),
            "us-east-2"
        );
        assert!(region(None, None).is_err());
        assert!(region(Some("evil.com/x"), None).is_err());
    }

    #[test]
    fn error_codes_map_to_what_the_host_acts_on() {
        use backups_sdk::ErrorKind as K;
        let kind = |code: &str, status| error_for("x", code, "m", status).kind;
        assert_eq!(kind("DBInstanceNotFound", 404), K::NotFound);
        assert_eq!(kind("DBSnapshotNotFound", 404), K::NotFound);
        assert_eq!(kind("InvalidVolume.NotFound", 400), K::NotFound);
        assert_eq!(kind("Throttling", 400), K::Transient);
        assert_eq!(kind("Whatever", 503), K::Transient);
        assert_eq!(kind("AuthFailure", 401), K::Auth);
        assert_eq!(kind("InvalidClientTokenId", 403), K::Auth);
        assert_eq!(kind("InvalidParameterValue", 400), K::InvalidConfig);
        assert_eq!(kind("InvalidDBInstanceState", 400), K::Permanent);
    }
}
