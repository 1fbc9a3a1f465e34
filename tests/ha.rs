//! Controller HA end to end: two or three real daemon processes on a real
//! etcd and moto's EC2 server, each replica's EC2 calls counted by a proxy
//! of its own. Routers are listeners on 127.0.x.y in a 127.0.0.0/16 VPC;
//! nothing leaves loopback.

mod common;

use common::Daemon;
use common::etcd::{Certs, Etcd, EtcdCluster};
use common::fault_proxy::FaultProxy;
use common::moto::{self, CIDRS, Moto, ROUTERS};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const TTL: u64 = 2;
/// Generous bounds for slow machines; the takeover figures are in
/// `cargo bench --bench ha`.
const WITHIN: Duration = Duration::from_secs(20);
const MUTATING: [&str; 4] = [
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "ModifyNetworkInterfaceAttribute",
];

struct Replica {
    daemon: Daemon,
    proxy: FaultProxy,
}

impl Replica {
    fn mutating_calls(&self) -> u64 {
        let calls = self.proxy.calls();
        MUTATING.iter().filter_map(|a| calls.get(*a)).sum()
    }

    /// `/readyz`'s view of the election.
    fn ha(&self) -> serde_json::Value {
        let reply = common::request(self.daemon.port, "GET", "/readyz", &[], b"");
        let readiness: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        readiness["ha"].clone()
    }

    fn leads(&self) -> bool {
        self.ha()["role"] == "leader"
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling a child process this test started.
        unsafe { libc::kill(self.daemon.pid() as i32, signal) };
    }
}

/// The etcd the replicas elect through.
enum Coordination {
    Single(Etcd),
    Members(EtcdCluster),
}

impl Coordination {
    /// --ha-etcd and the flags that go with it.
    fn flags(&self, certs: Option<&Certs>) -> Vec<String> {
        let mut flags = vec!["--ha-etcd".to_string()];
        flags.push(match self {
            Coordination::Single(etcd) => etcd.url(),
            Coordination::Members(cluster) => cluster.urls(),
        });
        if let Some(certs) = certs {
            for (flag, file) in [
                ("--ha-etcd-ca", &certs.ca),
                ("--ha-etcd-cert", &certs.client_cert),
                ("--ha-etcd-key", &certs.client_key),
            ] {
                flags.push(flag.into());
                flags.push(file.to_str().unwrap().into());
            }
        }
        flags
    }

    fn single(&mut self) -> &mut Etcd {
        match self {
            Coordination::Single(etcd) => etcd,
            Coordination::Members(_) => panic!("a single etcd"),
        }
    }
}

/// moto with the shared VPC, its routers listening, an etcd, and replicas.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    etcd: Coordination,
    certs: Option<Certs>,
    moto: Moto,
    ec2: aws_sdk_ec2::Client,
    vpc: moto::Vpc,
    listeners: Vec<Option<TcpListener>>,
    port: u16,
    dir: tempfile::TempDir,
    replicas: Vec<Option<Replica>>,
}

impl Cluster {
    fn start(replicas: usize) -> Self {
        Self::on(replicas, Coordination::Single(Etcd::start()), None)
    }

