//! A config source whose HTTP paths are patterns, not literal paths (the
//! host once handed them to its router, which panicked on `/:x` and `/{`,
//! and let `/{*rest}` capture every unknown path): the host must refuse it
//! at load, naming the path.

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, Options, PluginInfo, RouteSpec, export_config_source,
};

struct BadPaths;

impl ConfigSource for BadPaths {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "bad-paths".into(),
            version: "0.0.1".into(),
            description: "Serves patterns".into(),
            options: vec![],
            http_paths: vec!["/hooks".into(), "/{*rest}".into()],
        }
    }

    fn init(_options: Options) -> Result<Self, String> {
        Ok(Self)
    }

    fn on_event(&mut self, _event: Event) -> Result<Option<RouteSpec>, String> {
        Ok(None)
    }
}

export_config_source!(BadPaths);
