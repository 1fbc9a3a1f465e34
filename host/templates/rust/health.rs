//! {{name}}: a vpcrouter health check. A router is healthy while it accepts
//! TCP connections on --{{prefix}}_port. The host probes a round's routers
//! concurrently and hands the results over as they arrive (a probe round);
//! the SDK's tracker applies the fall/rise thresholds and reports every
//! verdict that changed at once, so a dead router is failed over without
//! waiting for the slowest probe.

use vpcrouter_plugin_sdk::probes::{ProbeMethod, ProbeTimeout};
use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, timers,
};

struct Plugin {
    port: u16,
    tracker: Tracker,
}

/// The port to probe, from the option's text.
fn port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("--{{prefix}}_port {value:?}: expected 1-65535"))
}

/// A silent router counts as failed after a few of its round trips (as
/// TCP's retransmission timer), at most a second.
const TIMEOUT: ProbeTimeout = ProbeTimeout::Adaptive(1000);

impl HealthCheck for Plugin {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::text("{{prefix}}_port", "TCP port to probe").required(),
            OptionSpec::text("{{prefix}}_interval", "Seconds between rounds").default_value("2"),
        ];
        options.extend(Thresholds::options("{{prefix}}"));
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy while the router accepts TCP connections".into(),
            options,
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let port = port(options.require("{{prefix}}_port")?)?;
        let thresholds = Thresholds::from_options(&options, "{{prefix}}")?;
        let interval = options.millis("{{prefix}}_interval")?.unwrap_or(2000);
        timers::set_timer(interval);
        Ok(Self {
            port,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        Ok(self
            .tracker
            .run_round(&hosts, ProbeMethod::Tcp(self.port), TIMEOUT))
    }
}

export_health_check!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_1_to_65535() {
        assert_eq!(port("80"), Ok(80));
        for bad in ["0", "65536", "http", ""] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }
}
