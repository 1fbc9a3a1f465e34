//! Plugins written in other languages, built as an outside author builds
//! them (`make lang-examples`): examples/csv-routes in Python
//! (componentize-py) and examples/tcp-latency in JavaScript
//! (componentize-js), loaded by the real daemon from the compile cache that
//! `vpcrouter plugin compile` filled.

mod common;

use common::Daemon;
use std::path::PathBuf;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

fn example(path: &str) -> PathBuf {
    let file = common::repo().join(path);
    assert!(
        file.is_file(),
        "{} is missing: run `make lang-examples`",
        file.display()
    );
    file
}

/// The cache `make lang-examples` compiled them into.
fn cache() -> PathBuf {
    common::repo().join("target/lang-plugin-cache")
}

/// A Python config source: the spec from a CSV file, following changes;
/// an empty file refused; an uncaught exception shows its traceback.
#[test]
fn a_python_config_source_follows_its_file_and_its_traceback_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("routes.csv");
    std::fs::write(&csv, "# rack 1\n10.55.16.0/24,10.33.20.142,10.33.20.143\n").unwrap();
    let plugin = example("examples/csv-routes/csv_routes.wasm");
    let cache = cache();
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
        &cache,
    );
    daemon.wait_for_line(
        r#"spec={"10.55.16.0/24":["10.33.20.142","10.33.20.143"]}"#,
        WITHIN,
    );
    std::fs::write(&csv, "10.66.0.0/16, 10.33.30.22\n").unwrap();
    daemon.wait_for_line(r#"spec={"10.66.0.0/16":["10.33.30.22"]}"#, WITHIN);
    std::fs::write(&csv, "").unwrap();
    daemon.wait_for_line("the file is empty; the spec in force stays", WITHIN);
    // Not UTF-8: the plugin does not catch the UnicodeDecodeError; Python
    // prints the traceback, the instance traps, the trap quotes it.
    std::fs::write(&csv, b"10.77.0.0/16,\xff\xfe\n").unwrap();
    let line = daemon.wait_for_line("plugin failed; restarting it", WITHIN);
    assert!(line.contains("Traceback"), "{line}");
    assert!(line.contains("UnicodeDecodeError"), "{line}");
    let view = daemon.view("/plugins");
    let plugin = &view["plugins"][0];
    assert_eq!(plugin["name"], "csv-routes");
    // Built against the first contract, loaded by a host of a newer one.
    assert_eq!(plugin["wit"], "vpcrouter:plugin@0.1.0");
    let (_, route_info) = daemon.http("GET", "/route_info", b"");
    assert!(route_info.contains("10.66.0.0/16"), "{route_info}");
}

