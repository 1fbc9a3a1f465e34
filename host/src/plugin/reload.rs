//! Hot reload (SIGHUP, `POST /plugins/reload`): every plugin whose file
//! changed is loaded anew beside the running version, with the operator's
//! options (grants worked out again for the new file, and logged as at
//! start), and swapped in only once its `init` accepted them. A new version
//! that cannot be loaded, that changed its name or kind, that a pin
//! refuses, or that declares one of the operator's options with another
//! kind of grant (the operator's text would become a grant they never
//! gave) leaves the running one in place; the outcome is reported.
//!
//! Requests are coalesced: one reload runs at a time, and every request
//! made while it runs is answered by the next one, which starts when it
//! ends (the files may have changed since the running one read them).

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

use super::bindings::{OptionKind, PluginInfo, PluginKind};
use super::compile::Tier;
use super::grants::{self, kind_name};
use super::load::{PluginRuntime, plugin_files, sha256_hex};
use super::supervisor::{PluginStatus, Reload};
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
    /// The kind the running version declares for each of its options.
    pub declared: BTreeMap<String, OptionKind>,
    pub specs: SpecWatch,
    pub reloads: mpsc::Sender<Reload>,
    /// Its supervisor's status: a swap is done once it counts it.
    pub status: watch::Receiver<PluginStatus>,
}

/// How long a reload waits for the supervisor to take a new version in (it
/// does between calls; a call runs for seconds at most).
const SWAP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The kind of each option `info` declares.
pub fn declared_kinds(info: &PluginInfo) -> BTreeMap<String, OptionKind> {
    info.options
        .iter()
        .map(|o| (o.name.clone(), o.kind))
        .collect()
}

/// What a reload did with one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub plugin: String,
    /// `unchanged`, `reloaded` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of one reload, and which requests it answers (those made
/// up to `generation`).
#[derive(Debug, Clone, Default)]
struct Done {
    generation: u64,
    outcomes: Arc<[Outcome]>,
}

/// Where reloads are asked for and their outcomes awaited; cheap to clone.
#[derive(Clone)]
pub struct Reloads {
    asked: Arc<watch::Sender<u64>>,
    done: watch::Receiver<Done>,
}

impl Reloads {
    /// Ask for a reload; the number whose outcome answers this request.
    pub fn request(&self) -> u64 {
        let mut generation = 0;
        self.asked.send_modify(|asked| {
            *asked += 1;
            generation = *asked;
        });
        generation
    }

    /// The outcome of the reload that answers request `generation` (one
    /// that started after it was made); `None` once reloading has stopped.
    pub async fn outcome(&self, generation: u64) -> Option<Arc<[Outcome]>> {
        let mut done = self.done.clone();
        let done = done.wait_for(|d| d.generation >= generation).await.ok()?;
        Some(done.outcomes.clone())
    }

    /// Where reloading stands: the last request, and the last reload's
    /// outcome with the last request it answered (0 and none before any).
    pub fn latest(&self) -> Latest {
        let done = self.done.borrow();
        Latest {
            requested: *self.asked.borrow(),
            answered: done.generation,
            outcomes: done.outcomes.to_vec(),
        }
    }
}

/// Where reloading stands (`GET /plugins/reload`).
#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    /// The number of the last request.
    pub requested: u64,
    /// The last request the last finished reload answered.
    pub answered: u64,
    /// That reload's outcome per plugin.
    #[serde(rename = "plugins")]
    pub outcomes: Vec<Outcome>,
}

/// The pins as they are now (`--plugin-pins` read again), or why not.
pub type PinsNow = Box<dyn Fn() -> Result<Vec<(PathBuf, String)>, String> + Send>;

pub struct Reloader {
    pub runtime: Arc<PluginRuntime>,
    /// With a pins file: the pins, read again before each reload.
    pub pins: Option<PinsNow>,
    pub plugins: Vec<Reloadable>,
    pub events: Arc<EventLog>,
}

impl Reloader {
    /// Serve reloads, one at a time, on a task of their own (compiling a
    /// new version may take seconds; signals and HTTP never wait for it).
    pub fn spawn(self) -> (Reloads, tokio::task::JoinHandle<()>) {
        let (asked, asked_rx) = watch::channel(0u64);
        let (done_tx, done) = watch::channel(Done::default());
        // A background compile that finished is a reload's to swap in.
        let mut upgrades = self.runtime.engine().upgrades();
        let task = tokio::spawn(self.serve(asked_rx, done_tx));
        let reloads = Reloads {
            asked: Arc::new(asked),
            done,
        };
        let upgraded = reloads.clone();
        tokio::spawn(async move {
            while upgrades.changed().await.is_ok() {
                upgraded.request();
            }
        });
        (reloads, task)
    }

