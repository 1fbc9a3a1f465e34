//! The plugin runtime against hostile and malformed plugins, in process:
//! each fault is caught, named, and followed by a restart (or a clear load
//! error), while the spec in force stays.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use vpcrouter::plugin::{
    self, Bounds, CACHE_CAP, CompileCache, Compiler, HttpCall, HttpRequest, LoadError,
    PluginEngine, PluginHandle, PluginKind, PluginRuntime, PluginState, Role,
};
use vpcrouter::spec::RouteSpec;
use vpcrouter::spec_store::SpecStore;

/// Short deadlines and backoff so faults and restarts take milliseconds.
fn bounds() -> Bounds {
    Bounds {
        call_timeout: Duration::from_millis(300),
        max_host_wait: Duration::from_secs(5),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        backoff_reset_after: Duration::from_secs(60),
        memory_cap: 16 << 20,
    }
}

/// A runtime compiling in this process; with a compile cache in `cache`
/// (its key in the folder `state` beside it) when given.
fn runtime(cache: Option<&Path>) -> PluginRuntime {
    let engine = PluginEngine::new(Compiler::InProcess).unwrap();
    let engine = match cache {
        Some(dir) => engine.with_cache(compile_cache(dir, CACHE_CAP)),
        None => engine,
    };
    PluginRuntime::new(engine, bounds()).unwrap()
}

fn compile_cache(dir: &Path, cap: u64) -> CompileCache {
    let state = dir.parent().unwrap().join("state");
    CompileCache::open(dir, &state, cap).unwrap()
}

struct Running {
    handle: PluginHandle,
    specs: Arc<SpecStore>,
    _stop: watch::Sender<bool>,
}

async fn start_hostile(behaviour: &str, at: &str) -> Running {
    start_hostile_with(behaviour, at, &[]).await
}

async fn start_hostile_with(behaviour: &str, at: &str, more: &[(&str, &str)]) -> Running {
    let specs = Arc::new(SpecStore::default());
    let loaded = runtime(None)
        .load_config_source(&common::guest("hostile"), specs.subscribe())
        .await
        .unwrap();
    let mut options = vec![
        ("behaviour".to_string(), behaviour.to_string()),
        ("at".to_string(), at.to_string()),
    ];
    options.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let configured = loaded.configure(&options).await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    let handle = plugin::spawn(configured, Role::Config(specs.clone()), shutdown);
    Running {
        handle,
        specs,
        _stop: stop,
    }
}

fn good_spec() -> RouteSpec {
    RouteSpec::from_json(br#"{"10.55.16.0/24": ["10.33.20.142"]}"#).unwrap()
}

impl Running {
    async fn poke(&self) -> (u16, String) {
        let (reply, answer) = oneshot::channel();
        let request = HttpRequest {
            method: "POST".into(),
            path: "/poke".into(),
            query: String::new(),
            headers: vec![],
            body: vec![],
        };
        self.handle
            .http()
            .send(HttpCall { request, reply })
            .await
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("poke answered")
            .unwrap();
        (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
    }

    async fn wait_for_spec(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.specs.current().is_none() {
            assert!(Instant::now() < deadline, "no spec within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_running_after(&self, restarts: u64) {
        let mut status = self.handle.status();
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.restarts >= restarts && s.state == PluginState::Running),
        )
        .await
        .expect("plugin running again")
        .unwrap();
    }

    fn last_error(&self) -> String {
        self.handle
            .status()
            .borrow()
            .last_error
            .clone()
            .unwrap_or_default()
    }

    fn restarts(&self) -> u64 {
        self.handle.status().borrow().restarts
    }
}

/// A fault on poke: the caller gets 503, the plugin is restarted (twice, to
/// show the new instance works and can fault again), the spec stays.
async fn fault_restarts_and_keeps_spec(behaviour: &str, cause: &str) {
    let plugin = start_hostile(behaviour, "poke").await;
    plugin.wait_for_spec().await;
    for round in 1..=2 {
        let (status, body) = plugin.poke().await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("being restarted"), "{body}");
        plugin.wait_running_after(round).await;
        assert!(
            plugin.last_error().contains(cause),
            "{:?} lacks {cause:?}",
            plugin.last_error()
        );
        assert_eq!(plugin.specs.current().as_deref(), Some(&good_spec()));
    }
    assert_eq!(plugin.restarts(), 2);
}

#[tokio::test]
async fn an_infinite_loop_hits_the_deadline_and_is_restarted() {
    fault_restarts_and_keeps_spec("loop", "did not finish within 300ms").await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap_and_is_restarted() {
    fault_restarts_and_keeps_spec("membomb", "exceeded the memory cap of 16 MiB").await;
}

#[tokio::test]
async fn a_panic_traps_and_is_restarted() {
    fault_restarts_and_keeps_spec("trap", "trapped").await;
}

/// A plugin flooding `daemon.set-route-tables` (15,000 scopes of 16
/// tables, for CIDRs its spec does not route) has its spec refused with
/// the reason; the spec in force stays, nothing restarts.
#[tokio::test]
async fn a_flood_of_route_tables_is_refused_with_the_spec() {
    let plugin = start_hostile("tables-flood", "poke").await;
    plugin.wait_for_spec().await;
    let (status, body) = plugin.poke().await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the spec does not route"), "{body}");
    assert_eq!(plugin.specs.current().as_deref(), Some(&good_spec()));
    assert_eq!(plugin.restarts(), 0);
}

#[tokio::test]
async fn an_invalid_spec_is_refused_with_the_reason_and_no_restart() {
    let plugin = start_hostile("invalid", "poke").await;
    plugin.wait_for_spec().await;
    let (status, body) = plugin.poke().await;
    assert_eq!(status, 400);
    assert!(body.contains("10.1.2.3/33"), "{body}");
    assert_eq!(plugin.specs.current().as_deref(), Some(&good_spec()));
    assert_eq!(plugin.specs.counts(), (1, 1));
    assert_eq!(plugin.restarts(), 0);
}

#[tokio::test]
async fn files_not_granted_are_denied_through_the_host_and_through_wasi() {
    let plugin = start_hostile("steal", "poke").await;
    plugin.wait_for_spec().await;
    let (status, body) = plugin.poke().await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("/etc/passwd: access denied"), "{body}");
    assert!(!body.contains("root:"), "{body}");
    assert!(
        body.contains("wasi said:") && !body.ends_with("wasi said: "),
        "{body}"
    );
    assert_eq!(plugin.restarts(), 0);
}

#[tokio::test]
async fn no_address_is_reachable_without_a_granted_endpoint() {
    // A listener the plugin knows about; it must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let plugin = start_hostile_with("connect", "poke", &[("target", &target)]).await;
    plugin.wait_for_spec().await;
    let (status, body) = plugin.poke().await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("host said: no endpoint granted"), "{body}");
    assert!(
        body.contains("wasi said:") && !body.ends_with("wasi said: "),
        "{body}"
    );
    assert!(listener.accept().is_err(), "the plugin reached {target}");
    assert_eq!(plugin.restarts(), 0);
}

