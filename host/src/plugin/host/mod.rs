//! Host implementations of the interfaces plugins import, one per file.

mod daemon;
mod files;
mod log;
mod outbound;
mod probes;
mod timers;
mod verdicts;

pub(super) use files::granted_files_reader;

/// The shared types interface has no functions to implement.
impl super::bindings::config::vpcrouter::plugin::types::Host for super::instance::HostState {}
