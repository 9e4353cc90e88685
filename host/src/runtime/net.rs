//! Which network peers a plugin may reach, beyond matching its `net` grant by name.
//!
//! A grant names a host; DNS decides where that name leads. A public name (or a `*`
//! grant) must not become a way into this machine or the cloud's metadata service, so
//! loopback, link-local and unspecified addresses are reachable only when the grant
//! names them literally (`127.0.0.1:9000`, `[::1]:9000`) or names `localhost`.
//! (A name whose DNS answer changes between this check and the connection — DNS
//! rebinding — is not caught for HTTP: SECURITY.md says so.)

use crate::grants::Grants;
use std::net::{IpAddr, SocketAddr};

/// Addresses that lead into this host or its cloud metadata service.
pub fn is_internal(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// For `wasi:http`: when `host` (already matched by a grant) is a name other than
/// `localhost`, the internal address it resolves to, if any.
pub async fn name_reaches_internal(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() || bare.eq_ignore_ascii_case("localhost") {
        return None;
    }
    tokio::net::lookup_host((bare, port))
        .await
        .ok()?
        .find(|a| is_internal(a.ip()))
}

/// For `wasi:sockets`: may the plugin connect to `addr`? Hostname grants are resolved
/// here and compared by address; `*.suffix` grants cannot be checked by address and are
/// for HTTP. This check is also what confines `wasi:tls`: its handshakes run over the
/// streams of connections that passed it.
pub async fn socket_allowed(grants: &Grants, label: &str, addr: SocketAddr) -> bool {
    let internal = is_internal(addr.ip());
    for rule in &grants.net {
        if rule.matches(&addr.ip().to_string(), addr.port()) && !rule.is_wildcard() {
            return true;
        }
        if rule.is_wildcard() && !internal {
            return true;
        }
    }
    for rule in &grants.net {
        if let Some((host, port)) = rule.exact_host_port(addr.port())
            && (!internal || host == "localhost")
            && let Ok(mut addrs) = tokio::net::lookup_host((host.as_str(), port)).await
            && addrs.any(|a| a == addr)
        {
            return true;
        }
    }
    tracing::warn!(
        plugin = label,
        capability = "net",
        wanted = %addr,
        "denied: no net grant matches socket address {addr}{}",
        if internal {
            " (an internal address is reachable only through a grant that names it)"
        } else {
            ""
        }
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_mapped_forms_are_internal() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
