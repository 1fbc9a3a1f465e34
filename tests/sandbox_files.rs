//! The sandbox, second pass: what runs is what was pinned, and no file an
//! operator's paths lead to (a cached artefact, a plugin file that blocks,
//! is huge or a device, a component that is cheap to write and dear to
//! compile) can change what runs, freeze the daemon or bloat it. The real
//! daemon binary on the embedded VPC, everything on loopback.

mod common;

use common::Daemon;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(20);

/// The one compile-cache entry in `cache`.
fn only_entry(cache: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// A daemon with the bundled configfile on `spec`, compile cache `cache`,
/// once it has accepted the spec.
fn configfile_daemon(dir: &Path, cache: &Path) -> Daemon {
    let spec = common::spec_file(dir, ["10.55.0.0/16".into()], &["10.33.20.142"]);
    let daemon = Daemon::start(&["-m", "configfile", "-f", spec.to_str().unwrap()], cache);
    daemon.wait_for_line("accepted route spec", WITHIN);
    daemon
}

/// High: an artefact in the compile cache runs only if this daemon wrote
/// it for these bytes. One compiled from another plugin and put under the
/// bundled configfile's name, one corrupted in place and one cut short are
/// each refused, reported, and compiled again from the pinned file.
#[test]
fn only_artefacts_the_daemon_wrote_for_these_bytes_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let configfile = common::plugin("configfile");
    let digest = common::sha256_hex(&std::fs::read(&configfile).unwrap());
    let pinned = format!("{}#sha256={digest}", configfile.display());
    let pinned_args = |spec: &Path| -> Vec<String> {
        let args = ["--mode-plugin", &pinned, "-f", spec.to_str().unwrap()];
        args.map(String::from).to_vec()
    };
    let spec = common::spec_file(dir.path(), ["10.55.0.0/16".into()], &["10.33.20.142"]);
    let args = pinned_args(&spec);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    drop(Daemon::start(&args, &cache));
    let entry = only_entry(&cache);
    let genuine = std::fs::read(&entry).unwrap();

    // The hostile guest's artefact (valid, the daemon's own, for other
    // bytes) under configfile's name.
    let other_cache = dir.path().join("other");
    let hostile = common::guest("hostile");
    drop(Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "trap",
        ],
        &other_cache,
    ));
    std::fs::copy(only_entry(&other_cache), &entry).unwrap();
    let mut corrupted = genuine.clone();
    let middle = corrupted.len() / 2;
    for byte in &mut corrupted[middle..middle + 4096] {
        *byte ^= 0x5a;
    }
    let truncated = genuine[..genuine.len() / 3].to_vec();
    for (what, bytes) in [
        ("another plugin's artefact", None),
        ("a corrupted artefact", Some(corrupted)),
        ("a truncated artefact", Some(truncated)),
    ] {
        if let Some(bytes) = bytes {
            std::fs::write(&entry, bytes).unwrap();
        }
        let daemon = Daemon::start(&args, &cache);
        daemon.wait_for_line("accepted route spec", WITHIN);
        let refused = daemon.wait_for_line("compile cache entry refused, compiled again", WITHIN);
        assert!(refused.contains("configfile"), "{what}: {refused}");
        let plugin = &daemon.view("/plugins")["plugins"][0];
        assert_eq!(plugin["name"], "configfile", "{what}");
        assert_eq!(plugin["sha256"], digest.as_str(), "{what}");
        assert_eq!(plugin["code"]["from_compile_cache"], false, "{what}");
        let problem = plugin["code"]["problems"][0].as_str().unwrap_or_default();
        assert!(problem.contains("refused"), "{what}: {plugin}");
        assert!(
            daemon.lines_with("hostile").is_empty(),
            "{what}: the other plugin's code ran"
        );
        // Replaced by the daemon's own again.
        assert_eq!(std::fs::read(&entry).unwrap(), genuine, "{what}");
    }
}

