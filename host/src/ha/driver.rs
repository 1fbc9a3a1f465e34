//! The election loop of one replica: open a session, keep it alive every
//! third of the TTL, campaign; once elected, grant the fence until the
//! session can have expired by this replica's clock, and move that moment
//! on with every renewal. A lost session, a term found over, or etcd away
//! for longer than the session may last ends leadership (the fence is
//! revoked) and starts a new session. On shutdown the leader resigns, so a
//! standby takes over at once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

use super::{Election, ElectionError, Fence, HaStatus, Leadership, Role, Term, margin};
use crate::events::{EventKind, EventLog};
use crate::metrics;

/// Pause before trying again when etcd cannot be reached.
const RETRY: Duration = Duration::from_millis(500);
/// Longest a resignation may take at shutdown.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(1);

/// Start electing: the reconciler's handle and the task (it ends, after
/// resigning, once `shutdown` is true).
pub fn spawn(
    election: Arc<dyn Election>,
    id: String,
    ttl: Duration,
    events: Arc<EventLog>,
    shutdown: watch::Receiver<bool>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (status, receiver) = watch::channel(HaStatus {
        id,
        role: Role::Standby,
        leader: None,
        term: None,
        changed_at: None,
        problem: None,
    });
    let fence = Arc::new(Fence::default());
    let leadership = Leadership {
        status: receiver,
        fence: fence.clone(),
        election: election.clone(),
    };
    let driver = Driver {
        election,
        ttl,
        fence,
        status,
        events,
    };
    (leadership, tokio::spawn(driver.run(shutdown)))
}

struct Driver {
    election: Arc<dyn Election>,
    ttl: Duration,
    fence: Arc<Fence>,
    status: watch::Sender<HaStatus>,
    events: Arc<EventLog>,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    /// Start a new session.
    Again,
}

impl Driver {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let opened = Instant::now();
            let session = tokio::select! {
                _ = stopped(&mut shutdown) => return,
                opened = self.election.open() => opened,
            };
            if let Err(e) = session {
                self.trouble(&e);
                tokio::select! {
                    _ = stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
            match self.session(opened + self.ttl, &mut shutdown).await {
                Ended::Shutdown => return,
                Ended::Again => {}
            }
        }
    }

    /// One session: campaign while renewing; lead once elected.
    async fn session(&self, mut expires: Instant, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let margin = margin(self.ttl);
        let mut term: Option<Term> = None;
        let mut campaign = self.election.campaign();
        let mut renewals = tokio::time::interval(self.ttl / 3);
        renewals.tick().await;
        self.look(None).await;
        let ended = loop {
            tokio::select! {
                _ = stopped(shutdown) => break Ended::Shutdown,
                won = &mut campaign, if term.is_none() => match won {
                    Ok(won) if Instant::now() < expires - margin => {
                        self.fence.grant(won.clone(), expires - margin);
                        self.became(Role::Leader, Some(&won));
                        term = Some(won);
                    }
                    // Elected on a session that may have run out meanwhile.
                    Ok(_) => break Ended::Again,
                    Err(ElectionError::SessionLost(e)) => {
                        self.trouble(&ElectionError::SessionLost(e));
                        break Ended::Again;
                    }
                    Err(e) => {
                        self.trouble(&e);
                        campaign = Box::pin(async {
                            tokio::time::sleep(RETRY).await;
                            self.election.campaign().await
                        });
                    }
                },
                _ = renewals.tick() => {
                    let sent = Instant::now();
                    match tokio::time::timeout(self.ttl / 3, self.election.renew()).await {
                        Ok(Ok(())) => {
                            metrics::global().lease_renewal("ok");
                            expires = sent + self.ttl;
                            self.fence.extend(expires - margin);
                            self.status.send_if_modified(|s| s.problem.take().is_some());
                        }
                        Ok(Err(ElectionError::SessionLost(e))) => {
                            metrics::global().lease_renewal("lost");
                            self.trouble(&ElectionError::SessionLost(e));
                            break Ended::Again;
                        }
                        Ok(Err(e)) => {
                            metrics::global().lease_renewal("failed");
                            self.trouble(&e);
                        }
                        Err(_) => {
                            metrics::global().lease_renewal("failed");
                            self.trouble(&ElectionError::Unavailable("renewal timed out".into()));
                        }
                    }
                    // Past this, the lease may be gone in etcd: whatever
                    // happens next, this session is over.
                    if Instant::now() >= expires - margin {
                        break Ended::Again;
                    }
                    self.look(term.as_ref()).await;
                    if term.as_ref().is_some_and(|_| !self.fence_held()) {
                        break Ended::Again;
                    }
                }
            }
        };
        drop(campaign);
        self.fence.revoke();
        if term.is_some() {
            self.became(Role::Standby, None);
        }
        // A new session, or the end: let the next leader in at once. When
        // etcd is away this fails; the lease then runs out on its own.
        let resigned = tokio::time::timeout(RESIGN_TIMEOUT, self.election.resign(term.as_ref()));
        if let Ok(Err(e)) = resigned.await {
            tracing::debug!("resigning: {e}");
        }
        ended
    }

    /// Refresh who leads; a leader checks its own term is still current.
    async fn look(&self, term: Option<&Term>) {
        match term {
            Some(term) => match self.election.confirm(term).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(term = term.revision, "the term this replica led is over");
                    self.fence.revoke();
                }
                Err(e) => self.trouble(&e),
            },
            None => {
                if let Ok(current) = self.election.leader().await {
                    self.status.send_if_modified(|s| {
                        let (leader, revision) = match &current {
                            Some(t) => (Some(t.leader.clone()), Some(t.revision)),
                            None => (None, None),
                        };
                        let changed = s.leader != leader || s.term != revision;
                        if changed {
                            s.leader = leader;
                            s.term = revision;
                            s.changed_at = Some(SystemTime::now());
                        }
                        changed
                    });
                }
            }
        }
    }

    fn fence_held(&self) -> bool {
        self.fence.valid_now().is_some()
    }

    /// This replica's role changed.
    fn became(&self, role: Role, term: Option<&Term>) {
        let id = self.status.borrow().id.clone();
        metrics::global().leader.set((role == Role::Leader) as i64);
        metrics::global().leader_changes.inc();
        let reason = match (role, term) {
            (Role::Leader, Some(term)) => {
                tracing::info!(
                    id,
                    term = term.revision,
                    "this replica leads: it alone writes to EC2"
                );
                format!("{id} leads (term {})", term.revision)
            }
            _ => {
                tracing::warn!(id, "this replica no longer leads; it writes nothing");
                format!("{id} stopped leading")
            }
        };
        self.events
            .record(EventKind::Leadership, "leadership", reason, None);
        self.status.send_modify(|s| {
            s.role = role;
            s.leader = term.map(|t| t.leader.clone());
            s.term = term.map(|t| t.revision);
            s.changed_at = Some(SystemTime::now());
        });
    }

    /// etcd trouble: say so (once per distinct problem).
    fn trouble(&self, e: &ElectionError) {
        let problem = format!("etcd: {e}");
        self.status.send_if_modified(|s| {
            if s.problem.as_deref() == Some(problem.as_str()) {
                return false;
            }
            tracing::warn!("{problem}");
            s.problem = Some(problem.clone());
            true
        });
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
