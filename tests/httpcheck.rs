//! The bundled `httpcheck` plugin: the host asks each router for a path
//! over HTTP(S) (WIT 0.1.5 `probes.start-http-round`) and the plugin judges
//! the answers. Loopback servers answering 200, 429, 503, slowly, with a
//! reset; a body to match; HTTPS verified by a CA; and, on the NAT-instance
//! and the Romana layouts, a router whose TCP port answers but whose HTTP
//! check fails is failed over.

mod common;

use common::nat::{ROUTER_A, ROUTER_B, default_routes, layout as nat_layout};
use common::{Daemon, ip, strs};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vpcrouter::health::HealthSnapshot;
use vpcrouter::spec_store::SpecStore;

/// How a test router answers.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16, &'static str),
    /// Reads the request and never answers.
    Silent,
    /// Resets the connection once the request is read.
    Reset,
}

/// An HTTP server on one loopback address whose answer can be changed.
struct HttpRouter {
    reply: Arc<Mutex<Reply>>,
}

impl HttpRouter {
    /// Serve on `ip`:`port` (0: any port); the router and its port.
    fn start(ip: &str, port: u16, reply: Reply) -> (Self, u16) {
        let listener = TcpListener::bind((ip, port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(Mutex::new(reply));
        let shared = reply.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let reply = *shared.lock().unwrap();
                std::thread::spawn(move || answer(connection, reply));
            }
        });
        (Self { reply }, port)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

fn answer(mut connection: TcpStream, reply: Reply) {
    // A tcp probe connects and resets: nothing to read then.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match connection.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match reply {
        Reply::Status(status, body) => {
            let _ = write!(
                connection,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Reply::Silent => std::thread::sleep(Duration::from_secs(30)),
        Reply::Reset => {
            let _ = socket2::SockRef::from(&connection).set_linger(Some(Duration::ZERO));
        }
    }
}

fn spec_of(hosts: &[&str]) -> Arc<SpecStore> {
    let specs = Arc::new(SpecStore::default());
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    specs
        .offer("test", [("10.55.0.0/16".to_string(), hosts)])
        .unwrap();
    specs
}

fn states(s: &HealthSnapshot, hosts: &[&str]) -> Vec<&'static str> {
    hosts
        .iter()
        .map(|h| {
            let h = ip(h);
            if s.failed.contains(&h) {
                "failed"
            } else if s.questionable.contains(&h) {
                "questionable"
            } else if s.probed(&h) {
                "healthy"
            } else {
                "unknown"
            }
        })
        .collect()
}

/// 200 healthy, 429 questionable (rate-limited, not failed), 503 failed,
/// silent failed at the timeout, reset failed; a 429 for many rounds stays
/// questionable.
#[tokio::test(flavor = "multi_thread")]
async fn each_answer_is_judged_and_only_the_failing_ones_fail() {
    let hosts = [
        "127.0.7.1",
        "127.0.7.2",
        "127.0.7.3",
        "127.0.7.4",
        "127.0.7.5",
    ];
    let (_ok, port) = HttpRouter::start(hosts[0], 0, Reply::Status(200, "ok"));
    let replies = [
        Reply::Status(429, "slow down"),
        Reply::Status(503, "down"),
        Reply::Silent,
        Reply::Reset,
    ];
    let _routers: Vec<_> = hosts[1..]
        .iter()
        .zip(replies)
        .map(|(host, reply)| HttpRouter::start(host, port, reply).0)
        .collect();
    let specs = spec_of(&hosts);
    let port = port.to_string();
    let options: &[(&str, &str)] = &[
        ("httpcheck_port", &port),
        ("httpcheck_path", "/healthz"),
        ("httpcheck_interval", "0.2"),
        ("httpcheck_timeout", "0.5"),
    ];
    let checkers = common::health_checkers(&specs, &[(common::plugin("httpcheck"), options)]).await;
    let want = ["healthy", "questionable", "failed", "failed", "failed"];
    checkers
        .wait("each judged", |s| states(s, &hosts) == want)
        .await;
    // Many rounds of 429 later: still questionable, never failed.
    let handle = &checkers.handles[0];
    let rounds = || {
        handle
            .status()
            .borrow()
            .rounds
            .as_ref()
            .map_or(0, |r| r.rounds)
    };
    let target = rounds() + 5;
    common::wait_until("5 more rounds", || (rounds() >= target).then_some(()));
    assert_eq!(states(&checkers.board.snapshot(), &hosts), want);
}

/// A body match: a 200 without the text fails; HEAD and 204 by the
/// expected statuses; options that cannot be meant are refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn the_body_and_the_expected_statuses_decide() {
    let hosts = ["127.0.7.11", "127.0.7.12", "127.0.7.13"];
    let (_ready, port) = HttpRouter::start(hosts[0], 0, Reply::Status(200, "status: ready"));
    let (_starting, _) = HttpRouter::start(hosts[1], port, Reply::Status(200, "status: starting"));
    let (_empty, _) = HttpRouter::start(hosts[2], port, Reply::Status(204, ""));
    let specs = spec_of(&hosts);
    let port = port.to_string();
    let options: &[(&str, &str)] = &[
        ("httpcheck_port", &port),
        ("httpcheck_interval", "0.2"),
        ("httpcheck_body", "ready"),
        ("httpcheck_expect", "200"),
    ];
    let checkers = common::health_checkers(&specs, &[(common::plugin("httpcheck"), options)]).await;
    checkers
        .wait("ready healthy, starting and 204 failed", |s| {
            states(s, &hosts) == ["healthy", "failed", "failed"]
        })
        .await;

