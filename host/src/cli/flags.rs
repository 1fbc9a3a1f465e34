//! The daemon's own flags, old and new forms, and how their values are read.

use clap::Parser;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cloud::budget::BucketSize;
use crate::cloud::claims;
use crate::selector::TableSelector;

/// What `--dry-run` prints.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// How routes are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteMode {
    /// A route per CIDR in each table (EC2 calls grow with the CIDRs moved)
    #[default]
    PerCidr,
    /// CIDRs in prefix lists, a route per list in each table: a router's
    /// failover is a call per table
    PrefixList,
}

impl From<RouteMode> for crate::reconcile::lists::Mode {
    fn from(mode: RouteMode) -> Self {
        match mode {
            RouteMode::PerCidr => Self::PerCidr,
            RouteMode::PrefixList => Self::PrefixList,
        }
    }
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: a line of text, in colour on a terminal
    Text,
    /// For machines: one JSON object per line (time, level, message and
    /// the event's fields: plugin, table, cidr, host, reason, took_ms, ...)
    Json,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "vpcrouter",
    version,
    about = "Keeps VPC route tables pointing at healthy router instances.",
    after_help = "Plugin options: give --mode-plugin (or -m) together with --help to list them.\nPlugin tools: vpcrouter plugin --help (e.g. vpcrouter plugin compile FILE...).\nShell completions and manual pages: vpcrouter completions SHELL, vpcrouter manpages DIR.\nWriting a plugin: vpcrouter plugin new, and PLUGINS.md (PREFIX/share/doc/vpcrouter/PLUGINS.md when installed, e.g. /usr/share/doc/vpcrouter/PLUGINS.md)."
)]
pub struct Cli {
    /// Config-source plugin file (a wasm component), e.g. plugins/configfile.wasm
    #[arg(long = "mode-plugin", value_name = "PATH", conflicts_with = "mode")]
    pub mode_plugin: Option<PathBuf>,

    /// Bundled config-source plugin by name (old form): configfile, http, fixedconf
    #[arg(short = 'm', long = "mode", value_name = "NAME")]
    pub mode: Option<String>,

    /// Health-check plugin file; repeat for several, also beside -H NAME (a
    /// host is failed if any says so)
    #[arg(long = "health-plugin", value_name = "PATH")]
    pub health_plugin: Vec<PathBuf>,

    /// Bundled health-check plugin by name (old form): icmpecho (default), tcp,
    /// httpcheck, multi (with --multi_plugins), or none
    #[arg(short = 'H', long = "health", value_name = "NAME")]
    pub health: Option<String>,

    /// With -H multi: bundled health-check plugins separated by ':' (old form)
    #[arg(long = "multi_plugins", value_name = "A:B")]
    pub multi_plugins: Option<String>,

