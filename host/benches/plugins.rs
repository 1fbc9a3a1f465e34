//! Plugin runtime figures: cold start with and without the compile cache,
//! restart after a trap, call overhead for a 1,000-route spec, and memory.
//! Prints medians over repeated runs; compare figures within one run.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vpcrouter::plugin::{
    Bounds, CACHE_CAP, CompileCache, Compiler, HttpRequest, PluginEngine, PluginInstance,
    PluginRuntime,
};
use vpcrouter::spec::RouteSpec;
use vpcrouter::spec_store::SpecStore;

const RUNS: usize = 50;

fn plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run `make plugins`",
        path.display()
    );
    path
}

/// A runtime compiling in this process, with a compile cache in `cache`
/// (its key in the folder `state` beside it) when given.
fn runtime(cache: Option<&Path>) -> PluginRuntime {
    let engine = PluginEngine::new(Compiler::InProcess).unwrap();
    let engine = match cache {
        Some(dir) => {
            let state = dir.parent().unwrap().join("state");
            engine.with_cache(CompileCache::open(dir, &state, CACHE_CAP).unwrap())
        }
        None => engine,
    };
    PluginRuntime::new(engine, Bounds::default()).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn show(what: &str, d: Duration) {
    println!("{what:<58} {:>10.3} ms", d.as_secs_f64() * 1e3);
}

/// From a write of the spec file to the daemon's "accepted route spec" log
/// line, for `writes` different specs; sorted latencies.
fn configfile_latencies(dir: &Path, cache: &Path, writes: usize) -> Vec<Duration> {
    use std::io::BufRead;
    let file = dir.join("latency-spec.json");
    std::fs::write(&file, routes_json(1)).unwrap();
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args([
            "-H",
            "none",
            "-m",
            "configfile",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--plugin-dir",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
        .arg("-f")
        .arg(&file)
        .arg("--plugin-cache-dir")
        .arg(cache)
        .arg("--sim-vpc")
        .arg(common::sim_vpc())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, accepted) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("accepted route spec") {
                let _ = seen.send(Instant::now());
            }
        }
    });
    accepted
        .recv_timeout(Duration::from_secs(10))
        .expect("first spec");
    let mut latencies = Vec::new();
    for n in 2..writes + 2 {
        std::thread::sleep(Duration::from_millis(100));
        let written = Instant::now();
        std::fs::write(&file, routes_json(n)).unwrap();
        let applied = accepted
            .recv_timeout(Duration::from_secs(10))
            .expect("spec applied");
        latencies.push(applied - written);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    latencies.sort();
    latencies
}

fn rss_mib() -> f64 {
    common::rss_mib("/proc/self/status")
}

fn routes_json(n: usize) -> String {
    let spec: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            (
                format!("10.{}.{}.0/24", i / 256, i % 256),
                serde_json::json!(["10.200.0.5", "10.200.1.5"]),
            )
        })
        .collect();
    serde_json::Value::Object(spec).to_string()
}

fn post(body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/route_spec".into(),
        query: String::new(),
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

/// The median time of `RUNS` runs of `$body` (an expression, may `.await`).
macro_rules! timed {
    ($body:expr) => {{
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            $body;
            samples.push(start.elapsed());
        }
        median(samples)
    }};
}