/// A JavaScript health check: healthy while the router answers, failed
/// when it stops; a bad option is refused at start with the plugin's words.
#[test]
fn a_javascript_health_check_sees_a_router_go() {
    let dir = tempfile::tempdir().unwrap();
    let router = "127.0.0.54";
    let listener = std::net::TcpListener::bind((router, 0)).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let plugin = example("examples/tcp-latency/tcp_latency.wasm");
    let cache = cache();
    let args_every = |port: &str, interval: &str| {
        let health = [
            "--health-plugin",
            plugin.to_str().unwrap(),
            "--latency_port",
            port,
            "--latency_interval",
            interval,
        ];
        common::loopback_args(dir.path(), &[router], &health)
    };
    let args = |port: &str| args_every(port, "0.2");
    let good = args(&port);
    let daemon = Daemon::start(&good.iter().map(String::as_str).collect::<Vec<_>>(), &cache);
    let state = || daemon.view("/ips")["hosts"][router]["state"].clone();
    let wait = |wanted: &str| {
        let start = std::time::Instant::now();
        while state() != wanted {
            assert!(
                start.elapsed() < WITHIN,
                "{router} not {wanted}: {}",
                state()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("healthy");
    drop(listener);
    wait("failed");
    let line = daemon.wait_for_line("host failed", WITHIN);
    // Refused, or reset when a probe was in the closing listener's queue.
    let why = [
        "tcp-latency: connection refused",
        "tcp-latency: Connection reset",
    ];
    assert!(why.iter().any(|w| line.contains(w)), "{line}");

    let mut bad = args("0");
    bad.extend(["--plugin-cache-dir".into(), cache.to_str().unwrap().into()]);
    let (code, stderr) = common::run_to_exit(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "{stderr}");
    // Thrown as an Error: its message, not "[object]".
    assert!(
        stderr.contains("--latency_port 0: expected 1-65535"),
        "{stderr}"
    );
    let mut bad = args_every(&port, "soon");
    bad.extend(["--plugin-cache-dir".into(), cache.to_str().unwrap().into()]);
    let (code, stderr) = common::run_to_exit(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--latency_interval soon: expected seconds") && !stderr.contains("[object"),
        "{stderr}"
    );
}

/// A big plugin the compile cache does not hold starts on quick code
/// (Winch: a few seconds, not the tens optimising takes) and runs on it;
/// its optimised code, compiled in the background, is swapped in by a
/// reload of its own, and the plugin goes on as before. A restart then
/// loads the optimised code from the cache.
#[test]
fn a_big_plugin_starts_on_quick_code_and_swaps_in_its_optimised_code() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("routes.csv");
    std::fs::write(&csv, "10.55.16.0/24,10.33.20.142\n").unwrap();
    let plugin = example("examples/csv-routes/csv_routes.wasm");
    let cache = dir.path().join("cache");
    let args = [
        "--mode-plugin",
        plugin.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ];
    let tier = |daemon: &Daemon| {
        let view = daemon.view("/plugins");
        let plugin = view["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "csv-routes")
            .cloned()
            .unwrap();
        plugin["code"]["tier"].as_str().unwrap().to_string()
    };
    // Quick code takes seconds to make; on a loaded machine, more.
    let daemon = Daemon::start_within(&args, &[], &cache, Duration::from_secs(120));
    let compiled = daemon.wait_for_line("plugin compiled plugin=\"csv-routes\"", WITHIN);
    assert!(compiled.contains("code=\"quick\""), "{compiled}");
    assert_eq!(tier(&daemon), "quick");
    daemon.wait_for_line(r#"spec={"10.55.16.0/24":["10.33.20.142"]}"#, WITHIN);
    // The optimised compile takes tens of seconds on a debug daemon, more
    // on a loaded machine.
    let swapped = daemon.wait_for_line(
        "its optimised code, swapped for the quick code it started on",
        Duration::from_secs(300),
    );
    assert!(swapped.contains("result=\"reloaded\""), "{swapped}");
    common::wait_until("the optimised code runs", || {
        (tier(&daemon) == "optimised").then_some(())
    });
    std::fs::write(&csv, "10.66.0.0/16,10.33.30.22\n").unwrap();
    daemon.wait_for_line(r#"spec={"10.66.0.0/16":["10.33.30.22"]}"#, WITHIN);
    drop(daemon);

    let daemon = Daemon::start(&args, &cache);
    let loaded = daemon.wait_for_line(
        "plugin code loaded from the compile cache plugin=\"csv-routes\"",
        WITHIN,
    );
    assert!(loaded.contains("code=\"optimised\""), "{loaded}");
    assert_eq!(tier(&daemon), "optimised");
}

/// A big component's compile is said (its size, every 5 s while it runs,
/// then what it took), and a new build of the same file reuses the
/// functions that did not change: here a build that differs only in a
/// custom section compiles a few percent of them.
#[test]
fn a_big_plugin_compile_is_said_and_a_new_build_reuses_its_functions() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("csv_routes.wasm");
    std::fs::copy(example("examples/csv-routes/csv_routes.wasm"), &plugin).unwrap();
    let (cache, state) = (dir.path().join("cache"), dir.path().join("state"));
    let compile = || {
        let (out, said) = common::plugin_compile(&plugin, &cache, &state);
        (said, out)
    };
    let (said, out) = compile();
    assert!(
        said.contains("compiling the plugin")
            && said.contains("size=18.")
            && said.contains("vpcrouter plugin compile FILE"),
        "{said}"
    );
    assert!(
        said.contains("plugin compiled") && said.contains("functions_reused=0"),
        "{said}"
    );
    assert!(!said.contains('\x1b'), "no colours into a pipe: {said}");
    assert!(out.contains("(compiled)"), "{out}");

    common::new_version(&plugin, "v2");
    let (said, out) = compile();
    let count = |field: &str| -> u64 {
        let at = said
            .find(&format!("{field}="))
            .unwrap_or_else(|| panic!("{said}"));
        said[at + field.len() + 1..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (reused, compiled) = (count("functions_reused"), count("functions_compiled"));
    // Measured: 21,030 reused, 1,324 compiled again (functions whose cache
    // key Cranelift does not reproduce).
    assert!(reused > 10_000 && compiled * 10 < reused, "{said}");
    assert!(
        out.contains("functions reused from its previous build"),
        "{out}"
    );
}
