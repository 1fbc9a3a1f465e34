//! Verdicts a health-check plugin hands over during `check`, before the
//! round ends: they go to the health board as soon as the call yields, so
//! a failed router is failed over without waiting for the slowest probe.
//! Each call takes at most [`MAX_VERDICTS_PER_HOST`] per host; hosts
//! outside the working set are dropped by the supervisor like any verdict.

use super::super::bindings::HostHealth;
use super::super::bindings::health::vpcrouter::plugin::verdicts::Host;
use super::super::instance::HostState;
use super::super::limits::MAX_VERDICTS_PER_HOST;

impl Host for HostState {
    fn report(&mut self, verdicts: Vec<HostHealth>) -> wasmtime::Result<()> {
        let Some(spec) = self.grants.working_set() else {
            return Ok(());
        };
        let working_set = spec.working_set();
        let total = verdicts.len();
        let taken: Vec<HostHealth> = verdicts
            .into_iter()
            .filter(|v| {
                working_set
                    .lookup(&v.host)
                    .is_none_or(|ip| self.usage.verdict(ip))
            })
            .collect();
        if taken.len() < total {
            tracing::debug!(
                plugin = &*self.plugin,
                ignored = total - taken.len(),
                "early verdicts over {MAX_VERDICTS_PER_HOST} per host in one call ignored"
            );
        }
        if !taken.is_empty() {
            let _ = self.verdicts.send(taken);
        }
        Ok(())
    }
}
