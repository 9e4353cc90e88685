//! What a plugin instance may touch. Deny by default: an instance gets exactly the paths,
//! network peers, commands and environment variables listed here, nothing ambient.
//!
//! A job entry's `grants` block is the grant. Without one, an embedded first-party plugin
//! gets what it derives from its own keys (the folder source's `path`, read-only), so
//! legacy job files run unchanged; a third-party plugin gets nothing.
//!
//! ```json
//! "grants": { "read": ["/srv/data"], "write": ["/mnt/backup"],
//!             "net": ["s3.eu-west-1.amazonaws.com:443", "*.backblazeb2.com"],
//!             "run": ["mysqldump"], "env": ["AWS_PROFILE"] }
//! ```

use anyhow::{Result, bail};
use serde_json::Value;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A grants block as written (or as a plugin asked for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantSpec {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub net: Vec<String>,
    pub run: Vec<String>,
    pub env: Vec<String>,
}

impl GrantSpec {
    pub fn parse(value: &Value, at: &str) -> Result<GrantSpec> {
        let Value::Object(map) = value else {
            bail!("{at}: must be an object with read, write, net, run and/or env lists");
        };
        let mut spec = GrantSpec::default();
        for (key, v) in map {
            let list = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s.clone()),
                        _ => bail!("{at}.{key}: must be a list of strings"),
                    })
                    .collect::<Result<Vec<_>>>()?,
                Value::String(s) => vec![s.clone()],
                _ => bail!("{at}.{key}: must be a list of strings"),
            };
            match key.as_str() {
                "read" => spec.read = list,
                "write" => spec.write = list,
                "net" => spec.net = list,
                "run" => spec.run = list,
                "env" => spec.env = list,
                other => bail!("{at}.{other}: unknown grant (read, write, net, run, env)"),
            }
        }
        Ok(spec)
    }
}

/// Where an instance's grants came from; shown by `--dry-run` and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The entry's `grants` block.
    Explicit,
    /// Derived by an embedded first-party plugin from the entry's own keys.
    Derived { plugin: String },
    /// A third-party plugin without a `grants` block: it gets nothing.
    None,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Explicit => f.write_str("explicit (the entry's grants block)"),
            Origin::Derived { plugin } => {
                write!(
                    f,
                    "derived by the embedded `{plugin}` plugin from the entry's keys"
                )
            }
            Origin::None => f.write_str("none (third-party plugin without a grants block)"),
        }
    }
}

/// A filesystem grant, ready to become a WASI preopen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGrant {
    /// As granted.
    pub path: PathBuf,
    /// Where the guest sees it: `path` itself, or its directory when `path` is a file
    /// (WASI grants directories only). A read grant of a file is preopened from a private
    /// directory holding just that file (`runtime::file_grant`), so the rest of the real
    /// directory stays out of reach; a write grant of a file opens the real directory.
    pub dir: PathBuf,
    pub widened_from_file: bool,
}

/// A network peer pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    pub pattern: String,
    /// Exact host, `*.suffix`, or `*` (anything).
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

/// A command the host may run for the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramGrant {
    /// As granted: a name or an absolute path.
    pub name: String,
    /// Where it was found; `None` when it is not on PATH (every run is then denied).
    pub resolved: Option<PathBuf>,
}

/// The effective grants of one plugin instance.
#[derive(Debug, Clone)]
pub struct Grants {
    pub origin: Origin,
    pub read: Vec<PathGrant>,
    pub write: Vec<PathGrant>,
    pub net: Vec<NetRule>,
    pub run: Vec<ProgramGrant>,
    pub env: Vec<String>,
}

