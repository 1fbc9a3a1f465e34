//! Structured logs (tracing) to standard output or a file, bounded: what a
//! plugin can make the daemon log is rate-limited per plugin, every other
//! line per call site, and no line is longer than [`MAX_LINE`]. What is
//! suppressed is counted and reported every [`REPORT_EVERY`].

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogTarget;

/// Longest line written; longer ones are cut and marked.
pub const MAX_LINE: usize = 8 << 10;
/// Lines one plugin may cause, per second and in a burst, for each of two
/// classes (debug and trace; info and above).
pub const PLUGIN_RATE: f64 = 5.0;
pub const PLUGIN_BURST: f64 = 50.0;
/// Lines one call site may write when no plugin is named.
pub const SITE_RATE: f64 = 20.0;
pub const SITE_BURST: f64 = 500.0;
/// How often suppressed lines are reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The target of the limiter's own reports (never limited).
const REPORT_TARGET: &str = "vpcrouter::log_budget";

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
    let limiter = RateLimit::default();
    limiter.report_periodically();
    let registry = tracing_subscriber::registry()
        .with(filter(verbose))
        .with(limiter);
    let format = tracing_subscriber::fmt::layer().with_target(false);
    let (writer, terminal) = match target {
        LogTarget::Stdout => (
            BoxMakeWriter::new(Clipped(std::io::stdout)),
            std::io::stdout().is_terminal(),
        ),
        LogTarget::Stderr => (
            BoxMakeWriter::new(Clipped(std::io::stderr)),
            std::io::stderr().is_terminal(),
        ),
        LogTarget::File(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            (BoxMakeWriter::new(Clipped(Mutex::new(file))), false)
        }
    };
    registry
        .with(format.with_ansi(terminal).with_writer(writer))
        .init();
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

/// What a line is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// Lines naming a plugin (`plugin = ...`), debug or not.
    Plugin {
        name: String,
        debug: bool,
    },
    Site(Identifier),
}

/// A token bucket per source, and what was suppressed since the last report.
#[derive(Clone, Default)]
pub struct RateLimit(Arc<Mutex<HashMap<Source, Bucket>>>);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    /// Where a suppressed line came from, for the report.
    example: &'static str,
}

impl RateLimit {
    fn admit(&self, source: Source, example: &'static str) -> bool {
        let (rate, burst) = match source {
            Source::Plugin { .. } => (PLUGIN_RATE, PLUGIN_BURST),
            Source::Site(_) => (SITE_RATE, SITE_BURST),
        };
        let mut buckets = self.0.lock().expect("log budget lock");
        let bucket = buckets.entry(source).or_insert_with(|| Bucket {
            tokens: burst,
            refilled: Instant::now(),
            suppressed: 0,
            example,
        });
        let now = Instant::now();
        let refill = now.duration_since(bucket.refilled).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            bucket.suppressed += 1;
            bucket.example = example;
            false
        }
    }

    /// (source, suppressed, example) since the last call, resetting counts.
    fn take_suppressed(&self) -> Vec<(String, u64, &'static str)> {
        let mut buckets = self.0.lock().expect("log budget lock");
        buckets
            .iter_mut()
            .filter(|(_, bucket)| bucket.suppressed > 0)
            .map(|(source, bucket)| {
                let shown = match source {
                    Source::Plugin { name, .. } => format!("plugin {name}"),
                    Source::Site(_) => "one call site".to_string(),
                };
                (
                    shown,
                    std::mem::take(&mut bucket.suppressed),
                    bucket.example,
                )
            })
            .collect()
    }

    /// Report suppressed lines every [`REPORT_EVERY`], from a thread of its
    /// own (the runtime may be busy or gone).
    fn report_periodically(&self) {
        let limiter = self.clone();
        let spawned = std::thread::Builder::new()
            .name("log-budget".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(REPORT_EVERY);
                    for (source, suppressed, example) in limiter.take_suppressed() {
                        tracing::warn!(
                            target: REPORT_TARGET,
                            suppressed,
                            from = source,
                            example,
                            "log lines suppressed (over the log rate limit)"
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: suppressed log lines will not be reported: {e}");
        }
    }
}

/// Finds the `plugin` field of an event.
#[derive(Default)]
struct PluginField(Option<String>);

impl Visit for PluginField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "plugin" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "plugin" && self.0.is_none() {
            self.0 = Some(crate::plugin::clip(&format!("{value:?}"), 64).into_owned());
        }
    }
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() == REPORT_TARGET {
            return true;
        }
        let mut plugin = PluginField::default();
        event.record(&mut plugin);
        let source = match plugin.0 {
            Some(name) => Source::Plugin {
                name,
                debug: *meta.level() >= Level::DEBUG,
            },
            None => Source::Site(meta.callsite()),
        };
        self.admit(source, meta.name())
    }
}

/// A writer that cuts every line at [`MAX_LINE`] bytes (the formatter
/// writes one event in one `write_all`).
struct Clipped<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Clipped<W> {
    type Writer = ClippedLine<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ClippedLine(self.0.make_writer())
    }
}

struct ClippedLine<W>(W);

impl<W: Write> Write for ClippedLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= MAX_LINE {
            return self.0.write(buf);
        }
        let mut cut = buf[..MAX_LINE].to_vec();
        cut.extend_from_slice(format!("… (line of {} bytes cut)\n", buf.len()).as_bytes());
        self.0.write_all(&cut)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_has_its_own_budget_and_suppressed_lines_are_counted() {
        let limiter = RateLimit::default();
        let noisy = || Source::Plugin {
            name: "noisy".into(),
            debug: false,
        };
        let admitted = (0..1000)
            .filter(|_| limiter.admit(noisy(), "event"))
            .count();
        assert!(admitted >= PLUGIN_BURST as usize && admitted < PLUGIN_BURST as usize + 5);
        let quiet = Source::Plugin {
            name: "quiet".into(),
            debug: false,
        };
        assert!(limiter.admit(quiet, "event"));
        let report = limiter.take_suppressed();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].0, "plugin noisy");
        assert_eq!(report[0].1, 1000 - admitted as u64);
        assert!(limiter.take_suppressed().is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let mut out = Vec::new();
        let line = vec![b'x'; MAX_LINE * 3];
        ClippedLine(&mut out).write_all(&line).unwrap();
        assert!(out.len() < MAX_LINE + 64);
        assert!(String::from_utf8_lossy(&out).ends_with("cut)\n"));
    }
}
