//! Loading a plugin file, validated step by step before anything runs, so
//! that every problem is one clear line naming the file: not readable, not
//! wasm, a core module, not a vpcrouter plugin, the wrong kind, an
//! incompatible WIT version, missing imports or exports, a bad description.

mod checks;
mod error;
mod plugin;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::{
    ConfigPlugin, ConfigPluginPre, HealthPluginPre, NotifierPluginPre, PluginKind,
};
use super::compile::{Tier, first_line};
use super::engine::PluginEngine;
use super::grants::Trust;
use super::instance::{HostState, InstanceFactory, Pre};
use super::limits::{Bounds, MAX_PLUGIN_FILE};
use crate::probe::ProbeShare;
use crate::read::Reader;
use crate::spec::RouteSpec;

pub use checks::{Checked, check_info, precheck, sha256_hex};
pub use error::LoadError;
pub use plugin::{
    CompileReport, ConfiguredPlugin, IdentityError, LoadedPlugin, Origin, check_identities,
};

/// A local file of that size is read in well under a second; a plugin file
/// slower than this is on a hung mount, or is not a file.
const PLUGIN_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Plugin file reads that may be unfinished at once (stuck in the kernel).
const PLUGIN_READS: usize = 2;

/// Reads of plugin files, daemon-wide: bounded in size and time, off the
/// runtime's workers (a FIFO or a file on a hung mount at a plugin's path
/// cannot freeze a reload, `plugin inspect` or `plugin compile`).
pub fn plugin_files() -> &'static Reader {
    static READER: std::sync::OnceLock<Reader> = std::sync::OnceLock::new();
    READER.get_or_init(|| Reader::new(MAX_PLUGIN_FILE, PLUGIN_READ_TIMEOUT, PLUGIN_READS))
}

/// The engines and their linkers, shared by all plugins.
pub struct PluginRuntime {
    engine: PluginEngine,
    linker: Linker<HostState>,
    /// The quick engine's (a component links only in its own engine).
    quick_linker: Linker<HostState>,
    bounds: Bounds,
    /// Plugin files the operator pinned to a SHA-256 digest (hex); a
    /// reload may read them anew (`--plugin-pins`).
    pins: std::sync::RwLock<HashMap<PathBuf, String>>,
}

impl PluginRuntime {
    pub fn new(engine: PluginEngine, bounds: Bounds) -> wasmtime::Result<Self> {
        Ok(Self {
            linker: linker(engine.engine(Tier::Optimised))?,
            quick_linker: linker(engine.engine(Tier::Quick))?,
            engine,
            bounds,
            pins: Default::default(),
        })
    }

    /// From now on, refuse each file unless its SHA-256 is the one
    /// pinned (hex); files not in `pins` are not pinned.
    pub fn set_pins(&self, pins: impl IntoIterator<Item = (PathBuf, String)>) {
        let pins = pins.into_iter().collect();
        *self.pins.write().unwrap_or_else(|e| e.into_inner()) = pins;
    }

    /// The plugin engine (e.g. to follow its background compiles).
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    fn pinned(&self, path: &Path) -> Option<String> {
        let pins = self.pins.read().unwrap_or_else(|e| e.into_inner());
        pins.get(path).cloned()
    }

    /// Load a config-source plugin from `path` and ask it to describe itself.
    pub async fn load_config_source(
        &self,
        path: &Path,
        accepted: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load(path, PluginKind::ConfigSource, accepted).await
    }

    /// Load a health-check plugin; `specs` is the spec in force, whose hosts
    /// (the working set) are the only ones it may probe.
    pub async fn load_health_check(
        &self,
        path: &Path,
        specs: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load(path, PluginKind::HealthCheck, specs).await
    }

    /// Load a notifier plugin (it sees no spec).
    pub async fn load_notifier(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let (_, nothing) = tokio::sync::watch::channel(None);
        self.load(path, PluginKind::Notifier, nothing).await
    }

    async fn load(
        &self,
        path: &Path,
        expected: PluginKind,
        accepted: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    ) -> Result<LoadedPlugin, LoadError> {
        let wasm = plugin_files().read(path).await?;
        self.load_read(path, wasm, expected, accepted).await
    }

    /// Load the plugin file at `path`, already read as `wasm`, as a plugin
    /// of kind `expected` (a reload reads the file once, for its digest).
    pub async fn load_read(
        &self,
        path: &Path,
        wasm: Vec<u8>,
        expected: PluginKind,
        accepted: tokio::sync::watch::Receiver<Option<Arc<RouteSpec>>>,
    ) -> Result<LoadedPlugin, LoadError> {
        let checked = precheck(&wasm)?;
        if let Some(pinned) = self.pinned(path)
            && pinned != checked.digest
        {
            return Err(LoadError::NotPinned {
                pinned,
                found: checked.digest,
            });
        }
        let Checked {
            digest,
            outline,
            kind,
            wit_version,
        } = checked;
        if kind != expected {
            return Err(LoadError::WrongKind {
                found: kind,
                expected,
            });
        }
        let compiled = self.engine.compile(wasm.into(), path).await?;
        let component = &compiled.component;
        let link = |e: wasmtime::Error| LoadError::Link(first_line(&e));
        let linker = match compiled.tier {
            Tier::Quick => &self.quick_linker,
            Tier::Optimised => &self.linker,
        };
        let instance_pre = linker.instantiate_pre(component).map_err(link)?;
        let pre = match kind {
            PluginKind::ConfigSource => {
                Pre::Config(ConfigPluginPre::new(instance_pre).map_err(link)?)
            }
            PluginKind::HealthCheck => {
                Pre::Health(HealthPluginPre::new(instance_pre).map_err(link)?)
            }
            PluginKind::Notifier => {
                Pre::Notifier(NotifierPluginPre::new(instance_pre).map_err(link)?)
            }
        };
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let factory = InstanceFactory {
            pre,
            plugin: name.into(),
            grants: Arc::default(),
            accepted,
            bounds: self.bounds.clone(),
            ticker: self.engine.ticker().clone(),
            files: super::host::granted_files_reader(),
            probes: ProbeShare::default(),
        };
        let mut instance = factory.instantiate().await?;
        let info = instance.describe().await?;
        check_info(&info, kind)?;
        let factory = InstanceFactory {
            plugin: info.name.as_str().into(),
            ..factory
        };
        Ok(LoadedPlugin {
            path: path.to_path_buf(),
            kind,
            info,
            origin: Origin {
                trust: Trust::of(&digest),
                digest,
                wit_version,
                producer: outline.producer,
                compiled: CompileReport::of(&compiled),
            },
            factory,
        })
    }
}

/// What a plugin may import, in `engine`.
fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // Std guests import WASI even when they use none of it; the context
    // each store gets grants nothing.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    ConfigPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    // Only what the health world adds; the shared interfaces are linked.
    health_only_imports(&mut linker)?;
    Ok(linker)
}

/// Link the interfaces only the health world imports.
fn health_only_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use super::bindings::health::vpcrouter::plugin::{probes, verdicts};
    probes::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    verdicts::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}
