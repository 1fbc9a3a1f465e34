//! The daemon's configuration, validated once from the command line: the
//! old form (`-m configfile -f spec.json`) and the new one
//! (`--mode-plugin plugins/configfile.wasm --file spec.json`) give the same
//! `Config`.

use ipnet::IpNet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{self, Cli, Peek};
use crate::cloud::budget::BucketSize;
use crate::ha::HaSettings;
use crate::logging::{LogTarget, Logging};
use crate::notify::{SinkTarget, WebhookUrl};
use crate::plugin::PluginInfo;
use crate::selector::TableSelector;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: PluginChoice,
    /// Health-check plugins; a host is failed if any of them says so.
    pub health: Vec<PluginChoice>,
    /// Notifier plugins (the bundled webhook first, if given).
    pub notifiers: Vec<PluginChoice>,
    /// The SNS and EventBridge sinks (`--notify`; a webhook is a plugin).
    pub notify_sinks: Vec<SinkTarget>,
    /// Their endpoint, when not AWS's (`--notify-endpoint`).
    pub notify_endpoint: Option<String>,
    /// Least time between two deliveries to one notification sink.
    pub notify_interval: Duration,
    /// How routes are written (`--route-mode`).
    pub route_mode: cli::RouteMode,
    /// EC2 throttling every call this long is told (`--throttle-alert`).
    pub throttle_alert: Duration,
    /// How often a CloudWatch EMF line is logged (`--emf-interval`).
    pub emf_interval: Option<Duration>,
    /// How often metrics go to CloudWatch by PutMetricData, and through
    /// which endpoint (`--put-metrics-interval`, `--cloudwatch-endpoint`).
    pub put_metrics: Option<(Duration, Option<String>)>,
    pub region: Option<String>,
    pub vpc: Option<String>,
    pub log: Logging,
    pub listen: ListenAddr,
    pub ignore_routes: Vec<IpNet>,
    /// `None`: no periodic recheck.
    pub route_recheck_interval: Option<Duration>,
    /// The embedded VPC's topology file, if the simulator is the backend.
    pub sim_vpc: Option<PathBuf>,
    pub ec2_endpoint: Option<String>,
    pub ec2_mutating_budget: BucketSize,
    pub ec2_describe_budget: BucketSize,
    pub disable_source_dest_check: bool,
    pub http_token_file: Option<PathBuf>,
    pub http_auth_all: bool,
    pub az_affinity: bool,
    /// The route tables chosen to manage; none: the routers' subnets'.
    pub route_tables: Vec<TableSelector>,
    /// Whose routes, in the tables chosen.
    pub owner_id: String,
    /// Move routes off hosts above the balanced bound on every pass.
    pub rebalance: bool,
    /// Where routes go while no router of their CIDR is eligible
    /// (`--fallback`), unless the spec says.
    pub fallback: Option<crate::spec::Fallback>,
    pub failback_hold: Duration,
    /// `--failback after=N`; `None`: never.
    pub tier_failback: Option<Duration>,
    /// Print the plan once, in this format, and exit (`--dry-run`).
    pub dry_run: Option<crate::cli::Output>,
    /// Controller HA through etcd, when `--ha-etcd` is given.
    pub ha: Option<HaSettings>,
    /// Where what must outlive the daemon is kept (`--state-dir`).
    pub state_dir: Option<PathBuf>,
    /// The events queue's URL and endpoint (`--events-queue`).
    pub events_queue: Option<(String, Option<String>)>,
}

/// This host's name and the process id: a replica id unique on a host.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "vpcrouter".into());
    format!("{host}-{}", std::process::id())
}

/// A plugin file and the options the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginChoice {
    pub path: PathBuf,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("a config-source plugin is required: --mode-plugin PATH or -m NAME")]
    NoMode,
    #[error(
        "{flag} {name}: no bundled plugin of that name; looked for {looked}, and among \
         the plugins built into this binary ({built_in}). Give the folder that holds \
         {name}.wasm with --plugin-dir DIR (or $VPCROUTER_PLUGIN_DIR), or the file itself \
         with {path_flag} PATH"
    )]
    UnknownPlugin {
        flag: &'static str,
        name: String,
        looked: String,
        /// The flag that takes the plugin's file instead.
        path_flag: &'static str,
        built_in: String,
    },
    #[error("{flag} {name}: the copy built into this binary cannot be written: {why}")]
    BuiltIn {
        flag: &'static str,
        name: String,
        why: crate::plugin::CacheError,
    },
    #[error("-H multi needs --multi_plugins NAME:NAME...")]
    MultiWithoutPlugins,
    #[error("--notify: {0}")]
    BadSink(String),
    #[error("{0}")]
    BadPin(String),
}

