//! `wasi:sockets/ip-name-lookup`, confined to the names a plugin's `net` grants name.
//!
//! wasmtime-wasi resolves any name once lookups are allowed at all, and a DNS query is a
//! message: `<secret>.attacker.example` carries the secret to whoever serves that zone,
//! through the system's resolver, whatever the plugin may connect to. So the host looks
//! up only names a grant could let the plugin reach: an exact name (`api.example.org`), a
//! name under a `*.suffix` grant, or any name under `*` (which grants talking to any
//! public peer anyway; connections are still checked address by address in `net.rs`).
//! IP literals need no query and pass. Every refusal is logged and counted like any other
//! denied network request.
//!
//! The interface is shadowed in the linker: our [`Host`] checks the name, then hands the
//! call to wasmtime-wasi's own implementation.

use super::policy::Policy;
use super::state::PluginState;
use std::sync::Arc;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, Host, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

/// Replaces wasmtime-wasi's `ip-name-lookup` in `linker` with the gated one.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<PluginState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let added = ip_name_lookup::add_to_linker::<PluginState, GatedLookup>(linker, |state| {
        GatedLookupView {
            policy: state.policy.clone(),
            sockets: state.sockets(),
        }
    });
    linker.allow_shadowing(false);
    added.map_err(|e| anyhow::anyhow!("linking the gated name lookup: {e}"))
}

struct GatedLookup;

impl HasData for GatedLookup {
    type Data<'a> = GatedLookupView<'a>;
}

pub struct GatedLookupView<'a> {
    policy: Arc<Policy>,
    sockets: WasiSocketsCtxView<'a>,
}

impl Host for GatedLookupView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.policy.grants.allows_lookup(&name) {
            self.policy
                .net_denials
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let shown = crate::text::for_terminal(&name, 256);
            tracing::warn!(
                plugin = %self.policy.label,
                capability = "net",
                wanted = %shown,
                "denied: name lookup of {shown}: no net grant names it"
            );
            return Err(ErrorCode::AccessDenied.into());
        }
        self.sockets.resolve_addresses(network, name)
    }
}

/// The error conversions `ip-name-lookup` shares with `network`: wasmtime-wasi's own.
impl network::Host for GatedLookupView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, err)
    }
}

impl network::HostNetwork for GatedLookupView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl HostResolveAddressStream for GatedLookupView<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        self.sockets.resolve_next_address(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostResolveAddressStream::subscribe(&mut self.sockets, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}
