//! Telling people what the daemon did. Every event the daemon records
//! (`events.rs`: routes moved, fallbacks, failed routers, drains, leader
//! changes) is offered here as well, without waiting: a full queue drops
//! the event and counts it. A grouping task gathers what arrives within a
//! moment of the first event into one batch (about one reconcile pass), and
//! each sink (a notifier plugin such as the bundled webhook, an SNS topic,
//! an EventBridge bus) takes batches
//! in a task of its own: rate-limited (later batches merged while it
//! waits), bounded (the oldest dropped and counted), each delivery under a
//! deadline and tried at most [`TRIES`] times. Nothing here is on the
//! reconciler's path: a sink that hangs delays only its own notices.

mod aws;
mod sink;
mod target;

pub use aws::sink as aws_sink;
pub use sink::{NotifyCall, PluginSink, Sink};
pub use target::{SinkTarget, WebhookUrl};

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::events::{Event, EventKind};
use crate::ha::Leadership;

/// Events waiting for the grouping task; more are dropped and counted.
pub const QUEUE: usize = 1024;
/// How long after a first event the rest of its batch may come.
pub const GROUP_WINDOW: Duration = Duration::from_millis(250);
/// Notices in one batch; the rest are dropped and counted.
pub const MAX_NOTICES: usize = 200;
/// Batches waiting for one sink; the oldest go first.
pub const SINK_QUEUE: usize = 16;
/// One delivery's deadline, a call into a plugin included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per batch, [`RETRY_AFTER`] apart, doubling.
pub const TRIES: u32 = 3;
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What every batch says of its origin, and under HA whether this
/// replica speaks: only the leader notifies (every replica sees the same
/// routers fail), but each tells of its own leadership changes.
#[derive(Clone)]
pub struct Origin {
    pub vpc: String,
    pub replica: String,
    pub leadership: Option<Leadership>,
}

impl Origin {
    fn speaks_of(&self, event: &Event) -> bool {
        event.kind == EventKind::Leadership
            || self.leadership.as_ref().is_none_or(Leadership::may_write)
    }
}

/// A batch as sinks receive it: the JSON a webhook sends.
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub source: &'static str,
    pub vpc: String,
    pub replica: String,
    pub notices: Vec<Event>,
    /// Notices left out since the last batch.
    pub dropped: u32,
}

impl Batch {
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a batch serialises")
    }

    /// The JSON in at most `max` bytes: the oldest notices left out (and
    /// counted as dropped) until it fits.
    pub fn json_within(&self, max: usize) -> String {
        let json = self.json();
        if json.len() <= max {
            return json;
        }
        let (mut kept, mut json) = (self.clone(), json);
        while kept.notices.len() > 1 && json.len() > max {
            let each = json.len() / kept.notices.len();
            let over = json.len() - max;
            let drop = over.div_ceil(each.max(1)).clamp(1, kept.notices.len() - 1);
            kept.notices.drain(..drop);
            kept.dropped += drop as u32;
            json = kept.json();
        }
        json
    }
}

/// The daemon's side of the queue: offer an event, never wait.
#[derive(Clone)]
pub struct Notices {
    sender: mpsc::Sender<Event>,
    dropped: Arc<AtomicU32>,
}

