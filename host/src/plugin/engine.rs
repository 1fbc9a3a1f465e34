//! The wasmtime engine shared by all plugins: configuration, the epoch
//! ticker that drives call deadlines, and compiling through the compile
//! cache (`cache`) and the bounded compiler (`compile`).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::cache::{CompileCache, Lookup};
use super::compile::{self, CompileError, Compiler, engine_config};
use super::function_cache::Reuse;

/// How often the epoch advances; a running guest yields at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine, with a ticker thread that runs for as long as anything
/// (this value, a component, a store) still holds the engine.
pub struct PluginEngine {
    engine: Engine,
    ticker: Ticker,
    cache: Option<Arc<CompileCache>>,
    compiler: Compiler,
}

/// Advances the engine's epoch every EPOCH_TICK while a plugin call is
/// running, and sleeps otherwise: an idle daemon is not woken 100 times a
/// second. Epochs only matter while guest code runs.
#[derive(Clone)]
pub struct Ticker {
    running_calls: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

/// Keeps the ticker going for as long as it lives (one per call).
pub struct Ticking(Arc<AtomicUsize>);

impl Ticker {
    pub fn start_call(&self) -> Ticking {
        if self.running_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.thread.unpark();
        }
        Ticking(self.running_calls.clone())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PluginEngine {
    /// The engine, compiling with `compiler` and without a cache.
    pub fn new(compiler: Compiler) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let ticking = engine.weak();
        let running_calls = Arc::new(AtomicUsize::new(0));
        let calls = running_calls.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticking.upgrade() {
                    if calls.load(Ordering::SeqCst) == 0 {
                        drop(engine);
                        // Unparked by the next call; the timeout only lets
                        // the thread see that the engine is gone.
                        std::thread::park_timeout(Duration::from_secs(1));
                        continue;
                    }
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?
            .thread()
            .clone();
        let ticker = Ticker {
            running_calls,
            thread,
        };
        Ok(Self {
            engine,
            ticker,
            cache: None,
            compiler,
        })
    }

    /// Keep compiled components in `cache`.
    pub fn with_cache(self, cache: CompileCache) -> Self {
        Self {
            cache: Some(Arc::new(cache)),
            ..self
        }
    }

    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `wasm` (already checked to be a component), bounded (see
    /// `compile`), or load the artefact a previous run compiled from the
    /// same bytes with the same engine configuration and wasmtime version,
    /// once the cache has shown it is the daemon's own. `origin` is the
    /// plugin file: a new build of it reuses the functions its previous
    /// compile kept (`function_cache`). Nothing here runs on the daemon's
    /// workers; a compile that takes long is said, with how to avoid it.
    pub async fn compile(&self, wasm: Arc<[u8]>, origin: &Path) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let name = cache_key(&self.engine, &wasm);
        let mut problems = Vec::new();
        let mut functions = None;
        if let Some(cache) = &self.cache {
            let (cache, engine, name) = (cache.clone(), self.engine.clone(), name.clone());
            let pack = functions_key(origin);
            let (cached, pack) = blocking(move || {
                let cached = match cache.load(&name) {
                    Lookup::Hit(artefact) => Some(load(&engine, &artefact).map_err(|e| {
                        format!("{}: does not load: {e}", cache.dir().join(&name).display())
                    })),
                    Lookup::Miss => None,
                    Lookup::Rejected(why) => Some(Err(why)),
                };
                let pack = match cached {
                    Some(Ok(_)) => None,
                    _ => Some(cache.load_functions(&pack)),
                };
                (cached, pack)
            })
            .await?;
            match cached {
                Some(Ok(component)) => {
                    return Ok(Compiled {
                        component,
                        from_cache: true,
                        reuse: Reuse::default(),
                        took: started.elapsed(),
                        problems,
                    });
                }
                Some(Err(why)) => problems.push(format!(
                    "compile cache entry refused, compiled again: {why}"
                )),
                None => {}
            }
            functions = match pack {
                Some(Lookup::Hit(pack)) => Some(pack),
                Some(Lookup::Rejected(why)) => {
                    problems.push(format!(
                        "function cache refused, compiling every function: {why}"
                    ));
                    Some(Vec::new())
                }
                _ => Some(Vec::new()),
            };
        }
        let big = wasm.len() >= BIG_COMPONENT;
        if big {
            tracing::info!(
                plugin = %origin.display(),
                size = %megabytes(wasm.len()),
                reusing = functions.as_ref().is_some_and(|f| !f.is_empty()),
                "compiling the plugin: a component this size takes seconds the first time \
                 (a new build of it then reuses its unchanged functions); \
                 `vpcrouter plugin compile FILE` does it ahead of time"
            );
        }
        let compiling = compile::compile(&self.engine, &self.compiler, wasm, functions);
        let output = said_while_long(compiling, origin).await?;
        if big || started.elapsed() >= SAID_AFTER {
            tracing::info!(
                plugin = %origin.display(),
                took = ?started.elapsed(),
                functions_compiled = output.reuse.compiled,
                functions_reused = output.reuse.reused,
                "plugin compiled"
            );
        }
        let reuse = output.reuse;
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let pack = functions_key(origin);
        let (component, stored) = blocking(move || {
            // SAFETY: see `load`; these bytes come from this daemon's own
            // compiler, a moment ago.
            let component = load(&engine, &output.artefact).map_err(|e| e.to_string());
            let stored = match (&component, cache) {
                (Ok(_), Some(cache)) => cache
                    .store(&name, &output.artefact)
                    .and_then(|()| match &output.functions {
                        Some(functions) => cache.store_functions(&pack, functions),
                        None => Ok(()),
                    })
                    .err()
                    .map(|e| {
                        format!(
                            "cannot write the compile cache {}; continuing without it: {e}",
                            cache.dir().display()
                        )
                    }),
                _ => None,
            };
            (component, stored)
        })
        .await?;
        problems.extend(stored);
        Ok(Compiled {
            component: component.map_err(CompileError::Invalid)?,
            from_cache: false,
            reuse,
            took: started.elapsed(),
            problems,
        })
    }
}

/// Where the engine's lines come from (tracing's default target): what
/// the early log lets through before the command line is parsed.
pub const COMPILE_LOG_TARGET: &str = module_path!();

/// Components from this size on are said when they compile (an
/// interpreter inside: componentize-py, componentize-js); the bundled
/// plugins (50-200 KB) compile in a tenth of a second, unsaid.
const BIG_COMPONENT: usize = 1 << 20;
/// A compile still running after this is said, and again every period.
const SAID_AFTER: Duration = Duration::from_secs(5);

/// Await `compiling`, saying every [`SAID_AFTER`] that it still runs.
async fn said_while_long<T>(compiling: impl std::future::Future<Output = T>, origin: &Path) -> T {
    let started = Instant::now();
    tokio::pin!(compiling);
    loop {
        match tokio::time::timeout(SAID_AFTER, &mut compiling).await {
            Ok(done) => return done,
            Err(_) => tracing::info!(
                plugin = %origin.display(),
                seconds = started.elapsed().as_secs(),
                "still compiling the plugin"
            ),
        }
    }
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The function pack's name for a plugin file: one per file, so a new
/// build finds its previous build's functions.
fn functions_key(origin: &Path) -> String {
    let digest = Sha256::digest(origin.as_os_str().as_encoded_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("functions-{hex}")
}

/// A compiled component and how it was had.
pub struct Compiled {
    pub component: Component,
    pub from_cache: bool,
    /// What a compile took from the plugin file's previous build.
    pub reuse: Reuse,
    pub took: Duration,
    /// What went wrong with the cache on the way, to be reported.
    pub problems: Vec<String>,
}

/// Run blocking work (file reads, deserialising) off the daemon's workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CompileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CompileError::Child(format!("the compile task failed: {e}")))
}

/// Load an artefact as native code.
fn load(engine: &Engine, artefact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: only artefacts this daemon made are loaded: its own
    // compiler's output, or a cache entry whose keyed digest (under a key
    // only the daemon holds) proves the daemon stored it. wasmtime checks
    // its version and the engine's configuration again here.
    unsafe { Component::deserialize(engine, artefact) }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    struct DigestHasher(Sha256);
    impl Hasher for DigestHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
    }
    let mut hasher = DigestHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(wasm);
    hasher
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default cache location: `$XDG_CACHE_HOME/vpcrouter` or
/// `~/.cache/vpcrouter`.
pub fn default_cache_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

/// Where the daemon keeps what must outlive it (the compile cache's key):
/// `$XDG_STATE_HOME/vpcrouter` or `~/.local/state/vpcrouter`.
pub fn default_state_dir() -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state")
}

fn xdg_dir(variable: &str, under_home: &str) -> Option<PathBuf> {
    let base = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))?;
    Some(base.join("vpcrouter"))
}
