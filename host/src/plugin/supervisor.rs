//! One supervised task per plugin. It owns the plugin's instance and drives
//! it by role: a config source gets its events (start, timer, file changes,
//! HTTP requests) and its specs go to the spec store; a health checker gets
//! a round over the working set at each tick of its timer and its reports go
//! to the health board. After any fatal outcome (trap, deadline, memory cap)
//! the instance is dropped and a fresh one started with exponential backoff.
//! The spec in force and the last known health stay meanwhile; the daemon
//! never exits because of a plugin.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::bindings::{
    Event, HealthState, HostHealth, HttpRequest, HttpResponse, PluginKind, Route,
};
use super::grants::GrantRecord;
use super::instance::{CallError, InstanceFactory, PluginInstance};
use super::load::{ConfiguredPlugin, Origin};
use super::watch::FileWatcher;
use crate::health::{HealthBoard, HostReport, State};
use crate::spec::WorkingSet;
use crate::spec_store::{SpecStore, SpecWatch};
use crate::text::clip;

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
    fn of(plugin: &ConfiguredPlugin) -> Arc<Self> {
        Arc::new(Self {
            version: plugin.info.version.clone(),
            origin: plugin.origin.clone(),
            options: plugin.options.clone(),
            grants: plugin.grants.records.clone(),
        })
    }
}

/// What a reload brings a supervised plugin.
pub enum Reload {
    /// A new version, initialised with the operator's options: swap it in.
    Swap(Box<ConfiguredPlugin>),
    /// The new version could not be loaded; the running one stays.
    Failed(String),
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
}

impl Role {
    /// What a plugin of `kind` feeds: the spec store, or the health board.
    pub fn of(kind: PluginKind, specs: &Arc<SpecStore>, board: &Arc<HealthBoard>) -> Self {
        match kind {
            PluginKind::ConfigSource => Role::Config(specs.clone()),
            PluginKind::HealthCheck => Role::Health {
                specs: specs.subscribe(),
                board: board.clone(),
            },
        }
    }
}

/// An HTTP request for the plugin and where its answer goes.
pub struct HttpCall {
    pub request: HttpRequest,
    pub reply: oneshot::Sender<HttpResponse>,
}

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

struct Supervisor {
    factory: InstanceFactory,
    options: Vec<(String, String)>,
    role: Role,
    status: watch::Sender<PluginStatus>,
}

/// Where a plugin's events come from. They outlive instances: queued HTTP
/// requests and file watches carry over a restart; the timer does not (a
/// new instance asks again).
struct Inputs {
    http: mpsc::Receiver<HttpCall>,
    reloads: mpsc::Receiver<Reload>,
    shutdown: watch::Receiver<bool>,
    timer: Option<Interval>,
    /// The timer's period: a new version asking for the same keeps it, so
    /// a reload misses no round.
    timer_every: Option<Duration>,
    changed: mpsc::UnboundedReceiver<PathBuf>,
    watcher: Option<FileWatcher>,
}

