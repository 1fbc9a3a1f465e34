//! Loading a plugin file, validated step by step before anything runs, so
//! that every problem is one clear line naming the file: not readable, not
//! wasm, a core module, not a vpcrouter plugin, the wrong kind, an
//! incompatible WIT version, missing imports or exports, a bad description.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::{
    ConfigPlugin, ConfigPluginPre, HealthPluginPre, PluginInfo, PluginKind, WIT_DIR, WIT_PACKAGE,
    WIT_VERSION, WIT_VERSION_TEXT,
};
use super::compile::{CompileError, first_line};
use super::engine::{Compiled, PluginEngine};
use super::grants::{self, Grants, OptionError, Trust};
use super::inspect;
use super::instance::{CallError, HostState, InstanceFactory, PluginInstance, Pre};
use super::limits::Bounds;
use crate::probe::ProbeShare;
use crate::read::{ReadError, Reader};
use crate::spec::RouteSpec;
use crate::text::clip;

/// HTTP paths the daemon keeps for itself; plugins cannot claim them.
pub const RESERVED_HTTP_PATHS: &[&str] = &[
    "/",
    "/ips",
    "/plugins",
    "/route_info",
    "/vpc",
    "/metrics",
    "/healthz",
    "/readyz",
    "/events",
    "/plan",
    "/rebalance",
];

/// Bounds on what a plugin may say about itself: its description is shown
/// in `--help`, logs and views, so nothing in it is unbounded.
const MAX_NAME: usize = 64;
const MAX_TEXT: usize = 1024;
const MAX_DEFAULT: usize = 4096;
const MAX_OPTIONS: usize = 64;
const MAX_HTTP_PATHS: usize = 16;
const MAX_HTTP_PATH: usize = 256;

/// Largest plugin file read: a component built from Python or JavaScript
/// (an interpreter inside) is 12-18 MB.
pub const MAX_PLUGIN_FILE: u64 = 64 << 20;
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

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] ReadError),
    #[error("not a WebAssembly file")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component; build it for wasm32-wasip2 (see PLUGINS.md)"
    )]
    CoreModule,
    #[error("unsupported WebAssembly binary version {0:#x}")]
    UnknownWasmVersion(u32),
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("{0}")]
    Compile(CompileError),
    #[error("not a vpcrouter plugin: it exports no {WIT_PACKAGE}/* interface")]
    NotAPlugin,
    #[error(
        "is a {found}, but a {expected} is needed here: give it with {}, or build it for the {} world",
        found.flag(),
        expected.world()
    )]
    WrongKind {
        found: PluginKind,
        expected: PluginKind,
    },
    #[error(
        "built against {WIT_PACKAGE}@{found}; this host ({WIT_PACKAGE}@{WIT_VERSION_TEXT}) loads plugins built against {}.{}.x",
        WIT_VERSION.0,
        WIT_VERSION.1
    )]
    IncompatibleVersion { found: String },
    #[error(
        "does not fit the {WIT_PACKAGE} contract: {0} (build it against {WIT_DIR}, see PLUGINS.md)"
    )]
    Link(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("bad plugin description: {0}")]
    BadInfo(String),
    #[error("refused its options: {0}")]
    InitRefused(String),
    #[error("option --{option}: {problem}")]
    BadOption { option: String, problem: String },
    #[error("is pinned to sha256 {pinned}, but its sha256 is {found}")]
    NotPinned { pinned: String, found: String },
}

impl From<CompileError> for LoadError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Invalid(problem) => LoadError::Invalid(problem),
            other => LoadError::Compile(other),
        }
    }
}

impl From<OptionError> for LoadError {
    fn from(e: OptionError) -> Self {
        LoadError::BadOption {
            option: e.option,
            problem: e.problem,
        }
    }
}

/// A loaded and validated plugin that has described itself.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub origin: Origin,
    factory: InstanceFactory,
}

/// Where a plugin comes from: what the daemon knows of the file.
#[derive(Debug, Clone)]
pub struct Origin {
    /// SHA-256 of the file, hex.
    pub digest: String,
    pub trust: Trust,
    /// The contract version it was built against, e.g. `0.1.0`.
    pub wit_version: String,
    /// The toolchain, from the component's producers section.
    pub producer: Option<String>,
    /// How its code was had: from the compile cache, or compiled (and how
    /// long it took), and what went wrong with the cache on the way.
    pub compiled: CompileReport,
}

