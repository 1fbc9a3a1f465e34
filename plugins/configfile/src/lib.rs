//! configfile: the route spec comes from one JSON file, re-read whenever it
//! changes. The host grants read access to that file only and watches it
//! (inotify), so changes arrive as events rather than by polling.

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionSpec, Options, PluginInfo, RouteSpec, export_config_source, files,
    log, spec,
};

struct ConfigFile {
    path: String,
}

impl ConfigFile {
    fn read_spec(&self) -> Result<Option<RouteSpec>, String> {
        let bytes = files::read_file(&self.path)?;
        let routes = spec::from_json(&bytes).map_err(|e| format!("{}: {e}", self.path))?;
        log!(Debug, "read {} routes from {}", routes.len(), self.path);
        Ok(Some(routes))
    }
}

impl ConfigSource for ConfigFile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "configfile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Route spec from a JSON file, re-applied on every change".into(),
            options: vec![
                OptionSpec::file("file", "Route spec file (JSON: CIDR -> list of host IPs)")
                    .required(),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let path = options.require("file")?.to_string();
        files::watch_file(&path)?;
        Ok(Self { path })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started | Event::FileChanged(_) => self.read_spec(),
            Event::Timer => Ok(None),
        }
    }
}

export_config_source!(ConfigFile);
