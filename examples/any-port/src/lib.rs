//! Example plugin for PLUGINS.md: a router host is healthy if it accepts a
//! TCP connection on ANY of several ports (say SSH or BGP), so one daemon
//! being restarted does not fail the host.
//!
//! `vpcrouter ... --health-plugin any_port.wasm --ports 22,179`

use vpcrouter_plugin_sdk::probes::{self, ProbeResult};
use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, timers,
};

struct AnyPort {
    ports: Vec<u16>,
    timeout_ms: u32,
    tracker: Tracker,
}

impl HealthCheck for AnyPort {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::text(
                "ports",
                "Comma-separated TCP ports; any answering is enough",
            )
            .required(),
            OptionSpec::text("any_port_interval", "Seconds between rounds").default_value("1"),
        ];
        // any_port_fall, any_port_rise, any_port_window: the SDK's tracker.
        options.extend(Thresholds::options("any_port"));
        PluginInfo {
            name: "any-port".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy if the host accepts TCP on any of the given ports".into(),
            options,
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let ports = options
            .require("ports")?
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("--ports: {p:?} is not a port"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let interval = options.millis("any_port_interval")?.unwrap_or(1000);
        timers::set_timer(interval);
        Ok(Self {
            ports,
            timeout_ms: interval.min(1000),
            tracker: Tracker::new(Thresholds::from_options(&options, "any_port")?),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let to_probe = self.tracker.begin_round(&hosts);
        // One batch per port (the host probes each batch concurrently);
        // a host is up if any port answered.
        let mut combined: Vec<ProbeResult> =
            probes::probe_tcp(&to_probe, self.ports[0], self.timeout_ms);
        for port in &self.ports[1..] {
            for (best, other) in
                combined
                    .iter_mut()
                    .zip(probes::probe_tcp(&to_probe, *port, self.timeout_ms))
            {
                if !best.ok && other.ok {
                    *best = other;
                }
            }
        }
        Ok(self.tracker.end_round(combined))
    }
}

export_health_check!(AnyPort);