    for (option, value, expected) in [
        ("httpcheck_port", "0", "expected 1-65535"),
        ("httpcheck_path", "healthz", "expected '/'"),
        ("httpcheck_method", "POST", "expected GET or HEAD"),
        ("httpcheck_expect", "2xx", "expected statuses or ranges"),
        ("httpcheck_expect", "399-200", "expected statuses or ranges"),
        ("httpcheck_fall", "0", "expected a whole number >= 1"),
    ] {
        let err = common::refusal("httpcheck", &[(option, value)]).await;
        assert!(err.contains(expected), "--{option} {value}: {err}");
    }
    let err = common::refusal(
        "httpcheck",
        &[("httpcheck_method", "HEAD"), ("httpcheck_body", "ready")],
    )
    .await;
    assert!(err.contains("HEAD has no body"), "{err}");
}

/// HTTPS: a router whose certificate the granted CA signed is healthy (by
/// its IP address, and by a server name); with another CA it is failed,
/// saying why.
#[tokio::test(flavor = "multi_thread")]
async fn https_routers_are_verified_by_the_granted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::etcd::Certs::generate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let stranger = common::etcd::Certs::generate(other.path());
    let port = tls_server(&certs).await;
    let specs = spec_of(&["127.0.0.1"]);
    let port = port.to_string();
    for (ca, name, want) in [
        (&certs.ca, None, "healthy"),
        (&certs.ca, Some("localhost"), "healthy"),
        (&stranger.ca, None, "failed"),
    ] {
        let ca = ca.to_str().unwrap();
        let mut options = vec![
            ("httpcheck_port", port.as_str()),
            ("httpcheck_interval", "0.2"),
            ("httpcheck_ca", ca),
        ];
        if let Some(name) = name {
            options.push(("httpcheck_server_name", name));
        }
        let checkers =
            common::health_checkers(&specs, &[(common::plugin("httpcheck"), &options)]).await;
        checkers
            .wait(&format!("{want} with {ca} {name:?}"), |s| {
                states(s, &["127.0.0.1"]) == [want]
            })
            .await;
    }
}

