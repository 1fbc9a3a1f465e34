//! Guest SDK for vpcrouter plugins.
//!
//! A config-source plugin implements [`ConfigSource`] and calls
//! [`export_config_source!`]; a health-check plugin implements
//! [`HealthCheck`] and calls [`export_health_check!`]; a notifier
//! implements [`Notifier`] and calls [`export_notifier!`]. Both build with
//! `cargo build --target wasm32-wasip2 --release`. See PLUGINS.md.

mod bindings;
pub mod spec;
pub mod tracker;

pub use bindings::config::vpcrouter::plugin::types::{
    Event, HealthState, HostHealth, HttpRequest, HttpResponse, OptionKind, OptionSpec, PluginInfo,
    Route,
};
pub use bindings::config::vpcrouter::plugin::{daemon, files, log, outbound, timers};
pub use bindings::health::vpcrouter::plugin::{probes, verdicts};
pub use bindings::notifier::exports::vpcrouter::plugin::notifier::{Batch, Notice};

#[doc(hidden)]
pub use bindings::config as __config_bindings;
#[doc(hidden)]
pub use bindings::health as __health_bindings;
#[doc(hidden)]
pub use bindings::notifier as __notifier_bindings;

/// A whole route spec: what `on-event` and `handle-http` return.
pub type RouteSpec = Vec<Route>;

/// The options the operator gave (defaults filled in by the host).
#[derive(Debug, Clone, Default)]
pub struct Options(Vec<(String, String)>);

impl Options {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The value of option `name`, if it was given or has a default.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required option; the host enforces `required`, so a
    /// missing one is reported rather than panicking.
    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("option --{name} is required"))
    }

    /// A duration in seconds (fractions allowed, e.g. `0.2`), as whole
    /// milliseconds; `None` if the option has no value.
    pub fn millis(&self, name: &str) -> Result<Option<u32>, String> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        value
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .map(|s| Some(((s * 1000.0).round() as u32).max(1)))
            .ok_or_else(|| format!("--{name} {value:?}: expected seconds, e.g. 2 or 0.2"))
    }
}

/// The longest probe timeout the host runs; longer ones are cut to it.
pub const MAX_PROBE_TIMEOUT_MS: u32 = 5_000;

impl Options {
    /// A probe timeout option in seconds: by default the lesser of 1 s and
    /// `interval_ms`, and never longer than the host's
    /// [`MAX_PROBE_TIMEOUT_MS`] (a longer one is refused rather than
    /// silently cut).
    pub fn probe_timeout(&self, name: &str, interval_ms: u32) -> Result<u32, String> {
        match self.millis(name)? {
            None => Ok(interval_ms.min(1000)),
            Some(ms) if ms <= MAX_PROBE_TIMEOUT_MS => Ok(ms),
            Some(_) => Err(format!(
                "--{name} {:?}: at most {} s (the host's longest probe)",
                self.get(name).unwrap_or_default(),
                MAX_PROBE_TIMEOUT_MS / 1000
            )),
        }
    }

    /// The same option for a probe round: given, a fixed timeout; not
    /// given, adaptive (a few of each host's measured round trips, at least
    /// 50 ms) up to the lesser of 1 s and `interval_ms`, so that a silent
    /// host is known within tens of milliseconds.
    pub fn probe_round_timeout(
        &self,
        name: &str,
        interval_ms: u32,
    ) -> Result<probes::ProbeTimeout, String> {
        let ms = self.probe_timeout(name, interval_ms)?;
        Ok(match self.get(name) {
            Some(_) => probes::ProbeTimeout::Fixed(ms),
            None => probes::ProbeTimeout::Adaptive(ms),
        })
    }
}

impl OptionSpec {
    /// A text option with no default.
    pub fn text(name: &str, help: &str) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            default: None,
            required: false,
            kind: OptionKind::Text,
        }
    }

    /// An option naming a file the plugin may read (the grant).
    pub fn file(name: &str, help: &str) -> Self {
        Self {
            kind: OptionKind::File,
            ..Self::text(name, help)
        }
    }

    /// An option of another kind: a flag, or part of the outside endpoint
    /// the plugin may reach (`EndpointHost`, `EndpointPort`, `TlsCa`,
    /// `TlsCert`, `TlsKey`; see `outbound`).
    pub fn of_kind(name: &str, help: &str, kind: OptionKind) -> Self {
        Self {
            kind,
            ..Self::text(name, help)
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn default_value(mut self, value: &str) -> Self {
        self.default = Some(value.into());
        self
    }
}

impl HttpResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }
}

/// A config-source plugin: produces complete route specs.
///
/// One value of `Self` lives per plugin instance: `init` creates it with the
/// operator's options, the other methods get it mutably. A restart after a
/// trap creates a fresh one.
pub trait ConfigSource: Sized + 'static {
    /// Name, version, options, HTTP paths. Must not depend on options.
    fn describe() -> PluginInfo;

    /// Check the options and set up. An error stops the daemon at start.
    fn init(options: Options) -> Result<Self, String>;

    /// Return `Some(spec)` to replace the spec in force, `None` for "no
    /// change", or an error to report.
    fn on_event(&mut self, event: Event) -> Result<Option<RouteSpec>, String>;

    /// A request to one of the plugin's `http_paths`. The default answers 404.
    fn handle_http(&mut self, request: HttpRequest) -> (HttpResponse, Option<RouteSpec>) {
        let body = format!("no handler for {}", request.path);
        (HttpResponse::text(404, &body), None)
    }
}

