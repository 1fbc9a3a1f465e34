//! The probe capability: only hosts of the current route spec (the working
//! set) may be probed, each at most `MAX_PROBES_PER_HOST` times per call,
//! a batch probes each distinct host once, however often it is named, and at
//! most [`MAX_OPEN_ROUNDS`] rounds run at once: a plugin cannot turn one
//! call into a flood against a router. Anything refused is answered as a
//! failed probe saying why. Everything a plugin probes runs within its own
//! share of the probe capacity ([`crate::probe::ProbeShare`]), so what one
//! plugin keeps busy never delays another's probes. The probing itself is
//! `crate::probe`'s; the time it takes is the host's, not the plugin's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::component::Resource;

use super::super::bindings::health::vpcrouter::plugin::probes::{
    Host, HostHttpRound, HostProbeRound, HttpCheck, HttpMethod, HttpResult, ProbeMethod,
    ProbeResult, ProbeTimeout,
};
use super::super::instance::HostState;
use super::super::limits::CallUsage;
use super::super::probe_round::{HttpRound, MAX_OPEN_ROUNDS, Plan, ProbeRound, Refusal, Timeout};
use crate::probe::{Method, Outcome, ProbeShare, Sink, Target, http};

impl From<ProbeTimeout> for Timeout {
    fn from(timeout: ProbeTimeout) -> Self {
        match timeout {
            ProbeTimeout::Fixed(ms) => Timeout::Fixed(Timeout::cut(ms)),
            ProbeTimeout::Adaptive(ms) => Timeout::Adaptive(Timeout::cut(ms)),
        }
    }
}

impl From<ProbeMethod> for Method {
    fn from(method: ProbeMethod) -> Self {
        match method {
            ProbeMethod::Tcp(port) => Method::Tcp(port),
            ProbeMethod::TcpHalfOpen(port) => Method::HalfOpen(port),
            ProbeMethod::Icmp => Method::Icmp,
        }
    }
}

fn micros(outcome: &Outcome) -> Option<u32> {
    outcome
        .rtt
        .map(|d| d.as_micros().min(u32::MAX as u128) as u32)
}

fn result(host: &str, outcome: &Outcome) -> ProbeResult {
    ProbeResult {
        host: host.to_string(),
        ok: outcome.ok,
        rtt_us: micros(outcome),
        error: outcome.error.clone(),
    }
}

fn http_result(host: &str, outcome: Outcome) -> HttpResult {
    let rtt_us = micros(&outcome);
    let (status, body) = outcome.response.map_or((None, Vec::new()), |answer| {
        (Some(answer.status), answer.body)
    });
    HttpResult {
        host: host.to_string(),
        status,
        body,
        rtt_us,
        error: outcome.error,
    }
}

impl HostState {
    fn plan(&self, hosts: Vec<String>, refuse_all: Option<Refusal>) -> Plan {
        let spec = self.grants.working_set();
        let working_set = spec.as_ref().map(|s| s.working_set());
        let mut index: HashMap<IpAddr, Result<usize, Refusal>> = HashMap::new();
        let mut distinct = Vec::new();
        let mut slots = Vec::with_capacity(hosts.len());
        let mut denied = (0usize, None);
        for host in &hosts {
            let ip = working_set.and_then(|set| set.lookup(host));
            let Some(ip) = ip else {
                if host.trim().parse::<IpAddr>().is_ok() {
                    denied = (denied.0 + 1, Some(host.clone()));
                    slots.push(Err(Refusal::OutsideWorkingSet));
                } else {
                    slots.push(Err(Refusal::NotAnAddress));
                }
                continue;
            };
            let slot = *index.entry(ip).or_insert_with(|| {
                if let Some(refusal) = refuse_all {
                    Err(refusal)
                } else if !self.usage.probe(ip) {
                    Err(Refusal::ProbedEnough)
                } else {
                    distinct.push(ip);
                    Ok(distinct.len() - 1)
                }
            });
            slots.push(slot);
        }
        if let (count, Some(example)) = denied {
            tracing::warn!(
                plugin = &*self.plugin,
                count,
                example = %crate::text::clip(&example, 64),
                "denied: probes of hosts outside the working set"
            );
        }
        Plan {
            hosts,
            distinct,
            slots,
        }
    }

