//! Helpers shared by the integration tests: where the built plugins are, a
//! daemon process with its log lines, and a minimal HTTP client.
#![allow(dead_code)] // each test binary uses a different subset

pub mod etcd;
pub mod failover;
pub mod fault_proxy;
pub mod ha_cluster;
pub mod hostile;
pub mod moto;
pub mod nat;
pub mod receiver;
pub mod sim_cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A test that cannot run on this machine (no root, no chromium, no
/// ICMP): under CI, which installs and permits everything the suite needs,
/// that is a failure; elsewhere it says what is missing, and the caller
/// returns.
pub fn cannot_run(what: impl std::fmt::Display) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run every test, but here: {what}"
    );
    eprintln!("skipped: {what}");
}

pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Poll `done` until it gives a value; fail after 20 s naming `what`.
pub fn wait_until<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(start.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// As [`wait_until`] inside a tokio test (whose runtime must keep running
/// while it waits): poll `check` every 10 ms, fail after 5 s.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A bundled plugin, as `make plugins` leaves it.
pub fn plugin(name: &str) -> PathBuf {
    existing(repo().join("plugins").join(format!("{name}.wasm")))
}

/// A test guest built from tests/guests (crate `guest-NAME`).
pub fn guest(name: &str) -> PathBuf {
    let file = format!("guest_{}.wasm", name.replace('-', "_"));
    existing(repo().join("target/wasm32-wasip2/release").join(file))
}

/// An example plugin built from examples/ (crate `NAME`).
pub fn example(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    existing(repo().join("target/wasm32-wasip2/release").join(file))
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `vpcrouter plugin compile PLUGIN` into `cache`, its key in `state`, which
/// must succeed: (stdout, stderr).
pub fn plugin_compile(
    plugin: &std::path::Path,
    cache: &std::path::Path,
    state: &std::path::Path,
) -> (String, String) {
    let os = std::ffi::OsStr::new;
    let (code, stdout, stderr) = plugin_tool(&[
        os("compile"),
        plugin.as_os_str(),
        os("--plugin-cache-dir"),
        cache.as_os_str(),
        os("--state-dir"),
        state.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    (stdout, stderr)
}

/// `vpcrouter plugin ARGS...` to its end: (exit code, stdout, stderr).
pub fn plugin_tool<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .arg("plugin")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Run the daemon with `args` (plugins from `plugins/`, no health checking
/// and the embedded VPC unless `args` say otherwise, no metadata service)
/// until it exits, as for a start-up error (within 120 s, or the test
/// fails); (exit code, stderr).
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = run_to_exit_with_output(args);
    (code, stderr)
}

/// The same, for a run that prints (`--dry-run`): (exit code, stdout,
/// stderr).
pub fn run_to_exit_with_output(args: &[&str]) -> (i32, String, String) {
    let cache = tempfile::tempdir().unwrap();
    let chooses_vpc = args
        .iter()
        .any(|a| ["--sim-vpc", "-v", "--vpc", "--ec2-endpoint"].contains(a));
    let chooses_health = args
        .iter()
        .any(|a| a.starts_with("-H") || a.starts_with("--health"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_vpcrouter"));
    if !args.contains(&"-a") {
        command.args(["-a", "127.0.0.1"]);
    }
    if !chooses_health {
        command.args(["-H", "none"]);
    }
    command
        .args(["-p", &free_port().to_string()])
        .arg("--plugin-dir")
        .arg(repo().join("plugins"))
        .envs(NO_METADATA);
    if !args.contains(&"--plugin-cache-dir") {
        command.arg("--plugin-cache-dir").arg(cache.path());
    }
    if !chooses_vpc {
        command
            .arg("--sim-vpc")
            .arg(repo().join("examples/sim-vpc.json"));
    }
    command.args(args);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    // A start-up error ends the daemon at once; one that starts instead
    // is a failure, not a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 120 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = status.code().unwrap_or(-1);
    (code, stdout.join().unwrap(), stderr.join().unwrap())
}

/// A running `vpcrouter` whose standard output is collected line by line.
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub port: u16,
}

/// Network safety: a daemon under test must never look for the instance
/// metadata service (169.254.169.254), for its region or for credentials;
/// dummy credentials (moto takes any) end the credential chain before it.
pub const NO_METADATA: [(&str, &str); 3] = [
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
];

impl Daemon {
    /// Start the daemon on a free loopback port with `args`, caching
    /// compiled plugins in `cache` (a per-test directory).
    ///
    /// Network safety: unless `args` choose health checking, `-H none` is
    /// added, so that the default (icmpecho) never pings the non-loopback
    /// hosts of a test's route spec; unless they choose a VPC, the embedded
    /// one of `examples/sim-vpc.json` is the backend; unless they choose a
    /// state folder, it is `cache/state`.
    pub fn start(args: &[&str], cache: &std::path::Path) -> Self {
        Self::start_with_env(args, &[], cache)
    }

    /// As [`Daemon::start`], with these environment variables set after
    /// [`NO_METADATA`] (a test that serves its own metadata service on
    /// loopback points the daemon at it this way).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], cache: &std::path::Path) -> Self {
        Self::start_within(args, env, cache, Duration::from_secs(20))
    }

    /// As [`Daemon::start_with_env`], given `within` to start (a plugin
    /// compiled at start takes seconds; more on a loaded machine).
    pub fn start_within(
        args: &[&str],
        env: &[(&str, &str)],
        cache: &std::path::Path,
        within: Duration,
    ) -> Self {
        let port = free_port();
        let chooses_health = args
            .iter()
            .any(|a| a.starts_with("-H") || a.starts_with("--health"));
        let no_health: &[&str] = if chooses_health { &[] } else { &["-H", "none"] };
        let chooses_vpc = args
            .iter()
            .any(|a| ["--sim-vpc", "-v", "--vpc", "--ec2-endpoint"].contains(a));
        // What the daemon keeps (the cache's key, drains) stays with the
        // test: another test's drains are not this one's.
        let state_dir = match args.contains(&"--state-dir") {
            true => vec![],
            false => vec!["--state-dir".into(), cache.join("state").into_os_string()],
        };
        let sim_vpc = repo().join("examples/sim-vpc.json");
        let default_vpc = match chooses_vpc {
            true => vec![],
            false => vec!["--sim-vpc".into(), sim_vpc.into_os_string()],
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
            .args(args)
            .args(no_health)
            .args(default_vpc)
            .args(state_dir)
            .envs(NO_METADATA)
            .envs(env.iter().copied())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("--plugin-dir")
            .arg(repo().join("plugins"))
            .arg("--plugin-cache-dir")
            .arg(cache)
            .env("VPCROUTER_LOG", "info,vpcrouter=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vpcrouter");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("daemon: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let daemon = Self { child, lines, port };
        daemon.wait_for_line("vpcrouter started", within);
        daemon
    }

    /// Wait until a log line contains `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        self.wait_for_nth_line(needle, 1, within)
    }

    /// Wait until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_for_nth_line(&self, needle: &str, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines_with(needle).into_iter().nth(n - 1) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {n}. log line with {needle:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit code, once the process has ended within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon still running after {within:?}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http(self.port, method, path, body)
    }

    /// One plugin of `/plugins`, by name.
    #[allow(dead_code)] // not every test binary looks at plugins
    pub fn plugin(&self, name: &str) -> serde_json::Value {
        plugin_named(&self.view("/plugins"), name).clone()
    }

    /// A view as JSON (`GET` with `Accept: application/json`).
    pub fn view(&self, path: &str) -> serde_json::Value {
        let reply = request(
            self.port,
            "GET",
            path,
            &[("Accept", "application/json")],
            b"",
        );
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// Bytes of log written so far (lines and their newlines).
    pub fn log_bytes(&self) -> usize {
        self.lines.lock().unwrap().iter().map(|l| l.len() + 1).sum()
    }

    /// (peak, current) resident memory in MiB.
    pub fn memory_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
                >> 10
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Send SIGTERM; the daemon must exit with 0 within 3 s. How long it took.
    pub fn sigterm(&mut self) -> Duration {
        let started = Instant::now();
        // SAFETY: signalling the child process this value owns.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        assert_eq!(self.wait_exit(Duration::from_secs(3)), Some(0));
        started.elapsed()
    }
}

/// A new version of the plugin at `path`: the same code with a custom
/// section appended (another digest), put in place by rename as an
/// installer does.
pub fn new_version(path: &std::path::Path, tag: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"vpcrouter-test";
    let payload: Vec<u8> = std::iter::once(name.len() as u8)
        .chain(name.iter().copied())
        .chain(tag.bytes())
        .collect();
    assert!(payload.len() < 128, "one-byte LEB128 size");
    bytes.push(0); // custom section
    bytes.push(payload.len() as u8);
    bytes.extend(payload);
    let staged = path.with_extension("new");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// An embedded VPC whose routers are `routers` (loopback addresses), each
/// in a subnet, AZ and route table of its own, named by letter (`eni-a`,
/// `subnet-a`, `az-a`, `rtb-a` for the first), the first table also holding
/// a gateway route (`0.0.0.0/0` to `igw-1`); written to `dir/vpc.json`.
pub fn loopback_vpc(dir: &std::path::Path, routers: &[&str]) -> PathBuf {
    use serde_json::json;
    let letter = |i: usize| char::from(b'a' + i as u8);
    let interfaces: Vec<_> = routers
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let l = letter(i);
            json!({"id": format!("eni-{l}"), "instance": format!("i-{l}"),
                   "subnet": format!("subnet-{l}"), "ips": [ip], "running": true})
        })
        .collect();
    let subnets: Vec<_> = (0..routers.len())
        .map(|i| json!({"id": format!("subnet-{}", letter(i)), "az": format!("az-{}", letter(i))}))
        .collect();
    let tables: Vec<_> = (0..routers.len())
        .map(|i| {
            let routes = match i {
                0 => json!([{"destination": "0.0.0.0/0", "target": {"other": "igw-1"}}]),
                _ => json!([]),
            };
            json!({"id": format!("rtb-{}", letter(i)), "subnets": [format!("subnet-{}", letter(i))], "routes": routes})
        })
        .collect();
    let vpc = json!({"subnets": subnets, "interfaces": interfaces, "route_tables": tables});
    let file = dir.join("vpc.json");
    std::fs::write(&file, vpc.to_string()).unwrap();
    file
}

/// The command line of a daemon on the embedded VPC of `routers`
/// (`loopback_vpc`) with configfile routing 10.55.0.0/16 to all of them,
/// then `more` (a health plugin and its options); files written to `dir`.
pub fn loopback_args(dir: &std::path::Path, routers: &[&str], more: &[&str]) -> Vec<String> {
    let vpc = loopback_vpc(dir, routers);
    let spec = spec_file(dir, ["10.55.0.0/16".to_string()], routers);
    let files = [
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "--sim-vpc",
        vpc.to_str().unwrap(),
    ];
    files.iter().chain(more).map(|a| a.to_string()).collect()
}

/// Owned arguments as `Daemon::start` takes them.
/// The plugin `name` of a `/plugins` view.
#[allow(dead_code)] // not every test binary looks at plugins
pub fn plugin_named<'a>(view: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    view["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {view}"))
}

pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// configfile reading `spec`, tcp checks on `port` every 0.2 s: the
/// flags most daemons of the tests start with.
pub fn configfile_tcp_args(spec: &std::path::Path, port: u16) -> Vec<String> {
    let port = port.to_string();
    [
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "-H",
        "tcp",
        "--tcp_check_port",
        &port,
        "--tcp_check_interval",
        "0.2",
    ]
    .map(String::from)
    .to_vec()
}

/// A spec routing each of `cidrs` to all of `routers`, written to
/// `dir/spec.json`.
pub fn spec_file(
    dir: &std::path::Path,
    cidrs: impl IntoIterator<Item = String>,
    routers: &[&str],
) -> PathBuf {
    let spec: serde_json::Map<String, serde_json::Value> = cidrs
        .into_iter()
        .map(|c| (c, serde_json::json!(routers)))
        .collect();
    let file = dir.join("spec.json");
    std::fs::write(&file, serde_json::Value::Object(spec).to_string()).unwrap();
    file
}

/// tests/guests/multi-memory/plugin.wat as a health-plugin component file
/// in `dir`: its second memory `extra_pages` big, `functions` (WAT, not
/// exported) added to its module.
pub fn multi_memory_component(dir: &std::path::Path, extra_pages: u32, functions: &str) -> PathBuf {
    let wat = std::fs::read_to_string(repo().join("tests/guests/multi-memory/plugin.wat"))
        .unwrap()
        .replace("EXTRA_PAGES", &extra_pages.to_string());
    let end = wat.rfind(')').expect("the module's closing parenthesis");
    let wat = format!("{}{functions}{}", &wat[..end], &wat[end..]);
    let component = test_tool(
        &[
            "component",
            repo().join("wit/v0.1.0").to_str().unwrap(),
            "health-plugin",
        ],
        &wat,
    )
    .unwrap_or_else(|e| panic!("cannot assemble the component: {e}"));
    let path = dir.join(format!("multi-memory-{extra_pages}.wasm"));
    std::fs::write(&path, component).unwrap();
    path
}

/// Run tests/tools (`make test` builds it) with `input` on stdin: its
/// stdout, or its stderr as the error.
pub fn test_tool(args: &[&str], input: &str) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let tool = repo().join("target/debug/test-tools");
    assert!(
        tool.is_file(),
        "{} is missing: run `cargo build -p test-tools` (make test does)",
        tool.display()
    );
    let mut child = Command::new(&tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let reply = request(
        port,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    );
    (reply.status, reply.body)
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `headers` to 127.0.0.1:`port`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Health-check plugins (a file and its options each) checking the hosts of
/// the spec in force in `specs`, all reporting to one board; they stop when
/// this is dropped.
pub struct HealthCheckers {
    pub board: Arc<vpcrouter::health::HealthBoard>,
    pub handles: Vec<vpcrouter::plugin::PluginHandle>,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub async fn health_checkers(
    specs: &Arc<vpcrouter::spec_store::SpecStore>,
    plugins: &[(PathBuf, &[(&str, &str)])],
) -> HealthCheckers {
    use vpcrouter::plugin::{Bounds, Compiler, PluginEngine, PluginRuntime, Role};
    let runtime = PluginRuntime::new(
        PluginEngine::new(Compiler::InProcess).unwrap(),
        Bounds::default(),
    )
    .unwrap();
    let board = Arc::new(vpcrouter::health::HealthBoard::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for (path, options) in plugins {
        let configured = configure_health(&runtime, specs, path, options)
            .await
            .unwrap();
        let role = Role::Health {
            specs: specs.subscribe(),
            board: board.clone(),
        };
        handles.push(vpcrouter::plugin::spawn(configured, role, shutdown.clone()));
    }
    HealthCheckers {
        board,
        handles,
        _stop: stop,
    }
}

/// Load the health plugin at `path` and configure it with `options`.
async fn configure_health(
    runtime: &vpcrouter::plugin::PluginRuntime,
    specs: &vpcrouter::spec_store::SpecStore,
    path: &std::path::Path,
    options: &[(&str, &str)],
) -> Result<vpcrouter::plugin::ConfiguredPlugin, vpcrouter::plugin::LoadError> {
    let loaded = runtime
        .load_health_check(path, specs.subscribe())
        .await
        .unwrap();
    let options: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    loaded.configure(&options).await
}

/// Why the bundled health plugin `name` refuses to start with `options`
/// (it must refuse).
pub async fn refusal(name: &str, options: &[(&str, &str)]) -> String {
    use vpcrouter::plugin::{Bounds, Compiler, PluginEngine, PluginRuntime};
    let specs = vpcrouter::spec_store::SpecStore::default();
    let runtime = PluginRuntime::new(
        PluginEngine::new(Compiler::InProcess).unwrap(),
        Bounds::default(),
    )
    .unwrap();
    match configure_health(&runtime, &specs, &plugin(name), options).await {
        Ok(_) => panic!("{name} accepted {options:?}"),
        Err(e) => e.to_string(),
    }
}

impl HealthCheckers {
    /// Wait (at most 10 s) until the board satisfies `pred`; how long it took.
    pub async fn wait(
        &self,
        what: &str,
        pred: impl Fn(&vpcrouter::health::HealthSnapshot) -> bool,
    ) -> Duration {
        let start = Instant::now();
        let mut board = self.board.subscribe();
        tokio::time::timeout(Duration::from_secs(10), board.wait_for(|s| pred(s)))
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: not within 10 s; board {:?}", self.board.snapshot())
            })
            .unwrap();
        start.elapsed()
    }
}

/// Run a future on a runtime on this thread (for tests that change
/// per-thread state: capabilities, network namespace).
pub fn block_on(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// Drop CAP_NET_RAW from this thread's effective capabilities (capabilities
/// are per thread on Linux); false if that is not possible.
pub fn drop_net_raw_on_this_thread() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and a two-element data array, as capget/capset expect.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return false;
        }
        data[0].effective &= !(1 << CAP_NET_RAW);
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
    }
}
