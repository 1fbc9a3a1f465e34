//! One live plugin instance: its store (host state, WASI context, limits)
//! and the guarded calls into it. Every call ends in one of the outcomes of
//! [`CallError`]; any outcome but `Plugin` leaves the instance unusable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    ConfigPlugin, ConfigPluginPre, Event, HealthPlugin, HealthPluginPre, HostHealth, HttpRequest,
    HttpResponse, PluginInfo, Route,
};
use super::engine::Ticker;
use super::grants::Grants;
use super::limits::{Bounds, PluginLimiter};
use crate::spec::RouteSpec;

/// How a call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error of its own; the instance is fine.
    #[error("{0}")]
    Plugin(String),
    #[error("{call} did not finish within {limit:?}")]
    TimedOut { call: &'static str, limit: Duration },
    #[error("{call} exceeded the memory cap of {cap_mib} MiB")]
    OutOfMemory { call: &'static str, cap_mib: usize },
    #[error("{call} trapped: {reason}")]
    Trapped { call: &'static str, reason: String },
}

impl CallError {
    /// Whether the instance must be dropped and started again.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, CallError::Plugin(_))
    }
}

/// What a plugin asked for through host calls, applied by its supervisor.
#[derive(Debug, Default)]
pub struct Requests {
    /// `Some(None)`: stop the timer.
    pub timer: Option<Option<Duration>>,
    pub watches: Vec<std::path::PathBuf>,
}

/// The data of a plugin's store: what host calls can reach.
pub struct HostState {
    pub(super) plugin: Arc<str>,
    pub(super) grants: Arc<Grants>,
    pub(super) accepted: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    pub(super) requests: Requests,
    limiter: PluginLimiter,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A component pre-instantiated against the linker, by plugin kind.
#[derive(Clone)]
pub(super) enum Pre {
    Config(ConfigPluginPre<HostState>),
    Health(HealthPluginPre<HostState>),
}

/// The exports of a live instance, by plugin kind.
enum Bindings {
    Config(ConfigPlugin),
    Health(HealthPlugin),
}

/// Everything needed to make instances of one plugin.
#[derive(Clone)]
pub struct InstanceFactory {
    pub(super) pre: Pre,
    pub(super) plugin: Arc<str>,
    pub(super) grants: Arc<Grants>,
    pub(super) accepted: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    pub(super) bounds: Bounds,
    pub(super) ticker: Ticker,
}

impl InstanceFactory {
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    pub async fn instantiate(&self) -> Result<PluginInstance, CallError> {
        let guard = Guard {
            ticker: self.ticker.clone(),
            call_timeout: self.bounds.call_timeout,
            memory_cap: self.bounds.memory_cap,
            refused_memory: Arc::new(AtomicBool::new(false)),
        };
        // Deny-by-default WASI: no preopens, env, args, network or stdin.
        // Guest stdout/stderr are discarded; plugins log through the host.
        let state = HostState {
            plugin: self.plugin.clone(),
            grants: self.grants.clone(),
            accepted: self.accepted.clone(),
            requests: Requests::default(),
            limiter: PluginLimiter::new(self.bounds.memory_cap, guard.refused_memory.clone()),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let engine = match &self.pre {
            Pre::Config(pre) => pre.engine(),
            Pre::Health(pre) => pre.engine(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to tokio at every epoch tick: a busy guest never holds a
        // worker thread, and the call's timeout can cancel it.
        store.epoch_deadline_async_yield_and_update(1);
        let bindings = match &self.pre {
            Pre::Config(pre) => Bindings::Config(
                guard
                    .run("instantiate", pre.instantiate_async(&mut store))
                    .await?,
            ),
            Pre::Health(pre) => Bindings::Health(
                guard
                    .run("instantiate", pre.instantiate_async(&mut store))
                    .await?,
            ),
        };
        Ok(PluginInstance {
            store,
            bindings,
            guard,
        })
    }
}

pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Bindings,
    guard: Guard,
}

/// A call that the plugin's kind does not export (a host bug, not the
/// plugin's: the supervisor only makes calls its kind has).
fn not_exported(call: &'static str) -> CallError {
    CallError::Plugin(format!("{call} is not exported by this kind of plugin"))
}

impl PluginInstance {
    pub async fn describe(&mut self) -> Result<PluginInfo, CallError> {
        let call = "describe";
        match &self.bindings {
            Bindings::Config(b) => {
                let api = b.vpcrouter_plugin_config_source();
                self.guard
                    .run(call, api.call_describe(&mut self.store))
                    .await
            }
            Bindings::Health(b) => {
                let api = b.vpcrouter_plugin_health_check();
                self.guard
                    .run(call, api.call_describe(&mut self.store))
                    .await
            }
        }
    }

    pub async fn init(&mut self, options: &[(String, String)]) -> Result<(), CallError> {
        let (call, options) = ("init", options.to_vec());
        match &self.bindings {
            Bindings::Config(b) => {
                let api = b.vpcrouter_plugin_config_source();
                self.guard
                    .run(call, api.call_init(&mut self.store, &options))
                    .await
            }
            Bindings::Health(b) => {
                let api = b.vpcrouter_plugin_health_check();
                self.guard
                    .run(call, api.call_init(&mut self.store, &options))
                    .await
            }
        }?
        .map_err(CallError::Plugin)
    }

    pub async fn on_event(&mut self, event: &Event) -> Result<Option<Vec<Route>>, CallError> {
        let call = "on-event";
        let Bindings::Config(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_config_source();
        self.guard
            .run(call, api.call_on_event(&mut self.store, event))
            .await?
            .map_err(CallError::Plugin)
    }

    pub async fn handle_http(
        &mut self,
        request: &HttpRequest,
    ) -> Result<(HttpResponse, Option<Vec<Route>>), CallError> {
        let call = "handle-http";
        let Bindings::Config(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_config_source();
        self.guard
            .run(call, api.call_handle_http(&mut self.store, request))
            .await
    }

    /// One health round over `hosts`.
    pub async fn check(&mut self, hosts: &[String]) -> Result<Vec<HostHealth>, CallError> {
        let call = "check";
        let Bindings::Health(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_health_check();
        self.guard
            .run(call, api.call_check(&mut self.store, hosts))
            .await?
            .map_err(CallError::Plugin)
    }

    /// Take what the plugin asked for during the last calls.
    pub fn take_requests(&mut self) -> Requests {
        std::mem::take(&mut self.store.data_mut().requests)
    }
}

/// Runs calls with a wall-clock deadline that also covers time spent in
/// host calls (epochs only interrupt running guest code), and names the
/// outcome.
struct Guard {
    ticker: Ticker,
    call_timeout: Duration,
    memory_cap: usize,
    refused_memory: Arc<AtomicBool>,
}

impl Guard {
    async fn run<R>(
        &self,
        call: &'static str,
        future: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, CallError> {
        let _ticking = self.ticker.start_call();
        match tokio::time::timeout(self.call_timeout, future).await {
            Err(_) => Err(CallError::TimedOut {
                call,
                limit: self.call_timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) if self.refused_memory.load(Ordering::Relaxed) => {
                Err(CallError::OutOfMemory {
                    call,
                    cap_mib: self.memory_cap >> 20,
                })
            }
            Ok(Err(e)) => Err(CallError::Trapped {
                call,
                reason: trap_reason(&e),
            }),
        }
    }
}

/// A one-line cause: the trap code, or the error's own message.
fn trap_reason(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