    /// Where bundled plugins named by -m and -H are found (only there) [default:
    /// $VPCROUTER_PLUGIN_DIR, else ../lib/vpcrouter/plugins from the binary (an
    /// install), else plugins/ next to the binary, else ./plugins, else the copies
    /// built into the binary]
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/vpcrouter or ~/.cache/vpcrouter]
    #[arg(
        long = "plugin-cache-dir",
        value_name = "DIR",
        conflicts_with = "no_plugin_cache"
    )]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Where the daemon keeps what must outlive it: the compile cache's key
    /// (the cache is used only with it) and the drains (under HA they are
    /// kept in etcd) [default: $XDG_STATE_HOME/vpcrouter
    /// or ~/.local/state/vpcrouter]
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Seconds a call into a plugin may take (its own time; waits on the
    /// host's probes and requests do not count); a plugin's init and its
    /// first event get five times this
    #[arg(long = "plugin-call-timeout", value_name = "SECONDS", default_value = "2", value_parser = parse_call_timeout)]
    pub plugin_call_timeout: std::time::Duration,

    /// Refuse to load the plugin file named NAME (its file name without
    /// .wasm) unless its SHA-256 is HEX; repeatable. A path can carry its
    /// pin too: --mode-plugin PATH#sha256=HEX
    #[arg(long = "plugin-sha256", value_name = "NAME=HEX")]
    pub plugin_sha256: Vec<String>,

    /// Pins read from FILE (lines NAME=HEX as --plugin-sha256; `#` starts a
    /// comment), and read again at every reload: to upgrade a pinned plugin
    /// without a restart, replace the file, write its new digest here, reload
    #[arg(long = "plugin-pins", value_name = "FILE")]
    pub plugin_pins: Option<PathBuf>,

    /// Compile plugins on every start instead of caching the result
    #[arg(long = "no-plugin-cache")]
    pub no_plugin_cache: bool,

    /// AWS region (discovered from instance metadata when omitted on EC2)
    #[arg(short = 'r', long)]
    pub region: Option<String>,

    /// VPC id (discovered from instance metadata when omitted on EC2)
    #[arg(short = 'v', long)]
    pub vpc: Option<String>,

    /// Embedded simulated VPC instead of EC2: a JSON topology file
    /// (subnets, interfaces, route tables), for demos and tests
    #[arg(long = "sim-vpc", value_name = "FILE", conflicts_with_all = ["region", "vpc", "ec2_endpoint"])]
    pub sim_vpc: Option<PathBuf>,

    /// EC2 API endpoint instead of the region's (e.g. moto, a VPC
    /// endpoint); AWS_ENDPOINT_URL works too
    #[arg(long = "ec2-endpoint", value_name = "URL")]
    pub ec2_endpoint: Option<String>,

    /// An SQS queue that EventBridge feeds with EC2's Spot interruption
    /// warnings, rebalance recommendations and state changes and Auto
    /// Scaling's terminate lifecycle actions: a router named by one is
    /// drained before it goes, and its hook completed once no route points
    /// at it (README, "Signals before a router goes")
    #[arg(long = "events-queue", value_name = "URL", value_parser = parse_queue_url, conflicts_with = "sim_vpc")]
    pub events_queue: Option<String>,

    /// SQS and Auto Scaling endpoint instead of the region's (e.g. moto, VPC
    /// endpoints)
    #[arg(
        long = "events-endpoint",
        value_name = "URL",
        requires = "events_queue"
    )]
    pub events_endpoint: Option<String>,

    /// Client-side budget for mutating EC2 calls, as EC2's token bucket:
    /// burst / refill per second
    #[arg(
        long = "ec2-mutating-budget",
        value_name = "BURST/RATE",
        default_value = "50/5"
    )]
    pub ec2_mutating_budget: BucketSize,

    /// Client-side budget for EC2 describe calls: burst / refill per second
    #[arg(
        long = "ec2-describe-budget",
        value_name = "BURST/RATE",
        default_value = "100/20"
    )]
    pub ec2_describe_budget: BucketSize,

    /// Turn off source/destination check on eligible router ENIs that have
    /// it on (needs ec2:ModifyNetworkInterfaceAttribute)
    #[arg(long = "disable-source-dest-check")]
    pub disable_source_dest_check: bool,

    /// Prefer a healthy router in the route table's own availability zone
    #[arg(long = "az-affinity")]
    pub az_affinity: bool,

    /// Manage this route table (repeatable). With any of --route-table,
    /// --route-table-tag or --main-route-table, the tables chosen are
    /// managed; without, the tables of the routers' own subnets
    #[arg(long = "route-table", value_name = "ID", value_parser = TableSelector::id)]
    pub route_tables: Vec<TableSelector>,

    /// Manage every route table of the VPC carrying this tag (repeatable)
    #[arg(long = "route-table-tag", value_name = "KEY=VALUE", value_parser = TableSelector::tag)]
    pub route_table_tags: Vec<TableSelector>,

    /// Manage the VPC's main route table (it serves every subnet without an
    /// explicit association)
    #[arg(long = "main-route-table")]
    pub main_route_table: bool,

    /// Whose routes, in the tables chosen: routes are claimed in the
    /// table's tags under this id, and another id's are never touched
    /// (two daemons may share a table)
    #[arg(long = "owner-id", value_name = "ID", default_value = claims::DEFAULT_OWNER, value_parser = claims::parse_owner)]
    pub owner_id: String,

    /// Keep the balanced spread at all times: move routes off routers above
    /// their share (e.g. after a recovery) instead of only on request
    /// (POST /rebalance)
    #[arg(long)]
    pub rebalance: bool,

    /// Where the routes of a CIDR go while none of its routers is eligible,
    /// unless the spec names a fallback for it: a NAT gateway (nat-...),
    /// transit gateway (tgw-...), internet gateway (igw-...), peering
    /// connection (pcx-...), or withdraw (delete the route, so that a
    /// wider route takes the traffic). Without, routes are left as they are
    #[arg(long, value_name = "TARGET", value_parser = crate::spec::Fallback::parse)]
    pub fallback: Option<crate::spec::Fallback>,

    /// Routes leave the fallback for a router once it has stayed healthy
    /// this long since it came back
    #[arg(long = "failback-hold", value_name = "SECONDS", default_value_t = 30)]
    pub failback_hold: u64,

    /// When routes on a router of a later tier return to a recovered one
    /// of an earlier tier: never (they stay while their router is
    /// eligible; POST /rebalance moves them), or after=SECONDS of health
    #[arg(long, value_name = "never|after=SECONDS", default_value = "never", value_parser = parse_failback)]
    pub failback: Failback,

    /// Where to send notices of what the daemon does (routes moved,
    /// fallbacks, failed routers, drains, leader changes), grouped per
    /// pass (repeatable): webhook:URL (the bundled webhook plugin; at most
    /// one), sns:TOPIC_ARN, eventbridge:BUS (a name or an ARN)
    #[arg(long = "notify", value_name = "SINK", value_parser = crate::notify::SinkTarget::parse)]
    pub notify: Vec<crate::notify::SinkTarget>,

    /// SNS and EventBridge endpoint for the notification sinks (moto, VPC
    /// endpoints)
    #[arg(long = "notify-endpoint", value_name = "URL")]
    pub notify_endpoint: Option<String>,

    /// The key the webhook signs each body with (HMAC-SHA256, header
    /// X-Vpcrouter-Signature: sha256=HEX)
    #[arg(long = "notify-secret-file", value_name = "FILE")]
    pub notify_secret_file: Option<PathBuf>,

    /// PEM CA bundle to verify an https webhook by [default: the system's,
    /// /etc/ssl/certs/ca-certificates.crt]
    #[arg(long = "notify-ca", value_name = "FILE")]
    pub notify_ca: Option<PathBuf>,

    /// Notifier plugin file (repeatable): passes the same notices on, with
    /// its own options
    #[arg(long = "notify-plugin", value_name = "PATH")]
    pub notify_plugin: Vec<PathBuf>,

    /// Least seconds between two deliveries to one sink: notices meanwhile
    /// wait and go together
    #[arg(long = "notify-interval", value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_notify_interval)]
    pub notify_interval: f64,

    /// How routes are written: per-cidr, or prefix-list (CIDRs in
    /// prefix lists; failover writes that do not grow with the CIDRs)
    #[arg(
        long = "route-mode",
        value_enum,
        value_name = "MODE",
        default_value = "per-cidr"
    )]
    pub route_mode: RouteMode,

    /// Tell (an event, a notice) when EC2 has throttled every call for
    /// this long: route changes are waiting for EC2
    #[arg(long = "throttle-alert", value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub throttle_alert: u64,

    /// Take the spec and one round of health, observe the VPC, print the
    /// plan a pass would carry out, and exit: nothing is changed
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// What --dry-run prints: text (a line per operation and notice) or
    /// json
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub output: Output,

    /// Log file, or '-' for standard output
    #[arg(short = 'l', long, value_name = "FILE", default_value = "-")]
    pub logfile: String,

    /// Log lines as text, or as JSON (one object per line)
    #[arg(
        long = "log-format",
        value_enum,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Every SECONDS, a log line of CloudWatch metrics in the embedded
    /// metric format (failovers, routes on fallback, eligible routers,
    /// probe round trip; namespace vpcrouter); needs --log-format json
    #[arg(long = "emf-interval", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub emf_interval: Option<u64>,

    /// Every SECONDS, the same metrics to CloudWatch by PutMetricData
    /// (60 is CloudWatch's standard resolution): one call per interval at
    /// most, on a budget of its own; the leader only
    #[arg(long = "put-metrics-interval", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600), conflicts_with = "sim_vpc")]
    pub put_metrics_interval: Option<u64>,

    /// CloudWatch endpoint instead of the region's (moto, a VPC endpoint)
    #[arg(
        long = "cloudwatch-endpoint",
        value_name = "URL",
        requires = "put_metrics_interval"
    )]
    pub cloudwatch_endpoint: Option<String>,

    /// Debug logging, including plugin events
    #[arg(long)]
    pub verbose: bool,

    /// Address of the HTTP listener (an IP address or localhost)
    #[arg(short = 'a', long, default_value = "localhost", value_parser = parse_address)]
    pub address: String,

    /// File holding the bearer token that POSTs and plugin paths (e.g.
    /// /route_spec) require (required when --address is not a loopback
    /// address and a plugin serves HTTP)
    #[arg(long = "http-token-file", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,

    /// Require the bearer token for the read-only views too
    #[arg(long = "http-auth-all")]
    pub http_auth_all: bool,

    /// Port of the HTTP listener
    #[arg(short = 'p', long, default_value_t = 33289, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Comma-separated CIDRs or IPs whose routes are never touched
    #[arg(long = "ignore_routes", value_name = "CIDRS", value_delimiter = ',', value_parser = parse_cidr_or_ip)]
    pub ignore_routes: Vec<IpNet>,

    /// Controller HA: etcd endpoints (URL[,URL...], e.g.
    /// http://10.0.0.5:2379,http://10.0.0.6:2379); the replicas elect one
    /// that alone writes to EC2
    #[arg(long = "ha-etcd", value_name = "URL,...", value_delimiter = ',', value_parser = parse_etcd_url)]
    pub ha_etcd: Vec<EtcdUrl>,

    /// CA bundle (PEM) to verify the HA etcd by (https endpoints)
    #[arg(long = "ha-etcd-ca", value_name = "FILE", requires = "ha_etcd")]
    pub ha_etcd_ca: Option<PathBuf>,

    /// Client certificate (PEM) for the HA etcd
    #[arg(long = "ha-etcd-cert", value_name = "FILE", requires = "ha_etcd_key")]
    pub ha_etcd_cert: Option<PathBuf>,

    /// Private key (PEM) of --ha-etcd-cert
    #[arg(long = "ha-etcd-key", value_name = "FILE", requires = "ha_etcd_cert")]
    pub ha_etcd_key: Option<PathBuf>,

    /// Seconds the leader's lease lasts without renewal (takeover time)
    #[arg(long = "ha-lease-ttl", value_name = "SECONDS", default_value_t = 5, value_parser = parse_ttl)]
    pub ha_lease_ttl: u64,

    /// This replica's id in the election [default: host name + pid]
    #[arg(long = "ha-id", value_name = "NAME", requires = "ha_etcd")]
    pub ha_id: Option<String>,

    /// The election's key in etcd [default: /vpcrouter/<vpc-id>/leader]
    #[arg(long = "ha-election", value_name = "KEY", requires = "ha_etcd")]
    pub ha_election: Option<String>,

    /// Seconds between full checks of the VPC: 0 (off) or at least 5
    #[arg(long = "route_recheck_interval", value_name = "SECONDS", default_value_t = 30, value_parser = parse_recheck, allow_negative_numbers = true)]
    pub route_recheck_interval: u64,
}

