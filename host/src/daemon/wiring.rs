//! The daemon's parts wired together and run: the plugins under their
//! supervisors, the health board, the reconciler, HA, reloads and HTTP,
//! until a signal stops them.

use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Prepared;
use super::signals::{Signals, until_stopped};
use crate::cloud::VpcBackend;
use crate::cloudwatch;
use crate::config::{self, Config};
use crate::ha::etcd::EtcdElection;
use crate::ha::{self, Leadership};
use crate::health::{DrainStore, Drains, HealthBoard, PushedHealth};
use crate::http::{AuthPolicy, PluginView, Sources};
use crate::lifecycle;
use crate::notify;
use crate::plugin::reload::{self, Reloadable, Reloader};
use crate::plugin::{self, PluginHandle, Role};
use crate::reconcile::lists::Listed;
use crate::reconcile::plan::Settings;
use crate::reconcile::{MoveRequests, Observers, Reconciler};
use crate::spec_store::SpecStore;

/// How long plugins get to stop after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serve until SIGINT or SIGTERM.
pub async fn run(prepared: Prepared, auth: AuthPolicy) -> anyhow::Result<()> {
    let Prepared {
        config,
        plugins,
        runtime,
        pins,
        specs,
        vpc,
        election,
    } = prepared;
    let listener = TcpListener::bind((config.listen.host.as_str(), config.listen.port))
        .await
        .with_context(|| format!("cannot listen on {}", listen(&config)))?;
    let mut signals = Signals::take_over().context("cannot handle signals")?;
    announce(&config, &plugins, &auth);
    let (stop, shutdown) = watch::channel(false);
    let observers = Observers::default();
    // With health checkers, no host is a target before its first probe.
    let checkers = (plugins.iter()).any(|p| p.kind == plugin::PluginKind::HealthCheck);
    let board = Arc::new(HealthBoard::with_checkers(
        observers.events.clone(),
        checkers,
    ));
    let Supervised {
        handles,
        reloadable,
        views,
        sinks,
    } = supervise(plugins, &config, &specs, &board, &shutdown);
    let reloader = Reloader {
        runtime,
        pins: pins.map(|source| Box::new(move || source.read()) as _),
        plugins: reloadable,
        events: observers.events.clone(),
    };
    let (reloads, reloading) = reloader.spawn();
    let etcd = election.as_ref().map(EtcdElection::client);
    let ha = campaign(election, &config, &observers, &shutdown);
    let leadership = ha.as_ref().map(|(leadership, _)| leadership.clone());
    let mut sinks = sinks;
    for target in &config.notify_sinks {
        let region = config.region.as_deref();
        let endpoint = config.notify_endpoint.as_deref();
        sinks.extend(notify::aws_sink(target, region, endpoint).await);
    }
    if !sinks.is_empty() {
        let origin = notify::Origin {
            vpc: vpc.id().to_string(),
            replica: config
                .ha
                .as_ref()
                .map_or_else(String::new, |ha| ha.id.clone()),
            leadership: leadership.clone(),
        };
        let notices = notify::start(sinks, origin, config.notify_interval);
        observers
            .events
            .tap(Box::new(move |event| notices.offer(event)));
    }
    let drains = keep_drains(
        &config,
        &board,
        etcd,
        leadership.as_ref(),
        vpc.id(),
        &shutdown,
    )
    .await;
    let metric_sources = cloudwatch::Sources {
        vpc: vpc.id().to_string(),
        specs: specs.subscribe(),
        health: board.subscribe(),
        routes: observers.report.subscribe(),
        checkers: (views.iter())
            .filter(|v| v.kind == plugin::PluginKind::HealthCheck)
            .map(|v| v.status.clone())
            .collect(),
    };
    let emf = (config.emf_interval)
        .map(|every| cloudwatch::emf::spawn(metric_sources.clone(), every, shutdown.clone()));
    let put_metrics = match (&config.put_metrics, vpc.region()) {
        (Some((every, endpoint)), Some(region)) => {
            let publisher =
                cloudwatch::put::Publisher::new(region, endpoint.as_deref(), leadership.clone());
            let publisher = publisher.await;
            Some(publisher.spawn(metric_sources, *every, shutdown.clone()))
        }
        _ => None,
    };
    let (rebalance, rebalance_requests) = watch::channel(0);
    let moves = MoveRequests::default();
    let sources = Sources {
        started: SystemTime::now(),
        params: params(&config),
        plugins: views,
        specs: specs.clone(),
        board: board.clone(),
        routes: observers.report.subscribe(),
        events: observers.events.clone(),
        budget: vpc.budget(),
        planning: planning(&config),
        ha: leadership.as_ref().map(Leadership::status),
        reloads: Some(reloads.clone()),
        rebalance,
        drains: drains.clone(),
        moves: moves.clone(),
        pushed: PushedHealth::new(board.clone()),
    };
    let events_queue = match &config.events_queue {
        Some((url, endpoint)) => {
            let region = vpc
                .region()
                .expect("--events-queue goes with EC2")
                .to_string();
            let reader = lifecycle::queue::Reader {
                clients: lifecycle::queue::Clients::new(&region, endpoint.as_deref(), url.clone())
                    .await,
                drains: drains.clone(),
                specs: specs.clone(),
                routes: observers.report.subscribe(),
                leadership: leadership.clone(),
                events: observers.events.clone(),
                shutdown: shutdown.clone(),
            };
            Some(reader.spawn())
        }
        None => None,
    };
    let running = Running {
        config: &config,
        specs: &specs,
        board: &board,
        leadership,
        rebalance_requests,
        moves,
        shutdown: &shutdown,
    };
    let vpc = Arc::new(Listed::new(vpc, config.route_mode.into()));
    let reconciler = running.reconciler(vpc, observers);
    let app = crate::http::router(sources, &handles.iter().collect::<Vec<_>>(), auth);
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(crate::http::serve(listener, app, async move {
        let _ = http_shutdown.wait_for(|stop| *stop).await;
    }));
    let signal = until_stopped(&mut signals, &reloads).await?;
    tracing::info!(signal, "shutting down");
    reloading.abort();
    let _ = stop.send(true);
    let election = ha.map(|(_, election)| election);
    let tasks = [reconciler, server]
        .into_iter()
        .chain(election)
        .chain(events_queue)
        .chain(emf)
        .chain(put_metrics);
    join_within_grace(handles, tasks).await;
    Ok(())
}

