//! The HTTP interface of the real daemon on the embedded VPC: every state
//! view in each content type, /healthz and /readyz, /events and /metrics
//! (parsed back by an OpenMetrics parser) around a failover the test
//! causes, 404/405/413/401, token on and off, and the status page in
//! headless Chromium.

mod common;

use common::sim_cluster::{CIDRS, SimCluster};
use common::{Daemon, Reply, request};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(15);
/// The cluster of these tests: routers on 127.0.4.x.
struct Cluster(SimCluster);

fn cluster(extra: &[&str]) -> Cluster {
    Cluster(SimCluster::start(4, extra))
}

impl Cluster {
    fn get(&self, path: &str, accept: &str) -> Reply {
        request(self.0.daemon.port, "GET", path, &[("Accept", accept)], b"")
    }

    fn json(&self, path: &str) -> Value {
        let reply = self.get(path, "application/json");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", reply.body))
    }

    /// Poll `path` until `done` holds for its JSON.
    fn wait_json(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let value = self.json(path);
            if done(&value) {
                return value;
            }
            assert!(
                start.elapsed() < WITHIN,
                "{what}: not within {WITHIN:?}: {value:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the router carrying the first CIDR; (its address, its ENI).
    fn kill_first_router(&mut self) -> (String, String) {
        let info = self.json("/route_info");
        let victim = info["routes"][CIDRS[0]]["ip"].as_str().unwrap().to_string();
        let eni = info["routes"][CIDRS[0]]["eni"]
            .as_str()
            .unwrap()
            .to_string();
        self.0.kill(&victim);
        (victim, eni)
    }
}

fn converged(info: &Value) -> bool {
    CIDRS.iter().all(|c| info["routes"][c]["ip"].is_string())
}

#[test]
fn the_views_show_spec_health_routes_and_a_failover() {
    let mut cluster = cluster(&[]);
    assert_eq!(cluster.get("/healthz", "*/*").status, 200);
    let info = cluster.wait_json("/route_info", "routes set", converged);
    assert_eq!(info["route_spec"][CIDRS[0]], json!(cluster.0.routers));
    assert!(info["ignore_routes"].is_array());
    let ready = cluster.get("/readyz", "*/*");
    assert_eq!(ready.status, 200, "{}", ready.body);

    let index = cluster.json("/");
    for key in [
        "server",
        "version",
        "start_time",
        "current_time",
        "params",
        "links",
    ] {
        assert!(!index[key].is_null(), "/ lacks {key}: {index:#}");
    }
    assert_eq!(index["params"]["vpc_backend"], "sim");
    // The old daemon's whole-state document: its top-level keys, each
    // view whole with its `_href`.
    assert_eq!(index["SERVER"]["version"], index["version"]);
    assert_eq!(index["ips"]["working_set"], json!(cluster.0.routers));
    assert_eq!(index["ips"]["_href"], "/ips");
    assert_eq!(
        index["route_info"]["route_spec"][CIDRS[0]],
        json!(cluster.0.routers)
    );
    assert_eq!(index["plugins"]["_href"], "/plugins");
    assert!(
        index["vpc"]["route_tables"]["rtb-a"]["routes"][CIDRS[0]].is_object(),
        "{index:#}"
    );
    // Converged: a pass would do nothing now.
    let plan = cluster.json("/plan");
    assert_eq!(plan["planned"], true, "{plan:#}");
    assert_eq!(plan["operations"], json!([]), "{plan:#}");
    let ips = cluster.json("/ips");
    assert_eq!(ips["working_set"], json!(cluster.0.routers));
    assert_eq!(ips["failed_ips"], json!([]));
    let plugins = cluster.wait_json("/plugins", "a health round", |p| {
        p["plugins"][1]["stats"]["probes"].as_u64() > Some(0)
    });
    let names: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["configfile", "tcp"]);
    assert_eq!(plugins["plugins"][1]["state"], "running");
    assert_eq!(
        plugins["plugins"][1]["options"]["tcp_check_interval"],
        "0.2"
    );

    let (victim, eni) = cluster.kill_first_router();
    let info = cluster.wait_json("/route_info", "route moved", |info| {
        converged(info)
            && CIDRS
                .iter()
                .all(|c| info["routes"][c]["eni"] != eni.as_str())
    });
    assert_ne!(info["routes"][CIDRS[0]]["ip"], victim.as_str());
    let ips = cluster.json("/ips");
    assert_eq!(ips["failed_ips"], json!([victim]));
    assert_eq!(ips["hosts"][&victim]["state"], "failed");
    let vpc = cluster.json("/vpc");
    let last = &vpc["route_tables"]["rtb-a"]["routes"][CIDRS[0]]["last_action"];
    assert_eq!(last["action"], "replaced", "{vpc:#}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("{victim} failed")),
        "{last}"
    );
    assert!(vpc["route_tables"]["rtb-a"]["routes"]["0.0.0.0/0"]["target"] == "igw-1");
    let events = cluster.json("/events");
    let events = events["events"].as_array().unwrap();
    let failover = events
        .iter()
        .find(|e| e["kind"] == "failover")
        .unwrap_or_else(|| panic!("no failover event: {events:#?}"));
    assert!(failover["reason"].as_str().unwrap().contains(&victim));
    assert!(failover["duration_ms"].is_u64());
    let newest_first: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(
        newest_first.windows(2).all(|w| w[0] >= w[1]),
        "{newest_first:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "host_failed" && e["subject"] == victim.as_str())
    );
    assert!(events.iter().any(|e| e["kind"] == "spec"));

    // Metrics, parsed back as OpenMetrics.
    let reply = cluster.get("/metrics", "*/*");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let families = common::test_tool(&["openmetrics"], &reply.body)
        .unwrap_or_else(|e| panic!("{e}\n{}", reply.body));
    let families: Vec<&str> = std::str::from_utf8(&families).unwrap().lines().collect();
    for name in [
        "vpcrouter_failovers",
        "vpcrouter_route_operations",
        "vpcrouter_host_health",
        "vpcrouter_plugin_calls",
        "vpcrouter_plugin_call_duration_seconds",
        "vpcrouter_spec_updates",
        "vpcrouter_probe_results",
        "vpcrouter_last_successful_reconcile_timestamp_seconds",
        "vpcrouter_ready",
    ] {
        assert!(families.contains(&name), "{name} missing:\n{}", reply.body);
    }
    let failovers = metric_value(&reply.body, "vpcrouter_failovers_total", "");
    assert!(failovers >= 1.0, "{}", reply.body);
    let dead = metric_value(
        &reply.body,
        "vpcrouter_host_health",
        &format!("host=\"{victim}\""),
    );
    assert_eq!(dead, 2.0);
}

/// The value of the first sample of `name` whose labels contain `labels`.
/// After a failover and the router's recovery, the survivor carries every
/// CIDR (no fail-back) and says so; `POST /rebalance` moves the fewest that
/// restore the bound, as events.
#[test]
fn a_rebalance_request_gives_a_recovered_router_its_share() {
    let mut cluster = cluster(&["--tcp_check_window", "1"]);
    cluster.wait_json("/route_info", "routes set", converged);
    let (victim, victim_eni) = cluster.kill_first_router();
    let on_victim = |info: &Value| {
        CIDRS
            .iter()
            .filter(|c| info["routes"][c]["eni"] == victim_eni.as_str())
            .count()
    };
    cluster.wait_json("/route_info", "failed over", |info| on_victim(info) == 0);
    cluster.0.revive(&victim);
    cluster.wait_json("/ips", "recovered", |ips| {
        ips["failed_ips"].as_array().is_some_and(Vec::is_empty)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(on_victim(&cluster.json("/route_info")), 0, "no fail-back");

    let reply = request(cluster.0.daemon.port, "POST", "/rebalance", &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    // Three CIDRs on two routers: the bound is two, so exactly one moves.
    let info = cluster.wait_json("/route_info", "rebalanced", |info| on_victim(info) == 1);
    assert_eq!(on_victim(&info), 1);
    let events = cluster.wait_json("/events", "rebalance events", |e| {
        let events = e["events"].as_array().unwrap();
        let done = |reason: &str| {
            events.iter().any(|e| {
                e["kind"] == "rebalance" && e["reason"].as_str().is_some_and(|r| r.contains(reason))
            })
        };
        done("rebalancing:") && done("within the balanced bound")
    });
    let moves = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["kind"] == "rebalance" && e["reason"].as_str().unwrap().starts_with("rebalancing:")
        })
        .count();
    assert_eq!(moves, 2, "one CIDR in two tables: {events:#}");
}

fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let metric = l.split([' ', '{']).next().unwrap();
            metric == name && l.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
}

#[test]
fn content_types_follow_the_accept_header() {
    let cluster = cluster(&[]);
    cluster.wait_json("/route_info", "routes set", converged);
    for path in ["/", "/ips", "/plugins", "/route_info", "/vpc", "/events"] {
        let json = cluster.get(path, "application/json");
        assert_eq!(
            json.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        let value: Value = serde_json::from_str(&json.body).unwrap();
        assert!(!json.body.contains('\n'), "{path}: compact JSON");
        for accept in ["*/*", "text/*", "text/plain"] {
            let text = cluster.get(path, accept);
            assert!(
                text.header("content-type")
                    .unwrap()
                    .starts_with("text/plain"),
                "{path} {accept}"
            );
            let indented: Value = serde_json::from_str(&text.body).unwrap();
            assert!(text.body.contains("\n  "), "{path}: indented");
            if path != "/" {
                // The index shows the current time.
                assert_eq!(
                    indented.as_object().map(|o| o.len()),
                    value.as_object().map(|o| o.len())
                );
            }
        }
        let html = cluster.get(path, "text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(
            html.header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(html.body.starts_with("<!DOCTYPE html>"), "{path}");
    }
}

#[test]
fn unknown_paths_wrong_methods_and_big_bodies_are_refused() {
    let cluster = cluster(&[]);
    assert_eq!(cluster.get("/nope", "*/*").status, 404);
    let port = cluster.0.daemon.port;
    assert_eq!(request(port, "POST", "/ips", &[], b"{}").status, 405);
    assert_eq!(request(port, "DELETE", "/vpc", &[], b"").status, 405);
    assert_eq!(request(port, "POST", "/healthz", &[], b"").status, 405);
}

fn http_daemon(extra: &[&str], dir: &Path) -> Daemon {
    let mut args = vec!["-m", "http"];
    args.extend_from_slice(extra);
    Daemon::start(&args, dir)
}

#[test]
fn a_token_guards_changes_and_with_auth_all_everything() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let spec = br#"{"10.55.0.0/16": ["10.33.20.142"]}"#;
    let daemon = http_daemon(&["--http-token-file", token.to_str().unwrap()], dir.path());
    let port = daemon.port;
    let post =
        |headers: &[(&str, &str)], body: &[u8]| request(port, "POST", "/route_spec", headers, body);
    let refused = post(&[], spec);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post(&[("Authorization", "Bearer wrong")], spec).status, 401);
    assert_eq!(
        post(&[("Authorization", "Bearer s3cret-token")], spec).status,
        200
    );
    let big = vec![b' '; 2 << 20];
    assert_eq!(
        post(&[("Authorization", "Bearer s3cret-token")], &big).status,
        413
    );
    assert_eq!(
        request(port, "GET", "/ips", &[], b"").status,
        200,
        "views stay open"
    );
    drop(daemon);

    let daemon = http_daemon(
        &[
            "--http-token-file",
            token.to_str().unwrap(),
            "--http-auth-all",
        ],
        dir.path(),
    );
    let port = daemon.port;
    assert_eq!(request(port, "GET", "/ips", &[], b"").status, 401);
    let ok = request(
        port,
        "GET",
        "/ips",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn without_a_token_changes_are_open_to_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = http_daemon(&[], dir.path());
    let reply = request(
        daemon.port,
        "POST",
        "/route_spec",
        &[],
        br#"{"10.55.0.0/16": ["10.33.20.142"]}"#,
    );
    assert_eq!(reply.status, 200, "loopback, no token: {}", reply.body);
    drop(daemon);
    let (code, stderr) = common::run_to_exit(&["-m", "http", "-a", "0.0.0.0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--address 0.0.0.0 is not a loopback address"),
        "{stderr}"
    );
    assert!(stderr.contains("--http-token-file"), "{stderr}");
}

#[test]
fn readyz_waits_for_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = http_daemon(&[], dir.path());
    let not_ready = request(daemon.port, "GET", "/readyz", &[], b"");
    assert_eq!(not_ready.status, 503);
    let why: Value = serde_json::from_str(&not_ready.body).unwrap();
    assert_eq!(why["spec_loaded"], false);
    assert_eq!(
        request(daemon.port, "GET", "/healthz", &[], b"").status,
        200
    );
    let spec = br#"{"10.55.0.0/16": ["10.33.20.142"]}"#;
    assert_eq!(
        request(daemon.port, "POST", "/route_spec", &[], spec).status,
        200
    );
    let start = Instant::now();
    while request(daemon.port, "GET", "/readyz", &[], b"").status != 200 {
        assert!(start.elapsed() < WITHIN, "not ready after a spec");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's Chromium, as `.ci/run` and `make test` install it.
fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn headless(chromium: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_status_page_shows_a_failover_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return common::cannot_run("no chromium here (apt-get install chromium)");
    };
    let mut cluster = cluster(&[]);
    cluster.wait_json("/route_info", "routes set", converged);
    let (victim, eni) = cluster.kill_first_router();
    cluster.wait_json("/route_info", "route moved", |info| {
        converged(info)
            && CIDRS
                .iter()
                .all(|c| info["routes"][c]["eni"] != eni.as_str())
    });
    let url = format!("http://127.0.0.1:{}/", cluster.0.daemon.port);
    let dom = headless(chromium, &["--dump-dom", &url]);
    assert!(dom.contains("id=\"routes\""), "{dom}");
    // The grid: every cell of a spec CIDR points at the surviving router,
    // healthy (green).
    for cidr in CIDRS {
        for table in ["rtb-a", "rtb-b"] {
            let cell = format!("data-table=\"{table}\" data-cidr=\"{cidr}\"");
            let at = dom
                .find(&cell)
                .unwrap_or_else(|| panic!("no cell {cell}: {dom}"));
            let td_start = dom[..at].rfind("<td").unwrap();
            let td = &dom[td_start..dom[at..].find("</td>").unwrap() + at];
            assert!(td.contains("class=\"healthy\""), "{td}");
            assert!(!td.contains(&eni), "{td}");
        }
    }
    // The dead router is shown failed, the failover is among the events.
    let hosts = &dom[dom.find("id=\"hosts\"").unwrap()..];
    let row = &hosts[hosts.find(&format!("<td>{victim}</td>")).unwrap()..];
    assert!(
        row[..row.find("</tr>").unwrap()].contains("class=\"failed\""),
        "{row}"
    );
    let events = &dom[dom.find("id=\"events\"").unwrap()..];
    assert!(events.contains("failover"), "{events}");
    assert!(events.contains(&format!("{victim} failed")), "{events}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        chromium,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,900",
            &url,
        ],
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let daemon = http_daemon(&[], dir.path());
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    slow.write_all(b"GET /ips HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(
        request(daemon.port, "GET", "/healthz", &[], b"").status,
        200
    );
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(15), "held for {waited:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("200 OK"), "{text}");
}