fn parse_address(value: &str) -> Result<String, String> {
    if value == "localhost" || value.parse::<IpAddr>().is_ok() {
        Ok(value.to_string())
    } else {
        Err("expected an IP address or localhost".into())
    }
}

/// A CIDR, or a single address (a /32 or /128).
fn parse_cidr_or_ip(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not a CIDR or IP address"))
}

/// An etcd endpoint URL: http or https, a host, a port (default 2379).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

fn parse_etcd_url(value: &str) -> Result<EtcdUrl, String> {
    let bad = || format!("{value:?}: expected http://HOST:PORT or https://HOST:PORT");
    let (tls, rest) = match value.trim().split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad)?,
        ),
        _ => (rest, 2379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(EtcdUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// A plugin call timeout: seconds, fractions allowed, 0.1 to 60.
pub fn parse_call_timeout(value: &str) -> Result<std::time::Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| (0.1..=60.0).contains(s))
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| "must be seconds between 0.1 and 60, e.g. 2 or 0.5".into())
}

fn parse_ttl(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(seconds) if (2..=3600).contains(&seconds) => Ok(seconds),
        _ => Err("must be a whole number of seconds, at least 2".into()),
    }
}

fn parse_recheck(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds == 0 || seconds >= 5 => Ok(seconds),
        _ => Err("must be 0 (off) or a whole number of seconds, at least 5".into()),
    }
}

