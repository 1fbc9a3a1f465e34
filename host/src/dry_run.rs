//! `--dry-run`: run the plugins until the spec is in force and every health
//! checker has done a round, observe the VPC once, and print the plan a pass
//! would carry out (each operation with its reason, the notices), as text or
//! JSON, and the EC2 calls it would take (in prefix-list mode, the list
//! calls the operations become). Nothing is written: no backend call but
//! describes is made.

use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::cli::Output;
use crate::cloud::VpcBackend;
use crate::cloud::lists::ListBackend;
use crate::health::HealthBoard;
use crate::plugin::{self, ConfiguredPlugin, PluginKind, Role};
use crate::reconcile::lists::Listed;
use crate::reconcile::plan::{Settings, plan};
use crate::spec_store::SpecStore;

/// How long the spec and the first health rounds may take to come.
const WAIT: Duration = Duration::from_secs(60);

pub async fn run<B: ListBackend>(
    plugins: Vec<ConfiguredPlugin>,
    specs: Arc<SpecStore>,
    backend: Arc<Listed<B>>,
    settings: &Settings,
    output: Output,
) -> anyhow::Result<()> {
    let board = Arc::new(HealthBoard::default());
    let (stop, shutdown) = watch::channel(false);
    let mut health_rounds = Vec::new();
    // Notifiers have nothing to pass on: a dry run changes nothing.
    let handles: Vec<_> = plugins
        .into_iter()
        .filter(|plugin| plugin.kind != PluginKind::Notifier)
        .map(|plugin| {
            plugin.announce();
            let kind = plugin.kind;
            let handle = plugin::spawn(plugin, Role::of(kind, &specs, &board), shutdown.clone());
            if kind == PluginKind::HealthCheck {
                health_rounds.push(handle.status());
            }
            handle
        })
        .collect();
    let ready = async {
        let mut spec = specs.subscribe();
        spec.wait_for(Option::is_some).await?;
        for status in &mut health_rounds {
            status
                .wait_for(|s| s.rounds.as_ref().is_some_and(|r| r.rounds >= 1))
                .await?;
        }
        anyhow::Ok(())
    };
    let waited = tokio::time::timeout(WAIT, ready).await;
    let vpc = backend.describe().await;
    let _ = stop.send(true);
    for handle in handles {
        let _ = tokio::time::timeout(Duration::from_secs(2), handle.join()).await;
    }
    match waited {
        Err(_) => match (specs.current(), specs.counts()) {
            (None, (_, rejected)) if rejected > 0 => bail!(
                "dry run: no route spec accepted within {WAIT:?} ({rejected} offered were \
                 rejected; the log says why)"
            ),
            (None, _) => bail!("dry run: no route spec within {WAIT:?}"),
            (Some(_), _) => bail!("dry run: no health round within {WAIT:?}"),
        },
        Ok(result) => result.context("dry run: a plugin stopped")?,
    }
    let vpc = vpc.context("dry run: cannot observe the VPC")?;
    let spec = specs.current().expect("a spec is in force");
    let settings = Settings {
        now: std::time::Instant::now(),
        ..settings.clone()
    };
    let planned = plan(&spec, &board.snapshot(), &vpc, &settings);
    let calls = backend.calls_for(&planned.operations);
    match output {
        Output::Json => {
            let mut shown = planned.to_json();
            let calls = calls
                .iter()
                .map(|c| serde_json::json!({"call": c.api_call(), "what": c.describe()}));
            shown["ec2_calls"] = calls.collect();
            println!("{shown:#}");
        }
        Output::Text => {
            print!("{}", planned.to_text());
            for call in &calls {
                println!("call    {}: {}", call.api_call(), call.describe());
            }
        }
    }
    Ok(())
}
