//! romana: route specs from the Romana IPAM topology in etcd (key
//! `/romana/ipam/data` by default), as the old vpc-router's Romana plugin.
//!
//! etcd is reached through the host's outbound capability: the operator's
//! `--etcd_addr`/`--etcd_port` (and `--ca_cert`, `--cert_chain`,
//! `--priv_key` for TLS, done by the host) grant that one endpoint and
//! nothing else. The plugin polls with a revision check: every interval one
//! small keys-only request; the value is fetched only when its revision
//! changed. While etcd cannot be reached the spec in force stays and polls
//! back off (doubling to 10 s); they return to the interval once it answers.

pub mod etcd;

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, OptionKind, OptionSpec, Options, PluginInfo, Route, RouteSpec,
    export_config_source, log, timers,
};

use etcd::Key;
use romana_topology as topology;

const DEFAULT_KEY: &str = "/romana/ipam/data";
const MAX_BACKOFF_MS: u32 = 10_000;

struct Romana {
    key: String,
    poll_ms: u32,
    /// The current poll interval (longer while etcd is away).
    every_ms: u32,
    /// The revision of the value last turned into a spec (or found bad).
    seen: Option<i64>,
    /// Whether the last poll failed (to log recovery once).
    failing: bool,
}

/// Why a poll gave no spec.
enum Problem {
    /// etcd could not be asked: back off.
    Outage(String),
    /// etcd answered, but with no usable topology.
    Content(String),
}

impl Romana {
    /// Poll: a spec when the key changed to a valid topology.
    fn poll(&mut self, force: bool) -> Result<Option<RouteSpec>, String> {
        match self.check(force) {
            Err(Problem::Outage(e)) => {
                self.failing = true;
                self.every_ms = (self.every_ms * 2).clamp(self.poll_ms, MAX_BACKOFF_MS);
                timers::set_timer(self.every_ms);
                Err(format!(
                    "{e}; retrying in {} ms, the spec in force stays",
                    self.every_ms
                ))
            }
            result => {
                if self.failing {
                    self.failing = false;
                    log!(Info, "etcd answers again");
                    self.every_ms = self.poll_ms;
                    timers::set_timer(self.every_ms);
                }
                result.map_err(|(Problem::Content(e) | Problem::Outage(e))| e)
            }
        }
    }

    fn check(&mut self, force: bool) -> Result<Option<RouteSpec>, Problem> {
        let revision = match etcd::get(&self.key, true).map_err(Problem::Outage)? {
            Key::Missing => {
                let known = self.seen.take().is_some();
                return match known || force {
                    true => Err(Problem::Content(format!(
                        "key {} not found in etcd; the spec in force stays",
                        self.key
                    ))),
                    false => Ok(None),
                };
            }
            Key::Present { mod_revision, .. } => mod_revision,
        };
        if !force && self.seen == Some(revision) {
            return Ok(None);
        }
        let Key::Present {
            mod_revision,
            value,
        } = etcd::get(&self.key, false).map_err(Problem::Outage)?
        else {
            return Ok(None); // deleted in between: the next poll says so
        };
        self.seen = Some(mod_revision);
        let routes = topology::routes(&value.unwrap_or_default()).map_err(|e| {
            Problem::Content(format!("{} (revision {mod_revision}): {e}", self.key))
        })?;
        log!(
            Debug,
            "{} revision {mod_revision}: {} CIDRs",
            self.key,
            routes.len()
        );
        Ok(Some(
            routes
                .into_iter()
                .map(|(cidr, hosts)| Route { cidr, hosts })
                .collect(),
        ))
    }
}

impl ConfigSource for Romana {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "romana".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Route spec from the Romana IPAM topology in etcd (v3)".into(),
            options: vec![
                OptionSpec::of_kind(
                    "etcd_addr",
                    "etcd host name or address",
                    OptionKind::EndpointHost,
                )
                .default_value("localhost"),
                OptionSpec::of_kind("etcd_port", "etcd client port", OptionKind::EndpointPort)
                    .default_value("2379"),
                OptionSpec::of_kind(
                    "ca_cert",
                    "CA bundle (PEM) to verify etcd by; turns TLS on",
                    OptionKind::TlsCa,
                ),
                OptionSpec::of_kind(
                    "cert_chain",
                    "Client certificate chain (PEM) for etcd",
                    OptionKind::TlsCert,
                ),
                OptionSpec::of_kind(
                    "priv_key",
                    "Private key (PEM) of the client certificate",
                    OptionKind::TlsKey,
                ),
                OptionSpec::text("etcd_key", "Key of the Romana topology")
                    .default_value(DEFAULT_KEY),
                OptionSpec::text("etcd_poll_interval", "Seconds between revision checks")
                    .default_value("0.5"),
                OptionSpec::of_kind(
                    "usev2",
                    "Use the etcd v2 API (not supported)",
                    OptionKind::Flag,
                ),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        if options.get("usev2") == Some("true") {
            return Err(
                "--usev2: the etcd v2 API is not supported; this plugin reads etcd v3 through its JSON gateway (etcd 3.4 and later serve it)"
                    .into(),
            );
        }
        let poll_ms = options
            .millis("etcd_poll_interval")?
            .unwrap_or(500)
            .max(100);
        timers::set_timer(poll_ms);
        Ok(Self {
            key: options.require("etcd_key")?.to_string(),
            poll_ms,
            every_ms: poll_ms,
            seen: None,
            failing: false,
        })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started => self.poll(true),
            Event::Timer => self.poll(false),
            Event::FileChanged(_) => Ok(None),
        }
    }
}

export_config_source!(Romana);
