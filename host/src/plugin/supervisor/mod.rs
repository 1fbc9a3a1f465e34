//! One supervised task per plugin. It owns the plugin's instance and drives
//! it by role: a config source gets its events (start, timer, file changes,
//! HTTP requests) and its specs go to the spec store; a health checker gets
//! a round over the working set at each tick of its timer and its reports go
//! to the health board. After any fatal outcome (trap, deadline, memory cap)
//! the instance is dropped and a fresh one started with exponential backoff.
//! The spec in force and the last known health stay meanwhile; the daemon
//! never exits because of a plugin.

mod config;
mod health;
mod inputs;
mod notify;
mod run;
mod status;

use tokio::sync::{mpsc, watch};

use super::load::ConfiguredPlugin;
use inputs::Inputs;
use run::Supervisor;

pub use inputs::{HttpCall, Reload};
pub use run::Role;
pub use status::{PluginState, PluginStatus, RoundStats, Running};

#[cfg(test)]
pub(super) use health::reports;

/// Requests waiting for a busy or restarting plugin.
const HTTP_QUEUE: usize = 64;

/// The daemon's side of a running plugin.
pub struct PluginHandle {
    pub name: String,
    pub http_paths: Vec<String>,
    http: mpsc::Sender<HttpCall>,
    reloads: mpsc::Sender<Reload>,
    status: watch::Receiver<PluginStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl PluginHandle {
    pub fn http(&self) -> mpsc::Sender<HttpCall> {
        self.http.clone()
    }

    pub fn status(&self) -> watch::Receiver<PluginStatus> {
        self.status.clone()
    }

    /// Where reloads of this plugin go.
    pub fn reloads(&self) -> mpsc::Sender<Reload> {
        self.reloads.clone()
    }

    /// Wait for the task to finish after shutdown was signalled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Start supervising `plugin` in `role`; it stops when `shutdown` becomes
/// true.
pub fn spawn(
    plugin: ConfiguredPlugin,
    role: Role,
    shutdown: watch::Receiver<bool>,
) -> PluginHandle {
    let (http_tx, http_rx) = mpsc::channel(HTTP_QUEUE);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (status_tx, status_rx) = watch::channel(PluginStatus {
        running: Running::of(&plugin),
        state: PluginState::Running,
        restarts: 0,
        last_error: None,
        rounds: matches!(role, Role::Health { .. }).then(RoundStats::default),
        reloads: 0,
        reload_error: None,
    });
    let name = plugin.info.name.clone();
    let http_paths = plugin.info.http_paths.clone();
    let supervisor = Supervisor {
        factory: plugin.factory,
        options: plugin.options,
        role,
        status: status_tx,
    };
    let inputs = Inputs::new(supervisor.factory.plugin(), http_rx, reload_rx, shutdown);
    let task = tokio::spawn(supervisor.run(plugin.instance, inputs));
    PluginHandle {
        name,
        http_paths,
        http: http_tx,
        reloads: reload_tx,
        status: status_rx,
        task,
    }
}
