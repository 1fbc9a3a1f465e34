//! Health checking through the real host with the tcp plugin, against real
//! sockets on 127.0.0.0/8: listeners up and down, silent hosts, working-set
//! changes, thresholds, and the old command line; full connects and
//! half-open probes alike.

mod common;

use common::ip;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use vpcrouter::health::{HealthBoard, HealthSnapshot, State};
use vpcrouter::plugin::PluginHandle;
use vpcrouter::probe::half_open;
use vpcrouter::spec_store::SpecStore;

struct Checker {
    specs: Arc<SpecStore>,
    board: Arc<HealthBoard>,
    checkers: common::HealthCheckers,
}

/// The tcp plugin checking `hosts` (a spec naming them) with `options`.
async fn tcp_checker(hosts: &[&str], options: &[(&str, &str)]) -> Checker {
    let specs = Arc::new(SpecStore::default());
    set_hosts(&specs, hosts);
    let checkers = common::health_checkers(&specs, &[(common::plugin("tcp"), options)]).await;
    Checker {
        specs,
        board: checkers.board.clone(),
        checkers,
    }
}

fn set_hosts(specs: &SpecStore, hosts: &[&str]) {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    specs
        .offer("test", [("10.55.0.0/16".to_string(), hosts)])
        .unwrap();
}

impl Checker {
    fn handle(&self) -> &PluginHandle {
        &self.checkers.handles[0]
    }

    /// Wait until the board satisfies `pred`; how long it took.
    async fn wait(&self, what: &str, pred: impl Fn(&HealthSnapshot) -> bool) -> Duration {
        self.checkers.wait(what, pred).await
    }

    fn rounds(&self) -> u64 {
        self.handle()
            .status()
            .borrow()
            .rounds
            .as_ref()
            .map_or(0, |r| r.rounds)
    }

    async fn wait_rounds(&self, more: u64) {
        let target = self.rounds() + more;
        let mut status = self.handle().status();
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.rounds.as_ref().is_some_and(|r| r.rounds >= target)),
        )
        .await
        .expect("rounds go on")
        .unwrap();
    }
}

/// Listeners on the same port at several loopback addresses.
fn listeners(addrs: &[&str]) -> (u16, Vec<TcpListener>) {
    let first = TcpListener::bind((addrs[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let rest = addrs[1..]
        .iter()
        .map(|a| TcpListener::bind((*a, port)).unwrap());
    (port, std::iter::once(first).chain(rest).collect())
}

/// The probe methods this process may use: half-open needs CAP_NET_RAW.
fn methods() -> Vec<&'static str> {
    match half_open::access() {
        Ok(()) => vec!["connect", "half-open"],
        Err(why) => {
            common::cannot_run(format!("half-open probes: {why}"));
            vec!["connect"]
        }
    }
}

/// Whether a listener has a connection waiting (half-open probes never
/// complete one).
fn has_connection(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

#[tokio::test]
async fn a_closed_listener_fails_its_host_and_it_recovers_after_the_window() {
    for method in methods() {
        closed_listener_fails_and_recovers(method).await;
    }
}

async fn closed_listener_fails_and_recovers(method: &str) {
    let (port, mut up) = listeners(&["127.0.0.21", "127.0.0.22"]);
    let port = port.to_string();
    let checker = tcp_checker(
        &["127.0.0.21", "127.0.0.22"],
        &[
            ("tcp_check_port", &port),
            ("tcp_check_interval", "0.1"),
            ("tcp_check_window", "5"),
            ("tcp_check_method", method),
        ],
    )
    .await;
    checker.wait_rounds(2).await;
    assert_eq!(checker.board.snapshot(), HealthSnapshot::default());

    drop(up.pop()); // 127.0.0.22 stops listening: connections refused
    checker
        .wait("127.0.0.22 failed", |s| {
            s.state(&ip("127.0.0.22")) == State::Failed
        })
        .await;
    assert_eq!(
        checker.board.snapshot().state(&ip("127.0.0.21")),
        State::Healthy
    );
    let status = checker.handle().status().borrow().clone();
    let stats = status.rounds.unwrap();
    assert!(stats.failures >= 1 && stats.rtt_us.is_some(), "{stats:?}");
    assert_eq!(
        has_connection(&up[0]),
        method == "connect",
        "{method}: connections seen by the service"
    );

    // Back up: healthy again once the window (5 rounds of 0.1 s) is over.
    up.push(TcpListener::bind(SocketAddr::new(ip("127.0.0.22"), port.parse().unwrap())).unwrap());
    let recovered = checker
        .wait("127.0.0.22 healthy", |s| s.failed.is_empty())
        .await;
    assert!(
        recovered >= Duration::from_millis(300),
        "{method}: recovered after {recovered:?}, inside the window"
    );
}

#[tokio::test]
async fn a_silent_host_times_out_without_stalling_rounds_at_timeout_equal_to_interval() {
    for method in methods() {
        silent_host_times_out(method).await;
    }
}

async fn silent_host_times_out(method: &str) {
    // A listener whose accept queue is full never completes a handshake.
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(&SocketAddr::new(ip("127.0.0.31"), 0).into())
        .unwrap();
    silent.listen(0).unwrap();
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let queued: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(ip("127.0.0.31"), port),
                Duration::from_millis(50),
            )
            .ok()
        })
        .collect();
    // A healthy neighbour on the same port.
    let _up = TcpListener::bind(("127.0.0.32", port)).unwrap();
    let port = port.to_string();
    let checker = tcp_checker(
        &["127.0.0.31", "127.0.0.32"],
        &[
            ("tcp_check_port", &port),
            ("tcp_check_interval", "0.2"),
            ("tcp_check_timeout", "0.2"),
            ("tcp_check_method", method),
        ],
    )
    .await;
    checker
        .wait("silent host failed", |s| {
            s.state(&ip("127.0.0.31")) == State::Failed
        })
        .await;
    // Rounds keep coming although every one of them waits out a timeout.
    checker.wait_rounds(5).await;
    assert_eq!(checker.handle().status().borrow().restarts, 0);
    assert_eq!(
        checker.board.snapshot().state(&ip("127.0.0.32")),
        State::Healthy
    );
    drop(queued);
}

