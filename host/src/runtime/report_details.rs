//! `report-details` (since 0.1.4): what a notifier may ask during `notify` that the report's
//! records cannot carry. It opens nothing: the host hands over values it computed for the
//! report being sent, and only while that call runs; any other instance, or the same one
//! outside `notify`, is answered `none`.

use super::bindings::notifier::backups::plugin::report_details::{self, Details};
use super::state::PluginState;

impl report_details::Host for PluginState {
    async fn current(&mut self) -> Option<Details> {
        self.report_details.clone()
    }
}

/// Registers the interface with the linker every instance is made from.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    report_details::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}
