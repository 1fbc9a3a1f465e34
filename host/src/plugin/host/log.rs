//! Logging through the host: the line carries the plugin's name (which the
//! daemon's log budget counts against) and at most [`MAX_MESSAGE`] bytes.

use super::super::bindings::config::vpcrouter::plugin::log::{Host, Level};
use super::super::instance::HostState;
use super::super::text::clip;

/// Longest message a plugin may log; longer ones are cut and marked.
pub const MAX_MESSAGE: usize = 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        let message = clip(&message, MAX_MESSAGE);
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        Ok(match level {
            Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(tracing::Level::INFO),
            Level::Warn => tracing::enabled!(tracing::Level::WARN),
            Level::Error => tracing::enabled!(tracing::Level::ERROR),
        })
    }
}
