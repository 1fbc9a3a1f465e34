//! The daemon's recent decisions (failovers, repairs, spec changes, health
//! changes, EC2 trouble, leadership changes), newest first, for `GET /events` and the status
//! page. Bounded: the oldest are dropped. Each is also handed to a tap,
//! if one is set (the notification queue, `notify`).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// What sees every event as it is recorded; it must not wait.
pub type Tap = Box<dyn Fn(&Event) + Send + Sync>;

/// Events kept.
pub const CAPACITY: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A route moved off a failed or questionable host.
    Failover,
    /// A route pointed at something gone or not eligible and was replaced.
    Repair,
    /// A route the spec wants was created.
    Create,
    /// A route no longer in the spec was deleted.
    Delete,
    /// A route moved from one healthy host to another because the operator
    /// asked for the balanced spread back.
    Rebalance,
    /// A route operation EC2 refused or that failed.
    Error,
    /// A new route spec came into force.
    Spec,
    HostFailed,
    HostQuestionable,
    HostRecovered,
    /// A host held down for flapping, or let go.
    HostHeld,
    HostReleased,
    /// A host drained on purpose, or no longer.
    HostDrain,
    /// A route moved off a drained host.
    Drain,
    /// Routes went to their CIDR's fallback target (or were withdrawn):
    /// no router of the CIDR is eligible.
    FallbackEngaged,
    /// A route went back from its fallback to a router.
    FallbackCleared,
    /// A CIDR has no usable eligible router (and no fallback): its routes
    /// are left as they are.
    NoEligibleRouter,
    /// EC2 has refused every call as throttled for long (route changes
    /// wait), or answers again.
    Ec2Throttled,
    Ec2ThrottleEnded,
    /// HA: this replica became leader or stopped leading.
    Leadership,
    /// A plugin was reloaded, or a reload failed.
    Plugin,
}

impl EventKind {
    /// As `/events` and notices name it: `failover`, `host_failed`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(skip)]
    pub when: SystemTime,
    pub kind: EventKind,
    /// What it is about: `rtb-1 10.55.0.0/16`, a host, `route spec`.
    pub subject: String,
    pub reason: String,
    /// From the change being seen to the decision being carried out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A route change's table, CIDR and targets.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteChange>,
}

/// What a route change changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteChange {
    pub table: String,
    pub cidr: String,
    /// The router (its address) or gateway the route pointed at; none for
    /// a new route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What it points at now; none once deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl Event {
    pub fn new(
        kind: EventKind,
        subject: impl Into<String>,
        reason: impl Into<String>,
        duration_ms: Option<u64>,
    ) -> Self {
        let when = SystemTime::now();
        Event {
            at: humantime::format_rfc3339_millis(when).to_string(),
            when,
            kind,
            subject: subject.into(),
            reason: reason.into(),
            duration_ms,
            route: None,
        }
    }
}

pub struct EventLog {
    entries: Mutex<VecDeque<Event>>,
    tap: OnceLock<Tap>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(CAPACITY)),
            tap: OnceLock::new(),
        }
    }
}

impl EventLog {
    /// From now on, hand every event to `tap` too (set once, at start).
    pub fn tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    pub fn record(
        &self,
        kind: EventKind,
        subject: impl Into<String>,
        reason: impl Into<String>,
        duration_ms: Option<u64>,
    ) {
        self.push(Event::new(kind, subject, reason, duration_ms));
    }

    /// A route change, with what it changed.
    pub fn record_route(
        &self,
        kind: EventKind,
        change: RouteChange,
        reason: impl Into<String>,
        duration_ms: Option<u64>,
    ) {
        let subject = format!("{} {}", change.table, change.cidr);
        self.push(Event {
            route: Some(change),
            ..Event::new(kind, subject, reason, duration_ms)
        });
    }

    fn push(&self, event: Event) {
        if let Some(tap) = self.tap.get() {
            tap(&event);
        }
        let mut entries = self.entries.lock().expect("event log lock");
        if entries.len() == CAPACITY {
            entries.pop_back();
        }
        entries.push_front(event);
    }

    /// The latest `n`, newest first.
    pub fn latest(&self, n: usize) -> Vec<Event> {
        let entries = self.entries.lock().expect("event log lock");
        entries.iter().take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_and_bounded() {
        let log = EventLog::default();
        for i in 0..CAPACITY + 5 {
            log.record(EventKind::Create, format!("route {i}"), "r", None);
        }
        let all = log.latest(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].subject, format!("route {}", CAPACITY + 4));
        assert_eq!(all.last().unwrap().subject, "route 5");
        assert_eq!(log.latest(2).len(), 2);
    }
}
