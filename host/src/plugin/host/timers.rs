use std::time::Duration;

use super::super::bindings::config::vpcrouter::plugin::timers::Host;
use super::super::instance::HostState;

/// Shorter intervals are raised to this, so a plugin cannot spin the host.
const MIN_TIMER: Duration = Duration::from_millis(100);

impl Host for HostState {
    fn set_timer(&mut self, every_ms: u32) -> wasmtime::Result<()> {
        let every = (every_ms > 0).then(|| Duration::from_millis(every_ms.into()).max(MIN_TIMER));
        self.requests.timer = Some(every);
        Ok(())
    }
}
