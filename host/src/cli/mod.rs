//! The command line: the daemon's own flags (old and new forms) plus the
//! options the chosen plugin declares, which are only known once the plugin
//! is loaded. So parsing is two steps: [`peek`] finds the plugin and plugin
//! directory among the raw arguments, then [`command`] builds the full clap
//! command with the plugin's options under their own heading.

mod flags;
mod peek;
mod plugin_options;

pub use flags::{Cli, EtcdUrl, LogFormat, Output, RouteMode, parse_call_timeout};
pub use peek::{Peek, peek};
pub use plugin_options::{PluginOptions, check_loaded, command, split};