/// The plugin file the peeked arguments name, resolving `-m NAME` to
/// `NAME.wasm` in the first plugin directory that has it.
pub fn mode_plugin_path(peek: &Peek) -> Result<PathBuf, ConfigError> {
    if let Some(path) = &peek.mode_plugin {
        return Ok(absolute(&split_pin(path).0));
    }
    let name = peek.mode.as_deref().ok_or(ConfigError::NoMode)?;
    bundled("-m", name, peek)
}

/// The health-check plugin files: the bundled ones the old `-H NAME` or
/// `-H multi --multi_plugins A:B` name, then the `--health-plugin` paths
/// (both may be given); without either, the old default (`icmpecho`) when
/// it is bundled. `-H none`: no bundled health checking (with no
/// `--health-plugin`, every host is taken as healthy), e.g. to try a
/// config source.
pub fn health_plugin_paths(peek: &Peek) -> Result<Vec<PathBuf>, ConfigError> {
    let given = (peek.health_plugins.iter()).map(|p| absolute(&split_pin(p).0));
    let mut paths = match (peek.health.as_deref(), peek.multi_plugins.as_deref()) {
        (Some("multi"), Some(names)) => names
            .split(':')
            .filter(|n| !n.is_empty())
            .map(|name| bundled("--multi_plugins", name, peek))
            .collect::<Result<Vec<_>, _>>()?,
        (Some("multi"), None) => return Err(ConfigError::MultiWithoutPlugins),
        (Some("none"), _) => vec![],
        (Some(name), _) => vec![bundled("-H", name, peek)?],
        (None, _) if !peek.health_plugins.is_empty() => vec![],
        (None, _) => bundled("-H", DEFAULT_HEALTH, peek).into_iter().collect(),
    };
    paths.extend(given);
    Ok(paths)
}

/// The notifier plugin files: the bundled webhook when `--notify
/// webhook:URL` is given (at most one), then the `--notify-plugin` paths.
pub fn notifier_plugin_paths(peek: &Peek) -> Result<Vec<PathBuf>, ConfigError> {
    let mut webhooks = 0;
    for value in &peek.notify {
        let target = SinkTarget::parse(value).map_err(ConfigError::BadSink)?;
        webhooks += usize::from(matches!(target, SinkTarget::Webhook(_)));
    }
    let mut paths = match webhooks {
        0 => vec![],
        1 => vec![bundled("--notify", "webhook", peek)?],
        _ => {
            return Err(ConfigError::BadSink(
                "one webhook: sink at a time; load a notifier plugin for more".into(),
            ));
        }
    };
    paths.extend((peek.notify_plugins.iter()).map(|p| absolute(&split_pin(p).0)));
    Ok(paths)
}

/// `PATH#sha256=HEX`: the path, and the pinned digest if any.
pub(crate) fn split_pin(value: &str) -> (PathBuf, Option<&str>) {
    match value.rsplit_once("#sha256=") {
        Some((path, digest)) => (PathBuf::from(path), Some(digest)),
        None => (PathBuf::from(value), None),
    }
}

/// The digests the operator pinned plugin files to: `--plugin-sha256
/// NAME=HEX` (NAME: a loaded plugin file's name without `.wasm`; every
/// file of that name is pinned) and
/// `PATH#sha256=HEX`. `files` are the plugin files being loaded.
pub fn plugin_pins(peek: &Peek, files: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let hex = |flag: &str, digest: &str| -> Result<String, ConfigError> {
        let digest = digest.trim().to_ascii_lowercase();
        match digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) {
            true => Ok(digest),
            false => Err(ConfigError::BadPin(format!(
                "{flag}: {digest:?} is not a SHA-256 (64 hex digits)"
            ))),
        }
    };
    let mut pins = Vec::new();
    let from_file = match &peek.plugin_pins {
        Some(file) => pins_file(file)?,
        None => Vec::new(),
    };
    let paths = (peek.mode_plugin.iter())
        .chain(&peek.health_plugins)
        .chain(&peek.notify_plugins);
    for value in paths {
        if let (path, Some(digest)) = split_pin(value) {
            pins.push((absolute(&path), hex(value, digest)?));
        }
    }
    let named = (peek
        .plugin_sha256
        .iter()
        .map(|v| (format!("--plugin-sha256 {v}"), v.as_str())))
    .chain(from_file.iter().map(|(at, v)| (at.clone(), v.as_str())));
    for (flag, value) in named {
        let (name, digest) = value
            .split_once('=')
            .ok_or_else(|| ConfigError::BadPin(format!("{flag}: expected NAME=HEX")))?;
        // Every file of that name: two plugins in different folders may
        // share one, and each is pinned.
        let named: Vec<&PathBuf> = files
            .iter()
            .filter(|f| f.file_stem().is_some_and(|stem| stem == name))
            .collect();
        if named.is_empty() {
            let loaded: Vec<String> = files
                .iter()
                .filter_map(|f| f.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            return Err(ConfigError::BadPin(format!(
                "{flag}: no plugin file named {name}.wasm is loaded (a pin names the file, \
                 without .wasm, as /plugins shows it in `file`; loaded: {})",
                loaded.join(", ")
            )));
        }
        let digest = hex(&flag, digest)?;
        pins.extend(named.into_iter().map(|file| (file.clone(), digest.clone())));
    }
    for (i, (file, digest)) in pins.iter().enumerate() {
        if pins[..i].iter().any(|(f, d)| f == file && d != digest) {
            return Err(ConfigError::BadPin(format!(
                "{} is pinned to two different digests",
                file.display()
            )));
        }
    }
    Ok(pins)
}

