//! A health-check plugin that probes hosts of its own choosing (`--targets`)
//! instead of the working set it is given, and reports what came back: the
//! host must refuse every target outside the working set.

use vpcrouter_plugin_sdk::{
    HealthCheck, HealthState, HostHealth, OptionSpec, Options, PluginInfo, export_health_check,
    probes, timers,
};

struct Prober {
    targets: Vec<String>,
    port: u16,
}

impl HealthCheck for Prober {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "prober".into(),
            version: "0.0.1".into(),
            description: "Probes its own targets".into(),
            options: vec![
                OptionSpec::text("targets", "Comma-separated hosts to probe").required(),
                OptionSpec::text("port", "TCP port to probe").required(),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let targets = options
            .require("targets")?
            .split(',')
            .map(String::from)
            .collect();
        let port = options.require("port")?.parse().map_err(|_| "bad --port")?;
        timers::set_timer(100);
        Ok(Self { targets, port })
    }

    fn check(&mut self, _hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let results = probes::probe_tcp(&self.targets, self.port, 200);
        Ok(results
            .into_iter()
            .map(|r| HostHealth {
                host: r.host,
                state: if r.ok {
                    HealthState::Healthy
                } else {
                    HealthState::Failed
                },
                rtt_us: r.rtt_us,
                detail: r.error,
            })
            .collect())
    }
}

export_health_check!(Prober);
