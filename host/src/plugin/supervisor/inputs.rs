//! Where a supervised plugin's work comes from: HTTP requests, reloads,
//! its timer, the files it watches, shutdown.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};

use crate::plugin::bindings::{HttpRequest, HttpResponse};
use crate::plugin::instance::PluginInstance;
use crate::plugin::load::ConfiguredPlugin;
use crate::plugin::watch::FileWatcher;

/// Writers rarely finish in one event (truncate, write, close): wait this
/// long after the first one before asking the plugin to re-read.
const FILE_SETTLE: Duration = Duration::from_millis(25);

/// What a reload brings a supervised plugin.
pub enum Reload {
    /// A new version, initialised with the operator's options: swap it in.
    Swap(Box<ConfiguredPlugin>),
    /// The new version could not be loaded; the running one stays.
    Failed(String),
}

/// An HTTP request for the plugin and where its answer goes.
pub struct HttpCall {
    pub request: HttpRequest,
    pub reply: oneshot::Sender<HttpResponse>,
}

/// Where a plugin's events come from. They outlive instances: queued HTTP
/// requests and file watches carry over a restart; the timer does not (a
/// new instance asks again).
pub(super) struct Inputs {
    pub(super) http: mpsc::Receiver<HttpCall>,
    pub(super) reloads: mpsc::Receiver<Reload>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) timer: Option<Interval>,
    /// The timer's period: a new version asking for the same keeps it, so
    /// a reload misses no round.
    pub(super) timer_every: Option<Duration>,
    pub(super) changed: mpsc::UnboundedReceiver<PathBuf>,
    pub(super) watcher: Option<FileWatcher>,
}

impl Inputs {
    pub(super) fn new(
        plugin: &str,
        http: mpsc::Receiver<HttpCall>,
        reloads: mpsc::Receiver<Reload>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (changed_tx, changed) = mpsc::unbounded_channel();
        let watcher = FileWatcher::new(changed_tx)
            .inspect_err(|e| {
                tracing::error!(
                    plugin,
                    "file watching unavailable, file changes will not be seen: {e}"
                )
            })
            .ok();
        Self {
            http,
            reloads,
            shutdown,
            timer: None,
            timer_every: None,
            changed,
            watcher,
        }
    }

    /// Act on timers and watches the plugin asked for during its last call.
    pub(super) async fn apply(&mut self, plugin: &str, instance: &mut PluginInstance) {
        let requests = instance.take_requests();
        if let Some(every) = requests.timer
            && (every != self.timer_every || self.timer.is_none())
        {
            self.timer = every.map(|every| {
                let mut timer =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
                timer
            });
            self.timer_every = every;
        }
        for path in requests.watches {
            if let Some(watcher) = &mut self.watcher
                && let Err(e) = watcher.watch(&path).await
            {
                tracing::warn!(plugin, path = %path.display(), "cannot watch file: {e}");
            }
        }
    }
}

/// The files changed since the last call, once writes have settled.
pub(super) async fn changed_files(
    changed: &mut mpsc::UnboundedReceiver<PathBuf>,
) -> Option<BTreeSet<PathBuf>> {
    let first = changed.recv().await?;
    tokio::time::sleep(FILE_SETTLE).await;
    let mut paths = BTreeSet::from([first]);
    while let Ok(path) = changed.try_recv() {
        paths.insert(path);
    }
    Some(paths)
}

/// Resolves once shutdown is signalled (or its sender is gone).
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub(super) async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}
