//! A small cluster on the embedded VPC: two router hosts that are real TCP
//! listeners on 127.0.N.10 and 127.0.N.11, each in its own subnet with its
//! own route table (the first also holds a gateway route), and the daemon
//! running configfile on a spec of three CIDRs with tcp checks every 0.2 s.

use std::net::TcpListener;

use super::Daemon;

pub const CIDRS: [&str; 3] = ["10.55.0.0/16", "10.56.0.0/16", "10.57.0.0/16"];

pub struct SimCluster {
    pub daemon: Daemon,
    /// The routers' addresses (ENIs `eni-a`, `eni-b`; tables `rtb-a`, `rtb-b`).
    pub routers: [String; 2],
    listeners: Vec<Option<TcpListener>>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SimCluster {
    /// Routers on 127.0.`net`.x (tests running at once use different nets);
    /// `extra` daemon flags.
    pub fn start(net: u8, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let routers = [format!("127.0.{net}.10"), format!("127.0.{net}.11")];
        let first = TcpListener::bind((routers[0].as_str(), 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let listeners = vec![
            Some(first),
            Some(TcpListener::bind((routers[1].as_str(), port)).unwrap()),
        ];
        let spec_file = super::spec_file(
            dir.path(),
            CIDRS.map(String::from),
            &routers.each_ref().map(String::as_str),
        );
        let vpc_file = super::loopback_vpc(dir.path(), &routers.each_ref().map(String::as_str));
        let mut args = super::configfile_tcp_args(&spec_file, port);
        args.extend(["--sim-vpc", vpc_file.to_str().unwrap()].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let daemon = Daemon::start(&super::strs(&args), dir.path());
        Self {
            daemon,
            routers,
            listeners,
            port,
            _dir: dir,
        }
    }

    /// Close `router`'s port: its probes are refused from now on.
    pub fn kill(&mut self, router: &str) {
        let index = self.routers.iter().position(|r| r == router).unwrap();
        self.listeners[index] = None;
    }

    /// Open `router`'s port again: it recovers.
    #[allow(dead_code)] // not every test binary revives a router
    pub fn revive(&mut self, router: &str) {
        let index = self.routers.iter().position(|r| r == router).unwrap();
        self.listeners[index] = Some(TcpListener::bind((router, self.port)).unwrap());
    }
}