/// A TLS server on 127.0.0.1 with `certs`' server certificate, answering
/// 200 to every request; its port.
async fn tls_server(certs: &common::etcd::Certs) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain = CertificateDer::pem_file_iter(&certs.server_cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// NAT-instance layout: both routers' ports accept connections (tcp says
/// healthy) but A's HTTP check starts answering 503: every table on A goes
/// to B, and its own AZ's table comes back once A answers 200 again.
#[test]
fn nat_instances_fail_over_when_the_http_check_fails_but_the_port_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (router_a, port) = HttpRouter::start(ROUTER_A, 0, Reply::Status(200, "ok"));
    let (_router_b, _) = HttpRouter::start(ROUTER_B, port, Reply::Status(200, "ok"));
    let port = port.to_string();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let layout = nat_layout();
    // The layout's flags, with httpcheck beside tcp on the same port.
    let mut args = common::nat::daemon_args(&hosts, &port);
    let tcp = args.iter().position(|a| a == "tcp").unwrap();
    args[tcp] = "multi".into();
    args.extend(
        [
            "--multi_plugins",
            "tcp:httpcheck",
            "--httpcheck_port",
            &port,
            "--httpcheck_interval",
            "0.2",
            "--sim-vpc",
            layout.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let daemon = Daemon::start(&strs(&args), dir.path());
    let on = |priv_a: &'static str| {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == priv_a && now["rtb-priv-b"] == "eni-b").then_some(now)
    };
    common::wait_until("each AZ's table on its router", || on("eni-a"));

    router_a.set(Reply::Status(503, "draining"));
    let now = common::wait_until("rtb-priv-a on router B", || on("eni-b"));
    assert_eq!(now["rtb-main"], "eni-b", "{now}");
    let ips = daemon.view("/ips");
    let a = &ips["hosts"][ROUTER_A];
    assert_eq!(a["state"], "failed", "{ips}");
    assert_eq!(a["checks"]["tcp"]["state"], "healthy", "{ips}");
    assert_eq!(a["checks"]["httpcheck"]["state"], "failed", "{ips}");
    assert!(
        a["checks"]["httpcheck"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("HTTP 503")),
        "{ips}"
    );

    router_a.set(Reply::Status(200, "ok"));
    common::wait_until("rtb-priv-a back on router A", || on("eni-a"));
}

/// Romana layout (each router's own subnet table): the check URL
/// rate-limited on every router (429 everywhere, as when a shared check
/// service throttles) fails nobody over: the routes are made on the
/// questionable routers and stay there while no healthy one exists. Then a
/// router carrying routes answers 503: only its CIDRs fail over.
#[test]
fn romana_routes_stay_while_every_router_is_rate_limited_and_leave_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let routers = ["127.0.8.10", "127.0.8.11"];
    let throttled = Reply::Status(429, "slow down");
    let (router_a, port) = HttpRouter::start(routers[0], 0, throttled);
    let (router_b, _) = HttpRouter::start(routers[1], port, throttled);
    let servers = [router_a, router_b];
    let cidrs = common::sim_cluster::CIDRS;
    let spec = common::spec_file(dir.path(), cidrs.map(String::from), &routers);
    let vpc = common::loopback_vpc(dir.path(), &routers);
    let port = port.to_string();
    let args = [
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "-H",
        "httpcheck",
        "--httpcheck_port",
        &port,
        "--httpcheck_interval",
        "0.2",
        "--sim-vpc",
        vpc.to_str().unwrap(),
    ];
    let daemon = Daemon::start(&args, dir.path());
    let placed = || -> Option<Vec<String>> {
        let info = daemon.view("/route_info");
        cidrs
            .iter()
            .map(|c| info["routes"][*c]["ip"].as_str().map(String::from))
            .collect()
    };
    let before = common::wait_until("every CIDR routed", placed);
    // Where the first probes land decides the placement: take a router
    // that carries routes.
    let victim = routers.iter().position(|r| *r == before[0]).unwrap();
    let (gone, other) = (routers[victim], routers[1 - victim]);
    let state = |host: &str| daemon.view("/ips")["hosts"][host]["state"].clone();
    let rounds = || {
        daemon.plugin("httpcheck")["stats"]["rounds"]
            .as_u64()
            .unwrap_or(0)
    };

    common::wait_until("both questionable", || {
        routers
            .iter()
            .all(|r| state(r) == "questionable")
            .then_some(())
    });
    // Ten more rounds of 429: nothing moves.
    let target = rounds() + 10;
    common::wait_until("ten more rounds", || (rounds() >= target).then_some(()));
    assert!(routers.iter().all(|r| state(r) == "questionable"));
    assert_eq!(placed(), Some(before.clone()));
    let moved = daemon.lines_with("route replaced");
    assert!(moved.is_empty(), "{moved:#?}");

    servers[victim].set(Reply::Status(503, "down"));
    let after = common::wait_until("every CIDR on the other router", || {
        placed().filter(|now| now.iter().all(|h| h == other))
    });
    assert_eq!(after.len(), cidrs.len());
    let moved = daemon.lines_with("route replaced");
    let failed = format!("{gone} failed");
    assert!(moved.iter().all(|l| l.contains(&failed)), "{moved:#?}");
    let detail = &daemon.view("/ips")["hosts"][gone]["checks"]["httpcheck"]["detail"];
    assert!(
        detail.as_str().is_some_and(|d| d.contains("HTTP 503")),
        "{detail}"
    );
}
