//! One supervised task per config-source plugin. It owns the plugin's
//! instance, delivers its events (start, timer, file changes, HTTP
//! requests), offers the specs it returns to the spec store, and after any
//! fatal outcome (trap, deadline, memory cap) drops the instance and starts
//! a fresh one with exponential backoff. The spec in force is untouched
//! throughout; the daemon never exits because of a plugin.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::bindings::{Event, HttpRequest, HttpResponse, Route};
use super::instance::{CallError, InstanceFactory, PluginInstance};
use super::load::ConfiguredPlugin;
use super::watch::FileWatcher;
use crate::spec_store::SpecStore;

/// Writers rarely finish in one event (truncate, write, close): wait this
/// long after the first one before asking the plugin to re-read.
const FILE_SETTLE: Duration = Duration::from_millis(25);

/// Requests waiting for a busy or restarting plugin.
const HTTP_QUEUE: usize = 64;

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
    pub state: PluginState,
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// An HTTP request for the plugin and where its answer goes.
pub struct HttpCall {
    pub request: HttpRequest,
    pub reply: oneshot::Sender<HttpResponse>,
}

/// The daemon's side of a running config-source plugin.
pub struct ConfigSourceHandle {
    pub name: String,
    pub http_paths: Vec<String>,
    http: mpsc::Sender<HttpCall>,
    status: watch::Receiver<PluginStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl ConfigSourceHandle {
    pub fn http(&self) -> mpsc::Sender<HttpCall> {
        self.http.clone()
    }

    pub fn status(&self) -> watch::Receiver<PluginStatus> {
        self.status.clone()
    }

    /// Wait for the task to finish after shutdown was signalled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Start supervising `plugin`; it stops when `shutdown` becomes true.
pub fn spawn(
    plugin: ConfiguredPlugin,
    specs: Arc<SpecStore>,
    shutdown: watch::Receiver<bool>,
) -> ConfigSourceHandle {
    let (http_tx, http_rx) = mpsc::channel(HTTP_QUEUE);
    let (status_tx, status_rx) = watch::channel(PluginStatus {
        state: PluginState::Running,
        restarts: 0,
        last_error: None,
    });
    let name = plugin.info.name.clone();
    let http_paths = plugin.info.http_paths.clone();
    let supervisor = Supervisor {
        factory: plugin.factory,
        options: plugin.options,
        specs,
        status: status_tx,
    };
    let inputs = Inputs::new(supervisor.factory.plugin(), http_rx, shutdown);
    let task = tokio::spawn(supervisor.run(plugin.instance, inputs));
    ConfigSourceHandle {
        name,
        http_paths,
        http: http_tx,
        status: status_rx,
        task,
    }
}

struct Supervisor {
    factory: InstanceFactory,
    options: Vec<(String, String)>,
    specs: Arc<SpecStore>,
    status: watch::Sender<PluginStatus>,
}

/// Where a plugin's events come from. They outlive instances: queued HTTP
/// requests and file watches carry over a restart; the timer does not (a
/// new instance asks again).
struct Inputs {
    http: mpsc::Receiver<HttpCall>,
    shutdown: watch::Receiver<bool>,
    timer: Option<Interval>,
    changed: mpsc::UnboundedReceiver<PathBuf>,
    watcher: Option<FileWatcher>,
}

impl Inputs {
    fn new(plugin: &str, http: mpsc::Receiver<HttpCall>, shutdown: watch::Receiver<bool>) -> Self {
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
            shutdown,
            timer: None,
            changed,
            watcher,
        }
    }

    /// Act on timers and watches the plugin asked for during its last call.
    fn apply(&mut self, plugin: &str, instance: &mut PluginInstance) {
        let requests = instance.take_requests();
        if let Some(every) = requests.timer {
            self.timer = every.map(|every| {
                let mut timer =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
                timer
            });
        }
        for path in requests.watches {
            if let Some(watcher) = &mut self.watcher
                && let Err(e) = watcher.watch(&path)
            {
                tracing::warn!(plugin, path = %path.display(), "cannot watch file: {e}");
            }
        }
    }
}

/// Why serving an instance ended.
enum Ended {
    Shutdown,
    Fault(CallError),
}

impl Supervisor {
    async fn run(self, first: PluginInstance, mut inputs: Inputs) {
        let plugin = self.factory.plugin().to_string();
        let bounds = self.factory.bounds().clone();
        let mut backoff = bounds.backoff_base;
        let mut next = Some(first);
        loop {
            let instance = match next.take() {
                Some(instance) => Ok(instance),
                None => self.start().await,
            };
            let started = Instant::now();
            let ended = match instance {
                Ok(mut instance) => {
                    self.status.send_modify(|s| s.state = PluginState::Running);
                    self.serve(&mut instance, &mut inputs).await
                }
                Err(fault) => Ended::Fault(fault),
            };
            let fault = match ended {
                Ended::Shutdown => break,
                Ended::Fault(fault) => fault,
            };
            if started.elapsed() >= bounds.backoff_reset_after {
                backoff = bounds.backoff_base;
            }
            tracing::warn!(plugin, cause = %fault, retry_in = ?backoff, "plugin failed; restarting it, the spec in force stays");
            inputs.timer = None;
            self.status.send_modify(|s| {
                s.state = PluginState::Restarting { retry_in: backoff };
                s.restarts += 1;
                s.last_error = Some(fault.to_string());
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut inputs.shutdown) => break,
            }
            backoff = (backoff * 2).min(bounds.backoff_cap);
        }
        self.status.send_modify(|s| s.state = PluginState::Stopped);
    }