/// Wait for the plugins and the other tasks to stop (the leader resigns
/// on the way: a standby takes over at once), for [`SHUTDOWN_GRACE`].
async fn join_within_grace(
    handles: Vec<PluginHandle>,
    tasks: impl Iterator<Item = tokio::task::JoinHandle<()>>,
) {
    let stopped = async {
        for handle in handles {
            handle.join().await;
        }
        for task in tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        tracing::warn!("plugins did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
}

fn listen(config: &Config) -> String {
    format!("{}:{}", config.listen.host, config.listen.port)
}

/// Say what runs, where it listens and who may ask what.
fn announce(config: &Config, plugins: &[plugin::ConfiguredPlugin], auth: &AuthPolicy) {
    let listen = listen(config);
    let names: Vec<&str> = plugins.iter().map(|p| p.info.name.as_str()).collect();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), plugins = ?names, listen, "vpcrouter started");
    tracing::info!(listen, "{}", auth.describe());
    if config.health.is_empty() {
        tracing::warn!("no health-check plugin: every router host is taken as healthy");
    }
}

/// The plugins under their supervisors, and what reloads and the views
/// need of each.
struct Supervised {
    handles: Vec<PluginHandle>,
    reloadable: Vec<Reloadable>,
    views: Vec<PluginView>,
    /// The notifier plugins, as notification sinks.
    sinks: Vec<Arc<dyn notify::Sink>>,
}

fn supervise(
    plugins: Vec<plugin::ConfiguredPlugin>,
    config: &Config,
    specs: &Arc<SpecStore>,
    board: &Arc<HealthBoard>,
    shutdown: &watch::Receiver<bool>,
) -> Supervised {
    let mut views = Vec::with_capacity(plugins.len());
    let mut reloadable = Vec::with_capacity(plugins.len());
    let mut sinks: Vec<Arc<dyn notify::Sink>> = Vec::new();
    let given = std::iter::once(&config.mode)
        .chain(&config.health)
        .chain(&config.notifiers);
    let handles: Vec<PluginHandle> = plugins
        .into_iter()
        .zip(given)
        .map(|(plugin, given)| {
            plugin.announce();
            let (name, kind, file) = (plugin.info.name.clone(), plugin.kind, plugin.path.clone());
            let digest = plugin.origin.digest.clone();
            let declared = reload::declared_kinds(&plugin.info);
            let role = Role::of(plugin.kind, specs, board);
            if let Some(calls) = role.notify_calls() {
                let name = name.clone();
                sinks.push(Arc::new(notify::PluginSink { name, calls }));
            }
            let handle = plugin::spawn(plugin, role, shutdown.clone());
            reloadable.push(Reloadable {
                name: name.clone(),
                kind,
                path: file.clone(),
                given: given.options.clone(),
                digest,
                declared,
                specs: specs.subscribe(),
                reloads: handle.reloads(),
                status: handle.status(),
            });
            views.push(PluginView {
                name,
                kind,
                file,
                status: handle.status(),
            });
            handle
        })
        .collect();
    Supervised {
        handles,
        reloadable,
        views,
        sinks,
    }
}

