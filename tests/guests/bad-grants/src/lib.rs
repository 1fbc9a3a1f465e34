//! A config source that declares two endpoints (which one would the host
//! grant?): the host must refuse it at load, naming both options.

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionKind, OptionSpec, Options, PluginInfo, RouteSpec,
    export_config_source,
};

struct BadGrants;

impl ConfigSource for BadGrants {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "bad-grants".into(),
            version: "0.0.1".into(),
            description: "Declares two endpoints".into(),
            options: vec![
                OptionSpec::of_kind("etcd", "etcd host", OptionKind::EndpointHost),
                OptionSpec::of_kind("consul", "consul host", OptionKind::EndpointHost),
                OptionSpec::of_kind("port", "their port", OptionKind::EndpointPort),
            ],
            http_paths: vec![],
        }
    }

    fn init(_options: Options) -> Result<Self, String> {
        Ok(Self)
    }

    fn on_event(&mut self, _event: Event) -> Result<Option<RouteSpec>, String> {
        Ok(None)
    }
}

export_config_source!(BadGrants);