/// A listener on `ip` whose accept queue is full: it completes no
/// handshake, and answers no SYN. Its port, and what keeps it full.
fn silent_listener(ip_addr: &str) -> (u16, socket2::Socket, Vec<std::net::TcpStream>) {
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(&SocketAddr::new(ip(ip_addr), 0).into())
        .unwrap();
    silent.listen(0).unwrap();
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let queued = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(ip(ip_addr), port),
                Duration::from_millis(50),
            )
            .ok()
        })
        .collect();
    (port, silent, queued)
}

/// Verdicts are handed over as probes answer: a refused host is failed at
/// once, while a silent one still has seconds of its timeout to go.
#[tokio::test]
async fn a_refused_host_is_failed_before_a_silent_one_times_out() {
    for method in methods() {
        let (port, _silent, _queued) = silent_listener("127.0.0.33");
        let port = port.to_string();
        let checker = tcp_checker(
            &["127.0.0.33", "127.0.0.34"],
            &[
                ("tcp_check_port", &port),
                ("tcp_check_interval", "5"),
                ("tcp_check_timeout", "3"),
                ("tcp_check_method", method),
            ],
        )
        .await;
        // The first round starts after one interval.
        checker
            .wait("refused host failed", |s| {
                s.state(&ip("127.0.0.34")) == State::Failed
            })
            .await;
        assert_eq!(
            checker.board.snapshot().state(&ip("127.0.0.33")),
            State::Healthy,
            "{method}: the silent host's timeout has not passed"
        );
        let silent = checker
            .wait("silent host failed", |s| {
                s.state(&ip("127.0.0.33")) == State::Failed
            })
            .await;
        // Measured from the refused host's verdict: the round's own end.
        assert!(
            silent >= Duration::from_millis(2500),
            "{method}: {silent:?}"
        );
    }
}

