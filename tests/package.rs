//! The Debian package (`make deb`; `make test` makes it first) and the
//! deployment examples: what the package holds, its systemd unit, its
//! daemon run from an unpacked tree, and that the examples ask for exactly
//! what the daemon does.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `target/debian/vpcrouter_VERSION_ARCH.deb`, as `make deb` leaves it.
fn package() -> PathBuf {
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb = common::repo().join(format!(
        "target/debian/vpcrouter_{VERSION}_{}.deb",
        arch.trim()
    ));
    assert!(
        deb.is_file(),
        "{} is missing: run `make deb` first",
        deb.display()
    );
    deb
}

/// Standard output of a command that must succeed.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        describe(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The package unpacked into a fresh directory.
fn unpacked() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(package())
        .arg(dir.path()));
    dir
}

/// The bundled plugins, as the Makefile names them.
fn bundled() -> Vec<String> {
    let makefile = std::fs::read_to_string(common::repo().join("Makefile")).unwrap();
    let line = makefile
        .lines()
        .find_map(|l| l.strip_prefix("BUNDLED := "))
        .expect("BUNDLED in the Makefile");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_package_holds_the_daemon_its_plugins_manuals_completions_and_service() {
    let deb = package();
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut files = BTreeSet::new();
    for line in listing.lines() {
        // -rwxr-xr-x root/root 12345 2026-11-30 12:00 ./usr/bin/vpcrouter
        let words: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (words[0], words[1], words[5]);
        assert_eq!(owner, "root/root", "{line}");
        if mode.starts_with('-') {
            let executable = path.starts_with("./usr/bin/");
            let expected = if executable {
                "-rwxr-xr-x"
            } else {
                "-rw-r--r--"
            };
            assert_eq!(mode, expected, "{line}");
            files.insert(path.trim_start_matches('.').to_string());
        }
    }
    let mut expected: BTreeSet<String> = [
        "/usr/bin/vpcrouter",
        "/usr/lib/systemd/system/vpcrouter.service",
        "/etc/default/vpcrouter",
        "/usr/share/doc/vpcrouter/copyright",
        "/usr/share/doc/vpcrouter/PLUGINS.md",
        "/usr/share/bash-completion/completions/vpcrouter",
        "/usr/share/zsh/vendor-completions/_vpcrouter",
        "/usr/share/fish/vendor_completions.d/vpcrouter.fish",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for page in [
        "vpcrouter",
        "vpcrouter-plugin",
        "vpcrouter-plugin-compile",
        "vpcrouter-plugin-inspect",
        "vpcrouter-plugin-new",
        "vpcrouter-demo",
        "vpcrouter-drain",
        "vpcrouter-undrain",
        "vpcrouter-failover",
        "vpcrouter-completions",
        "vpcrouter-manpages",
    ] {
        expected.insert(format!("/usr/share/man/man1/{page}.1.gz"));
    }
    for plugin in bundled() {
        expected.insert(format!("/usr/lib/vpcrouter/plugins/{plugin}.wasm"));
    }
    assert_eq!(files, expected);

    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "vpcrouter");
    assert_eq!(field("Version").trim(), VERSION);
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= "), "{depends}");
    // The unit's ExecReload runs /bin/kill.
    assert!(depends.contains("procps"), "{depends}");
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/default/vpcrouter");
}

/// `systemd-analyze verify` of the packaged unit, with the packaged daemon
/// at /usr/bin/vpcrouter in a mount namespace of the test's own (an
/// overlay: the machine's /usr/bin is not changed). Any warning fails it.
#[test]
fn the_packaged_unit_passes_systemd_analyze_verify() {
    if !is_root() {
        return common::cannot_run("not root: no mount namespace for the unit check");
    }
    let tree = unpacked();
    let root = tree.path().display();
    let unit = tree.path().join("usr/lib/systemd/system/vpcrouter.service");
    let script = format!(
        "mount --make-rprivate / && \
         mount -t overlay overlay -o lowerdir={root}/usr/bin:/usr/bin /usr/bin && \
         systemd-analyze verify --man=no {}",
        unit.display()
    );
    let output = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stderr.is_empty(), "{}", describe(&output));

    // What the issue asks of the service, line by line.
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_RAW",
        "ProtectSystem=strict",
        "CacheDirectory=vpcrouter",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "EnvironmentFile=/etc/default/vpcrouter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in the unit");
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The packaged daemon runs from an unpacked tree: its version, and the
/// demo (embedded VPC, routes set and failed over), with the bundled
/// plugins found by name next to it (PREFIX/lib/vpcrouter/plugins).
#[test]
fn the_packaged_daemon_runs_the_demo_from_an_unpacked_tree() {
    let tree = unpacked();
    let daemon = tree.path().join("usr/bin/vpcrouter");
    let version = run(Command::new(&daemon).arg("--version"));
    assert_eq!(version.trim(), format!("vpcrouter {VERSION}"));

    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(&daemon)
        .arg("demo")
        .env("XDG_CACHE_HOME", cache.path())
        .env("XDG_STATE_HOME", cache.path())
        .env_remove("VPCROUTER_PLUGIN_DIR")
        .current_dir(cache.path())
        .output()
        .unwrap();
    let shown = describe(&output);
    assert!(output.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("route created"), "{shown}");
    assert!(stdout.contains("== failover done"), "{shown}");
    assert!(stdout.contains("other routes moved: 0"), "{shown}");
}

