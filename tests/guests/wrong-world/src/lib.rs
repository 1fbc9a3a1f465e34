//! A valid health-check component, built straight from the WIT with
//! wit-bindgen (as a third party would): the host must refuse it where a
//! config-source plugin is expected, with a message saying so.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "health-plugin",
});

use exports::vpcrouter::plugin::health_check::{Guest, HostHealth, Options, PluginInfo};

struct AlwaysHealthy;

impl Guest for AlwaysHealthy {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "always-healthy".into(),
            version: "0.0.1".into(),
            description: "Reports nothing".into(),
            options: vec![],
            http_paths: vec![],
        }
    }

    fn init(_options: Options) -> Result<(), String> {
        Ok(())
    }

    fn check(_hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        Ok(vec![])
    }
}

export!(AlwaysHealthy);
