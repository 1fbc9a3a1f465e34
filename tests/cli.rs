//! The command line: old and new forms mean the same, and every bad flag,
//! plugin or option is one clear line and exit code 2.

mod common;

use std::ffi::OsString;
use std::process::Command;
use vpcrouter::config::Config;
use vpcrouter::logging::LogTarget;
use vpcrouter::plugin::{Bounds, Compiler, PluginEngine, PluginRuntime};
use vpcrouter::spec_store::SpecStore;

fn args(words: &[&str]) -> Vec<OsString> {
    std::iter::once("vpcrouter")
        .chain(words.iter().copied())
        .map(OsString::from)
        .collect()
}

/// Parse as the daemon does, stopping before it runs anything.
async fn parse(words: &[&str]) -> Config {
    let args = args(words);
    let peek = vpcrouter::cli::peek(&args);
    let path = vpcrouter::config::mode_plugin_path(&peek).unwrap();
    let runtime = PluginRuntime::new(
        PluginEngine::new(Compiler::InProcess).unwrap(),
        Bounds::default(),
    )
    .unwrap();
    let specs = SpecStore::default();
    let mut loaded = vec![
        runtime
            .load_config_source(&path, specs.subscribe())
            .await
            .unwrap(),
    ];
    for path in vpcrouter::config::health_plugin_paths(&peek).unwrap() {
        loaded.push(
            runtime
                .load_health_check(&path, specs.subscribe())
                .await
                .unwrap(),
        );
    }
    let plugins: Vec<_> = loaded.iter().map(|l| (l.path.clone(), &l.info)).collect();
    Config::parse(&args, &plugins, 0).unwrap()
}

