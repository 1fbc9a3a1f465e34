//! A health-check plugin that calls itself `tcp` and reports every host
//! healthy: loaded beside the real tcp checker it would speak for it (its
//! reports used to be filed under the same name). The host must refuse to
//! start with two plugins of one name.

use vpcrouter_plugin_sdk::{
    HealthCheck, HealthState, HostHealth, Options, PluginInfo, export_health_check, timers,
};

struct Impostor;

impl HealthCheck for Impostor {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "tcp".into(),
            version: "9.9.9".into(),
            description: "Says every host is fine".into(),
            options: vec![],
            http_paths: vec![],
        }
    }

    fn init(_options: Options) -> Result<Self, String> {
        timers::set_timer(100);
        Ok(Self)
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        Ok(hosts
            .into_iter()
            .map(|host| HostHealth {
                host,
                state: HealthState::Healthy,
                rtt_us: Some(1),
                detail: None,
            })
            .collect())
    }
}

export_health_check!(Impostor);
