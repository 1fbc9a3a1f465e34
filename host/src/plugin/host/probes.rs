//! The probe capability: only hosts of the current route spec (the working
//! set) may be probed, each at most [`MAX_PROBES_PER_HOST`] times per call,
//! and a batch probes each distinct host once, however often it is named:
//! a plugin cannot turn one call into a flood against a router. Anything
//! refused is answered as a failed probe saying why. The probing itself is
//! `health::probe`'s; the time it takes is the host's, not the plugin's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::super::bindings::health::vpcrouter::plugin::probes::{Host, ProbeResult};
use super::super::instance::HostState;
use super::super::limits::MAX_PROBES_PER_HOST;
use crate::health::probe::{self, Outcome};
use crate::health::{half_open, icmp};

/// Longest timeout a probe may have; longer requests are cut to it. With
/// [`crate::spec::MAX_WORKING_SET`] silent hosts and 1,024 probes in
/// flight, a round takes at most ten of these (see `MAX_HOST_WAIT`).
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a host of a batch is not probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotAnAddress,
    OutsideWorkingSet,
    ProbedEnough,
}

impl Refusal {
    fn outcome(self) -> Outcome {
        Outcome::failed(match self {
            Refusal::NotAnAddress => "not an IP address".to_string(),
            Refusal::OutsideWorkingSet => "probe denied: not in the working set".to_string(),
            Refusal::ProbedEnough => {
                format!("probe refused: already probed {MAX_PROBES_PER_HOST} times in this call")
            }
        })
    }
}

/// A batch split into the distinct hosts to probe and, per position, either
/// the index of its host in that list or why it is refused.
struct Plan {
    distinct: Vec<IpAddr>,
    slots: Vec<Result<usize, Refusal>>,
}

impl HostState {
    fn plan(&self, hosts: &[String]) -> Plan {
        let spec = self.accepted.borrow().clone();
        let working_set = spec.as_ref().map(|s| s.hosts());
        let mut index: HashMap<IpAddr, Result<usize, Refusal>> = HashMap::new();
        let mut plan = Plan {
            distinct: Vec::new(),
            slots: Vec::with_capacity(hosts.len()),
        };
        let mut denied = (0usize, None);
        for host in hosts {
            let Ok(ip) = host.trim().parse::<IpAddr>() else {
                plan.slots.push(Err(Refusal::NotAnAddress));
                continue;
            };
            let slot = *index.entry(ip).or_insert_with(|| {
                if !working_set.is_some_and(|set| set.contains(&ip)) {
                    denied = (denied.0 + 1, Some(ip));
                    Err(Refusal::OutsideWorkingSet)
                } else if !self.usage.probe(ip) {
                    Err(Refusal::ProbedEnough)
                } else {
                    plan.distinct.push(ip);
                    Ok(plan.distinct.len() - 1)
                }
            });
            plan.slots.push(slot);
        }
        if let (count, Some(example)) = denied {
            tracing::warn!(
                plugin = &*self.plugin,
                count,
                %example,
                "denied: probes of hosts outside the working set"
            );
        }
        plan
    }

    /// Probe a batch with `probe`: each distinct granted host once, answers
    /// for all, in the order given.
    async fn probe_batch<F>(
        &mut self,
        hosts: Vec<String>,
        timeout_ms: u32,
        probe: impl FnOnce(Vec<IpAddr>, Duration) -> F,
    ) -> Vec<ProbeResult>
    where
        F: Future<Output = Vec<Outcome>>,
    {
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_PROBE_TIMEOUT);
        let Plan { distinct, slots } = self.plan(&hosts);
        let outcomes = if distinct.is_empty() {
            Vec::new()
        } else {
            self.usage.wait(probe(distinct, timeout)).await
        };
        hosts
            .into_iter()
            .zip(slots)
            .map(|(host, slot)| {
                let outcome = match slot {
                    Ok(i) => outcomes.get(i).cloned(),
                    Err(refusal) => Some(refusal.outcome()),
                };
                let outcome = outcome.unwrap_or_else(|| Outcome::failed("not probed"));
                ProbeResult {
                    host,
                    ok: outcome.ok,
                    rtt_us: outcome
                        .rtt
                        .map(|d| d.as_micros().min(u32::MAX as u128) as u32),
                    error: outcome.error,
                }
            })
            .collect()
    }
}

impl Host for HostState {
    async fn probe_tcp(
        &mut self,
        hosts: Vec<String>,
        port: u16,
        timeout_ms: u32,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        let probe = |ips, timeout| probe::tcp(ips, port, timeout);
        Ok(self.probe_batch(hosts, timeout_ms, probe).await)
    }

    async fn probe_tcp_half_open(
        &mut self,
        hosts: Vec<String>,
        port: u16,
        timeout_ms: u32,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        let probe = |ips, timeout| half_open::probe(ips, port, timeout);
        Ok(self.probe_batch(hosts, timeout_ms, probe).await)
    }

    async fn probe_icmp(
        &mut self,
        hosts: Vec<String>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        Ok(self.probe_batch(hosts, timeout_ms, icmp::echo).await)
    }

    async fn half_open_access(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(half_open::access())
    }

    async fn icmp_access(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(icmp::access().map(drop))
    }
}