/// Without a timeout option the timeout adapts: a router that answered in
/// microseconds and falls silent is failed after tens of milliseconds, not
/// the second the fixed default would wait.
#[tokio::test]
async fn a_silent_host_is_found_in_a_few_round_trips_with_the_adaptive_timeout() {
    for method in methods() {
        let (port, silent, queued) = silent_listener("127.0.0.35");
        // Answering while it accepts; silent once it stops.
        let accepting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        drop(queued);
        let server = {
            let accepting = accepting.clone();
            let listener: TcpListener = silent.into();
            listener.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                while accepting.load(std::sync::atomic::Ordering::Relaxed) {
                    while listener.accept().is_ok() {}
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Fill the queue, then keep the listener and its queue.
                let addr = listener.local_addr().unwrap();
                let queued: Vec<_> = (0..4)
                    .filter_map(|_| {
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).ok()
                    })
                    .collect();
                (listener, queued)
            })
        };
        let port = port.to_string();
        let checker = tcp_checker(
            &["127.0.0.35"],
            &[
                ("tcp_check_port", &port),
                ("tcp_check_interval", "1"),
                ("tcp_check_method", method),
            ],
        )
        .await;
        checker.wait_rounds(4).await;
        assert_eq!(
            checker.board.snapshot(),
            HealthSnapshot::default(),
            "{method}"
        );
        accepting.store(false, std::sync::atomic::Ordering::Relaxed);
        let _kept = server.join().unwrap();
        checker
            .wait("silent host failed", |s| {
                s.state(&ip("127.0.0.35")) == State::Failed
            })
            .await;
        let reports = checker.board.reports();
        let detail = reports["tcp"][&ip("127.0.0.35")].detail.clone().unwrap();
        assert!(detail.starts_with("no answer within"), "{method}: {detail}");
        assert!(detail.ends_with("ms"), "{method}: {detail}: under a second");
    }
}

#[tokio::test]
async fn hosts_join_and_leave_with_the_working_set() {
    let (port, _up) = listeners(&["127.0.0.41"]);
    let port = port.to_string();
    let checker = tcp_checker(
        &["127.0.0.41"],
        &[("tcp_check_port", &port), ("tcp_check_interval", "0.1")],
    )
    .await;
    checker.wait_rounds(1).await;
    // 127.0.0.42 joins the spec; nothing listens there.
    set_hosts(&checker.specs, &["127.0.0.41", "127.0.0.42"]);
    checker
        .wait("new host probed and failed", |s| {
            s.failed.contains(&ip("127.0.0.42"))
        })
        .await;
    // It leaves the spec: its failure is forgotten.
    set_hosts(&checker.specs, &["127.0.0.41"]);
    checker
        .wait("removed host forgotten", |s| s.failed.is_empty())
        .await;
}

#[tokio::test]
async fn the_fall_threshold_makes_a_host_questionable_before_failed() {
    let (port, mut up) = listeners(&["127.0.0.51"]);
    let port = port.to_string();
    let checker = tcp_checker(
        &["127.0.0.51"],
        &[
            ("tcp_check_port", &port),
            ("tcp_check_interval", "0.1"),
            ("tcp_check_fall", "3"),
        ],
    )
    .await;
    checker.wait_rounds(1).await;
    drop(up.pop());
    checker
        .wait("questionable first", |s| {
            s.questionable.contains(&ip("127.0.0.51"))
        })
        .await;
    checker
        .wait("then failed", |s| s.failed.contains(&ip("127.0.0.51")))
        .await;
}

#[tokio::test]
async fn bad_tcp_options_are_refused_at_start() {
    for (option, value, expected) in [
        ("tcp_check_port", "0", "expected 1-65535"),
        ("tcp_check_interval", "soon", "expected seconds"),
        ("tcp_check_fall", "0", "expected a whole number >= 1"),
        (
            "tcp_check_method",
            "sometimes",
            "expected auto, connect or half-open",
        ),
    ] {
        let err = common::refusal("tcp", &[(option, value)]).await;
        assert!(err.contains(expected), "--{option} {value}: {err}");
    }
}

