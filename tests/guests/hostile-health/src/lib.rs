//! A health-check plugin that misbehaves on purpose, for the host's tests.
//! `--hh_behaviour` is a comma-separated list of:
//!
//! - `amplify`: probe the first host of the working set 200,000 times in
//!   one batch, then in 1,000 more calls (a flood against one router);
//! - `flood`: log 1,000 lines of 64 KiB and write 1 MiB to stderr per round;
//! - `outside`: report 100,000 hosts outside the working set (a hundred of
//!   them with 64 KiB details) besides the real ones;
//! - `flip`: report every host failed, then healthy, round after round;
//! - `slow`: probe with a 30 s timeout (more than the host allows);
//! - `rounds`: start 1,000 probe rounds of the first host, 200 times named,
//!   and keep them all open (never dropped);
//! - `verdicts`: report every host failed, then healthy, 10,000 times in
//!   one call (churn for the failover logic);
//! - `hog`: hold as much probe capacity as the host gives it: four rounds
//!   and a batch over the whole working set at once, 5 s timeouts, waited
//!   out to the end, call after call (against silent hosts, every probe
//!   holds its slot for the whole timeout);
//! - `alternate`: report the first host of the working set failed and the
//!   others healthy, then the reverse, round after round (a flapping pair
//!   of routers: every flip would move the routes).
//!
//! Rounds run every 100 ms (the shortest timer).

use vpcrouter_plugin_sdk::probes::{ProbeMethod, ProbeRound, ProbeTimeout};
use vpcrouter_plugin_sdk::{
    HealthCheck, HealthState, HostHealth, OptionSpec, Options, PluginInfo, export_health_check,
    log, probes, timers, verdicts,
};

struct HostileHealth {
    behaviours: Vec<String>,
    port: u16,
    round: u64,
    /// Rounds kept open on purpose.
    open: Vec<ProbeRound>,
}

impl HostileHealth {
    fn does(&self, behaviour: &str) -> bool {
        self.behaviours.iter().any(|b| b == behaviour)
    }
}

impl HealthCheck for HostileHealth {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-health".into(),
            version: "0.0.1".into(),
            description: "Misbehaves on purpose".into(),
            options: vec![
                OptionSpec::text(
                    "hh_behaviour",
                    "amplify,flood,outside,flip,slow,rounds,verdicts,hog,alternate",
                )
                .required(),
                OptionSpec::text("hh_port", "TCP port `amplify` probes").default_value("9"),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let behaviours = options
            .require("hh_behaviour")?
            .split(',')
            .map(String::from)
            .collect();
        let port = options
            .require("hh_port")?
            .parse()
            .map_err(|_| "bad --hh_port")?;
        timers::set_timer(1);
        Ok(Self {
            behaviours,
            port,
            round: 0,
            open: Vec::new(),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        self.round += 1;
        let mut state = HealthState::Healthy;
        let mut results = Vec::new();
        if let (true, Some(first)) = (self.does("amplify"), hosts.first()) {
            let batch = vec![first.clone(); 200_000];
            results = probes::probe_tcp(&batch, self.port, 200);
            for _ in 0..1000 {
                probes::probe_tcp(std::slice::from_ref(first), self.port, 200);
            }
        }
        if let (true, Some(first)) = (self.does("rounds"), hosts.first()) {
            let batch = vec![first.clone(); 200];
            for _ in 0..1000 {
                let round = probes::start_round(
                    ProbeMethod::Tcp(self.port),
                    &batch,
                    ProbeTimeout::Fixed(200),
                );
                results.extend(round.next());
                self.open.push(round);
            }
        }
        if self.does("verdicts") {
            let verdict = |state| -> Vec<HostHealth> {
                hosts
                    .iter()
                    .map(|host| HostHealth {
                        host: host.clone(),
                        state,
                        rtt_us: None,
                        detail: Some("churn".into()),
                    })
                    .collect()
            };
            let (failed, healthy) = (verdict(HealthState::Failed), verdict(HealthState::Healthy));
            for _ in 0..10_000 {
                verdicts::report(&failed);
                verdicts::report(&healthy);
            }
        }
        if self.does("hog") {
            let rounds: Vec<ProbeRound> = (0..4)
                .map(|_| {
                    probes::start_round(
                        ProbeMethod::Tcp(self.port),
                        &hosts,
                        ProbeTimeout::Fixed(5000),
                    )
                })
                .collect();
            results = probes::probe_tcp(&hosts, self.port, 5000);
            for round in &rounds {
                while !round.next().is_empty() {}
            }
        }
        if self.does("slow") {
            results = probes::probe_tcp(&hosts, self.port, 30_000);
        }
        if self.does("flood") {
            let line = "x".repeat(64 << 10);
            for _ in 0..1000 {
                log!(Error, "{line}");
            }
            eprintln!("{}", "e".repeat(1 << 20));
        }
        if self.does("flip") && self.round.is_multiple_of(2) {
            state = HealthState::Failed;
        }
        let alternate = self.does("alternate");
        let first_fails = self.round.is_multiple_of(2);
        let mut verdicts: Vec<HostHealth> = hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| {
                let probed = results.iter().find(|r| r.host == host);
                let state = match (alternate, (i == 0) == first_fails) {
                    (true, true) => HealthState::Failed,
                    (true, false) => HealthState::Healthy,
                    (false, _) => state,
                };
                HostHealth {
                    host,
                    state,
                    rtt_us: probed.and_then(|r| r.rtt_us),
                    detail: probed.and_then(|r| r.error.clone()),
                }
            })
            .collect();
        if self.does("outside") {
            for i in 0..100_000u32 {
                let [_, a, b, c] = i.to_be_bytes();
                let size = if i < 100 { 64 << 10 } else { 16 };
                verdicts.push(HostHealth {
                    host: format!("10.{a}.{b}.{c}"),
                    state: HealthState::Failed,
                    rtt_us: None,
                    detail: Some("d".repeat(size)),
                });
            }
        }
        Ok(verdicts)
    }
}

export_health_check!(HostileHealth);
