//! Which network peers a plugin may reach, beyond matching its `net` grant by name.
//!
//! A grant names a host; DNS decides where that name leads. A public name (or a `*`
//! grant) must not become a way into this machine or the cloud's metadata service, so
//! loopback, link-local and unspecified addresses are reachable only when the grant
//! names them literally (`127.0.0.1:9000`, `[::1]:9000`) or names `localhost`.
//! HTTP requests connect to the very address checked here (see `http_send.rs`), so a DNS
//! answer that changes between check and connection (DNS rebinding) changes nothing.

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

/// Why an HTTP request's peer was not resolved to an address we may connect to.
pub enum Unreachable {
    /// A name other than `localhost` leads into this host or its metadata service.
    Internal(SocketAddr),
    /// The name did not resolve.
    Dns(String),
}

/// For `wasi:http`: the one address a request to `host:port` (already matched by a grant)
/// will connect to. An IP literal is itself (the grant named it); `localhost` is allowed
/// its loopback address; any other name must not lead to an internal address.
pub async fn resolve_for_http(host: &str, port: u16) -> Result<SocketAddr, Unreachable> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| Unreachable::Dns(e.to_string()))?
        .collect();
    if !bare.eq_ignore_ascii_case("localhost")
        && let Some(internal) = addrs.iter().find(|a| is_internal(a.ip()))
    {
        return Err(Unreachable::Internal(*internal));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| Unreachable::Dns(format!("{bare} has no address")))
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
