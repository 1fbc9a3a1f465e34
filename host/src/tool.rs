//! `vpcrouter plugin ...`: tools for plugin files, apart from the daemon.
//!
//! `vpcrouter plugin new NAME --lang rust|python|js` starts a plugin project
//! (see `scaffold`).
//!
//! `vpcrouter plugin compile FILE...` compiles plugins into the compile
//! cache ahead of time. A component built from Python or JavaScript is
//! tens of megabytes (an interpreter inside); compiling it takes seconds
//! and hundreds of megabytes once, so an install does it, and the daemon's
//! first load is a cached one.

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use crate::failure::{self, Failure};
use crate::plugin::{self, Checked, CompileCache, Compiler, PluginEngine, precheck};
use crate::scaffold::{self, Kind, Lang};

#[derive(Parser, Debug)]
#[command(
    name = "vpcrouter plugin",
    bin_name = "vpcrouter plugin",
    about = "Tools for plugin files",
    after_help = "Writing a plugin: PLUGINS.md, the author's guide (PREFIX/share/doc/vpcrouter/PLUGINS.md when installed, e.g. /usr/share/doc/vpcrouter/PLUGINS.md; in vpcrouter's sources otherwise)."
)]
struct PluginCli {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Compile plugin files into the compile cache, as the daemon will load
    /// them (run at install time: the daemon's first load is then fast)
    Compile {
        /// Plugin files (wasm components); FILE#sha256=HEX holds one to its pin
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The daemon's compile cache [default: $XDG_CACHE_HOME/vpcrouter or ~/.cache/vpcrouter]
        #[arg(long = "plugin-cache-dir", value_name = "DIR")]
        plugin_cache_dir: Option<PathBuf>,
        /// The daemon's state folder, where the cache's key is kept
        /// [default: $XDG_STATE_HOME/vpcrouter or ~/.local/state/vpcrouter]
        #[arg(long = "state-dir", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// The daemon's bounded compiler: a component on stdin, its compiled
    /// form on stdout (run by the daemon itself, under limits)
    #[command(name = "compile-child", hide = true)]
    CompileChild,
    /// Say what the daemon makes of plugin files without compiling them:
    /// kind, contract version, digest, producer, imports (exit 2 when the
    /// daemon would refuse one)
    Inspect {
        /// Plugin files; FILE#sha256=HEX also checks the file against its pin
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write a new plugin project, ready to build, outside this daemon's
    /// sources (the contract, and for Rust the SDK, vendored)
    New {
        /// The plugin's name (lowercase letters, digits, '-')
        name: String,
        #[arg(long, value_enum)]
        lang: Lang,
        #[arg(long, value_enum, default_value = "config")]
        kind: Kind,
        /// Where to write it [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `vpcrouter plugin` as a clap command, for completions and manual pages.
pub fn command() -> clap::Command {
    PluginCli::command()
}

/// Run `vpcrouter plugin ...` (`args` starts at `plugin`).
pub async fn main(args: &[OsString]) -> Result<(), Failure> {
    match failure::parse::<PluginCli>(args)?.command {
        PluginCommand::Compile {
            files,
            plugin_cache_dir,
            state_dir,
        } => compile(files, plugin_cache_dir, state_dir).await,
        PluginCommand::CompileChild => plugin::child_main(),
        PluginCommand::Inspect { files } => inspect(files).await,
        PluginCommand::New {
            name,
            lang,
            kind,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = scaffold::write(&name, lang, kind, &dir).map_err(Failure::Usage)?;
            println!(
                "wrote {} files in {}; see its README.md",
                files.len(),
                dir.display()
            );
            Ok(())
        }
    }
}

/// Each file's problem said as it is found; the failure, if any, counts
/// them.
fn refused(problems: usize, files: usize) -> Result<(), Failure> {
    match problems {
        0 => Ok(()),
        _ => Err(Failure::Usage(format!(
            "{problems} of {files} plugin files refused"
        ))),
    }
}

/// A plugin file, read as the daemon reads it (bounded), and prechecked;
/// given as `PATH#sha256=HEX`, held to its pin as the daemon holds it.
async fn read_checked(file: &std::path::Path) -> Result<(Vec<u8>, Checked), String> {
    let given = file.to_string_lossy();
    let (path, pin) = crate::config::split_pin(&given);
    let wasm = plugin::plugin_files()
        .read(&path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let checked = precheck(&wasm).map_err(|e| e.to_string())?;
    if let Some(pinned) = pin.map(str::to_ascii_lowercase)
        && pinned != checked.digest
    {
        let refused = plugin::LoadError::NotPinned {
            pinned,
            found: checked.digest,
        };
        return Err(refused.to_string());
    }
    Ok((wasm, checked))
}

/// The file a `PATH[#sha256=HEX]` names, absolute (as the daemon keys it).
fn unpinned(file: &std::path::Path) -> PathBuf {
    let path = crate::config::split_pin(&file.to_string_lossy()).0;
    std::path::absolute(&path).unwrap_or(path)
}

async fn inspect(files: Vec<PathBuf>) -> Result<(), Failure> {
    let mut problems = 0;
    for file in &files {
        let checked = read_checked(file).await.map(|(_, checked)| checked);
        match checked {
            Ok(checked) => {
                println!("{}:", file.display());
                println!(
                    "  kind: {} (vpcrouter:plugin@{})",
                    checked.kind, checked.wit_version
                );
                let pinned = match crate::config::split_pin(&file.to_string_lossy()).1 {
                    Some(_) => " (matches its pin)",
                    None => "",
                };
                println!("  sha256: {}{pinned}", checked.digest);
                let producer = checked.outline.producer.as_deref().unwrap_or("unknown");
                println!("  producer: {producer}");
                println!("  imports: {}", checked.outline.imports.join(", "));
            }
            Err(problem) => {
                eprintln!("error: {}: {problem}", file.display());
                problems += 1;
            }
        }
    }
    refused(problems, files.len())
}

async fn compile(
    files: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let cache_dir = cache_dir
        .or_else(plugin::default_cache_dir)
        .ok_or_else(|| Failure::Usage("no cache directory: give --plugin-cache-dir".into()))?;
    let state_dir = state_dir.or_else(plugin::default_state_dir);
    let cache = CompileCache::configured(Some(&cache_dir), state_dir.as_deref())
        .map_err(|e| Failure::Usage(format!("cannot use the compile cache: {e}")))?
        .expect("a cache folder was given");
    let engine = PluginEngine::new(Compiler::this_daemon())
        .map_err(|e| Failure::failed("cannot set up the plugin runtime", e))?
        .with_cache(cache);
    // What the engine says of a long compile, on standard error.
    let _logs = crate::logging::early();
    let mut problems = 0;
    for file in &files {
        let started = Instant::now();
        let compiled = match read_checked(file).await {
            // Keyed as the daemon keys it: by the file's absolute path.
            Ok((wasm, checked)) => engine
                .compile(wasm.into(), &unpinned(file))
                .await
                .map(|compiled| (checked, compiled))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match compiled {
            Ok((checked, compiled)) => {
                for problem in &compiled.problems {
                    eprintln!("warning: {}: {problem}", file.display());
                }
                let how = match (compiled.from_cache, compiled.reuse) {
                    (true, _) => "already compiled".to_string(),
                    (false, reuse) if reuse.reused > 0 => format!(
                        "{} of {} functions reused from its previous build",
                        reuse.reused,
                        reuse.reused + reuse.compiled
                    ),
                    (false, _) => "compiled".to_string(),
                };
                println!(
                    "{}: {} (vpcrouter:plugin@{}, sha256 {}) ready in {:.1} s ({how}), in {}",
                    file.display(),
                    checked.kind,
                    checked.wit_version,
                    checked.digest,
                    started.elapsed().as_secs_f64(),
                    cache_dir.display()
                )
            }
            Err(problem) => {
                eprintln!("error: {}: {problem}", file.display());
                problems += 1;
            }
        }
    }
    refused(problems, files.len())
}
