//! The reconciler task. Events drive it, not a sleep loop: a new spec or a
//! health change plans against the cached VPC and issues only the mutating
//! calls needed, concurrently (bounded); the cache is updated from the calls
//! that succeeded. A full describe happens at start, every recheck interval,
//! and after any error; nothing is planned from a VPC that could not be
//! observed, and nothing before the first spec.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::{Action, Notice, Operation, Settings, plan};
use crate::cloud::VpcBackend;
use crate::cloud::model::VpcState;
use crate::health::HealthSnapshot;
use crate::spec_store::SpecWatch;

/// Route operations in flight at once.
const CONCURRENT_OPERATIONS: usize = 8;
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

pub struct Reconciler<B> {
    pub backend: Arc<B>,
    pub specs: SpecWatch,
    pub health: watch::Receiver<HealthSnapshot>,
    pub settings: Settings,
    /// Full describe this often (`None`: only at start and after errors).
    pub recheck: Option<Duration>,
    pub shutdown: watch::Receiver<bool>,
}

impl<B: VpcBackend> Reconciler<B> {
    pub async fn run(mut self) {
        let mut cache: Option<VpcState> = None;
        let mut backoff = BACKOFF_BASE;
        let mut next_full = Instant::now();
        let mut last_notices: Vec<Notice> = Vec::new();
        // When the change being acted on was seen, to report how long acting took.
        let mut trigger = Instant::now();
        loop {
            if cache.is_none() || Instant::now() >= next_full {
                match self.backend.describe().await {
                    Ok(state) => {
                        cache = Some(state);
                        backoff = BACKOFF_BASE;
                        next_full = Instant::now()
                            + self.recheck.unwrap_or(Duration::from_secs(365 * 86_400));
                    }
                    Err(e) => {
                        tracing::warn!(retry_in = ?backoff, "cannot observe the VPC, changing nothing: {e}");
                        cache = None;
                        if self.wait(Instant::now() + backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(BACKOFF_CAP);
                        continue;
                    }
                }
            }
            let spec = self.specs.borrow_and_update().clone();
            let health = self.health.borrow_and_update().clone();
            if let (Some(spec), Some(vpc)) = (spec, cache.as_mut()) {
                let plan = plan(&spec, &health, vpc, &self.settings);
                if plan.notices != last_notices {
                    for notice in &plan.notices {
                        tracing::warn!(subject = notice.subject, "{}", notice.message);
                    }
                    last_notices = plan.notices;
                }
                if !self.apply(plan.operations, vpc, trigger).await {
                    cache = None; // not as we thought: observe again
                    continue;
                }
            }
            if self.wait(next_full).await {
                return;
            }
            trigger = Instant::now();
        }
    }

    /// Carry out `operations`; update `vpc` with the ones that succeeded.
    /// False if any failed.
    async fn apply(
        &self,
        operations: Vec<Operation>,
        vpc: &mut VpcState,
        trigger: Instant,
    ) -> bool {
        let backend = &self.backend;
        let results: Vec<_> = futures_util::stream::iter(operations)
            .map(|op| async move {
                let result = backend.apply(&op).await;
                (op, result)
            })
            .buffer_unordered(CONCURRENT_OPERATIONS)
            .collect()
            .await;
        let mut all_ok = true;
        for (op, result) in results {
            let (cidr, table) = (op.destination, &op.table);
            let host = op
                .target
                .as_ref()
                .map(|(_, host)| host.to_string())
                .unwrap_or_default();
            let took_ms = trigger.elapsed().as_millis() as u64;
            match result {
                Ok(()) => {
                    let action = match op.action {
                        Action::Create => "route created",
                        Action::Replace => "route replaced",
                        Action::Delete => "route deleted",
                    };
                    tracing::info!(table, %cidr, host, reason = op.reason, took_ms, "{action}");
                    if let Err(e) = vpc.apply(&op) {
                        tracing::warn!(table, %cidr, "cached VPC out of step: {e}");
                        all_ok = false;
                    }
                }
                Err(e) => {
                    tracing::error!(table, %cidr, action = ?op.action, "route operation failed: {e}");
                    all_ok = false;
                }
            }
        }
        all_ok
    }

    /// Sleep until `until`, a spec or health change, or shutdown (true).
    async fn wait(&mut self, until: Instant) -> bool {
        tokio::select! {
            _ = async { let _ = self.shutdown.wait_for(|stop| *stop).await; } => true,
            _ = self.specs.changed() => false,
            _ = self.health.changed() => false,
            _ = tokio::time::sleep_until(until) => false,
        }
    }
}
