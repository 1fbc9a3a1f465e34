//! The route mode as a backend: the planner and the views see the
//! per-CIDR routes the lists stand for. In prefix-list mode a batch of the
//! planner's operations goes out as the list calls [`compile`] makes of
//! it, stage by stage, calls on one list one at a time, and per-CIDR
//! routes move into lists in passes with calls to spare; in per-CIDR mode
//! (the default) operations go out as they are while the VPC has no lists
//! of ours, and lists an earlier run left are emptied into per-CIDR routes
//! the same way ([`super::leave`]).

use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Limits, ListPlan, Mode, Sizing, compile, expand};
use crate::cloud::claims::TagChange;
use crate::cloud::lists::{ListBackend, ListCall, ListRef, Lists};
use crate::cloud::model::{RouteError, Target, VpcState};
use crate::cloud::operation::Operation;
use crate::cloud::{CloudError, Held, MayWrite, Migration, VpcBackend};

/// List calls in flight at once (each list's calls one after another).
const CONCURRENT_CALLS: usize = 8;

/// A call carried out (or not), by its index in its stage.
struct Done {
    index: usize,
    result: Result<Option<String>, CloudError>,
    call: ListCall,
}

pub struct Listed<B> {
    inner: Arc<B>,
    mode: Mode,
    /// In per-CIDR mode, why the lists could not be read (said once).
    unreadable: Mutex<Option<String>>,
    /// What EC2's refusals said the VPC cannot hold: tables too small
    /// for more lists, lists that cannot grow.
    limits: Mutex<Limits>,
    /// The per-CIDR routes and the lists last observed, kept up to date
    /// with the calls that succeeded.
    observed: Mutex<Option<(VpcState, Lists)>>,
}

impl<B: ListBackend> Listed<B> {
    pub fn new(inner: Arc<B>, mode: Mode) -> Self {
        Self {
            inner,
            mode,
            unreadable: Mutex::new(None),
            limits: Mutex::new(Limits::default()),
            observed: Mutex::new(None),
        }
    }

