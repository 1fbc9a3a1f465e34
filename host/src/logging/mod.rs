//! Structured logs (tracing) to standard output or a file, as text or as
//! JSON lines, bounded: a plugin's own lines (what it logs and prints) are
//! rate-limited per plugin, the daemon's lines per call site (and per
//! plugin they name, so a noisy plugin cannot use up the budget of the
//! lines that report it), and no line is longer than [`MAX_LINE`]. What is
//! suppressed is counted and reported every [`REPORT_EVERY`]. A line is
//! always one line: control characters in anything it quotes (a plugin's
//! message, an error, a file name) are escaped.

mod budget;
mod format;

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use budget::RateLimit;
use format::{JsonLines, OneLine};

pub use budget::{PLUGIN_BURST, PLUGIN_LINES, PLUGIN_RATE, REPORT_EVERY, SITE_BURST, SITE_RATE};
pub use format::MAX_LINE;

/// Where logs go, how they are written, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub target: LogTarget,
    pub format: LogFormat,
    pub verbose: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// `-` with `--dry-run`: standard output carries the plan.
    Stderr,
    File(PathBuf),
}

/// `VPCROUTER_LOG` (tracing's filter syntax) overrides the level `--verbose`
/// chooses.
fn filter(verbose: bool) -> EnvFilter {
    EnvFilter::try_from_env("VPCROUTER_LOG").unwrap_or_else(|_| {
        EnvFilter::new(if verbose {
            "info,vpcrouter=debug"
        } else {
            "info"
        })
    })
}

pub fn init(settings: &Logging) -> std::io::Result<()> {
    let limiter = RateLimit::default();
    limiter.report_periodically();
    let registry = tracing_subscriber::registry()
        .with(filter(settings.verbose))
        .with(limiter);
    let terminal = match &settings.target {
        LogTarget::Stdout => std::io::stdout().is_terminal(),
        LogTarget::Stderr => std::io::stderr().is_terminal(),
        LogTarget::File(_) => false,
    };
    // Colour only for a person at a terminal who has not said no.
    let colour = settings.format == LogFormat::Text
        && terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let writer = match &settings.target {
        LogTarget::Stdout => BoxMakeWriter::new(OneLine::new(std::io::stdout, colour)),
        LogTarget::Stderr => BoxMakeWriter::new(OneLine::new(std::io::stderr, colour)),
        LogTarget::File(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            BoxMakeWriter::new(OneLine::new(Mutex::new(file), false))
        }
    };
    let text = tracing_subscriber::fmt::layer().with_target(false);
    match settings.format {
        LogFormat::Text => {
            registry
                .with(text.with_ansi(colour).with_writer(writer))
                .init();
        }
        LogFormat::Json => {
            registry
                .with(text.event_format(JsonLines).with_writer(writer))
                .init();
        }
    }
    Ok(())
}

/// Until the command line is parsed, warnings go to standard error, and
/// what the engine says about a long compile (an author waiting on a big
/// plugin's first load must not think the daemon hung).
pub fn early() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(format!(
            "warn,{}=info",
            crate::plugin::COMPILE_LOG_TARGET
        )))
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_writer(std::io::stderr)
        .finish();
    tracing::subscriber::set_default(subscriber)
}
