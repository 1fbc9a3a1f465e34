//! The real daemon on moto's EC2 server: start-up checks (a VPC that does
//! not exist, no region, EC2 unreachable) and failover end to end with the
//! configfile and tcp plugins, router hosts being real listeners on
//! 127.0.x.y inside a 127.0.0.0/16 VPC.

mod common;

use common::failover::{Routers, a_dead_router_loses_exactly_its_routes};
use common::moto::{self, CIDRS, Moto, ROUTERS};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The daemon on the example spec with `args`, to its exit.
fn run_to_exit(args: &[&str]) -> (i32, String) {
    let spec = common::repo().join("examples/spec.json");
    let mut all = vec!["-m", "configfile", "-f", spec.to_str().unwrap()];
    all.extend_from_slice(args);
    common::run_to_exit(&all)
}

#[test]
fn a_vpc_that_does_not_exist_is_a_start_up_error() {
    let moto = Moto::start();
    let (code, stderr) = run_to_exit(&[
        "-r",
        moto::REGION,
        "-v",
        "vpc-0123456789abcdef0",
        "--ec2-endpoint",
        &moto.url,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("VPC vpc-0123456789abcdef0 does not exist in region us-east-1"),
        "{stderr}"
    );
}

#[test]
fn no_region_and_no_metadata_service_is_a_start_up_error() {
    let (code, stderr) = run_to_exit(&["-v", "vpc-0123456789abcdef0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("give -r/--region"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn an_unreachable_ec2_leaves_the_daemon_up_and_trying() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let spec = common::repo().join("examples/spec.json");
    let mut daemon = common::Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "-r",
            moto::REGION,
            "-v",
            "vpc-0123456789abcdef0",
            "--ec2-endpoint",
            &closed,
        ],
        dir.path(),
    );
    daemon.wait_for_line(
        "cannot observe the VPC, changing nothing",
        Duration::from_secs(20),
    );
    assert!(daemon.is_running());
    let (status, _) = daemon.http("GET", "/nonexistent", b"");
    assert_eq!(status, 404, "still serving HTTP");
}

/// Routers at 127.0.{1,2,3}.10 and .11 listening on one port; the spec
/// routes three CIDRs through all of them; three subnets, three tables.
/// The daemon on moto, its routers real listeners.
struct MotoCluster {
    daemon: common::Daemon,
    listeners: Vec<Option<TcpListener>>,
}

impl Routers for MotoCluster {
    fn daemon(&self) -> &common::Daemon {
        &self.daemon
    }

    fn kill(&mut self, router: &str) {
        self.listeners[ROUTERS.iter().position(|r| *r == router).unwrap()] = None;
    }
}

/// moto with a VPC of three tables whose routers are `ROUTERS` (moto runs
/// as long as the `Moto` is kept).
fn moto_vpc() -> (
    tokio::runtime::Runtime,
    Moto,
    aws_sdk_ec2::Client,
    moto::Vpc,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
    (runtime, moto, ec2, vpc)
}

/// Every router listening on one port: the port and the listeners.
fn routers_listening() -> (u16, Vec<TcpListener>) {
    let first = TcpListener::bind((ROUTERS[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let rest = ROUTERS[1..]
        .iter()
        .map(|r| TcpListener::bind((*r, port)).unwrap());
    (port, std::iter::once(first).chain(rest).collect())
}

/// The failover scenario of `failover.rs` against moto, and then what EC2
/// itself holds: no route left on the dead router's ENI.
#[test]
fn a_dead_router_loses_its_routes_in_every_table() {
    let (runtime, moto, ec2, vpc) = moto_vpc();
    let (port, listeners) = routers_listening();
    let listeners: Vec<Option<TcpListener>> = listeners.into_iter().map(Some).collect();
    let dir = tempfile::tempdir().unwrap();
    let spec = common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
    let args = moto::daemon_args(&spec, port, &vpc, &moto.url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = common::Daemon::start(&args, dir.path());
    let mut cluster = MotoCluster { daemon, listeners };
    let victim =
        a_dead_router_loses_exactly_its_routes(&mut cluster, CIDRS.len() * vpc.tables.len());
    let dead_eni = &vpc.routers[&victim].1;
    let routes = runtime.block_on(moto::routes(&ec2, &vpc.id));
    for table in &vpc.tables {
        for cidr in CIDRS {
            let target = routes[table]
                .iter()
                .find(|(d, _)| d == cidr)
                .map(|(_, e)| e);
            assert!(
                target.is_some_and(|eni| eni != dead_eni),
                "{table} {cidr}: {target:?}"
            );
        }
    }
}

/// A minimal IMDSv2 on loopback: a session token first (PUT), then the
/// region and the VPC of the instance's MAC, each only with the token.
fn fake_metadata_service(region: &str, vpc: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mac = "0e:12:34:56:78:9a";
    let answers: Vec<(String, String)> = vec![
        ("/latest/meta-data/placement/region".into(), region.into()),
        ("/latest/meta-data/mac".into(), mac.into()),
        (
            format!("/latest/meta-data/network/interfaces/macs/{mac}/vpc-id"),
            vpc.into(),
        ),
    ];
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut head = Vec::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let request: Vec<&str> = head.first().map_or(vec![], |l| l.split(' ').collect());
            let has = |header: &str| {
                head.iter()
                    .any(|l| l.to_ascii_lowercase().starts_with(header))
            };
            let (status, body) = match request.as_slice() {
                ["PUT", "/latest/api/token", _] if has("x-aws-ec2-metadata-token-ttl-seconds:") => {
                    ("200 OK", "session-token".to_string())
                }
                ["GET", path, _] if has("x-aws-ec2-metadata-token: session-token") => answers
                    .iter()
                    .find(|(p, _)| p == path)
                    .map_or(("404 Not Found", String::new()), |(_, v)| {
                        ("200 OK", v.clone())
                    }),
                _ => ("401 Unauthorized", String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn region_and_vpc_come_from_the_instance_metadata_service() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 1, &["127.0.1.10"]));
    let imds = fake_metadata_service(moto::REGION, &vpc.id);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"10.55.0.0/16": ["127.0.1.10"]}"#).unwrap();
    let _daemon = common::Daemon::start_with_env(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "--ec2-endpoint",
            &moto.url,
        ],
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds),
        ],
        dir.path(),
    );
    let start = Instant::now();
    let eni = &vpc.routers["127.0.1.10"].1;
    while runtime
        .block_on(moto::target(&ec2, &vpc.id, &vpc.tables[0], "10.55.0.0/16"))
        .as_ref()
        != Some(eni)
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "route not set in the discovered VPC"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--dry-run` against moto: the plan (every route to create, with its
/// reason) on standard output, exit 0, and no mutating call made: a proxy
/// in front of moto counts every call by action.
#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    use common::fault_proxy::FaultProxy;
    let (runtime, moto, ec2, vpc) = moto_vpc();
    let proxy = runtime.block_on(FaultProxy::start(&moto.url));
    let (port, _listeners) = routers_listening();
    let dir = tempfile::tempdir().unwrap();
    let spec = common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(["--dry-run", "--output", "json", "-a", "127.0.0.1"])
        .args(moto::daemon_args(&spec, port, &vpc, &proxy.url))
        .arg("--plugin-dir")
        .arg(common::repo().join("plugins"))
        .arg("--plugin-cache-dir")
        .arg(dir.path().join("cache"))
        .envs(common::NO_METADATA)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A dry run ends by itself; one that does not is a failure, not a hang.
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the dry run did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let operations = plan["operations"].as_array().unwrap();
    assert_eq!(operations.len(), CIDRS.len() * vpc.tables.len(), "{plan:#}");
    assert!(
        operations
            .iter()
            .all(|o| o["action"] == "create" && o["reason"].is_string())
    );
    // Per CIDR, an EC2 call per operation.
    let ec2_calls = plan["ec2_calls"].as_array().unwrap();
    assert_eq!(ec2_calls.len(), operations.len(), "{plan:#}");
    assert!(ec2_calls.iter().all(|c| c["call"] == "CreateRoute"));
    let calls = proxy.calls();
    assert!(
        calls.get("DescribeRouteTables").is_some_and(|n| *n >= 1),
        "{calls:?}"
    );
    for mutating in [
        "CreateRoute",
        "ReplaceRoute",
        "DeleteRoute",
        "ModifyNetworkInterfaceAttribute",
    ] {
        assert!(!calls.contains_key(mutating), "{mutating} sent: {calls:?}");
    }
    let routes = runtime.block_on(moto::routes(&ec2, &vpc.id));
    for table in &vpc.tables {
        assert!(
            routes[table]
                .iter()
                .all(|(d, _)| !CIDRS.contains(&d.as_str())),
            "{routes:?}"
        );
    }
}

/// An instance put into `stopping` is drained at the next describe: its
/// routes move (cause drain) although the router still answers its probes
/// (here it keeps listening), and the views say why. moto goes from
/// running to stopped at once: a proxy in front of it says `stopping`
/// where moto says `stopped`, as EC2 does first.
#[test]
fn a_router_whose_instance_is_stopping_is_drained_at_the_next_describe() {
    let rechecked = Rechecked::start();
    let Rechecked {
        runtime,
        ec2,
        vpc,
        proxy,
        daemon,
        ..
    } = &rechecked;
    proxy.rewrite(
        "DescribeInstances",
        "<name>stopped</name>",
        "<name>stopping</name>",
    );
    let (victim, instance, eni) = busy_router(runtime, ec2, vpc);
    runtime
        .block_on(ec2.stop_instances().instance_ids(&instance).send())
        .unwrap();
    common::wait_until("no route on the stopping router", || {
        let routes = runtime.block_on(moto::routes(ec2, &vpc.id));
        (routes.values().flatten())
            .all(|(_, target)| *target != eni)
            .then_some(())
    });
    // moto shows the routes before the daemon's log line is read.
    let said = format!("{instance} is stopping; moving to");
    common::wait_until("the move logged with its reason", || {
        (daemon.lines_with("route replaced").into_iter()).find(|l| l.contains(&said))
    });
    let ips = daemon.view("/ips");
    assert_eq!(
        ips["hosts"][&victim]["state"], "healthy",
        "it still answers: {ips}"
    );
    let reason = ips["hosts"][&victim]["drained"]["reason"].to_string();
    assert!(
        reason.contains(&format!("instance {instance} is stopping (EC2)")),
        "{ips}"
    );
    let events = daemon.view("/events").to_string();
    assert!(
        events.contains("\"kind\":\"drain\""),
        "cause drain: {events}"
    );
}

/// An EC2 scheduled event (a system reboot ten minutes from now) drains
/// the router at the next full check: its routes move while it still
/// answers probes. moto reports no scheduled events: a proxy in front of
/// it answers DescribeInstanceStatus as EC2 would, with the event (and a
/// completed one, which changes nothing).
#[test]
fn a_router_with_a_scheduled_reboot_is_drained_before_it() {
    let rechecked = Rechecked::start();
    let Rechecked {
        runtime,
        ec2,
        vpc,
        proxy,
        daemon,
        ..
    } = &rechecked;
    let (victim, instance, eni) = busy_router(runtime, ec2, vpc);
    let at = std::time::SystemTime::now() + Duration::from_secs(600);
    let at = humantime::format_rfc3339_seconds(at).to_string();
    proxy.stand_in(
        "DescribeInstanceStatus",
        &format!(
            r#"<DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>stand-in</requestId><instanceStatusSet><item><instanceId>{instance}</instanceId><availabilityZone>us-east-1a</availabilityZone><instanceState><code>16</code><name>running</name></instanceState><eventsSet><item><instanceEventId>instance-event-0abc</instanceEventId><code>system-reboot</code><description>scheduled reboot</description><notBefore>{at}</notBefore></item><item><instanceEventId>instance-event-0def</instanceEventId><code>instance-stop</code><description>[Completed] scheduled stop</description><notBefore>2026-01-01T00:00:00Z</notBefore></item></eventsSet></item></instanceStatusSet></DescribeInstanceStatusResponse>"#
        ),
    );
    common::wait_until("no route on the router due for a reboot", || {
        let routes = runtime.block_on(moto::routes(ec2, &vpc.id));
        (routes.values().flatten())
            .all(|(_, target)| *target != eni)
            .then_some(())
    });
    let expected = format!("EC2 scheduled system-reboot at {at}");
    common::wait_until("the move logged with its reason", || {
        (daemon.lines_with("route replaced").into_iter()).find(|l| l.contains(&expected))
    });
    let ips = daemon.view("/ips");
    assert_eq!(ips["hosts"][&victim]["state"], "healthy", "{ips}");
    let reason = ips["hosts"][&victim]["drained"]["reason"].to_string();
    assert!(
        reason.contains(&format!("instance {instance}: {expected}")),
        "{ips}"
    );
}

/// Once every route is set, the router the first CIDR's first table points
/// at: (address, instance, ENI).
fn busy_router(
    runtime: &tokio::runtime::Runtime,
    ec2: &aws_sdk_ec2::Client,
    vpc: &moto::Vpc,
) -> (String, String, String) {
    let busy = common::wait_until("every route set", || {
        let targets = runtime.block_on(moto::targets(ec2, vpc, CIDRS[0]));
        (targets.iter().all(Option::is_some)).then(|| targets[0].clone().unwrap())
    });
    (vpc.routers.iter())
        .find(|(_, (_, eni))| *eni == busy)
        .map(|(ip, (instance, eni))| (ip.clone(), instance.clone(), eni.clone()))
        .unwrap()
}

/// The daemon on moto through a fault proxy, rechecking every 5 s (the
/// least allowed), routers listening.
struct Rechecked {
    runtime: tokio::runtime::Runtime,
    _moto: Moto,
    ec2: aws_sdk_ec2::Client,
    vpc: moto::Vpc,
    proxy: common::fault_proxy::FaultProxy,
    daemon: common::Daemon,
    _listeners: Vec<TcpListener>,
    _dir: tempfile::TempDir,
}

impl Rechecked {
    fn start() -> Self {
        let (runtime, moto, ec2, vpc) = moto_vpc();
        let (port, listeners) = routers_listening();
        let proxy = runtime.block_on(common::fault_proxy::FaultProxy::start(&moto.url));
        let dir = tempfile::tempdir().unwrap();
        let spec = common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
        let mut args = moto::daemon_args(&spec, port, &vpc, &proxy.url);
        args.extend(["--route_recheck_interval".into(), "5".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = common::Daemon::start(&args, dir.path());
        Self {
            runtime,
            _moto: moto,
            ec2,
            vpc,
            proxy,
            daemon,
            _listeners: listeners,
            _dir: dir,
        }
    }
}
