//! The probe capability: only hosts of the current route spec (the working
//! set) may be probed; anything else is answered as a failed probe saying
//! why, and logged. The probing itself is `health::probe`'s.

use std::net::IpAddr;
use std::time::Duration;

use super::super::bindings::health::vpcrouter::plugin::probes::{Host, ProbeResult};
use super::super::instance::HostState;
use crate::health::probe::{self, Outcome};
use crate::health::{half_open, icmp};

/// Longest timeout a plugin may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

impl HostState {
    /// Split a batch into probe-able addresses (with their positions) and
    /// answers for the rest.
    fn granted_hosts(&self, hosts: &[String]) -> (Vec<(usize, IpAddr)>, Vec<Option<Outcome>>) {
        let spec = self.accepted.borrow().clone();
        let mut allowed = Vec::with_capacity(hosts.len());
        let mut answers = vec![None; hosts.len()];
        for (i, host) in hosts.iter().enumerate() {
            match host.parse::<IpAddr>() {
                Err(_) => {
                    answers[i] = Some(Outcome::failed(format!("{host:?} is not an IP address")))
                }
                Ok(ip) if spec.as_ref().is_some_and(|s| s.hosts().contains(&ip)) => {
                    allowed.push((i, ip))
                }
                Ok(_) => {
                    tracing::warn!(plugin = &*self.plugin, %host, "denied: probe of a host outside the working set");
                    answers[i] = Some(Outcome::failed("probe denied: not in the working set"));
                }
            }
        }
        (allowed, answers)
    }
}

fn results(hosts: Vec<String>, answers: Vec<Option<Outcome>>) -> Vec<ProbeResult> {
    hosts
        .into_iter()
        .zip(answers)
        .map(|(host, outcome)| {
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

impl HostState {
    /// Probe the granted hosts of a batch with `probe`; answers for all.
    /// (`&mut`: the state is `Send` but not `Sync`, and this is awaited.)
    async fn probe_batch<F>(
        &mut self,
        hosts: Vec<String>,
        timeout_ms: u32,
        probe: impl FnOnce(Vec<IpAddr>, Duration) -> F,
    ) -> Vec<ProbeResult>
    where
        F: Future<Output = Vec<Outcome>>,
    {
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_TIMEOUT);
        let (allowed, mut answers) = self.granted_hosts(&hosts);
        let (positions, ips): (Vec<usize>, Vec<IpAddr>) = allowed.into_iter().unzip();
        for (i, outcome) in positions.into_iter().zip(probe(ips, timeout).await) {
            answers[i] = Some(outcome);
        }
        results(hosts, answers)
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
