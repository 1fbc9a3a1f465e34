//! Why a plugin file was not loaded: one line each, naming what is wrong.

use super::super::bindings::{PluginKind, WIT_DIR, WIT_PACKAGE, WIT_VERSION, WIT_VERSION_TEXT};
use super::super::compile::CompileError;
use super::super::grants::OptionError;
use super::super::instance::CallError;
use crate::read::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] ReadError),
    #[error("not a WebAssembly file")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component; build it for wasm32-wasip2 (see PLUGINS.md)"
    )]
    CoreModule,
    #[error("unsupported WebAssembly binary version {0:#x}")]
    UnknownWasmVersion(u32),
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("{0}")]
    Compile(CompileError),
    #[error(
        "not a vpcrouter plugin: it exports no {WIT_PACKAGE}/* interface; build it for the \
         config-plugin or health-plugin world of {WIT_DIR} (`vpcrouter plugin new` starts one)"
    )]
    NotAPlugin,
    #[error(
        "is a {found}, but a {expected} is needed here: give it with {}, or build it for the {} world",
        found.flag(),
        expected.world()
    )]
    WrongKind {
        found: PluginKind,
        expected: PluginKind,
    },
    #[error(
        "built against {WIT_PACKAGE}@{found}; this host ({WIT_PACKAGE}@{WIT_VERSION_TEXT}) loads plugins built against {}.{}.x",
        WIT_VERSION.0,
        WIT_VERSION.1
    )]
    IncompatibleVersion { found: String },
    #[error(
        "does not fit the {WIT_PACKAGE} contract: {0} (build it against {WIT_DIR}, see PLUGINS.md)"
    )]
    Link(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("bad plugin description: {0}")]
    BadInfo(String),
    #[error("refused its options: {0}")]
    InitRefused(String),
    #[error("option --{option}: {problem}")]
    BadOption { option: String, problem: String },
    #[error(
        "is pinned to sha256 {pinned}, but its sha256 is {found}; if this is the version \
         you mean to run, pin it (--plugin-sha256 FILE_NAME={found} or PATH#sha256={found})"
    )]
    NotPinned { pinned: String, found: String },
}

impl From<CompileError> for LoadError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Invalid(problem) => LoadError::Invalid(problem),
            other => LoadError::Compile(other),
        }
    }
}

impl From<OptionError> for LoadError {
    fn from(e: OptionError) -> Self {
        LoadError::BadOption {
            option: e.option,
            problem: e.problem,
        }
    }
}
