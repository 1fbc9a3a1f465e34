//! The plugin runtime: loading and validating components, the sandboxed
//! store each plugin runs in, the host interfaces it may import, and the
//! supervisor that keeps it running.

mod bindings;
mod bundled;
mod cache;
mod compile;
mod engine;
mod function_cache;
#[cfg(test)]
mod fuzz;
mod grants;
mod host;
mod inspect;
mod instance;
mod limits;
mod load;
mod output;
mod probe_round;
pub mod reload;
mod supervisor;
mod watch;

pub(crate) use bindings::wit_version;
pub use bindings::{HttpRequest, HttpResponse, OptionKind, OptionSpec, PluginInfo, PluginKind};
pub use bundled::{built_in, built_in_names};
pub use cache::{CACHE_CAP, CacheError, CompileCache};
pub use compile::{CHILD_COMMAND, CompileError, Compiler, Tier, child_main};
pub use engine::{COMPILE_LOG_TARGET, PluginEngine, default_cache_dir, default_state_dir};
pub use grants::{GrantRecord, Trust, kind_name as option_kind_name};
pub use instance::{CallError, InstanceFactory, PluginInstance};
pub use limits::Bounds;
pub use load::{
    Checked, CompileReport, ConfiguredPlugin, IdentityError, LoadError, LoadedPlugin, Origin,
    PluginRuntime, check_identities, plugin_files, precheck,
};
pub use supervisor::{
    HttpCall, PluginHandle, PluginState, PluginStatus, Reload, Role, RoundStats, Running, spawn,
};