/// The plugin author's guide is installed, and what points authors at it
/// (the scaffold's README, `plugin --help`) names where it is.
#[test]
fn the_packaged_daemon_points_plugin_authors_at_the_installed_guide() {
    let tree = unpacked();
    let guide = tree.path().join("usr/share/doc/vpcrouter/PLUGINS.md");
    let ours = std::fs::read_to_string(common::repo().join("PLUGINS.md")).unwrap();
    assert_eq!(std::fs::read_to_string(&guide).unwrap(), ours);
    let daemon = tree.path().join("usr/bin/vpcrouter");
    let project = tempfile::tempdir().unwrap();
    let project = project.path().join("mine");
    run(Command::new(&daemon)
        .args(["plugin", "new", "mine", "--lang", "python", "--dir"])
        .arg(&project));
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("PLUGINS.md ({})", guide.display())),
        "{readme}"
    );
    let help = run(Command::new(&daemon).args(["plugin", "--help"]));
    assert!(help.contains("share/doc/vpcrouter/PLUGINS.md"), "{help}");
}

/// The command lines of the deployment examples are the daemon's: every
/// flag is known (parsed with the packaged daemon and its plugins, up to
/// `--help`).
#[test]
fn the_deployment_examples_command_lines_parse() {
    let tree = unpacked();
    let daemon = tree.path().join("usr/bin/vpcrouter");
    let deploy = common::repo().join("examples/deploy");
    let mut command_lines = Vec::new();
    for default in ["systemd/vpcrouter.default", "systemd/vpcrouter-ha.default"] {
        let text = std::fs::read_to_string(deploy.join(default)).unwrap();
        let (_, value) = text.split_once("VPCROUTER_ARGS=\"").expect(default);
        let value = value.split('"').next().unwrap().replace("\\\n", " ");
        let words = value.split_whitespace().map(str::to_string).collect();
        command_lines.push((default, words));
    }
    let manifest = std::fs::read_to_string(deploy.join("kubernetes/vpcrouter.yaml")).unwrap();
    let args: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- ") || l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .map(|a| a.trim_matches('"').to_string())
        .collect();
    assert!(args.len() > 10, "{args:?}");
    command_lines.push(("kubernetes/vpcrouter.yaml", args));
    for (source, args) in command_lines {
        let output = Command::new(&daemon)
            .args(&args)
            .arg("--help")
            .env_remove("VPCROUTER_PLUGIN_DIR")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{source}: {args:?}\n{}",
            describe(&output)
        );
    }
}

