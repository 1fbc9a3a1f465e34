//! A health check that declares a `file` option, which no health check may
//! hold (a probe verdict must not depend on what a file grants): refused by
//! `plugin inspect` and at load, naming the option.

use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionSpec, Options, PluginInfo, export_health_check,
};

struct HealthFile;

impl HealthCheck for HealthFile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "health-file".into(),
            version: "0.0.1".into(),
            description: "Wants a file".into(),
            options: vec![OptionSpec::file("hf_hosts", "Hosts to trust")],
            http_paths: vec![],
        }
    }

    fn init(_options: Options) -> Result<Self, String> {
        Ok(Self)
    }

    fn check(&mut self, _hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        Ok(vec![])
    }
}

export_health_check!(HealthFile);
