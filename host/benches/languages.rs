//! `cargo bench --bench languages`: a plugin per language, as the daemon
//! sees it: file size; compiling it (`vpcrouter plugin compile`, time and
//! peak RSS); loading it from the compile cache (time, peak RSS); the
//! daemon's RSS running it; and a call over 1,000 routes (config sources:
//! the file written -> the spec accepted) or 1,000 hosts (the health
//! check: one round). Needs `make plugins lang-examples`.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::Daemon;

/// Run the daemon binary with `args` to its end: (wall time, peak RSS MiB).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its peak RSS"
)]
fn measured(args: &[&str]) -> (Duration, f64) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    // SAFETY: waiting for a child this process spawned.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    (started.elapsed(), usage.ru_maxrss as f64 / 1024.0)
}

fn file(path: &str) -> PathBuf {
    let file = testkit::repo().join(path);
    assert!(
        file.is_file(),
        "{}: run `make plugins lang-examples`",
        file.display()
    );
    file
}

fn main() {
    let rust_config = file("target/wasm32-wasip2/release/routes_txt.wasm");
    let python_config = file("examples/csv-routes/csv_routes.wasm");
    let js_health = file("examples/tcp-latency/tcp_latency.wasm");
    let dir = tempfile::tempdir().unwrap();
    for (language, plugin, option, line) in [
        ("Rust (routes-txt)", &rust_config, "--routes", " "),
        ("Python (csv-routes)", &python_config, "--csv", ","),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let (cache_dir, path) = (cache.path().to_str().unwrap(), plugin.to_str().unwrap());
        let size = std::fs::metadata(plugin).unwrap().len() as f64 / 1e6;
        let (compile, compile_rss) =
            measured(&["plugin", "compile", path, "--plugin-cache-dir", cache_dir]);
        let (load, load_rss) = measured(&[
            "--mode-plugin",
            path,
            "--help",
            "--plugin-cache-dir",
            cache_dir,
        ]);
        let routes = dir.path().join("routes");
        std::fs::write(&routes, format!("10.0.0.0/16{line}10.33.20.142\n")).unwrap();
        let daemon = Daemon::start(
            &["--mode-plugin", path, option, routes.to_str().unwrap()],
            cache.path(),
        );
        daemon.wait_for_line("accepted route spec", Duration::from_secs(20));
        let text: String = (0..1000)
            .map(|i| {
                format!(
                    "10.{}.{}.0/24{line}10.33.20.142{line}10.33.20.143\n",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let written = Instant::now();
        std::fs::write(&routes, text).unwrap();
        daemon.wait_for_line("routes=1000", Duration::from_secs(20));
        let call = written.elapsed();
        let (_, rss) = daemon.memory_mib();
        println!(
            "{language}: {size:.1} MB; compile {:.2} s, peak {compile_rss:.0} MiB; cached load {:.2} s, peak {load_rss:.0} MiB; daemon RSS {rss} MiB; 1,000-route file written -> spec accepted {:.0} ms",
            compile.as_secs_f64(),
            load.as_secs_f64(),
            call.as_secs_f64() * 1e3
        );
    }
    health(&js_health, dir.path());
}

/// The JavaScript health check: the same figures, the call being a round
/// over 1,000 hosts (127.1.x.y, every one refusing at once).
fn health(plugin: &Path, dir: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let (cache_dir, path) = (cache.path().to_str().unwrap(), plugin.to_str().unwrap());
    let size = std::fs::metadata(plugin).unwrap().len() as f64 / 1e6;
    let (compile, compile_rss) =
        measured(&["plugin", "compile", path, "--plugin-cache-dir", cache_dir]);
    let fixed = [
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "10.55.0.0/16",
        "--fixed_hosts",
        "127.0.0.1",
    ];
    let plugins = testkit::repo().join("plugins");
    let mut args = vec!["--plugin-dir", plugins.to_str().unwrap()];
    args.extend(fixed);
    args.extend(["--health-plugin", path, "--latency_port", "9", "--help"]);
    args.extend(["--plugin-cache-dir", cache_dir]);
    let (load, load_rss) = measured(&args);
    let hosts: Vec<String> = (0..1000)
        .map(|i| format!("127.1.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let spec = testkit::spec_file(
        dir,
        ["10.55.0.0/16".to_string()],
        &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "--health-plugin",
            path,
            "--latency_port",
            "9",
            "--latency_interval",
            "0.5",
        ],
        cache.path(),
    );
    let round = || {
        let view = daemon.view("/plugins");
        view["plugins"][1]["stats"]["last_round_ms"].as_f64()
    };
    let start = Instant::now();
    let mut took = None;
    while took.is_none() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(600));
        took = round();
    }
    let (_, rss) = daemon.memory_mib();
    println!(
        "JavaScript (tcp-latency): {size:.1} MB; compile {:.2} s, peak {compile_rss:.0} MiB; cached load {:.2} s, peak {load_rss:.0} MiB; daemon RSS {rss} MiB; a round over 1,000 hosts {:.1} ms",
        compile.as_secs_f64(),
        load.as_secs_f64(),
        took.unwrap_or(f64::NAN)
    );
}