    /// A fresh instance, initialised with the operator's options.
    async fn start(&self) -> Result<PluginInstance, CallError> {
        let mut instance = self.factory.instantiate().await?;
        match instance.init(&self.options).await {
            Ok(()) => Ok(instance),
            // It accepted these options at start-up; refusing them now is a
            // fault of the instance, not a reason to stop.
            Err(CallError::Plugin(reason)) => Err(CallError::Trapped {
                call: "init",
                reason,
            }),
            Err(fault) => Err(fault),
        }
    }

    /// Deliver events to `instance` until shutdown or a fault.
    async fn serve(&self, instance: &mut PluginInstance, inputs: &mut Inputs) -> Ended {
        let plugin = self.factory.plugin();
        let mut outcome = self.deliver(instance, Event::Started).await;
        loop {
            if let Err(fault) = outcome {
                return Ended::Fault(fault);
            }
            inputs.apply(plugin, instance);
            outcome = tokio::select! {
                _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                Some(call) = inputs.http.recv() => self.handle_http(instance, call).await,
                Some(paths) = changed_files(&mut inputs.changed) => {
                    let mut result = Ok(());
                    for path in paths {
                        let event = Event::FileChanged(path.display().to_string());
                        result = result.and(self.deliver(instance, event).await);
                    }
                    result
                }
                _ = tick(&mut inputs.timer) => self.deliver(instance, Event::Timer).await,
            };
        }
    }

    async fn deliver(&self, instance: &mut PluginInstance, event: Event) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        tracing::debug!(plugin, ?event, "plugin event");
        match instance.on_event(&event).await {
            Ok(Some(routes)) => {
                let _ = self.specs.offer(plugin, entries(routes));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(CallError::Plugin(reason)) => {
                tracing::warn!(
                    plugin,
                    ?event,
                    "plugin reported an error, the spec in force stays: {reason}"
                );
                Ok(())
            }
            Err(fault) => Err(fault),
        }
    }

    async fn handle_http(
        &self,
        instance: &mut PluginInstance,
        call: HttpCall,
    ) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        // The client gave up (e.g. while the plugin was restarting): a spec
        // it was told failed must not be applied behind its back.
        if call.reply.is_closed() {
            tracing::debug!(plugin, path = %call.request.path, "dropping a request whose client has gone");
            return Ok(());
        }
        let (response, fault) = match instance.handle_http(&call.request).await {
            Ok((response, None)) => (response, None),
            Ok((response, Some(routes))) => match self.specs.offer(plugin, entries(routes)) {
                Ok(_) => (response, None),
                Err(e) => (json_error(400, &format!("invalid route spec: {e}")), None),
            },
            Err(CallError::Plugin(reason)) => (json_error(500, &reason), None),
            Err(fault) => {
                let message = format!("plugin {plugin} failed ({fault}); it is being restarted");
                (json_error(503, &message), Some(fault))
            }
        };
        let _ = call.reply.send(response);
        fault.map_or(Ok(()), Err)
    }
}

/// The files changed since the last call, once writes have settled.
async fn changed_files(
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
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn entries(routes: Vec<Route>) -> impl Iterator<Item = (String, Vec<String>)> {
    routes.into_iter().map(|r| (r.cidr, r.hosts))
}

fn json_error(status: u16, message: &str) -> HttpResponse {
    HttpResponse {
        status,
        content_type: "application/json".into(),
        body: serde_json::json!({ "error": message })
            .to_string()
            .into_bytes(),
    }
}
