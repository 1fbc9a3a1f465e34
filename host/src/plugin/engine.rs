//! The wasmtime engine shared by all plugins: configuration, the epoch
//! ticker that drives call deadlines, and compiling through the compile
//! cache (`cache`) and the bounded compiler (`compile`).

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::cache::{CompileCache, Lookup};
use super::compile::{self, CompileError, Compiler, Tier, engine_config};
use super::function_cache::Reuse;

/// How often the epoch advances; a running guest yields at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engines (optimised code, and quick code for a big plugin's first
/// load), with a ticker thread that runs for as long as anything (this
/// value, a component, a store) still holds them.
pub struct PluginEngine {
    engine: Engine,
    quick: Engine,
    ticker: Ticker,
    cache: Option<Arc<CompileCache>>,
    compiler: Compiler,
    /// Load a big component on quick code first (the daemon; not the
    /// tools, which fill the cache for it).
    quick_first: bool,
    upgrades: Arc<Upgrades>,
}

/// Optimised compiles running in the background, and how many finished.
#[derive(Default)]
struct Upgrades {
    /// Cache names of the optimised compiles started, so that a load
    /// while one runs (or after it failed) does not start another.
    started: Mutex<HashSet<String>>,
    finished: watch::Sender<u64>,
}

/// Advances the engines' epochs every EPOCH_TICK while a plugin call is
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
    /// The engines, compiling with `compiler` and without a cache.
    pub fn new(compiler: Compiler) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config(Tier::Optimised))?;
        let quick = Engine::new(&engine_config(Tier::Quick))?;
        let ticking = [engine.weak(), quick.weak()];
        let running_calls = Arc::new(AtomicUsize::new(0));
        let calls = running_calls.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    let engines: Vec<Engine> = ticking.iter().filter_map(|e| e.upgrade()).collect();
                    if engines.is_empty() {
                        return;
                    }
                    if calls.load(Ordering::SeqCst) == 0 {
                        drop(engines);
                        // Unparked by the next call; the timeout only lets
                        // the thread see that the engines are gone.
                        std::thread::park_timeout(Duration::from_secs(1));
                        continue;
                    }
                    engines.iter().for_each(Engine::increment_epoch);
                    drop(engines);
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
            quick,
            ticker,
            cache: None,
            compiler,
            quick_first: false,
            upgrades: Arc::default(),
        })
    }

    /// Keep compiled components in `cache`.
    pub fn with_cache(self, cache: CompileCache) -> Self {
        Self {
            cache: Some(Arc::new(cache)),
            ..self
        }
    }

    /// Load a big component that is not in the cache on quick code, and
    /// compile its optimised code in the background, into the cache (see
    /// [`Tier`]); [`PluginEngine::upgrades`] says when one is there.
    pub fn quick_first(self) -> Self {
        Self {
            quick_first: true,
            ..self
        }
    }

    /// Counts the background compiles that finished (optimised code in
    /// the cache, or a failure logged): a reload then swaps it in.
    pub fn upgrades(&self) -> watch::Receiver<u64> {
        self.upgrades.finished.subscribe()
    }

    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    /// The engine of code of `tier`.
    pub fn engine(&self, tier: Tier) -> &Engine {
        match tier {
            Tier::Quick => &self.quick,
            Tier::Optimised => &self.engine,
        }
    }

    /// Compile `wasm` (already checked to be a component), bounded (see
    /// `compile`), or load the artefact a previous run compiled from the
    /// same bytes with the same engine configuration and wasmtime version,
    /// once the cache has shown it is the daemon's own. `origin` is the
    /// plugin file: a new build of it reuses the functions its previous
    /// compile kept (`function_cache`). With [`PluginEngine::quick_first`],
    /// a big component without optimised code in the cache comes on quick
    /// code. Nothing here runs on the daemon's workers; a compile that
    /// takes long is said, with how to avoid it.
    pub async fn compile(&self, wasm: Arc<[u8]>, origin: &Path) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let name = cache_key(&self.engine, Tier::Optimised, &wasm);
        let mut problems = Vec::new();
        let mut functions = None;
        if let Some(cache) = &self.cache {
            let (cached, pack) = self
                .cached(cache, Tier::Optimised, &name, Some(origin))
                .await?;
            match cached {
                Some(Ok(component)) => {
                    return Ok(Compiled::cached(component, Tier::Optimised, started));
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
        if let Some(cache) = self.cache.as_ref().filter(|_| self.quick_first && big) {
            match self.quick(cache, wasm.clone(), origin, started).await {
                Ok(mut compiled) => {
                    self.optimise_later(wasm, origin, functions, name);
                    problems.append(&mut compiled.problems);
                    compiled.problems = problems;
                    return Ok(compiled);
                }
                // Beyond the bounds for its size: optimising costs more.
                Err(
                    e @ (CompileError::Cpu(_) | CompileError::Memory(_) | CompileError::Wall(_)),
                ) => {
                    return Err(e);
                }
                // E.g. a feature Winch does not compile.
                Err(e) => problems.push(format!(
                    "no quick code for it ({e}): compiling its optimised code now"
                )),
            }
        }
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
        let job = self.optimising(name, origin);
        let (component, output, stored) = said_while_long(job.run(wasm, functions), origin).await?;
        if big || started.elapsed() >= SAID_AFTER {
            tracing::info!(
                plugin = %origin.display(),
                took = ?started.elapsed(),
                functions_compiled = output.compiled,
                functions_reused = output.reused,
                "plugin compiled"
            );
        }
        problems.extend(stored);
        Ok(Compiled {
            component,
            tier: Tier::Optimised,
            from_cache: false,
            reuse: output,
            took: started.elapsed(),
            problems,
        })
    }

    /// The optimised compile of the plugin file `origin`, kept in the
    /// cache as `name` with the file's function pack.
    fn optimising(&self, name: String, origin: &Path) -> Job {
        Job {
            engine: self.engine.clone(),
            tier: Tier::Optimised,
            compiler: self.compiler.clone(),
            cache: self.cache.clone(),
            name,
            pack: Some(functions_key(origin)),
        }
    }

    /// A component of `tier` from the cache, if there (and with `origin`
    /// on a miss, the plugin file's function pack).
    async fn cached(
        &self,
        cache: &Arc<CompileCache>,
        tier: Tier,
        name: &str,
        origin: Option<&Path>,
    ) -> Result<(Option<Result<Component, String>>, Option<Lookup>), CompileError> {
        let (cache, engine, name) = (cache.clone(), self.engine(tier).clone(), name.to_string());
        let pack = origin.map(functions_key);
        blocking(move || {
            let cached = match cache.load(&name) {
                Lookup::Hit(artefact) => Some(load(&engine, &artefact).map_err(|e| {
                    format!("{}: does not load: {e}", cache.dir().join(&name).display())
                })),
                Lookup::Miss => None,
                Lookup::Rejected(why) => Some(Err(why)),
            };
            let pack = match (&cached, pack) {
                (Some(Ok(_)), _) | (_, None) => None,
                (_, Some(pack)) => Some(cache.load_functions(&pack)),
            };
            (cached, pack)
        })
        .await
    }

    /// Quick code for `wasm`: from the cache, or compiled (a few seconds)
    /// and kept there, so that a restart before the optimised code is
    /// ready is as quick.
    async fn quick(
        &self,
        cache: &Arc<CompileCache>,
        wasm: Arc<[u8]>,
        origin: &Path,
        started: Instant,
    ) -> Result<Compiled, CompileError> {
        let name = cache_key(&self.quick, Tier::Quick, &wasm);
        if let (Some(Ok(component)), _) = self.cached(cache, Tier::Quick, &name, None).await? {
            return Ok(Compiled::cached(component, Tier::Quick, started));
        }
        tracing::info!(
            plugin = %origin.display(),
            size = %megabytes(wasm.len()),
            "compiling the plugin to quick code first (its optimised code follows in the \
             background); `vpcrouter plugin compile FILE` makes the optimised code ahead of time"
        );
        let job = Job {
            engine: self.quick.clone(),
            tier: Tier::Quick,
            compiler: self.compiler.clone(),
            cache: Some(cache.clone()),
            name,
            pack: None,
        };
        let (component, _, stored) = said_while_long(job.run(wasm, None), origin).await?;
        tracing::info!(plugin = %origin.display(), took = ?started.elapsed(), "plugin compiled to quick code");
        Ok(Compiled {
            component,
            tier: Tier::Quick,
            from_cache: false,
            reuse: Reuse::default(),
            took: started.elapsed(),
            problems: stored.into_iter().collect(),
        })
    }

    /// Compile the optimised code of `wasm` into the cache, in the
    /// background (once per component and daemon run), and count it in
    /// [`PluginEngine::upgrades`] when done.
    fn optimise_later(
        &self,
        wasm: Arc<[u8]>,
        origin: &Path,
        functions: Option<Vec<u8>>,
        name: String,
    ) {
        let first = self
            .upgrades
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        if !first {
            return;
        }
        let job = self.optimising(name, origin);
        let (upgrades, origin) = (self.upgrades.clone(), origin.to_path_buf());
        tokio::spawn(async move {
            let started = Instant::now();
            match job.run(wasm, functions).await {
                Ok((_, reuse, None)) => tracing::info!(
                    plugin = %origin.display(),
                    took = ?started.elapsed(),
                    functions_compiled = reuse.compiled,
                    functions_reused = reuse.reused,
                    "the plugin's optimised code is ready: swapping it in"
                ),
                Ok((_, _, Some(problem))) => tracing::warn!(
                    plugin = %origin.display(),
                    "the plugin's optimised code could not be kept, it stays on quick code: {problem}"
                ),
                Err(e) => tracing::warn!(
                    plugin = %origin.display(),
                    "the plugin's optimised code did not compile, it stays on quick code: {e}"
                ),
            }
            upgrades.finished.send_modify(|finished| *finished += 1);
        });
    }
}

/// One compile and what becomes of it: the component, loaded, and stored
/// in the cache (with the plugin file's new function pack).
struct Job {
    engine: Engine,
    tier: Tier,
    compiler: Compiler,
    cache: Option<Arc<CompileCache>>,
    /// The artefact's name in the cache.
    name: String,
    /// The function pack's name in the cache (optimised code).
    pack: Option<String>,
}

impl Job {
    /// The component, what the compile reused, and why the cache could not
    /// keep it, if it could not.
    async fn run(
        self,
        wasm: Arc<[u8]>,
        functions: Option<Vec<u8>>,
    ) -> Result<(Component, Reuse, Option<String>), CompileError> {
        let output =
            compile::compile(&self.engine, self.tier, &self.compiler, wasm, functions).await?;
        let reuse = output.reuse;
        let Job {
            engine,
            cache,
            name,
            pack,
            ..
        } = self;
        let (component, stored) = blocking(move || {
            // SAFETY: see `load`; these bytes come from this daemon's own
            // compiler, a moment ago.
            let component = load(&engine, &output.artefact).map_err(|e| e.to_string());
            let stored = match (&component, cache) {
                (Ok(_), Some(cache)) => cache
                    .store(&name, &output.artefact)
                    .and_then(|()| match (&output.functions, &pack) {
                        (Some(functions), Some(pack)) => cache.store_functions(pack, functions),
                        _ => Ok(()),
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
        Ok((component.map_err(CompileError::Invalid)?, reuse, stored))
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
    /// Which engine's code it is (and so which engine's linker takes it).
    pub tier: Tier,
    pub from_cache: bool,
    /// What a compile took from the plugin file's previous build.
    pub reuse: Reuse,
    pub took: Duration,
    /// What went wrong with the cache on the way, to be reported.
    pub problems: Vec<String>,
}

impl Compiled {
    fn cached(component: Component, tier: Tier, started: Instant) -> Self {
        Self {
            component,
            tier,
            from_cache: true,
            reuse: Reuse::default(),
            took: started.elapsed(),
            problems: Vec::new(),
        }
    }
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

fn cache_key(engine: &Engine, tier: Tier, wasm: &[u8]) -> String {
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
    hasher.0.update(tier.name().as_bytes());
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