    /// The lists of ours. In per-CIDR mode, lists that cannot be read (an
    /// IAM policy without the prefix-list calls) are as none: each CIDR
    /// then gets its per-CIDR route, which EC2 prefers to a list's anyway.
    async fn lists(&self) -> Result<Lists, CloudError> {
        let read = self.inner.describe_lists().await;
        if self.mode == Mode::PrefixList {
            return read;
        }
        let mut unreadable = self.unreadable.lock().expect("unreadable lock");
        match read {
            Ok(lists) => {
                *unreadable = None;
                Ok(lists)
            }
            Err(e) => {
                let why = e.to_string();
                if unreadable.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        "cannot read the prefix lists an earlier prefix-list run may have left; \
                         going on as if there were none: {why}"
                    );
                    *unreadable = Some(why);
                }
                Ok(Lists::default())
            }
        }
    }

    /// Carry out `plan`'s stages in order until one fails; each call's
    /// outcome.
    async fn run(
        &self,
        plan: &ListPlan,
        may_write: &MayWrite<'_>,
    ) -> BTreeMap<(usize, usize), Result<(), CloudError>> {
        let mut outcomes = BTreeMap::new();
        let mut created: BTreeMap<usize, String> = BTreeMap::new();
        for (stage, calls) in plan.stages.iter().enumerate() {
            // Calls on one list go in turn (each edit needs the list's
            // new version); the rest side by side.
            let mut chains: BTreeMap<Option<ListRef>, Vec<(usize, ListCall)>> = BTreeMap::new();
            for (i, call) in calls.iter().enumerate() {
                let list = match call {
                    ListCall::Modify { list, .. } | ListCall::Resize { list, .. } => {
                        Some(list.clone())
                    }
                    _ => None,
                };
                match call.resolved(&created) {
                    Ok(call) => chains.entry(list).or_default().push((i, call)),
                    Err(e) => drop(outcomes.insert((stage, i), Err(CloudError::Unavailable(e)))),
                }
            }
            let single = chains.remove(&None).unwrap_or_default();
            let chains = (chains.into_values()).chain(single.into_iter().map(|call| vec![call]));
            let done: Vec<Vec<Done>> = futures_util::stream::iter(chains)
                .map(|chain| self.run_chain(chain, may_write))
                .buffer_unordered(CONCURRENT_CALLS)
                .collect()
                .await;
            let mut failed = outcomes.keys().any(|(s, _)| *s == stage);
            for done in done.into_iter().flatten() {
                self.record(&done.call, &done.result);
                if let (Ok(Some(id)), ListCall::Create { list, .. }) = (&done.result, &done.call) {
                    created.insert(*list, id.clone());
                }
                failed |= done.result.is_err();
                outcomes.insert((stage, done.index), done.result.map(drop));
            }
            if failed {
                break;
            }
        }
        outcomes
    }

    /// Calls one after another; after one fails, the rest are not sent.
    async fn run_chain(
        &self,
        chain: Vec<(usize, ListCall)>,
        may_write: &MayWrite<'_>,
    ) -> Vec<Done> {
        let mut done: Vec<Done> = Vec::with_capacity(chain.len());
        for (index, call) in chain {
            let result = if done.iter().any(|d| d.result.is_err()) {
                let why = "not sent: an earlier call on the list failed";
                Err(CloudError::Unavailable(why.into()))
            } else if !may_write() {
                Err(CloudError::Unavailable(
                    "no longer the leader; not sent".into(),
                ))
            } else {
                self.inner.apply_list(&call).await
            };
            done.push(Done {
                index,
                result,
                call,
            });
        }
        done
    }

    /// A call that succeeded, in the kept model (and the log); a failed
    /// one is said.
    fn record(&self, call: &ListCall, result: &Result<Option<String>, CloudError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(CloudError::Refused(_)) => "refused",
            Err(CloudError::Unavailable(_)) => "failed",
        };
        crate::metrics::global().list_call(call.api_call(), outcome);
        match result {
            Ok(id) => {
                tracing::info!(call = call.api_call(), what = call.describe(), "list call");
                let mut observed = self.observed.lock().expect("observed lock");
                if let Some((state, lists)) = observed.as_mut() {
                    let given = id.clone();
                    let kept = lists.apply(state, call, |lists| {
                        given.unwrap_or_else(|| format!("pl-unknown-{}", lists.lists.len()))
                    });
                    if let Err(e) = kept {
                        tracing::warn!("kept lists out of step: {e}");
                    }
                }
            }
            Err(CloudError::Refused(RouteError::LimitExceeded(table)))
                if matches!(call, ListCall::RouteList { .. }) =>
            {
                self.too_small(table, "cannot hold a route to another prefix list");
            }
            // EC2 takes a resize, then fails it, naming the tables that
            // cannot hold the new size in the state message.
            Err(e @ CloudError::Refused(RouteError::Other { code, message }))
                if code == "modify-failed" =>
            {
                tracing::error!(call = call.api_call(), "{}: {e}", call.describe());
                if let ListCall::Resize {
                    list: ListRef::Existing(id),
                    ..
                } = call
                {
                    let limits = &mut self.limits.lock().expect("limits lock");
                    limits.fixed_lists.insert(id.clone());
                }
                let named = message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
                for table in named.filter(|word| word.starts_with("rtb-")) {
                    self.too_small(table, "cannot hold a bigger prefix list");
                }
            }
            Err(e) => tracing::error!(call = call.api_call(), "{}: {e}", call.describe()),
        }
    }

    /// `table`'s route quota cannot hold more of the lists: from now on a
    /// CIDR created or moved there gets a per-CIDR route (said once).
    fn too_small(&self, table: &str, what: &str) {
        let limits = &mut self.limits.lock().expect("limits lock");
        if limits.per_cidr_tables.insert(table.to_string()) {
            tracing::error!(
                table,
                "RouteLimitExceeded: {table} {what} (a list counts its maximum entries against \
                 the table's route quota); CIDRs created or moved there get per-CIDR routes \
                 instead. Ask AWS for a higher limit (at most 1,000) to route them by lists"
            );
        }
    }

    /// The EC2 calls `ops` would take now, in order (stage by stage), for
    /// the dry run: the operations themselves where nothing is compiled.
    pub fn calls_for(&self, ops: &[Operation]) -> Vec<ListCall> {
        let observed = self.observed.lock().expect("observed lock").clone();
        let plan = match (self.mode, observed) {
            (Mode::PrefixList, Some((state, lists))) => {
                let sizing = sizing(&lists, ops);
                compile(ops, &state, &lists, sizing, &self.limits())
            }
            (Mode::PerCidr, Some((state, lists))) if !lists.lists.is_empty() => {
                super::leave::compile_out(ops, &state, &lists)
            }
            _ => return ops.iter().cloned().map(ListCall::Route).collect(),
        };
        plan.stages.into_iter().flatten().collect()
    }

    fn limits(&self) -> Limits {
        self.limits.lock().expect("limits lock").clone()
    }
}