#[tokio::test]
async fn old_and_new_command_lines_give_the_same_configuration() {
    let dir = common::repo().join("plugins");
    let dir = dir.to_str().unwrap();
    let configfile = common::plugin("configfile");
    let fixedconf = common::plugin("fixedconf");
    let common_flags = [
        "-r",
        "eu-west-1",
        "-v",
        "vpc-0123",
        "-l",
        "-",
        "--verbose",
        "-a",
        "127.0.0.1",
        "-p",
        "33290",
        "--ignore_routes",
        "10.9.0.0/16,10.8.0.5",
        "--route_recheck_interval",
        "10",
    ];
    let http = common::plugin("http");
    let (tcp, icmpecho) = (common::plugin("tcp"), common::plugin("icmpecho"));
    let (tcp, icmpecho) = (tcp.to_str().unwrap(), icmpecho.to_str().unwrap());
    let pairs: [(Vec<&str>, Vec<&str>); 4] = [
        (
            vec![
                "-m",
                "configfile",
                "--plugin-dir",
                dir,
                "-f",
                "examples/spec.json",
                "-H",
                "tcp",
                "--tcp_check_port",
                "2222",
            ],
            vec![
                "--mode-plugin",
                configfile.to_str().unwrap(),
                "--file",
                "examples/spec.json",
                "--health-plugin",
                tcp,
                "--tcp_check_port=2222",
            ],
        ),
        (
            // No -H: the old default, icmpecho.
            vec![
                "--mode=configfile",
                "--plugin-dir",
                dir,
                "--file=examples/spec.json",
            ],
            vec![
                "--mode-plugin",
                configfile.to_str().unwrap(),
                "-f",
                "examples/spec.json",
                "--health-plugin",
                icmpecho,
            ],
        ),
        (
            vec![
                "-m",
                "fixedconf",
                "--plugin-dir",
                dir,
                "--fixed_cidr",
                "10.0.0.0/16",
                "--fixed_hosts",
                "10.1.0.5:10.1.0.6",
                "-H",
                "multi",
                "--multi_plugins",
                "icmpecho:tcp",
                "--icmp_check_interval",
                "1",
            ],
            vec![
                "--mode-plugin",
                fixedconf.to_str().unwrap(),
                "--fixed_hosts=10.1.0.5:10.1.0.6",
                "--fixed_cidr=10.0.0.0/16",
                "--health-plugin",
                icmpecho,
                "--health-plugin",
                tcp,
                "--icmp_check_interval",
                "1",
            ],
        ),
        (
            vec!["-m", "http", "--plugin-dir", dir, "-H", "none"],
            vec![
                "--mode-plugin",
                http.to_str().unwrap(),
                "--plugin-dir",
                dir,
                "-H",
                "none",
            ],
        ),
    ];
    for (old, new) in pairs {
        let old: Vec<&str> = old.into_iter().chain(common_flags).collect();
        let new: Vec<&str> = common_flags.into_iter().chain(new).collect();
        let (mut old_config, mut new_config) = (parse(&old).await, parse(&new).await);
        for config in [&mut new_config, &mut old_config] {
            for plugin in std::iter::once(&mut config.mode).chain(&mut config.health) {
                plugin.options.sort();
            }
        }
        assert_eq!(old_config, new_config, "{old:?} vs {new:?}");
        assert_eq!(old_config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(old_config.vpc.as_deref(), Some("vpc-0123"));
        assert_eq!(old_config.log.target, LogTarget::Stdout);
        assert_eq!(old_config.ignore_routes.len(), 2);
        assert_eq!(
            old_config.route_recheck_interval,
            Some(std::time::Duration::from_secs(10))
        );
    }
}

#[tokio::test]
async fn defaults_match_the_old_daemon() {
    let dir = common::repo().join("plugins");
    let config = parse(&["-m", "http", "--plugin-dir", dir.to_str().unwrap()]).await;
    assert_eq!(
        (config.listen.host.as_str(), config.listen.port),
        ("localhost", 33289)
    );
    assert_eq!(
        config.route_recheck_interval,
        Some(std::time::Duration::from_secs(30))
    );
    assert!(config.ignore_routes.is_empty());
    let off = parse(&[
        "-m",
        "http",
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--route_recheck_interval",
        "0",
    ])
    .await;
    assert_eq!(off.route_recheck_interval, None);
}

/// Run the binary; (exit code, stderr).
/// Network safety: `-H none` is added, so that a command line that were
/// accepted by mistake could not start pinging the example spec's hosts.
fn run(words: &[&str]) -> (i32, String) {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(words)
        .args(["-H", "none"])
        .envs(common::NO_METADATA)
        .arg("--plugin-cache-dir")
        .arg(cache.path())
        .current_dir(common::repo())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_bad_flag_is_exit_2_with_a_message_naming_it() {
    let spec = common::repo().join("examples/spec.json");
    let spec = spec.to_str().unwrap();
    let ok = ["-m", "configfile", "-f", spec];
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "0"], "'--port <PORT>'"),
        (&["-p", "65536"], "'--port <PORT>'"),
        (&["-p", "http"], "'--port <PORT>'"),
        (&["-a", "not-an-address"], "'--address <ADDRESS>'"),
        (&["--route_recheck_interval", "4"], "at least 5"),
        (
            &["--route_recheck_interval", "-1"],
            "--route_recheck_interval",
        ),
        (
            &["--ignore_routes", "10.0.0.0/8,10.1.2"],
            "\"10.1.2\" is not a CIDR or IP address",
        ),
        (&["--no-such-flag"], "unexpected argument '--no-such-flag'"),
        (&["--events-queue", "ftp://queue"], "a queue URL"),
        (
            &[
                "--events-queue",
                "https://sqs.example/1/q",
                "--sim-vpc",
                spec,
            ],
            "cannot be used with",
        ),
        (
            &["--events-endpoint", "http://127.0.0.1:1"],
            "--events-queue <URL>",
        ),
    ];
    for (extra, expected) in cases {
        let words: Vec<&str> = ok.iter().chain(extra.iter()).copied().collect();
        let (code, stderr) = run(&words);
        assert_eq!(code, 2, "{words:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{words:?}: {stderr:?} lacks {expected:?}"
        );
    }
}

/// The vpcrouter command in a folder with no `plugins/`, from a binary with
/// none beside it and `$VPCROUTER_PLUGIN_DIR` unset: the bundled plugins
/// are the copies built into the binary (written to the state folder).
fn run_without_plugin_folder(words: &[&str]) -> (Option<i32>, String, String) {
    let nowhere = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(words)
        .env_remove("VPCROUTER_PLUGIN_DIR")
        .env("XDG_STATE_HOME", nowhere.path().join("state"))
        .current_dir(nowhere.path())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The README's old-form command lines (`-m NAME`, `-H NAME`) work from a
/// binary with no plugin folder beside it: with `--help`, each lists its
/// plugins' options (the plugins were found and their options parsed; the
/// lines need a VPC to run further).
#[test]
fn the_readmes_bundled_plugin_lines_work_without_a_plugin_folder() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let lines: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("vpcrouter -m "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .trim_end()
                .trim_end_matches('\\')
        })
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines {
        let mut words: Vec<&str> = line.split_whitespace().skip(1).collect();
        words.push("--help");
        let (code, stdout, stderr) = run_without_plugin_folder(&words);
        assert_eq!(code, Some(0), "{line}: {stderr}");
        // Every line names a plugin with options (http has none of its own).
        assert!(stdout.contains("Options of plugin "), "{line}: {stdout}");
    }
}

