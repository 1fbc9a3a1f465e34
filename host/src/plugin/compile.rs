//! Compiling a component, bounded. Validation and code generation are not
//! linear in every structure a component can have: a small file can cost
//! minutes of CPU and gigabytes. So the daemon compiles in a child process
//! of its own binary (`vpcrouter plugin compile-child`, hidden), started
//! with limits that grow with the file's size: CPU seconds, data memory,
//! wall time and the size of what it hands back. Whatever a compile costs
//! ends with the child: the daemon's workers never run it and its memory
//! never holds the compiler's peak. The child runs at a lower priority, has
//! no capabilities, no environment and no core dumps, and dies with the
//! daemon. It is handed the plugin file's function pack and hands the new
//! one back (`function_cache`): it never opens a file.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::{Config, Engine};

use super::cache::MAX_ARTEFACT;
use super::function_cache::{FunctionCache, Reuse};
use super::limits::{MAX_PLUGIN_FILE, MEMORY_CAP};

/// The hidden subcommand the daemon runs itself with: `vpcrouter plugin
/// compile-child` reads a component on stdin and writes the artefact.
pub const CHILD_COMMAND: &str = "compile-child";

/// What one compile may cost, from the component's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    pub cpu: Duration,
    pub memory: u64,
    pub wall: Duration,
    /// Largest answer accepted back (the artefact and its function pack).
    pub output: u64,
}

impl CompileLimits {
    /// Measured (BENCHMARKS.md, issue 19): the 18 MB componentize-py
    /// example compiles in 29 CPU-seconds and 414 MB at most on the
    /// optimised daemon (71 s, 426 MB on the debug one), the 12 MB
    /// componentize-js one in 40 CPU-seconds and 480 MB (70 s, 500 MB); the
    /// bundled plugins (50-200 KB) in a tenth of a second. The bounds leave
    /// 1.7x the memory and 4x the CPU of the worst of these, growing with
    /// the size, so only a compile out of all proportion to its size is
    /// refused (a 143 KB component wasmtime needs 1.1 GB and 15 s for is
    /// stopped at 263 MB).
    pub fn for_size(bytes: usize) -> Self {
        let mib = bytes as u64 / (1 << 20) + 1;
        let cpu = Duration::from_secs(30 + 20 * mib);
        Self {
            cpu,
            memory: (256 << 20) + 48 * bytes as u64,
            wall: cpu * 2,
            output: (32 << 20) + 32 * bytes as u64,
        }
    }
}

/// Which code generator compiles a component. A component built from
/// Python or JavaScript holds tens of thousands of functions: Cranelift's
/// optimised code takes 10-15 s of two cores to make, Winch's baseline
/// code a fifth of that (BENCHMARKS.md). The daemon loads such a plugin on
/// quick code first and swaps in the optimised code once a compile in the
/// background has put it in the compile cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// Winch: a single pass, no optimisation.
    Quick,
    /// Cranelift, optimising: what the daemon runs in the end.
    #[default]
    Optimised,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Quick => "quick",
            Tier::Optimised => "optimised",
        }
    }
}

/// Where compiles run.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// In a child process of this executable (the daemon and its tools).
    Child(PathBuf),
    /// On a blocking thread of this process (library users and their tests,
    /// whose executable is not the daemon).
    InProcess,
}

impl Compiler {
    /// The daemon's own binary: `/proc/self/exe` is the running file even
    /// after a package upgrade replaced the one on disk.
    pub fn this_daemon() -> Self {
        Compiler::Child(PathBuf::from("/proc/self/exe"))
    }
}

/// Why a component did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// What wasmtime said (first line).
    #[error("{0}")]
    Invalid(String),
    #[error("compiling it would take more than {0:?} of CPU, out of all proportion to its size")]
    Cpu(Duration),
    #[error("compiling it would need more than {} MiB, out of all proportion to its size", .0 >> 20)]
    Memory(u64),
    #[error("compiling it took longer than {0:?}")]
    Wall(Duration),
    #[error("its compiled form is larger than {} MiB", .0 >> 20)]
    Output(u64),
    #[error("the compiler could not be run: {0}")]
    Child(String),
}

