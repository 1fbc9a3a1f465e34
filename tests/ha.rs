//! Controller HA end to end: two or three real daemon processes on a real
//! etcd and moto's EC2 server, each replica's EC2 calls counted by a proxy
//! of its own. Routers are listeners on 127.0.x.y in a 127.0.0.0/16 VPC;
//! nothing leaves loopback.

mod common;

use common::etcd::{Certs, Etcd, EtcdCluster};
use common::ha_cluster::{Cluster, Coordination, Replica, WITHIN, wait_until};
use std::time::{Duration, Instant};

const TTL: u64 = 2;

/// Two replicas: one leads and alone writes; killed together with a
/// router, the other takes over and moves that router's routes.
#[test]
fn only_the_leader_writes_and_a_standby_takes_over_a_failover() {
    let mut cluster = Cluster::start(2, TTL);
    let leader = cluster.leader();
    let standby = 1 - leader;
    let (victim, eni) = cluster.busy_router();
    assert!(cluster.at(leader).mutating_calls() > 0);
    assert_eq!(cluster.at(standby).mutating_calls(), 0, "a standby wrote");
    wait_until("the standby knows the leader", || {
        let ha = cluster.at(standby).ha();
        assert_eq!(ha["role"], "standby");
        (ha["leader"] == format!("replica-{leader}")).then_some(())
    });
    // What each replica shows of the election.
    let page = common::request(
        cluster.at(standby).daemon.port,
        "GET",
        "/",
        &[("Accept", "text/html")],
        b"",
    );
    assert!(
        page.body.contains("standby: this replica writes nothing"),
        "{}",
        page.body
    );
    let index = cluster.at(leader).daemon.view("/");
    assert_eq!(index["ha"]["role"], "leader", "{index}");
    // Only the leader takes a rebalance request; the standby says whom to ask.
    let port = cluster.at(standby).daemon.port;
    let refused = common::request(port, "POST", "/rebalance", &[], b"");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused
            .body
            .contains(&format!("ask the leader (replica-{leader})"))
    );
    let events = cluster.at(leader).daemon.view("/events").to_string();
    assert!(
        events.contains(&format!("replica-{leader} leads")),
        "{events}"
    );
    wait_until("renewals counted", || {
        let port = cluster.at(leader).daemon.port;
        let metrics = common::request(port, "GET", "/metrics", &[], b"").body;
        assert!(metrics.contains("vpcrouter_leader 1"), "{metrics}");
        metrics
            .contains("vpcrouter_lease_renewals_total{outcome=\"ok\"}")
            .then_some(())
    });
    // The standby observes the VPC too: at start, then every recheck
    // (30 s) only, whatever the health changes.
    assert_eq!(cluster.at(standby).proxy.calls()["DescribeRouteTables"], 1);

    // The leader and a router it had routes on die at the same moment.
    cluster.at(leader).signal(libc::SIGKILL);
    cluster.kill_router(&victim);
    let killed = Instant::now();
    wait_until("routes moved off the dead router", || {
        cluster.routes_moved_off(&eni).then_some(())
    });
    let took = killed.elapsed();
    cluster.replicas[leader] = None;
    assert!(cluster.at(standby).leads());
    assert!(cluster.at(standby).mutating_calls() > 0);
    println!("takeover and failover {took:?} after the kill (TTL {TTL} s)");
}

