//! ICMP health checks through the real host: loopback always answers; for
//! failures, a private network namespace the test creates itself (root
//! only; elsewhere `common::cannot_run`: a failure under CI), where VPC-like addresses are
//! safe because nothing can leave it.

mod common;

use common::ip;

use std::sync::Arc;
use std::time::Duration;
use vpcrouter::health::{HealthBoard, HealthSnapshot, State};
use vpcrouter::probe::Method;
use vpcrouter::probe::icmp::{self, Access};
use vpcrouter::spec_store::SpecStore;

/// Health plugins (by bundled name, with options) checking `hosts`.
struct Checkers {
    board: Arc<HealthBoard>,
    inner: common::HealthCheckers,
}

async fn checkers(hosts: &[&str], plugins: &[(&str, Vec<(&str, &str)>)]) -> Checkers {
    let specs = Arc::new(SpecStore::default());
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    specs
        .offer("test", [("10.99.0.0/16".to_string(), hosts)])
        .unwrap();
    let plugins: Vec<_> = plugins
        .iter()
        .map(|(name, options)| (common::plugin(name), options.as_slice()))
        .collect();
    let inner = common::health_checkers(&specs, &plugins).await;
    Checkers {
        board: inner.board.clone(),
        inner,
    }
}

impl Checkers {
    async fn wait(&self, what: &str, pred: impl Fn(&HealthSnapshot) -> bool) {
        self.inner.wait(what, pred).await;
    }
}

fn icmp_permitted() -> bool {
    match icmp::access() {
        Ok(_) => true,
        Err(why) => {
            common::cannot_run(why);
            false
        }
    }
}

#[tokio::test]
async fn loopback_hosts_answer_icmp_echo() {
    if !icmp_permitted() {
        return;
    }
    let hosts = ["127.0.0.71", "127.0.0.72", "::1"];
    let checker = checkers(
        &hosts,
        &[("icmpecho", vec![("icmp_check_interval", "0.1")])],
    )
    .await;
    let mut status = checker.inner.handles[0].status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.rounds.as_ref().is_some_and(|r| r.rounds >= 3)),
    )
    .await
    .expect("rounds")
    .unwrap();
    let stats = status.borrow().rounds.clone().unwrap();
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert!(stats.rtt_us.is_some());
    assert_eq!(checker.board.snapshot(), HealthSnapshot::default());
}

/// Run `test` on a thread of its own in a fresh network namespace with `lo`
/// up, `10.33.20.142` on it, and `10.33.21.0/24` routed into nowhere (echo
/// requests there are never answered); where that is not permitted, see
/// `common::cannot_run`.
fn in_private_netns(test: impl FnOnce() + Send + 'static) {
    let setup = std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            common::cannot_run(format!(
                "cannot create a network namespace ({}); run as root",
                std::io::Error::last_os_error()
            ));
            return;
        }
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.33.20.142/32", "dev", "lo"],
            &["route", "add", "blackhole", "10.33.21.0/24"],
        ] {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(status.success(), "ip {args:?}");
        }
        test();
    });
    setup.join().expect("namespace test");
}

#[test]
fn unanswered_echo_fails_a_host_and_multi_fails_on_any_plugin() {
    in_private_netns(|| {
        common::block_on(async {
            // A TCP listener on .142, so tcp says healthy there.
            let listener = std::net::TcpListener::bind(("10.33.20.142", 0)).unwrap();
            let port = listener.local_addr().unwrap().port().to_string();
            let hosts = ["10.33.20.142", "10.33.21.5"];
            let fast = [("icmp_check_interval", "0.2")];
            let checker = checkers(&hosts, &[("icmpecho", fast.to_vec())]).await;
            checker
                .wait("unanswered host failed", |s| {
                    s.failed.contains(&ip("10.33.21.5"))
                })
                .await;
            assert_eq!(
                checker.board.snapshot().state(&ip("10.33.20.142")),
                State::Healthy
            );

            // multi: icmpecho and tcp; .142 answers both until the listener goes.
            let tcp = vec![
                ("tcp_check_port", port.as_str()),
                ("tcp_check_interval", "0.2"),
            ];
            let multi = checkers(&hosts, &[("icmpecho", fast.to_vec()), ("tcp", tcp)]).await;
            multi
                .wait("unanswered host failed", |s| {
                    s.failed.contains(&ip("10.33.21.5"))
                })
                .await;
            assert_eq!(
                multi.board.snapshot().state(&ip("10.33.20.142")),
                State::Healthy
            );
            drop(listener);
            multi
                .wait("tcp alone fails .142", |s| {
                    s.failed.contains(&ip("10.33.20.142"))
                })
                .await;
        })
    });
}

#[test]
fn unprivileged_datagram_sockets_are_used_where_ping_group_range_allows() {
    in_private_netns(|| {
        // The sysctl is per network namespace: this changes nothing outside.
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").unwrap();
        assert_eq!(icmp::access(), Ok(Access::Datagram));
        common::block_on(async {
            let outcomes = Method::Icmp
                .outcomes(
                    &[ip("10.33.20.142"), ip("10.33.21.5")],
                    Duration::from_millis(300),
                )
                .await;
            assert!(outcomes[0].ok, "{outcomes:?}");
            assert!(!outcomes[1].ok, "{outcomes:?}");
        });
    });
}

#[test]
fn icmpecho_refuses_to_start_saying_what_to_grant_when_icmp_is_not_permitted() {
    // A fresh namespace has the default ping_group_range ("1 0": nobody).
    in_private_netns(|| {
        assert!(common::drop_net_raw_on_this_thread(), "capset");
        let denied = icmp::access().expect_err("no datagram ICMP and no CAP_NET_RAW");
        assert!(
            denied.contains("ping_group_range") && denied.contains("CAP_NET_RAW"),
            "{denied}"
        );
        common::block_on(async {
            let err = common::refusal("icmpecho", &[]).await;
            assert!(
                err.contains("refused its options: cannot open an ICMP socket"),
                "{err}"
            );
        });
    });
}