/// A health-check plugin: reports the health of router hosts.
///
/// The host calls `check` once per round with the working set (every host
/// named in the route spec). Ask for rounds with [`timers::set_timer`] in
/// `init`; probe through [`probes`], which the host runs concurrently.
pub trait HealthCheck: Sized + 'static {
    fn describe() -> PluginInfo;

    /// Check the options and set up. An error stops the daemon at start.
    fn init(options: Options) -> Result<Self, String>;

    /// One round: the state of each host the plugin has an opinion on.
    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String>;
}

/// A notifier plugin: passes batches of the daemon's notices on. One value
/// lives per instance.
pub trait Notifier: Sized + 'static {
    fn describe() -> PluginInfo;
    fn init(options: Options) -> Result<Self, String>;

    /// Pass one batch on; an error makes the daemon try again later.
    fn notify(&mut self, batch: Batch) -> Result<(), String>;
}

/// Log through the host, with the plugin's name attached by the host.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::$level, &format!($($arg)*))
    };
}

/// Export a [`ConfigSource`] implementation as the plugin's component exports.
#[macro_export]
macro_rules! export_config_source {
    ($plugin:ty) => {
        mod __vpcrouter_export {
            use super::*;
            use $crate::__config_bindings::exports::vpcrouter::plugin::config_source as wit;

            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$plugin>> =
                    const { ::std::cell::RefCell::new(None) };
            }

            fn with_state<R>(f: impl FnOnce(&mut $plugin) -> R) -> Result<R, String> {
                STATE.with_borrow_mut(|state| match state.as_mut() {
                    Some(plugin) => Ok(f(plugin)),
                    None => Err("plugin called before init".to_string()),
                })
            }

            pub struct Export;

            impl wit::Guest for Export {
                fn describe() -> wit::PluginInfo {
                    <$plugin as $crate::ConfigSource>::describe()
                }

                fn init(options: wit::Options) -> Result<(), String> {
                    let plugin = <$plugin as $crate::ConfigSource>::init(
                        $crate::Options::new(options),
                    )?;
                    STATE.set(Some(plugin));
                    Ok(())
                }

                fn on_event(event: wit::Event) -> Result<Option<wit::RouteSpec>, String> {
                    with_state(|p| $crate::ConfigSource::on_event(p, event))?
                }

                fn handle_http(
                    request: wit::HttpRequest,
                ) -> (wit::HttpResponse, Option<wit::RouteSpec>) {
                    with_state(|p| $crate::ConfigSource::handle_http(p, request))
                        .unwrap_or_else(|e| ($crate::HttpResponse::text(503, &e), None))
                }
            }

            $crate::__config_bindings::export!(Export with_types_in $crate::__config_bindings);
        }
    };
}

/// Export a [`HealthCheck`] implementation as the plugin's component exports.
#[macro_export]
macro_rules! export_health_check {
    ($plugin:ty) => {
        mod __vpcrouter_export {
            use super::*;
            use $crate::__health_bindings::exports::vpcrouter::plugin::health_check as wit;

            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$plugin>> =
                    const { ::std::cell::RefCell::new(None) };
            }

            pub struct Export;

            impl wit::Guest for Export {
                fn describe() -> wit::PluginInfo {
                    <$plugin as $crate::HealthCheck>::describe()
                }

                fn init(options: wit::Options) -> Result<(), String> {
                    let plugin =
                        <$plugin as $crate::HealthCheck>::init($crate::Options::new(options))?;
                    STATE.set(Some(plugin));
                    Ok(())
                }

                fn check(hosts: Vec<String>) -> Result<Vec<wit::HostHealth>, String> {
                    STATE.with_borrow_mut(|state| match state.as_mut() {
                        Some(plugin) => $crate::HealthCheck::check(plugin, hosts),
                        None => Err("plugin called before init".to_string()),
                    })
                }
            }

            $crate::__health_bindings::export!(Export with_types_in $crate::__health_bindings);
        }
    };
}

/// Export a [`Notifier`] implementation as the plugin's component exports.
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ty) => {
        mod __vpcrouter_export {
            use super::*;
            use $crate::__notifier_bindings::exports::vpcrouter::plugin::notifier as wit;

            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$plugin>> =
                    const { ::std::cell::RefCell::new(None) };
            }

            pub struct Export;

            impl wit::Guest for Export {
                fn describe() -> wit::PluginInfo {
                    <$plugin as $crate::Notifier>::describe()
                }

                fn init(options: wit::Options) -> Result<(), String> {
                    let plugin =
                        <$plugin as $crate::Notifier>::init($crate::Options::new(options))?;
                    STATE.set(Some(plugin));
                    Ok(())
                }

                fn notify(batch: wit::Batch) -> Result<(), String> {
                    STATE.with_borrow_mut(|state| match state.as_mut() {
                        Some(plugin) => $crate::Notifier::notify(plugin, batch),
                        None => Err("plugin called before init".to_string()),
                    })
                }
            }

            $crate::__notifier_bindings::export!(Export with_types_in $crate::__notifier_bindings);
        }
    };
}
