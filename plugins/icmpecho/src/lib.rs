//! icmpecho: a host is alive if it answers an ICMP echo request (the old
//! daemon's default check, every 2 s). The host sends each round's echoes
//! from one socket; this plugin only decides what a result means.

use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, probes, timers,
};

struct IcmpEcho {
    timeout_ms: u32,
    tracker: Tracker,
}

impl HealthCheck for IcmpEcho {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::text(
                "icmp_check_interval",
                "Seconds between rounds (fractions allowed)",
            )
            .default_value("2"),
            OptionSpec::text(
                "icmp_check_timeout",
                "Seconds to wait for an answer, at most 5 [default: the lesser of 1 and the interval]",
            ),
        ];
        options.extend(Thresholds::options("icmp_check"));
        PluginInfo {
            name: "icmpecho".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy if the host answers an ICMP echo request".into(),
            options,
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        // Refuse to start, saying what to grant, rather than fail every host.
        probes::icmp_access()?;
        let interval = options.millis("icmp_check_interval")?.unwrap_or(2000);
        let timeout_ms = options.probe_timeout("icmp_check_timeout", interval)?;
        let thresholds = Thresholds::from_options(&options, "icmp_check")?;
        timers::set_timer(interval);
        Ok(Self {
            timeout_ms,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let to_probe = self.tracker.begin_round(&hosts);
        let results = probes::probe_icmp(&to_probe, self.timeout_ms);
        Ok(self.tracker.end_round(results))
    }
}

export_health_check!(IcmpEcho);
