//! The daemon from command line to shutdown: load and validate the mode
//! plugin, parse the rest of the command line against its options,
//! supervise it, serve HTTP, and stop cleanly on SIGINT/SIGTERM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{self, EXIT_FAILURE, EXIT_USAGE};
use crate::cloud::VpcBackend;
use crate::cloud::ec2::{self, Ec2Settings, Ec2Vpc, StartError};
use crate::cloud::sim::SimVpc;
use crate::config::{self, Config};
use crate::ha::{self, Leadership, etcd::EtcdElection};
use crate::health::HealthBoard;
use crate::http::{AuthPolicy, PluginView, Sources};
use crate::plugin::reload::{self, Reloadable, Reloader, Reloads};
use crate::plugin::{
    self, Bounds, CompileCache, Compiler, ConfiguredPlugin, PluginEngine, PluginHandle,
    PluginRuntime, Role,
};
use crate::reconcile::plan::Settings;
use crate::reconcile::{Observers, Reconciler};
use crate::spec_store::SpecStore;

/// How long plugins get to stop after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the daemon did not start, or stopped on an error: each kind has
/// one exit code and one way of being reported.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// clap's own report: help and version (exit 0) or a bad command line
    /// (exit 2), printed as clap formats it.
    #[error("{0}")]
    CommandLine(clap::Error),
    /// A bad flag value, file or setting: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A plugin file and what is wrong with it: exit 2.
    #[error("{}: {problem}", path.display())]
    Plugin { path: PathBuf, problem: String },
    /// Could not start or keep running: exit 1.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl DaemonError {
    fn plugin(path: &Path, problem: impl std::fmt::Display) -> Self {
        Self::Plugin {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::CommandLine(e) => e.exit_code(),
            Self::Usage(_) | Self::Plugin { .. } => EXIT_USAGE,
            Self::Failed(_) => EXIT_FAILURE,
        }
    }

    /// Tell the operator: on stderr, and in the log once it is set up.
    fn report(&self) {
        match self {
            Self::CommandLine(e) => {
                let _ = e.print();
            }
            Self::Failed(e) => {
                tracing::error!("{e:#}");
                eprintln!("error: {self}");
            }
            _ => eprintln!("error: {self}"),
        }
    }
}

