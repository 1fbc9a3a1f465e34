//! The demo (`make demo`): the real daemon on the embedded VPC with real
//! plugins. A VPC of two availability zones, a route table each, four
//! router hosts that are real TCP listeners on 127.0.x.y, the configfile
//! plugin on a spec of four CIDRs, the tcp health plugin at 0.2 s. The
//! routes are set; then the busiest router is killed and the failover is
//! shown as it happens. Nothing leaves 127.0.0.0/8.
//!
//! `demo [DAEMON]` runs an installed daemon instead of the one in target/
//! (e.g. `/usr/bin/vpcrouter`): it finds its own bundled plugins.

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUTERS: [(&str, &str, &str); 4] = [
    ("127.0.1.10", "eni-a1", "subnet-a"),
    ("127.0.1.11", "eni-a2", "subnet-a"),
    ("127.0.2.10", "eni-b1", "subnet-b"),
    ("127.0.2.11", "eni-b2", "subnet-b"),
];
const CIDRS: [&str; 4] = [
    "10.55.0.0/16",
    "10.56.0.0/16",
    "10.57.0.0/16",
    "10.58.0.0/16",
];

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let installed = std::env::args_os().nth(1).map(PathBuf::from);
    let daemon = installed
        .clone()
        .unwrap_or_else(|| root.join("target/debug/vpcrouter"));
    assert!(daemon.is_file(), "build first: make");
    // The checkout's plugins for the checkout's daemon.
    let plugin_dir = match installed {
        Some(_) => vec![],
        None => vec!["--plugin-dir".into(), root.join("plugins").into_os_string()],
    };

    // The routers: one listener each, on the same port.
    let first = TcpListener::bind((ROUTERS[0].0, 0)).expect("listener");
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![Some(first)];
    for (host, _, _) in &ROUTERS[1..] {
        listeners.push(Some(TcpListener::bind((*host, port)).expect("listener")));
    }

    let topology = json!({
        "subnets": [{"id": "subnet-a", "az": "az-a"}, {"id": "subnet-b", "az": "az-b"}],
        "interfaces": ROUTERS.iter().map(|(ip, eni, subnet)| json!({
            "id": eni, "instance": format!("i-{eni}"), "subnet": subnet, "ips": [ip], "running": true
        })).collect::<Vec<_>>(),
        "route_tables": [
            {"id": "rtb-a", "subnets": ["subnet-a"],
             "routes": [{"destination": "0.0.0.0/0", "target": {"other": "igw-demo"}}]},
            {"id": "rtb-b", "subnets": ["subnet-b"], "routes": []}
        ]
    });
    let hosts: Vec<&str> = ROUTERS.iter().map(|r| r.0).collect();
    let spec: serde_json::Map<_, _> = CIDRS
        .iter()
        .map(|c| (c.to_string(), json!(hosts)))
        .collect();
    let (topology_file, spec_file) = (dir.path().join("vpc.json"), dir.path().join("spec.json"));
    std::fs::write(&topology_file, topology.to_string()).unwrap();
    std::fs::write(&spec_file, serde_json::Value::Object(spec).to_string()).unwrap();

    println!(
        "== vpcrouter demo: embedded VPC (2 AZs, 2 route tables), 4 routers on 127.0.x.y:{port}, 4 CIDRs"
    );
    let mut child = Command::new(&daemon)
        .args([
            "-m",
            "configfile",
            "-H",
            "tcp",
            "--tcp_check_interval",
            "0.2",
            "-a",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &free_port().to_string(),
            "--tcp_check_port",
            &port.to_string(),
        ])
        .args(plugin_dir)
        .arg("-f")
        .arg(&spec_file)
        .arg("--sim-vpc")
        .arg(&topology_file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vpcrouter");
    let (lines, events) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let show = |line: &str| {
        let interesting = [
            "route ",
            "host failed",
            "accepted route spec",
            "vpcrouter started",
        ];
        if interesting.iter().any(|w| line.contains(w)) {
            println!(
                "   {}",
                line.split_once("  ")
                    .map_or(line, |(_, rest)| rest.trim_start())
            );
        }
    };

    // Routes are set: 4 CIDRs x 2 tables.
    let mut on_host = std::collections::BTreeMap::<String, usize>::new();
    let mut created = 0;
    while created < CIDRS.len() * 2 {
        let line = events
            .recv_timeout(Duration::from_secs(20))
            .expect("routes created");
        show(&line);
        if line.contains("route created") {
            created += 1;
            if let Some(host) = field(&line, "host") {
                *on_host.entry(host).or_default() += 1;
            }
        }
    }
    let (victim, carried) = on_host
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(h, n)| (h.clone(), *n))
        .unwrap();
    println!("== routes set; spread over routers: {on_host:?}");

    // Not a whole number of probe intervals, or the kill would always land
    // just before a round.
    let jitter = u64::from(std::process::id() % 200);
    std::thread::sleep(Duration::from_millis(2000 + 50 + jitter));
    let index = ROUTERS.iter().position(|r| r.0 == victim).unwrap();
    println!("== killing router {victim} (it carries {carried} routes)");
    listeners[index] = None;
    let killed = Instant::now();
    let mut replaced = 0;
    while replaced < carried {
        let line = events
            .recv_timeout(Duration::from_secs(20))
            .expect("failover");
        show(&line);
        if line.contains("route replaced") {
            replaced += 1;
        }
    }
    let took = killed.elapsed();
    // Anything else moving would be a needless change: watch for a second.
    let mut others = 0;
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while let Ok(line) = events.recv_timeout(quiet_until.saturating_duration_since(Instant::now()))
    {
        show(&line);
        others += usize::from(line.contains("route replaced"));
    }
    println!(
        "== failover done: {replaced} routes moved off {victim} {:.0} ms after it died; other routes moved: {others}",
        took.as_secs_f64() * 1e3
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    println!("== daemon stopped");
}

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
