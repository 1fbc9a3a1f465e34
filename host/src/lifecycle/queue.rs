//! The events queue's reader: long polls of SQS, at most one receive per
//! [`RECEIVE_SPACING`] (ten messages each), every message read as a
//! [`Signal`] and acted on, then deleted. A message that cannot be used is
//! deleted with a warning; one about an instance that is no router is
//! deleted quietly; one that arrives before the VPC has been observed waits
//! (it comes back after its visibility timeout). Only a leader reads.

use aws_sdk_autoscaling::error::DisplayErrorContext;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use super::signal::{self, LifecycleAction, Signal};
use crate::cloud::model::{Target, VpcState};
use crate::events::{EventKind, EventLog};
use crate::ha::Leadership;
use crate::health::{Drain, Drains};
use crate::reconcile::RouteReport;
use crate::spec_store::SpecStore;

/// Longest SQS holds a receive open when the queue is empty.
const LONG_POLL: i32 = 20;
/// Fewest time between two receives: a flood costs at most 10 messages a
/// spacing.
const RECEIVE_SPACING: Duration = Duration::from_millis(200);
/// How long a received message stays hidden from other readers.
const VISIBILITY: i32 = 60;
/// How long a signal's drain lasts when AWS gives no end (the instance is
/// gone by then, or an operator undrains it earlier).
const SIGNAL_DRAIN: Duration = Duration::from_secs(3600);
/// How long past a Spot interruption its drain lasts.
const AFTER_INTERRUPTION: Duration = Duration::from_secs(600);
/// When a lifecycle hook still waiting on the routes is first told so (a
/// drain usually moves them within a pass), and how often after that.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(60);
/// Longest a hook is held (heartbeats stop then; its own timeout decides).
const MAX_HOOK_WAIT: Duration = Duration::from_secs(900);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The AWS side: the queue and Auto Scaling.
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub queue_url: String,
}

impl Clients {
    /// Clients for `region`, through `endpoint` when given (tests, VPC
    /// endpoints).
    pub async fn new(region: &str, endpoint: Option<&str>, queue_url: String) -> Self {
        // A long poll holds the answer for LONG_POLL seconds.
        let attempt = Duration::from_secs(LONG_POLL as u64 + 5);
        let config = crate::aws::sdk_config(Some(region), endpoint, attempt).await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            queue_url,
        }
    }
}

/// What the reader acts with.
pub struct Reader {
    pub clients: Clients,
    pub drains: Arc<Drains>,
    pub specs: Arc<SpecStore>,
    pub routes: watch::Receiver<RouteReport>,
    pub leadership: Option<Leadership>,
    pub events: Arc<EventLog>,
    pub shutdown: watch::Receiver<bool>,
}

/// What became of a message.
enum Outcome {
    /// Acted on, or nothing to do: delete it.
    Done,
    /// Not yet possible (the VPC not observed): leave it.
    Later,
}

