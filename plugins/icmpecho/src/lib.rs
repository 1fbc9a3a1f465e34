//! icmpecho: a host is alive if it answers an ICMP echo request (the old
//! daemon's default check, every 2 s). The host sends each round's echoes
//! from one socket; this plugin only decides what a result means.

use vpcrouter_plugin_sdk::probes::{ProbeMethod, ProbeTimeout};
use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check, probes, timers,
};

struct IcmpEcho {
    timeout: ProbeTimeout,
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
                "Seconds to wait for an answer, at most 5 [default: adaptive, a few of each \
                 host's round trips (at least 0.05), at most the lesser of 1 and the interval]",
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
        let timeout = options.probe_round_timeout("icmp_check_timeout", interval)?;
        let thresholds = Thresholds::from_options(&options, "icmp_check")?;
        timers::set_timer(interval);
        Ok(Self {
            timeout,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        Ok(self
            .tracker
            .run_round(&hosts, ProbeMethod::Icmp, self.timeout))
    }
}

export_health_check!(IcmpEcho);
