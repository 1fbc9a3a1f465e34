//! `cargo bench --bench install` (after `make deb`; `make bench` does both):
//! the daemon as installed. The package is unpacked and its daemon (the
//! dist profile) measured beside the debug build (`target/debug/vpcrouter`)
//! in one run:
//! - start-up to the first plan: `--dry-run` on the embedded VPC (spec from
//!   configfile, one round of tcp health over four loopback routers, the
//!   VPC observed, the plan printed), with a cold compile cache (plugins
//!   compiled) and a warm one;
//! - RSS of a running daemon with the bundled plugins (configfile, tcp and
//!   icmpecho every 0.2 s over the same routers), after 10 s;
//! - sizes: daemon binary, bundled plugins, package.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIALS: usize = 5;
const ROUTERS: [&str; 4] = ["127.0.3.10", "127.0.3.11", "127.0.3.12", "127.0.3.13"];

fn main() {
    let repo = testkit::repo();
    let arch = output(Command::new("dpkg").arg("--print-architecture"));
    let deb = repo.join(format!(
        "target/debian/vpcrouter_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(deb.is_file(), "{} is missing: make deb", deb.display());
    let tree = tempfile::tempdir().unwrap();
    output(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(tree.path()),
    );
    let packaged = tree.path().join("usr/bin/vpcrouter");
    let debug = repo.join("target/debug/vpcrouter");
    assert!(debug.is_file(), "build first: make");
    let builds = [
        Build {
            name: "packaged (dist)",
            daemon: packaged.clone(),
            plugin_dir: None,
        },
        Build {
            name: "debug",
            daemon: debug.clone(),
            plugin_dir: Some(repo.join("plugins")),
        },
    ];

    let first = TcpListener::bind((ROUTERS[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let _routers: Vec<TcpListener> = std::iter::once(first)
        .chain(
            ROUTERS[1..]
                .iter()
                .map(|r| TcpListener::bind((*r, port)).unwrap()),
        )
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let files = testkit::loopback_args(dir.path(), &ROUTERS, &["-a", "127.0.0.1"]);
    let common_args = |build: &Build| {
        let mut args = files.clone();
        if let Some(plugins) = &build.plugin_dir {
            args.extend(["--plugin-dir".into(), plugins.display().to_string()]);
        }
        args
    };

    // The first health round comes one interval after start: at the default
    // (2 s) that wait is most of the start-up; at 0.1 s the daemon's own
    // cost shows.
    println!("== start-up to the first plan (--dry-run), median of {TRIALS}");
    for interval in ["2", "0.1"] {
        for build in &builds {
            for cache in [Cache::Cold, Cache::Warm] {
                let warm = tempfile::tempdir().unwrap();
                let mut took = Vec::new();
                for _ in 0..TRIALS + 1 {
                    let cold = tempfile::tempdir().unwrap();
                    let cache_dir = match cache {
                        Cache::Cold => cold.path(),
                        Cache::Warm => warm.path(),
                    };
                    let started = Instant::now();
                    let run = Command::new(&build.daemon)
                        .args(common_args(build))
                        .args(["-H", "tcp", "--tcp_check_port", &port.to_string()])
                        .args(["--tcp_check_interval", interval])
                        .args(["-p", &testkit::free_port().to_string(), "--dry-run"])
                        .arg("--plugin-cache-dir")
                        .arg(cache_dir)
                        .envs(testkit::NO_METADATA)
                        .output()
                        .unwrap();
                    took.push(started.elapsed());
                    let plan = String::from_utf8_lossy(&run.stdout);
                    assert!(run.status.success() && plan.contains("create"), "{plan}");
                }
                // The first warm run fills the cache.
                took.remove(0);
                took.sort();
                println!(
                    "health every {interval:>3} s, {:<16} {:<5} cache: {:>6.0} ms (min {:.0}, max {:.0})",
                    build.name,
                    cache.name(),
                    ms(took[TRIALS / 2]),
                    ms(took[0]),
                    ms(took[TRIALS - 1])
                );
            }
        }
    }

    println!("== daemon RSS with configfile, tcp and icmpecho every 0.2 s, 4 routers, after 10 s");
    let mut rss = Vec::new();
    for build in &builds {
        let cache = tempfile::tempdir().unwrap();
        let mut child = Command::new(&build.daemon)
            .args(common_args(build))
            .args(["-H", "multi", "--multi_plugins", "tcp:icmpecho"])
            .args(["--tcp_check_port", &port.to_string()])
            .args([
                "--tcp_check_interval",
                "0.2",
                "--icmp_check_interval",
                "0.2",
            ])
            .args(["-p", &testkit::free_port().to_string()])
            .arg("--plugin-cache-dir")
            .arg(cache.path())
            .envs(testkit::NO_METADATA)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(10));
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .expect("a /proc status field")
                / 1024.0
        };
        let (now, peak) = (field("VmRSS:"), field("VmHWM:"));
        println!("{:<16} RSS {now:.1} MiB, peak {peak:.1} MiB", build.name);
        rss.push(now);
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("RSS packaged / debug: {:.2}", rss[0] / rss[1]);

    println!("== sizes");
    let size = |path: &Path| std::fs::metadata(path).unwrap().len() as f64 / (1 << 20) as f64;
    let plugins: f64 = std::fs::read_dir(tree.path().join("usr/lib/vpcrouter/plugins"))
        .unwrap()
        .map(|e| size(&e.unwrap().path()))
        .sum();
    println!("daemon binary, packaged (dist): {:.1} MiB", size(&packaged));
    println!("daemon binary, debug:           {:.1} MiB", size(&debug));
    println!("bundled plugins (6):            {plugins:.2} MiB");
    println!(
        "package {}: {:.1} MiB",
        deb.file_name().unwrap().to_string_lossy(),
        size(&deb)
    );
}

struct Build {
    name: &'static str,
    daemon: PathBuf,
    /// The checkout's plugins for the checkout's daemon; an installed one
    /// finds its own.
    plugin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum Cache {
    Cold,
    Warm,
}

impl Cache {
    fn name(self) -> &'static str {
        match self {
            Cache::Cold => "cold",
            Cache::Warm => "warm",
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}");
    String::from_utf8(out.stdout).unwrap()
}