impl Notices {
    /// Queue `event` for the sinks; counted as dropped when the queue is
    /// full.
    pub fn offer(&self, event: &Event) {
        if self.sender.try_send(event.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Start grouping events into batches for `sinks`, at most one delivery
/// per `min_interval` each; the handle events are offered to.
pub fn start(sinks: Vec<Arc<dyn Sink>>, origin: Origin, min_interval: Duration) -> Notices {
    let (sender, events) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU32::new(0));
    let queues: Vec<Arc<SinkQueue>> = sinks
        .into_iter()
        .map(|sink| {
            let queue = Arc::new(SinkQueue::default());
            tokio::spawn(deliver(sink, queue.clone(), min_interval));
            queue
        })
        .collect();
    tokio::spawn(group(events, dropped.clone(), queues, origin));
    Notices { sender, dropped }
}

/// Gather the events that arrive within [`GROUP_WINDOW`] of a first one
/// into a batch, for every sink.
async fn group(
    mut events: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU32>,
    queues: Vec<Arc<SinkQueue>>,
    origin: Origin,
) {
    while let Some(first) = events.recv().await {
        if !origin.speaks_of(&first) {
            continue;
        }
        let mut notices = vec![first];
        let until = Instant::now() + GROUP_WINDOW;
        while notices.len() < MAX_NOTICES {
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Some(event)) if origin.speaks_of(&event) => notices.push(event),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let batch = Batch {
            source: "vpcrouter",
            vpc: origin.vpc.clone(),
            replica: origin.replica.clone(),
            notices,
            dropped: dropped.swap(0, Ordering::Relaxed),
        };
        for queue in &queues {
            queue.offer(batch.clone());
        }
    }
}

/// Batches waiting for one sink.
#[derive(Default)]
struct SinkQueue {
    batches: Mutex<VecDeque<Batch>>,
    /// Notices of batches dropped for room.
    dropped: AtomicU32,
    arrived: Notify,
}

impl SinkQueue {
    fn offer(&self, batch: Batch) {
        let mut batches = self.batches.lock().expect("sink queue lock");
        if batches.len() == SINK_QUEUE
            && let Some(oldest) = batches.pop_front()
        {
            let lost = oldest.notices.len() as u32 + oldest.dropped;
            self.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        batches.push_back(batch);
        drop(batches);
        self.arrived.notify_one();
    }

    /// Everything waiting, as one batch of at most [`MAX_NOTICES`]
    /// notices (the rest counted as dropped); `None` when nothing waits.
    fn take_merged(&self) -> Option<Batch> {
        let mut batches = self.batches.lock().expect("sink queue lock");
        let mut merged = batches.pop_front()?;
        for batch in batches.drain(..) {
            merged.notices.extend(batch.notices);
            merged.dropped += batch.dropped;
        }
        if merged.notices.len() > MAX_NOTICES {
            let over = merged.notices.len() - MAX_NOTICES;
            merged.notices.drain(..over);
            merged.dropped += over as u32;
        }
        merged.dropped += self.dropped.swap(0, Ordering::Relaxed);
        Some(merged)
    }
}

/// One sink's task: wait for batches, keep to the rate limit (merging
/// what queued meanwhile), deliver with retries.
async fn deliver(sink: Arc<dyn Sink>, queue: Arc<SinkQueue>, min_interval: Duration) {
    let name = sink.name();
    let mut last: Option<Instant> = None;
    loop {
        queue.arrived.notified().await;
        if let Some(last) = last {
            tokio::time::sleep_until(last + min_interval).await;
        }
        let Some(batch) = queue.take_merged() else {
            continue;
        };
        let batch = Arc::new(batch);
        let notices = batch.notices.len();
        let mut wait = RETRY_AFTER;
        let mut outcome = "failed";
        for attempt in 1..=TRIES {
            let result = tokio::time::timeout(DELIVERY_TIMEOUT, sink.deliver(batch.clone())).await;
            let why = match result {
                Ok(Ok(())) => {
                    outcome = "sent";
                    break;
                }
                Ok(Err(why)) => why,
                Err(_) => format!("no answer within {DELIVERY_TIMEOUT:?}"),
            };
            tracing::warn!(
                sink = name,
                attempt,
                notices,
                "notification not delivered: {why}"
            );
            if attempt < TRIES {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        if outcome == "failed" {
            tracing::error!(
                sink = name,
                notices,
                "notifications lost after {TRIES} tries"
            );
        } else {
            tracing::debug!(sink = name, notices, "notifications sent");
        }
        crate::metrics::global().notification(&name, outcome, notices);
        last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, EventLog};
    use std::sync::atomic::AtomicUsize;

    /// A sink that keeps what it is given, or hangs.
    struct Kept {
        batches: Mutex<Vec<Arc<Batch>>>,
        hangs: bool,
        calls: AtomicUsize,
    }

    impl Sink for Kept {
        fn name(&self) -> String {
            "kept".into()
        }

        fn deliver(&self, batch: Arc<Batch>) -> sink::Delivery<'_> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::Relaxed);
                if self.hangs {
                    std::future::pending::<()>().await;
                }
                self.batches.lock().unwrap().push(batch);
                Ok(())
            })
        }
    }

    fn kept(hangs: bool) -> Arc<Kept> {
        Arc::new(Kept {
            batches: Mutex::new(Vec::new()),
            hangs,
            calls: AtomicUsize::new(0),
        })
    }

    fn origin() -> Origin {
        Origin {
            vpc: "vpc-1".into(),
            replica: "r1".into(),
            leadership: None,
        }
    }

    /// Until `done` holds (within 10 s).
    async fn until(what: &str, done: impl Fn() -> bool) {
        let waiting = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within 10 s"));
    }

    /// Events of one pass come as one batch; a hanging sink beside a good
    /// one delays nobody.
    #[tokio::test]
    async fn a_pass_is_one_batch_and_a_hanging_sink_holds_back_nobody() {
        let (good, stuck) = (kept(false), kept(true));
        let sinks: Vec<Arc<dyn Sink>> = vec![good.clone(), stuck.clone()];
        let notices = start(sinks, origin(), Duration::from_millis(20));
        let log = EventLog::default();
        log.tap(Box::new(move |event| notices.offer(event)));
        for i in 0..5 {
            log.record(
                EventKind::Failover,
                format!("rtb-{i} 10.55.0.0/16"),
                "A failed",
                Some(3),
            );
        }
        let delivered = || -> usize {
            let batches = good.batches.lock().unwrap();
            batches.iter().map(|b| b.notices.len()).sum()
        };
        until("the first batch", || delivered() == 5).await;
        let batches = good.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].dropped, 0);
        assert!(batches[0].json().contains(r#""kind":"failover""#));
        // Later passes reach the good sink while the stuck one is still in
        // its first try.
        for pass in 0..8 {
            log.record(
                EventKind::HostFailed,
                format!("10.0.0.{pass}"),
                "down",
                None,
            );
            until("the next pass", || delivered() == 6 + pass).await;
        }
        assert_eq!(stuck.calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_batch_too_big_for_a_message_loses_its_oldest_notices_and_says_so() {
        let batch = Batch {
            source: "vpcrouter",
            vpc: String::new(),
            replica: String::new(),
            notices: (0..100)
                .map(|i| Event::new(EventKind::Error, format!("n{i}"), "x".repeat(1000), None))
                .collect(),
            dropped: 3,
        };
        assert_eq!(batch.json_within(1 << 20), batch.json());
        let small: serde_json::Value = serde_json::from_str(&batch.json_within(20_000)).unwrap();
        let kept = small["notices"].as_array().unwrap();
        assert!(small.to_string().len() <= 20_000);
        assert!(kept.len() >= 15, "{}", kept.len());
        assert_eq!(kept.last().unwrap()["subject"], "n99");
        assert_eq!(
            small["dropped"].as_u64().unwrap() as usize,
            3 + 100 - kept.len()
        );
    }

    /// The rate limit merges what queued meanwhile; an overfull merge keeps
    /// the newest and counts the rest.
    #[test]
    fn merged_batches_keep_the_newest_and_count_the_rest() {
        let queue = SinkQueue::default();
        let event = |i: usize| Event::new(EventKind::Create, format!("route {i}"), "r", None);
        for round in 0..(SINK_QUEUE + 2) {
            queue.offer(Batch {
                source: "vpcrouter",
                vpc: String::new(),
                replica: String::new(),
                notices: (0..20).map(|i| event(round * 20 + i)).collect(),
                dropped: 1,
            });
        }
        let merged = queue.take_merged().unwrap();
        assert_eq!(merged.notices.len(), MAX_NOTICES);
        let total = (SINK_QUEUE + 2) * 21;
        assert_eq!(merged.notices.len() + merged.dropped as usize, total);
        assert_eq!(
            merged.notices.last().unwrap().subject,
            format!("route {}", (SINK_QUEUE + 2) * 20 - 1)
        );
        assert!(queue.take_merged().is_none());
    }
}
