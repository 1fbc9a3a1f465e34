//! tcp: a host is alive if it accepts a TCP connection on a port (old
//! defaults: port 22 every 2 s). The host runs each round's connects
//! concurrently; this plugin only decides what a result means.

use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, probes, timers,
};

struct Tcp {
    port: u16,
    timeout_ms: u32,
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
                "Connect timeout in seconds [default: the lesser of 1 and the interval]",
            ),
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
        let timeout_ms = options
            .millis("tcp_check_timeout")?
            .unwrap_or(interval.min(1000));
        let thresholds = Thresholds::from_options(&options, "tcp_check")?;
        timers::set_timer(interval);
        Ok(Self {
            port,
            timeout_ms,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let to_probe = self.tracker.begin_round(&hosts);
        let results = probes::probe_tcp(&to_probe, self.port, self.timeout_ms);
        Ok(self.tracker.end_round(results))
    }
}

export_health_check!(Tcp);