impl Grants {
    pub fn none() -> Grants {
        Grants {
            origin: Origin::None,
            read: Vec::new(),
            write: Vec::new(),
            net: Vec::new(),
            run: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Checks and resolves a spec. `at` names the entry for errors.
    pub fn resolve(spec: &GrantSpec, origin: Origin, at: &str) -> Result<Grants> {
        Ok(Grants {
            origin,
            read: spec
                .read
                .iter()
                .map(|p| path_grant(p, &format!("{at}.read")))
                .collect::<Result<_>>()?,
            write: spec
                .write
                .iter()
                .map(|p| path_grant(p, &format!("{at}.write")))
                .collect::<Result<_>>()?,
            net: spec
                .net
                .iter()
                .map(|p| NetRule::parse(p, &format!("{at}.net")))
                .collect::<Result<_>>()?,
            run: spec.run.iter().map(|p| ProgramGrant::resolve(p)).collect(),
            env: spec.env.clone(),
        })
    }

    /// True when `host:port` may be contacted by name (a wildcard's reach into this
    /// machine is checked by address, in `runtime::net`).
    pub fn allows_net(&self, host: &str, port: u16) -> bool {
        self.net.iter().any(|r| r.matches(host, port))
    }

    /// True when a rule names `host` exactly (not through `*` or `*.suffix`) for `port`:
    /// the only way to reach an internal address (loopback, link-local, unspecified).
    pub fn names_exactly(&self, host: &str, port: u16) -> bool {
        let host = canonical_host(host);
        self.net.iter().any(|r| match &r.host {
            HostPattern::Exact(h) => canonical_host(h) == host && r.port.is_none_or(|p| p == port),
            _ => false,
        })
    }

    /// May the plugin ask the system's resolver about `name`? Only names a grant could
    /// let it reach: a DNS query is itself a message to whoever serves the zone.
    pub fn allows_lookup(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.net.iter().any(|r| match &r.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == name,
            HostPattern::Suffix(s) => name.ends_with(s.as_str()),
        })
    }

    /// The resolved program for a requested one, if granted.
    pub fn program(&self, requested: &str) -> Option<&Path> {
        let wanted = if requested.contains('/') {
            Some(PathBuf::from(requested))
        } else {
            which(requested)
        }?;
        self.run
            .iter()
            .filter_map(|g| g.resolved.as_deref())
            .find(|p| *p == wanted)
    }

    /// The grant root under which `path` lies, and whether it is writable.
    pub fn root_for(&self, path: &Path) -> Option<(&Path, bool)> {
        // A file grant covers that file, not its directory.
        let covers =
            |g: &&PathGrant| path.starts_with(&g.dir) && (!g.widened_from_file || path == g.path);
        let write = self
            .write
            .iter()
            .filter(|g| path.starts_with(&g.dir))
            .max_by_key(|g| g.dir.as_os_str().len())
            .map(|g| (g.dir.as_path(), true));
        let read = self
            .read
            .iter()
            .filter(covers)
            .max_by_key(|g| g.dir.as_os_str().len())
            .map(|g| (g.dir.as_path(), false));
        write.or(read)
    }

    /// One line per grant, for `--dry-run` and `plugins inspect`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (label, list) in [("read", &self.read), ("write", &self.write)] {
            for g in list {
                let mut line = format!("{label:5} {}", g.path.display());
                if g.widened_from_file && label == "read" {
                    line += "  (a file: the plugin sees it alone, in a private directory)";
                } else if g.widened_from_file {
                    line += &format!(
                        "  (a file: its whole directory {} is writable)",
                        g.dir.display()
                    );
                }
                lines.push(line);
            }
        }
        for r in &self.net {
            lines.push(format!("net   {}", r.pattern));
        }
        for p in &self.run {
            match &p.resolved {
                Some(path) => lines.push(format!("run   {} ({})", p.name, path.display())),
                None => lines.push(format!(
                    "run   {} (not found on PATH: will be denied)",
                    p.name
                )),
            }
        }
        for e in &self.env {
            lines.push(format!("env   {e}"));
        }
        if lines.is_empty() {
            lines.push("(nothing)".into());
        }
        lines
    }
}

fn path_grant(raw: &str, at: &str) -> Result<PathGrant> {
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        bail!("{at}: {raw:?} must be an absolute path");
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        bail!("{at}: {raw:?} must not contain `.` or `..`");
    }
    // A grant of a file becomes a grant of its directory: WASI preopens directories.
    let is_file = std::fs::metadata(&path)
        .map(|m| !m.is_dir())
        .unwrap_or(false);
    let dir = if is_file {
        path.parent().unwrap_or(Path::new("/")).to_path_buf()
    } else {
        path.clone()
    };
    Ok(PathGrant {
        path,
        dir,
        widened_from_file: is_file,
    })
}