/// A plugin name that is not bundled is named with every place looked,
/// the plugins the binary carries and what to do, before any of its
/// options is parsed (never `unexpected argument '-f'`).
#[test]
fn an_unknown_plugin_name_is_named_before_its_options_are_read() {
    let lines: &[(&[&str], &str)] = &[
        (
            &["-m", "confgfile", "-f", "spec.json", "-H", "tcp"],
            "-m confgfile",
        ),
        (
            &[
                "-m",
                "configfile",
                "-f",
                "spec.json",
                "-H",
                "tpc",
                "--tcp_check_port",
                "80",
            ],
            "-H tpc",
        ),
        (
            &[
                "--mode-plugin",
                "x.wasm",
                "-H",
                "multi",
                "--multi_plugins",
                "icmpecho:tcpp",
            ],
            "--multi_plugins tcpp",
        ),
    ];
    for (words, named) in lines {
        let (code, _, stderr) = run_without_plugin_folder(words);
        assert_eq!(code, Some(2), "{words:?}: {stderr}");
        assert!(
            !stderr.contains("unexpected argument"),
            "{words:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{named}: no bundled plugin of that name")),
            "{words:?}: {stderr}"
        );
        // Every place looked, what the binary carries, the ways out.
        assert!(stderr.contains("target/lib/vpcrouter/plugins/"), "{stderr}");
        assert!(stderr.contains("target/debug/plugins/"), "{stderr}");
        assert!(
            stderr.contains("built into this binary (configfile, "),
            "{stderr}"
        );
        assert!(stderr.contains("--plugin-dir DIR"), "{stderr}");
    }
}

#[test]
fn every_bad_plugin_choice_is_exit_2_with_one_line_naming_the_file() {
    let hostile = common::guest("hostile");
    let wrong = common::guest("wrong-world");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "a config-source plugin is required"),
        (
            vec!["-m", "nosuch"],
            "-m nosuch: no bundled plugin of that name",
        ),
        (
            vec!["--mode-plugin", "missing.wasm"],
            "missing.wasm: cannot read",
        ),
        (
            vec!["--mode-plugin", "Makefile"],
            "Makefile: not a WebAssembly file",
        ),
        (
            vec!["--mode-plugin", wrong.to_str().unwrap()],
            "guest_wrong_world.wasm: is a health-check plugin",
        ),
        (
            vec!["-m", "configfile"],
            "configfile.wasm: option --file: required",
        ),
        (
            vec!["-m", "configfile", "-f", "missing.json"],
            "option --file: missing.json: No such file",
        ),
        (
            vec![
                "-m",
                "fixedconf",
                "--fixed_cidr",
                "10.0.0.0/8",
                "--fixed_hosts",
                "10.1.0.5:ten",
            ],
            "--fixed_hosts: \"ten\" is not an IP address",
        ),
        (
            vec![
                "-m",
                "fixedconf",
                "--fixed_cidr",
                "10.0.0.0/33",
                "--fixed_hosts",
                "10.1.0.5",
            ],
            "\"33\" is not a prefix length (0-32)",
        ),
        (
            vec![
                "--mode-plugin",
                hostile.to_str().unwrap(),
                "--behaviour",
                "loop",
                "--at",
                "init",
            ],
            "refused its options: refusing to start",
        ),
        (
            vec!["-m", "http", "--file", "x"],
            "unexpected argument '--file'",
        ),
    ];
    for (words, expected) in cases {
        let (code, stderr) = run(&words);
        assert_eq!(code, 2, "{words:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{words:?}: {stderr:?} lacks {expected:?}"
        );
        if !expected.starts_with("unexpected") {
            assert_eq!(stderr.trim().lines().count(), 1, "{words:?}: {stderr:?}");
        }
    }
}

