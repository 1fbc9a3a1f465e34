//! tcp: a host is alive if it accepts a TCP connection on a port (old
//! defaults: port 22 every 2 s). The host runs each round's probes
//! concurrently; this plugin only decides what a result means.

use vpcrouter_plugin_sdk::probes::{ProbeMethod, ProbeTimeout};
use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, probes, timers,
};

/// How a port is asked.
#[derive(Clone, Copy)]
enum Method {
    /// A full handshake, then a reset.
    Connect,
    /// A SYN, answered by SYN-ACK or reset; needs the operator's grant.
    HalfOpen,
}

impl Method {
    fn from_option(value: &str) -> Result<Self, String> {
        let half_open = probes::half_open_access();
        match (value, half_open) {
            ("connect", _) => Ok(Self::Connect),
            ("half-open", Ok(())) => Ok(Self::HalfOpen),
            ("auto", Ok(())) => {
                vpcrouter_plugin_sdk::log!(Info, "probing half-open (SYN only, no connection)");
                Ok(Self::HalfOpen)
            }
            ("half-open", Err(why)) => Err(format!(
                "--tcp_check_method half-open: {why}; or use --tcp_check_method connect"
            )),
            ("auto", Err(why)) => {
                vpcrouter_plugin_sdk::log!(
                    Info,
                    "probing with full connects: {why} for half-open probes"
                );
                Ok(Self::Connect)
            }
            (other, _) => Err(format!(
                "--tcp_check_method {other:?}: expected auto, connect or half-open"
            )),
        }
    }
}

struct Tcp {
    port: u16,
    timeout: ProbeTimeout,
    method: Method,
    tracker: Tracker,
}

impl HealthCheck for Tcp {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::text("tcp_check_port", "Port to connect to").default_value("22"),
            OptionSpec::text(
                "tcp_check_interval",
                "Seconds between rounds (fractions allowed)",
            )
            .default_value("2"),
            OptionSpec::text(
                "tcp_check_timeout",
                "Connect timeout in seconds, at most 5 [default: adaptive, a few of each \
                 host's round trips (at least 0.05), at most the lesser of 1 and the interval]",
            ),
            OptionSpec::text(
                "tcp_check_method",
                "connect (full handshake), half-open (SYN only: ~6x less CPU, needs \
                 CAP_NET_RAW) or auto (half-open where permitted)",
            )
            .default_value("auto"),
        ];
        options.extend(Thresholds::options("tcp_check"));
        PluginInfo {
            name: "tcp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy if the host accepts a TCP connection".into(),
            options,
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let port_value = options.require("tcp_check_port")?;
        let port = port_value
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--tcp_check_port {port_value:?}: expected 1-65535"))?;
        let interval = options.millis("tcp_check_interval")?.unwrap_or(2000);
        let timeout = options.probe_round_timeout("tcp_check_timeout", interval)?;
        let thresholds = Thresholds::from_options(&options, "tcp_check")?;
        let method = Method::from_option(options.require("tcp_check_method")?)?;
        timers::set_timer(interval);
        Ok(Self {
            port,
            timeout,
            method,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let method = match self.method {
            Method::Connect => ProbeMethod::Tcp(self.port),
            Method::HalfOpen => ProbeMethod::TcpHalfOpen(self.port),
        };
        Ok(self.tracker.run_round(&hosts, method, self.timeout))
    }
}

export_health_check!(Tcp);