/// The balanced number of CIDRs per router: the CIDRs the lists hold or
/// the batch routes, over the routers they go to.
fn sizing(lists: &Lists, ops: &[Operation]) -> Sizing {
    let mut cidrs: std::collections::BTreeSet<_> = (lists.lists.iter())
        .flat_map(|l| l.entries.iter().copied())
        .collect();
    cidrs.extend(ops.iter().map(|op| op.destination));
    let mut routers: std::collections::BTreeSet<Target> =
        (lists.routes.iter()).map(|r| r.target.clone()).collect();
    routers.extend(
        (ops.iter())
            .filter_map(|op| op.target.as_ref())
            .map(crate::cloud::lists::target_of),
    );
    Sizing {
        bound: cidrs.len().div_ceil(routers.len().max(1)),
    }
}

impl<B: ListBackend> VpcBackend for Listed<B> {
    async fn describe(&self) -> Result<VpcState, CloudError> {
        let state = self.inner.describe().await?;
        let lists = self.lists().await?;
        if self.mode == Mode::PerCidr && lists.lists.is_empty() {
            // Nothing to compile or migrate: operations go out as they are,
            // and the VPC is not kept twice.
            *self.observed.lock().expect("observed lock") = Some((VpcState::default(), lists));
            return Ok(state);
        }
        let seen = expand(&state, &lists);
        *self.observed.lock().expect("observed lock") = Some((state, lists));
        Ok(seen)
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        let mut results = self.apply_all(vec![op.clone()], &|| true).await;
        results.pop().map_or(Ok(()), |(_, result)| result)
    }