/// High: the function pack a new build reuses machine code from is held to
/// the same keyed digest: a planted or corrupted pack is refused (every
/// function compiled again, said) and replaced by the daemon's own.
#[test]
fn a_function_pack_the_daemon_did_not_write_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, state) = (dir.path().join("cache"), dir.path().join("state"));
    let plugin = dir.path().join("configfile.wasm");
    std::fs::copy(common::plugin("configfile"), &plugin).unwrap();
    let compile = || common::plugin_compile(&plugin, &cache, &state);
    compile();
    let pack = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "functions"))
        .expect("a function pack");
    let genuine = std::fs::read(&pack).unwrap();
    // A rebuild with the genuine pack reuses.
    common::new_version(&plugin, "v2");
    let (stdout, _) = compile();
    assert!(
        stdout.contains("functions reused from its previous build"),
        "{stdout}"
    );
    let mut corrupted = std::fs::read(&pack).unwrap();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x5a;
    std::fs::write(&pack, &corrupted).unwrap();
    common::new_version(&plugin, "v3");
    let (stdout, stderr) = compile();
    assert!(
        stderr.contains("function cache refused, compiling every function")
            && stderr.contains("its digest does not match"),
        "{stderr}"
    );
    assert!(stdout.contains("(compiled)"), "{stdout}");
    let replaced = std::fs::read(&pack).unwrap();
    assert_ne!(replaced, corrupted);
    assert_eq!(replaced.len(), genuine.len());
}

/// High, and low: a cache folder another user could write is not used at
/// all (an artefact planted there would be native code), and its mode is
/// left as the operator set it; the daemon says why and runs uncached.
#[test]
fn a_cache_folder_others_can_write_is_not_used_nor_changed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let daemon = configfile_daemon(dir.path(), &cache);
    let said = daemon.wait_for_line("not using the compile cache", WITHIN);
    assert!(said.contains("writable by others"), "{said}");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "the operator's folder was changed");
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 0, "something was written to an untrusted cache");
    // `plugin compile` refuses it outright.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(["plugin", "compile"])
        .arg(common::plugin("tcp"))
        .arg("--plugin-cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writable by others"), "{stderr}");
}

/// A daemon running a copy of the bundled configfile at `dir/mode.wasm`.
fn reloadable_daemon(dir: &Path) -> (Daemon, PathBuf) {
    let plugin = dir.join("mode.wasm");
    std::fs::copy(common::plugin("configfile"), &plugin).unwrap();
    let spec = common::spec_file(dir, ["10.55.0.0/16".into()], &["10.33.20.142"]);
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "-f",
            spec.to_str().unwrap(),
        ],
        dir,
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    (daemon, plugin)
}

/// POST /plugins/reload; the answer, and how long it took.
fn reload(daemon: &Daemon) -> (u16, String, Duration) {
    let asked = Instant::now();
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    (status, body, asked.elapsed())
}

/// High: a FIFO with no writer at the plugin's path (a read would block
/// forever) is refused at once; HTTP and SIGTERM keep working.
#[test]
fn a_plugin_file_that_blocks_cannot_freeze_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, plugin) = reloadable_daemon(dir.path());
    std::fs::remove_file(&plugin).unwrap();
    let c_path = std::ffi::CString::new(plugin.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let (status, body, _) = reload(&daemon);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    assert_eq!(daemon.http("GET", "/healthz", b"").0, 200);
    // SIGHUP goes the same way, and the daemon still stops on SIGTERM.
    // SAFETY: signalling the child process this test started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    daemon.wait_for_nth_line("not a regular file", 2, WITHIN);
    daemon.sigterm();
}

/// Medium: a huge file or a device at the plugin's path is refused without
/// being read (the daemon's memory stays where it was), by reload and by
/// the plugin tools alike.
#[test]
fn huge_or_special_plugin_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, plugin) = reloadable_daemon(dir.path());
    // 4 GiB, sparse: nothing is written, a read would fill memory.
    let huge = std::fs::File::create(dir.path().join("huge.wasm")).unwrap();
    huge.set_len(4 << 30).unwrap();
    std::fs::rename(dir.path().join("huge.wasm"), &plugin).unwrap();
    let (status, body, _) = reload(&daemon);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("larger than the 67108864-byte limit"),
        "{body}"
    );
    std::fs::remove_file(&plugin).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &plugin).unwrap();
    let (status, body, _) = reload(&daemon);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    let (peak, _) = daemon.memory_mib();
    assert!(peak < 300, "peak RSS {peak} MiB");
    let tool_cache = dir.path().join("tool-cache");
    let tool_cache = tool_cache.to_str().unwrap();
    for tool in [
        &["inspect", "/dev/zero", "--plugin-cache-dir", tool_cache][..],
        &["compile", "/dev/zero", "--plugin-cache-dir", tool_cache],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
            .arg("plugin")
            .args(tool)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{tool:?}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{tool:?}: {stderr}");
    }
}

