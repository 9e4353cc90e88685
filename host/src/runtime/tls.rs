//! TLS for plugins (`wasi:tls`): the host owns trust. A plugin hands the streams of a TCP
//! connection to `client-handshake` with the server name it wants; the handshake and the
//! certificate check happen here, with rustls, so no plugin can skip verification or bring
//! its own roots.
//!
//! Trust is the system's: the roots come from the platform store (on Linux the OpenSSL
//! locations, e.g. /etc/ssl/certs), or from the standard `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! variables, which replace it. That is how an operator trusts an internal CA for a mail
//! relay, as for OpenSSL-based tools, without a setting of ours; and trust stays the
//! machine administrator's decision, not a job file's or a plugin's. Only when the system
//! offers no roots at all (a bare container) do we fall back to the Mozilla roots compiled
//! in (webpki-roots), so public servers still verify.
//!
//! No new way out of the sandbox: `client-handshake` only wraps streams the plugin already
//! holds. For a network peer those come from a `wasi:sockets` connection, and every TCP
//! connect was checked against the entry's `net` grant (`socket_addr_check` in
//! [`super::Runtime`]); `wasi:tls` opens no connection of its own. The server name a plugin
//! passes only chooses the name the certificate must be valid for.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName};
use wasmtime_wasi_tls::{TlsProvider, TlsStream, TlsTransport, WasiTlsCtx, WasiTlsCtxBuilder};

/// A `wasi:tls` context for one plugin instance.
pub fn context() -> WasiTlsCtx {
    WasiTlsCtxBuilder::new()
        .provider(Box::new(SystemTrust))
        .build()
}

/// Built at the first handshake of the process, so runs without TLS never read the
/// system store (a few hundred certificates to parse).
static CLIENT_CONFIG: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(trusted_roots())
        .with_no_client_auth();
    Arc::new(config)
});

fn trusted_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!("TLS: reading the system's trusted certificates: {error}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("TLS: {ignored} of the system's trusted certificates could not be used");
    }
    if added == 0 {
        tracing::warn!(
            "TLS: no trusted certificates in the system store (SSL_CERT_FILE / SSL_CERT_DIR \
             or the OpenSSL locations); using the Mozilla roots built into backups"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        tracing::debug!("TLS: {added} trusted certificates from the system store");
    }
    roots
}

/// rustls with the roots above.
struct SystemTrust;

type Handshake =
    Pin<Box<dyn Future<Output = Result<Box<dyn TlsStream>, wasmtime_wasi_tls::Error>> + Send>>;

impl TlsProvider for SystemTrust {
    fn connect(&self, server_name: String, transport: Box<dyn TlsTransport>) -> Handshake {
        let connector = tokio_rustls::TlsConnector::from(CLIENT_CONFIG.clone());
        Box::pin(async move {
            let name = ServerName::try_from(server_name.clone()).map_err(|_| {
                wasmtime_wasi_tls::Error::msg(format!("{server_name:?} is not a server name"))
            })?;
            // rustls' own message survives: "invalid peer certificate: UnknownIssuer".
            let stream = connector.connect(name, transport).await?;
            Ok(Box::new(stream) as Box<dyn TlsStream>)
        })
    }
}

/// For HTTPS requests the host sends for plugins (`http_send.rs`): the same trust.
pub fn connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(CLIENT_CONFIG.clone())
}

/// The name a certificate must be valid for: a DNS name, or an IP address (`[::1]` too).
pub fn server_name(
    host: &str,
) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
}
