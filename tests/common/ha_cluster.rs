//! Controller HA clusters for the tests and the benchmark: moto with a
//! shared VPC whose routers are listeners on 127.0.x.y, an etcd (one member
//! or several), and daemon replicas, each with its own counting proxy in
//! front of moto, so that every replica's EC2 calls are known.

use super::Daemon;
use super::etcd::{Certs, Etcd, EtcdCluster};
use super::fault_proxy::FaultProxy;
use super::moto::{self, CIDRS, Moto, ROUTERS};
use std::net::TcpListener;
use std::time::Duration;

/// Generous bounds for slow machines; the takeover figures are in
/// `cargo bench --bench ha`.
pub const WITHIN: Duration = Duration::from_secs(20);
pub const MUTATING: [&str; 4] = [
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "ModifyNetworkInterfaceAttribute",
];

pub struct Replica {
    pub daemon: Daemon,
    pub proxy: FaultProxy,
}

impl Replica {
    pub fn mutating_calls(&self) -> u64 {
        let calls = self.proxy.calls();
        MUTATING.iter().filter_map(|a| calls.get(*a)).sum()
    }

    /// `/readyz`'s view of the election.
    pub fn ha(&self) -> serde_json::Value {
        let reply = super::request(self.daemon.port, "GET", "/readyz", &[], b"");
        let readiness: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        readiness["ha"].clone()
    }

    pub fn leads(&self) -> bool {
        self.ha()["role"] == "leader"
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling a child process this test started.
        unsafe { libc::kill(self.daemon.pid() as i32, signal) };
    }
}

/// The etcd the replicas elect through.
pub enum Coordination {
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

    pub fn single(&mut self) -> &mut Etcd {
        match self {
            Coordination::Single(etcd) => etcd,
            Coordination::Members(_) => panic!("a single etcd"),
        }
    }
}

/// moto with the shared VPC, its routers listening, an etcd, and replicas.
pub struct Cluster {
    pub runtime: tokio::runtime::Runtime,
    pub etcd: Coordination,
    certs: Option<Certs>,
    moto: Moto,
    pub ec2: aws_sdk_ec2::Client,
    pub vpc: moto::Vpc,
    listeners: Vec<Option<TcpListener>>,
    port: u16,
    dir: tempfile::TempDir,
    /// Lease TTL of the replicas, seconds.
    ttl: u64,
    /// The events queue replicas read, each through its own proxy.
    events_queue: Option<String>,
    pub replicas: Vec<Option<Replica>>,
}

impl Cluster {
    /// `replicas` replicas with lease TTL `ttl` on one etcd.
    pub fn start(replicas: usize, ttl: u64) -> Self {
        Self::on(replicas, ttl, Coordination::Single(Etcd::start()), None)
    }

    /// As [`Cluster::start`], the replicas reading an events queue on moto:
    /// the cluster and an SQS client of that queue, with its URL.
    pub fn with_events_queue(replicas: usize, ttl: u64) -> (Self, aws_sdk_sqs::Client, String) {
        let mut cluster = Self::on(0, ttl, Coordination::Single(Etcd::start()), None);
        let url = cluster.moto.url.clone();
        let (sqs, queue) = cluster
            .runtime
            .block_on(moto::sqs_queue(&url, "vpcrouter-events"));
        cluster.events_queue = Some(queue.clone());
        for i in 0..replicas {
            let replica = cluster.replica(&format!("replica-{i}"));
            cluster.replicas.push(Some(replica));
        }
        (cluster, sqs, queue)
    }

    pub fn on(replicas: usize, ttl: u64, etcd: Coordination, certs: Option<Certs>) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let moto = Moto::start();
        let ec2 = runtime.block_on(moto.client());
        let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
        let (listeners, port) = moto::listening(&ROUTERS);
        let dir = tempfile::tempdir().unwrap();
        super::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
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
            ttl,
            events_queue: None,
            replicas: Vec::new(),
        };
        for i in 0..replicas {
            let replica = cluster.replica(&format!("replica-{i}"));
            cluster.replicas.push(Some(replica));
        }
        cluster
    }

    /// Start a replica with id `id`.
    pub fn replica(&self, id: &str) -> Replica {
        let proxy = self.runtime.block_on(FaultProxy::start(&self.moto.url));
        let spec = self.dir.path().join("spec.json");
        let cache = self.dir.path().join(id);
        let mut args = moto::daemon_args(&spec, self.port, &self.vpc, &proxy.url);
        args.extend(["--ha-lease-ttl".into(), self.ttl.to_string()]);
        args.extend(["--ha-id".into(), id.to_string()]);
        args.extend(self.etcd.flags(self.certs.as_ref()));
        if let Some(queue) = &self.events_queue {
            args.extend(["--events-queue".into(), queue.clone()]);
            args.extend(["--events-endpoint".into(), proxy.url.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::start(&args, &cache);
        Replica { daemon, proxy }
    }

    /// Replica `i`, alive.
    pub fn at(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("a live replica")
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &Replica)> {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.as_ref()?)))
    }

    /// The replica that leads, once exactly one does.
    pub fn leader(&self) -> usize {
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
    pub fn targets(&self) -> Vec<Vec<Option<String>>> {
        let routes = self.runtime.block_on(moto::routes(&self.ec2, &self.vpc.id));
        CIDRS
            .iter()
            .map(|cidr| moto::targets_in(&routes, &self.vpc, cidr))
            .collect()
    }

    /// A router carrying routes now, and the ENI its routes point at.
    pub fn busy_router(&self) -> (String, String) {
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

    pub fn kill_router(&mut self, ip: &str) {
        self.listeners[ROUTERS.iter().position(|r| *r == ip).unwrap()] = None;
    }

    /// Every router listening again.
    pub fn revive_routers(&mut self) {
        for (listener, router) in self.listeners.iter_mut().zip(ROUTERS) {
            if listener.is_none() {
                *listener = Some(TcpListener::bind((router, self.port)).unwrap());
            }
        }
    }

    /// The etcd endpoint URLs, as --ha-etcd takes them.
    pub fn etcd_urls(&self) -> String {
        self.etcd.flags(None)[1].clone()
    }

    pub fn routes_moved_off(&self, eni: &str) -> bool {
        self.targets()
            .iter()
            .flatten()
            .all(|t| t.as_deref().is_some_and(|t| t != eni))
    }
}

pub use super::wait_until;
