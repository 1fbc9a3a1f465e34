//! Example plugin for PLUGINS.md: the route spec comes from a plain-text
//! file, one route per line, `CIDR HOST [HOST ...]`, with `#` comments:
//!
//! ```text
//! # pod network of rack 1
//! 10.55.16.0/24  10.33.20.142 10.33.20.143
//! ```
//!
//! Load it with
//! `vpcrouter --mode-plugin routes_txt.wasm --routes /etc/vpcrouter/routes.txt`.

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionSpec, Options, PluginInfo, Route, RouteSpec, export_config_source,
    files, log,
};

struct RoutesTxt {
    path: String,
}

/// Parse the text format; the error names the line. An empty file is an
/// error, not an empty spec: it is what a writer leaves for a moment (and an
/// empty spec would delete every route the daemon manages). A file of only
/// comments is a deliberate "no routes".
fn parse(text: &str) -> Result<RouteSpec, String> {
    if text.trim().is_empty() {
        return Err("the file is empty; the spec in force stays".into());
    }
    let mut routes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let mut words = line.split_whitespace();
        let Some(cidr) = words.next() else { continue };
        let hosts: Vec<String> = words.map(String::from).collect();
        if hosts.is_empty() {
            return Err(format!("line {}: {cidr} has no hosts", number + 1));
        }
        routes.push(Route {
            cidr: cidr.to_string(),
            hosts,
        });
    }
    Ok(routes)
}

impl ConfigSource for RoutesTxt {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "routes-txt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Route spec from a text file of `CIDR HOST...` lines".into(),
            // Kind `file`: giving --routes grants read access to that file.
            options: vec![OptionSpec::file("routes", "The routes file").required()],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let path = options.require("routes")?.to_string();
        files::watch_file(&path)?;
        Ok(Self { path })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started | Event::FileChanged(_) => {
                let bytes = files::read_file(&self.path)?;
                let text = String::from_utf8(bytes).map_err(|_| "routes file is not UTF-8")?;
                let routes = parse(&text).map_err(|e| format!("{}: {e}", self.path))?;
                log!(Info, "{} routes from {}", routes.len(), self.path);
                Ok(Some(routes))
            }
            Event::Timer => Ok(None),
        }
    }
}

export_config_source!(RoutesTxt);
