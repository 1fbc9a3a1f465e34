//! The daemon from command line to shutdown: load and validate the mode
//! plugin, parse the rest of the command line against its options,
//! supervise it, serve HTTP, and stop cleanly on SIGINT/SIGTERM.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::{self, EXIT_USAGE};
use crate::cloud::VpcBackend;
use crate::cloud::ec2::{self, Ec2Settings, Ec2Vpc, StartError};
use crate::cloud::sim::SimVpc;
use crate::config::{self, Config};
use crate::ha::{self, Leadership, etcd::EtcdElection};
use crate::health::HealthBoard;
use crate::http::{AuthPolicy, PluginView, Sources};
use crate::plugin::reload::{self, Reloadable, Reloader};
use crate::plugin::{
    self, Bounds, ConfiguredPlugin, PluginEngine, PluginHandle, PluginKind, PluginRuntime, Role,
};
use crate::reconcile::plan::Settings;
use crate::reconcile::{Observers, Reconciler};
use crate::spec_store::SpecStore;

/// Exit code when the daemon cannot start for a reason other than usage.
pub const EXIT_FAILURE: i32 = 1;

/// How long plugins get to stop after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Run the daemon with these arguments (program name first); the process
/// exit code.
pub async fn main(args: Vec<OsString>) -> i32 {
    if args.get(1).is_some_and(|word| word == "plugin") {
        return crate::tool::main(&args[1..]).await;
    }
    let early_logs = crate::logging::early();
    let peek = cli::peek(&args);
    let paths = config::mode_plugin_path(&peek).and_then(|mode| {
        let health = config::health_plugin_paths(&peek)?;
        Ok((mode, health))
    });
    let (mode_path, health_paths) = match paths {
        Ok(paths) => paths,
        Err(e) => {
            // Without plugins, --help and --version still work, and a bad
            // daemon flag is reported before the missing plugin.
            if let Err(clap_error) = cli::command(&[]).try_get_matches_from(&args) {
                let _ = clap_error.print();
                return clap_error.exit_code();
            }
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let specs = Arc::new(SpecStore::default());
    let cache_dir = match (&peek.plugin_cache_dir, peek.no_plugin_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.into()),
        (None, false) => plugin::default_cache_dir(),
    };
    // A bad value is clap's to report, once the plugins are known.
    let bounds = Bounds {
        call_timeout: peek
            .plugin_call_timeout
            .as_deref()
            .and_then(|v| cli::parse_call_timeout(v).ok())
            .unwrap_or(Bounds::default().call_timeout),
        ..Bounds::default()
    };
    let files: Vec<_> = std::iter::once(&mode_path)
        .chain(&health_paths)
        .cloned()
        .collect();
    let pins = match config::plugin_pins(&peek, &files) {
        Ok(pins) => pins,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut runtime = match PluginEngine::new(cache_dir).and_then(|e| PluginRuntime::new(e, bounds))
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot set up the plugin runtime: {e:#}");
            return EXIT_FAILURE;
        }
    };
    for (path, digest) in pins {
        runtime.pin(path, digest);
    }
    let mut loaded = Vec::with_capacity(1 + health_paths.len());
    match runtime
        .load_config_source(&mode_path, specs.subscribe())
        .await
    {
        Ok(mode) => loaded.push(mode),
        Err(e) => return usage_error(&mode_path, e),
    }
    for path in &health_paths {
        match runtime.load_health_check(path, specs.subscribe()).await {
            Ok(health) => loaded.push(health),
            Err(e) => return usage_error(path, e),
        }
    }
    if let Err(e) = plugin::check_identities(&loaded) {
        return usage_error(&e.path, e.problem);
    }
    let shown: Vec<plugin::PluginInfo> = loaded.iter().map(|l| l.info_for_help()).collect();
    let infos: Vec<&plugin::PluginInfo> = shown.iter().collect();
    if let Some((plugin, option, owner)) = cli::colliding_option(&infos) {
        let path = &loaded
            .iter()
            .find(|l| l.info.name == plugin)
            .expect("loaded")
            .path;
        return usage_error(path, format!("option --{option} collides with {owner}"));
    }
    let with_paths: Vec<_> = loaded
        .iter()
        .zip(&shown)
        .map(|(l, info)| (l.path.clone(), info))
        .collect();
    let config = match Config::parse(&args, &with_paths) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let choices = std::iter::once(&config.mode).chain(&config.health);
    let mut configured = Vec::with_capacity(loaded.len());
    for (plugin, choice) in loaded.into_iter().zip(choices) {
        let path = plugin.path.clone();
        match plugin.configure(&choice.options).await {
            Ok(plugin) => configured.push(plugin),
            Err(e) => return usage_error(&path, e),
        }
    }
    let vpc = match &config.sim_vpc {
        Some(path) => match SimVpc::load(path) {
            Ok(sim) => Backend::Sim(Arc::new(sim)),
            Err(e) => {
                eprintln!("error: --sim-vpc {e}");
                return EXIT_USAGE;
            }
        },
        None => match ec2_backend(&config).await {
            Ok(ec2) => Backend::Ec2(Arc::new(ec2)),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let election = match &config.ha {
        None => None,
        Some(settings) => {
            let vpc_id = match &vpc {
                Backend::Sim(_) => "sim",
                Backend::Ec2(ec2) => ec2.vpc_id(),
            };
            match EtcdElection::from_settings(settings, vpc_id) {
                Ok(election) => Some(election),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    let serves_plugin_paths = configured.iter().any(|p| !p.info.http_paths.is_empty());
    let auth = match AuthPolicy::new(
        &config.listen.host,
        config.http_token_file.as_deref(),
        config.http_auth_all,
        serves_plugin_paths,
    ) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if let Err(e) = crate::logging::init(&config.log, config.verbose) {
        eprintln!("error: cannot open the log file: {e}");
        return EXIT_USAGE;
    }
    drop(early_logs);
    let prepared = Prepared {
        config,
        plugins: configured,
        runtime: Arc::new(runtime),
        specs,
        vpc,
        election,
        auth,
    };
    match run(prepared).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// The VPC the daemon manages.
enum Backend {
    Sim(Arc<SimVpc>),
    Ec2(Arc<Ec2Vpc>),
}

/// The EC2 backend for the configured (or discovered) region and VPC. A VPC
/// that EC2 says does not exist is a start-up error; an EC2 that cannot be
/// reached is not: the reconciler keeps trying, changing nothing meanwhile.
async fn ec2_backend(config: &Config) -> Result<Ec2Vpc, String> {
    let (region, vpc) = ec2::discover(config.region.clone(), config.vpc.clone()).await?;
    let ec2 = Ec2Vpc::new(&Ec2Settings {
        region,
        vpc,
        endpoint: config.ec2_endpoint.clone(),
        mutating: config.ec2_mutating_budget,
        describe: config.ec2_describe_budget,
    })
    .await;
    match ec2.check_vpc().await {
        Ok(()) => Ok(ec2),
        Err(e @ StartError::NoSuchVpc(..)) => Err(e.to_string()),
        Err(StartError::Unavailable(e)) => {
            eprintln!("warning: cannot reach EC2 to check the VPC; will keep trying: {e}");
            Ok(ec2)
        }
    }
}

/// One line naming the plugin file and the problem; exit code 2.
fn usage_error(path: &std::path::Path, problem: impl std::fmt::Display) -> i32 {
    eprintln!("error: {}: {problem}", path.display());
    EXIT_USAGE
}

/// Serve until SIGINT or SIGTERM. `plugins`: the mode plugin first, then
/// the health-check plugins.
/// Everything checked and set up before the daemon runs.
struct Prepared {
    config: Config,
    /// The mode plugin first, then the health-check plugins.
    plugins: Vec<ConfiguredPlugin>,
    /// Kept for reloads.
    runtime: Arc<PluginRuntime>,
    specs: Arc<SpecStore>,
    vpc: Backend,
    election: Option<EtcdElection>,
    auth: AuthPolicy,
}

async fn run(prepared: Prepared) -> anyhow::Result<()> {
    use anyhow::Context;
    let Prepared {
        config,
        plugins,
        runtime,
        specs,
        vpc,
        election,
        auth,
    } = prepared;
    let listen = format!("{}:{}", config.listen.host, config.listen.port);
    let listener = TcpListener::bind((config.listen.host.as_str(), config.listen.port))
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let names: Vec<String> = plugins.iter().map(|p| p.info.name.clone()).collect();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), plugins = ?names, listen, "vpcrouter started");
    tracing::info!(listen, "{}", auth.describe());
    if config.health.is_empty() {
        tracing::warn!("no health-check plugin: every router host is taken as healthy");
    }
    let (stop, shutdown) = watch::channel(false);
    let observers = Observers::default();
    let board = Arc::new(HealthBoard::new(observers.events.clone()));
    let mut views = Vec::with_capacity(plugins.len());
    let mut reloadable = Vec::with_capacity(plugins.len());
    let given = std::iter::once(&config.mode).chain(&config.health);
    let handles: Vec<PluginHandle> = plugins
        .into_iter()
        .zip(given)
        .map(|(plugin, given)| {
            log_grants(&plugin);
            let (name, kind, file) = (plugin.info.name.clone(), plugin.kind, plugin.path.clone());
            let digest = plugin.origin.digest.clone();
            let role = match plugin.kind {
                PluginKind::ConfigSource => Role::Config(specs.clone()),
                PluginKind::HealthCheck => Role::Health {
                    specs: specs.subscribe(),
                    board: board.clone(),
                },
            };
            let handle = plugin::spawn(plugin, role, shutdown.clone());
            reloadable.push(Reloadable {
                name: name.clone(),
                kind,
                path: file.clone(),
                given: given.options.clone(),
                digest,
                specs: specs.subscribe(),
                reloads: handle.reloads(),
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
    let (reload_requests, reloads) = mpsc::channel(4);
    let reloader = Reloader {
        runtime,
        plugins: reloadable,
        events: observers.events.clone(),
    };
    let reloading = tokio::spawn(serve_reloads(reloader, reloads));
    let ha = election.map(|election| {
        let settings = config.ha.as_ref().expect("HA settings with an election");
        tracing::info!(
            id = settings.id,
            election = election.name(),
            lease_ttl = ?settings.lease_ttl,
            "HA: campaigning; only the leader writes to EC2"
        );
        ha::spawn(
            Arc::new(election),
            settings.id.clone(),
            settings.lease_ttl,
            observers.events.clone(),
            shutdown.clone(),
        )
    });
    if ha.is_none() {
        // The only replica writes.
        crate::metrics::global().leader.set(1);
    }
    let leadership = ha.as_ref().map(|(leadership, _)| leadership.clone());
    let (rebalance, rebalance_requests) = watch::channel(0);
    let sources = Sources {
        started: SystemTime::now(),
        params: params(&config),
        plugins: views,
        specs: specs.clone(),
        board: board.clone(),
        routes: observers.report.subscribe(),
        events: observers.events.clone(),
        budget: match &vpc {
            Backend::Sim(_) => None,
            Backend::Ec2(ec2) => Some(ec2.budget()),
        },
        ignore_routes: config.ignore_routes.clone(),
        ha: leadership.as_ref().map(Leadership::status),
        reloads: Some(reload_requests.clone()),
        rebalance,
    };
    let running = Running {
        config: &config,
        specs: &specs,
        board: &board,
        leadership,
        rebalance_requests,
        shutdown: &shutdown,
    };
    let reconciler = match vpc {
        Backend::Sim(sim) => running.reconciler(sim, observers),
        Backend::Ec2(ec2) => running.reconciler(ec2, observers),
    };
    let app = crate::http::router(sources, &handles.iter().collect::<Vec<_>>(), auth);
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(crate::http::serve(listener, app, async move {
        let _ = http_shutdown.wait_for(|stop| *stop).await;
    }));
    let signal = until_stopped(&reload_requests).await?;
    tracing::info!(signal, "shutting down");
    reloading.abort();
    let _ = stop.send(true);
    let stopped = async {
        for handle in handles {
            handle.join().await;
        }
        let _ = reconciler.await;
        if let Some((_, election)) = ha {
            // The leader resigns: a standby takes over at once.
            let _ = election.await;
        }
        let _ = server.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        tracing::warn!("plugins did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// Say at start what each plugin may touch, and on whose word.
fn log_grants(plugin: &ConfiguredPlugin) {
    let name = &plugin.info.name;
    let trust = plugin.origin.trust.describe();
    if plugin.grants.records.is_empty() {
        tracing::info!(
            plugin = name,
            trust,
            "plugin granted nothing beyond its own sandbox"
        );
    }
    for record in &plugin.grants.records {
        tracing::info!(
            plugin = name,
            trust,
            grant = record.grant,
            from = record.from,
            "plugin grant"
        );
    }
    for (option, default) in &plugin.withheld {
        tracing::warn!(
            plugin = name,
            "option --{option}: the default {:?} of a third-party plugin is not granted; give --{option} to grant it",
            plugin::clip(default, 256)
        );
    }
}

/// What the reconciler is started with.
struct Running<'a> {
    config: &'a Config,
    specs: &'a SpecStore,
    board: &'a HealthBoard,
    leadership: Option<Leadership>,
    rebalance_requests: watch::Receiver<u64>,
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
            settings: Settings {
                ignore_routes: self.config.ignore_routes.clone(),
                az_affinity: self.config.az_affinity,
                rebalance: self.config.rebalance,
            },
            recheck: self.config.route_recheck_interval,
            disable_source_dest_check: self.config.disable_source_dest_check,
            leadership: self.leadership,
            rebalance_requests: self.rebalance_requests,
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
        "ha": config.ha.as_ref().map(|ha| serde_json::json!({
            "etcd": ha.endpoints.iter().map(|e| format!("{}://{}:{}", if e.tls { "https" } else { "http" }, e.host, e.port)).collect::<Vec<_>>(),
            "id": ha.id,
            "lease_ttl": ha.lease_ttl.as_secs(),
        })),
    })
}

/// Serve until SIGINT or SIGTERM (which one); a SIGHUP reloads the
/// plugins whose files changed.
async fn until_stopped(reloads: &mpsc::Sender<ReloadRequest>) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok("SIGINT"),
            _ = term.recv() => return Ok("SIGTERM"),
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the plugins whose files changed");
                if reloads.try_send(None).is_err() {
                    tracing::warn!("a reload is already under way");
                }
            }
        }
    }
}

/// A reload asked for; the outcomes go back when the asker waits for them
/// (`POST /plugins/reload`), else only to the log (SIGHUP).
pub type ReloadRequest = Option<oneshot::Sender<Vec<reload::Outcome>>>;

/// Reloads, one at a time, on their own task: compiling a new version may
/// take seconds, and signals and HTTP must not wait for it.
async fn serve_reloads(mut reloader: Reloader, mut requests: mpsc::Receiver<ReloadRequest>) {
    while let Some(reply) = requests.recv().await {
        let outcomes = reloader.reload_all().await;
        for outcome in &outcomes {
            let detail = outcome.detail.as_deref().unwrap_or_default();
            match outcome.result {
                "failed" => tracing::warn!(
                    plugin = outcome.plugin,
                    "reload failed, the running version stays: {detail}"
                ),
                result => tracing::info!(plugin = outcome.plugin, result, detail, "reload"),
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcomes);
        }
    }
}
