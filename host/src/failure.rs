//! How a command fails: one error type for the daemon and every
//! subcommand, each kind with one exit code and one way of being reported
//! (the front door, `front`, does the reporting).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Exit code of a bad command line, flag value, file or plugin.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a daemon that could not start or keep running.
pub const EXIT_FAILURE: i32 = 1;

/// Why a command did not do its work: each kind has one exit code and one
/// way of being reported.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// clap's own report: help and version (exit 0) or a bad command line
    /// (exit 2), printed as clap formats it.
    #[error("{0}")]
    CommandLine(clap::Error),
    /// A bad flag value, file or setting: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A plugin file and what is wrong with it: exit 2.
    #[error("{}: {problem}", path.display())]
    Plugin { path: PathBuf, problem: String },
    /// Could not start or keep running: exit 1.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl Failure {
    pub fn plugin(path: &Path, problem: impl std::fmt::Display) -> Self {
        Self::Plugin {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }

    pub fn failed(context: &str, error: impl std::fmt::Display) -> Self {
        Self::Failed(anyhow::anyhow!("{context}: {error:#}"))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::CommandLine(e) => e.exit_code(),
            Self::Usage(_) | Self::Plugin { .. } => EXIT_USAGE,
            Self::Failed(_) => EXIT_FAILURE,
        }
    }

    /// Tell the operator: on stderr, and in the log once it is set up.
    pub fn report(&self) {
        match self {
            Self::CommandLine(e) => {
                let _ = e.print();
            }
            Self::Failed(e) => {
                tracing::error!("{e:#}");
                eprintln!("error: {self}");
            }
            _ => eprintln!("error: {self}"),
        }
    }
}

/// clap's parse of a subcommand's line, its errors as [`Failure`]s.
pub fn parse<T: clap::Parser>(args: &[OsString]) -> Result<T, Failure> {
    T::try_parse_from(args).map_err(Failure::CommandLine)
}