    /// The targets of a plan, each with its timeout.
    fn targets(&mut self, plan: &Plan, timeout: Timeout) -> Vec<Target> {
        if let Some(spec) = self.grants.working_set()
            && self.rtt.len() > spec.hosts().len()
        {
            self.rtt.retain(|host| spec.hosts().contains(host));
        }
        plan.distinct
            .iter()
            .enumerate()
            .map(|(index, &host)| Target {
                index,
                host,
                timeout: match timeout {
                    Timeout::Fixed(timeout) => timeout,
                    Timeout::Adaptive(max) => self.rtt.timeout(&host, max),
                },
            })
            .collect()
    }

    /// Learn a distinct host's round trip from its outcome.
    fn learn(&mut self, host: IpAddr, outcome: &Outcome) {
        self.rtt.record(host, outcome.rtt, outcome.timed_out);
    }

    /// Probe a batch: each distinct granted host once, answers for all, in
    /// the order given.
    async fn probe_batch(
        &mut self,
        method: Method,
        hosts: Vec<String>,
        timeout_ms: u32,
    ) -> Vec<ProbeResult> {
        let plan = self.plan(hosts, None);
        let targets = self.targets(&plan, Timeout::Fixed(Timeout::cut(timeout_ms)));
        let (sink, mut arrived) = mpsc::unbounded_channel();
        if !targets.is_empty() {
            self.usage
                .wait(method.run(targets, sink, &self.probes))
                .await;
        }
        let mut outcomes = vec![None; plan.distinct.len()];
        while let Ok((i, outcome)) = arrived.try_recv() {
            self.learn(plan.distinct[i], &outcome);
            outcomes[i] = Some(outcome);
        }
        plan.hosts
            .iter()
            .zip(&plan.slots)
            .map(|(host, slot)| {
                let outcome = match slot {
                    Ok(i) => outcomes[*i].clone(),
                    Err(refusal) => Some(refusal.outcome()),
                };
                result(
                    host,
                    &outcome.unwrap_or_else(|| Outcome::failed("not probed")),
                )
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
        Ok(self.probe_batch(Method::Tcp(port), hosts, timeout_ms).await)
    }

    async fn probe_tcp_half_open(
        &mut self,
        hosts: Vec<String>,
        port: u16,
        timeout_ms: u32,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        Ok(self
            .probe_batch(Method::HalfOpen(port), hosts, timeout_ms)
            .await)
    }

    async fn probe_icmp(
        &mut self,
        hosts: Vec<String>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        Ok(self.probe_batch(Method::Icmp, hosts, timeout_ms).await)
    }

    async fn half_open_access(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(self.grants.half_open_probes())
    }

    async fn icmp_access(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(self.grants.icmp_probes())
    }

    async fn start_round(
        &mut self,
        method: ProbeMethod,
        hosts: Vec<String>,
        timeout: ProbeTimeout,
    ) -> wasmtime::Result<Resource<ProbeRound>> {
        let method = Method::from(method);
        let round = self.open_round(
            hosts,
            timeout,
            None,
            move |targets, sink, share| async move { method.run(targets, sink, &share).await },
        );
        Ok(self.table.push(round)?)
    }

    async fn start_http_round(
        &mut self,
        check: HttpCheck,
        hosts: Vec<String>,
        timeout: ProbeTimeout,
    ) -> wasmtime::Result<Resource<HttpRound>> {
        let asked = http::Check::new(
            match check.method {
                HttpMethod::Get => http::Verb::Get,
                HttpMethod::Head => http::Verb::Head,
            },
            check.port,
            check.path,
            check.server_name,
            check.body_bytes,
        );
        let round = match asked {
            Ok(mut asked) => {
                if check.tls {
                    asked.tls = self.grants.probe_tls.clone();
                }
                let refused = (check.tls && asked.tls.is_none()).then_some(Refusal::NoTlsGrant);
                let asked = Arc::new(asked);
                self.open_round(
                    hosts,
                    timeout,
                    refused,
                    move |targets, sink, share| async move {
                        http::probe(targets, asked, sink, &share).await
                    },
                )
            }
            Err(why) => {
                tracing::warn!(plugin = &*self.plugin, %why, "refused: an HTTP probe");
                self.open_round(hosts, timeout, Some(Refusal::BadRequest), |_, _, _| async {
                })
            }
        };
        Ok(self.table.push(HttpRound(round))?)
    }

    async fn http_tls_access(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(self.grants.http_tls_probes())
    }
}

impl HostState {
    /// A round over `hosts`, probed in a task of its own by `run`; every
    /// host refused for `refused` if given (as for every host when too many
    /// rounds are open).
    fn open_round<F, Fut>(
        &mut self,
        hosts: Vec<String>,
        timeout: ProbeTimeout,
        refused: Option<Refusal>,
        run: F,
    ) -> ProbeRound
    where
        F: FnOnce(Vec<Target>, Sink, ProbeShare) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let too_many = (self.open_rounds >= MAX_OPEN_ROUNDS).then_some(Refusal::TooManyRounds);
        let plan = self.plan(hosts, too_many.or(refused));
        let targets = self.targets(&plan, timeout.into());
        let refused = plan
            .slots
            .iter()
            .enumerate()
            .filter_map(|(position, slot)| slot.err().map(|r| (position, r)))
            .collect();
        let (sink, arrived) = mpsc::unbounded_channel();
        let probing =
            (!targets.is_empty()).then(|| tokio::spawn(run(targets, sink, self.probes.clone())));
        self.open_rounds += 1;
        ProbeRound {
            positions: plan.positions(),
            pending: plan.distinct.len(),
            plan,
            refused,
            arrived,
            probing,
        }
    }

    /// Learn each distinct host's round trip from its outcome.
    fn learn_all(&mut self, learnt: Vec<(IpAddr, Outcome)>) {
        for (host, outcome) in learnt {
            self.learn(host, &outcome);
        }
    }

    fn close_round(&mut self) {
        self.open_rounds = self.open_rounds.saturating_sub(1);
    }
}

/// What arrived for a round since the last call, waiting for the first
/// outcome if none has: (position in the batch, outcome) pairs, refusals
/// first; and each distinct host's outcome, to learn from. Nothing once
/// every outcome was handed over.
async fn arrived(
    entry: &mut ProbeRound,
    usage: &CallUsage,
) -> (Vec<(usize, Outcome)>, Vec<(IpAddr, Outcome)>) {
    let mut answered: Vec<(usize, Outcome)> = std::mem::take(&mut entry.refused)
        .into_iter()
        .map(|(position, refusal)| (position, refusal.outcome()))
        .collect();
    if !answered.is_empty() || entry.pending == 0 {
        return (answered, Vec::new());
    }
    let mut arrived = Vec::new();
    match usage.wait(entry.arrived.recv()).await {
        Some(first) => arrived.push(first),
        // The probing ended without a word on some hosts (it cannot
        // without a bug, but a round must end).
        None => arrived
            .extend((0..entry.plan.distinct.len()).map(|i| (i, Outcome::failed("not probed")))),
    }
    while let Ok(more) = entry.arrived.try_recv() {
        arrived.push(more);
    }
    let mut learnt = Vec::with_capacity(arrived.len());
    for (i, outcome) in arrived {
        let Some(positions) = entry.positions.get_mut(i) else {
            continue;
        };
        if positions.is_empty() {
            continue;
        }
        entry.pending -= 1;
        for position in std::mem::take(positions) {
            answered.push((position, outcome.clone()));
        }
        learnt.push((entry.plan.distinct[i], outcome));
    }
    (answered, learnt)
}

impl HostProbeRound for HostState {
    async fn next(&mut self, round: Resource<ProbeRound>) -> wasmtime::Result<Vec<ProbeResult>> {
        let usage = self.usage.clone();
        let entry = self.table.get_mut(&round)?;
        let (answered, learnt) = arrived(entry, &usage).await;
        let results = answered
            .iter()
            .map(|(position, outcome)| result(&entry.plan.hosts[*position], outcome))
            .collect();
        self.learn_all(learnt);
        Ok(results)
    }

    async fn drop(&mut self, round: Resource<ProbeRound>) -> wasmtime::Result<()> {
        self.table.delete(round)?;
        self.close_round();
        Ok(())
    }
}

impl HostHttpRound for HostState {
    async fn next(&mut self, round: Resource<HttpRound>) -> wasmtime::Result<Vec<HttpResult>> {
        let usage = self.usage.clone();
        let HttpRound(entry) = self.table.get_mut(&round)?;
        let (answered, learnt) = arrived(entry, &usage).await;
        let results = answered
            .into_iter()
            .map(|(position, outcome)| http_result(&entry.plan.hosts[position], outcome))
            .collect();
        self.learn_all(learnt);
        Ok(results)
    }

    async fn drop(&mut self, round: Resource<HttpRound>) -> wasmtime::Result<()> {
        self.table.delete(round)?;
        self.close_round();
        Ok(())
    }
}
