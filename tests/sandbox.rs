//! The sandbox and its bounds against hostile plugins (tests/guests), one
//! test per class of attack: the real daemon binary on the embedded VPC,
//! everything on loopback.

mod common;

use common::Daemon;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vpcrouter::spec_store::SpecStore;

const WITHIN: Duration = Duration::from_secs(10);

/// The hostile config guest doing `behaviour` when poked, poked once:
/// the daemon and the answer.
fn poked_hostile(dir: &Path, behaviour: &str) -> (Daemon, u16, String) {
    let hostile = common::guest("hostile");
    let args = [
        "--mode-plugin",
        hostile.to_str().unwrap(),
        "--behaviour",
        behaviour,
    ];
    let daemon = Daemon::start(&args, dir);
    daemon.wait_for_line("accepted route spec", WITHIN);
    let (status, body) = daemon.http("POST", "/poke", b"");
    (daemon, status, body)
}

/// Class 1: a plugin's own defaults grant nothing. The hostile guest
/// declares a file option defaulting to /proc/self/environ and an endpoint
/// defaulting to loopback; it reads the one and posts to the other.
#[test]
fn a_third_party_plugin_holds_only_the_grants_the_operator_gave() {
    const SECRET: &str = "wJalrXUtnFEMI-not-a-real-key";
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::guest("hostile");
    let hostile = hostile.to_str().unwrap();
    let daemon = Daemon::start_with_env(
        &["--mode-plugin", hostile, "--behaviour", "exfiltrate"],
        &[("AWS_SECRET_ACCESS_KEY", SECRET)],
        dir.path(),
    );
    daemon.wait_for_line(
        "--loot: the default \"/proc/self/environ\" of a third-party plugin is not granted",
        WITHIN,
    );
    let (status, body) = daemon.http("POST", "/poke", b"");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("access denied"), "{body}");
    assert!(body.contains("no endpoint granted"), "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let view = daemon.view("/plugins");
    let plugin = common::plugin_named(&view, "hostile");
    assert_eq!(plugin["trust"], "third-party");
    assert_eq!(plugin["grants"], serde_json::json!([]));
    assert!(plugin["options"].get("loot").is_none(), "{plugin}");
    drop(daemon);

    // Given on the command line, the endpoint is granted and listed with
    // its origin; the file default still is not.
    let drop_box = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let drop_port = drop_box.local_addr().unwrap().port().to_string();
    let daemon = Daemon::start_with_env(
        &[
            "--mode-plugin",
            hostile,
            "--behaviour",
            "exfiltrate",
            "--drop_host",
            "127.0.0.1",
            "--drop_port",
            &drop_port,
        ],
        &[("AWS_SECRET_ACCESS_KEY", SECRET)],
        dir.path(),
    );
    daemon.wait_for_line(
        &format!("grant=\"HTTP requests to http://127.0.0.1:{drop_port}\" from=\"--drop_host on the command line, --drop_port on the command line\""),
        WITHIN,
    );
    let poked = std::thread::spawn({
        let port = daemon.port;
        move || common::http(port, "POST", "/poke", b"")
    });
    let (mut connection, _) = drop_box.accept().unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut received = Vec::new();
    let _ = std::io::Read::read_to_end(&mut connection, &mut received);
    drop(connection);
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("POST /loot"), "{received}");
    assert!(!received.contains(SECRET), "{received}");
    let (_, body) = poked.join().unwrap();
    assert!(body.contains("access denied"), "{body}");
    let view = daemon.view("/plugins");
    let grants = &common::plugin_named(&view, "hostile")["grants"];
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
}

