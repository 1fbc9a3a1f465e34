//! What the daemon shows about a supervised plugin.

use std::sync::Arc;
use std::time::Duration;

use crate::plugin::grants::GrantRecord;
use crate::plugin::load::{ConfiguredPlugin, Origin};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    Running,
    /// Waiting out the backoff before the next instance.
    Restarting {
        retry_in: Duration,
    },
    Stopped,
}

/// What the daemon shows about a plugin.
#[derive(Debug, Clone)]
pub struct PluginStatus {
    /// The version running.
    pub running: Arc<Running>,
    pub state: PluginState,
    pub restarts: u64,
    pub last_error: Option<String>,
    /// Health checkers only.
    pub rounds: Option<RoundStats>,
    /// Versions swapped in by reloads.
    pub reloads: u64,
    /// The last reload's outcome, when it was not a success.
    pub reload_error: Option<String>,
}

/// The running version of a plugin: what it is, where it came from, what it
/// was given and may touch. Replaced by a reload.
#[derive(Debug, Clone)]
pub struct Running {
    pub version: String,
    pub origin: Origin,
    pub options: Vec<(String, String)>,
    pub grants: Vec<GrantRecord>,
}

impl Running {
    pub(super) fn of(plugin: &ConfiguredPlugin) -> Arc<Self> {
        Arc::new(Self {
            version: plugin.info.version.clone(),
            origin: plugin.origin.clone(),
            options: plugin.options.clone(),
            grants: plugin.grants.records.clone(),
        })
    }
}

/// Live figures of a health checker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub rounds: u64,
    /// Host results received, and how many of them were not healthy.
    pub results: u64,
    pub failures: u64,
    pub last_round: Duration,
    /// Of the last round's probes: (min, median, max) in microseconds.
    pub rtt_us: Option<(u32, u32, u32)>,
}