#[test]
fn the_old_command_line_runs_tcp_checks_and_logs_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mut up) = listeners(&["127.0.0.61", "127.0.0.62"]);
    let port = port.to_string();
    let daemon = common::Daemon::start(
        &[
            "-m",
            "fixedconf",
            "--fixed_cidr",
            "10.0.0.0/16",
            "--fixed_hosts",
            "127.0.0.61:127.0.0.62",
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "0.2",
        ],
        dir.path(),
    );
    drop(up.pop());
    let line = daemon.wait_for_line("host failed", Duration::from_secs(10));
    assert!(
        line.contains("127.0.0.62") && line.contains("connection refused"),
        "{line}"
    );
    assert!(
        daemon
            .lines_with("host failed")
            .iter()
            .all(|l| !l.contains("127.0.0.61"))
    );
    // Probing is a grant like any other: listed, with where it came from.
    let view = daemon.view("/plugins");
    let tcp = &view["plugins"][1];
    assert_eq!(tcp["name"], "tcp");
    let grant = &tcp["grants"][0];
    assert!(grant["grant"].as_str().unwrap().contains("probe"), "{tcp}");
    assert!(
        grant["from"]
            .as_str()
            .unwrap()
            .contains("health-check plugin"),
        "{tcp}"
    );
}

#[tokio::test]
async fn probes_outside_the_working_set_are_denied_and_their_reports_ignored() {
    probes_outside_the_working_set_are_denied("127.0.0.95", "127.0.0.96", &[]).await;
    // HTTP probes (0.1.5) by the same rules.
    let http = [("method", "http"), ("path", "/healthz")];
    probes_outside_the_working_set_are_denied("127.0.0.97", "127.0.0.98", &http).await;
}

/// HTTP probes the host will not send as asked: a path carrying a header
/// (request splitting), HTTPS without a CA grant. No host, not even one of
/// the working set, sees a connection, and the plugin is told why.
#[tokio::test]
async fn http_probes_that_cannot_be_sent_as_asked_reach_nobody() {
    for (extra, why) in [
        (
            &[("path", "/x HTTP/1.1\r\nX-Evil: 1")][..],
            "the HTTP check is malformed",
        ),
        (&[("tls", "")][..], "HTTPS needs the plugin's tls-ca option"),
    ] {
        let (port, listeners) = listeners(&["127.0.0.99"]);
        listeners[0].set_nonblocking(true).unwrap();
        let specs = Arc::new(SpecStore::default());
        set_hosts(&specs, &["127.0.0.99"]);
        let port = port.to_string();
        let mut options = vec![
            ("targets", "127.0.0.99"),
            ("port", port.as_str()),
            ("method", "http"),
        ];
        options.extend(extra.iter().map(|(k, v)| (*k, *v)));
        let checkers =
            common::health_checkers(&specs, &[(common::guest("prober"), &options)]).await;
        checkers
            .wait(why, |s| s.failed.contains(&ip("127.0.0.99")))
            .await;
        assert!(!has_connection(&listeners[0]), "{why}: a connection came");
    }
}

/// The prober guest (`extra` options) asks for its own targets, `inside`
/// and `outside` the spec: only `inside` is probed, and nothing it says of
/// `outside` reaches the board.
async fn probes_outside_the_working_set_are_denied(
    inside: &str,
    outside: &str,
    extra: &[(&str, &str)],
) {
    let (port, listeners) = listeners(&[inside, outside]);
    let outsider = &listeners[1];
    outsider.set_nonblocking(true).unwrap();
    let specs = Arc::new(SpecStore::default());
    set_hosts(&specs, &[inside]);
    let port = port.to_string();
    let targets = format!("{inside},{outside},not-an-ip");
    let mut options = vec![("targets", targets.as_str()), ("port", port.as_str())];
    options.extend_from_slice(extra);
    let checkers = common::health_checkers(&specs, &[(common::guest("prober"), &options)]).await;
    let (board, handle) = (&checkers.board, &checkers.handles[0]);
    let mut status = handle.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.rounds.as_ref().is_some_and(|r| r.rounds >= 5)),
    )
    .await
    .unwrap()
    .unwrap();
    // The working-set host was probed; the outsider never saw a connection,
    // and nothing the plugin said about it reached the board.
    assert!(listeners[0].accept().is_ok());
    let outsider_accepted = outsider.accept();
    assert!(
        matches!(&outsider_accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{outsider_accepted:?}"
    );
    let snapshot = board.snapshot();
    let outside = ip(outside);
    assert!(
        !snapshot.failed.contains(&outside)
            && !snapshot.questionable.contains(&outside)
            && !snapshot
                .probed
                .as_ref()
                .is_some_and(|p| p.contains(&outside)),
        "{snapshot:?}"
    );
}