/// The IAM policy example allows every EC2 action the backend calls, and
/// nothing else.
#[test]
fn the_iam_policy_allows_exactly_the_ec2_calls_the_daemon_makes() {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("examples/deploy/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|s| assert_eq!(s["Effect"], "Allow"))
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // The SDK's operations, called as `.describe_instances()` and so on.
    let operations = [
        "describe_",
        "create_route",
        "replace_route",
        "delete_route",
        "create_tags",
        "delete_tags",
        "modify_",
        "create_managed_prefix_list",
        "delete_managed_prefix_list",
        "get_managed_prefix_list_entries",
    ];
    let mut called = BTreeSet::new();
    for entry in std::fs::read_dir(common::repo().join("host/src/cloud/ec2")).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (dot, _) in source.match_indices('.') {
            let rest = &source[dot + 1..];
            let name_end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if rest[name_end..].starts_with("()") && operations.iter().any(|o| name.starts_with(o))
            {
                called.insert(format!("ec2:{}", pascal(name)));
            }
        }
    }
    assert!(called.contains("ec2:ReplaceRoute"), "{called:?}");
    assert_eq!(allowed, called);
}

/// The events queue's policy allows the SQS and Auto Scaling actions the
/// queue's reader calls, and nothing else (a batch delete needs
/// `sqs:DeleteMessage`); the EventBridge rule matches every event kind the
/// reader acts on.
/// The notification sinks' policy allows exactly the calls they make.
#[test]
fn the_notify_policy_allows_exactly_the_sinks_calls() {
    let read = |path: &str| std::fs::read_to_string(common::repo().join(path)).unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&read("examples/deploy/iam-policy-notify.json")).unwrap();
    let allowed: BTreeSet<String> = (policy["Statement"].as_array().unwrap().iter())
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let source = read("host/src/notify/aws.rs");
    let calls = [
        (".publish()", "sns:Publish"),
        (".put_events()", "events:PutEvents"),
    ];
    let called: BTreeSet<String> = (calls.iter())
        .filter(|(call, _)| source.contains(call))
        .map(|(_, action)| action.to_string())
        .collect();
    assert_eq!(allowed, called);
    let any_call = source.matches(".send()").count();
    assert_eq!(any_call, calls.len(), "a call this test does not know");
}

/// The metrics policy allows PutMetricData, the one call of
/// `--put-metrics-interval`, and only in the daemon's namespace.
#[test]
fn the_metrics_policy_allows_exactly_its_call() {
    let read = |path: &str| std::fs::read_to_string(common::repo().join(path)).unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&read("examples/deploy/iam-policy-metrics.json")).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let allowed: Vec<&str> = (statements.iter())
        .flat_map(|s| s["Action"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    let source = read("host/src/cloudwatch/put.rs");
    assert!(source.contains(".put_metric_data()"));
    assert_eq!(
        source.matches(".send()").count(),
        1,
        "a call this test does not know"
    );
    assert_eq!(allowed, ["cloudwatch:PutMetricData"]);
    let namespace = &statements[0]["Condition"]["StringEquals"]["cloudwatch:namespace"];
    assert_eq!(namespace, vpcrouter::cloudwatch::NAMESPACE);
}

#[test]
fn the_events_queue_policy_allows_exactly_its_calls() {
    let read = |path: &str| std::fs::read_to_string(common::repo().join(path)).unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&read("examples/deploy/iam-policy-events-queue.json")).unwrap();
    let allowed: BTreeSet<String> = (policy["Statement"].as_array().unwrap().iter())
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let source = read("host/src/lifecycle/queue.rs");
    let calls = [
        ("sqs.receive_message()", "sqs:ReceiveMessage"),
        ("sqs.delete_message_batch()", "sqs:DeleteMessage"),
        (
            "autoscaling.complete_lifecycle_action()",
            "autoscaling:CompleteLifecycleAction",
        ),
        (
            "autoscaling.record_lifecycle_action_heartbeat()",
            "autoscaling:RecordLifecycleActionHeartbeat",
        ),
    ];
    let called: BTreeSet<String> = (calls.iter())
        .filter(|(call, _)| source.contains(call))
        .map(|(_, action)| action.to_string())
        .collect();
    assert_eq!(allowed, called);
    let any_client_call = source.matches("sqs.").count() + source.matches("autoscaling.").count();
    assert_eq!(
        any_client_call,
        calls.len(),
        "a call this test does not know"
    );
    let rule: serde_json::Value =
        serde_json::from_str(&read("examples/deploy/eventbridge-rule.json")).unwrap();
    let signals = read("host/src/lifecycle/signal.rs");
    for kind in rule["detail-type"].as_array().unwrap() {
        assert!(
            signals.contains(&format!("\"{}\"", kind.as_str().unwrap())),
            "{kind}"
        );
    }
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect()
}

