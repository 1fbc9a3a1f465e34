//! fixedconf: a static route spec of one CIDR from the command line, as in
//! the old daemon: `--fixed_cidr 10.0.0.0/16 --fixed_hosts 10.1.0.5:10.2.0.5`.

use std::net::IpAddr;
use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionSpec, Options, PluginInfo, Route, RouteSpec, export_config_source,
};

struct FixedConf {
    route: Route,
}

impl ConfigSource for FixedConf {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "fixedconf".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A fixed route spec of one CIDR, given on the command line".into(),
            options: vec![
                OptionSpec::text("fixed_cidr", "Destination CIDR of the route").required(),
                OptionSpec::text("fixed_hosts", "Eligible router IPs, separated by ':'").required(),
            ],
            http_paths: vec![],
        }
    }

    /// Option values are checked here so that a typo stops the daemon at
    /// start; the host still validates the spec itself (network address etc.).
    fn init(options: Options) -> Result<Self, String> {
        let cidr = options.require("fixed_cidr")?.trim().to_string();
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("--fixed_cidr {cidr:?}: expected ADDRESS/PREFIX"))?;
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("--fixed_cidr {cidr:?}: {addr:?} is not an IP address"))?;
        let max_len = if addr.is_ipv4() { 32 } else { 128 };
        len.parse::<u8>()
            .ok()
            .filter(|len| *len <= max_len)
            .ok_or_else(|| {
                format!("--fixed_cidr {cidr:?}: {len:?} is not a prefix length (0-{max_len})")
            })?;
        // IPv6 addresses contain ':' too, so the old separator only works for
        // IPv4; ',' is accepted as well for IPv6 hosts.
        let hosts_arg = options.require("fixed_hosts")?;
        let separator = if hosts_arg.contains(',') { ',' } else { ':' };
        let hosts = hosts_arg
            .split(separator)
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                h.parse::<IpAddr>()
                    .map(|_| h.to_string())
                    .map_err(|_| format!("--fixed_hosts: {h:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err("--fixed_hosts: at least one host is needed".into());
        }
        Ok(Self {
            route: Route { cidr, hosts },
        })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started => Ok(Some(vec![self.route.clone()])),
            Event::Timer | Event::FileChanged(_) => Ok(None),
        }
    }
}

export_config_source!(FixedConf);
