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
use crate::plugin::{
    self, Bounds, Checked, CompileCache, Compiler, PluginEngine, PluginInfo, PluginRuntime,
    precheck,
};
use crate::scaffold::{self, Kind, Lang};
use crate::text::clip;

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
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// The daemon's bounded compiler: a component on stdin, its compiled
    /// form on stdout (run by the daemon itself, under limits)
    #[command(name = "compile-child", hide = true)]
    CompileChild,
    /// Say what the daemon makes of plugin files and refuse them as it
    /// would (exit 2): kind, contract version, digest, producer, imports
    /// (read without compiling), then the plugin's own description: name,
    /// options and their kinds, HTTP paths (it runs `describe`, so the file
    /// is compiled into the compile cache first, as the daemon would; the
    /// daemon's own load is then a cached one). Files given together are
    /// checked as on one command line (names, options)
    Inspect {
        /// Plugin files; FILE#sha256=HEX also checks the file against its pin
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Only what needs no compile: kind, version, digest, imports
        #[arg(long)]
        no_describe: bool,
        #[command(flatten)]
        cache: CacheArgs,
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

/// The compile cache a tool shares with the daemon.
#[derive(clap::Args, Debug)]
struct CacheArgs {
    /// The daemon's compile cache [default: $XDG_CACHE_HOME/vpcrouter or ~/.cache/vpcrouter]
    #[arg(long = "plugin-cache-dir", value_name = "DIR")]
    plugin_cache_dir: Option<PathBuf>,
    /// The daemon's state folder, where the cache's key is kept
    /// [default: $XDG_STATE_HOME/vpcrouter or ~/.local/state/vpcrouter]
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl CacheArgs {
    /// The daemon's plugin engine on the daemon's compile cache, and that
    /// cache's folder.
    fn engine(self) -> Result<(PluginEngine, PathBuf), Failure> {
        let cache_dir = self
            .plugin_cache_dir
            .or_else(plugin::default_cache_dir)
            .ok_or_else(|| Failure::Usage("no cache directory: give --plugin-cache-dir".into()))?;
        let state_dir = self.state_dir.or_else(plugin::default_state_dir);
        let cache = CompileCache::configured(Some(&cache_dir), state_dir.as_deref())
            .map_err(|e| Failure::Usage(format!("cannot use the compile cache: {e}")))?
            .expect("a cache folder was given");
        let engine = PluginEngine::new(Compiler::this_daemon())
            .map_err(|e| Failure::failed("cannot set up the plugin runtime", e))?
            .with_cache(cache);
        Ok((engine, cache_dir))
    }
}

/// `vpcrouter plugin` as a clap command, for completions and manual pages.
pub fn command() -> clap::Command {
    PluginCli::command()
}

/// Run `vpcrouter plugin ...` (`args` starts at `plugin`).
pub async fn main(args: &[OsString]) -> Result<(), Failure> {
    match failure::parse::<PluginCli>(args)?.command {
        PluginCommand::Compile { files, cache } => compile(files, cache).await,
        PluginCommand::CompileChild => plugin::child_main(),
        PluginCommand::Inspect {
            files,
            no_describe,
            cache,
        } => {
            let engine = match no_describe {
                true => None,
                false => Some(cache.engine()?.0),
            };
            inspect(files, engine).await
        }
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

/// Each file's outline; with an engine, also its description, checked as
/// the daemon checks it at load.
async fn inspect(files: Vec<PathBuf>, engine: Option<PluginEngine>) -> Result<(), Failure> {
    let runtime = engine
        .map(|engine| PluginRuntime::new(engine, Bounds::default()))
        .transpose()
        .map_err(|e| Failure::failed("cannot set up the plugin runtime", e))?;
    // What the engine says of a long compile, on standard error.
    let _logs = runtime.as_ref().map(|_| crate::logging::early());
    let mut problems = 0;
    let mut described = Vec::new();
    for file in &files {
        match read_checked(file).await {
            Ok((wasm, checked)) => {
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
                let Some(runtime) = &runtime else { continue };
                let (_, specs) = tokio::sync::watch::channel(None);
                match runtime
                    .load_read(&unpinned(file), wasm, checked.kind, specs)
                    .await
                {
                    Ok(loaded) => {
                        print_description(&loaded.info);
                        described.push(loaded);
                    }
                    Err(problem) => {
                        eprintln!("error: {}: {problem}", file.display());
                        problems += 1;
                    }
                }
            }
            Err(problem) => {
                eprintln!("error: {}: {problem}", file.display());
                problems += 1;
            }
        }
    }
    // As on one command line: names and options of their own.
    if let Err(clash) = crate::cli::check_loaded(&described) {
        eprintln!("error: {}: {}", clash.path.display(), clash.problem);
        problems += 1;
    }
    refused(problems, files.len())
}

/// What a plugin said of itself (already checked): the lines an operator
/// needs to write its command line.
fn print_description(info: &PluginInfo) {
    println!("  name: {} {}", info.name, info.version);
    if !info.description.is_empty() {
        println!("  description: {}", info.description);
    }
    match info.options.is_empty() {
        true => println!("  options: none"),
        false => println!("  options:"),
    }
    for option in &info.options {
        let default = match &option.default {
            Some(default) => format!(", default {:?}", clip(default, 256)),
            None => String::new(),
        };
        println!(
            "    --{} ({}{default}): {}",
            option.name,
            plugin::option_kind_name(option.kind),
            option.help
        );
    }
    if !info.http_paths.is_empty() {
        println!("  http paths: {}", info.http_paths.join(", "));
    }
}

async fn compile(files: Vec<PathBuf>, cache: CacheArgs) -> Result<(), Failure> {
    let (engine, cache_dir) = cache.engine()?;
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
