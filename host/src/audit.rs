//! What `backups check` (and `--dry-run`) tells a reviewer about one plugin instance:
//! where each grant came from, and which grants deserve a second look.

use crate::grants::{Grants, Origin};
use serde_json::{Map, Value};
use std::path::Path;

/// Programs that run whatever they are told: granting one grants every command.
const COMMAND_RUNNERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox", "env", "sudo",
    "doas", "su", "xargs", "nohup", "timeout", "python", "perl", "ruby", "node", "php", "lua",
    "awk", "gawk", "find",
];

/// One line per grant (as [`Grants::describe`] words it), with where it came from: the
/// key whose value it was derived from, the entry's `grants` block, or the plugin's own
/// request.
pub fn grant_provenance(grants: &Grants, config: &Map<String, Value>) -> Vec<String> {
    let values = flatten(config);
    let origin_of = |needle: &str, exact: bool| -> String {
        match &grants.origin {
            Origin::Explicit => "explicit".into(),
            Origin::None => "none".into(),
            Origin::Derived { .. } => values
                .iter()
                .find(|(_, v)| {
                    if exact {
                        v == needle
                    } else {
                        v.contains(needle)
                    }
                })
                .map(|(k, _)| format!("derived from `{k}`"))
                .unwrap_or_else(|| "requested by the plugin itself".into()),
        }
    };
    // Same order as `Grants::describe`: read, write, net, run, env.
    let mut origins = Vec::new();
    for g in grants.read.iter().chain(&grants.write) {
        origins.push(origin_of(&g.path.display().to_string(), false));
    }
    for r in &grants.net {
        origins.push(origin_of(host_of(&r.pattern), false));
    }
    for p in &grants.run {
        origins.push(origin_of(&p.name, true));
    }
    for e in &grants.env {
        origins.push(origin_of(e, true));
    }
    let lines = grants.describe();
    if origins.is_empty() {
        return lines;
    }
    lines
        .into_iter()
        .zip(origins)
        .map(|(line, origin)| format!("{line}  [{origin}]"))
        .collect()
}

/// Each grant (as granted) that contains one of `sensitive` (the job file, secret files),
/// with that file: judged by where both really are, symlinks resolved.
pub fn exposed_files(grants: &Grants, sensitive: &[std::path::PathBuf]) -> Vec<(String, String)> {
    let files: Vec<_> = sensitive
        .iter()
        .filter_map(|f| f.canonicalize().ok())
        .collect();
    let mut out = Vec::new();
    for g in grants.read.iter().chain(&grants.write) {
        let Ok(dir) = g.dir.canonicalize() else {
            continue;
        };
        for f in &files {
            if f.starts_with(&dir) {
                out.push((g.path.display().to_string(), f.display().to_string()));
            }
        }
    }
    out
}

/// Grants a reviewer should look at twice, each with the reason.
pub fn risks(grants: &Grants, tmpdir: &Path, sensitive: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for (grant, file) in exposed_files(grants, sensitive) {
        out.push(format!(
            "{grant}: contains {file}, which holds this job's secrets (the job file or a \
             {{\"file\": …}} secret)"
        ));
    }
    for g in &grants.read {
        if g.dir == Path::new("/") {
            out.push("read /: the whole filesystem".to_string());
        }
    }
    for g in &grants.write {
        if !g.dir.starts_with(tmpdir) && !g.dir.starts_with("/tmp") {
            out.push(format!(
                "write {}: outside the temp dir ({})",
                g.path.display(),
                tmpdir.display()
            ));
        }
    }
    for p in &grants.run {
        let program = p
            .resolved
            .as_deref()
            .unwrap_or(Path::new(&p.name))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // python3.11 is python.
        let base = program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        if COMMAND_RUNNERS.contains(&base) {
            out.push(format!(
                "run {}: a shell or interpreter runs any command it is given",
                p.name
            ));
        }
    }
    for r in &grants.net {
        if r.is_wildcard() {
            out.push(format!("net {}: any host on the network", r.pattern));
        } else if host_of(&r.pattern).starts_with("*.") {
            out.push(format!("net {}: every host under a domain", r.pattern));
        } else if let Some(host) = r.exact_host().filter(|h| names_internal(h)) {
            out.push(format!(
                "net {}: {host} is this machine or its cloud metadata service; \
                 only this exact grant reaches it",
                r.pattern
            ));
        }
    }
    out
}

/// An exact grant of `localhost` or of an internal address (see `runtime::net`).
fn names_internal(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(crate::runtime::is_internal)
}

/// `https://a.b:443/x` → `a.b`.
fn host_of(pattern: &str) -> &str {
    let rest = pattern.split("://").last().unwrap_or(pattern);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Every string value of a config with its dotted key: `credentials.username`.
fn flatten(config: &Map<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in config {
        if !["id", "name", "type"].contains(&k.as_str()) {
            walk(k, v, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::GrantSpec;
    use serde_json::json;

    fn grants(spec: Value, origin: Origin) -> Grants {
        Grants::resolve(&GrantSpec::parse(&spec, "t").unwrap(), origin, "t").unwrap()
    }

    #[test]
    fn derived_grants_name_the_key_they_come_from() {
        let g = grants(
            json!({"read": ["/srv/data"], "net": ["https://s3.example.com"], "run": ["tar"]}),
            Origin::Derived {
                plugin: "folder".into(),
            },
        );
        let config = json!({"type": "folder", "path": "/srv/data", "endpoint_url": "https://s3.example.com"});
        let lines = grant_provenance(&g, config.as_object().unwrap());
        assert!(lines[0].contains("derived from `path`"), "{lines:?}");
        assert!(
            lines[1].contains("derived from `endpoint_url`"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("requested by the plugin itself"),
            "{lines:?}"
        );
    }

    #[test]
    fn shells_wildcards_and_writes_outside_tmp_are_flagged() {
        let g = grants(
            json!({"read": ["/"], "write": ["/var/tmp/backups/x", "/etc"], "run": ["/bin/sh", "python3.11"],
                   "net": ["*", "*.example.com", "api.example.com"]}),
            Origin::Explicit,
        );
        let r = risks(&g, Path::new("/var/tmp/backups"), &[]);
        let all = r.join("\n");
        assert!(all.contains("read /"), "{all}");
        assert!(all.contains("write /etc"), "{all}");
        assert!(!all.contains("write /var/tmp"), "{all}");
        assert!(all.contains("run /bin/sh"), "{all}");
        assert!(all.contains("run python3.11"), "{all}");
        assert!(all.contains("net *: any host"), "{all}");
        assert!(all.contains("net *.example.com"), "{all}");
        assert!(!all.contains("api.example.com"), "{all}");

        let g = grants(
            json!({"net": ["127.0.0.1:9000", "localhost:80", "[::ffff:169.254.169.254]:80", "10.0.0.1:80"]}),
            Origin::Explicit,
        );
        let all = risks(&g, Path::new("/tmp"), &[]).join("\n");
        assert!(
            all.contains("net 127.0.0.1:9000: 127.0.0.1 is this machine"),
            "{all}"
        );
        assert!(all.contains("net localhost:80"), "{all}");
        assert!(all.contains("net [::ffff:169.254.169.254]:80"), "{all}");
        assert!(!all.contains("10.0.0.1"), "{all}");
    }
}
