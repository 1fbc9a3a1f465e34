//! {{name}}: a vpcrouter config source. It reads the route spec from the
//! file the operator gives with --{{prefix}}_file (lines of `CIDR HOST...`)
//! and reads it again whenever it changes.

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionSpec, Options, PluginInfo, Route, RouteSpec, export_config_source,
    files, log,
};

struct Plugin {
    path: String,
}

/// The spec in a file's text. An empty file is an error, not an empty spec
/// (which would delete every route the daemon manages).
fn parse(text: &str) -> Result<RouteSpec, String> {
    if text.trim().is_empty() {
        return Err("the file is empty; the spec in force stays".into());
    }
    let mut routes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(cidr) = words.next() else { continue };
        let hosts: Vec<String> = words.map(String::from).collect();
        if hosts.is_empty() {
            return Err(format!("line {}: {cidr} has no hosts", number + 1));
        }
        routes.push(Route {
            cidr: cidr.into(),
            hosts,
        });
    }
    Ok(routes)
}

impl ConfigSource for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Route spec from a file of CIDR HOST... lines".into(),
            // Kind `file`: giving it grants read access to that one file.
            options: vec![OptionSpec::file("{{prefix}}_file", "The routes file").required()],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let path = options.require("{{prefix}}_file")?.to_string();
        files::watch_file(&path)?;
        Ok(Self { path })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started | Event::FileChanged(_) => {
                let bytes = files::read_file(&self.path)?;
                let text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8")?;
                let routes = parse(&text).map_err(|e| format!("{}: {e}", self.path))?;
                log!(Info, "{} routes from {}", routes.len(), self.path);
                Ok(Some(routes))
            }
            Event::Timer => Ok(None),
        }
    }
}

export_config_source!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_routes_and_an_empty_file_is_refused() {
        let routes = parse("# rack 1\n10.55.0.0/16 10.0.0.5 10.0.0.6\n").unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].hosts, ["10.0.0.5", "10.0.0.6"]);
        assert!(parse("").is_err());
        assert!(parse("10.55.0.0/16\n").unwrap_err().contains("line 1"));
    }
}
