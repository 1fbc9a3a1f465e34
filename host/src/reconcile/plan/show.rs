//! The plan as `/plan` and `--dry-run` show it: JSON, and a line per
//! operation and notice.

use serde_json::{Value, json};

use super::Plan;
use crate::cloud::operation::RouteTarget;

impl Plan {
    /// A plan as `/plan` and `--dry-run --output json` show it.
    pub fn to_json(&self) -> Value {
        let plan = self;
        let operations: Vec<Value> = plan
            .operations
            .iter()
            .map(|op| {
                json!({
                    "action": op.action.name(),
                    "table": op.table,
                    "cidr": op.destination.to_string(),
                    "target": op.target.as_ref().map(|t| match t {
                        RouteTarget::Router(r) => json!({"eni": r.eni, "host": r.host.to_string()}),
                        RouteTarget::Gateway(id) => json!({"gateway": id}),
                    }),
                    "cause": op.cause.name(),
                    "reason": op.reason,
                })
            })
            .collect();
        let notices: Vec<Value> = plan
            .notices
            .iter()
            .map(|n| json!({"subject": n.subject, "message": n.message}))
            .collect();
        let managed: Vec<Value> = (plan.managed.iter())
            .map(|(table, why)| json!({"table": table, "why": why}))
            .collect();
        let claims: Vec<Value> = (plan.claims.iter())
            .map(|c| json!({"table": c.table, "owned": c.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>()}))
            .collect();
        let on_fallback: Vec<Value> = (plan.on_fallback.iter())
            .map(|((cidr, table), fallback)| json!({"cidr": cidr.to_string(), "table": table, "fallback": fallback.to_string()}))
            .collect();
        json!({
            "planned": true,
            "on_fallback": on_fallback,
            "managed_tables": managed,
            "claims": claims,
            "operations": operations,
            "notices": notices,
            "source_dest_checked": plan.source_dest_checked,
        })
    }

    /// A line per operation and per notice, then a summary.
    pub fn to_text(&self) -> String {
        let plan = self;
        let mut out = String::new();
        for (table, why) in &plan.managed {
            out.push_str(&format!("manage  {table}: {why}\n"));
        }
        for claim in &plan.claims {
            let owned: Vec<String> = claim.cidrs.iter().map(ToString::to_string).collect();
            out.push_str(&format!("claim   {}: {}\n", claim.table, owned.join(" ")));
        }
        for op in &plan.operations {
            let target = op
                .target
                .as_ref()
                .map(|t| match t {
                    RouteTarget::Router(r) => format!(" -> {} ({})", r.host, r.eni),
                    RouteTarget::Gateway(id) => format!(" -> {id}"),
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<7} {} {}{target}: {} [{}]\n",
                op.action.name(),
                op.table,
                op.destination,
                op.reason,
                op.cause.name()
            ));
        }
        for notice in &plan.notices {
            out.push_str(&format!("notice  {}: {}\n", notice.subject, notice.message));
        }
        out.push_str(&format!(
            "{} operations, {} notices; nothing was changed (dry run)\n",
            plan.operations.len(),
            plan.notices.len()
        ));
        out
    }
}
