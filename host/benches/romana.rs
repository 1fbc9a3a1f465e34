//! The romana plugin: spec translation time for a topology of 10,000 hosts
//! in 1,000 groups (natively, the same code the plugin runs), and the time
//! from an etcd write to the new spec accepted by the real daemon, for a
//! small topology and for the 10,000-host one, with a real etcd.
//!
//! `cargo bench --bench romana` (needs `etcd` and `etcdctl`).

#[allow(dead_code)]
#[path = "../../tests/common/etcd.rs"]
mod etcd;

mod common;

use common::free_port;
use romana_topology::fixture::{Shape, topology};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LARGE: Shape = Shape {
    networks: 2,
    groups: 500,
    hosts_per_group: 10,
    depth: 3,
};
const SMALL: Shape = Shape {
    networks: 1,
    groups: 5,
    hosts_per_group: 3,
    depth: 2,
};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let (large, routes) = topology(LARGE);
    let text = large.to_string();
    let translate = median(
        (0..20)
            .map(|_| {
                let start = Instant::now();
                let translated = romana_topology::routes(text.as_bytes()).unwrap();
                let took = start.elapsed();
                assert_eq!(translated.len(), routes.len());
                took
            })
            .collect(),
    );
    println!(
        "translation, 10,000 hosts in 1,000 groups ({} KB of JSON), native: {:.2} ms (median of 20)",
        text.len() / 1024,
        translate.as_secs_f64() * 1e3
    );
    for (name, shape) in [("small (15 hosts)", SMALL), ("10,000 hosts", LARGE)] {
        let latencies = write_to_accepted(shape, 15);
        println!(
            "etcd write -> spec accepted, {name}, poll 0.5 s: median {:.0} ms, max {:.0} ms (15 writes)",
            median(latencies.clone()).as_secs_f64() * 1e3,
            latencies.iter().max().unwrap().as_secs_f64() * 1e3
        );
    }
}

/// Write `writes` different topologies of `shape` to etcd at random
/// moments; the time from each write to the daemon's "accepted route spec".
fn write_to_accepted(shape: Shape, writes: usize) -> Vec<Duration> {
    let etcd = etcd::Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(["-m", "romana", "-H", "none", "-a", "127.0.0.1"])
        .args(["-p", &free_port().to_string()])
        .args([
            "--etcd_addr",
            "127.0.0.1",
            "--etcd_port",
            &etcd.port.to_string(),
        ])
        .arg("--sim-vpc")
        .arg(common::sim_vpc())
        .arg("--plugin-dir")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
        .arg("--plugin-cache-dir")
        .arg(dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (accepted, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("accepted route spec") {
                let _ = accepted.send(Instant::now());
            }
        }
    });
    let mut latencies = Vec::new();
    for i in 0..writes + 1 {
        // One host fewer every other time, so every write changes the spec.
        let (value, _) = topology(Shape {
            hosts_per_group: shape.hosts_per_group - i % 2,
            ..shape
        });
        std::thread::sleep(Duration::from_millis(200 + (i as u64 * 137) % 500));
        let written = Instant::now();
        etcd.put(etcd::KEY, &value.to_string());
        let seen = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("spec accepted");
        // The first write is the start-up load.
        if i > 0 {
            latencies.push(seen.saturating_duration_since(written));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    latencies
}
