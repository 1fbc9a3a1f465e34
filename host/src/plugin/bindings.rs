//! The one place the WIT contract becomes host bindings.

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "config-plugin",
    imports: { default: trappable },
    exports: { default: async },
});

pub use vpcrouter::plugin::types::{
    Event, HttpRequest, HttpResponse, OptionKind, OptionSpec, PluginInfo, Route,
};

/// The WIT package name and version this host implements.
pub const WIT_PACKAGE: &str = "vpcrouter:plugin";
pub const WIT_VERSION: (u64, u64, u64) = (0, 1, 0);
