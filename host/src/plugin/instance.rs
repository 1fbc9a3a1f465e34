//! One live plugin instance: its store (host state, WASI context, limits)
//! and the guarded calls into it. Every call ends in one of the outcomes of
//! [`CallError`]; any outcome but `Plugin` leaves the instance unusable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    ConfigPlugin, ConfigPluginPre, Event, HealthPlugin, HealthPluginPre, HostHealth, HttpRequest,
    HttpResponse, NotifierBatch, NotifierPlugin, NotifierPluginPre, PluginInfo, Route,
};
use super::engine::Ticker;
use super::grants::Grants;
use super::limits::{Bounds, CallUsage, PluginLimiter};
use super::output::Output;
use crate::probe::ProbeShare;
use crate::probe::rtt::RttTable;
use crate::read::Reader;
use crate::spec::{RouteSpec, SpecDetails};
use crate::text::clip;
use tokio::sync::mpsc;

/// How a call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error of its own; the instance is fine.
    #[error("{0}")]
    Plugin(String),
    #[error("{call} did not finish within {limit:?}")]
    TimedOut { call: &'static str, limit: Duration },
    #[error("{call} waited on host operations for more than {limit:?}")]
    WaitedTooLong { call: &'static str, limit: Duration },
    #[error("{call} exceeded the memory cap of {cap_mib} MiB")]
    OutOfMemory { call: &'static str, cap_mib: usize },
    #[error("{call} trapped: {reason}")]
    Trapped { call: &'static str, reason: String },
}

/// Longest error message of a plugin kept; the rest is cut and marked.
const MAX_ERROR: usize = 1024;
/// Most data (bytes as the host holds it) one call may hand the host: the
/// lists and strings a plugin returns or passes are lifted into host memory,
/// and may alias each other in the guest's. The largest legitimate one is a
/// 1 MiB spec or a 4 MiB HTTP answer; wasmtime's default is 128 MiB.
const HOSTCALL_FUEL: usize = 16 << 20;

/// How much of a plugin's last output a trap message quotes.
const MAX_OUTPUT_IN_ERROR: usize = 4096;

/// A plugin's own error, bounded.
fn plugin_error(message: String) -> CallError {
    CallError::Plugin(clip(&message, MAX_ERROR).into_owned())
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
    /// What the current call has used of the host (see [`CallUsage`]).
    pub(super) usage: Arc<CallUsage>,
    /// Reads of its granted files.
    pub(super) files: Reader,
    /// Its share of the host's probe capacity.
    pub(super) probes: ProbeShare,
    /// Round trips measured per host, for adaptive probe timeouts.
    pub(super) rtt: RttTable,
    /// Probe rounds started and not dropped.
    pub(super) open_rounds: usize,
    /// Route tables and options the plugin gave CIDRs of the spec its
    /// current call returns (`daemon.set-route-tables`,
    /// `daemon.set-route-options`).
    pub(super) spec_details: SpecDetails,
    /// Verdicts reported during `check`, to the supervisor.
    pub(super) verdicts: mpsc::UnboundedSender<Vec<HostHealth>>,
    limiter: PluginLimiter,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
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
    Notifier(NotifierPluginPre<HostState>),
}

/// The exports of a live instance, by plugin kind.
enum Bindings {
    Config(ConfigPlugin),
    Health(HealthPlugin),
    Notifier(NotifierPlugin),
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
    /// Shared by all instances: a restarted plugin cannot start a second
    /// read while its first is stuck in the kernel.
    pub(super) files: Reader,
    /// Shared by all instances of one plugin, and its own: no plugin waits
    /// for probe capacity another holds.
    pub(super) probes: ProbeShare,
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
            output: Output::new(self.plugin.clone()),
            ticker: self.ticker.clone(),
            call_timeout: self.bounds.call_timeout,
            start_timeout: self.bounds.start_timeout(),
            max_host_wait: self.bounds.max_host_wait,
            usage: Arc::default(),
            memory_cap: self.bounds.memory_cap,
            refused_memory: Arc::new(AtomicBool::new(false)),
        };
        // Deny-by-default WASI: no preopens, env, args, network or stdin.
        // Stdout and stderr are captured (logged at debug, the tail kept for
        // trap messages); plugins log through the host.
        let wasi = WasiCtx::builder()
            .stdout(guard.output.clone())
            .stderr(guard.output.clone())
            .build();
        let (verdicts, early_verdicts) = mpsc::unbounded_channel();
        let state = HostState {
            plugin: self.plugin.clone(),
            rtt: RttTable::default(),
            open_rounds: 0,
            verdicts,
            grants: self.grants.clone(),
            usage: guard.usage.clone(),
            files: self.files.clone(),
            probes: self.probes.clone(),
            accepted: self.accepted.clone(),
            requests: Requests::default(),
            spec_details: SpecDetails::default(),
            limiter: PluginLimiter::new(self.bounds.memory_cap, guard.refused_memory.clone()),
            wasi,
            table: ResourceTable::new(),
        };
        let engine = match &self.pre {
            Pre::Config(pre) => pre.engine(),
            Pre::Health(pre) => pre.engine(),
            Pre::Notifier(pre) => pre.engine(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        // Yield to tokio at every epoch tick: a busy guest never holds a
        // worker thread, and the call's timeout can cancel it.
        store.epoch_deadline_async_yield_and_update(1);
        let bindings = match &self.pre {
            Pre::Config(pre) => Bindings::Config(
                guard
                    .instantiating(pre.instantiate_async(&mut store))
                    .await?,
            ),
            Pre::Health(pre) => Bindings::Health(
                guard
                    .instantiating(pre.instantiate_async(&mut store))
                    .await?,
            ),
            Pre::Notifier(pre) => Bindings::Notifier(
                guard
                    .instantiating(pre.instantiate_async(&mut store))
                    .await?,
            ),
        };
        Ok(PluginInstance {
            store,
            bindings,
            guard,
            early_verdicts,
        })
    }
}

pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Bindings,
    guard: Guard,
    early_verdicts: mpsc::UnboundedReceiver<Vec<HostHealth>>,
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
            Bindings::Notifier(b) => {
                let api = b.vpcrouter_plugin_notifier();
                self.guard
                    .run(call, api.call_describe(&mut self.store))
                    .await
            }
        }
    }

    pub async fn init(&mut self, options: &[(String, String)]) -> Result<(), CallError> {
        let (call, options) = ("init", options.to_vec());
        let start = self.guard.start_timeout;
        match &self.bindings {
            Bindings::Config(b) => {
                let api = b.vpcrouter_plugin_config_source();
                self.guard
                    .run_for(call, start, api.call_init(&mut self.store, &options))
                    .await
            }
            Bindings::Health(b) => {
                let api = b.vpcrouter_plugin_health_check();
                self.guard
                    .run_for(call, start, api.call_init(&mut self.store, &options))
                    .await
            }
            Bindings::Notifier(b) => {
                let api = b.vpcrouter_plugin_notifier();
                self.guard
                    .run_for(call, start, api.call_init(&mut self.store, &options))
                    .await
            }
        }?
        .map_err(|refusal| {
            // What a refusing plugin printed (a traceback) goes with it.
            let refusal = clip(&refusal, MAX_ERROR).into_owned();
            CallError::Plugin(self.guard.with_output(refusal))
        })
    }

    pub async fn on_event(&mut self, event: &Event) -> Result<Option<Vec<Route>>, CallError> {
        let call = "on-event";
        let Bindings::Config(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_config_source();
        // The first event may load a big spec for the first time.
        let limit = match event {
            Event::Started => self.guard.start_timeout,
            _ => self.guard.call_timeout,
        };
        self.store.data_mut().spec_details = SpecDetails::default();
        self.guard
            .run_for(call, limit, api.call_on_event(&mut self.store, event))
            .await?
            .map_err(plugin_error)
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
        self.store.data_mut().spec_details = SpecDetails::default();
        self.guard
            .run(call, api.call_handle_http(&mut self.store, request))
            .await
    }

    /// The route tables and options the last call gave CIDRs of the spec
    /// it returned, as the plugin named them.
    pub fn take_spec_details(&mut self) -> SpecDetails {
        std::mem::take(&mut self.store.data_mut().spec_details)
    }

    /// One health round over `hosts`.
    /// One health round; verdicts the plugin reports before it returns go
    /// to `early` the moment they are reported.
    pub async fn check(
        &mut self,
        hosts: &[String],
        mut early: impl FnMut(Vec<HostHealth>),
    ) -> Result<Vec<HostHealth>, CallError> {
        let call = "check";
        let Bindings::Health(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_health_check();
        let checking = self.guard.run(call, api.call_check(&mut self.store, hosts));
        tokio::pin!(checking);
        let checked = loop {
            tokio::select! {
                biased;
                Some(verdicts) = self.early_verdicts.recv() => early(verdicts),
                checked = &mut checking => break checked,
            }
        };
        // Reported just before the return: superseded by the round's answer.
        while self.early_verdicts.try_recv().is_ok() {}
        checked?.map_err(plugin_error)
    }

    /// Pass a batch of notices on.
    pub async fn notify(&mut self, batch: &NotifierBatch) -> Result<(), CallError> {
        let call = "notify";
        let Bindings::Notifier(b) = &self.bindings else {
            return Err(not_exported(call));
        };
        let api = b.vpcrouter_plugin_notifier();
        self.guard
            .run(call, api.call_notify(&mut self.store, batch))
            .await?
            .map_err(plugin_error)
    }

    /// Take what the plugin asked for during the last calls.
    pub fn take_requests(&mut self) -> Requests {
        std::mem::take(&mut self.store.data_mut().requests)
    }
}

/// Runs calls with a wall-clock deadline on the plugin's own time (epochs
/// only interrupt running guest code; the timer also covers a guest stuck
/// in a host call), and names the outcome.
struct Guard {
    /// The instance's stdout and stderr.
    output: Output,
    ticker: Ticker,
    call_timeout: Duration,
    /// For instantiation, `init` and the first event.
    start_timeout: Duration,
    max_host_wait: Duration,
    usage: Arc<CallUsage>,
    memory_cap: usize,
    refused_memory: Arc<AtomicBool>,
}

impl Guard {
    async fn run<R>(
        &self,
        call: &'static str,
        future: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, CallError> {
        self.run_for(call, self.call_timeout, future).await
    }

    /// As `run`, with `limit` of the plugin's own time.
    /// An instantiation, within the start-up limit.
    async fn instantiating<R>(
        &self,
        future: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, CallError> {
        self.run_for("instantiate", self.start_timeout, future)
            .await
    }

    async fn run_for<R>(
        &self,
        call: &'static str,
        limit: Duration,
        future: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, CallError> {
        let _ticking = self.ticker.start_call();
        let started = Instant::now();
        self.usage.reset();
        let deadline = || started + limit + self.usage.waited().min(self.max_host_wait);
        tokio::pin!(future);
        let outcome = loop {
            tokio::select! {
                outcome = &mut future => break outcome,
                // Host time waited meanwhile moves the deadline on.
                _ = tokio::time::sleep_until(deadline().into()) => {
                    if deadline() <= Instant::now() {
                        return Err(self.timed_out(call, limit));
                    }
                }
            }
        };
        match outcome {
            Ok(value) => Ok(value),
            Err(_) if self.refused_memory.load(Ordering::Relaxed) => Err(CallError::OutOfMemory {
                call,
                cap_mib: self.memory_cap >> 20,
            }),
            Err(e) => {
                let reason = self.with_output(trap_reason(&e));
                Err(CallError::Trapped { call, reason })
            }
        }
    }

    /// `message`, followed by what the plugin printed last, if anything,
    /// and what to do about a trap whose cause the output names.
    fn with_output(&self, message: String) -> String {
        let output = self.output.tail(MAX_OUTPUT_IN_ERROR);
        let hint = trap_hint(&output)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        match output.is_empty() {
            true => message,
            false => format!("{message}; its last output: {output:?}{hint}"),
        }
    }

    fn timed_out(&self, call: &'static str, limit: Duration) -> CallError {
        let waited = self.usage.waited();
        if waited >= self.max_host_wait {
            CallError::WaitedTooLong {
                call,
                limit: self.max_host_wait,
            }
        } else {
            CallError::TimedOut { call, limit }
        }
    }
}

/// A one-line cause: the trap code, the guest's exit status, or the
/// error's own message.
fn trap_reason(e: &wasmtime::Error) -> String {
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("the plugin exited with status {}", exit.0);
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => clip(
            format!("{e:#}").lines().next().unwrap_or_default(),
            MAX_ERROR,
        )
        .into_owned(),
    }
}

/// What the plugin's author should do about a trap its output explains.
fn trap_hint(output: &str) -> Option<&'static str> {
    // componentize-js, when an export whose result error is a string threw
    // something else (an Error, an import's error).
    output.contains("expected a string, received").then_some(
        "the JavaScript plugin threw something other than a string where its \
         result's error is a string: throw a string, or wrap the exports as \
         PLUGINS.md's reportingErrors does",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_javascript_throw_of_an_object_says_what_to_do() {
        // What componentize-js 0.23 prints, measured with an export that
        // threw `new Error(...)`.
        let output = "expected a string, received [object]\nStack:\n  _utf8AllocateAndEncode@initializer.js:32:11";
        assert!(trap_hint(output).is_some_and(|h| h.contains("reportingErrors")));
        assert_eq!(trap_hint("Traceback (most recent call last):"), None);
    }
}
