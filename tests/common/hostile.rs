//! What the hostile tests and benchmarks set up: silent hosts, a large
//! working set, a component that is dear to compile.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A listener on every loopback address whose accept queue is full: a
/// connect to any 127/8 address on its port gets no answer (its SYN is
/// dropped), as from a host that went silent. Keep all three while the
/// hosts must stay silent; the port is the third.
pub fn silent_port() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    silent.bind(&any.into()).unwrap();
    silent.listen(0).unwrap();
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let queued = (0..4)
        .filter_map(|_| {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50)).ok()
        })
        .collect();
    (silent, queued, port)
}

/// The command line of a daemon on the embedded VPC of `routers`
/// (`loopback_vpc`) with configfile routing 10.55.0.0/16 to them and three
/// CIDRs of 1,000 hosts each that are not routers (127.2.x.y): a working
/// set of 3,000 hosts for a hostile plugin to probe; then `more`.
pub fn args_with_3000_hosts(dir: &Path, routers: &[&str], more: &[&str]) -> Vec<String> {
    let vpc = super::loopback_vpc(dir, routers);
    let mut spec = serde_json::Map::new();
    spec.insert("10.55.0.0/16".into(), serde_json::json!(routers));
    for c in 0..3u32 {
        let hosts: Vec<String> = (0..1000u32)
            .map(|h| format!("127.2.{}.{}", c * 4 + h / 250, h % 250 + 1))
            .collect();
        spec.insert(format!("10.{}.0.0/16", 60 + c), serde_json::json!(hosts));
    }
    let file = dir.join("spec.json");
    std::fs::write(&file, serde_json::Value::Object(spec).to_string()).unwrap();
    let files = [
        "-m",
        "configfile",
        "-f",
        file.to_str().unwrap(),
        "--sim-vpc",
        vpc.to_str().unwrap(),
    ];
    files.iter().chain(more).map(|a| a.to_string()).collect()
}

/// The bundled tcp checker every 0.2 s on `port`, by full connects (as
/// without CAP_NET_RAW: half-open probes hold no connect slot).
pub fn tcp_connect_args(port: &str) -> Vec<String> {
    let tcp = super::plugin("tcp");
    let args = [
        "--health-plugin",
        tcp.to_str().unwrap(),
        "--tcp_check_port",
        port,
        "--tcp_check_interval",
        "0.2",
        "--tcp_check_method",
        "connect",
    ];
    args.map(String::from).to_vec()
}

/// The hostile health guest holding all the probe slots it can get on the
/// silent `port` of every host of the working set (`hog`).
pub fn hog_args(hog: &Path, port: &str) -> Vec<String> {
    let args = [
        "--health-plugin",
        hog.to_str().unwrap(),
        "--hh_behaviour",
        "hog",
        "--hh_port",
        port,
    ];
    args.map(String::from).to_vec()
}

/// A health plugin (tests/guests/multi-memory) with a function whose
/// compile is out of all proportion to its size (see `bomb_function`),
/// as `dir/multi-memory-1.wasm`.
pub fn compile_bomb(dir: &Path) -> PathBuf {
    super::multi_memory_component(dir, 1, &bomb_function())
}

/// Thousands of locals, each written in a few of thousands of branching
/// blocks and read at the end: code generation grows with locals x blocks
/// (measured with wasmtime: 35 KB of wasm compile in 0.7 s and 120 MB,
/// 71 KB in 3.8 s and 320 MB, 143 KB in 15 s and 1.1 GB).
fn bomb_function() -> String {
    const LOCALS: usize = 4_000;
    const BLOCKS: usize = 8_000;
    let mut body = format!(
        "(func $bomb (param i32) (local {})\n",
        "i64 ".repeat(LOCALS)
    );
    for block in 0..BLOCKS {
        let local = block * 7919 % LOCALS + 1;
        body.push_str(&format!(
            "(block (br_if 0 (local.get 0)) (local.set {local} (i64.add (local.get {local}) (i64.const 1))))\n"
        ));
    }
    for local in 1..=LOCALS {
        body.push_str(&format!("(drop (local.get {local}))\n"));
    }
    body.push_str(")\n");
    body
}