    async fn serve(mut self, mut asked: watch::Receiver<u64>, done: watch::Sender<Done>) {
        let mut answered = 0;
        while asked.wait_for(|asked| *asked > answered).await.is_ok() {
            // Every request made so far is answered by this run.
            let generation = *asked.borrow_and_update();
            let outcomes = self.reload_all().await;
            // A failure is logged by the plugin's supervisor, which keeps it.
            for outcome in outcomes.iter().filter(|o| o.result != "failed") {
                let detail = outcome.detail.as_deref().unwrap_or_default();
                tracing::info!(
                    plugin = outcome.plugin,
                    result = outcome.result,
                    detail,
                    "reload"
                );
            }
            answered = generation;
            done.send_replace(Done {
                generation,
                outcomes: outcomes.into(),
            });
        }
    }

    /// Reload every plugin whose file changed, under the pins as they are
    /// now. A pins file that does not read leaves every plugin as it runs.
    pub async fn reload_all(&mut self) -> Vec<Outcome> {
        let pins = self.pins.as_ref().map(|pins_now| pins_now());
        let unpinnable = match pins {
            Some(Ok(pins)) => {
                self.runtime.set_pins(pins);
                None
            }
            Some(Err(why)) => Some(format!("{why}; nothing was reloaded")),
            None => None,
        };
        let mut outcomes = Vec::with_capacity(self.plugins.len());
        for plugin in &mut self.plugins {
            let outcome = match &unpinnable {
                Some(why) => Outcome {
                    plugin: plugin.name.clone(),
                    result: "failed",
                    detail: Some(why.clone()),
                },
                None => reload(&self.runtime, plugin).await,
            };
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
    let wasm = match plugin_files().read(&plugin.path).await {
        Ok(wasm) => wasm,
        Err(e) => return outcome("failed", Some(format!("{}: {e}", plugin.path.display()))),
    };
    let same_file = sha256_hex(&wasm) == plugin.digest;
    // Quick code is swapped for optimised code once a background compile
    // has put it in the cache.
    let running = plugin.status.borrow().running.origin.compiled.tier;
    if same_file && running == Tier::Optimised {
        return outcome("unchanged", None);
    }
    let loaded = runtime
        .load_read(&plugin.path, wasm, plugin.kind, plugin.specs.clone())
        .await;
    let loaded = match loaded {
        // Its optimised code is not ready yet.
        Ok(loaded) if same_file && loaded.origin.compiled.tier == Tier::Quick => {
            return outcome("unchanged", None);
        }
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
    if let Some(problem) = regranted(&plugin.declared, &loaded.info, &plugin.given) {
        return outcome("failed", Some(problem));
    }
    let (version, new_digest) = (loaded.info.version.clone(), loaded.origin.digest.clone());
    let tier = loaded.origin.compiled.tier;
    let declared = declared_kinds(&loaded.info);
    let configured = match loaded.configure(&plugin.given).await {
        Ok(configured) => configured,
        Err(e) => return outcome("failed", Some(e.to_string())),
    };
    configured.announce();
    let mut status = plugin.status.clone();
    let swaps = status.borrow().reloads;
    if plugin
        .reloads
        .send(Reload::Swap(Box::new(configured)))
        .await
        .is_err()
    {
        return outcome("failed", Some("the plugin has stopped".into()));
    }
    // Answered once the new version is the one the views show.
    let swapped = tokio::time::timeout(SWAP_WAIT, status.wait_for(|s| s.reloads > swaps)).await;
    let pending = match swapped {
        Ok(Ok(_)) => "",
        _ => "; it takes over once its current call ends",
    };
    // Whole digests: what an operator copies from here must be what a pin
    // takes.
    let detail = match same_file {
        true => format!(
            "version {version}, sha256 {new_digest}: its optimised code, swapped for the quick code it started on{pending}"
        ),
        false => format!(
            "version {version}, sha256 {new_digest} (was {}), on {} code{pending}",
            plugin.digest,
            tier.name()
        ),
    };
    plugin.digest = new_digest;
    plugin.declared = declared;
    outcome("reloaded", Some(detail))
}

/// An option the operator gave whose kind the new version changes into a
/// grant (or another grant): the value was given for what the running
/// version declared, and a reload must not turn it into a capability the
/// operator never granted. Restarting the daemon with the new version
/// grants it in the open, with the grant lines logged.
fn regranted(
    running: &BTreeMap<String, OptionKind>,
    new: &PluginInfo,
    given: &[(String, String)],
) -> Option<String> {
    given.iter().find_map(|(name, _)| {
        let was = *running.get(name)?;
        let now = new.options.iter().find(|o| &o.name == name)?.kind;
        (was != now && grants::is_grant(now)).then(|| {
            format!(
                "the new version declares --{name} as {} (it was {}): a reload does not turn a value the operator gave into a grant; restart vpcrouter to load it",
                kind_name(now),
                kind_name(was)
            )
        })
    })
}
