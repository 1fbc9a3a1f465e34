//! A real etcd (Debian's `etcd-server`) per test, on free loopback ports
//! with a temporary data dir; plain HTTP or TLS with client certificates.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "/romana/ipam/data";

/// Certificates for a TLS etcd: a CA, the server's (for 127.0.0.1) and a
/// client's, as PEM files.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["vpcrouter".into()]);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

pub struct Etcd {
    child: Option<Child>,
    pub port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// For `etcdctl` against a TLS etcd: (ca, cert, key).
    client: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Etcd {
    /// A plain-HTTP etcd.
    pub fn start() -> Self {
        Self::launch(None, None)
    }

    /// An etcd serving TLS that requires client certificates.
    pub fn start_tls(certs: &Certs) -> Self {
        let server = (
            certs.ca.clone(),
            certs.server_cert.clone(),
            certs.server_key.clone(),
        );
        let client = (
            certs.ca.clone(),
            certs.client_cert.clone(),
            certs.client_key.clone(),
        );
        Self::launch(Some(server), Some(client))
    }

    fn launch(
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        client: Option<(PathBuf, PathBuf, PathBuf)>,
    ) -> Self {
        let mut etcd = Self {
            child: None,
            port: super::free_port(),
            peer_port: super::free_port(),
            data: tempfile::tempdir().unwrap(),
            tls,
            client,
        };
        // A port found free can be taken before etcd binds it (tests run
        // side by side): then etcd exits at once, and new ports are tried.
        for _ in 0..3 {
            if etcd.try_resume() {
                return etcd;
            }
            etcd.port = super::free_port();
            etcd.peer_port = super::free_port();
            etcd.data = tempfile::tempdir().unwrap();
        }
        panic!("etcd exited at start three times (its ports taken?)");
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    /// Start (again) on the same ports and data.
    pub fn resume(&mut self) {
        assert!(self.try_resume(), "etcd exited at start");
    }

    /// Start on the ports and data set; false if etcd exits before it
    /// answers.
    fn try_resume(&mut self) -> bool {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        command
            .args(["--name", "test", "--data-dir"])
            .arg(self.data.path())
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((ca, cert, key)) = &self.tls {
            command
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--client-cert-auth");
        }
        self.child = Some(
            command
                .spawn()
                .expect("etcd (apt-get install etcd-server etcd-client)"),
        );
        let start = Instant::now();
        while self.etcdctl(&["endpoint", "health"]).is_err() {
            let child = self.child.as_mut().expect("started");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// Stop it (the data stays for `resume`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `etcdctl` (v3 API) against this etcd.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url(), "--dial-timeout", "2s"])
            .args(args);
        if let Some((ca, cert, key)) = &self.client {
            command
                .arg("--cacert")
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
        let output = command.output().map_err(|e| e.to_string())?;
        match output.status.success() {
            true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }

    pub fn put(&self, key: &str, value: &str) {
        // Through a file: topologies can be larger than a command line.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), value).unwrap();
        let mut command = Command::new("sh");
        let mut tls = String::new();
        if let Some((ca, cert, key)) = &self.client {
            tls = format!(
                "--cacert {} --cert {} --key {}",
                ca.display(),
                cert.display(),
                key.display()
            );
        }
        command.env("ETCDCTL_API", "3").arg("-c").arg(format!(
            "etcdctl --endpoints {} {tls} put {key} < {}",
            self.url(),
            file.path().display()
        ));
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn delete(&self, key: &str) {
        self.etcdctl(&["del", key]).unwrap();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster of real etcd members on loopback, each with its own client
/// and peer ports and data dir.
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    ports: Vec<(u16, u16)>,
    _data: Vec<tempfile::TempDir>,
}

impl EtcdCluster {
    pub fn start(size: usize) -> Self {
        let ports: Vec<(u16, u16)> = (0..size)
            .map(|_| (super::free_port(), super::free_port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let data: Vec<tempfile::TempDir> =
            (0..size).map(|_| tempfile::tempdir().unwrap()).collect();
        let members = ports
            .iter()
            .zip(&data)
            .enumerate()
            .map(|(i, ((client, peer), dir))| {
                let (client, peer) = (
                    format!("http://127.0.0.1:{client}"),
                    format!("http://127.0.0.1:{peer}"),
                );
                Some(
                    Command::new("etcd")
                        .args(["--name", &format!("m{i}"), "--data-dir"])
                        .arg(dir.path())
                        .args(["--listen-client-urls", &client])
                        .args(["--advertise-client-urls", &client])
                        .args(["--listen-peer-urls", &peer])
                        .args(["--initial-advertise-peer-urls", &peer])
                        .args(["--initial-cluster", &initial])
                        .args(["--initial-cluster-state", "new"])
                        .args(["--initial-cluster-token", "vpcrouter-test"])
                        // Loopback timings: losing the Raft leader costs
                        // ~0.3 s instead of 1-2 s (etcd's defaults are for
                        // real networks), within the tests' 2 s lease.
                        .args(["--heartbeat-interval", "25"])
                        .args(["--election-timeout", "250"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("etcd (apt-get install etcd-server etcd-client)"),
                )
            })
            .collect();
        let cluster = Self {
            members,
            ports,
            _data: data,
        };
        let start = Instant::now();
        while !cluster.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd cluster did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Every member's client URL, comma-separated (for --ha-etcd).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|(client, _)| format!("http://127.0.0.1:{client}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn healthy(&self) -> bool {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.urls(), "--dial-timeout", "2s"])
            .args(["endpoint", "health", "--cluster"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Kill member `i` (as a host failing).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
