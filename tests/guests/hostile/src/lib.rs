//! A config-source plugin that misbehaves on purpose, for the host's tests.
//! It serves a good spec on start; a request to `/poke` makes it do what
//! `--behaviour` says (or `--at start` does it straight away).

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, HttpRequest, HttpResponse, OptionSpec, Options, PluginInfo, Route,
    RouteSpec, export_config_source, files, outbound,
};

struct Hostile {
    behaviour: String,
    /// Where `connect` tries to reach (`HOST:PORT`).
    target: String,
    /// Misbehave on `started` instead of waiting for a poke.
    at_start: bool,
}

fn good_spec() -> RouteSpec {
    vec![Route {
        cidr: "10.55.16.0/24".into(),
        hosts: vec!["10.33.20.142".into()],
    }]
}

impl Hostile {
    fn misbehave(&self) -> Result<Option<RouteSpec>, String> {
        match self.behaviour.as_str() {
            "loop" => loop {
                std::hint::black_box(());
            },
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "invalid" => Ok(Some(vec![Route {
                cidr: "10.1.2.3/33".into(),
                hosts: vec!["nope".into()],
            }])),
            "steal" => {
                let via_host = files::read_file("/etc/passwd").err().unwrap_or_default();
                let via_wasi = std::fs::read("/etc/passwd")
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                Err(format!("host said: {via_host}; wasi said: {via_wasi}"))
            }
            "connect" => {
                let request = outbound::OutboundRequest {
                    method: "GET".into(),
                    path: "/".into(),
                    headers: vec![],
                    body: vec![],
                    timeout_ms: 500,
                };
                let via_host = outbound::send(&request).err().unwrap_or_default();
                let via_wasi = std::net::TcpStream::connect(self.target.as_str())
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                Err(format!("host said: {via_host}; wasi said: {via_wasi}"))
            }
            other => Err(format!("unknown behaviour {other}")),
        }
    }
}

impl ConfigSource for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            description: "Misbehaves on purpose".into(),
            options: vec![
                OptionSpec::text(
                    "behaviour",
                    "loop | membomb | trap | invalid | steal | connect",
                )
                .required(),
                OptionSpec::text("target", "HOST:PORT that `connect` tries")
                    .default_value("127.0.0.1:9"),
                OptionSpec::text("at", "poke | start | init").default_value("poke"),
            ],
            http_paths: vec!["/poke".into()],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let behaviour = options.require("behaviour")?.to_string();
        let at_start = match options.get("at").unwrap_or("poke") {
            "poke" => false,
            "start" => true,
            "init" => return Err(format!("refusing to start ({behaviour})")),
            other => return Err(format!("--at {other:?}: expected poke, start or init")),
        };
        Ok(Self {
            behaviour,
            target: options.require("target")?.to_string(),
            at_start,
        })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started if self.at_start => self.misbehave(),
            Event::Started => Ok(Some(good_spec())),
            Event::Timer | Event::FileChanged(_) => Ok(None),
        }
    }

    fn handle_http(&mut self, _request: HttpRequest) -> (HttpResponse, Option<RouteSpec>) {
        match self.misbehave() {
            Ok(spec) => (HttpResponse::text(200, "poked"), spec),
            Err(e) => (HttpResponse::text(500, &e), None),
        }
    }
}

export_config_source!(Hostile);
