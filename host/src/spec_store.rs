//! The route spec in force. Config sources offer specs; each is validated,
//! and only a valid one replaces the spec in force. Consumers watch it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

use crate::spec::{RouteSpec, SpecDetails, SpecError};

/// Longest spec quoted in the log (the whole spec is on `/route_info`).
const MAX_LOGGED_SPEC: usize = 4096;

pub type SpecWatch = watch::Receiver<Option<Arc<RouteSpec>>>;

/// Whether an accepted spec changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Replaced,
    Unchanged,
}

pub struct SpecStore {
    current: watch::Sender<Option<Arc<RouteSpec>>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl Default for SpecStore {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }
}

impl SpecStore {
    pub fn subscribe(&self) -> SpecWatch {
        self.current.subscribe()
    }

    pub fn current(&self) -> Option<Arc<RouteSpec>> {
        self.current.borrow().clone()
    }

    /// Validate and, if valid, put in force what plugin `source` produced.
    /// A rejected spec changes nothing; the error says why.
    pub fn offer<I, H>(&self, source: &str, entries: I) -> Result<Offer, SpecError>
    where
        I: IntoIterator<Item = (String, H)>,
        H: IntoIterator<Item = String>,
    {
        self.offer_with(source, entries, SpecDetails::default())
    }

    /// As [`SpecStore::offer`], with route tables and options of their own
    /// for some CIDRs, as the plugin gave them.
    pub fn offer_with<I, H>(
        &self,
        source: &str,
        entries: I,
        details: SpecDetails,
    ) -> Result<Offer, SpecError>
    where
        I: IntoIterator<Item = (String, H)>,
        H: IntoIterator<Item = String>,
    {
        let spec = match RouteSpec::from_entries(entries).and_then(|s| s.with_details(details)) {
            Ok(spec) => spec,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    plugin = source,
                    "rejected route spec, keeping the one in force: {e}"
                );
                return Err(e);
            }
        };
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let replaced = self.current.send_if_modified(|current| {
            if current.as_deref() == Some(&spec) {
                return false;
            }
            *current = Some(Arc::new(spec.clone()));
            true
        });
        if replaced {
            let shown = spec.to_json().to_string();
            let shown = crate::text::clip(&shown, MAX_LOGGED_SPEC);
            tracing::info!(plugin = source, routes = spec.len(), spec = %shown, "accepted route spec");
            Ok(Offer::Replaced)
        } else {
            tracing::debug!(plugin = source, "route spec unchanged");
            Ok(Offer::Unchanged)
        }
    }

    /// (accepted, rejected) spec offers so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(cidr: &str, hosts: &[&str]) -> Vec<(String, Vec<String>)> {
        vec![(cidr.into(), hosts.iter().map(|h| h.to_string()).collect())]
    }

    #[test]
    fn a_rejected_spec_keeps_the_one_in_force() {
        let store = SpecStore::default();
        let good = entries("10.1.0.0/16", &["10.9.0.5"]);
        assert_eq!(store.offer("t", good.clone()), Ok(Offer::Replaced));
        let before = store.current();
        assert!(store.offer("t", entries("10.1.0.1/16", &[])).is_err());
        assert_eq!(store.current(), before);
        assert_eq!(store.offer("t", good), Ok(Offer::Unchanged));
        assert_eq!(store.counts(), (2, 1));
    }
}