/// Medium: a component that is small and valid but dear to compile is
/// refused within the compile bounds (the compile runs in a child process
/// that ends with it), while the daemon keeps serving and its own memory
/// stays where it was.
#[test]
fn a_compile_bomb_is_refused_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    // A health checker to be replaced by the bomb (a health plugin).
    let plugin = dir.path().join("health.wasm");
    std::fs::copy(common::plugin("tcp"), &plugin).unwrap();
    let spec = common::spec_file(dir.path(), ["10.55.0.0/16".into()], &["127.0.0.1"]);
    let port = common::free_port().to_string();
    let daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "--health-plugin",
            plugin.to_str().unwrap(),
            "--tcp_check_port",
            &port,
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    let (peak_before, _) = daemon.memory_mib();
    let bomb = common::hostile::compile_bomb(dir.path());
    let size = std::fs::metadata(&bomb).unwrap().len();
    assert!(size < 512 << 10, "the bomb is {size} bytes");
    std::fs::rename(&bomb, &plugin).unwrap();
    let (status, body, _) = reload(&daemon);
    // Waited for, or still under way: the outcome says it either way.
    let outcome = match status {
        200 => body,
        202 => daemon.wait_for_line("reload failed", Duration::from_secs(120)),
        other => panic!("{other}: {body}"),
    };
    assert!(
        outcome.contains("out of all proportion to its size"),
        "{outcome}"
    );
    assert_eq!(daemon.http("GET", "/healthz", b"").0, 200);
    let (peak, _) = daemon.memory_mib();
    assert!(
        peak < peak_before + 100,
        "peak RSS {peak} MiB (was {peak_before} MiB)"
    );
}

/// Low: `--plugin-sha256 NAME=HEX` pins every loaded file of that name,
/// not the first found: a health checker named like the pinned config
/// source is refused too.
#[test]
fn every_file_of_a_pinned_name_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    for (folder, bundled) in [("a", "configfile"), ("b", "tcp")] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        std::fs::copy(
            common::plugin(bundled),
            dir.path().join(folder).join("x.wasm"),
        )
        .unwrap();
    }
    let digest = common::sha256_hex(&std::fs::read(common::plugin("configfile")).unwrap());
    let spec = common::spec_file(dir.path(), ["10.55.0.0/16".into()], &["127.0.0.1"]);
    let (a, b) = (dir.path().join("a/x.wasm"), dir.path().join("b/x.wasm"));
    let pin = format!("x={digest}");
    let (code, stderr) = common::run_to_exit(&[
        "--mode-plugin",
        a.to_str().unwrap(),
        "-f",
        spec.to_str().unwrap(),
        "--health-plugin",
        b.to_str().unwrap(),
        "--plugin-sha256",
        &pin,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{}: is pinned to sha256 {digest}", b.display())),
        "{stderr}"
    );
}

/// `plugin inspect` and `plugin compile` take a pinned file as the daemon
/// does (`PATH#sha256=HEX`): a match is said, another digest refused with
/// the digest to pin if that version is meant.
#[test]
fn the_plugin_tools_hold_a_file_to_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let configfile = common::plugin("configfile");
    let digest = common::sha256_hex(&std::fs::read(&configfile).unwrap());
    let cache = dir.path().join("cache");
    let tool = |args: &[&str]| {
        let (code, stdout, stderr) = common::plugin_tool(args);
        (code, stdout + &stderr)
    };
    let good = format!("{}#sha256={digest}", configfile.display());
    let (code, said) = tool(&["inspect", "--no-describe", &good]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("sha256: {digest} (matches its pin)")),
        "{said}"
    );
    let other = "0".repeat(64);
    let wrong = format!("{}#sha256={other}", configfile.display());
    for args in [
        vec![
            "inspect",
            wrong.as_str(),
            "--plugin-cache-dir",
            cache.to_str().unwrap(),
        ],
        vec!["inspect", "--no-describe", wrong.as_str()],
        vec![
            "compile",
            wrong.as_str(),
            "--plugin-cache-dir",
            cache.to_str().unwrap(),
        ],
    ] {
        let (code, said) = tool(&args);
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&format!(
                "is pinned to sha256 {other}, but its sha256 is {digest}"
            )) && said.contains(&format!("PATH#sha256={digest}")),
            "{args:?}: {said}"
        );
    }
}