/// How a plugin's code was had, as the daemon reports it.
#[derive(Debug, Clone, Default)]
pub struct CompileReport {
    pub from_cache: bool,
    pub took: std::time::Duration,
    pub problems: Vec<String>,
}

impl CompileReport {
    fn of(compiled: &Compiled) -> Self {
        Self {
            from_cache: compiled.from_cache,
            took: compiled.took,
            problems: compiled.problems.clone(),
        }
    }

    /// Say it in the log: a line, and a warning per problem.
    pub fn log(&self, plugin: &str) {
        let took_ms = self.took.as_millis() as u64;
        match self.from_cache {
            true => tracing::info!(plugin, took_ms, "plugin code loaded from the compile cache"),
            false => tracing::info!(plugin, took_ms, "plugin compiled"),
        }
        for problem in &self.problems {
            tracing::warn!(plugin, "{problem}");
        }
    }
}

impl LoadedPlugin {
    pub fn factory(&self) -> &InstanceFactory {
        &self.factory
    }

    /// The declaration as the operator sees it in `--help`: a third-party
    /// plugin's grant options have no default (it would not be granted).
    pub fn info_for_help(&self) -> PluginInfo {
        let mut info = self.info.clone();
        if self.origin.trust == Trust::ThirdParty {
            for option in info.options.iter_mut().filter(|o| grants::is_grant(o.kind)) {
                if let Some(default) = option.default.take() {
                    let shown = clip(&default, 256);
                    option.help = format!(
                        "{} [its default {shown:?} is not granted: give it]",
                        option.help
                    );
                }
            }
        }
        info
    }

    /// Check the operator's options against the plugin's declaration, fill
    /// in defaults, work out the grants (see [`grants::resolve`]), and run
    /// the plugin's own `init` on them. Returns the instance, ready to run.
    pub async fn configure(
        mut self,
        given: &[(String, String)],
    ) -> Result<ConfiguredPlugin, LoadError> {
        let mut resolved = grants::resolve(&self.info, given, &self.origin.trust)?;
        if self.kind == PluginKind::HealthCheck {
            resolved.grants.grant_probes(self.factory.accepted.clone());
        }
        let grants = Arc::new(resolved.grants);
        self.factory.grants = grants.clone();
        let mut instance = self.factory.instantiate().await?;
        instance
            .init(&resolved.options)
            .await
            .map_err(|e| match e {
                CallError::Plugin(problem) => LoadError::InitRefused(problem),
                other => other.into(),
            })?;
        Ok(ConfiguredPlugin {
            path: self.path,
            kind: self.kind,
            info: self.info,
            origin: self.origin,
            options: resolved.options,
            grants,
            withheld: resolved.withheld,
            factory: self.factory,
            instance,
        })
    }
}

/// A plugin with its options checked and granted, initialised once.
pub struct ConfiguredPlugin {
    pub path: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub origin: Origin,
    pub options: Vec<(String, String)>,
    pub grants: Arc<Grants>,
    /// Defaults of grant options that were not applied: (option, default).
    pub withheld: Vec<(String, String)>,
    pub factory: InstanceFactory,
    pub instance: PluginInstance,
}

impl ConfiguredPlugin {
    /// Say how its code was had and what it may touch, on whose word: at
    /// start and at every reload alike.
    pub fn announce(&self) {
        let name = &self.info.name;
        self.origin.compiled.log(name);
        let trust = self.origin.trust.describe();
        if self.grants.records.is_empty() {
            tracing::info!(
                plugin = name,
                trust,
                "plugin granted nothing beyond its own sandbox"
            );
        }
        for record in &self.grants.records {
            tracing::info!(
                plugin = name,
                trust,
                grant = record.grant,
                from = record.from,
                "plugin grant"
            );
        }
        for (option, default) in &self.withheld {
            tracing::warn!(
                plugin = name,
                "option --{option}: the default {:?} of a third-party plugin is not granted; give --{option} to grant it",
                clip(default, 256)
            );
        }
    }
}

/// Two loaded plugins that cannot both run.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct IdentityError {
    /// The plugin loaded second.
    pub path: PathBuf,
    pub problem: String,
}

