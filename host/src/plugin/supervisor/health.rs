//! Serving a health checker: a round over the working set at each tick of
//! its timer, the verdicts reported to the health board.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::inputs::Reload;
use super::inputs::{Inputs, stopped, tick};
use super::run::{Ended, Supervisor, record_call};
use super::status::RoundStats;
use crate::health::{HealthBoard, HostReport, State};
use crate::plugin::bindings::{HealthState, HostHealth};
use crate::plugin::instance::{CallError, PluginInstance};
use crate::spec::WorkingSet;
use crate::spec_store::SpecWatch;
use crate::text::clip;

impl Supervisor {
    /// Run a health round at once, then at every tick, and whenever the
    /// spec brings a host this instance has not checked (a host is no
    /// target before its first probe: it should not wait a whole interval),
    /// until shutdown or a fault.
    pub(super) async fn serve_health(
        &self,
        instance: &mut PluginInstance,
        inputs: &mut Inputs,
        specs: &SpecWatch,
        board: &HealthBoard,
    ) -> Ended {
        let plugin = self.factory.plugin();
        let mut specs = specs.clone();
        let mut checked: HashSet<String> = HashSet::new();
        let mut first = true;
        loop {
            inputs.apply(plugin, instance).await;
            if !std::mem::take(&mut first) {
                let due = tokio::select! {
                    _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                    _ = tick(&mut inputs.timer) => true,
                    Ok(()) = specs.changed() => (specs.borrow_and_update().as_ref())
                        .is_some_and(|spec| spec.working_set().names().iter().any(|n| !checked.contains(n))),
                    Some(reload) = inputs.reloads.recv() => match reload {
                        Reload::Swap(new) => return Ended::Swapped(new),
                        Reload::Failed(why) => {
                            self.reload_failed(why);
                            false
                        }
                    },
                };
                if !due {
                    continue;
                }
            }
            let Some(spec) = specs.borrow_and_update().clone() else {
                continue;
            };
            checked = spec.working_set().names().iter().cloned().collect();
            let working_set = spec.working_set();
            let started = Instant::now();
            let early = |verdicts| board.merge(plugin, reports(plugin, working_set, verdicts));
            let round = instance.check(working_set.names(), early);
            let checked = match self.unless_swapped(&mut inputs.reloads, round).await {
                Ok(checked) => checked,
                Err(new) => return Ended::Swapped(new),
            };
            record_call(plugin, "check", &checked, started);
            match checked {
                Ok(results) => {
                    self.record_round(&results, started.elapsed());
                    board.report(plugin, reports(plugin, working_set, results));
                }
                Err(CallError::Plugin(reason)) => {
                    tracing::warn!(
                        plugin,
                        "health round failed, last known health stays: {reason}"
                    );
                }
                Err(fault) => return Ended::Fault(fault),
            }
        }
    }

    fn record_round(&self, results: &[HostHealth], took: Duration) {
        let mut rtts: Vec<u32> = results.iter().filter_map(|r| r.rtt_us).collect();
        rtts.sort_unstable();
        let failures = results
            .iter()
            .filter(|r| !matches!(r.state, HealthState::Healthy))
            .count() as u64;
        self.status.send_modify(|status| {
            let stats = status.rounds.get_or_insert_with(RoundStats::default);
            stats.rounds += 1;
            stats.results += results.len() as u64;
            stats.failures += failures;
            stats.last_round = took;
            stats.rtt_us =
                (!rtts.is_empty()).then(|| (rtts[0], rtts[rtts.len() / 2], rtts[rtts.len() - 1]));
        });
    }
}

/// Longest detail of a health verdict kept.
const MAX_DETAIL: usize = 256;

/// A round's results as board reports: only hosts of the working set, by
/// address, details bounded. Anything else a plugin says is counted, logged
/// once per round, and ignored.
pub(in crate::plugin) fn reports(
    plugin: &str,
    working_set: &WorkingSet,
    results: Vec<HostHealth>,
) -> Vec<HostReport> {
    let mut outside = (0usize, None);
    let reports = results
        .into_iter()
        .filter_map(|r| {
            let Some(host) = working_set.lookup(&r.host) else {
                outside.0 += 1;
                outside.1.get_or_insert(r.host);
                return None;
            };
            Some(HostReport {
                host,
                state: state(r.state),
                rtt_us: r.rtt_us,
                detail: r.detail.map(|d| clip(&d, MAX_DETAIL).into_owned()),
            })
        })
        .collect();
    if let (count, Some(example)) = outside {
        tracing::warn!(
            plugin,
            count,
            example = %clip(&example, 64),
            "ignoring health of hosts outside the working set"
        );
    }
    reports
}

/// Where the WIT's tri-state becomes the daemon's.
fn state(state: HealthState) -> State {
    match state {
        HealthState::Healthy => State::Healthy,
        HealthState::Questionable => State::Questionable,
        HealthState::Failed => State::Failed,
    }
}