/// A host as compared for exact grants: lowercase, no brackets or trailing dot, and an IP
/// address in its canonical form (`::ffff:127.0.0.1` is `127.0.0.1`).
fn canonical_host(host: &str) -> String {
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => bare,
    }
}

impl NetRule {
    pub fn parse(raw: &str, at: &str) -> Result<NetRule> {
        let mut rest = raw.trim();
        let mut default_port = None;
        for (scheme, port) in [("https://", 443), ("http://", 80)] {
            if let Some(r) = rest.strip_prefix(scheme) {
                rest = r;
                default_port = Some(port);
            }
        }
        // Drop any path: grants are per peer.
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{at}: {raw:?}: bad port {p:?}"))?;
                (h, Some(port))
            }
            _ => (authority, default_port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            bail!("{at}: {raw:?}: no host");
        }
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{suffix}"))
        } else if host.contains('*') {
            bail!("{at}: {raw:?}: `*` is allowed only as `*` or a leading `*.`");
        } else {
            HostPattern::Exact(host)
        };
        Ok(NetRule {
            pattern: raw.to_string(),
            host,
            port,
        })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()),
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }

    /// For socket checks: the exact host this rule names, with the port it allows.
    pub fn exact_host_port(&self, port: u16) -> Option<(String, u16)> {
        match &self.host {
            HostPattern::Exact(h) if self.port.is_none_or(|p| p == port) => Some((h.clone(), port)),
            _ => None,
        }
    }

    /// A rule that matches every host: allowed, but flagged.
    pub fn is_wildcard(&self) -> bool {
        self.host == HostPattern::Any
    }

    /// A rule that matches every host on `port` (`*` or `*:port`).
    pub fn is_wildcard_for(&self, port: u16) -> bool {
        self.is_wildcard() && self.port.is_none_or(|p| p == port)
    }

    /// The exact host this rule names, if it names one (for `check`'s risk lines).
    pub fn exact_host(&self) -> Option<&str> {
        match &self.host {
            HostPattern::Exact(h) => Some(h),
            _ => None,
        }
    }
}

impl ProgramGrant {
    fn resolve(name: &str) -> ProgramGrant {
        let resolved = if name.contains('/') {
            let p = PathBuf::from(name);
            p.is_file().then_some(p)
        } else {
            which(name)
        };
        ProgramGrant {
            name: name.to_string(),
            resolved,
        }
    }
}

/// The first executable called `name` on the host's PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_rules_match_hosts_ports_and_suffixes() {
        let exact = NetRule::parse("s3.eu-west-1.amazonaws.com:443", "t").unwrap();
        assert!(exact.matches("s3.eu-west-1.amazonaws.com", 443));
        assert!(!exact.matches("s3.eu-west-1.amazonaws.com", 80));
        assert!(!exact.matches("evil.com", 443));

        let suffix = NetRule::parse("*.backblazeb2.com", "t").unwrap();
        assert!(suffix.matches("api001.backblazeb2.com", 443));
        assert!(!suffix.matches("backblazeb2.com.evil.com", 443));

        let url = NetRule::parse("http://127.0.0.1:9000/bucket", "t").unwrap();
        assert!(url.matches("127.0.0.1", 9000));
        assert!(!url.matches("127.0.0.1", 9001));

        let default_port = NetRule::parse("https://hooks.slack.com", "t").unwrap();
        assert!(default_port.matches("hooks.slack.com", 443));
        assert!(!default_port.matches("hooks.slack.com", 80));

        assert!(NetRule::parse("ev*il.com", "t").is_err());
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert!(path_grant("relative/dir", "t").is_err());
        assert!(path_grant("/srv/../etc", "t").is_err());
        let g = path_grant("/definitely/not/here", "t").unwrap();
        assert_eq!(g.dir, PathBuf::from("/definitely/not/here"));
    }

    #[test]
    fn a_spec_rejects_unknown_grant_kinds() {
        let v: Value = serde_json::json!({"exec": ["sh"]});
        let err = GrantSpec::parse(&v, "job.json: sources[0].grants").unwrap_err();
        assert!(err.to_string().contains("sources[0].grants.exec"), "{err}");
    }
}
