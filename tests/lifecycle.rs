//! Signals before a router goes, end to end: moto's EC2 and SQS, the
//! daemon reading an events queue through a proxy that stands in for Auto
//! Scaling's lifecycle calls (moto lacks them) and keeps what the daemon
//! sent. Routers are listeners on 127.0.x.y; nothing leaves loopback.

mod common;

use common::fault_proxy::FaultProxy;
use common::moto::{self, CIDRS, Moto, REGION, ROUTERS};
use serde_json::json;
use std::net::TcpListener;
use std::time::Instant;

const COMPLETED: &str = r#"<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><CompleteLifecycleActionResult/><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></CompleteLifecycleActionResponse>"#;
const HEARTBEAT: &str = r#"<RecordLifecycleActionHeartbeatResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><RecordLifecycleActionHeartbeatResult/><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></RecordLifecycleActionHeartbeatResponse>"#;

struct Setup {
    runtime: tokio::runtime::Runtime,
    _moto: Moto,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    vpc: moto::Vpc,
    queue: String,
    proxy: FaultProxy,
    daemon: common::Daemon,
    _listeners: Vec<TcpListener>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// moto's VPC of three tables, a queue, the routers listening, and the
    /// daemon reading the queue, every route set.
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let moto = Moto::start();
        let ec2 = runtime.block_on(moto.client());
        let vpc = runtime.block_on(moto::build_vpc(&ec2, 3, &ROUTERS));
        let (sqs, queue) = runtime.block_on(moto::sqs_queue(&moto.url, "vpcrouter-events"));
        let proxy = runtime.block_on(FaultProxy::start(&moto.url));
        proxy.stand_in("CompleteLifecycleAction", COMPLETED);
        proxy.stand_in("RecordLifecycleActionHeartbeat", HEARTBEAT);
        let first = TcpListener::bind((ROUTERS[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        listeners.extend(
            ROUTERS[1..]
                .iter()
                .map(|r| TcpListener::bind((*r, port)).unwrap()),
        );
        let dir = tempfile::tempdir().unwrap();
        let spec = common::spec_file(dir.path(), CIDRS.map(String::from), &ROUTERS);
        let mut args = moto::daemon_args(&spec, port, &vpc, &moto.url);
        args.extend(["--events-queue".into(), queue.clone()]);
        args.extend(["--events-endpoint".into(), proxy.url.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = common::Daemon::start(&args, dir.path());
        let setup = Self {
            runtime,
            _moto: moto,
            ec2,
            sqs,
            vpc,
            queue,
            proxy,
            daemon,
            _listeners: listeners,
            _dir: dir,
        };
        common::wait_until("every route set", || setup.busy());
        setup
    }

    /// A router carrying routes now: (address, instance, ENI).
    fn busy(&self) -> Option<(String, String, String)> {
        let routes = self.runtime.block_on(moto::routes(&self.ec2, &self.vpc.id));
        let targets: Vec<&String> = routes.values().flatten().map(|(_, t)| t).collect();
        let every = CIDRS.len() * self.vpc.tables.len();
        let set = (routes.values().flatten())
            .filter(|(d, _)| CIDRS.contains(&d.as_str()))
            .count();
        (set == every).then_some(())?;
        (self.vpc.routers.iter())
            .find(|(_, (_, eni))| targets.contains(&eni))
            .map(|(ip, (instance, eni))| (ip.clone(), instance.clone(), eni.clone()))
    }

    fn routed_to(&self, eni: &str) -> bool {
        self.routes_to(eni) > 0
    }

    /// The routes that point at `eni`, in every table.
    fn routes_to(&self, eni: &str) -> usize {
        let routes = self.runtime.block_on(moto::routes(&self.ec2, &self.vpc.id));
        routes
            .values()
            .flatten()
            .filter(|(_, target)| *target == eni)
            .count()
    }

    fn send(&self, body: &str) {
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send();
        self.runtime.block_on(sent).unwrap();
    }

    fn waiting_messages(&self) -> u64 {
        let asked = (self.sqs.get_queue_attributes())
            .queue_url(&self.queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send();
        let attributes = self
            .runtime
            .block_on(asked)
            .unwrap()
            .attributes
            .unwrap_or_default();
        let count =
            |name| (attributes.get(&name).and_then(|v| v.parse::<u64>().ok())).unwrap_or_default();
        use aws_sdk_sqs::types::QueueAttributeName::*;
        count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible)
    }

    fn drain_reason(&self, ip: &str) -> String {
        let ips = self.daemon.view("/ips");
        ips["hosts"][ip]["drained"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn event(kind: &str, source: &str, detail: serde_json::Value) -> String {
    json!({
        "version": "0", "id": "0b7ea5b1-1c2f-4d8e-9f0a-3b2c1d0e9f8a",
        "detail-type": kind, "source": source, "account": "123456789012",
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "region": REGION, "resources": [], "detail": detail,
    })
    .to_string()
}

/// A Spot interruption warning moves the router's routes at once while it
/// still answers probes (it is drained, not failed); a duplicate changes
/// nothing. An Auto Scaling terminate action drains another router and
/// completes its hook with CONTINUE only once no route points at it.
#[test]
fn aws_signals_drain_routers_before_they_go() {
    let setup = Setup::start();
    let (ip, instance, eni) = setup.busy().unwrap();
    let carried = setup.routes_to(&eni);
    let spot = event(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        json!({"instance-id": instance, "instance-action": "terminate"}),
    );
    setup.send(&spot);
    setup.send(&spot);
    common::wait_until("routes off the interrupted router", || {
        (!setup.routed_to(&eni)).then_some(())
    });
    let reason = setup.drain_reason(&ip);
    assert!(
        reason.contains(&format!(
            "Spot interruption warning: EC2 will terminate instance {instance}"
        )),
        "{reason}"
    );
    assert_eq!(
        setup.daemon.view("/ips")["hosts"][&ip]["state"],
        "healthy",
        "it still answers"
    );
    let drained = setup.daemon.lines_with("host drained");
    assert_eq!(
        drained.len(),
        1,
        "the duplicate drains nothing more: {drained:#?}"
    );
    let moved = setup.daemon.lines_with("is drained: Spot interruption");
    assert_eq!(
        moved.len(),
        carried,
        "one write per route it carried: {moved:#?}"
    );
    // Undrained, it gets nothing back (the spread is sticky).
    let (status, _) = setup
        .daemon
        .http("DELETE", &format!("/hosts/{ip}/drain"), b"");
    assert_eq!(status, 200);
    assert_eq!(setup.daemon.view("/plan")["operations"], json!([]));
    common::wait_until("both messages deleted", || {
        (setup.waiting_messages() == 0).then_some(())
    });

    // Auto Scaling terminates another router, after a hook.
    let (ip, instance, eni) = setup.busy().unwrap();
    let token = "a1b2c3d4-1111-2222-3333-444455556666";
    let hook = json!({
        "LifecycleActionToken": token, "AutoScalingGroupName": "nat-routers",
        "LifecycleHookName": "drain-first", "EC2InstanceId": instance,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    });
    setup.send(&event(
        "EC2 Instance-terminate Lifecycle Action",
        "aws.autoscaling",
        hook,
    ));
    let sent = common::wait_until("the lifecycle action completed", || {
        setup.proxy.sent("CompleteLifecycleAction").pop()
    });
    assert!(
        !setup.routed_to(&eni),
        "completed while a route points at {eni}"
    );
    for field in [
        format!("InstanceId={instance}"),
        format!("LifecycleActionToken={token}"),
        "AutoScalingGroupName=nat-routers".into(),
        "LifecycleHookName=drain-first".into(),
        "LifecycleActionResult=CONTINUE".into(),
    ] {
        assert!(sent.contains(&field), "{field} not in {sent}");
    }
    assert!(
        setup
            .drain_reason(&ip)
            .contains("Auto Scaling: group nat-routers terminates")
    );
    // The routes moved before the completion was sent.
    let lines = setup.daemon.lines_with("");
    let moved = lines
        .iter()
        .rposition(|l| l.contains("route replaced") && l.contains("Auto Scaling"));
    let completed = lines
        .iter()
        .position(|l| l.contains("lifecycle action completed"));
    assert!(
        moved.is_some() && moved < completed,
        "moved {moved:?}, completed {completed:?}"
    );
    assert_eq!(setup.proxy.sent("CompleteLifecycleAction").len(), 1);
}

/// Hostile queue content: too big, not JSON, unknown kinds, another
/// instance's events and a flood of them are deleted, with a bounded
/// number of warnings, while the daemon keeps serving; a Spot warning sent
/// after the flood is still acted on.
#[test]
fn hostile_queue_content_is_deleted_and_bounded() {
    let setup = Setup::start();
    let big = "x".repeat(100 * 1024);
    setup.send(&big);
    setup.send("{not json");
    setup.send(&event(
        "EC2 AMI State Change",
        "aws.ec2",
        json!({"ImageId": "ami-1"}),
    ));
    let other = json!({"instance-id": "i-00000000000000001", "instance-action": "stop"});
    setup.send(&event(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        other,
    ));
    let flood_started = Instant::now();
    for batch in 0..30 {
        let entries = (0..10).map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(format!("{{\"junk\": {batch}{i}}}"))
                .build()
                .unwrap()
        });
        let sent = (setup.sqs.send_message_batch())
            .queue_url(&setup.queue)
            .set_entries(Some(entries.collect()))
            .send();
        setup.runtime.block_on(sent).unwrap();
        let (status, _) = setup.daemon.http("GET", "/healthz", b"");
        assert_eq!(status, 200, "serving during the flood");
    }
    let (ip, instance, eni) = setup.busy().unwrap();
    let spot = json!({"instance-id": instance, "instance-action": "stop"});
    setup.send(&event(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        spot,
    ));
    common::wait_until("routes off the interrupted router", || {
        (!setup.routed_to(&eni)).then_some(())
    });
    common::wait_until("the queue emptied", || {
        (setup.waiting_messages() == 0).then_some(())
    });
    println!("304 messages handled in {:?}", flood_started.elapsed());
    assert!(
        setup
            .drain_reason(&ip)
            .contains("Spot interruption warning")
    );
    let warnings = setup.daemon.lines_with("messages not used, deleted");
    assert!(
        !warnings.is_empty() && warnings.len() <= 40,
        "{} warnings",
        warnings.len()
    );
    assert!(
        warnings.iter().any(|w| w.contains("more than")),
        "{warnings:#?}"
    );
    let drained = setup.daemon.view("/ips")["drained_ips"].clone();
    assert_eq!(drained, json!([ip]), "only the router's drain: {drained}");
}

/// A state change to `stopping` drains the router (an hour at most); the
/// instance `running` again lifts that drain, and a rebalance
/// recommendation drains it anew.
#[test]
fn state_changes_drain_a_router_and_running_lifts_it() {
    let setup = Setup::start();
    let (ip, instance, eni) = setup.busy().unwrap();
    let kind = "EC2 Instance State-change Notification";
    setup.send(&event(
        kind,
        "aws.ec2",
        json!({"instance-id": instance, "state": "stopping"}),
    ));
    common::wait_until("routes off the stopping router", || {
        (!setup.routed_to(&eni)).then_some(())
    });
    assert_eq!(
        setup.drain_reason(&ip),
        format!("EC2: instance {instance} is stopping")
    );
    setup.send(&event(
        kind,
        "aws.ec2",
        json!({"instance-id": instance, "state": "running"}),
    ));
    common::wait_until("the drain lifted", || {
        setup.drain_reason(&ip).is_empty().then_some(())
    });
    let kind = "EC2 Instance Rebalance Recommendation";
    setup.send(&event(kind, "aws.ec2", json!({"instance-id": instance})));
    common::wait_until("drained again", || {
        setup
            .drain_reason(&ip)
            .contains("rebalance recommendation")
            .then_some(())
    });
}

/// A terminate hook waits while no other router can take the routes (all
/// drained: make-before-break keeps them): Auto Scaling is told so by a
/// heartbeat and nothing is completed; once another router is undrained
/// the routes move and the action is completed.
#[test]
fn a_hook_waits_with_heartbeats_while_the_routes_cannot_move() {
    let setup = Setup::start();
    let (ip, instance, eni) = setup.busy().unwrap();
    for other in ROUTERS.iter().filter(|r| **r != ip) {
        let (status, answer) = setup
            .daemon
            .http("POST", &format!("/hosts/{other}/drain"), b"");
        assert_eq!(status, 200, "{answer}");
    }
    let every = CIDRS.len() * setup.vpc.tables.len();
    common::wait_until("every route on the one router left", || {
        (setup.routes_to(&eni) == every).then_some(())
    });
    let token = "b1b2c3d4-1111-2222-3333-444455556666";
    let hook = json!({
        "LifecycleActionToken": token, "AutoScalingGroupName": "nat-routers",
        "LifecycleHookName": "drain-first", "EC2InstanceId": instance,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    });
    setup.send(&hook.to_string());
    let heartbeat = common::wait_until("a heartbeat while the routes stay", || {
        setup.proxy.sent("RecordLifecycleActionHeartbeat").pop()
    });
    assert!(
        heartbeat.contains(&format!("LifecycleActionToken={token}")),
        "{heartbeat}"
    );
    assert!(setup.proxy.sent("CompleteLifecycleAction").is_empty());
    assert_eq!(setup.routes_to(&eni), every, "make-before-break");

    let other = ROUTERS.iter().find(|r| **r != ip).unwrap();
    let (status, _) = setup
        .daemon
        .http("DELETE", &format!("/hosts/{other}/drain"), b"");
    assert_eq!(status, 200);
    common::wait_until("completed once the routes moved", || {
        setup.proxy.sent("CompleteLifecycleAction").pop()
    });
    assert!(!setup.routed_to(&eni));
}