#[test]
fn help_lists_the_plugin_options_under_their_own_heading() {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args([
            "--mode-plugin",
            common::plugin("configfile").to_str().unwrap(),
            "--help",
            "--no-plugin-cache",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    let heading = help.find("Options of plugin configfile").expect(&help);
    assert!(help[heading..].contains("-f, --file <FILE>"), "{help}");
    assert!(
        help[..heading].contains("--route_recheck_interval"),
        "{help}"
    );
}

/// Started with systemd's soft limit of open files (1,024; here 64), the
/// daemon takes the hard limit: probes hold a descriptor each.
#[test]
fn the_daemon_raises_its_soft_limit_of_open_files() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let hard = {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct passed.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit.rlim_max
    };
    let spec = common::repo().join("examples/spec.json");
    let vpc = common::repo().join("examples/sim-vpc.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_vpcrouter"));
    command
        .args([
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "-H",
            "none",
        ])
        .args(["--sim-vpc", vpc.to_str().unwrap(), "-a", "127.0.0.1"])
        .args(["-p", &common::free_port().to_string()])
        .arg("--plugin-dir")
        .arg(common::repo().join("plugins"))
        .stdout(std::process::Stdio::piped());
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let low = libc::rlimit {
                rlim_cur: 64,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let log = BufReader::new(child.stdout.take().unwrap());
    let started = log
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("vpcrouter started"));
    assert!(started, "the daemon ended before it started");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: u64 = open_files
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(soft, hard, "{open_files}");
}

/// `--log-format json`: every line is one JSON object with the stable
/// names, from the plugins' first `init` on (the tcp plugin says there how
/// it will probe).
#[test]
fn json_logs_are_one_object_per_line_from_the_plugins_first_init() {
    let dir = tempfile::tempdir().unwrap();
    let router = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = router.local_addr().unwrap().port().to_string();
    let args = common::loopback_args(
        dir.path(),
        &["127.0.0.1"],
        &[
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--log-format",
            "json",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = common::Daemon::start(&args, dir.path());
    let route = daemon.wait_for_line("route created", std::time::Duration::from_secs(20));
    let route: serde_json::Value = serde_json::from_str(&route).unwrap();
    assert_eq!(route["message"], "route created");
    assert_eq!(route["level"], "info");
    assert_eq!(route["table"], "rtb-a");
    assert_eq!(route["cidr"], "10.55.0.0/16");
    assert_eq!(route["host"], "127.0.0.1");
    assert!(route["reason"].as_str().unwrap().contains("missing"));
    assert!(route["took_ms"].is_u64(), "{route}");
    let lines = daemon.lines_with("");
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for object in &objects {
        assert!(
            object["time"].is_string() && object["level"].is_string(),
            "{object}"
        );
        assert!(object["message"].is_string(), "{object}");
    }
    let said_at_init = objects.iter().position(|o| {
        o["plugin"] == "tcp" && o["message"].as_str().unwrap().starts_with("probing")
    });
    let started = objects
        .iter()
        .position(|o| o["message"] == "vpcrouter started");
    assert!(
        said_at_init.is_some() && said_at_init < started,
        "{lines:#?}"
    );
}

/// Manual pages and completions come from the command line itself: every
/// daemon flag and subcommand is in them.
#[test]
fn manual_pages_and_completions_cover_the_whole_command_line() {
    let run = |words: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
            .args(words)
            .output()
            .unwrap();
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        (
            output.status.code(),
            text(output.stdout),
            text(output.stderr),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["manpages", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let page = std::fs::read_to_string(dir.path().join("vpcrouter.1")).unwrap();
    for flag in [
        "--mode-plugin",
        "--dry-run",
        "--log-format",
        "--ha-etcd",
        "--rebalance",
    ] {
        assert!(
            page.contains(&flag.replace('-', "\\-")),
            "{flag} not in the page"
        );
    }
    for page in [
        "vpcrouter-plugin.1",
        "vpcrouter-plugin-compile.1",
        "vpcrouter-completions.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
    let (code, script, _) = run(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(script.contains("--log-format") && script.contains("compile"));
    let checked = Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(checked.success(), "bash cannot parse the completion script");
    let (code, _, stderr) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("tcsh"), "{stderr}");
}
