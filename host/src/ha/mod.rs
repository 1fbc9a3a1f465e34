//! Controller HA: several replicas, one writer. Every replica loads its
//! plugins, probes, observes the VPC and serves HTTP; only the one that
//! leads an election in a coordination service (etcd) makes mutating EC2
//! calls.
//!
//! Fencing, since EC2 has no conditional writes: the leader's right to
//! write ends on its own clock before its lease can have expired in etcd
//! (the moment it sent its last successful renewal + the TTL - a margin),
//! and each batch of writes is preceded by a linearizable check in etcd that
//! its term is still the current one. A leader that was frozen (SIGSTOP, a
//! pause, a partition) finds its clock past that moment when it resumes and
//! writes nothing until it has won an election again. What remains is a
//! write already on the wire (or between the last clock check and the
//! socket) when the pause began.

pub mod driver;
pub mod etcd;

use serde::Serialize;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

use crate::cli::EtcdUrl;

pub use driver::spawn;

/// How this replica takes part in the election of the one that writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSettings {
    pub endpoints: Vec<EtcdUrl>,
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub client: Option<(PathBuf, PathBuf)>,
    pub lease_ttl: Duration,
    pub id: String,
    /// `None`: `/vpcrouter/<vpc-id>/leader`.
    pub election: Option<String>,
}

impl HaSettings {
    /// The election key for the VPC `vpc`.
    pub fn election_key(&self, vpc: &str) -> String {
        self.election
            .clone()
            .unwrap_or_else(|| format!("/vpcrouter/{vpc}/leader"))
    }

    /// Where the replicas keep drains: beside the election, outside its
    /// prefix (a key under it would stand in the election's queue).
    pub fn drains_key(&self, vpc: &str) -> String {
        match &self.election {
            Some(election) => format!("{election}-drains"),
            None => format!("/vpcrouter/{vpc}/drains"),
        }
    }
}

/// One term of leadership: who won, and the election revision it was won
/// at (etcd's create revision of the leader key: it grows with every term).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub leader: String,
    pub revision: i64,
    /// The service's handle on the term (etcd: the leader key).
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Standby,
}

/// What this replica knows of the election, for the views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaStatus {
    /// This replica's id.
    pub id: String,
    pub role: Role,
    /// The leader's id and term, when known.
    pub leader: Option<String>,
    pub term: Option<i64>,
    /// When this replica last saw the leadership change.
    #[serde(serialize_with = "rfc3339")]
    pub changed_at: Option<SystemTime>,
    /// Why this replica cannot take part, e.g. etcd unreachable.
    pub problem: Option<String>,
}

fn rfc3339<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&humantime::format_rfc3339_millis(*at).to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ElectionError {
    /// The service could not be reached or answered an error.
    #[error("{0}")]
    Unavailable(String),
    /// The session (etcd: the lease) is gone; leadership with it.
    #[error("session lost: {0}")]
    SessionLost(String),
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, ElectionError>> + Send + 'a>>;

/// A coordination service that elects one leader among the replicas
/// (etcd's election API today; a Kubernetes Lease would be another).
pub trait Election: Send + Sync + 'static {
    /// Start a session (a lease of the TTL) that campaigns hang on.
    fn open(&self) -> Boxed<'_, ()>;
    /// Keep the session alive.
    fn renew(&self) -> Boxed<'_, ()>;
    /// Wait until this replica leads; the term won.
    fn campaign(&self) -> Boxed<'_, Term>;
    /// Whether `term` is still the current one (a linearizable check).
    fn confirm<'a>(&'a self, term: &'a Term) -> Boxed<'a, bool>;
    /// The current term, if anyone leads.
    fn leader(&self) -> Boxed<'_, Option<Term>>;
    /// Give up leadership and end the session.
    fn resign<'a>(&'a self, term: Option<&'a Term>) -> Boxed<'a, ()>;
}

/// The right to write: the term this replica leads, until when by its own
/// clock. Set by the election driver, read before every write.
#[derive(Debug, Default)]
pub struct Fence(Mutex<Option<(Term, Instant)>>);

impl Fence {
    /// The term, if this replica may write now.
    pub fn valid_now(&self) -> Option<Term> {
        let held = self.0.lock().expect("fence lock");
        held.as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(term, _)| term.clone())
    }

    fn grant(&self, term: Term, until: Instant) {
        *self.0.lock().expect("fence lock") = Some((term, until));
    }

    /// Move the end of the right on (a renewal succeeded).
    fn extend(&self, until: Instant) {
        if let Some((_, held)) = self.0.lock().expect("fence lock").as_mut() {
            *held = until;
        }
    }

    fn revoke(&self) {
        *self.0.lock().expect("fence lock") = None;
    }
}

/// The reconciler's side of HA: whether to act, and the checks before it
/// writes.
#[derive(Clone)]
pub struct Leadership {
    status: watch::Receiver<HaStatus>,
    fence: Arc<Fence>,
    election: Arc<dyn Election>,
}

impl Leadership {
    pub fn status(&self) -> watch::Receiver<HaStatus> {
        self.status.clone()
    }

    /// Whether this replica leads (and its right to write has not run out).
    pub fn leading(&self) -> bool {
        self.fence.valid_now().is_some()
    }

    /// Before a batch of writes: the term, if this replica still leads by
    /// its own clock and by etcd's word.
    pub async fn confirm(&self) -> Result<Term, String> {
        let term = self
            .fence
            .valid_now()
            .ok_or("not the leader (or its lease may have expired)")?;
        match self.election.confirm(&term).await {
            Ok(true) => {}
            Ok(false) => return Err(format!("term {} is over", term.revision)),
            Err(e) => return Err(format!("cannot confirm leadership: {e}")),
        }
        // The check took time: the clock must still allow writing.
        self.fence
            .valid_now()
            .ok_or_else(|| "the lease may have expired while confirming".to_string())
    }

    /// Before each single write: the right has not run out.
    pub fn may_write(&self) -> bool {
        self.fence.valid_now().is_some()
    }
}

/// How long before its lease can have expired a leader stops writing: a
/// fifth of the TTL, at least 500 ms (clock rates, scheduling).
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(500))
}
