//! Notifications: `--notify webhook:URL` (the bundled webhook notifier
//! plugin) POSTs what the daemon did, grouped per pass and HMAC-signed, to
//! a receiver on loopback. A failover is one message naming each table,
//! CIDR, old and new router, on the NAT-instance and the Romana layouts; a
//! receiver that never answers delays no failover; sinks that cannot be
//! meant are refused at start. And CloudWatch's embedded metric format on
//! the JSON log lines (`--emf-interval`).

mod common;

use common::nat::{ROUTER_A, ROUTER_B, default_routes, layout as nat_layout, routers_listening};
use common::receiver::Receiver;
use common::sim_cluster::SimCluster;
use common::{Daemon, strs};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use std::net::TcpListener;
use std::time::Duration;

const KEY: &[u8] = b"a shared secret";

fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    mac.update(body);
    let hex: String = (mac.finalize().into_bytes().iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Which router each CIDR of the sim cluster is routed to, once all are.
fn placed(daemon: &Daemon) -> Option<Vec<String>> {
    let info = daemon.view("/route_info");
    (common::sim_cluster::CIDRS.iter())
        .map(|c| info["routes"][*c]["ip"].as_str().map(String::from))
        .collect()
}

/// `--notify` with the receiver and a key file in `dir`.
fn notify_args(receiver: &Receiver, dir: &std::path::Path) -> Vec<String> {
    let key = dir.join("notify.key");
    std::fs::write(&key, KEY).unwrap();
    [
        "--notify".to_string(),
        receiver.url(),
        "--notify-secret-file".into(),
        key.display().to_string(),
        "--notify-interval".into(),
        "0.5".into(),
    ]
    .to_vec()
}

/// The failover notices of `router`, waited for: they must all come in one
/// message, signed, each naming its table, CIDR, old and new router.
fn failover_notices(receiver: &Receiver, router: &str, count: usize) -> Vec<Value> {
    let moves = common::wait_until("the failover's notices", || {
        let moves: Vec<(usize, Value)> = (receiver.notices().into_iter())
            .filter(|(_, n)| n["kind"] == "failover" && n["from"] == router)
            .collect();
        (moves.len() >= count).then_some(moves)
    });
    assert_eq!(moves.len(), count, "{moves:#?}");
    let message = moves[0].0;
    assert!(
        moves.iter().all(|(m, _)| *m == message),
        "one message per pass: {moves:#?}"
    );
    let received = &receiver.received()[message];
    assert_eq!(
        received.signature.as_deref(),
        Some(expected_signature(&received.body).as_str())
    );
    let batch = received.json();
    assert_eq!(batch["source"], "vpcrouter");
    assert_eq!(batch["vpc"], "sim");
    moves.into_iter().map(|(_, n)| n).collect()
}

/// Romana layout: a router dies; one signed message names every table and
/// CIDR that moved, from the dead router to the survivor, with the time it
/// took; the router's failure is told too.
#[test]
fn romana_a_failover_is_one_signed_message_naming_tables_cidrs_and_routers() {
    let receiver = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = SimCluster::start(21, &strs(&notify_args(&receiver, dir.path())));
    let before = common::wait_until("every CIDR routed", || placed(&cluster.daemon));
    let victim = before[0].clone();
    let survivor = cluster
        .routers
        .iter()
        .find(|r| **r != victim)
        .unwrap()
        .clone();
    let carried = before.iter().filter(|h| **h == victim).count();
    // The start-up's routes are told before anything fails.
    common::wait_until("the created routes told", || {
        let created = receiver
            .notices()
            .iter()
            .filter(|(_, n)| n["kind"] == "create")
            .count();
        (created == common::sim_cluster::CIDRS.len() * 2).then_some(())
    });

    cluster.kill(&victim);
    let moves = failover_notices(&receiver, &victim, carried * 2);
    for notice in &moves {
        assert_eq!(notice["to"], survivor.as_str(), "{notice}");
        assert!(["rtb-a", "rtb-b"].contains(&notice["table"].as_str().unwrap()));
        let cidr = notice["cidr"].as_str().unwrap();
        assert_eq!(
            notice["subject"],
            format!("{} {cidr}", notice["table"].as_str().unwrap())
        );
        assert!(notice["duration_ms"].is_u64(), "{notice}");
        assert!(
            notice["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("{victim} failed")),
            "{notice}"
        );
    }
    let failed = common::wait_until("the router's failure told", || {
        (receiver.notices().into_iter())
            .find(|(_, n)| n["kind"] == "host_failed" && n["subject"] == victim.as_str())
    });
    assert!(failed.1["reason"].is_string());
}

/// NAT-instance layout: router A dies; its AZ's private table (and the
/// main table, if A had it) move to B, told in one message.
#[test]
fn nat_instances_a_failover_is_told_per_table() {
    let receiver = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let ([router_a, _router_b], port) = routers_listening();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let port = port.to_string();
    let layout = nat_layout();
    let mut args = common::nat::daemon_args(&hosts, &port);
    args.extend(["--sim-vpc".into(), layout.display().to_string()]);
    args.extend(notify_args(&receiver, dir.path()));
    let daemon = Daemon::start(&strs(&args), dir.path());
    let before = common::wait_until("each AZ's table on its router", || {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == "eni-a"
            && now["rtb-priv-b"] == "eni-b"
            && now["rtb-main"].is_string())
        .then_some(now)
    });
    let tables_of_a = 1 + usize::from(before["rtb-main"] == "eni-a");

    drop(router_a);
    let moves = failover_notices(&receiver, ROUTER_A, tables_of_a);
    let tables: Vec<&str> = moves.iter().map(|n| n["table"].as_str().unwrap()).collect();
    assert!(tables.contains(&"rtb-priv-a"), "{moves:#?}");
    for notice in &moves {
        assert_eq!(notice["cidr"], "0.0.0.0/0");
        assert_eq!(notice["to"], ROUTER_B);
    }
}

/// A receiver that takes the request and never answers: the failover is
/// as prompt as ever (the daemon never waits for a sink), the listener
/// answers, and the lost delivery is said.
#[test]
fn a_sink_that_never_answers_holds_back_no_failover() {
    let receiver = Receiver::start(true);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = SimCluster::start(22, &strs(&notify_args(&receiver, dir.path())));
    let before = common::wait_until("every CIDR routed", || placed(&cluster.daemon));
    let victim = before[0].clone();
    // The start-up's batch is now stuck in the receiver.
    cluster
        .daemon
        .wait_for_line("notification not delivered", Duration::from_secs(30));
    cluster.kill(&victim);
    common::wait_until("every CIDR off the dead router", || {
        placed(&cluster.daemon).filter(|now| now.iter().all(|h| *h != victim))
    });
    let (status, _) = cluster.daemon.http("GET", "/healthz", b"");
    assert_eq!(status, 200);
    assert!(receiver.received().is_empty());
}

/// Sinks that cannot be meant are refused at start, naming the problem.
#[test]
fn notification_sinks_that_cannot_be_meant_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = common::spec_file(dir.path(), ["10.55.0.0/16".to_string()], &["10.33.20.142"]);
    let sim = common::repo().join("examples/sim-vpc.json");
    let base = [
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "-H",
        "none",
        "--sim-vpc",
        sim.to_str().unwrap(),
    ];
    for (extra, said) in [
        (
            &["--notify", "sns:routes"][..],
            "expected sns:arn:aws:sns:REGION:ACCOUNT:TOPIC",
        ),
        (
            &["--notify", "eventbridge:a bus"][..],
            "an event bus name is",
        ),
        (
            &["--notify", "webhook:ftp://x/"][..],
            "expected http:// or https://",
        ),
        (&["--notify", "pager:duty"][..], "expected webhook:URL"),
        (
            &[
                "--notify",
                "webhook:http://127.0.0.1:9/a",
                "--notify",
                "webhook:http://127.0.0.1:9/b",
            ][..],
            "one webhook: sink at a time",
        ),
        (
            &[
                "--notify",
                "webhook:http://127.0.0.1:9/a",
                "--notify-secret-file",
                "/nonexistent/key",
            ][..],
            "/nonexistent/key",
        ),
        (&["--notify-interval", "0"][..], "expected seconds from 0.1"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, output) = common::run_to_exit(&args);
        assert_eq!(code, 2, "{extra:?}: {output}");
        assert!(output.contains(said), "{extra:?}: {output}");
    }
}