/// Class 1, the declaration side: half an endpoint on the command line and
/// contradictory grant declarations are clean start-up errors.
#[test]
fn invalid_grants_are_refused_at_start() {
    let hostile = common::guest("hostile");
    let (code, stderr) = common::run_to_exit(&[
        "--mode-plugin",
        hostile.to_str().unwrap(),
        "--behaviour",
        "exfiltrate",
        "--drop_port",
        "80",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("give --drop_host"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let bad = common::guest("bad-grants");
    let (code, stderr) = common::run_to_exit(&["--mode-plugin", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(bad.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("--etcd and --consul are both of kind endpoint-host"),
        "{stderr}"
    );
}

/// `plugin inspect` refuses what a load refuses, for the same reason (a
/// health check declaring a file option, two endpoints, a pattern path,
/// two plugins of one name), and lists a good plugin's options with their kinds for its command line.
#[test]
fn plugin_inspect_refuses_what_load_refuses() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let inspect = |file: &std::path::Path| {
        common::plugin_tool(&[
            "inspect",
            file.to_str().unwrap(),
            "--plugin-cache-dir",
            cache_dir,
            "--state-dir",
            cache_dir,
        ])
    };
    let (code, stdout, stderr) = inspect(&common::plugin("configfile"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("name: configfile "), "{stdout}");
    assert!(stdout.contains("    --file (file): "), "{stdout}");

    for (guest, flag, problem) in [
        (
            "health-file",
            "--health-plugin",
            "option --hf_hosts is of kind file, but health-check plugins can hold no file",
        ),
        (
            "bad-grants",
            "--mode-plugin",
            "--etcd and --consul are both of kind endpoint-host",
        ),
        ("bad-paths", "--mode-plugin", "must be a literal path"),
    ] {
        let file = common::guest(guest);
        let (code, stdout, stderr) = inspect(&file);
        assert_eq!(code, Some(2), "{guest}: {stdout}{stderr}");
        assert!(stderr.contains(problem), "{guest}: {stderr}");
        let mut args = vec![flag, file.to_str().unwrap()];
        if flag == "--health-plugin" {
            args.extend([
                "-m",
                "fixedconf",
                "--fixed_cidr",
                "10.0.0.0/16",
                "--fixed_hosts",
                "127.0.0.1",
            ]);
        }
        let (code, at_load) = common::run_to_exit(&args);
        assert_eq!(code, 2, "{guest}: {at_load}");
        assert!(at_load.contains(problem), "{guest}: {at_load}");
    }
    // Files given together are checked as on one command line.
    let tcp = common::plugin("tcp");
    let (code, stdout, stderr) = common::plugin_tool(&[
        "inspect",
        tcp.to_str().unwrap(),
        tcp.to_str().unwrap(),
        "--plugin-cache-dir",
        cache_dir,
        "--state-dir",
        cache_dir,
    ]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("calls itself \"tcp\""), "{stderr}");
    // Without a compile: the outline only, which these pass.
    let (code, stdout, stderr) = common::plugin_tool(&[
        "inspect",
        "--no-describe",
        common::guest("health-file").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("name:"), "{stdout}");
}

/// The bundled plugins keep their defaults: `-m romana` reaches its default
/// etcd address, and says so.
#[test]
fn a_bundled_plugin_is_known_by_its_digest_and_keeps_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&["-m", "romana"], dir.path());
    let view = daemon.view("/plugins");
    let romana = common::plugin_named(&view, "romana");
    assert_eq!(romana["trust"], "bundled (romana)");
    let grant = &romana["grants"][0];
    assert_eq!(grant["grant"], "HTTP requests to http://localhost:2379");
    assert!(
        grant["from"]
            .as_str()
            .unwrap()
            .contains("the default of --etcd_addr (bundled plugin romana)"),
        "{grant}"
    );
}

/// Class 6: HTTP paths are literal; a pattern is refused at start (it used
/// to panic the router, exit 101), naming the plugin file and the path.
#[test]
fn pattern_http_paths_are_refused_at_start() {
    let bad = common::guest("bad-paths");
    let (code, stderr) = common::run_to_exit(&["--mode-plugin", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(bad.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("\"/{*rest}\" must be a literal path"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Class 7: the operator's token never reaches plugin code, and with a
/// token set every request to a plugin path needs it, a GET included.
#[test]
fn plugin_paths_need_the_token_and_never_see_credentials() {
    const TOKEN: &str = "s3cret-operator-token";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let hostile = common::guest("hostile");
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "headers",
            "--http-token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    for method in ["GET", "POST", "HEAD"] {
        let reply = common::request(daemon.port, method, "/poke", &[], b"");
        assert_eq!(reply.status, 401, "{method}: {}", reply.body);
    }
    assert_eq!(daemon.lines_with("accepted route spec").len(), 1);
    let bearer = format!("Bearer {TOKEN}");
    let reply = common::request(
        daemon.port,
        "GET",
        "/poke",
        &[
            ("Authorization", &bearer),
            ("Cookie", "session=abc"),
            ("X-Trace", "1"),
        ],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("x-trace: 1"), "{}", reply.body);
    assert!(!reply.body.contains(TOKEN), "{}", reply.body);
    assert!(
        !reply.body.to_lowercase().contains("authorization"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("session=abc"), "{}", reply.body);
    // The views stay open without --http-auth-all.
    assert_eq!(daemon.http("GET", "/ips", b"").0, 200);
}

/// Class 2: a granted path that blocks (here a FIFO put in place of the
/// spec file) is refused without reading; the daemon keeps answering and
/// exits on SIGTERM at once. A symlink to a regular file is read.
#[test]
fn a_file_that_would_block_cannot_freeze_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(&file, r#"{"10.55.0.0/16": ["10.33.20.142"]}"#).unwrap();
    let file = file.to_str().unwrap();
    let mut daemon = Daemon::start(&["-m", "configfile", "-f", file], dir.path());
    daemon.wait_for_line("accepted route spec", WITHIN);

    std::fs::remove_file(file).unwrap();
    let c_path = std::ffi::CString::new(file).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    daemon.wait_for_line("not a regular file", WITHIN);
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(daemon.http("GET", "/healthz", b"").0, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    let (_, route_info) = daemon.http("GET", "/route_info", b"");
    assert!(route_info.contains("10.55.0.0/16"), "{route_info}");

    // As Kubernetes mounts a ConfigMap: the file is a symlink.
    let real = dir.path().join("real.json");
    std::fs::write(&real, r#"{"10.66.0.0/16": ["10.33.20.142"]}"#).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::rename(&link, file).unwrap();
    daemon.wait_for_line("10.66.0.0/16", WITHIN);
    assert!(daemon.sigterm() < Duration::from_secs(3));
}

/// Class 3: a second health plugin calling itself `tcp` would speak for
/// the real one; two plugins of one name are refused at start.
#[test]
fn a_plugin_cannot_take_another_plugins_name() {
    let impostor = common::guest("impostor");
    let tcp = common::plugin("tcp");
    let (code, stderr) = common::run_to_exit(&[
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "10.55.0.0/16",
        "--fixed_hosts",
        "127.0.0.1",
        "--health-plugin",
        tcp.to_str().unwrap(),
        "--health-plugin",
        impostor.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(impostor.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains(&format!("calls itself \"tcp\", as {} does", tcp.display())),
        "{stderr}"
    );
}

/// Class 4: limits fit together. Every host of a large working set is
/// silent (one listener on all of 127/8 with a full accept queue drops their
/// SYNs); with a 3 s probe timeout the round takes several probe waves, far
/// beyond the 2 s of the plugin's own time, and still marks them all failed.
#[tokio::test]
async fn a_round_over_many_silent_hosts_completes_and_fails_them() {
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(&"0.0.0.0:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    silent.listen(0).unwrap();
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let _queued: Vec<_> = (0..4)
        .filter_map(|_| {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50)).ok()
        })
        .collect();
    let specs = Arc::new(SpecStore::default());
    let routes = (0..3u32).map(|c| {
        let hosts: Vec<String> = (0..1000u32)
            .map(|h| format!("127.1.{}.{}", c * 4 + h / 250, h % 250 + 1))
            .collect();
        (format!("10.{c}.0.0/16"), hosts)
    });
    specs.offer("test", routes).unwrap();
    let port = port.to_string();
    let options: [(&str, &str); 3] = [
        ("tcp_check_port", &port),
        ("tcp_check_interval", "1"),
        ("tcp_check_timeout", "3"),
    ];
    let checkers = common::health_checkers(&specs, &[(common::plugin("tcp"), &options)]).await;
    let mut board = checkers.board.subscribe();
    tokio::time::timeout(
        Duration::from_secs(40),
        board.wait_for(|s| s.failed.len() == 3000),
    )
    .await
    .unwrap_or_else(|_| panic!("not all failed: {}", checkers.board.snapshot().failed.len()))
    .unwrap();
    let status = checkers.handles[0].status().borrow().clone();
    assert_eq!(status.restarts, 0, "{:?}", status.last_error);
}

/// Class 4: a plugin's spec is held to the documented limits (1 MiB as
/// JSON) like a file or an HTTP body, and counts in messages are true; a
/// spec too large to copy into the host (16 MiB per call) is a fault.
#[test]
fn a_plugins_spec_is_held_to_the_documented_limits() {
    let dir = tempfile::tempdir().unwrap();
    for (behaviour, status, expected) in [
        ("oversize", 400, "larger than 1048576 bytes as JSON"),
        (
            "many-routes",
            400,
            "route spec has 2000 routes; at most 1000",
        ),
        (
            "huge",
            503,
            "too much data is being copied between the host and the guest",
        ),
    ] {
        let (daemon, answered, body) = poked_hostile(dir.path(), behaviour);
        assert_eq!(answered, status, "{body}");
        assert!(body.contains(expected), "{body}");
        let (_, route_info) = daemon.http("GET", "/route_info", b"");
        assert!(route_info.contains("10.55.16.0/24"), "{route_info}");
    }
}

/// Class 8: one router named 200,000 times in a batch, and in a thousand
/// calls more, is probed at most 16 times per round.
#[test]
fn a_plugin_cannot_amplify_probes_against_a_router() {
    probes_of_one_router_stay_bounded("127.0.41.10", "amplify");
}

/// Class 8 again, through probe rounds: a thousand rounds per call, kept
/// open, probe the router no more than batches do (at most 4 rounds open,
/// 16 probes of a host per call).
#[test]
fn probe_rounds_cannot_amplify_probes_either() {
    probes_of_one_router_stay_bounded("127.0.41.11", "rounds");
}

/// The hostile health plugin doing `behaviour` against a listening router:
/// at most 16 connections per call reach it, counted over five calls
/// however long they take (on a loaded machine a call may run out of time
/// and be restarted: its probes count all the same).
fn probes_of_one_router_stay_bounded(router: &str, behaviour: &str) {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind((router, 0)).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    listener.set_nonblocking(true).unwrap();
    let daemon = hostile_health_daemon(dir.path(), router, behaviour, &port);
    // `check` calls into the plugin so far, whatever their outcome.
    let calls = || -> u64 {
        let (_, metrics) = daemon.http("GET", "/metrics", b"");
        metrics
            .lines()
            .filter(|l| l.starts_with("vpcrouter_plugin_calls_total{"))
            .filter(|l| l.contains("plugin=\"hostile-health\"") && l.contains("call=\"check\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let mut connections = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut asked = Instant::now();
    while calls() < 5 {
        assert!(Instant::now() < deadline, "not 5 calls in 180 s");
        while asked.elapsed() < Duration::from_millis(200) {
            match listener.accept() {
                Ok(_) => connections += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        asked = Instant::now();
    }
    // Connections of a call under way are counted before it is.
    let calls = calls();
    assert!(
        connections <= 16 * (calls + 2),
        "{behaviour}: {connections} connections in {calls} calls"
    );
}

/// Early verdicts are bounded: 20,000 flips of every host in one call make
/// at most a few changes of state, and the daemon keeps answering.
#[test]
fn early_verdicts_cannot_churn_the_health_board() {
    let dir = tempfile::tempdir().unwrap();
    let router = "127.0.41.12";
    let daemon = hostile_health_daemon(dir.path(), router, "verdicts", "9");
    let rounds = || {
        let view = daemon.view("/plugins");
        common::plugin_named(&view, "hostile-health")["stats"]["rounds"]
            .as_u64()
            .unwrap()
    };
    common::wait_until("a few rounds", || (rounds() >= 3).then_some(()));
    let started = Instant::now();
    let (status, _) = daemon.http("GET", "/healthz", b"");
    assert_eq!(status, 200);
    // Generous: the point is that it answers, on a loaded machine too.
    assert!(started.elapsed() < Duration::from_secs(3));
    let rounds = rounds();
    let (_, events) = daemon.http("GET", "/events", b"");
    let failures = events.matches("host_failed").count() as u64;
    // 4 verdicts of a host per call: two flips to failed, per round.
    assert!(
        failures <= 2 * (rounds + 2),
        "{failures} failures in {rounds} rounds"
    );
}

fn hostile_health_daemon(dir: &Path, router: &str, behaviour: &str, port: &str) -> Daemon {
    let guest = common::guest("hostile-health");
    let health = [
        "--health-plugin",
        guest.to_str().unwrap(),
        "--hh_behaviour",
        behaviour,
        "--hh_port",
        port,
    ];
    let args = common::loopback_args(dir, &[router], &health);
    let daemon = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);
    daemon.wait_for_line("accepted route spec", WITHIN);
    daemon
}

/// Class 9: the host owns the framing of outbound requests: one `Host`, the
/// body's true length, no transfer coding the plugin chose.
#[test]
fn outbound_framing_headers_are_the_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_port = peer.local_addr().unwrap().port().to_string();
    let hostile = common::guest("hostile");
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "smuggle",
            "--drop_host",
            "127.0.0.1",
            "--drop_port",
            &peer_port,
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    let poked = std::thread::spawn({
        let port = daemon.port;
        move || common::http(port, "POST", "/poke", b"")
    });
    let (mut connection, _) = peer.accept().unwrap();
    connection
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut received = Vec::new();
    let _ = connection.read_to_end(&mut received);
    drop(connection);
    let _ = poked.join();
    let received = String::from_utf8_lossy(&received).to_lowercase();
    let (head, body) = received.split_once("\r\n\r\n").unwrap();
    let headers: Vec<&str> = head.lines().skip(1).collect();
    let named = |name: &str| {
        headers
            .iter()
            .filter(|h| h.starts_with(&format!("{name}:")))
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        named("host"),
        [format!("host: 127.0.0.1:{peer_port}")],
        "{head}"
    );
    assert_eq!(named("content-length"), ["content-length: 100"], "{head}");
    assert!(named("transfer-encoding").is_empty(), "{head}");
    assert_eq!(named("x-plugin"), ["x-plugin: yes"], "{head}");
    assert_eq!(body.len(), 100);
}

/// Class 10: an exit() says its status, a trap quotes what the plugin
/// printed last (a Rust panic message here; a Python traceback the same).
#[test]
fn faults_say_what_the_plugin_did_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    for (behaviour, expected) in [
        // WASI passes only success or failure: exit(3) arrives as 1.
        ("exit", "the plugin exited with status 1"),
        ("trap", "hostile plugin panics on purpose"),
    ] {
        let (daemon, status, _) = poked_hostile(dir.path(), behaviour);
        assert_eq!(status, 503);
        let line = daemon.wait_for_line("plugin failed; restarting it", WITHIN);
        assert!(line.contains(expected), "{line}");
        let view = daemon.view("/plugins");
        let error = common::plugin_named(&view, "hostile")["last_error"].to_string();
        assert!(error.contains(expected), "{error}");
    }
}

/// Start the daemon with a config source and a health checker that flood
/// it: the config source swaps between two specs of 1,000 CIDRs every
/// 100 ms (every route deleted and created) while logging 100 lines of
/// 64 KiB and printing 64 KiB each time; the health checker logs 1,000
/// lines of 64 KiB and prints 1 MiB per round, reports 100,000 hosts outside
/// the working set and flips every host between failed and healthy.
fn start_flooded(dir: &Path, health: &str, routers: &[&str], port: &str) -> Daemon {
    let vpc = common::loopback_vpc(dir, routers);
    let (hostile, hostile_health) = (common::guest("hostile"), common::guest("hostile-health"));
    let hosts = routers.join(",");
    Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "churn",
            "--hosts",
            &hosts,
            "--sim-vpc",
            vpc.to_str().unwrap(),
            "--health-plugin",
            hostile_health.to_str().unwrap(),
            "--hh_behaviour",
            health,
            "--hh_port",
            port,
        ],
        dir,
    )
}

/// Class 5: what plugins make the daemon log is bounded (debug logging on):
/// at most 100 KB/s, with the suppressed lines counted.
#[test]
fn plugins_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_flooded(
        dir.path(),
        "flood,outside,flip",
        &["127.0.43.10", "127.0.43.11"],
        "9",
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let warm = daemon.log_bytes();
    std::thread::sleep(Duration::from_secs(8));
    let rate = (daemon.log_bytes() - warm) as f64 / 8.0;
    let overall = daemon.log_bytes() as f64 / started.elapsed().as_secs_f64();
    println!("log: {rate:.0} B/s over the last 8 s, {overall:.0} B/s overall");
    assert!(rate <= 100_000.0, "{rate:.0} B/s");
    assert!(overall <= 100_000.0, "{overall:.0} B/s");
    let reported = daemon.wait_for_line("from=\"plugin hostile\"", WITHIN);
    assert!(reported.contains("log lines suppressed"), "{reported}");
    assert!(daemon.lines_with("").iter().all(|l| l.len() <= 9 << 10));
}

/// Every class at once: the daemon stays within its documented bounds:
/// HTTP answers, the log stays under 100 KB/s, memory stays bounded, and
/// SIGTERM ends it within 3 s.
#[test]
fn the_daemon_stays_within_its_bounds_under_every_attack_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let routers = ["127.0.44.10", "127.0.44.11"];
    let first = std::net::TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let _second = std::net::TcpListener::bind((routers[1], port)).unwrap();
    let mut daemon = start_flooded(
        dir.path(),
        "amplify,slow,flood,outside,flip",
        &routers,
        &port.to_string(),
    );
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(12) {
        let asked = Instant::now();
        assert_eq!(daemon.http("GET", "/healthz", b"").0, 200);
        assert_eq!(daemon.http("GET", "/plugins", b"").0, 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rate = daemon.log_bytes() as f64 / started.elapsed().as_secs_f64();
    let (rss, _) = daemon.memory_mib();
    let exit = daemon.sigterm();
    println!(
        "slowest HTTP answer {slowest:?}, log {rate:.0} B/s, peak RSS {rss} MiB, SIGTERM to exit {exit:?}"
    );
    // Generous: the point is that it answers, on a loaded machine too.
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(rate <= 100_000.0, "{rate:.0} B/s");
    assert!(rss <= 512, "{rss} MiB");
}

/// Class 11: the memory cap is the plugin's, not each memory's: two
/// memories of 40 MiB are refused together, while 40 + 1 MiB load.
#[tokio::test]
async fn the_memory_cap_covers_all_of_a_plugins_memories() {
    use vpcrouter::plugin::{Bounds, CallError, Compiler, LoadError, PluginEngine, PluginRuntime};
    let dir = tempfile::tempdir().unwrap();
    let specs = SpecStore::default();
    let runtime = PluginRuntime::new(
        PluginEngine::new(Compiler::InProcess).unwrap(),
        Bounds::default(),
    )
    .unwrap();
    let small = common::multi_memory_component(dir.path(), 16, "");
    let loaded = runtime.load_health_check(&small, specs.subscribe()).await;
    assert_eq!(loaded.map(|l| l.info.name).unwrap(), "multi-memory");
    let big = common::multi_memory_component(dir.path(), 640, "");
    let refused = runtime
        .load_health_check(&big, specs.subscribe())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(refused, LoadError::Call(CallError::OutOfMemory { .. })),
        "{refused}"
    );
    let (code, stderr) = common::run_to_exit(&[
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "10.55.0.0/16",
        "--fixed_hosts",
        "127.0.0.1",
        "--health-plugin",
        big.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("exceeded the memory cap of 64 MiB"),
        "{stderr}"
    );
}
