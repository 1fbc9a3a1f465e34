//! The supervision loop: serve an instance by its role until shutdown, a
//! fault (then back off and start a fresh one) or a reload (then swap the
//! new version in).

use std::time::Instant;
use tokio::sync::{mpsc, watch};

use super::inputs::Reload;
use super::inputs::{Inputs, stopped};
use super::status::{PluginState, PluginStatus, Running};
use crate::health::HealthBoard;
use crate::notify::NotifyCall;
use crate::plugin::bindings::PluginKind;
use crate::plugin::instance::{CallError, InstanceFactory, PluginInstance};
use crate::plugin::load::ConfiguredPlugin;
use crate::spec_store::{SpecStore, SpecWatch};
use std::sync::Arc;

/// What a supervised plugin feeds.
pub enum Role {
    /// A config source: its specs are offered to the store.
    Config(Arc<SpecStore>),
    /// A health checker: rounds over the hosts of the spec in force,
    /// reported to the board.
    Health {
        specs: SpecWatch,
        board: Arc<HealthBoard>,
    },
    /// A notifier: batches of notices handed over through `calls`, which
    /// outlive its instances.
    Notify {
        calls: Arc<tokio::sync::Mutex<mpsc::Receiver<NotifyCall>>>,
        sender: mpsc::Sender<NotifyCall>,
    },
}

impl Role {
    /// What a plugin of `kind` feeds: the spec store, the health board, or
    /// (a notifier) whoever holds [`Role::notify_calls`].
    pub fn of(kind: PluginKind, specs: &Arc<SpecStore>, board: &Arc<HealthBoard>) -> Self {
        match kind {
            PluginKind::ConfigSource => Role::Config(specs.clone()),
            PluginKind::HealthCheck => Role::Health {
                specs: specs.subscribe(),
                board: board.clone(),
            },
            PluginKind::Notifier => {
                // One batch at a time: the sink's queue is where batches wait.
                let (sender, calls) = mpsc::channel(1);
                Role::Notify {
                    calls: Arc::new(tokio::sync::Mutex::new(calls)),
                    sender,
                }
            }
        }
    }

    /// Where a notifier's batches go in.
    pub fn notify_calls(&self) -> Option<mpsc::Sender<NotifyCall>> {
        match self {
            Role::Notify { sender, .. } => Some(sender.clone()),
            _ => None,
        }
    }
}

pub(super) struct Supervisor {
    pub(super) factory: InstanceFactory,
    pub(super) options: Vec<(String, String)>,
    pub(super) role: Role,
    pub(super) status: watch::Sender<PluginStatus>,
}

/// Why serving an instance ended.
pub(super) enum Ended {
    Shutdown,
    Fault(CallError),
    /// A reload brought a new version.
    Swapped(Box<ConfiguredPlugin>),
}

impl Supervisor {
    pub(super) async fn run(mut self, first: PluginInstance, mut inputs: Inputs) {
        let plugin = self.factory.plugin().to_string();
        let bounds = self.factory.bounds().clone();
        let mut backoff = bounds.backoff_base;
        let mut next = Some(first);
        // Shutdown cancels whatever the plugin is doing, a call included.
        let mut shutdown = inputs.shutdown.clone();
        loop {
            let started = Instant::now();
            let serving = async {
                let mut instance = match next.take() {
                    Some(instance) => instance,
                    None => match self.start().await {
                        Ok(instance) => instance,
                        Err(fault) => return Ended::Fault(fault),
                    },
                };
                self.status.send_modify(|s| s.state = PluginState::Running);
                self.serve(&mut instance, &mut inputs).await
            };
            let ended = tokio::select! {
                ended = serving => ended,
                _ = stopped(&mut shutdown) => Ended::Shutdown,
            };
            let fault = match ended {
                Ended::Shutdown => break,
                Ended::Fault(fault) => fault,
                Ended::Swapped(new) => {
                    next = Some(self.swap(*new));
                    backoff = bounds.backoff_base;
                    continue;
                }
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
            // A fixed version may arrive while this one waits to restart.
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut shutdown) => break,
                Some(reload) = inputs.reloads.recv() => match reload {
                    Reload::Swap(new) => {
                        next = Some(self.swap(*new));
                        backoff = bounds.backoff_base;
                        continue;
                    }
                    Reload::Failed(why) => self.reload_failed(why),
                },
            }
            backoff = (backoff * 2).min(bounds.backoff_cap);
        }
        self.status.send_modify(|s| s.state = PluginState::Stopped);
    }

    /// Take on a new version (already initialised); its first instance.
    fn swap(&mut self, new: ConfiguredPlugin) -> PluginInstance {
        let running = Running::of(&new);
        let (version, sha256) = (running.version.clone(), running.origin.digest.clone());
        self.factory = new.factory;
        self.options = new.options;
        self.status.send_modify(|s| {
            s.running = running;
            s.reloads += 1;
            s.reload_error = None;
        });
        // Said once the views show it.
        tracing::info!(
            plugin = self.factory.plugin(),
            version,
            sha256,
            "plugin reloaded: the new version runs"
        );
        new.instance
    }

    /// What `/plugins` shows as the plugin's last error (a spec it
    /// produced that was rejected, an error it reported), already logged.
    pub(super) fn shown_error(&self, error: String) {
        self.status.send_modify(|s| s.last_error = Some(error));
    }

    pub(super) fn reload_failed(&self, why: String) {
        tracing::warn!(
            plugin = self.factory.plugin(),
            "reload failed, the running version stays: {why}"
        );
        self.status.send_modify(|s| s.reload_error = Some(why));
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

    async fn serve(&self, instance: &mut PluginInstance, inputs: &mut Inputs) -> Ended {
        match &self.role {
            Role::Config(specs) => self.serve_config(instance, inputs, specs).await,
            Role::Health { specs, board } => {
                self.serve_health(instance, inputs, specs, board).await
            }
            Role::Notify { calls, .. } => self.serve_notify(instance, inputs, calls).await,
        }
    }

    /// Run a call into the instance; a new version arriving meanwhile
    /// cancels it (the old instance is dropped mid-call) and is swapped in
    /// at once: a reload never waits behind a long call. A reload that
    /// failed is noted, and the call goes on.
    pub(super) async fn unless_swapped<T>(
        &self,
        reloads: &mut mpsc::Receiver<Reload>,
        call: impl Future<Output = T>,
    ) -> Result<T, Box<ConfiguredPlugin>> {
        let mut call = std::pin::pin!(call);
        loop {
            tokio::select! {
                done = &mut call => return Ok(done),
                Some(reload) = reloads.recv() => match reload {
                    Reload::Swap(new) => return Err(new),
                    Reload::Failed(why) => self.reload_failed(why),
                },
            }
        }
    }
}

/// Count a call and its latency: ok, error (the plugin said so) or fault.
pub(super) fn record_call<T>(
    plugin: &str,
    call: &str,
    result: &Result<T, CallError>,
    started: Instant,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CallError::Plugin(_)) => "error",
        Err(_) => "fault",
    };
    crate::metrics::global().plugin_call(plugin, call, outcome, started.elapsed());
}
