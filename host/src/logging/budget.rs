//! The log budget: a token bucket per source of lines (a plugin's own
//! lines, the daemon's lines about a plugin, any other call site), and a
//! report of what was suppressed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

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

/// The target of a plugin's own lines (its log calls, its output): the
/// only lines charged to the plugin's budget.
pub const PLUGIN_LINES: &str = "vpcrouter::plugin_lines";

/// What a line is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// A plugin's own lines ([`PLUGIN_LINES`]), debug or not.
    Plugin {
        name: String,
        debug: bool,
    },
    /// The daemon's lines about a plugin (`plugin = ...`), per call site.
    About {
        plugin: String,
        site: Identifier,
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
            Source::About { .. } | Source::Site(_) => (SITE_RATE, SITE_BURST),
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
                    Source::About { plugin, .. } => format!("the daemon about plugin {plugin}"),
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
    pub(super) fn report_periodically(&self) {
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
            self.0 = Some(crate::text::clip(&format!("{value:?}"), 64).into_owned());
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
        let source = match (plugin.0, meta.target() == PLUGIN_LINES) {
            (Some(name), true) => Source::Plugin {
                name,
                debug: *meta.level() >= Level::DEBUG,
            },
            (Some(plugin), false) => Source::About {
                plugin,
                site: meta.callsite(),
            },
            (None, _) => Source::Site(meta.callsite()),
        };
        self.admit(source, meta.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

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

    /// Counts the events that get through, by message.
    #[derive(Clone, Default)]
    struct Passed(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Passed {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut message = Message::default();
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }

    /// A plugin's own lines use up its budget, not the budget of the
    /// daemon's lines about it (a denied read, a spec rejected): those
    /// still get through, counted per call site.
    #[test]
    fn a_noisy_plugin_cannot_hide_the_daemons_lines_about_it() {
        let limiter = RateLimit::default();
        let passed = Passed::default();
        let subscriber = tracing_subscriber::registry()
            .with(limiter.clone())
            .with(passed.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                tracing::info!(target: PLUGIN_LINES, plugin = "noisy", "spam");
            }
            tracing::warn!(plugin = "noisy", "denied: /etc/shadow");
        });
        let passed = passed.0.lock().unwrap().clone();
        assert!(passed.iter().any(|m| m.contains("denied")), "{passed:?}");
        let spam = passed.iter().filter(|m| m.contains("spam")).count();
        assert!(spam <= PLUGIN_BURST as usize + 5, "{spam}");
        let report = limiter.take_suppressed();
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(report[0].0, "plugin noisy");
    }

    #[derive(Default)]
    struct Message(String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
}
