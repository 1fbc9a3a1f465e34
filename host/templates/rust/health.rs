//! {{name}}: a vpcrouter health check. A router is healthy while it accepts
//! TCP connections on --{{prefix}}_port; the daemon runs each round's probes
//! concurrently, this decides what a probe means.

use vpcrouter_plugin_sdk::{
    HealthCheck, HealthState, HostHealth, OptionSpec, Options, PluginInfo, export_health_check,
    probes, timers,
};

struct Plugin {
    port: u16,
}

/// What one probe means.
fn verdict(ok: bool) -> HealthState {
    if ok { HealthState::Healthy } else { HealthState::Failed }
}

impl HealthCheck for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy while the router accepts TCP connections".into(),
            options: vec![
                OptionSpec::text("{{prefix}}_port", "TCP port to probe").required(),
                OptionSpec::text("{{prefix}}_interval", "Seconds between rounds").default_value("2"),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let value = options.require("{{prefix}}_port")?;
        let port = value
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--{{prefix}}_port {value:?}: expected 1-65535"))?;
        let interval = options.millis("{{prefix}}_interval")?.unwrap_or(2000);
        timers::set_timer(interval);
        Ok(Self { port })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let results = probes::probe_tcp(&hosts, self.port, 1000);
        Ok(results
            .into_iter()
            .map(|probe| HostHealth {
                host: probe.host,
                state: verdict(probe.ok),
                rtt_us: probe.rtt_us,
                detail: probe.error,
            })
            .collect())
    }
}

export_health_check!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_healthy_and_silence_failed() {
        assert_eq!(verdict(true), HealthState::Healthy);
        assert_eq!(verdict(false), HealthState::Failed);
    }
}