#[tokio::test]
async fn a_plugin_failing_at_every_start_is_retried_with_growing_backoff() {
    let plugin = start_hostile("trap", "start").await;
    let mut status = plugin.handle.status();
    let mut seen = Vec::new();
    for restarts in 1..=4 {
        let now = status.wait_for(|s| s.restarts >= restarts).await.unwrap();
        if let PluginState::Restarting { retry_in } = now.state {
            seen.push(retry_in);
        }
    }
    assert_eq!(
        seen,
        [50, 100, 200, 400].map(Duration::from_millis),
        "backoff doubles from the base up to the cap"
    );
    assert!(plugin.specs.current().is_none());
}

#[tokio::test]
async fn options_are_checked_before_the_plugin_runs() {
    let specs = SpecStore::default();
    let rt = runtime(None);
    let hostile = common::guest("hostile");
    let load = || rt.load_config_source(&hostile, specs.subscribe());
    let err = load().await.unwrap().configure(&[]).await.err().unwrap();
    assert!(
        matches!(err, LoadError::BadOption { ref option, .. } if option == "behaviour"),
        "{err}"
    );
    let unknown = [
        ("behaviour".into(), "loop".into()),
        ("colour".into(), "red".into()),
    ];
    let err = load()
        .await
        .unwrap()
        .configure(&unknown)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("--colour: not an option of plugin hostile"),
        "{err}"
    );
    let refused = [
        ("behaviour".into(), "loop".into()),
        ("at".into(), "init".into()),
    ];
    let err = load()
        .await
        .unwrap()
        .configure(&refused)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::InitRefused(_)), "{err}");
}