/// Every plugin is known by its name in logs, health reports and views, so
/// names must be unique: a plugin calling itself `tcp` beside the real tcp
/// checker would otherwise speak for it. The name is read once at load; what
/// a plugin reports later is filed under it by the host.
pub fn check_identities(plugins: &[LoadedPlugin]) -> Result<(), IdentityError> {
    for (i, plugin) in plugins.iter().enumerate() {
        if let Some(first) = plugins[..i]
            .iter()
            .find(|p| p.info.name == plugin.info.name)
        {
            return Err(IdentityError {
                path: plugin.path.clone(),
                problem: format!(
                    "calls itself {:?}, as {} does; plugin names must be unique (each plugin once)",
                    plugin.info.name,
                    first.path.display()
                ),
            });
        }
    }
    Ok(())
}

/// The engine and linker shared by all plugins.
pub struct PluginRuntime {
    engine: PluginEngine,
    linker: Linker<HostState>,
    bounds: Bounds,
    /// Plugin files the operator pinned to a SHA-256 digest (hex).
    pins: HashMap<PathBuf, String>,
}

impl PluginRuntime {
    pub fn new(engine: PluginEngine, bounds: Bounds) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(engine.engine());
        // Std guests import WASI even when they use none of it; the context
        // each store gets grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        ConfigPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        // Only what the health world adds; the shared interfaces are linked.
        health_only_imports(&mut linker)?;
        Ok(Self {
            engine,
            linker,
            bounds,
            pins: HashMap::new(),
        })
    }

    /// Refuse the file at `path` unless its SHA-256 is `sha256` (hex).
    pub fn pin(&mut self, path: PathBuf, sha256: String) {
        self.pins.insert(path, sha256);
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
        if let Some(pinned) = self.pins.get(path)
            && *pinned != checked.digest
        {
            return Err(LoadError::NotPinned {
                pinned: pinned.clone(),
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
        let compiled = self.engine.compile(wasm.into()).await?;
        let component = &compiled.component;
        let link = |e: wasmtime::Error| LoadError::Link(first_line(&e));
        let instance_pre = self.linker.instantiate_pre(component).map_err(link)?;
        let pre = match kind {
            PluginKind::ConfigSource => {
                Pre::Config(ConfigPluginPre::new(instance_pre).map_err(link)?)
            }
            PluginKind::HealthCheck => {
                Pre::Health(HealthPluginPre::new(instance_pre).map_err(link)?)
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

/// What is known of a component without compiling it.
pub struct Checked {
    pub digest: String,
    pub outline: inspect::Outline,
    pub kind: PluginKind,
    pub wit_version: String,
}

/// Everything that can be told without compiling, first: a big component
/// takes seconds to compile. Not wasm, not a component, not a plugin, an
/// incompatible version, an import the daemon does not provide.
pub fn precheck(wasm: &[u8]) -> Result<Checked, LoadError> {
    check_header(wasm)?;
    let outline = inspect::outline(wasm).map_err(LoadError::Invalid)?;
    let (kind, wit_version) = plugin_kind(outline.exports.iter().map(String::as_str))?;
    if let Some(problem) = inspect::unsupported_import(&outline.imports) {
        return Err(LoadError::Unsupported(problem));
    }
    Ok(Checked {
        digest: sha256_hex(wasm),
        outline,
        kind,
        wit_version,
    })
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Link the interfaces only the health world imports.
fn health_only_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use super::bindings::health::vpcrouter::plugin::{probes, verdicts};
    probes::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    verdicts::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

/// Magic and version/layer: core modules are layer 0, components layer 1.
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    match u32::from_le_bytes(wasm[4..8].try_into().expect("4 bytes")) {
        0x0000_0001 => Err(LoadError::CoreModule),
        0x0001_000d => Ok(()),
        other => Err(LoadError::UnknownWasmVersion(other)),
    }
}

/// Which plugin interface the component exports, and whether its version is
/// one this host speaks (same major; for 0.x, same minor).
fn plugin_kind<'a>(
    exports: impl Iterator<Item = &'a str>,
) -> Result<(PluginKind, String), LoadError> {
    let prefix = format!("{WIT_PACKAGE}/");
    for name in exports {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let kind = match interface {
            "config-source" => PluginKind::ConfigSource,
            "health-check" => PluginKind::HealthCheck,
            _ => continue,
        };
        let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        let compatible = match (major, minor) {
            (Some(0), Some(minor)) => WIT_VERSION.0 == 0 && minor == WIT_VERSION.1,
            (Some(major), Some(_)) => major == WIT_VERSION.0,
            _ => false,
        };
        if !compatible {
            return Err(LoadError::IncompatibleVersion {
                found: version.to_string(),
            });
        }
        return Ok((kind, version.to_string()));
    }
    Err(LoadError::NotAPlugin)
}

pub(super) fn check_info(info: &PluginInfo, kind: PluginKind) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::BadInfo(m));
    let is_identifier = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    if !is_identifier(&info.name) {
        return bad(format!(
            "name {:?} must be a letter, then letters, digits, '-' or '_' (at most {MAX_NAME})",
            clip(&info.name, MAX_NAME)
        ));
    }
    if info.version.len() > MAX_NAME || info.version.contains(char::is_control) {
        return bad(format!(
            "version {:?} must be at most {MAX_NAME} printable characters",
            clip(&info.version, MAX_NAME)
        ));
    }
    if info.description.len() > MAX_TEXT {
        return bad(format!(
            "description is {} bytes; at most {MAX_TEXT}",
            info.description.len()
        ));
    }
    if info.options.len() > MAX_OPTIONS {
        return bad(format!(
            "{} options; at most {MAX_OPTIONS}",
            info.options.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for option in &info.options {
        if !is_identifier(&option.name) {
            return bad(format!(
                "option name {:?} must be a letter, then letters, digits, '-' or '_' (at most {MAX_NAME})",
                clip(&option.name, MAX_NAME)
            ));
        }
        if !seen.insert(option.name.as_str()) {
            return bad(format!("option --{} is declared twice", option.name));
        }
        if option.help.len() > MAX_TEXT {
            return bad(format!(
                "help of option --{} is {} bytes; at most {MAX_TEXT}",
                option.name,
                option.help.len()
            ));
        }
        if option
            .default
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DEFAULT)
        {
            return bad(format!(
                "default of option --{} is longer than {MAX_DEFAULT} bytes",
                option.name
            ));
        }
    }
    grants::check_declaration(info, kind).map_err(LoadError::BadInfo)?;
    if kind == PluginKind::HealthCheck && !info.http_paths.is_empty() {
        return bad("health-check plugins cannot serve HTTP paths".into());
    }
    if info.http_paths.len() > MAX_HTTP_PATHS {
        return bad(format!(
            "{} HTTP paths; at most {MAX_HTTP_PATHS}",
            info.http_paths.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for path in &info.http_paths {
        check_http_path(path).map_err(LoadError::BadInfo)?;
        if !seen.insert(path.as_str()) {
            return bad(format!("HTTP path {path} is declared twice"));
        }
    }
    Ok(())
}

/// Plugin paths are matched exactly, never as patterns: a literal path of
/// URL-safe characters that the daemon does not serve itself.
fn check_http_path(path: &str) -> Result<(), String> {
    let literal = path.len() <= MAX_HTTP_PATH
        && path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c));
    if !literal {
        return Err(format!(
            "HTTP path {:?} must be a literal path: '/' then letters, digits, '/', '-', '.', '_' or '~' (at most {MAX_HTTP_PATH})",
            clip(path, MAX_HTTP_PATH)
        ));
    }
    if RESERVED_HTTP_PATHS.contains(&path) || path.starts_with("/plugins/") {
        return Err(format!("HTTP path {path} is reserved for the daemon"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(matches!(check_header(b"\0asm\x0d\0\x01\0"), Ok(())));
        assert!(matches!(
            check_header(b"\0asm\x0e\0\x01\0"),
            Err(LoadError::UnknownWasmVersion(_))
        ));
    }

    #[test]
    fn versions_are_checked_by_compatibility() {
        let kind = |name: &str| plugin_kind([name].into_iter()).map(|(kind, _)| kind);
        assert_eq!(
            kind("vpcrouter:plugin/config-source@0.1.0").unwrap(),
            PluginKind::ConfigSource
        );
        assert_eq!(
            kind("vpcrouter:plugin/config-source@0.1.7").unwrap(),
            PluginKind::ConfigSource
        );
        assert_eq!(
            kind("vpcrouter:plugin/health-check@0.1.0").unwrap(),
            PluginKind::HealthCheck
        );
        assert!(matches!(
            kind("vpcrouter:plugin/config-source@0.2.0"),
            Err(LoadError::IncompatibleVersion { .. })
        ));
        assert!(matches!(
            kind("vpcrouter:plugin/config-source@1.0.0"),
            Err(LoadError::IncompatibleVersion { .. })
        ));
        assert!(matches!(
            kind("wasi:cli/run@0.2.0"),
            Err(LoadError::NotAPlugin)
        ));
    }
}