    async fn apply_all(
        &self,
        ops: Vec<Operation>,
        may_write: &MayWrite<'_>,
    ) -> Vec<(Operation, Result<(), CloudError>)> {
        let observed = self.observed.lock().expect("observed lock").clone();
        let Some((state, lists)) = observed else {
            let unknown = || {
                Err(CloudError::Unavailable(
                    "the lists are not observed yet".into(),
                ))
            };
            return ops.into_iter().map(|op| (op, unknown())).collect();
        };
        let plan = match self.mode {
            Mode::PrefixList => {
                let sizing = sizing(&lists, &ops);
                compile(&ops, &state, &lists, sizing, &self.limits())
            }
            Mode::PerCidr if lists.lists.is_empty() => {
                return self.inner.apply_all(ops, may_write).await;
            }
            Mode::PerCidr => super::leave::compile_out(&ops, &state, &lists),
        };
        let outcomes = self.run(&plan, may_write).await;
        (ops.into_iter().zip(plan.rests_on))
            .map(|(op, rests)| {
                let result = rests.iter().try_for_each(|call| match outcomes.get(call) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(CloudError::Unavailable(
                        "not sent: an earlier step failed".into(),
                    )),
                });
                (op, result)
            })
            .collect()
    }

    async fn spare_operations(&self) -> usize {
        self.inner.spare_operations().await
    }

    async fn migrate(&self, held: &Held, spare: usize, may_write: &MayWrite<'_>) -> Migration {
        let limits = self.limits();
        // Planned on the kept model in place: most passes have nothing to
        // send, and the VPC is not copied for them.
        let step = {
            let observed = self.observed.lock().expect("observed lock");
            match observed.as_ref() {
                // Per-CIDR mode without lists: nothing to do.
                Some((_, lists)) if self.mode == Mode::PerCidr && lists.lists.is_empty() => None,
                Some((state, lists)) => Some(super::migrate::next_pass(
                    self.mode, held, state, lists, &limits, spare,
                )),
                None => None,
            }
        };
        let Some(step) = step else {
            return Migration::default();
        };
        if step.plan.calls() == 0 {
            return Migration {
                left: step.left,
                ..Migration::default()
            };
        }
        let plan = &step.plan;
        let outcomes = self.run(plan, may_write).await;
        let failed = match outcomes.values().find_map(|r| r.clone().err()) {
            Some(e) => Some(e),
            None if outcomes.len() < plan.calls() => {
                Some(CloudError::Unavailable("not every call was sent".into()))
            }
            None => None,
        };
        let moved = if failed.is_none() { step.cidrs } else { 0 };
        let left = step.left + step.cidrs - moved;
        if !step.tidying {
            let into = match self.mode {
                Mode::PrefixList => "per-CIDR routes moved into prefix lists",
                Mode::PerCidr => "CIDRs moved out of prefix lists into per-CIDR routes",
            };
            tracing::info!(moved, left, "{into}");
        }
        Migration {
            moved,
            left,
            calls: plan.calls(),
            failed,
        }
    }

    fn throttled_since(&self) -> Option<std::time::Instant> {
        self.inner.throttled_since()
    }

    async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
        self.inner.disable_source_dest_check(eni).await
    }

    async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
        let written = self.inner.write_tags(change).await;
        if written.is_ok()
            && let Some((state, _)) = self.observed.lock().expect("observed lock").as_mut()
        {
            let _ = state.write_tags(change);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::SimVpc;
    use crate::health::HealthSnapshot;
    use crate::reconcile::plan::{Settings, plan};
    use crate::selector::TableSelector;
    use crate::spec::RouteSpec;

    /// The embedded VPC, with the list calls of one EC2 action failing as
    /// EC2 fails them when someone else edited the list meanwhile.
    struct Flaky {
        sim: SimVpc,
        failing: Mutex<Option<&'static str>>,
    }

    impl VpcBackend for Flaky {
        async fn describe(&self) -> Result<VpcState, CloudError> {
            self.sim.describe().await
        }

        async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
            self.sim.apply(op).await
        }

        async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
            self.sim.disable_source_dest_check(eni).await
        }

        async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
            self.sim.write_tags(change).await
        }
    }

    impl ListBackend for Flaky {
        async fn describe_lists(&self) -> Result<Lists, CloudError> {
            if *self.failing.lock().unwrap() == Some("DescribeManagedPrefixLists") {
                let why = "UnauthorizedOperation: not allowed ec2:DescribeManagedPrefixLists";
                return Err(CloudError::Refused(RouteError::Other {
                    code: "UnauthorizedOperation".into(),
                    message: why.into(),
                }));
            }
            self.sim.describe_lists().await
        }

        async fn apply_list(&self, call: &ListCall) -> Result<Option<String>, CloudError> {
            if *self.failing.lock().unwrap() == Some(call.api_call()) {
                let why = "PrefixListVersionMismatch: the prefix list has changed";
                return Err(CloudError::Unavailable(why.into()));
            }
            self.sim.apply_list(call).await
        }
    }

    type Outcomes = Vec<(Operation, Result<(), CloudError>)>;

    /// One reconcile pass through the adapter: describe, plan, claims,
    /// the batch.
    async fn pass(
        listed: &Listed<Flaky>,
        spec: &RouteSpec,
        health: &HealthSnapshot,
        may_write: &MayWrite<'_>,
    ) -> Outcomes {
        let seen = listed.describe().await.unwrap();
        let settings = Settings {
            tables: (seen.route_tables.iter())
                .map(|t| TableSelector::Id(t.id.clone()))
                .collect(),
            ..Settings::default()
        };
        let planned = plan(spec, health, &seen, &settings);
        for claim in &planned.claims {
            if let Some(change) = claim.change(&seen.table(&claim.table).unwrap().tags) {
                listed.write_tags(&change).await.unwrap();
            }
        }
        listed.apply_all(planned.operations, may_write).await
    }

    /// Where every (table, CIDR) is routed in the embedded VPC now.
    async fn routed(flaky: &Flaky) -> BTreeMap<(String, ipnet::IpNet), Target> {
        let state = flaky.sim.snapshot();
        let lists = flaky.sim.describe_lists().await.unwrap();
        (expand(&state, &lists).route_tables.iter())
            .flat_map(|t| {
                (t.routes.iter()).map(|r| ((t.id.clone(), r.destination), r.target.clone()))
            })
            .collect()
    }

    /// A list edit that EC2 refuses (someone changed the list) stops the
    /// later stages: the re-points already made hold, nothing is removed
    /// from the old list, so no CIDR is without a route and none is on the
    /// dead router; the operations that rested on the edit say why; the
    /// next pass finds every CIDR on a live router and settles. A replica
    /// that may no longer write sends nothing.
    #[tokio::test]
    async fn a_refused_list_edit_leaves_every_cidr_routed_and_the_next_pass_finishes() {
        let (vpc, spec, ips) = crate::reconcile::plan::tests::cluster_of(4, 1, 3, 40);
        let flaky = Arc::new(Flaky {
            sim: SimVpc::new(vpc),
            failing: Mutex::new(None),
        });
        let listed = Listed::new(flaky.clone(), Mode::PrefixList);
        let healthy = HealthSnapshot::default();
        let started = pass(&listed, &spec, &healthy, &|| true).await;
        assert!(started.iter().all(|(_, r)| r.is_ok()), "{started:?}");
        let before = routed(&flaky).await;
        assert_eq!(before.len(), 3 * 40);

        let mut loads: BTreeMap<&Target, usize> = BTreeMap::new();
        for target in before.values() {
            *loads.entry(target).or_default() += 1;
        }
        let (busiest, _) = loads.into_iter().max_by_key(|(_, n)| *n).unwrap();
        let Target::Interface(eni) = busiest else {
            panic!("{busiest:?}")
        };
        let dead = ips[eni["eni-".len()..].parse::<usize>().unwrap()];
        let health = HealthSnapshot {
            failed: [dead].into(),
            ..HealthSnapshot::default()
        };

        let quiet = pass(&listed, &spec, &health, &|| false).await;
        assert!(quiet.iter().all(|(_, r)| r.is_err()), "{quiet:?}");
        assert_eq!(routed(&flaky).await, before, "nothing was sent");

        *flaky.failing.lock().unwrap() = Some("ModifyManagedPrefixList");
        let refused = pass(&listed, &spec, &health, &|| true).await;
        let (done, failed): (Vec<_>, Vec<_>) = refused.iter().partition(|(_, r)| r.is_ok());
        assert!(!done.is_empty() && !failed.is_empty(), "{refused:?}");
        let said = |r: &Result<(), CloudError>| {
            let said = format!("{r:?}");
            said.contains("PrefixListVersionMismatch") || said.contains("not sent")
        };
        assert!(failed.iter().all(|(_, r)| said(r)), "{failed:?}");
        let now = routed(&flaky).await;
        assert_eq!(now.len(), before.len(), "every (table, CIDR) still routed");
        assert!(
            now.values().all(|t| t != busiest),
            "none on the dead router"
        );

        *flaky.failing.lock().unwrap() = None;
        let finished = pass(&listed, &spec, &health, &|| true).await;
        assert!(finished.iter().all(|(_, r)| r.is_ok()), "{finished:?}");
        assert!(pass(&listed, &spec, &health, &|| true).await.is_empty());
    }

    /// Lists that cannot be read (a policy without the prefix-list calls)
    /// are none in per-CIDR mode, which goes on with its per-CIDR routes;
    /// in prefix-list mode nothing is known, so the observation fails.
    #[tokio::test]
    async fn unreadable_lists_are_none_in_per_cidr_mode_and_a_failure_in_prefix_list_mode() {
        let (vpc, spec, _) = crate::reconcile::plan::tests::cluster_of(2, 1, 2, 4);
        let flaky = Arc::new(Flaky {
            sim: SimVpc::new(vpc),
            failing: Mutex::new(Some("DescribeManagedPrefixLists")),
        });
        let per_cidr = Listed::new(flaky.clone(), Mode::PerCidr);
        let outcomes = pass(&per_cidr, &spec, &HealthSnapshot::default(), &|| true).await;
        assert_eq!(outcomes.len(), 4 * 2);
        assert!(outcomes.iter().all(|(_, r)| r.is_ok()), "{outcomes:?}");
        let state = flaky.sim.snapshot();
        let routes: usize = state.route_tables.iter().map(|t| t.routes.len()).sum();
        assert_eq!(routes, 4 * 2, "each CIDR its per-CIDR route");

        let prefix_list = Listed::new(flaky, Mode::PrefixList);
        let failed = prefix_list.describe().await;
        assert!(
            matches!(&failed, Err(e) if e.to_string().contains("UnauthorizedOperation")),
            "{failed:?}"
        );
    }
}