/// This replica in the election of the one that writes; with no election
/// it is the only replica, and writes.
fn campaign(
    election: Option<EtcdElection>,
    config: &Config,
    observers: &Observers,
    shutdown: &watch::Receiver<bool>,
) -> Option<(Leadership, tokio::task::JoinHandle<()>)> {
    let Some(election) = election else {
        crate::metrics::global().leader.set(1);
        return None;
    };
    let settings = config.ha.as_ref().expect("HA settings with an election");
    tracing::info!(
        id = settings.id,
        election = election.name(),
        lease_ttl = ?settings.lease_ttl,
        "HA: campaigning; only the leader writes to EC2"
    );
    Some(ha::spawn(
        Arc::new(election),
        settings.id.clone(),
        settings.lease_ttl,
        observers.events.clone(),
        shutdown.clone(),
    ))
}

/// The drains, kept where they outlive this process: in etcd under HA
/// (followed there as a standby), else in the state folder, read back now.
async fn keep_drains(
    config: &Config,
    board: &Arc<HealthBoard>,
    etcd: Option<Arc<crate::ha::etcd::EtcdClient>>,
    leadership: Option<&Leadership>,
    vpc: &str,
    shutdown: &watch::Receiver<bool>,
) -> Arc<Drains> {
    let store = match (etcd, leadership, &config.ha, &config.state_dir) {
        (Some(client), Some(leadership), Some(ha), _) => DrainStore::Etcd {
            client,
            key: ha.drains_key(vpc),
            leadership: leadership.clone(),
        },
        (_, _, _, Some(dir)) => DrainStore::File(dir.join("drains.json")),
        _ => DrainStore::Nowhere,
    };
    let drains = Arc::new(Drains::new(board.clone(), store));
    let kept = drains.store().describe();
    match leadership {
        // A standby follows the leader's record; it reads it at once.
        Some(leadership) => drop(drains.clone().follow(leadership.status(), shutdown.clone())),
        None => match drains.restore("not kept").await {
            Ok(restored) => tracing::info!(kept, restored, "drains"),
            Err(e) => {
                tracing::warn!(kept, problem = %e, "cannot read the kept drains; none in force")
            }
        },
    }
    drains
}

/// What the reconciler is started with.
struct Running<'a> {
    config: &'a Config,
    specs: &'a SpecStore,
    board: &'a HealthBoard,
    leadership: Option<Leadership>,
    rebalance_requests: watch::Receiver<u64>,
    moves: MoveRequests,
    shutdown: &'a watch::Receiver<bool>,
}

impl Running<'_> {
    fn reconciler<B: VpcBackend>(
        self,
        backend: Arc<B>,
        observers: Observers,
    ) -> tokio::task::JoinHandle<()> {
        let reconciler = Reconciler {
            backend,
            specs: self.specs.subscribe(),
            health: self.board.subscribe(),
            settings: planning(self.config),
            recheck: self.config.route_recheck_interval,
            disable_source_dest_check: self.config.disable_source_dest_check,
            leadership: self.leadership,
            rebalance_requests: self.rebalance_requests,
            moves: self.moves,
            throttle_alert: self.config.throttle_alert,
            observers,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(reconciler.run())
    }
}

/// The main parameters, for `GET /`.
fn params(config: &Config) -> serde_json::Value {
    let plugin = |choice: &config::PluginChoice| choice.path.display().to_string();
    serde_json::json!({
        "mode": plugin(&config.mode),
        "health": config.health.iter().map(plugin).collect::<Vec<_>>(),
        "vpc_backend": if config.sim_vpc.is_some() { "sim" } else { "ec2" },
        "region": config.region,
        "vpc_id": config.vpc,
        "sim_vpc": config.sim_vpc,
        "address": config.listen.host,
        "port": config.listen.port,
        "ignore_routes": config.ignore_routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "route_recheck_interval": config.route_recheck_interval.map_or(0, |d| d.as_secs()),
        "az_affinity": config.az_affinity,
        "route_tables": config.route_tables.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "owner_id": config.owner_id,
        "ha": config.ha.as_ref().map(|ha| serde_json::json!({
            "etcd": ha.endpoints.iter().map(|e| format!("{}://{}:{}", if e.tls { "https" } else { "http" }, e.host, e.port)).collect::<Vec<_>>(),
            "id": ha.id,
            "lease_ttl": ha.lease_ttl.as_secs(),
        })),
    })
}

/// The planner's settings from the command line (the reconciler's, and
/// `GET /plan`'s).
pub fn planning(config: &Config) -> Settings {
    Settings {
        ignore_routes: config.ignore_routes.clone(),
        az_affinity: config.az_affinity,
        rebalance: config.rebalance,
        tables: config.route_tables.clone(),
        owner: config.owner_id.clone(),
        fallback: config.fallback.clone(),
        failback_hold: config.failback_hold,
        tier_failback: config.tier_failback,
        ..Settings::default()
    }
}