#[tokio::test]
async fn malformed_and_foreign_files_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let specs = SpecStore::default();
    let rt = runtime(None);
    let load = |path: std::path::PathBuf| {
        let rt = &rt;
        let accepted = specs.subscribe();
        async move {
            rt.load_config_source(&path, accepted)
                .await
                .err()
                .expect("refused")
        }
    };
    assert!(matches!(
        load(dir.path().join("missing.wasm")).await,
        LoadError::Unreadable(_)
    ));
    assert!(matches!(
        load(write("text.wasm", b"hello")).await,
        LoadError::NotWasm
    ));
    assert!(matches!(
        load(write("core.wasm", b"\0asm\x01\0\0\0")).await,
        LoadError::CoreModule
    ));
    let truncated = std::fs::read(common::plugin("fixedconf")).unwrap();
    assert!(matches!(
        load(write("cut.wasm", &truncated[..truncated.len() / 2])).await,
        LoadError::Invalid(_)
    ));
    let err = load(common::guest("wrong-world")).await;
    assert!(
        matches!(
            err,
            LoadError::WrongKind {
                found: PluginKind::HealthCheck,
                expected: PluginKind::ConfigSource
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("is a health-check plugin"),
        "{err}"
    );
    let err = load(common::guest("future-version")).await;
    assert!(
        matches!(err, LoadError::IncompatibleVersion { ref found } if found == "0.2.0"),
        "{err}"
    );
    assert!(
        err.to_string().contains("vpcrouter:plugin@0.2.0")
            && err
                .to_string()
                .contains("loads plugins built against 0.1.x"),
        "{err}"
    );
    let err = load(common::guest("mismatched")).await;
    assert!(matches!(err, LoadError::Link(_)), "{err}");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

/// Released contracts are frozen: a change to `wit/v0.1.0` (or any
/// released version) breaks every plugin built against it. A new version
/// goes beside them.
#[test]
fn the_released_wit_is_frozen() {
    use sha2::{Digest, Sha256};
    for (version, frozen) in [
        ("v0.1.0", FROZEN_V0_1_0),
        ("v0.1.1", FROZEN_V0_1_1),
        ("v0.1.2", FROZEN_V0_1_2),
        ("v0.1.3", FROZEN_V0_1_3),
        ("v0.1.4", FROZEN_V0_1_4),
        ("v0.1.5", FROZEN_V0_1_5),
    ] {
        let dir = common::repo().join("wit").join(version);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut digest = Sha256::new();
        for file in &files {
            digest.update(file.file_name().unwrap().as_encoded_bytes());
            digest.update(std::fs::read(file).unwrap());
        }
        let hex: String = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex, frozen,
            "wit/{version} changed; released WIT is frozen: add a new version beside it"
        );
    }
}

/// A plugin built against 0.1.1, using what it added, loads beside one of
/// the SDK's 0.1.5 (plugins of 0.1.0: tests/languages.rs).
#[test]
fn plugins_of_the_frozen_and_of_the_newer_contract_both_load() {
    let dir = tempfile::tempdir().unwrap();
    let newer = common::guest("newer");
    let daemon = common::Daemon::start(
        &[
            "--mode-plugin",
            newer.to_str().unwrap(),
            "--health-plugin",
            common::plugin("tcp").to_str().unwrap(),
            "--tcp_check_port",
            "9",
        ],
        dir.path(),
    );
    daemon.wait_for_line("debug logging enabled: true", Duration::from_secs(10));
    daemon.wait_for_line("accepted route spec", Duration::from_secs(10));
    let view = daemon.view("/plugins");
    assert_eq!(view["plugins"][0]["wit"], "vpcrouter:plugin@0.1.1");
    assert_eq!(view["plugins"][1]["wit"], "vpcrouter:plugin@0.1.5");
}

/// SHA-256 over the file names and contents of `wit/v0.1.0`, in name order.
const FROZEN_V0_1_0: &str = "a47fd25c5052ff21d7501e54f3773b15b8ef341f8a6be93dc6ed98ce97efd097";
const FROZEN_V0_1_1: &str = "b4d0727c8068874f98a82ce07ec20c1cd2c8a7d3e26058139872f0af163065e9";
const FROZEN_V0_1_2: &str = "fb333f97f6f4be2e5e693c8273aa9c08cf6c0e3502329f369928d08a4916eab6";
const FROZEN_V0_1_3: &str = "421dae144fd48a15bb7736e741a06f1e1509f0a541ae3d3bd4c85c8f29480370";
const FROZEN_V0_1_4: &str = "cabda1b5febe72a13c383d97d6bccfbee386eb35e34e0214aa0cd2bc6e56bfd3";
const FROZEN_V0_1_5: &str = "6e6a11bfe9a90c48722f4fc6e2e6bfda5f7e427d30f456bc3ef79c59b9d19a6c";

#[tokio::test]
async fn compiled_plugins_are_cached_and_a_damaged_entry_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let specs = SpecStore::default();
    let configfile = common::plugin("configfile");
    let entries = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    };

    runtime(Some(&cache))
        .load_config_source(&configfile, specs.subscribe())
        .await
        .unwrap();
    let cached = entries();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let artefact = std::fs::read(&cached[0]).unwrap();

    // Loaded from the cache: the file is not rewritten (a rewrite renames a
    // new file into place), only marked as used.
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&cached[0]).unwrap().ino();
    runtime(Some(&cache))
        .load_config_source(&configfile, specs.subscribe())
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&cached[0]).unwrap().ino(), inode);
    assert_eq!(std::fs::read(&cached[0]).unwrap(), artefact);

    // A damaged entry is ignored and replaced.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let loaded = runtime(Some(&cache))
        .load_config_source(&configfile, specs.subscribe())
        .await
        .unwrap();
    assert_eq!(loaded.info.name, "configfile");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), artefact);
}