/// What a compile hands back.
#[derive(Debug)]
pub struct Output {
    /// What `Component::deserialize` takes.
    pub artefact: Vec<u8>,
    /// The functions this compile used, for the next compile of the same
    /// plugin file (when it was given one to start from).
    pub functions: Option<Vec<u8>>,
    pub reuse: Reuse,
}

/// Compile `wasm` into an artefact `Component::deserialize` takes, for
/// `engine` (configured for `tier`); with `functions` (the previous
/// compile's, empty for none yet), reusing every function that did not
/// change (`function_cache`; optimised code only).
pub async fn compile(
    engine: &Engine,
    tier: Tier,
    compiler: &Compiler,
    wasm: std::sync::Arc<[u8]>,
    functions: Option<Vec<u8>>,
) -> Result<Output, CompileError> {
    let functions = functions.filter(|_| tier == Tier::Optimised);
    match compiler {
        Compiler::InProcess => {
            let engine = engine.clone();
            let artefact = tokio::task::spawn_blocking(move || engine.precompile_component(&wasm))
                .await
                .map_err(|e| CompileError::Child(e.to_string()))?
                .map_err(|e| CompileError::Invalid(first_line(&e)))?;
            Ok(Output {
                artefact,
                functions: None,
                reuse: Reuse::default(),
            })
        }
        Compiler::Child(exe) => {
            let limits = CompileLimits::for_size(wasm.len());
            in_child(exe, tier, wasm, functions, limits).await
        }
    }
}

/// The child's input: the component's length (u64 LE), whether a function
/// pack follows (one byte), the tier (one byte: 1 for quick), the
/// component, the pack. Its output: the
/// artefact's length, the artefact, functions reused and compiled (u64 LE
/// each), the new pack.
const LEN: usize = 8;

async fn in_child(
    exe: &std::path::Path,
    tier: Tier,
    wasm: std::sync::Arc<[u8]>,
    functions: Option<Vec<u8>>,
    limits: CompileLimits,
) -> Result<Output, CompileError> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["plugin", CHILD_COMMAND])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (setrlimit, setpriority, prctl)
    // between fork and exec.
    unsafe {
        command.pre_exec(move || confine(limits));
    }
    let mut child = command
        .spawn()
        .map_err(|e| CompileError::Child(format!("{}: {e}", exe.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let feeding = tokio::spawn(async move {
        let mut header = (wasm.len() as u64).to_le_bytes().to_vec();
        header.push(functions.is_some() as u8);
        header.push((tier == Tier::Quick) as u8);
        // The child may stop reading (refused, killed): not our error.
        let _ = async {
            stdin.write_all(&header).await?;
            stdin.write_all(&wasm).await?;
            stdin
                .write_all(functions.as_deref().unwrap_or_default())
                .await
        }
        .await;
    });
    let run = async {
        let mut artefact = Vec::new();
        let mut said = Vec::new();
        let (mut out, mut err) = (
            (&mut stdout).take(limits.output + 1),
            (&mut stderr).take(4096),
        );
        let (read, _) = tokio::join!(out.read_to_end(&mut artefact), err.read_to_end(&mut said));
        read.map_err(|e| CompileError::Child(e.to_string()))?;
        if artefact.len() as u64 > limits.output {
            return Err(CompileError::Output(limits.output));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| CompileError::Child(e.to_string()))?;
        Ok((
            status,
            artefact,
            String::from_utf8_lossy(&said).into_owned(),
        ))
    };
    let outcome = tokio::time::timeout(limits.wall, run).await;
    feeding.abort();
    let (status, artefact, said) = match outcome {
        Ok(done) => done?,
        // Dropping the child kills it.
        Err(_) => return Err(CompileError::Wall(limits.wall)),
    };
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => unframe(artefact)
            .ok_or_else(|| CompileError::Child("it handed back a malformed answer".into())),
        (_, Some(libc::SIGXCPU | libc::SIGKILL)) => Err(CompileError::Cpu(limits.cpu)),
        // Rust's "memory allocation of N bytes failed", or an mmap refused.
        _ if said.contains("memory allocation") || said.contains("Cannot allocate memory") => {
            Err(CompileError::Memory(limits.memory))
        }
        (Some(_), _) if !said.trim().is_empty() => {
            let first = said.lines().next().unwrap_or_default();
            let problem = first.strip_prefix("error: ").unwrap_or(first);
            Err(CompileError::Invalid(problem.to_string()))
        }
        _ => Err(CompileError::Child(format!("it ended with {status}"))),
    }
}

/// The child's answer, taken apart.
fn unframe(mut out: Vec<u8>) -> Option<Output> {
    let (len, rest) = out.split_first_chunk::<LEN>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let counts = rest.get(len..len + 2 * LEN)?;
    let reuse = Reuse {
        reused: u64::from_le_bytes(counts[..LEN].try_into().ok()?),
        compiled: u64::from_le_bytes(counts[LEN..].try_into().ok()?),
    };
    let functions = out.split_off(LEN + len + 2 * LEN);
    out.truncate(LEN + len);
    out.drain(..LEN);
    Some(Output {
        artefact: out,
        functions: Some(functions),
        reuse,
    })
}

/// In the child, before exec: its limits, a low priority, no core dumps,
/// no capabilities, no new privileges, and death with the daemon.
fn confine(limits: CompileLimits) -> std::io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct passed.
        match unsafe { libc::setrlimit(resource, &limit) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    };
    let cpu = limits.cpu.as_secs();
    // SIGXCPU at the soft limit, SIGKILL a second later.
    set(libc::RLIMIT_CPU, cpu, cpu + 1)?;
    set(libc::RLIMIT_DATA, limits.memory, limits.memory)?;
    set(libc::RLIMIT_CORE, 0, 0)?;
    // SAFETY: plain calls with integer arguments.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    Ok(())
}