#[test]
fn half_open_needs_cap_net_raw_and_auto_falls_back_to_connects() {
    // Capabilities are per thread: this one runs without CAP_NET_RAW.
    std::thread::spawn(|| {
        if !common::drop_net_raw_on_this_thread() {
            println!("could not drop CAP_NET_RAW; testing as this process is");
        }
        let why = half_open::access().expect_err("no raw sockets without CAP_NET_RAW");
        assert!(why.contains("CAP_NET_RAW"), "{why}");
        common::block_on(async {
            let err = common::refusal("tcp", &[("tcp_check_method", "half-open")]).await;
            assert!(
                err.contains("CAP_NET_RAW") && err.contains("--tcp_check_method connect"),
                "{err}"
            );

            // The default (auto) probes with full connects instead.
            let (port, up) = listeners(&["127.0.0.61", "127.0.0.62"]);
            let port = port.to_string();
            let checker = tcp_checker(
                &["127.0.0.61", "127.0.0.62", "127.0.0.63"],
                &[("tcp_check_port", &port), ("tcp_check_interval", "0.1")],
            )
            .await;
            checker
                .wait("refused host failed", |s| {
                    s.failed == std::collections::BTreeSet::from([ip("127.0.0.63")])
                })
                .await;
            assert!(has_connection(&up[0]), "full connects reach the service");
        });
    })
    .join()
    .unwrap();
}

/// With a health checker, a host is a target only once a probe said it is
/// up: a router down from the start is named by no route at any moment
/// (every write the daemon makes is logged), and the routes are set by the
/// first round, which starts at once rather than an interval (2 s) later.
#[test]
fn a_router_down_from_the_start_is_never_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _up) = listeners(&["127.0.5.11"]);
    let port = port.to_string();
    let routers = ["127.0.5.11", "127.0.5.12"];
    let vpc = common::loopback_vpc(dir.path(), &routers);
    // Four CIDRs over two routers: spread evenly, two would go to each.
    let cidrs = (0..4).map(|c| format!("10.{}.0.0/16", 100 + c));
    let spec = common::spec_file(dir.path(), cidrs, &routers);
    let daemon = common::Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    common::wait_until("4 CIDRs routed in both tables", || {
        (daemon.lines_with("route created").len() == 8).then_some(())
    });
    let writes: Vec<String> = ["route created", "route replaced", "route deleted"]
        .iter()
        .flat_map(|w| daemon.lines_with(w))
        .collect();
    assert!(
        writes
            .iter()
            .all(|l| l.contains("127.0.5.11") && !l.contains("127.0.5.12")),
        "{writes:#?}"
    );
    let tables = daemon.view("/vpc")["route_tables"].to_string();
    assert!(!tables.contains("eni-b"), "{tables}");
    assert!(
        daemon
            .lines_with("host failed")
            .iter()
            .any(|l| l.contains("127.0.5.12"))
    );
}

/// `-H NAME` and `--health-plugin PATH` mix: the bundled checker and the
/// file both run (issue 22: they used to conflict, the conflict masked by
/// the bundled plugin's options on the line).
#[test]
fn a_bundled_checker_and_a_health_plugin_file_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _up) = listeners(&["127.0.5.21"]);
    let port = port.to_string();
    let any_port = common::example("any-port");
    let vpc = common::loopback_vpc(dir.path(), &["127.0.5.21"]);
    let daemon = common::Daemon::start(
        &[
            "-m",
            "fixedconf",
            "--fixed_cidr",
            "10.55.0.0/16",
            "--fixed_hosts",
            "127.0.5.21",
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--health-plugin",
            any_port.to_str().unwrap(),
            "--ports",
            &port,
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    let view = daemon.view("/plugins");
    let names: Vec<&str> = (view["plugins"].as_array().unwrap().iter())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fixedconf", "tcp", "any-port"], "{view}");
    daemon.wait_for_line("route created", std::time::Duration::from_secs(20));
}
