//! The plan as `/plan` and `--dry-run` show it: JSON, and a line per
//! operation and notice.

use serde_json::{Value, json};

use super::Plan;

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
                    "target": op.target.as_ref().map(|t| json!({"eni": t.eni, "host": t.host.to_string()})),
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
        json!({
            "planned": true,
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
                .map(|t| format!(" -> {} ({})", t.host, t.eni))
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