/// `vpcrouter plugin compile-child`: the component (and the function pack)
/// on stdin, the artefact (and the new pack) on stdout, what went wrong on
/// stderr; the exit code.
pub fn child_main() -> Result<(), crate::failure::Failure> {
    use std::io::{Read, Write};
    let failed = |e: String| crate::failure::Failure::Failed(anyhow::anyhow!(e));
    let mut input = Vec::new();
    let limit = LEN as u64 + 2 + MAX_PLUGIN_FILE + MAX_ARTEFACT;
    std::io::stdin()
        .take(limit + 1)
        .read_to_end(&mut input)
        .map_err(|e| failed(format!("cannot read the component: {e}")))?;
    let (len, rest) = input
        .split_first_chunk::<LEN>()
        .ok_or_else(|| failed("no component given".into()))?;
    let len = u64::from_le_bytes(*len);
    if len > MAX_PLUGIN_FILE {
        return Err(failed(format!(
            "larger than the {MAX_PLUGIN_FILE}-byte limit"
        )));
    }
    let ([with_functions, quick], rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| failed("no component given".into()))?;
    let (wasm, pack) = rest
        .split_at_checked(len as usize)
        .ok_or_else(|| failed("the component is cut short".into()))?;
    let tier = match quick {
        1 => Tier::Quick,
        _ => Tier::Optimised,
    };
    let mut config = engine_config(tier);
    let functions = (*with_functions == 1).then(|| Arc::new(FunctionCache::from_pack(pack)));
    if let Some(functions) = &functions {
        config
            .enable_incremental_compilation(functions.clone())
            .map_err(|e| failed(first_line(&e)))?;
    }
    let engine = Engine::new(&config).map_err(|e| failed(first_line(&e)))?;
    let artefact = engine
        .precompile_component(wasm)
        .map_err(|e| failed(first_line(&e)))?;
    drop((engine, config));
    let (pack, reuse) = functions
        .and_then(Arc::into_inner)
        .map(FunctionCache::into_pack)
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(&(artefact.len() as u64).to_le_bytes())
        .and_then(|()| out.write_all(&artefact))
        .and_then(|()| out.write_all(&reuse.reused.to_le_bytes()))
        .and_then(|()| out.write_all(&reuse.compiled.to_le_bytes()))
        .and_then(|()| out.write_all(&pack));
    written.map_err(|e| failed(format!("cannot hand the artefact back: {e}")))
}

pub(super) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// An engine's configuration: the daemon's and its compiler child's (an
/// artefact loads only into an engine configured the same).
pub fn engine_config(tier: Tier) -> Config {
    let mut config = Config::new();
    if tier == Tier::Quick {
        config.strategy(wasmtime::Strategy::Winch);
    }
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_reservation(MEMORY_CAP as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0)
        .max_wasm_stack(512 << 10);
    config
}