/// The container image is built from the same install tree `make deb`
/// packages (CI builds that tree; there is no container engine here) and
/// runs as a user that is not root.
#[test]
fn the_containerfile_installs_the_release_and_runs_unprivileged() {
    let text = std::fs::read_to_string(common::repo().join("Containerfile")).unwrap();
    // After the opening comment: a build stage, then the runtime stage.
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (stages[0], stages[1]);
    assert!(build.contains("make release"));
    assert!(build.contains("make install DESTDIR=/out PREFIX=/usr"));
    assert!(runtime.contains("COPY --from=build /out/usr/ /usr/"));
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    let entry = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert_eq!(entry, r#"["/usr/bin/vpcrouter"]"#);
    // What the runtime stage copies is what the package holds under /usr.
    let tree = unpacked();
    assert!(tree.path().join("usr/bin/vpcrouter").is_file());
    for plugin in bundled() {
        let file = format!("usr/lib/vpcrouter/plugins/{plugin}.wasm");
        assert!(tree.path().join(&file).is_file(), "{file}");
    }
}

/// The service's privileges as the unit sets them (a user that is not
/// root, CAP_NET_RAW ambient and bounding, no new privileges), here with
/// setpriv: the packaged daemon probes half-open and by ICMP with them and
/// sets the route; with no capability at all, tcp falls back to full
/// connects and still works.
#[test]
fn the_packaged_daemon_needs_no_more_than_cap_net_raw() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        return common::cannot_run("not root: cannot change user");
    }
    let tree = unpacked();
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(tree.path(), open.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), open).unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let router = std::net::TcpListener::bind("127.0.3.20:0").unwrap();
    let port = router.local_addr().unwrap().port().to_string();
    let files = common::loopback_args(dir.path(), &["127.0.3.20"], &[]);
    let daemon = tree.path().join("usr/bin/vpcrouter");
    let run_as_service = |caps: &str, health: &[&str], said: &str| {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--no-new-privs",
            ])
            .arg(format!("--inh-caps=-all{caps}"))
            .arg(format!("--ambient-caps=-all{caps}"))
            .arg(format!("--bounding-set=-all{caps}"))
            .arg("--")
            .arg(&daemon)
            .args(&files)
            .args(health)
            .args(["--tcp_check_port", &port, "--tcp_check_interval", "0.2"])
            .args(["-a", "127.0.0.1", "-p", &common::free_port().to_string()])
            .arg("--plugin-cache-dir")
            .arg(&cache)
            .envs(common::NO_METADATA)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let (sender, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|l| drop(sender.send(l)))
        });
        let mut log = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // The packaged plugins are the ones the packaged daemon was built
        // with: bundled, trusted.
        let done = |log: &Vec<String>| {
            [said, "route created", "trust=\"bundled (configfile)\""]
                .iter()
                .all(|needle| log.iter().any(|l| l.contains(needle)))
        };
        while !done(&log) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) => log.push(line),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            done(&log),
            "no {said:?} and route within 20 s:\n{}",
            log.join("\n")
        );
    };
    run_as_service(
        ",+net_raw",
        &[
            "-H",
            "multi",
            "--multi_plugins",
            "tcp:icmpecho",
            "--icmp_check_interval",
            "0.2",
        ],
        "probing half-open",
    );
    run_as_service("", &["-H", "tcp"], "probing with full connects");
}