/// SIGTERM: the leader resigns, the standby leads within a second.
#[test]
fn a_leader_stopping_hands_over_at_once() {
    let mut cluster = Cluster::start(2, TTL);
    let leader = cluster.leader();
    let standby = 1 - leader;
    let mut stopped = cluster.replicas[leader].take().unwrap();
    let started = Instant::now();
    stopped.daemon.sigterm();
    let standby = cluster.replicas[standby].as_ref().unwrap();
    while !standby.leads() {
        assert!(started.elapsed() < WITHIN, "no takeover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    println!("hand-over took {took:?}");
    assert!(took < Duration::from_secs(TTL), "{took:?}: not a hand-over");
}

/// A drain outlives its leader: taken by the leader (a standby refers the
/// operator to it), it moves the router's routes, the standby reads it from
/// etcd, and after a kill -9 of the leader the new one keeps it (a replica
/// started afterwards reads it too), and undrains it for good.
#[test]
fn a_drain_outlives_the_leader_that_took_it() {
    let mut cluster = Cluster::start(2, TTL);
    let leader = cluster.leader();
    let standby = 1 - leader;
    let (victim, eni) = cluster.busy_router();
    let drain = format!("/hosts/{victim}/drain");
    let body = br#"{"reason": "patching"}"#;
    let (leader_port, standby_port) = (
        cluster.at(leader).daemon.port,
        cluster.at(standby).daemon.port,
    );
    let refused = common::request(standby_port, "POST", &drain, &[], body);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let taken = common::request(leader_port, "POST", &drain, &[], body);
    assert_eq!(taken.status, 200, "{}", taken.body);
    wait_until("the drained router's routes moved", || {
        cluster.routes_moved_off(&eni).then_some(())
    });
    let drained = |replica: &Replica| {
        let ips = replica.daemon.view("/ips");
        (ips["hosts"][&victim]["drained"]["reason"] == "patching").then_some(())
    };
    wait_until("the standby reads the drain", || {
        drained(cluster.at(standby))
    });

    cluster.at(leader).signal(libc::SIGKILL);
    cluster.replicas[leader] = None;
    wait_until("the standby leads", || {
        cluster.at(standby).leads().then_some(())
    });
    assert!(
        drained(cluster.at(standby)).is_some(),
        "the new leader dropped the drain"
    );
    let late = cluster.replica("replica-late");
    wait_until("a replica started later reads the drain", || drained(&late));
    assert!(cluster.routes_moved_off(&eni));

    let lifted = common::request(standby_port, "DELETE", &drain, &[], b"");
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    wait_until("the undrain reaches the other replica", || {
        let ips = late.daemon.view("/ips");
        (ips["drained_ips"] == serde_json::json!([])).then_some(())
    });
}

/// Only the leader reads the events queue (a standby leaves the messages
/// to it); after a kill -9 of the leader the new one reads it and acts on
/// a Spot interruption warning.
#[test]
fn only_the_leader_reads_the_events_queue() {
    let (mut cluster, sqs, queue) = Cluster::with_events_queue(2, TTL);
    let leader = cluster.leader();
    let standby = 1 - leader;
    let spot = |instance: &str| {
        serde_json::json!({
            "version": "0", "id": "1", "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2", "account": "123456789012", "region": "us-east-1",
            "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "resources": [], "detail": {"instance-id": instance, "instance-action": "terminate"},
        })
        .to_string()
    };
    let interrupt = |cluster: &Cluster, eni: &str| {
        let instance = (cluster.vpc.routers.values())
            .find(|(_, e)| e == eni)
            .map(|(instance, _)| instance.clone())
            .unwrap();
        let sent = sqs
            .send_message()
            .queue_url(&queue)
            .message_body(spot(&instance))
            .send();
        cluster.runtime.block_on(sent).unwrap();
        wait_until("routes off the interrupted router", || {
            cluster.routes_moved_off(eni).then_some(())
        });
    };
    let (_, eni) = cluster.busy_router();
    interrupt(&cluster, &eni);
    let receives = |r: &Replica| r.proxy.calls().get("ReceiveMessage").copied().unwrap_or(0);
    assert!(receives(cluster.at(leader)) > 0);
    assert_eq!(receives(cluster.at(standby)), 0, "a standby read the queue");

    cluster.at(leader).signal(libc::SIGKILL);
    cluster.replicas[leader] = None;
    wait_until("the standby leads", || {
        cluster.at(standby).leads().then_some(())
    });
    let (_, eni) = cluster.busy_router();
    interrupt(&cluster, &eni);
    assert!(receives(cluster.at(standby)) > 0);
}

/// A leader frozen past its lease (SIGSTOP) while a router dies: the
/// standby takes over and fails the router over; the old leader, resumed,
/// writes nothing.
#[test]
fn a_frozen_leader_writes_nothing_when_it_resumes() {
    let mut cluster = Cluster::start(2, TTL);
    let leader = cluster.leader();
    let standby = 1 - leader;
    let (victim, eni) = cluster.busy_router();
    let frozen = cluster.replicas[leader].as_ref().unwrap();
    frozen.signal(libc::SIGSTOP);
    let writes_before = frozen.mutating_calls();
    cluster.kill_router(&victim);
    wait_until("the standby moved the routes", || {
        cluster.routes_moved_off(&eni).then_some(())
    });
    assert!(cluster.replicas[standby].as_ref().unwrap().leads());
    // Resumed, its old view (the router alive, the routes on it) would have
    // it "repair" them back.
    let frozen = cluster.replicas[leader].as_ref().unwrap();
    frozen.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(TTL + 2));
    let frozen = cluster.replicas[leader].as_ref().unwrap();
    assert_eq!(
        frozen.mutating_calls(),
        writes_before,
        "the resumed leader wrote"
    );
    assert!(!frozen.leads());
    assert!(cluster.routes_moved_off(&eni));
}

/// etcd gone: the leader stops writing once its lease may have expired,
/// every replica keeps serving and says why; etcd back: someone leads again.
#[test]
fn without_etcd_nobody_writes_and_election_resumes_when_it_returns() {
    let mut cluster = Cluster::start(2, TTL);
    let leader = cluster.leader();
    cluster.etcd.single().stop();
    wait_until("the leader stepped down", || {
        let ha = cluster.replicas[leader].as_ref().unwrap().ha();
        (ha["role"] == "standby" && ha["problem"].is_string()).then_some(())
    });
    let writes: Vec<u64> = cluster.live().map(|(_, r)| r.mutating_calls()).collect();
    let (victim, _) = cluster.busy_router();
    cluster.kill_router(&victim);
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = cluster.live().map(|(_, r)| r.mutating_calls()).collect();
    assert_eq!(writes, after, "a replica wrote without a lease");
    for (_, replica) in cluster.live() {
        assert_eq!(replica.daemon.http("GET", "/healthz", b"").0, 200);
        // A drain cannot be kept where the replicas share it: refused.
        let drain = format!("/hosts/{victim}/drain");
        let (status, answer) = replica.daemon.http("POST", &drain, b"");
        assert!([409, 503].contains(&status), "{status} {answer}");
    }
    cluster.etcd.single().resume();
    let leader = cluster.leader();
    let drained = cluster.at(leader).daemon.view("/ips")["drained_ips"].clone();
    assert_eq!(drained, serde_json::json!([]), "a refused drain was kept");
}

/// A 3-member etcd cluster losing a member (the one every replica asks
/// first) changes nothing: the same replica leads the same term.
#[test]
fn losing_one_etcd_member_changes_no_leadership() {
    let mut cluster = Cluster::on(2, TTL, Coordination::Members(EtcdCluster::start(3)), None);
    let leader = cluster.leader();
    let term = cluster.at(leader).ha()["term"].clone();
    match &mut cluster.etcd {
        Coordination::Members(members) => members.kill(0),
        Coordination::Single(_) => unreachable!(),
    }
    let until = Instant::now() + Duration::from_secs(3 * TTL);
    while Instant::now() < until {
        let ha = cluster.at(leader).ha();
        assert_eq!(ha["role"], "leader", "{ha}");
        assert_eq!(ha["term"], term, "{ha}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let standby = cluster.at(1 - leader).ha();
    assert_eq!(standby["leader"], format!("replica-{leader}"), "{standby}");
}

/// etcd over TLS with client certificates.
#[test]
fn replicas_elect_through_etcd_over_tls() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(certs_dir.path());
    let etcd = Etcd::start_tls(&certs);
    let cluster = Cluster::on(2, TTL, Coordination::Single(etcd), Some(certs));
    let leader = cluster.leader();
    cluster.busy_router();
    assert!(cluster.at(leader).mutating_calls() > 0);
    assert_eq!(cluster.at(1 - leader).mutating_calls(), 0);
}

/// Bad HA flags are one clear line and exit code 2.
#[test]
fn bad_ha_flags_are_refused_at_start() {
    let spec = common::repo().join("examples/spec.json");
    let spec = spec.to_str().unwrap();
    for (flags, expected) in [
        (
            vec!["--ha-etcd", "10.0.0.5:2379"],
            "expected http://HOST:PORT",
        ),
        (
            vec!["--ha-etcd", "https://127.0.0.1:2379"],
            "https endpoints need --ha-etcd-ca",
        ),
        (
            vec!["--ha-etcd", "http://127.0.0.1:2379", "--ha-lease-ttl", "1"],
            "at least 2",
        ),
        (vec!["--ha-id", "a"], "--ha-etcd"),
    ] {
        let mut args = vec!["-m", "configfile", "-f", spec];
        args.extend(flags.iter().copied());
        let (code, stderr) = common::run_to_exit(&args);
        assert_eq!(code, 2, "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}
