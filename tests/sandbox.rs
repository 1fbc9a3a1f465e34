//! The sandbox and its bounds against hostile plugins (tests/guests), one
//! test per class of attack: the real daemon binary on the embedded VPC,
//! everything on loopback.

mod common;

use common::Daemon;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

fn plugins_view(daemon: &Daemon) -> serde_json::Value {
    let reply = common::request(
        daemon.port,
        "GET",
        "/plugins",
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

fn plugin_named<'a>(view: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    view["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {view}"))
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
    let view = plugins_view(&daemon);
    let plugin = plugin_named(&view, "hostile");
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
    let view = plugins_view(&daemon);
    let grants = &plugin_named(&view, "hostile")["grants"];
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

/// The bundled plugins keep their defaults: `-m romana` reaches its default
/// etcd address, and says so.
#[test]
fn a_bundled_plugin_is_known_by_its_digest_and_keeps_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&["-m", "romana"], dir.path());
    let view = plugins_view(&daemon);
    let romana = plugin_named(&view, "romana");
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