impl Reader {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::new(self).run())
    }

    async fn run(self: Arc<Self>) {
        tracing::info!(queue = self.clients.queue_url, "reading the events queue");
        let hooks = Arc::new(Mutex::new(HashSet::new()));
        let mut shutdown = self.shutdown.clone();
        let mut failures = 0u32;
        let mut told = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if !self.leading() {
                let mut status = self.leadership.as_ref().expect("HA").status();
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = status.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let received = tokio::select! {
                _ = shutdown.changed() => continue,
                received = self.receive() => received,
            };
            let pause = match received {
                Ok(messages) => {
                    failures = 0;
                    told = None;
                    self.handle(messages, &hooks).await;
                    RECEIVE_SPACING
                }
                Err(problem) => {
                    if told.as_ref() != Some(&problem) {
                        tracing::warn!(
                            queue = self.clients.queue_url,
                            problem,
                            "cannot read the events queue; trying again"
                        );
                        told = Some(problem);
                    }
                    failures += 1;
                    (Duration::from_secs(1) * 2u32.saturating_pow(failures - 1)).min(BACKOFF_CAP)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn leading(&self) -> bool {
        self.leadership.as_ref().is_none_or(Leadership::leading)
    }

    async fn receive(&self) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
        let answer = (self.clients.sqs.receive_message())
            .queue_url(&self.clients.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(LONG_POLL)
            .visibility_timeout(VISIBILITY)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        Ok(answer.messages.unwrap_or_default())
    }

    /// Act on a batch, then delete what is done with in one call.
    async fn handle(
        self: &Arc<Self>,
        messages: Vec<aws_sdk_sqs::types::Message>,
        hooks: &Arc<Mutex<HashSet<String>>>,
    ) {
        let mut done = Vec::new();
        let mut unusable: Vec<String> = Vec::new();
        for message in messages {
            let body = message.body().unwrap_or_default();
            let outcome = match signal::read(body) {
                Ok(signal) => self.act(signal, hooks).await,
                Err(why) => {
                    unusable.push(why.0);
                    Outcome::Done
                }
            };
            if let (Outcome::Done, Some(receipt)) = (outcome, message.receipt_handle()) {
                done.push(receipt.to_string());
            }
        }
        if let Some(first) = unusable.first() {
            // One line a batch, however many.
            tracing::warn!(
                count = unusable.len(),
                first = crate::text::clip(first, 200).as_ref(),
                "events queue: messages not used, deleted"
            );
        }
        self.delete(done).await;
    }

    async fn delete(&self, receipts: Vec<String>) {
        if receipts.is_empty() {
            return;
        }
        let entries = receipts.into_iter().enumerate().filter_map(|(i, receipt)| {
            (aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder())
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .ok()
        });
        let sent = (self.clients.sqs.delete_message_batch())
            .queue_url(&self.clients.queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await;
        if let Err(e) = sent {
            // They come back after their visibility timeout; acting twice is
            // harmless.
            tracing::warn!(problem = %DisplayErrorContext(e), "events queue: cannot delete messages");
        }
    }

    async fn act(self: &Arc<Self>, signal: Signal, hooks: &Arc<Mutex<HashSet<String>>>) -> Outcome {
        let Some(vpc) = self.routes.borrow().vpc.clone() else {
            return Outcome::Later;
        };
        let hosts = self.routers_of(&vpc, signal.instance());
        if hosts.is_empty() {
            tracing::debug!(
                instance = signal.instance(),
                "events queue: not a router; ignored"
            );
            return Outcome::Done;
        }
        let now = SystemTime::now();
        let (reason, until) = match &signal {
            Signal::SpotInterruption {
                instance,
                action,
                at,
            } => {
                let at = at.unwrap_or(now).max(now);
                let when = humantime::format_rfc3339_seconds(at);
                (
                    format!(
                        "Spot interruption warning: EC2 will {action} instance {instance} at {when}"
                    ),
                    at + AFTER_INTERRUPTION,
                )
            }
            Signal::RebalanceRecommendation { instance } => (
                format!(
                    "Spot rebalance recommendation: instance {instance} is at risk of interruption"
                ),
                now + SIGNAL_DRAIN,
            ),
            Signal::StateChange { instance, state } => match state.as_str() {
                state if crate::cloud::model::going_away(state) => (
                    format!("EC2: instance {instance} is {state}"),
                    now + SIGNAL_DRAIN,
                ),
                "running" => {
                    self.lift_signal_drains(&hosts, instance).await;
                    return Outcome::Done;
                }
                _ => return Outcome::Done,
            },
            Signal::Terminating(action) => (
                format!(
                    "Auto Scaling: group {} terminates instance {} (hook {})",
                    action.group, action.instance, action.hook
                ),
                now + SIGNAL_DRAIN,
            ),
        };
        for host in &hosts {
            if !self.drain(*host, &reason, until).await {
                return Outcome::Later;
            }
        }
        if let Signal::Terminating(action) = signal {
            let fresh = hooks
                .lock()
                .expect("hooks lock")
                .insert(action.token.clone());
            if fresh {
                let (reader, hooks) = (self.clone(), hooks.clone());
                tokio::spawn(async move {
                    reader.complete_when_unrouted(&action).await;
                    hooks.lock().expect("hooks lock").remove(&action.token);
                });
            }
        }
        Outcome::Done
    }

    /// The spec's router hosts on `instance`'s interfaces.
    fn routers_of(&self, vpc: &VpcState, instance: &str) -> BTreeSet<IpAddr> {
        let Some(spec) = self.specs.current() else {
            return BTreeSet::new();
        };
        (vpc.interfaces.iter())
            .filter(|i| i.instance.as_deref() == Some(instance))
            .flat_map(|i| i.ips.iter().copied())
            .filter(|ip| spec.hosts().contains(ip))
            .collect()
    }

    /// Drain `host` (once: a duplicate message changes nothing); false if
    /// the drain could not be kept.
    async fn drain(&self, host: IpAddr, reason: &str, until: SystemTime) -> bool {
        let drained = self.drains.drained();
        if drained.get(&host).is_some_and(|d| d.reason == reason) {
            return true;
        }
        let drain = match Drain::new(reason, Some(until)) {
            Ok(drain) => drain,
            Err(why) => {
                tracing::warn!(%host, why, "events queue: no drain");
                return true;
            }
        };
        match self.drains.drain(host, drain).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%host, problem = %e, "events queue: cannot keep the drain; the message waits");
                false
            }
        }
    }

    /// The instance runs again: the drains its signals made end.
    async fn lift_signal_drains(&self, hosts: &BTreeSet<IpAddr>, instance: &str) {
        let drained = self.drains.drained();
        for host in hosts {
            let by_signal = drained
                .get(host)
                .is_some_and(|d| d.reason.contains(&format!("instance {instance} ")));
            if by_signal && let Err(e) = self.drains.undrain(*host).await {
                tracing::warn!(%host, problem = %e, "events queue: cannot lift the drain");
            }
        }
    }

    /// Complete `action` with CONTINUE once no managed route points at its
    /// instance, telling Auto Scaling to wait meanwhile; given up after
    /// [`MAX_HOOK_WAIT`] (the hook's own timeout decides) or when this
    /// replica stops leading.
    async fn complete_when_unrouted(&self, action: &LifecycleAction) {
        let mut routes = self.routes.clone();
        let started = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(started + FIRST_HEARTBEAT, HEARTBEAT);
        loop {
            let routed = {
                let report = routes.borrow_and_update();
                (report.vpc.as_ref())
                    .is_none_or(|vpc| routed_at(vpc, &report.managed, &action.instance))
            };
            if !routed {
                break;
            }
            if started.elapsed() > MAX_HOOK_WAIT || !self.leading() || *self.shutdown.borrow() {
                tracing::warn!(
                    instance = action.instance,
                    group = action.group,
                    "routes still point at the instance; its lifecycle hook is left to its own timeout"
                );
                return;
            }
            tokio::select! {
                _ = routes.changed() => {}
                _ = heartbeat.tick() => self.heartbeat(action).await,
            }
        }
        let sent = (self.clients.autoscaling.complete_lifecycle_action())
            .auto_scaling_group_name(&action.group)
            .lifecycle_hook_name(&action.hook)
            .lifecycle_action_token(&action.token)
            .instance_id(&action.instance)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await;
        let subject = format!("instance {}", action.instance);
        match sent {
            Ok(_) => {
                tracing::info!(
                    instance = action.instance,
                    group = action.group,
                    hook = action.hook,
                    "no route points at it: lifecycle action completed (CONTINUE)"
                );
                let reason = format!(
                    "lifecycle action of {} completed: no route points at it",
                    action.group
                );
                self.events
                    .record(EventKind::HostDrain, subject, reason, None);
            }
            Err(e) => {
                tracing::warn!(instance = action.instance, problem = %DisplayErrorContext(e), "cannot complete the lifecycle action; the hook's own timeout decides");
            }
        }
    }

    async fn heartbeat(&self, action: &LifecycleAction) {
        let sent = (self.clients.autoscaling.record_lifecycle_action_heartbeat())
            .auto_scaling_group_name(&action.group)
            .lifecycle_hook_name(&action.hook)
            .lifecycle_action_token(&action.token)
            .instance_id(&action.instance)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(instance = action.instance, problem = %DisplayErrorContext(e), "cannot record a lifecycle heartbeat");
        }
    }
}

/// Whether a route of a `managed` table points at `instance` (its ENIs, or
/// itself).
fn routed_at(vpc: &VpcState, managed: &BTreeMap<String, String>, instance: &str) -> bool {
    let enis: HashSet<&str> = (vpc.interfaces.iter())
        .filter(|i| i.instance.as_deref() == Some(instance))
        .map(|i| i.id.as_str())
        .collect();
    let tables = vpc
        .route_tables
        .iter()
        .filter(|t| managed.contains_key(&t.id));
    (tables.flat_map(|t| &t.routes)).any(|route| match &route.target {
        Target::Interface(eni) => enis.contains(eni.as_str()),
        Target::Instance(id) => id == instance,
        Target::Other(_) => false,
    })
}