/// `--plugin-call-timeout` sets the deadline; the first event gets five
/// times it (a plugin loading a big spec for the first time).
#[test]
fn the_call_timeout_is_the_operators_and_the_first_event_gets_more() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::guest("hostile");
    let args = [
        "--mode-plugin",
        hostile.to_str().unwrap(),
        "--behaviour",
        "busy",
        "--at",
        "start",
        "--plugin-call-timeout",
        "0.5",
    ];
    let daemon = common::Daemon::start(&args, dir.path());
    // A second of work on `started` fits the 2.5 s start allowance.
    daemon.wait_for_line("accepted route spec", Duration::from_secs(10));
    // The same second on a request does not fit 0.5 s.
    let (status, body) = daemon.http("POST", "/poke", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not finish within 500ms"), "{body}");
    let (code, stderr) = common::run_to_exit(&[
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "10.55.0.0/16",
        "--fixed_hosts",
        "127.0.0.1",
        "--plugin-call-timeout",
        "0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("between 0.1 and 60"), "{stderr}");
}

/// Imports are checked before anything is compiled: a plugin importing a
/// WASI package the daemon does not provide (wasi:http, the default of
/// componentize-js) is refused naming the import and the build flag.
#[tokio::test]
async fn unsupported_imports_are_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let component = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.3" (instance))
            (instance $nothing)
            (export "vpcrouter:plugin/config-source@0.1.0" (instance $nothing)))"#,
    )
    .unwrap();
    let path = dir.path().join("http.wasm");
    std::fs::write(&path, component).unwrap();
    let specs = SpecStore::default();
    let err = runtime(None)
        .load_config_source(&path, specs.subscribe())
        .await
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("imports wasi:http/outgoing-handler@0.2.3"),
        "{message}"
    );
    assert!(message.contains("-d http fetch-event"), "{message}");
}

/// A pinned plugin loads only with its digest; `/plugins` shows the digest,
/// the contract version and the toolchain.
#[test]
fn plugins_can_be_pinned_to_their_digest() {
    use sha2::{Digest, Sha256};
    let configfile = common::plugin("configfile");
    let digest: String = Sha256::digest(std::fs::read(&configfile).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let spec = common::repo().join("examples/spec.json");
    let spec = spec.to_str().unwrap();
    let wrong = "0".repeat(64);
    let (code, stderr) = common::run_to_exit(&[
        "-m",
        "configfile",
        "-f",
        spec,
        "--plugin-sha256",
        &format!("configfile={wrong}"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is pinned to sha256 {wrong}, but its sha256 is {digest}"
        )),
        "{stderr}"
    );
    let pinned = format!("{}#sha256={wrong}", configfile.display());
    let (code, stderr) = common::run_to_exit(&["--mode-plugin", &pinned, "-f", spec]);
    assert_eq!(code, 2, "{stderr}");
    let (code, stderr) =
        common::run_to_exit(&["-m", "configfile", "-f", spec, "--plugin-sha256", "tcp=abc"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no plugin file named tcp.wasm"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let pinned = format!("{}#sha256={digest}", configfile.display());
    let daemon = common::Daemon::start(&["--mode-plugin", &pinned, "-f", spec], dir.path());
    let view = daemon.view("/plugins");
    let plugin = &view["plugins"][0];
    assert_eq!(plugin["sha256"], digest.as_str());
    assert_eq!(plugin["wit"], "vpcrouter:plugin@0.1.5");
    assert!(
        plugin["producer"]
            .as_str()
            .is_some_and(|p| p.contains("wit-bindgen-rust")),
        "{plugin}"
    );
}

/// The compile cache is bounded: past its cap the entries used longest ago
/// are evicted; the entry just written stays.
#[tokio::test]
async fn the_compile_cache_evicts_the_entries_used_longest_ago() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for (name, age) in [("a", 3), ("b", 2), ("c", 1)] {
        let path = cache.join(format!("{name}.cwasm"));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_modified(old - Duration::from_secs(age)).unwrap();
    }
    let engine = PluginEngine::new(Compiler::InProcess)
        .unwrap()
        .with_cache(compile_cache(&cache, 3 << 20));
    let specs = SpecStore::default();
    PluginRuntime::new(engine, bounds())
        .unwrap()
        .load_config_source(&common::plugin("configfile"), specs.subscribe())
        .await
        .unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // The new entry (~1 MB) and the newest old ones that fit 3 MiB with it.
    assert!(!left.contains(&"a.cwasm".to_string()), "{left:?}");
    assert!(left.contains(&"c.cwasm".to_string()), "{left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
}
