//! The one place the WIT contract becomes host bindings: one module per
//! world, the health world reusing the interfaces it shares with the config
//! world (so one host implementation serves both).

/// The contract version this host implements, as text: the one place it is
/// written, but for the two `bindgen!` paths below (they take literals
/// only; the build fails when they disagree with the WIT they name).
macro_rules! wit_version {
    () => {
        "0.1.5"
    };
}
pub(crate) use wit_version;

pub mod config {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.5",
        world: "config-plugin",
        imports: {
            "vpcrouter:plugin/outbound": async | trappable,
            "vpcrouter:plugin/files": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

pub mod health {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.5",
        world: "health-plugin",
        imports: {
            "vpcrouter:plugin/probes": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "vpcrouter:plugin/types": super::config::vpcrouter::plugin::types,
            "vpcrouter:plugin/log": super::config::vpcrouter::plugin::log,
            "vpcrouter:plugin/timers": super::config::vpcrouter::plugin::timers,
            "vpcrouter:plugin/probes.probe-round": crate::plugin::probe_round::ProbeRound,
            "vpcrouter:plugin/probes.http-round": crate::plugin::probe_round::HttpRound,
        },
    });
}

pub mod notifier {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.5",
        world: "notifier-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "vpcrouter:plugin/types": super::config::vpcrouter::plugin::types,
            "vpcrouter:plugin/log": super::config::vpcrouter::plugin::log,
            "vpcrouter:plugin/files": super::config::vpcrouter::plugin::files,
            "vpcrouter:plugin/outbound": super::config::vpcrouter::plugin::outbound,
        },
    });
}

pub use config::vpcrouter::plugin::types::{
    Event, HealthState, HostHealth, HttpRequest, HttpResponse, OptionKind, OptionSpec, PluginInfo,
    Route,
};
pub use config::{ConfigPlugin, ConfigPluginPre};
pub use health::{HealthPlugin, HealthPluginPre};
pub use notifier::exports::vpcrouter::plugin::notifier::{Batch as NotifierBatch, Notice};
pub use notifier::{NotifierPlugin, NotifierPluginPre};

/// The WIT package name and version this host implements.
pub const WIT_PACKAGE: &str = "vpcrouter:plugin";
pub const WIT_VERSION: (u64, u64, u64) = (0, 1, 5);
/// [`WIT_VERSION`] as text, e.g. for messages.
pub const WIT_VERSION_TEXT: &str = wit_version!();
/// The contract's folder in the sources, for messages.
pub const WIT_DIR: &str = concat!("wit/v", wit_version!());

/// The kinds of plugin, told apart by the interface they export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    ConfigSource,
    HealthCheck,
    /// Since 0.1.5: passes the daemon's notices on.
    Notifier,
}

impl PluginKind {
    /// The WIT world a plugin of this kind is built for.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::ConfigSource => "config-plugin",
            PluginKind::HealthCheck => "health-plugin",
            PluginKind::Notifier => "notifier-plugin",
        }
    }

    /// The flag that loads a plugin of this kind by path.
    pub fn flag(self) -> &'static str {
        match self {
            PluginKind::ConfigSource => "--mode-plugin",
            PluginKind::HealthCheck => "--health-plugin",
            PluginKind::Notifier => "--notify-plugin",
        }
    }

    /// The interface it exports, as views and messages name the kind.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::ConfigSource => "config-source",
            PluginKind::HealthCheck => "health-check",
            PluginKind::Notifier => "notifier",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} plugin", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_written_alike() {
        let (major, minor, patch) = WIT_VERSION;
        assert_eq!(WIT_VERSION_TEXT, format!("{major}.{minor}.{patch}"));
    }
}