/// Run the daemon with these arguments (program name first); the process
/// exit code.
pub async fn main(args: Vec<OsString>) -> i32 {
    let first = args.get(1).and_then(|word| word.to_str());
    if first == Some("plugin") {
        return crate::tool::main(&args[1..]).await;
    }
    if first.is_some_and(|word| crate::manuals::COMMANDS.contains(&word)) {
        return crate::manuals::main(&args);
    }
    match try_main(args).await {
        Ok(()) => 0,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}

async fn try_main(args: Vec<OsString>) -> Result<(), DaemonError> {
    use DaemonError::{CommandLine, Failed, Usage};
    raise_descriptor_limit();
    let early_logs = crate::logging::early();
    let peek = cli::peek(&args);
    let paths = config::mode_plugin_path(&peek).and_then(|mode| {
        let health = config::health_plugin_paths(&peek)?;
        Ok((mode, health))
    });
    let (mode_path, health_paths) = paths.map_err(|e| {
        // Without plugins, --help and --version still work, and a bad
        // daemon flag is reported before the missing plugin.
        match cli::command(&[]).try_get_matches_from(&args) {
            Err(clap_error) => CommandLine(clap_error),
            Ok(_) => Usage(e.to_string()),
        }
    })?;
    let specs = Arc::new(SpecStore::default());
    let cache_dir = match (&peek.plugin_cache_dir, peek.no_plugin_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.into()),
        (None, false) => plugin::default_cache_dir(),
    };
    let state_dir = peek
        .state_dir
        .as_ref()
        .map(PathBuf::from)
        .or_else(plugin::default_state_dir);
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
    let pins = config::plugin_pins(&peek, &files).map_err(|e| Usage(e.to_string()))?;
    let mut engine = PluginEngine::new(Compiler::this_daemon())
        .map_err(|e| Failed(anyhow::anyhow!("cannot set up the plugin runtime: {e:#}")))?;
    // Said once logging is set up: the daemon runs on without the cache.
    let cache_problem = match CompileCache::configured(cache_dir.as_deref(), state_dir.as_deref()) {
        Ok(cache) => {
            engine = match cache {
                Some(cache) => engine.with_cache(cache),
                None => engine,
            };
            None
        }
        Err(e) => Some(e),
    };
    let mut runtime = PluginRuntime::new(engine, bounds)
        .map_err(|e| Failed(anyhow::anyhow!("cannot set up the plugin runtime: {e:#}")))?;
    for (path, digest) in pins {
        runtime.pin(path, digest);
    }
    let mut loaded = Vec::with_capacity(1 + health_paths.len());
    let mode = runtime.load_config_source(&mode_path, specs.subscribe());
    loaded.push(mode.await.map_err(|e| DaemonError::plugin(&mode_path, e))?);
    for path in &health_paths {
        let health = runtime.load_health_check(path, specs.subscribe()).await;
        loaded.push(health.map_err(|e| DaemonError::plugin(path, e))?);
    }
    plugin::check_identities(&loaded).map_err(|e| DaemonError::plugin(&e.path, e.problem))?;
    let shown: Vec<plugin::PluginInfo> = loaded.iter().map(|l| l.info_for_help()).collect();
    let infos: Vec<&plugin::PluginInfo> = shown.iter().collect();
    if let Some((plugin, option, owner)) = cli::colliding_option(&infos) {
        let path = &loaded
            .iter()
            .find(|l| l.info.name == plugin)
            .expect("loaded")
            .path;
        let problem = format!("option --{option} collides with {owner}");
        return Err(DaemonError::plugin(path, problem));
    }
    let with_paths: Vec<_> = loaded
        .iter()
        .zip(&shown)
        .map(|(l, info)| (l.path.clone(), info))
        .collect();
    let config = Config::parse(&args, &with_paths).map_err(CommandLine)?;
    // Before the plugins' init, so what they log there is kept.
    drop(early_logs);
    crate::logging::init(&config.log)
        .map_err(|e| Usage(format!("cannot open the log file: {e}")))?;
    if let Some(problem) = cache_problem {
        tracing::warn!(
            "not using the compile cache, plugins are compiled at every start: {problem}"
        );
    }
    let choices = std::iter::once(&config.mode).chain(&config.health);
    let mut configured = Vec::with_capacity(loaded.len());
    for (plugin, choice) in loaded.into_iter().zip(choices) {
        let path = plugin.path.clone();
        let plugin = plugin.configure(&choice.options).await;
        configured.push(plugin.map_err(|e| DaemonError::plugin(&path, e))?);
    }
    let vpc = match &config.sim_vpc {
        Some(path) => {
            let sim = SimVpc::load(path).map_err(|e| Usage(format!("--sim-vpc {e}")))?;
            Backend::Sim(Arc::new(sim))
        }
        None => Backend::Ec2(Arc::new(ec2_backend(&config).await.map_err(Usage)?)),
    };
    let election = match &config.ha {
        None => None,
        Some(settings) => {
            let vpc_id = match &vpc {
                Backend::Sim(_) => "sim",
                Backend::Ec2(ec2) => ec2.vpc_id(),
            };
            let election = EtcdElection::from_settings(settings, vpc_id);
            Some(election.map_err(|e| Usage(e.to_string()))?)
        }
    };
    if let Some(output) = config.dry_run {
        let settings = planning(&config);
        let planned = match vpc {
            Backend::Sim(sim) => {
                crate::dry_run::run(configured, specs, sim, &settings, output).await
            }
            Backend::Ec2(ec2) => {
                crate::dry_run::run(configured, specs, ec2, &settings, output).await
            }
        };
        return planned.map_err(Failed);
    }
    let auth = AuthPolicy::new(
        &config.listen.host,
        config.http_token_file.as_deref(),
        config.http_auth_all,
    )
    .map_err(|e| Usage(e.to_string()))?;
    let prepared = Prepared {
        config,
        plugins: configured,
        runtime: Arc::new(runtime),
        specs,
        vpc,
        election,
        auth,
    };
    run(prepared).await.map_err(Failed)
}

/// Probes hold a descriptor each (up to 1,024 connects per health plugin
/// at once): take the hard limit on open files, as servers do, rather than
/// systemd's soft default of 1,024, where a large round would fail routers
/// with EMFILE.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The planner's settings from the command line (the reconciler's, and
/// `GET /plan`'s).
fn planning(config: &Config) -> Settings {
    Settings {
        ignore_routes: config.ignore_routes.clone(),
        az_affinity: config.az_affinity,
        rebalance: config.rebalance,
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

/// Serve until SIGINT or SIGTERM.
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
    let mut signals = Signals::take_over().context("cannot handle signals")?;
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
            plugin.announce();
            let (name, kind, file) = (plugin.info.name.clone(), plugin.kind, plugin.path.clone());
            let digest = plugin.origin.digest.clone();
            let declared = reload::declared_kinds(&plugin.info);
            let role = Role::of(plugin.kind, &specs, &board);
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
    let reloader = Reloader {
        runtime,
        plugins: reloadable,
        events: observers.events.clone(),
    };
    let (reloads, reloading) = reloader.spawn();
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
        planning: planning(&config),
        ha: leadership.as_ref().map(Leadership::status),
        reloads: Some(reloads.clone()),
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
    let signal = until_stopped(&mut signals, &reloads).await?;
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
            settings: planning(self.config),
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
/// The signals the daemon acts on, taken over before it says it has
/// started: a SIGTERM right after "vpcrouter started" stops it cleanly
/// instead of killing it.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn take_over() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

async fn until_stopped(signals: &mut Signals, reloads: &Reloads) -> anyhow::Result<&'static str> {
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => return Ok("SIGINT"),
            _ = signals.terminate.recv() => return Ok("SIGTERM"),
            _ = signals.hangup.recv() => {
                tracing::info!("SIGHUP: reloading the plugins whose files changed");
                reloads.request();
            }
        }
    }
}
