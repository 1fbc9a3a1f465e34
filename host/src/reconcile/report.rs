//! What the reconciler tells the rest of the daemon: the VPC as last
//! observed (and kept up to date with the operations since), whether the
//! last round succeeded, and per route table and CIDR the last action taken
//! and why. Published on a watch channel for the HTTP views.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cloud::model::VpcState;
use crate::spec::Fallback;

#[derive(Debug, Clone, Default)]
pub struct RouteReport {
    /// `None` until the VPC has been observed, and while it cannot be.
    pub vpc: Option<Arc<VpcState>>,
    pub observed_at: Option<SystemTime>,
    /// When a round last ended with the VPC as planned.
    pub last_success: Option<SystemTime>,
    /// Why the last round did not, if it did not.
    pub last_error: Option<String>,
    /// (route table, CIDR) -> the last action taken there. Shared with
    /// the views' snapshots (cloned only when written while one is taken).
    pub actions: Arc<BTreeMap<(String, IpNet), LastAction>>,
    /// The tables the last plan managed, and why (route table -> why).
    pub managed: Arc<BTreeMap<String, String>>,
    /// (CIDR, route table) -> the fallback its route is on, and since when.
    pub fallbacks: Arc<BTreeMap<(IpNet, String), OnFallback>>,
    /// Seconds routes have spent on their fallback, per (CIDR, route
    /// table), over the periods that ended.
    pub fallback_seconds: Arc<BTreeMap<(IpNet, String), f64>>,
}

/// A route on its fallback since `since`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnFallback {
    pub fallback: Fallback,
    pub since: SystemTime,
}

/// (CIDR, table) pairs whose fallback time is kept once they are off it.
const MAX_FALLBACK_RECORDS: usize = 10_000;

/// Last actions kept. Those of routes still in their table are always
/// kept; past this, those of routes gone from the VPC are dropped (a
/// config source churning new CIDRs cannot grow the report without end).
const MAX_ACTIONS: usize = 50_000;

impl RouteReport {
    /// Record the last action on `table`'s route to `cidr`.
    pub fn record(&mut self, table: &str, cidr: IpNet, last: LastAction) {
        let actions = Arc::make_mut(&mut self.actions);
        actions.insert((table.to_string(), cidr), last);
        if actions.len() > MAX_ACTIONS
            && let Some(vpc) = &self.vpc
        {
            let present: std::collections::HashSet<(&str, IpNet)> = vpc
                .route_tables
                .iter()
                .flat_map(|t| t.routes.iter().map(move |r| (t.id.as_str(), r.destination)))
                .collect();
            actions.retain(|(table, cidr), _| present.contains(&(table.as_str(), *cidr)));
        }
    }

    /// Take where routes are on their fallback after a pass: those new to
    /// it from `now`, the time of those that left it added to their total.
    pub fn set_fallbacks(&mut self, now_on: &BTreeMap<(IpNet, String), Fallback>, now: SystemTime) {
        let before = self.fallbacks.as_ref();
        let unchanged = before.len() == now_on.len()
            && (before.iter().zip(now_on)).all(|((k, a), (l, b))| k == l && a.fallback == *b);
        if unchanged {
            return;
        }
        let mut seconds = self.fallback_seconds.as_ref().clone();
        for (key, on) in before.iter().filter(|(k, _)| !now_on.contains_key(*k)) {
            let spent = now
                .duration_since(on.since)
                .unwrap_or_default()
                .as_secs_f64();
            tracing::info!(cidr = %key.0, table = key.1, fallback = %on.fallback, spent_seconds = spent.round(), "off the fallback");
            *seconds.entry(key.clone()).or_default() += spent;
        }
        if seconds.len() > MAX_FALLBACK_RECORDS {
            seconds.retain(|key, _| now_on.contains_key(key));
        }
        let fallbacks = (now_on.iter())
            .map(|(key, fallback)| {
                let on = match before.get(key) {
                    Some(on) if on.fallback == *fallback => on.clone(),
                    _ => {
                        tracing::warn!(cidr = %key.0, table = key.1, %fallback, "on the fallback: no eligible router");
                        OnFallback {
                            fallback: fallback.clone(),
                            since: now,
                        }
                    }
                };
                (key.clone(), on)
            })
            .collect();
        self.fallbacks = Arc::new(fallbacks);
        self.fallback_seconds = Arc::new(seconds);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LastAction {
    /// created, replaced, deleted.
    pub action: &'static str,
    pub reason: String,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The error, if the operation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