/// Most bytes a pins file may have.
const MAX_PINS_FILE: u64 = 64 << 10;

/// The `NAME=HEX` lines of a pins file, each with where it is (`FILE:LINE`).
fn pins_file(file: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let bytes = crate::read::read_regular(Path::new(file), MAX_PINS_FILE)
        .map_err(|e| ConfigError::BadPin(format!("--plugin-pins {file}: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::BadPin(format!("--plugin-pins {file}: not UTF-8 text")))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(n, line)| (n, line.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| (format!("--plugin-pins {file}:{}", n + 1), line.to_string()))
        .collect())
}

/// Where an https webhook is verified without `--notify-ca`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The bundled webhook plugin's options for `--notify webhook:URL`.
fn webhook_options(
    url: &WebhookUrl,
    secret: Option<&Path>,
    ca: Option<&Path>,
) -> Vec<(String, String)> {
    let mut options = vec![
        ("webhook_host", url.host.clone()),
        ("webhook_port", url.port.to_string()),
        ("webhook_path", url.path.clone()),
    ];
    if url.tls {
        let ca = ca.map_or_else(
            || SYSTEM_CA_BUNDLE.into(),
            |p| absolute(p).display().to_string(),
        );
        options.push(("webhook_ca", ca));
    }
    if let Some(secret) = secret {
        options.push(("webhook_secret", absolute(secret).display().to_string()));
    }
    options
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The old daemon's default health check.
const DEFAULT_HEALTH: &str = "icmpecho";

/// `NAME.wasm` in the first plugin directory that has it, else the copy
/// built into this binary (written to the state folder).
fn bundled(flag: &'static str, name: &str, peek: &Peek) -> Result<PathBuf, ConfigError> {
    let candidates: Vec<PathBuf> = plugin_dirs(peek.plugin_dir.as_deref())
        .iter()
        .map(|d| d.join(format!("{name}.wasm")))
        .collect();
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(absolute(found));
    }
    // A folder the operator named is the only place looked.
    let named_folder =
        peek.plugin_dir.is_some() || std::env::var_os("VPCROUTER_PLUGIN_DIR").is_some();
    let state_dir =
        (peek.state_dir.as_ref().map(PathBuf::from)).or_else(crate::plugin::default_state_dir);
    let built_in = (!named_folder)
        .then_some(state_dir)
        .flatten()
        .and_then(|dir| crate::plugin::built_in(name, &dir));
    if let Some(copy) = built_in {
        return copy.map_err(|why| ConfigError::BuiltIn {
            flag,
            name: name.to_string(),
            why,
        });
    }
    Err(ConfigError::UnknownPlugin {
        built_in: match (named_folder, crate::plugin::built_in_names()) {
            (true, _) => "not looked at: a plugin folder was named".into(),
            (false, names) if names.is_empty() => "none: built before `make plugins`".into(),
            (false, names) => names.join(", "),
        },
        flag,
        path_flag: match flag {
            "-m" => "--mode-plugin",
            "--notify" => "--notify-plugin",
            _ => "--health-plugin",
        },
        name: name.to_string(),
        looked: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `--plugin-dir`, else `$VPCROUTER_PLUGIN_DIR`, else where an install puts
/// them (`PREFIX/lib/vpcrouter/plugins` for `PREFIX/bin/vpcrouter`), else
/// `plugins/` next to the binary, else `./plugins` (then `bundled` takes
/// the binary's own copy).
fn plugin_dirs(given: Option<&str>) -> Vec<PathBuf> {
    if let Some(dir) = given {
        return vec![PathBuf::from(dir)];
    }
    if let Some(dir) = std::env::var_os("VPCROUTER_PLUGIN_DIR") {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(prefix) = exe_dir.parent() {
            dirs.push(prefix.join("lib/vpcrouter/plugins"));
        }
        dirs.push(exe_dir.join("plugins"));
    }
    dirs.push(PathBuf::from("plugins"));
    dirs
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Config {
    /// Parse the full command line once the plugins are known: the mode
    /// plugin first, then the health-check plugins, each with its path.
    /// `Err` is clap's error (it prints itself; exit 2, or 0 for --help).
    /// The last `notifiers` plugins are notifiers, the others health
    /// checks.
    pub fn parse(
        args: &[OsString],
        plugins: &[(PathBuf, &PluginInfo)],
        notifiers: usize,
    ) -> Result<Self, clap::Error> {
        let infos: Vec<&PluginInfo> = plugins.iter().map(|(_, info)| *info).collect();
        let matches = cli::command(&infos).try_get_matches_from(args)?;
        let (cli, options) = cli::split(&matches, &infos)?;
        let mut choices = plugins
            .iter()
            .zip(options)
            .map(|((path, _), options)| PluginChoice {
                path: path.clone(),
                options,
            });
        let mode = choices.next().expect("the mode plugin comes first");
        let mut health: Vec<PluginChoice> = choices.collect();
        let notifiers = health.split_off(health.len() - notifiers);
        Ok(Self::from_cli(cli, mode, health, notifiers))
    }

    fn from_cli(
        mut cli: Cli,
        mode: PluginChoice,
        health: Vec<PluginChoice>,
        mut notifiers: Vec<PluginChoice>,
    ) -> Self {
        // The webhook's endpoint and key come from --notify and its
        // companions: given as its options (they win over its own flags).
        let (webhooks, notify_sinks): (Vec<_>, Vec<_>) = (std::mem::take(&mut cli.notify))
            .into_iter()
            .partition(|target| matches!(target, SinkTarget::Webhook(_)));
        if let Some(SinkTarget::Webhook(url)) = webhooks.first()
            && let Some(webhook) = notifiers.first_mut()
        {
            webhook.options.extend(webhook_options(
                url,
                cli.notify_secret_file.as_deref(),
                cli.notify_ca.as_deref(),
            ));
        }
        Self {
            mode,
            health,
            notifiers,
            notify_sinks,
            notify_endpoint: cli.notify_endpoint,
            notify_interval: Duration::from_secs_f64(cli.notify_interval),
            throttle_alert: Duration::from_secs(cli.throttle_alert),
            route_mode: cli.route_mode,
            emf_interval: cli.emf_interval.map(Duration::from_secs),
            put_metrics: (cli.put_metrics_interval)
                .map(|every| (Duration::from_secs(every), cli.cloudwatch_endpoint)),
            region: cli.region,
            vpc: cli.vpc,
            log: Logging {
                target: match cli.logfile.as_str() {
                    "-" if cli.dry_run => LogTarget::Stderr,
                    "-" => LogTarget::Stdout,
                    file => LogTarget::File(PathBuf::from(file)),
                },
                format: cli.log_format,
                verbose: cli.verbose,
            },
            listen: ListenAddr {
                host: cli.address,
                port: cli.port,
            },
            ignore_routes: cli.ignore_routes,
            route_recheck_interval: (cli.route_recheck_interval > 0)
                .then(|| Duration::from_secs(cli.route_recheck_interval)),
            sim_vpc: cli.sim_vpc.map(|p| absolute(&p)),
            ec2_endpoint: cli.ec2_endpoint,
            ec2_mutating_budget: cli.ec2_mutating_budget,
            ec2_describe_budget: cli.ec2_describe_budget,
            disable_source_dest_check: cli.disable_source_dest_check,
            http_token_file: cli.http_token_file.map(|p| absolute(&p)),
            http_auth_all: cli.http_auth_all,
            az_affinity: cli.az_affinity,
            route_tables: (cli.route_tables.into_iter())
                .chain(cli.route_table_tags)
                .chain(cli.main_route_table.then_some(TableSelector::Main))
                .collect(),
            owner_id: cli.owner_id,
            rebalance: cli.rebalance,
            fallback: cli.fallback,
            failback_hold: Duration::from_secs(cli.failback_hold),
            tier_failback: cli.failback.0,
            dry_run: cli.dry_run.then_some(cli.output),
            ha: (!cli.ha_etcd.is_empty()).then(|| HaSettings {
                endpoints: cli.ha_etcd,
                ca: cli.ha_etcd_ca.map(|p| absolute(&p)),
                client: cli
                    .ha_etcd_cert
                    .zip(cli.ha_etcd_key)
                    .map(|(cert, key)| (absolute(&cert), absolute(&key))),
                lease_ttl: Duration::from_secs(cli.ha_lease_ttl),
                id: cli.ha_id.unwrap_or_else(default_replica_id),
                election: cli.ha_election,
            }),
            state_dir: (cli.state_dir.map(|p| absolute(&p)))
                .or_else(crate::plugin::default_state_dir),
            events_queue: cli.events_queue.map(|url| (url, cli.events_endpoint)),
        }
    }
}
