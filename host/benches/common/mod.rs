//! Shared by the benchmark programs.
#![allow(dead_code)] // each benchmark uses a subset

/// Resident memory in MiB, from a `/proc/<pid>/status` file.
pub fn rss_mib(status_file: &str) -> f64 {
    let status = std::fs::read_to_string(status_file).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The embedded VPC every benchmark daemon runs against (never EC2, never
/// the instance metadata service).
pub fn sim_vpc() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sim-vpc.json")
}
