//! Outgoing HTTP for plugins (`wasi:http`), checked against the instance's `net` grants
//! before anything is sent. A request to a peer that was not granted never leaves the
//! process: the plugin sees `HTTP-request-denied` and the denial is logged.

use super::policy::Policy;
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

pub struct GrantedHttp {
    pub(super) policy: Arc<Policy>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for GrantedHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        if !self.policy.grants.allows_net(&host, port) {
            self.policy
                .net_denials
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                plugin = %self.policy.label,
                capability = "net",
                wanted = %format!("{host}:{port}"),
                "denied: no net grant matches {host}:{port} (granted: {})",
                granted_list(&self.policy)
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let policy = self.policy.clone();
        tracing::debug!(plugin = %policy.label, "http {} {}:{}", request.method(), host, port);
        let tls = uri.scheme_str() == Some("https");
        // wasmtime's own sender is not used: see http_send.rs for why.
        _ = fut;
        Box::new(async move {
            use super::net::{Unreachable, resolve_for_http};
            let addr = match resolve_for_http(&policy.grants, &host, port).await {
                Ok(addr) => addr,
                Err(Unreachable::Internal(addr)) => {
                    policy
                        .net_denials
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        plugin = %policy.label,
                        capability = "net",
                        wanted = %format!("{host}:{port}"),
                        "denied: {host}:{port} leads to the internal address {addr}, which only \
                         a grant naming it exactly (the address, or localhost) reaches"
                    );
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
                Err(Unreachable::Dns(why)) => {
                    tracing::debug!(plugin = %policy.label, "http: {host}: {why}");
                    return Err(wasmtime_wasi_http::Error::DnsError {
                        rcode: Some(why),
                        info_code: None,
                    });
                }
            };
            let (response, io) = super::http_send::send(request, options, addr, &host, tls).await?;
            Ok((response, io))
        })
    }
}

fn granted_list(policy: &Policy) -> String {
    if policy.grants.net.is_empty() {
        "nothing".into()
    } else {
        policy
            .grants
            .net
            .iter()
            .map(|r| r.pattern.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
