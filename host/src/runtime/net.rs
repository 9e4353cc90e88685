//! Which network peers a plugin may reach, beyond matching its `net` grant by name.
//!
//! The rule, for HTTP, TLS and raw sockets alike: an *internal* address — loopback,
//! link-local (the cloud metadata services 169.254.169.254 and fd00:ec2::254 among them),
//! unspecified, or an IPv4-mapped/compatible form of one — is reachable only through a
//! grant that names it exactly: the address itself (`127.0.0.1:9000`, `[::1]:9000`) or
//! the name `localhost` (`localhost:9000`). `*`, `*.suffix` and every other name never
//! lead there, whatever DNS answers; `check` prints each exact internal grant as a RISK.
//! HTTP requests connect to the very address checked here (see `http_send.rs`), so a DNS
//! answer that changes between check and connection (DNS rebinding) changes nothing.

use crate::grants::Grants;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// AWS's IPv6 instance metadata service.
const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Addresses that lead into this host or its cloud metadata service.
pub fn is_internal(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => return true,
        // Mapped (::ffff:a.b.c.d) and the old compatible (::a.b.c.d) forms reach IPv4.
        IpAddr::V6(v6) => v6.to_ipv4().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == EC2_METADATA_V6,
    }
}

/// `localhost`, the one name an exact grant may use to reach loopback.
fn is_localhost(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}

/// Why an HTTP request's peer was not resolved to an address we may connect to.
pub enum Unreachable {
    /// The request leads into this host or its metadata service without a grant that
    /// names that address (or `localhost`) exactly.
    Internal(SocketAddr),
    /// The name did not resolve.
    Dns(String),
}

/// For `wasi:http`: the one address a request to `host:port` (already matched by a grant)
/// will connect to, checked against the rule above.
pub async fn resolve_for_http(
    grants: &Grants,
    host: &str,
    port: u16,
) -> Result<SocketAddr, Unreachable> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        let addr = SocketAddr::new(ip, port);
        if is_internal(ip) && !grants.names_exactly(bare, port) {
            return Err(Unreachable::Internal(addr));
        }
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| Unreachable::Dns(e.to_string()))?
        .collect();
    let may_be_internal = is_localhost(bare) && grants.names_exactly("localhost", port);
    if !may_be_internal && let Some(internal) = addrs.iter().find(|a| is_internal(a.ip())) {
        return Err(Unreachable::Internal(*internal));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| Unreachable::Dns(format!("{bare} has no address")))
}

/// For `wasi:sockets`: may the plugin connect to `addr`? Exact name grants are resolved
/// here and compared by address; `*.suffix` grants cannot be checked by address and are
/// for HTTP. This check is also what confines `wasi:tls`: its handshakes run over the
/// streams of connections that passed it.
pub async fn socket_allowed(grants: &Grants, label: &str, addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let port = addr.port();
    let internal = is_internal(ip);
    if grants.names_exactly(&ip.to_string(), port)
        || (!internal && grants.net.iter().any(|r| r.is_wildcard_for(port)))
    {
        return true;
    }
    for rule in &grants.net {
        let Some(host) = rule.exact_host() else {
            continue;
        };
        if host.parse::<IpAddr>().is_ok()
            || !rule.matches(host, port)
            || (internal && !is_localhost(host))
        {
            continue;
        }
        if let Ok(mut addrs) = tokio::net::lookup_host((host, port)).await
            && addrs.any(|a| a.ip().to_canonical() == ip)
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
            " (an internal address is reachable only through a grant that names it exactly)"
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
            "::127.0.0.1",
            "0.1.2.3",
            "fd00:ec2::254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
