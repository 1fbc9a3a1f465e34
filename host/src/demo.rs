//! `vpcrouter demo`: this daemon on the embedded VPC with its bundled
//! plugins. A VPC of two availability zones, a route table each, four
//! router hosts that are real TCP listeners on 127.0.x.y, the configfile
//! plugin on a spec of four CIDRs, the tcp health plugin at 0.2 s. The
//! routes are set; then the busiest router is killed and the failover is
//! shown as it happens. Nothing leaves 127.0.0.0/8. It runs the same from
//! a checkout (`make demo`), the package and the container image.

use clap::Parser;
use serde_json::json;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::failure::{self, Failure};

/// Show routes being set and failed over, on the embedded VPC
#[derive(Parser, Debug)]
#[command(name = "vpcrouter demo", bin_name = "vpcrouter demo")]
struct DemoCli {
    /// Where the bundled plugins are [default: as the daemon finds them]
    #[arg(long = "plugin-dir", value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
}

/// `vpcrouter demo` as a clap command, for completions and manual pages.
pub fn command() -> clap::Command {
    <DemoCli as clap::CommandFactory>::command().name("demo")
}

/// Run `vpcrouter demo ...` (`args` starts at `demo`).
pub async fn main(args: &[OsString]) -> Result<(), Failure> {
    let cli = failure::parse::<DemoCli>(args)?;
    tokio::task::spawn_blocking(move || run(cli))
        .await
        .map_err(|e| Failure::failed("the demo stopped", e))?
}

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

fn run(cli: DemoCli) -> Result<(), Failure> {
    fn failed(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
        move |e| Failure::failed(what, e)
    }
    let dir = ScratchDir::new().map_err(failed("cannot make a scratch folder"))?;
    // The routers: one listener each, on the same port.
    let first = TcpListener::bind((ROUTERS[0].0, 0)).map_err(failed("cannot listen"))?;
    let port = first.local_addr().map_err(failed("cannot listen"))?.port();
    let mut listeners = vec![Some(first)];
    for (host, _, _) in &ROUTERS[1..] {
        let listener = TcpListener::bind((*host, port)).map_err(failed("cannot listen"))?;
        listeners.push(Some(listener));
    }
    let (vpc_file, spec_file) = dir
        .write_inputs()
        .map_err(failed("cannot write the demo's files"))?;
    println!(
        "== vpcrouter demo: embedded VPC (2 AZs, 2 route tables), 4 routers on 127.0.x.y:{port}, 4 CIDRs"
    );
    let daemon = Daemon::start(&cli, port, &vpc_file, &spec_file)?;
    let shown = daemon.show_until_set();
    let shown = shown.and_then(|on_host| daemon.fail_over(&on_host, &mut listeners));
    daemon.stop();
    println!("== daemon stopped");
    shown
}

/// The embedded VPC's topology, and the spec.
fn inputs() -> (serde_json::Value, serde_json::Value) {
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
    (topology, serde_json::Value::Object(spec))
}

/// A folder of this run's files, removed with it.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("vpcrouter-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    fn write_inputs(&self) -> std::io::Result<(PathBuf, PathBuf)> {
        let (topology, spec) = inputs();
        let files = (self.0.join("vpc.json"), self.0.join("spec.json"));
        std::fs::write(&files.0, topology.to_string())?;
        std::fs::write(&files.1, spec.to_string())?;
        Ok(files)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This program as the daemon, its log lines on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(cli: &DemoCli, port: u16, vpc: &PathBuf, spec: &PathBuf) -> Result<Self, Failure> {
        let this =
            std::env::current_exe().map_err(|e| Failure::failed("cannot find this program", e))?;
        let mut command = Command::new(this);
        command.args([
            "-m",
            "configfile",
            "-H",
            "tcp",
            "--tcp_check_interval",
            "0.2",
        ]);
        command.args(["-a", "127.0.0.1", "-p", &free_port()?.to_string()]);
        command.args(["--tcp_check_port", &port.to_string()]);
        if let Some(dir) = &cli.plugin_dir {
            command.arg("--plugin-dir").arg(dir);
        }
        command.arg("-f").arg(spec).arg("--sim-vpc").arg(vpc);
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::failed("cannot start the daemon", e))?;
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Ok(Self { child, lines })
    }

    /// The next log line, shown if it is one the demo is about.
    fn next(&self, within: Duration, waiting_for: &str) -> Result<String, Failure> {
        let line = self.lines.recv_timeout(within).map_err(|_| {
            Failure::Failed(anyhow::anyhow!(
                "no {waiting_for} within {within:?}; the daemon's errors are above"
            ))
        })?;
        let interesting = [
            "route ",
            "host failed",
            "accepted route spec",
            "vpcrouter started",
        ];
        if interesting.iter().any(|w| line.contains(w)) {
            let message = line
                .split_once("  ")
                .map_or(line.as_str(), |(_, rest)| rest);
            println!("   {}", message.trim_start());
        }
        Ok(line)
    }

    /// Until every route is set (4 CIDRs x 2 tables): how many each
    /// router carries.
    fn show_until_set(&self) -> Result<BTreeMap<String, usize>, Failure> {
        let mut on_host = BTreeMap::<String, usize>::new();
        let mut created = 0;
        while created < CIDRS.len() * 2 {
            let line = self.next(Duration::from_secs(20), "routes created")?;
            if line.contains("route created") {
                created += 1;
                if let Some(host) = field(&line, "host") {
                    *on_host.entry(host).or_default() += 1;
                }
            }
        }
        println!("== routes set; spread over routers: {on_host:?}");
        Ok(on_host)
    }

    /// Kill the busiest router; show its routes moving, and that nothing
    /// else moves.
    fn fail_over(
        &self,
        on_host: &BTreeMap<String, usize>,
        listeners: &mut [Option<TcpListener>],
    ) -> Result<(), Failure> {
        let (victim, carried) = on_host
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(h, n)| (h.clone(), *n))
            .expect("routes were set");
        // Not a whole number of probe intervals, or the kill would always
        // land just before a round.
        let jitter = u64::from(std::process::id() % 200);
        std::thread::sleep(Duration::from_millis(2000 + 50 + jitter));
        let index = ROUTERS
            .iter()
            .position(|r| r.0 == victim)
            .expect("a router");
        println!("== killing router {victim} (it carries {carried} routes)");
        listeners[index] = None;
        let killed = Instant::now();
        let mut replaced = 0;
        while replaced < carried {
            let line = self.next(Duration::from_secs(20), "failover")?;
            replaced += usize::from(line.contains("route replaced"));
        }
        let took = killed.elapsed();
        // Anything else moving would be a needless change: watch a second.
        let mut others = 0;
        let quiet_until = Instant::now() + Duration::from_secs(1);
        while let Ok(line) = self.next(quiet_until.saturating_duration_since(Instant::now()), "") {
            others += usize::from(line.contains("route replaced"));
        }
        println!(
            "== failover done: {replaced} routes moved off {victim} {:.0} ms after it died; other routes moved: {others}",
            took.as_secs_f64() * 1e3
        );
        Ok(())
    }

    /// SIGTERM, as an operator stops it.
    fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: a plain signal to our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_string())
}

fn free_port() -> Result<u16, Failure> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| Failure::failed("cannot find a free port", e))
}
