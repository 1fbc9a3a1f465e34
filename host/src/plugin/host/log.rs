//! Logging through the host: the line carries the plugin's name and the
//! target the daemon's log budget charges to the plugin, and at most
//! [`MAX_MESSAGE`] bytes (its line breaks escaped by the log writer).

use super::super::bindings::config::vpcrouter::plugin::log::{Host, Level};
use super::super::instance::HostState;
use crate::logging::PLUGIN_LINES;
use crate::text::clip;

/// Longest message a plugin may log; longer ones are cut and marked.
pub const MAX_MESSAGE: usize = 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        let message = clip(&message, MAX_MESSAGE);
        match level {
            Level::Trace => tracing::trace!(target: PLUGIN_LINES, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: PLUGIN_LINES, plugin, "{message}"),
            Level::Info => tracing::info!(target: PLUGIN_LINES, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: PLUGIN_LINES, plugin, "{message}"),
            Level::Error => tracing::error!(target: PLUGIN_LINES, plugin, "{message}"),
        }
        Ok(())
    }

    fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        Ok(match level {
            Level::Trace => tracing::enabled!(target: PLUGIN_LINES, tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: PLUGIN_LINES, tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: PLUGIN_LINES, tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: PLUGIN_LINES, tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: PLUGIN_LINES, tracing::Level::ERROR),
        })
    }
}