/// An SQS queue URL: http(s), bounded.
fn parse_queue_url(value: &str) -> Result<String, String> {
    let scheme = value.starts_with("https://") || value.starts_with("http://");
    match scheme
        && value.len() <= 1024
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        true => Ok(value.to_string()),
        false => Err(
            "a queue URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/vpcrouter-events"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_urls_are_parsed_strictly() {
        let url = |v: &str| parse_etcd_url(v);
        assert_eq!(
            url("http://10.0.0.5:2379").unwrap(),
            EtcdUrl {
                tls: false,
                host: "10.0.0.5".into(),
                port: 2379
            }
        );
        assert_eq!(url("https://etcd.local").unwrap().port, 2379);
        assert!(url("https://etcd.local").unwrap().tls);
        assert_eq!(url("http://[::1]:2380/").unwrap().host, "::1");
        for bad in [
            "10.0.0.5:2379",
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a:0",
            "http://u@a",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}

/// `--failback`: how long an earlier tier's router must be healthy before
/// routes return to it; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failback(pub Option<Duration>);

/// `--notify-interval`: 0.1 s to an hour.
fn parse_notify_interval(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.1..=3600.0).contains(s))
        .ok_or_else(|| format!("{text:?}: expected seconds from 0.1 to 3600"))
}

fn parse_failback(text: &str) -> Result<Failback, String> {
    if text == "never" {
        return Ok(Failback(None));
    }
    let seconds = (text.strip_prefix("after="))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s <= 86_400)
        .ok_or_else(|| format!("{text:?}: expected never or after=SECONDS (0 to 86400)"))?;
    Ok(Failback(Some(Duration::from_secs(seconds))))
}