    fn on(replicas: usize, etcd: Coordination, certs: Option<Certs>) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let moto = Moto::start();
        let ec2 = runtime.block_on(moto.client());
        let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
        let first = TcpListener::bind((ROUTERS[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![Some(first)];
        for router in &ROUTERS[1..] {
            listeners.push(Some(TcpListener::bind((*router, port)).unwrap()));
        }
        let dir = tempfile::tempdir().unwrap();
        common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
        let mut cluster = Self {
            runtime,
            etcd,
            certs,
            moto,
            ec2,
            vpc,
            listeners,
            port,
            dir,
            replicas: Vec::new(),
        };
        for i in 0..replicas {
            let replica = cluster.replica(&format!("replica-{i}"));
            cluster.replicas.push(Some(replica));
        }
        cluster
    }

    fn replica(&self, id: &str) -> Replica {
        let proxy = self.runtime.block_on(FaultProxy::start(&self.moto.url));
        let spec = self.dir.path().join("spec.json");
        let (port, ttl) = (self.port.to_string(), TTL.to_string());
        let cache = self.dir.path().join(id);
        let mut args = vec![
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "0.2",
            "-r",
            moto::REGION,
            "-v",
            &self.vpc.id,
            "--ec2-endpoint",
            &proxy.url,
            "--ha-lease-ttl",
            &ttl,
            "--ha-id",
            id,
        ];
        let etcd = self.etcd.flags(self.certs.as_ref());
        args.extend(etcd.iter().map(String::as_str));
        let daemon = Daemon::start(&args, &cache);
        Replica { daemon, proxy }
    }

    /// Replica `i`, alive.
    fn at(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("a live replica")
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Replica)> {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.as_ref()?)))
    }

    /// The replica that leads, once exactly one does.
    fn leader(&self) -> usize {
        wait_until("one leader", || {
            let leaders: Vec<usize> = self
                .live()
                .filter(|(_, r)| r.leads())
                .map(|(i, _)| i)
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    }

    /// Each table's target per CIDR.
    fn targets(&self) -> Vec<Vec<Option<String>>> {
        let routes = self.runtime.block_on(moto::routes(&self.ec2, &self.vpc.id));
        CIDRS
            .iter()
            .map(|cidr| {
                self.vpc
                    .tables
                    .iter()
                    .map(|t| {
                        routes[t]
                            .iter()
                            .find(|(d, _)| d == cidr)
                            .map(|(_, e)| e.clone())
                    })
                    .collect()
            })
            .collect()
    }

    /// A router carrying routes now, and the ENI its routes point at.
    fn busy_router(&self) -> (String, String) {
        let eni = wait_until("routes set", || {
            let targets = self.targets();
            targets
                .iter()
                .all(|t| t.iter().all(Option::is_some))
                .then(|| targets[0][0].clone().unwrap())
        });
        let ip = self
            .vpc
            .routers
            .iter()
            .find(|(_, (_, e))| *e == eni)
            .map(|(ip, _)| ip.clone())
            .unwrap();
        (ip, eni)
    }

    fn kill_router(&mut self, ip: &str) {
        self.listeners[ROUTERS.iter().position(|r| *r == ip).unwrap()] = None;
    }

    fn routes_moved_off(&self, eni: &str) -> bool {
        self.targets()
            .iter()
            .flatten()
            .all(|t| t.as_deref().is_some_and(|t| t != eni))
    }
}

fn wait_until<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(start.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two replicas: one leads and alone writes; killed together with a
/// router, the other takes over and moves that router's routes.
#[test]
fn only_the_leader_writes_and_a_standby_takes_over_a_failover() {
    let mut cluster = Cluster::start(2);
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
    // The standby observes the VPC too, within the describe budget.
    assert!(cluster.at(standby).proxy.calls()["DescribeRouteTables"] >= 1);

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
    let mut cluster = Cluster::start(2);
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

/// A leader frozen past its lease (SIGSTOP) while a router dies: the
/// standby takes over and fails the router over; the old leader, resumed,
/// writes nothing.
#[test]
fn a_frozen_leader_writes_nothing_when_it_resumes() {
    let mut cluster = Cluster::start(2);
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
    let mut cluster = Cluster::start(2);
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
    }
    cluster.etcd.single().resume();
    cluster.leader();
}

/// A 3-member etcd cluster losing a member (the one every replica asks
/// first) changes nothing: the same replica leads the same term.
#[test]
fn losing_one_etcd_member_changes_no_leadership() {
    let mut cluster = Cluster::on(2, Coordination::Members(EtcdCluster::start(3)), None);
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
    let cluster = Cluster::on(2, Coordination::Single(etcd), Some(certs));
    let leader = cluster.leader();
    cluster.busy_router();
    assert!(cluster.at(leader).mutating_calls() > 0);
    assert_eq!(cluster.at(1 - leader).mutating_calls(), 0);
}
