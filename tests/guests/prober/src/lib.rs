//! A health-check plugin that probes hosts of its own choosing (`--targets`)
//! instead of the working set it is given, by TCP or HTTP (`--method`,
//! `--path` of its choosing, `--tls` without a CA grant), and reports what
//! came back: the host must refuse every target outside the working set,
//! and every HTTP probe it cannot send as asked.

use vpcrouter_plugin_sdk::probes::{HttpCheck, HttpMethod, ProbeTimeout};
use vpcrouter_plugin_sdk::{
    HealthCheck, HealthState, HostHealth, OptionSpec, Options, PluginInfo, export_health_check,
    probes, timers,
};

struct Prober {
    targets: Vec<String>,
    port: u16,
    /// None: TCP probes.
    http: Option<HttpCheck>,
}

impl HealthCheck for Prober {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "prober".into(),
            version: "0.0.1".into(),
            description: "Probes its own targets".into(),
            options: vec![
                OptionSpec::text("targets", "Comma-separated hosts to probe").required(),
                OptionSpec::text("port", "TCP port to probe").required(),
                OptionSpec::text("method", "tcp or http").default_value("tcp"),
                OptionSpec::text("path", "HTTP path to ask for").default_value("/"),
                OptionSpec::of_kind(
                    "tls",
                    "Ask over HTTPS",
                    vpcrouter_plugin_sdk::OptionKind::Flag,
                ),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let targets = options
            .require("targets")?
            .split(',')
            .map(String::from)
            .collect();
        let port = options.require("port")?.parse().map_err(|_| "bad --port")?;
        let http = (options.require("method")? == "http").then(|| HttpCheck {
            method: HttpMethod::Get,
            port,
            path: options.get("path").unwrap_or("/").to_string(),
            tls: options.get("tls").is_some(),
            server_name: None,
            body_bytes: u32::MAX,
        });
        timers::set_timer(100);
        Ok(Self {
            targets,
            port,
            http,
        })
    }

    fn check(&mut self, _hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let results: Vec<(String, bool, Option<u32>, Option<String>)> = match &self.http {
            None => probes::probe_tcp(&self.targets, self.port, 200)
                .into_iter()
                .map(|r| (r.host, r.ok, r.rtt_us, r.error))
                .collect(),
            Some(check) => {
                let round =
                    probes::start_http_round(check, &self.targets, ProbeTimeout::Fixed(200));
                std::iter::from_fn(|| Some(round.next()).filter(|r| !r.is_empty()))
                    .flatten()
                    .map(|r| (r.host, r.status.is_some(), r.rtt_us, r.error))
                    .collect()
            }
        };
        Ok(results
            .into_iter()
            .map(|(host, ok, rtt_us, detail)| HostHealth {
                host,
                state: if ok {
                    HealthState::Healthy
                } else {
                    HealthState::Failed
                },
                rtt_us,
                detail,
            })
            .collect())
    }
}

export_health_check!(Prober);
