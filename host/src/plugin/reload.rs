//! Hot reload (SIGHUP, `POST /plugins/reload`): every plugin whose file
//! changed is loaded anew beside the running version, with the operator's
//! options (grants worked out again for the new file), and swapped in only
//! once its `init` accepted them. A new version that cannot be loaded, that
//! changed its name or kind, or that a pin refuses, leaves the running one
//! in place; the outcome is reported.

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::bindings::PluginKind;
use super::load::{PluginRuntime, sha256_hex};
use super::supervisor::Reload;
use crate::events::{EventKind, EventLog};
use crate::spec_store::SpecWatch;

/// One supervised plugin, as a reload sees it.
pub struct Reloadable {
    pub name: String,
    pub kind: PluginKind,
    pub path: PathBuf,
    /// The operator's options, as given on the command line.
    pub given: Vec<(String, String)>,
    /// The SHA-256 of the running version.
    pub digest: String,
    pub specs: SpecWatch,
    pub reloads: mpsc::Sender<Reload>,
}

/// A reload asked for; the outcomes go back when the asker waits for them
/// (`POST /plugins/reload`), else only to the log (SIGHUP).
pub type ReloadRequest = Option<tokio::sync::oneshot::Sender<Vec<Outcome>>>;

/// What a reload did with one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub plugin: String,
    /// `unchanged`, `reloaded` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct Reloader {
    pub runtime: Arc<PluginRuntime>,
    pub plugins: Vec<Reloadable>,
    pub events: Arc<EventLog>,
}

impl Reloader {
    /// Reload every plugin whose file changed.
    pub async fn reload_all(&mut self) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(self.plugins.len());
        for plugin in &mut self.plugins {
            let outcome = reload(&self.runtime, plugin).await;
            match (&outcome.result, &outcome.detail) {
                (&"reloaded", detail) => self.events.record(
                    EventKind::Plugin,
                    &outcome.plugin,
                    format!("reloaded: {}", detail.as_deref().unwrap_or_default()),
                    None,
                ),
                (&"failed", Some(why)) => {
                    self.events.record(
                        EventKind::Plugin,
                        &outcome.plugin,
                        format!("reload failed, the running version stays: {why}"),
                        None,
                    );
                    let _ = plugin.reloads.send(Reload::Failed(why.clone())).await;
                }
                _ => {}
            }
            outcomes.push(outcome);
        }
        outcomes
    }
}

async fn reload(runtime: &PluginRuntime, plugin: &mut Reloadable) -> Outcome {
    let outcome = |result, detail: Option<String>| Outcome {
        plugin: plugin.name.clone(),
        result,
        detail,
    };
    let digest = match std::fs::read(&plugin.path) {
        Ok(bytes) => sha256_hex(&bytes),
        Err(e) => return outcome("failed", Some(format!("{}: {e}", plugin.path.display()))),
    };
    if digest == plugin.digest {
        return outcome("unchanged", None);
    }
    let loaded = match plugin.kind {
        PluginKind::ConfigSource => {
            runtime
                .load_config_source(&plugin.path, plugin.specs.clone())
                .await
        }
        PluginKind::HealthCheck => {
            runtime
                .load_health_check(&plugin.path, plugin.specs.clone())
                .await
        }
    };
    let loaded = match loaded {
        Ok(loaded) if loaded.info.name != plugin.name => {
            return outcome(
                "failed",
                Some(format!(
                    "the new file calls itself {:?}; a plugin keeps its name",
                    loaded.info.name
                )),
            );
        }
        Ok(loaded) => loaded,
        Err(e) => return outcome("failed", Some(e.to_string())),
    };
    let (version, new_digest) = (loaded.info.version.clone(), loaded.origin.digest.clone());
    let configured = match loaded.configure(&plugin.given).await {
        Ok(configured) => configured,
        Err(e) => return outcome("failed", Some(e.to_string())),
    };
    if plugin
        .reloads
        .send(Reload::Swap(Box::new(configured)))
        .await
        .is_err()
    {
        return outcome("failed", Some("the plugin has stopped".into()));
    }
    let detail = format!(
        "version {version}, sha256 {} (was {})",
        &new_digest[..12],
        &plugin.digest[..12]
    );
    plugin.digest = new_digest;
    outcome("reloaded", Some(detail))
}
