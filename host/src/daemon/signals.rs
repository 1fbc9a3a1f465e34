//! The signals the daemon acts on: SIGINT and SIGTERM stop it, SIGHUP
//! reloads the plugins whose files changed.

use crate::plugin::reload::Reloads;

/// The signals the daemon acts on, taken over before it says it has
/// started: a SIGTERM right after "vpcrouter started" stops it cleanly
/// instead of killing it.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn take_over() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Wait for SIGINT or SIGTERM (which one); a SIGHUP meanwhile reloads the
/// plugins whose files changed.
pub async fn until_stopped(
    signals: &mut Signals,
    reloads: &Reloads,
) -> anyhow::Result<&'static str> {
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => return Ok("SIGINT"),
            _ = signals.terminate.recv() => return Ok("SIGTERM"),
            _ = signals.hangup.recv() => {
                tracing::info!("SIGHUP: reloading the plugins whose files changed");
                reloads.request();
            }
        }
    }
}
