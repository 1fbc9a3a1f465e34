//! Start-up: the plugins named on the command line read, checked, loaded
//! and pinned; the rest of the command line parsed against their options;
//! logging set up; the plugins configured; the VPC and the HA election
//! chosen. Everything that can be refused is refused here, before the
//! daemon runs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use super::Prepared;
use crate::cli::{self, Peek};
use crate::cloud::Vpc;
use crate::cloud::ec2::{self, Ec2Settings, Ec2Vpc, StartError};
use crate::cloud::sim::SimVpc;
use crate::config::{self, Config};
use crate::failure::Failure::{self, CommandLine, Usage};
use crate::ha::etcd::EtcdElection;
use crate::plugin::{
    self, Bounds, CacheError, CompileCache, Compiler, LoadedPlugin, PluginEngine, PluginRuntime,
};
use crate::spec_store::SpecStore;

pub async fn prepare(args: Vec<OsString>) -> Result<Prepared, Failure> {
    raise_descriptor_limit();
    let early_logs = crate::logging::early();
    let peek = cli::peek(&args);
    let (mode_path, health_paths, notifier_paths) = plugin_paths(&peek, &args)?;
    let specs = Arc::new(SpecStore::default());
    let files: Vec<PathBuf> = std::iter::once(&mode_path)
        .chain(&health_paths)
        .chain(&notifier_paths)
        .cloned()
        .collect();
    let (runtime, cache_problem) = plugin_runtime(&peek, &files)?;
    let mut loaded = Vec::with_capacity(files.len());
    let mode = runtime.load_config_source(&mode_path, specs.subscribe());
    loaded.push(mode.await.map_err(|e| Failure::plugin(&mode_path, e))?);
    for path in &health_paths {
        let health = runtime.load_health_check(path, specs.subscribe()).await;
        loaded.push(health.map_err(|e| Failure::plugin(path, e))?);
    }
    for path in &notifier_paths {
        let notifier = runtime.load_notifier(path).await;
        loaded.push(notifier.map_err(|e| Failure::plugin(path, e))?);
    }
    let config = parse_with_plugins(&args, &loaded, notifier_paths.len())?;
    if config.emf_interval.is_some() && config.log.format != cli::LogFormat::Json {
        return Err(Usage(
            "--emf-interval needs --log-format json (the metrics ride on JSON log lines)".into(),
        ));
    }
    // Before the plugins' init, so what they log there is kept.
    drop(early_logs);
    crate::logging::init(&config.log)
        .map_err(|e| Usage(format!("cannot open the log file: {e}")))?;
    if let Some(problem) = cache_problem {
        tracing::warn!(
            "not using the compile cache, plugins are compiled at every start: {problem}"
        );
    }
    let choices = std::iter::once(&config.mode)
        .chain(&config.health)
        .chain(&config.notifiers);
    let mut plugins = Vec::with_capacity(loaded.len());
    for (plugin, choice) in loaded.into_iter().zip(choices) {
        let path = plugin.path.clone();
        let plugin = plugin.configure(&choice.options).await;
        plugins.push(plugin.map_err(|e| Failure::plugin(&path, e))?);
    }
    let vpc = match &config.sim_vpc {
        Some(path) => Vpc::Sim(SimVpc::load(path).map_err(|e| Usage(format!("--sim-vpc {e}")))?),
        None => Vpc::Ec2(ec2_backend(&config).await.map_err(Usage)?),
    };
    let election = match &config.ha {
        None => None,
        Some(settings) => Some(
            EtcdElection::from_settings(settings, vpc.id()).map_err(|e| Usage(e.to_string()))?,
        ),
    };
    // A pins file is read again at every reload.
    let pins = (peek.plugin_pins.clone()).map(|_| PinSource { peek, files });
    Ok(Prepared {
        config,
        plugins,
        runtime: Arc::new(runtime),
        pins,
        specs,
        vpc: Arc::new(vpc),
        election,
    })
}

/// Where the pins come from, to read them again: the command line and the
/// pins file (`--plugin-pins`), for the plugin files loaded.
pub struct PinSource {
    peek: Peek,
    files: Vec<PathBuf>,
}

impl PinSource {
    pub fn read(&self) -> Result<Vec<(PathBuf, String)>, String> {
        config::plugin_pins(&self.peek, &self.files).map_err(|e| e.to_string())
    }
}

/// The mode plugin's file, the health plugins' and the notifiers', as
/// named on the command line.
fn plugin_paths(
    peek: &Peek,
    args: &[OsString],
) -> Result<(PathBuf, Vec<PathBuf>, Vec<PathBuf>), Failure> {
    let paths = config::mode_plugin_path(peek).and_then(|mode| {
        let health = config::health_plugin_paths(peek)?;
        let notifiers = config::notifier_plugin_paths(peek)?;
        Ok((mode, health, notifiers))
    });
    paths.map_err(|e| {
        // Without plugins, --help and --version still work. A plugin that
        // was named but not found is reported before anything clap says:
        // its options on the line would read as unknown flags. Only with
        // no plugin named at all is a bad flag the likelier mistake.
        use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
        match cli::command(&[]).try_get_matches_from(args) {
            Err(clap_error)
                if matches!(clap_error.kind(), DisplayHelp | DisplayVersion)
                    || matches!(e, config::ConfigError::NoMode) =>
            {
                CommandLine(clap_error)
            }
            _ => Usage(e.to_string()),
        }
    })
}

/// The plugin runtime with its compile cache and the pins of `files`; the
/// cache's problem, if it cannot be used (said once logging is set up: the
/// daemon runs on without the cache).
fn plugin_runtime(
    peek: &Peek,
    files: &[PathBuf],
) -> Result<(PluginRuntime, Option<CacheError>), Failure> {
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
    let pins = config::plugin_pins(peek, files).map_err(|e| Usage(e.to_string()))?;
    let mut engine = PluginEngine::new(Compiler::this_daemon())
        .map_err(|e| Failure::failed("cannot set up the plugin runtime", e))?
        .quick_first();
    let cache_problem = match CompileCache::configured(cache_dir.as_deref(), state_dir.as_deref()) {
        Ok(cache) => {
            if let Some(cache) = cache {
                engine = engine.with_cache(cache);
            }
            None
        }
        Err(e) => Some(e),
    };
    let runtime = PluginRuntime::new(engine, bounds)
        .map_err(|e| Failure::failed("cannot set up the plugin runtime", e))?;
    runtime.set_pins(pins);
    Ok((runtime, cache_problem))
}

/// The whole command line, parsed against the loaded plugins' options once
/// they are known not to clash.
fn parse_with_plugins(
    args: &[OsString],
    loaded: &[LoadedPlugin],
    notifiers: usize,
) -> Result<Config, Failure> {
    cli::check_loaded(loaded).map_err(|e| Failure::plugin(&e.path, e.problem))?;
    let shown: Vec<plugin::PluginInfo> = loaded.iter().map(|l| l.info_for_help()).collect();
    let with_paths: Vec<_> = loaded
        .iter()
        .zip(&shown)
        .map(|(l, info)| (l.path.clone(), info))
        .collect();
    Config::parse(args, &with_paths, notifiers).map_err(CommandLine)
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