/// The bodies of the messages waiting on `queue` (taken off it).
async fn messages(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<Value> {
    let got = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    (got.messages().iter())
        .filter_map(|m| serde_json::from_str(m.body()?).ok())
        .collect()
}

/// The daemon on moto's VPC `vpc` (through `endpoint`: moto or a proxy in
/// front of it), with the spec of `CIDRS` over every router of `ROUTERS`
/// listening, and `extra` flags.
struct MotoCluster {
    daemon: Daemon,
    listeners: Vec<Option<TcpListener>>,
    _dir: tempfile::TempDir,
}

impl MotoCluster {
    fn start(vpc: &common::moto::Vpc, endpoint: &str, extra: &[&str]) -> Self {
        use common::moto::{self, CIDRS, ROUTERS};
        let (listeners, port) = moto::listening(&ROUTERS);
        let dir = tempfile::tempdir().unwrap();
        let spec = common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
        let mut args = moto::daemon_args(&spec, port, vpc, endpoint);
        args.extend(extra.iter().map(|a| a.to_string()));
        Self {
            daemon: Daemon::start(&strs(&args), dir.path()),
            listeners,
            _dir: dir,
        }
    }
}

impl common::failover::Routers for MotoCluster {
    fn daemon(&self) -> &Daemon {
        &self.daemon
    }
    fn kill(&mut self, router: &str) {
        let at = common::moto::ROUTERS.iter().position(|r| *r == router);
        self.listeners[at.unwrap()] = None;
    }
}

/// On moto: `--notify sns:TOPIC --notify eventbridge:default`. A router
/// dies; the SNS topic (read through an SQS subscription) and the bus (a
/// rule sending vpcrouter's events to another queue) each carry one
/// message naming every table and CIDR that moved, the dead router and
/// the survivor.
#[test]
fn sns_and_eventbridge_carry_a_failover_on_moto() {
    use common::failover::a_dead_router_loses_exactly_its_routes;
    use common::moto::{self, CIDRS, Moto, ROUTERS};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
    let (sqs, topic_queue) = runtime.block_on(moto::sqs_queue(&moto.url, "from-sns"));
    let (_, bus_queue) = runtime.block_on(moto::sqs_queue(&moto.url, "from-eventbridge"));
    let topic = runtime.block_on(async {
        let config = moto::sdk_config(&moto.url).await;
        let arn_of = async |queue: &str| {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(queue)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap();
            let arn = attributes.attributes().unwrap();
            arn[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone()
        };
        let sns = aws_sdk_sns::Client::new(&config);
        let topic = sns.create_topic().name("routes").send().await.unwrap();
        let topic = topic.topic_arn().unwrap().to_string();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn_of(&topic_queue).await)
            .send()
            .await
            .unwrap();
        let events = aws_sdk_eventbridge::Client::new(&config);
        events
            .put_rule()
            .name("vpcrouter")
            .event_pattern(r#"{"source": ["vpcrouter"]}"#)
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(arn_of(&bus_queue).await)
            .build()
            .unwrap();
        events
            .put_targets()
            .rule("vpcrouter")
            .targets(target)
            .send()
            .await
            .unwrap();
        topic
    });

    let mut cluster = MotoCluster::start(
        &vpc,
        &moto.url,
        &[
            "--notify",
            &format!("sns:{topic}"),
            "--notify",
            "eventbridge:default",
            "--notify-endpoint",
            &moto.url,
            "--notify-interval",
            "0.5",
        ],
    );
    let routes = CIDRS.len() * vpc.tables.len();
    let victim = a_dead_router_loses_exactly_its_routes(&mut cluster, routes);
    let moved = cluster.daemon.lines_with("route replaced").len();

    // Each sink's messages, until one holds the failover; its notices.
    let failover_in = |queue: &str, unwrap: fn(&Value) -> Value| -> Vec<Value> {
        let mut seen = Vec::new();
        common::wait_until("the failover's message", || {
            seen.extend(runtime.block_on(messages(&sqs, queue)).iter().map(unwrap));
            seen.iter().find_map(|batch| {
                let notices = batch["notices"].as_array()?;
                let moves: Vec<Value> = (notices.iter())
                    .filter(|n| n["kind"] == "failover")
                    .cloned()
                    .collect();
                (!moves.is_empty()).then_some(moves)
            })
        })
    };
    let from_sns = |envelope: &Value| {
        serde_json::from_str(envelope["Message"].as_str().unwrap_or("{}")).unwrap_or_default()
    };
    let from_bus = |event: &Value| {
        assert_eq!(event["source"], "vpcrouter", "{event}");
        assert_eq!(event["detail-type"], "vpcrouter notices", "{event}");
        event["detail"].clone()
    };
    for (sink, moves) in [
        ("sns", failover_in(&topic_queue, from_sns)),
        ("eventbridge", failover_in(&bus_queue, from_bus)),
    ] {
        assert_eq!(
            moves.len(),
            moved,
            "{sink}: one message for the pass: {moves:#?}"
        );
        for notice in &moves {
            assert_eq!(notice["from"], victim.as_str(), "{sink}: {notice}");
            assert!(
                notice["to"].as_str().is_some_and(|to| to != victim),
                "{sink}: {notice}"
            );
            assert!(
                vpc.tables
                    .contains(&notice["table"].as_str().unwrap().to_string())
            );
            assert!(CIDRS.contains(&notice["cidr"].as_str().unwrap()));
        }
    }
}

/// A notifier plugin that spins, traps, bloats or floods the log in
/// `notify`: it is stopped (deadline, trap, memory cap) and restarted with
/// backoff, or its batch refused; either way a failover is as prompt as
/// ever and the daemon answers.
#[test]
fn a_hostile_notifier_is_stopped_and_holds_back_no_failover() {
    let guest = common::guest("hostile-notifier");
    for (net, behaviour) in [(23, "spin"), (24, "trap"), (25, "bloat"), (26, "flood")] {
        let args = [
            "--notify-plugin",
            guest.to_str().unwrap(),
            "--hn_behaviour",
            behaviour,
            "--notify-interval",
            "0.1",
        ];
        let mut cluster = SimCluster::start(net, &args);
        let before = common::wait_until("every CIDR routed", || placed(&cluster.daemon));
        // The start-up's batch has reached it, and it misbehaved.
        common::wait_until(&format!("{behaviour}: the notifier misbehaved"), || {
            let stopped = cluster.daemon.plugin("hostile-notifier")["restarts"]
                .as_u64()
                .unwrap_or(0)
                >= 1;
            let refused = !cluster
                .daemon
                .lines_with("notification not delivered")
                .is_empty();
            (stopped || refused).then_some(())
        });
        let victim = before[0].clone();
        cluster.kill(&victim);
        common::wait_until(
            &format!("{behaviour}: every CIDR off the dead router"),
            || placed(&cluster.daemon).filter(|now| now.iter().all(|h| *h != victim)),
        );
        let (status, _) = cluster.daemon.http("GET", "/healthz", b"");
        assert_eq!(status, 200, "{behaviour}");
        if behaviour != "flood" {
            let shown = cluster.daemon.plugin("hostile-notifier");
            let last = shown["last_error"].as_str().unwrap_or_default();
            assert!(!last.is_empty(), "{behaviour}: {shown:#}");
        }
    }
}

/// `--log-format json --emf-interval 1`: a CloudWatch EMF line every
/// second; after a router dies one counts the failovers, and every line
/// names its metrics in the `vpcrouter` namespace by VPC.
#[test]
fn emf_lines_count_the_failovers_for_cloudwatch() {
    let mut cluster = SimCluster::start(27, &["--log-format", "json", "--emf-interval", "1"]);
    let before = common::wait_until("every CIDR routed", || placed(&cluster.daemon));
    let emf_lines = |daemon: &Daemon| -> Vec<Value> {
        (daemon.lines_with("\"_aws\"").iter())
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let first = common::wait_until("an EMF line with both routers eligible", || {
        (emf_lines(&cluster.daemon).into_iter()).rfind(|l| l["EligibleRoutersMin"] == 2)
    });
    let directive = &first["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "vpcrouter", "{first}");
    assert_eq!(directive["Dimensions"], serde_json::json!([["VpcId"]]));
    assert_eq!(first["VpcId"], "sim");
    assert!(first["_aws"]["Timestamp"].is_u64(), "{first}");

    let victim = before[0].clone();
    let carried = before.iter().filter(|h| **h == victim).count() as u64;
    cluster.kill(&victim);
    let counted = common::wait_until("the failovers counted", || {
        let lines = emf_lines(&cluster.daemon);
        let failovers: u64 = lines.iter().filter_map(|l| l["Failovers"].as_u64()).sum();
        (failovers >= carried * 2).then_some(failovers)
    });
    assert_eq!(counted, carried * 2, "one per route moved (2 tables)");
    let last = common::wait_until("a line after the failure", || {
        emf_lines(&cluster.daemon)
            .into_iter()
            .rfind(|l| l["EligibleRoutersMin"] == 1)
    });
    assert_eq!(last["CidrsWithoutRouter"], 0, "{last}");
    assert!(last["ProbeRoundTrip"].is_number(), "{last}");
}

/// `--emf-interval` without JSON logs is refused.
#[test]
fn emf_needs_json_log_lines() {
    let (code, output) = common::run_to_exit(&[
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "10.55.0.0/16",
        "--fixed_hosts",
        "10.33.20.142",
        "--emf-interval",
        "60",
    ]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("--emf-interval needs --log-format json"),
        "{output}"
    );
}

/// EC2 throttling every route change for longer than `--throttle-alert`
/// is told once (a webhook notice `ec2_throttled`, on moto behind a proxy
/// answering `RequestLimitExceeded`), no route goes missing meanwhile, and
/// when EC2 answers again the failover goes through and the end is told.
#[test]
fn ec2_throttled_for_long_is_told_and_so_is_its_end() {
    use common::failover::Routers;
    use common::fault_proxy::{Fault, FaultProxy};
    use common::moto::{self, CIDRS, Moto, ROUTERS};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let proxy = runtime.block_on(FaultProxy::start(&moto.url));
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
    let receiver = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let mut extra = notify_args(&receiver, dir.path());
    extra.extend(["--throttle-alert".into(), "2".into()]);
    let mut cluster = MotoCluster::start(&vpc, &proxy.url, &strs(&extra));
    let routes = CIDRS.len() * vpc.tables.len();
    let created =
        cluster
            .daemon
            .wait_for_nth_line("route created", routes, Duration::from_secs(30));
    let victim = common::failover::field(&created, "host");
    let victim_eni = vpc.routers[&victim].1.clone();

    proxy.inject(
        "ReplaceRoute",
        std::iter::repeat_n(Fault::Throttle, 100_000),
    );
    cluster.kill(&victim);
    let told = common::wait_until("the throttling told", || {
        (receiver.notices().into_iter()).find(|(_, n)| n["kind"] == "ec2_throttled")
    });
    let reason = told.1["reason"].as_str().unwrap();
    assert!(reason.contains("RequestLimitExceeded"), "{reason}");
    let now = runtime.block_on(moto::routes(&ec2, &vpc.id));
    for table in &vpc.tables {
        for cidr in CIDRS {
            assert!(
                now[table].iter().any(|(d, _)| d == cidr),
                "{table} {cidr} went missing: {now:?}"
            );
        }
    }

    proxy.clear("ReplaceRoute");
    common::wait_until("the end of the throttling told", || {
        (receiver.notices().into_iter()).find(|(_, n)| n["kind"] == "ec2_throttle_ended")
    });
    common::wait_until("every route off the dead router", || {
        let now = runtime.block_on(moto::routes(&ec2, &vpc.id));
        (vpc.tables.iter())
            .all(|t| now[t].iter().all(|(_, target)| *target != victim_eni))
            .then_some(())
    });
    let told: Vec<Value> = (receiver.notices().into_iter())
        .map(|(_, n)| n)
        .filter(|n| n["kind"] == "ec2_throttled")
        .collect();
    assert_eq!(told.len(), 1, "told once: {told:#?}");
}

/// The sum of `metric` in namespace vpcrouter for VPC `vpc` over the last
/// ten minutes, as CloudWatch (moto's) has it.
async fn cloudwatch_sum(cloudwatch: &aws_sdk_cloudwatch::Client, vpc: &str, metric: &str) -> f64 {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = std::time::SystemTime::now();
    let stats = cloudwatch
        .get_metric_statistics()
        .namespace("vpcrouter")
        .metric_name(metric)
        .dimensions(Dimension::builder().name("VpcId").value(vpc).build())
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .unwrap();
    stats.datapoints().iter().filter_map(|p| p.sum()).sum()
}

/// `--put-metrics-interval 1` on moto: CloudWatch gets the figures by
/// VPC, and after a router dies their failovers add up to the routes
/// moved. (moto speaks CloudWatch's CBOR through tests/common/moto_server.py.)
#[test]
fn put_metric_data_carries_the_failovers_to_cloudwatch() {
    use common::failover::a_dead_router_loses_exactly_its_routes;
    use common::moto::{self, CIDRS, Moto, ROUTERS};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
    let extra = [
        "--put-metrics-interval",
        "1",
        "--cloudwatch-endpoint",
        moto.url.as_str(),
    ];
    let mut cluster = MotoCluster::start(&vpc, &moto.url, &extra);
    let routes = CIDRS.len() * vpc.tables.len();
    a_dead_router_loses_exactly_its_routes(&mut cluster, routes);
    let moved = cluster.daemon.lines_with("route replaced").len() as f64;

    let cloudwatch =
        aws_sdk_cloudwatch::Client::new(&runtime.block_on(moto::sdk_config(&moto.url)));
    let failovers = common::wait_until("the failovers in CloudWatch", || {
        let sum = runtime.block_on(cloudwatch_sum(&cloudwatch, &vpc.id, "Failovers"));
        (sum >= moved).then_some(sum)
    });
    assert_eq!(failovers, moved, "one per route moved");
    let listed = runtime.block_on(cloudwatch.list_metrics().namespace("vpcrouter").send());
    let mut names: Vec<String> = (listed.unwrap().metrics().iter())
        .filter_map(|m| m.metric_name().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "CidrsWithoutRouter",
            "EligibleRoutersMin",
            "Failovers",
            "ProbeRoundTrip",
            "RoutesOnFallback"
        ]
    );
    let (_, metrics) = cluster.daemon.http("GET", "/metrics", b"");
    assert!(
        metrics.contains("vpcrouter_cloudwatch_puts_total{outcome=\"sent\"}"),
        "{metrics}"
    );
}

/// A CloudWatch endpoint that takes connections and never answers: the
/// failover is as prompt as ever, the failed calls are counted, and the
/// problem is said.
#[test]
fn cloudwatch_that_never_answers_holds_back_no_failover() {
    use common::failover::a_dead_router_loses_exactly_its_routes;
    use common::moto::{self, CIDRS, Moto, ROUTERS};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
    // Connections wait in the backlog: no request is ever answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let extra = [
        "--put-metrics-interval",
        "1",
        "--cloudwatch-endpoint",
        endpoint.as_str(),
    ];
    let mut cluster = MotoCluster::start(&vpc, &moto.url, &extra);
    let routes = CIDRS.len() * vpc.tables.len();
    a_dead_router_loses_exactly_its_routes(&mut cluster, routes);
    cluster.daemon.wait_for_line(
        "cannot publish metrics to CloudWatch",
        Duration::from_secs(30),
    );
    let (_, metrics) = cluster.daemon.http("GET", "/metrics", b"");
    assert!(
        metrics.contains("vpcrouter_cloudwatch_puts_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"sent\""), "{metrics}");
}
