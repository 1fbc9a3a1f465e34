//! Structured logs (tracing) to standard output or a file.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;

use crate::config::LogTarget;

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

pub fn init(target: &LogTarget, verbose: bool) -> std::io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(verbose))
        .with_target(false);
    match target {
        LogTarget::Stdout => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        LogTarget::File(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
    }
    Ok(())
}

/// Until the command line is parsed, warnings go to standard error.
pub fn early() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .finish();
    tracing::subscriber::set_default(subscriber)
}
