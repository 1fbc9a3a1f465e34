//! The wasmtime engine shared by all plugins: configuration, the epoch
//! ticker that drives call deadlines, and the on-disk compile cache.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances; a running guest yields at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest linear memory a plugin may have, and so the most address space
/// one memory reserves up front (guest pages beyond it are never mapped).
pub const MEMORY_CAP: usize = 64 << 20;

/// The engine, with a ticker thread that runs for as long as anything
/// (this value, a component, a store) still holds the engine.
pub struct PluginEngine {
    engine: Engine,
    ticker: Ticker,
    cache_dir: Option<PathBuf>,
    /// Largest the compile cache may grow; the entries used longest ago go.
    cache_cap: u64,
}

/// The compile cache's default size cap: a big component (componentize-py)
/// compiles to ~40 MB, so this holds a dozen of them.
pub const CACHE_CAP: u64 = 512 << 20;

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
    /// `cache_dir`: where compiled components are kept (`None`: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_reservation(MEMORY_CAP as u64)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(0)
            .max_wasm_stack(512 << 10);
        let engine = Engine::new(&config)?;
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
            cache_dir,
            cache_cap: CACHE_CAP,
        })
    }

    /// A compile cache of at most `bytes`.
    pub fn with_cache_cap(self, bytes: u64) -> Self {
        Self {
            cache_cap: bytes,
            ..self
        }
    }

    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `wasm` (already checked to be a component), or load the
    /// artefact a previous run compiled from the same bytes with the same
    /// engine configuration and wasmtime version. Compiling is seconds of
    /// CPU for a big component: it runs on a blocking thread, never on the
    /// daemon's workers (a reload happens while the daemon runs).
    pub async fn compile(&self, wasm: Vec<u8>) -> wasmtime::Result<Component> {
        let (engine, cache_dir, cap) =
            (self.engine.clone(), self.cache_dir.clone(), self.cache_cap);
        tokio::task::spawn_blocking(move || {
            compile_cached(&engine, cache_dir.as_deref(), cap, &wasm)
        })
        .await
        .map_err(|e| wasmtime::format_err!("the compile task failed: {e}"))?
    }
}

fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    cache_cap: u64,
    wasm: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let cached = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
    if cached.is_file() {
        // SAFETY: the cache directory is created by this daemon with mode
        // 0700 and only ever holds artefacts it serialized itself; the key
        // covers the wasm bytes, the wasmtime version and engine config,
        // and wasmtime checks the latter two again on load.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => {
                // Used now: the last to be evicted.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&cached)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable compile cache entry")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = store_artefact(dir, &cached, &component.serialize()?) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compile cache; continuing without it");
    }
    if let Err(e) = prune(dir, cache_cap, &cached) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot prune the compile cache");
    }
    Ok(component)
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

/// Write atomically (temp file + rename) into a private directory.
fn store_artefact(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Delete the entries used longest ago until the cache holds at most `cap`
/// bytes; `keep` (the entry just written) stays whatever its size.
fn prune(dir: &Path, cap: u64, keep: &Path) -> std::io::Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "cwasm") {
            continue;
        }
        let meta = entry.metadata()?;
        entries.push((meta.modified()?, meta.len(), path));
    }
    // Newest first; what does not fit after them goes.
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let mut total = 0;
    for (_, size, path) in entries {
        total += size;
        if total > cap && path != keep {
            std::fs::remove_file(&path)?;
            tracing::debug!(path = %path.display(), "evicted from the compile cache");
        }
    }
    Ok(())
}

/// The default cache location: `$XDG_CACHE_HOME/vpcrouter` or
/// `~/.cache/vpcrouter`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("vpcrouter"))
}