impl Inputs {
    fn new(
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
    async fn apply(&mut self, plugin: &str, instance: &mut PluginInstance) {
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

/// What a config source is handed next.
enum Work {
    Event(Event),
    Http(HttpCall),
    Files(BTreeSet<PathBuf>),
}

/// Why serving an instance ended.
enum Ended {
    Shutdown,
    Fault(CallError),
    /// A reload brought a new version.
    Swapped(Box<ConfiguredPlugin>),
}

impl Supervisor {
    async fn run(mut self, first: PluginInstance, mut inputs: Inputs) {
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

    fn reload_failed(&self, why: String) {
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
        }
    }

    /// Deliver events to a config source until shutdown or a fault.
    async fn serve_config(
        &self,
        instance: &mut PluginInstance,
        inputs: &mut Inputs,
        specs: &SpecStore,
    ) -> Ended {
        let plugin = self.factory.plugin();
        let mut work = Work::Event(Event::Started);
        loop {
            let done = self.work(instance, specs, work);
            match self.unless_swapped(&mut inputs.reloads, done).await {
                Err(new) => return Ended::Swapped(new),
                Ok(Err(fault)) => return Ended::Fault(fault),
                Ok(Ok(())) => {}
            }
            inputs.apply(plugin, instance).await;
            work = loop {
                tokio::select! {
                    _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                    Some(call) = inputs.http.recv() => break Work::Http(call),
                    Some(paths) = changed_files(&mut inputs.changed) => break Work::Files(paths),
                    _ = tick(&mut inputs.timer) => break Work::Event(Event::Timer),
                    Some(reload) = inputs.reloads.recv() => match reload {
                        Reload::Swap(new) => return Ended::Swapped(new),
                        Reload::Failed(why) => self.reload_failed(why),
                    },
                }
            };
        }
    }

    /// Hand a config source one piece of work.
    async fn work(
        &self,
        instance: &mut PluginInstance,
        specs: &SpecStore,
        work: Work,
    ) -> Result<(), CallError> {
        match work {
            Work::Event(event) => self.deliver(instance, specs, event).await,
            Work::Http(call) => self.handle_http(instance, specs, call).await,
            Work::Files(paths) => {
                for path in paths {
                    let event = Event::FileChanged(path.display().to_string());
                    self.deliver(instance, specs, event).await?;
                }
                Ok(())
            }
        }
    }

    /// Run a call into the instance; a new version arriving meanwhile
    /// cancels it (the old instance is dropped mid-call) and is swapped in
    /// at once: a reload never waits behind a long call. A reload that
    /// failed is noted, and the call goes on.
    async fn unless_swapped<T>(
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

    /// Run a health round at every tick until shutdown or a fault.
    async fn serve_health(
        &self,
        instance: &mut PluginInstance,
        inputs: &mut Inputs,
        specs: &SpecWatch,
        board: &HealthBoard,
    ) -> Ended {
        let plugin = self.factory.plugin();
        loop {
            inputs.apply(plugin, instance).await;
            tokio::select! {
                _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                _ = tick(&mut inputs.timer) => {}
                Some(reload) = inputs.reloads.recv() => match reload {
                    Reload::Swap(new) => return Ended::Swapped(new),
                    Reload::Failed(why) => {
                        self.reload_failed(why);
                        continue;
                    }
                },
            }
            let Some(spec) = specs.borrow().clone() else {
                continue;
            };
            let working_set = spec.working_set();
            let started = Instant::now();
            let early = |verdicts| board.merge(plugin, reports(plugin, working_set, verdicts));
            let round = instance.check(working_set.names(), early);
            let checked = match self.unless_swapped(&mut inputs.reloads, round).await {
                Ok(checked) => checked,
                Err(new) => return Ended::Swapped(new),
            };
            record_call(plugin, "check", &checked, started);
            match checked {
                Ok(results) => {
                    self.record_round(&results, started.elapsed());
                    board.report(plugin, reports(plugin, working_set, results));
                }
                Err(CallError::Plugin(reason)) => {
                    tracing::warn!(
                        plugin,
                        "health round failed, last known health stays: {reason}"
                    );
                }
                Err(fault) => return Ended::Fault(fault),
            }
        }
    }

    fn record_round(&self, results: &[HostHealth], took: Duration) {
        let mut rtts: Vec<u32> = results.iter().filter_map(|r| r.rtt_us).collect();
        rtts.sort_unstable();
        let failures = results
            .iter()
            .filter(|r| !matches!(r.state, HealthState::Healthy))
            .count() as u64;
        self.status.send_modify(|status| {
            let stats = status.rounds.get_or_insert_with(RoundStats::default);
            stats.rounds += 1;
            stats.results += results.len() as u64;
            stats.failures += failures;
            stats.last_round = took;
            stats.rtt_us =
                (!rtts.is_empty()).then(|| (rtts[0], rtts[rtts.len() / 2], rtts[rtts.len() - 1]));
        });
    }

    async fn deliver(
        &self,
        instance: &mut PluginInstance,
        specs: &SpecStore,
        event: Event,
    ) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        tracing::debug!(plugin, ?event, "plugin event");
        let started = Instant::now();
        let delivered = instance.on_event(&event).await;
        record_call(plugin, "on-event", &delivered, started);
        match delivered {
            Ok(Some(routes)) => {
                let _ = specs.offer(plugin, entries(routes));
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
        specs: &SpecStore,
        call: HttpCall,
    ) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        // The client gave up (e.g. while the plugin was restarting): a spec
        // it was told failed must not be applied behind its back.
        if call.reply.is_closed() {
            tracing::debug!(plugin, path = %call.request.path, "dropping a request whose client has gone");
            return Ok(());
        }
        let started = Instant::now();
        let handled = instance.handle_http(&call.request).await;
        record_call(plugin, "handle-http", &handled, started);
        let (response, fault) = match handled {
            Ok((response, None)) => (response, None),
            Ok((response, Some(routes))) => match specs.offer(plugin, entries(routes)) {
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

/// Count a call and its latency: ok, error (the plugin said so) or fault.
fn record_call<T>(plugin: &str, call: &str, result: &Result<T, CallError>, started: Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CallError::Plugin(_)) => "error",
        Err(_) => "fault",
    };
    crate::metrics::global().plugin_call(plugin, call, outcome, started.elapsed());
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

/// Longest detail of a health verdict kept.
const MAX_DETAIL: usize = 256;

/// A round's results as board reports: only hosts of the working set, by
/// address, details bounded. Anything else a plugin says is counted, logged
/// once per round, and ignored.
pub(super) fn reports(
    plugin: &str,
    working_set: &WorkingSet,
    results: Vec<HostHealth>,
) -> Vec<HostReport> {
    let mut outside = (0usize, None);
    let reports = results
        .into_iter()
        .filter_map(|r| {
            let Some(host) = working_set.lookup(&r.host) else {
                outside.0 += 1;
                outside.1.get_or_insert(r.host);
                return None;
            };
            Some(HostReport {
                host,
                state: state(r.state),
                rtt_us: r.rtt_us,
                detail: r.detail.map(|d| clip(&d, MAX_DETAIL).into_owned()),
            })
        })
        .collect();
    if let (count, Some(example)) = outside {
        tracing::warn!(
            plugin,
            count,
            example = %clip(&example, 64),
            "ignoring health of hosts outside the working set"
        );
    }
    reports
}

/// Where the WIT's tri-state becomes the daemon's.
fn state(state: HealthState) -> State {
    match state {
        HealthState::Healthy => State::Healthy,
        HealthState::Questionable => State::Questionable,
        HealthState::Failed => State::Failed,
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
