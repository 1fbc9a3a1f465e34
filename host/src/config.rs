//! The daemon's configuration, validated once from the command line: the
//! old form (`-m configfile -f spec.json`) and the new one
//! (`--mode-plugin plugins/configfile.wasm --file spec.json`) give the same
//! `Config`.

use ipnet::IpNet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{self, Cli, Peek};
use crate::plugin::PluginInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: PluginChoice,
    pub region: Option<String>,
    pub vpc: Option<String>,
    pub log: LogTarget,
    pub verbose: bool,
    pub listen: ListenAddr,
    pub ignore_routes: Vec<IpNet>,
    /// `None`: no periodic recheck.
    pub route_recheck_interval: Option<Duration>,
    pub plugin_cache_dir: Option<PathBuf>,
}

/// A plugin file and the options the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginChoice {
    pub path: PathBuf,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("a config-source plugin is required: --mode-plugin PATH or -m NAME")]
    NoMode,
    #[error("-m {name}: no bundled plugin of that name (looked for {looked})")]
    UnknownMode { name: String, looked: String },
}

/// The plugin file the peeked arguments name, resolving `-m NAME` to
/// `NAME.wasm` in the first plugin directory that has it.
pub fn mode_plugin_path(peek: &Peek) -> Result<PathBuf, ConfigError> {
    if let Some(path) = &peek.mode_plugin {
        return Ok(absolute(Path::new(path)));
    }
    let name = peek.mode.as_deref().ok_or(ConfigError::NoMode)?;
    let dirs = plugin_dirs(peek.plugin_dir.as_deref());
    let candidates: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(format!("{name}.wasm")))
        .collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .map(|c| absolute(c))
        .ok_or_else(|| ConfigError::UnknownMode {
            name: name.to_string(),
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `--plugin-dir`, else `$VPCROUTER_PLUGIN_DIR`, else `plugins/` next to the
/// binary and `./plugins`.
fn plugin_dirs(given: Option<&str>) -> Vec<PathBuf> {
    if let Some(dir) = given {
        return vec![PathBuf::from(dir)];
    }
    if let Some(dir) = std::env::var_os("VPCROUTER_PLUGIN_DIR") {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
    }
    dirs.push(PathBuf::from("plugins"));
    dirs
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Config {
    /// Parse the full command line once the mode plugin is known.
    /// `Err` is clap's error (it prints itself and exits 2; 0 for --help).
    pub fn parse(
        args: &[OsString],
        mode_path: PathBuf,
        plugin: &PluginInfo,
    ) -> Result<Self, clap::Error> {
        let matches = cli::command(Some(plugin)).try_get_matches_from(args)?;
        let (cli, options) = cli::split(&matches, Some(plugin))?;
        Ok(Self::from_cli(cli, mode_path, options))
    }

    fn from_cli(cli: Cli, mode_path: PathBuf, options: Vec<(String, String)>) -> Self {
        let plugin_cache_dir = if cli.no_plugin_cache {
            None
        } else {
            cli.plugin_cache_dir
                .or_else(crate::plugin::default_cache_dir)
        };
        Self {
            mode: PluginChoice {
                path: mode_path,
                options,
            },
            region: cli.region,
            vpc: cli.vpc,
            log: match cli.logfile.as_str() {
                "-" => LogTarget::Stdout,
                file => LogTarget::File(PathBuf::from(file)),
            },
            verbose: cli.verbose,
            listen: ListenAddr {
                host: cli.address,
                port: cli.port,
            },
            ignore_routes: cli.ignore_routes,
            route_recheck_interval: (cli.route_recheck_interval > 0)
                .then(|| Duration::from_secs(cli.route_recheck_interval)),
            plugin_cache_dir,
        }
    }
}