/// Resident memory of the real daemon, idle after start-up, with `args`.
fn daemon_rss_mib(args: &[&str], cache: &Path) -> f64 {
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(args)
        // The specs name VPC addresses: never probe them from here.
        .args([
            "-H",
            "none",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--plugin-cache-dir",
        ])
        .arg(cache)
        .arg("--sim-vpc")
        .arg(common::sim_vpc())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let rss = common::rss_mib(&format!("/proc/{}/status", child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
    rss
}

#[tokio::main]
async fn main() {
    let specs = Arc::new(SpecStore::default());
    let configfile = plugin("configfile");
    println!("vpcrouter plugin runtime benchmark (median of {RUNS} runs)");
    let rss_start = rss_mib();

    // Cold start: file -> compiled -> instantiated -> describe answered.
    let uncached = runtime(None);
    let cold = timed!({
        uncached
            .load_config_source(&configfile, specs.subscribe())
            .await
            .unwrap();
    });
    show("cold start, no compile cache (configfile)", cold);
    let cache = tempfile::tempdir().unwrap();
    let cached = runtime(Some(&cache.path().join("cache")));
    cached
        .load_config_source(&configfile, specs.subscribe())
        .await
        .unwrap();
    let warm = timed!({
        cached
            .load_config_source(&configfile, specs.subscribe())
            .await
            .unwrap();
    });
    show("cold start, with compile cache (configfile)", warm);
    println!(
        "{:<58} {:>10.1} x",
        "  cache speed-up",
        cold.as_secs_f64() / warm.as_secs_f64()
    );

    // Restart: a fresh instance from the pre-instantiated component, ready
    // for calls (what the supervisor does after a trap).
    let http = cached
        .load_config_source(&plugin("http"), specs.subscribe())
        .await
        .unwrap();
    let factory = http.factory().clone();
    let restart = timed!({
        let mut instance = factory.instantiate().await.unwrap();
        instance.init(&[]).await.unwrap();
    });
    show("restart: new instance + init (http)", restart);

    // Calls: a trivial one, and a 1,000-route spec in each direction.
    let mut instance: PluginInstance = factory.instantiate().await.unwrap();
    instance.init(&[]).await.unwrap();
    let trivial = timed!({
        instance.describe().await.unwrap();
    });
    show("call: describe (trivial)", trivial);
    let body = routes_json(1000);
    let parse_in_guest = timed!({
        let (response, routes) = instance.handle_http(&post(&body)).await.unwrap();
        assert_eq!(
            (response.status, routes.map(|r| r.len())),
            (200, Some(1000))
        );
    });
    show(
        "call: POST 1,000 routes (guest parses JSON, returns spec)",
        parse_in_guest,
    );
    let validate = timed!({
        RouteSpec::from_json(body.as_bytes()).unwrap();
    });
    show("host: parse + validate 1,000 routes (no plugin)", validate);
    println!(
        "{:<58} {:>10.1} x",
        "  plugin round trip / host-only validation",
        parse_in_guest.as_secs_f64() / validate.as_secs_f64()
    );

    // Memory: the three config plugins loaded and initialised in one process.
    let spec_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spec_file.path(), &body).unwrap();
    let mut held = Vec::new();
    for (name, options) in [
        (
            "configfile",
            vec![("file".to_string(), spec_file.path().display().to_string())],
        ),
        ("http", vec![]),
        (
            "fixedconf",
            vec![
                ("fixed_cidr".into(), "10.0.0.0/16".into()),
                ("fixed_hosts".into(), "10.1.0.5".into()),
            ],
        ),
    ] {
        let loaded = cached
            .load_config_source(&plugin(name), specs.subscribe())
            .await
            .unwrap();
        held.push(loaded.configure(&options).await.unwrap());
    }
    println!(
        "{:<58} {:>10.1} MiB",
        "RSS at start of benchmark", rss_start
    );
    println!(
        "{:<58} {:>10.1} MiB",
        "RSS with the three config plugins configured",
        rss_mib()
    );
    drop(held);

    let latencies = configfile_latencies(cache.path(), cache.path(), 40);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    show(
        "configfile: file written -> spec accepted, median",
        pick(0.5),
    );
    show("configfile: file written -> spec accepted, p90", pick(0.9));
    show("configfile: file written -> spec accepted, max", pick(1.0));

    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let dir = plugins.to_str().unwrap();
    let file = spec_file.path().to_str().unwrap();
    for (name, args) in [
        (
            "configfile",
            vec!["-m", "configfile", "--plugin-dir", dir, "-f", file],
        ),
        ("http", vec!["-m", "http", "--plugin-dir", dir]),
        (
            "fixedconf",
            vec![
                "-m",
                "fixedconf",
                "--plugin-dir",
                dir,
                "--fixed_cidr",
                "10.0.0.0/16",
                "--fixed_hosts",
                "10.1.0.5",
            ],
        ),
    ] {
        let what = format!("RSS of the idle daemon process (-m {name})");
        println!(
            "{what:<58} {:>10.1} MiB",
            daemon_rss_mib(&args, cache.path())
        );
    }
}
