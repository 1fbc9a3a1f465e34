//! What a plugin file must be, told before it runs (the header, the
//! exported interface and its version, the imports) and what its
//! description may say once it has described itself.

use sha2::{Digest, Sha256};

use super::super::bindings::{PluginInfo, PluginKind, WIT_PACKAGE, WIT_VERSION};
use super::super::grants;
use super::super::inspect;
use super::error::LoadError;
use crate::text::clip;

/// HTTP paths the daemon keeps for itself; plugins cannot claim them.
const RESERVED_HTTP_PATHS: &[&str] = &[
    "/",
    "/ips",
    "/plugins",
    "/route_info",
    "/vpc",
    "/metrics",
    "/healthz",
    "/readyz",
    "/events",
    "/plan",
    "/rebalance",
];

/// Bounds on what a plugin may say about itself: its description is shown
/// in `--help`, logs and views, so nothing in it is unbounded.
const MAX_NAME: usize = 64;
const MAX_TEXT: usize = 1024;
const MAX_DEFAULT: usize = 4096;
const MAX_OPTIONS: usize = 64;
const MAX_HTTP_PATHS: usize = 16;
const MAX_HTTP_PATH: usize = 256;

/// What is known of a component without compiling it.
pub struct Checked {
    pub digest: String,
    pub outline: inspect::Outline,
    pub kind: PluginKind,
    pub wit_version: String,
}

/// Everything that can be told without compiling, first: a big component
/// takes seconds to compile. Not wasm, not a component, not a plugin, an
/// incompatible version, an import the daemon does not provide.
pub fn precheck(wasm: &[u8]) -> Result<Checked, LoadError> {
    check_header(wasm)?;
    let outline = inspect::outline(wasm).map_err(LoadError::Invalid)?;
    let (kind, wit_version) = plugin_kind(outline.exports.iter().map(String::as_str))?;
    if let Some(problem) = inspect::unsupported_import(&outline.imports) {
        return Err(LoadError::Unsupported(problem));
    }
    Ok(Checked {
        digest: sha256_hex(wasm),
        outline,
        kind,
        wit_version,
    })
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Magic and version/layer: core modules are layer 0, components layer 1.
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    match u32::from_le_bytes(wasm[4..8].try_into().expect("4 bytes")) {
        0x0000_0001 => Err(LoadError::CoreModule),
        0x0001_000d => Ok(()),
        other => Err(LoadError::UnknownWasmVersion(other)),
    }
}

/// Which plugin interface the component exports, and whether its version is
/// one this host speaks (same major; for 0.x, same minor).
fn plugin_kind<'a>(
    exports: impl Iterator<Item = &'a str>,
) -> Result<(PluginKind, String), LoadError> {
    let prefix = format!("{WIT_PACKAGE}/");
    for name in exports {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let kind = match interface {
            "config-source" => PluginKind::ConfigSource,
            "health-check" => PluginKind::HealthCheck,
            "notifier" => PluginKind::Notifier,
            _ => continue,
        };
        let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        let compatible = match (major, minor) {
            (Some(0), Some(minor)) => WIT_VERSION.0 == 0 && minor == WIT_VERSION.1,
            (Some(major), Some(_)) => major == WIT_VERSION.0,
            _ => false,
        };
        if !compatible {
            return Err(LoadError::IncompatibleVersion {
                found: version.to_string(),
            });
        }
        return Ok((kind, version.to_string()));
    }
    Err(LoadError::NotAPlugin)
}

/// What a plugin said of itself, once it has described itself: bounded,
/// printable, unique names; grants it may declare; HTTP paths it may serve.
pub fn check_info(info: &PluginInfo, kind: PluginKind) -> Result<(), LoadError> {
    check_identity(info)
        .and_then(|()| check_options(info))
        .and_then(|()| grants::check_declaration(info, kind))
        .and_then(|()| check_http_paths(info, kind))
        .map_err(LoadError::BadInfo)
}

/// A letter, then letters, digits, '-' or '_': names appear in flags,
/// logs and metrics labels.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

fn check_identity(info: &PluginInfo) -> Result<(), String> {
    if !is_identifier(&info.name) {
        return Err(format!(
            "name {:?} must be a letter, then letters, digits, '-' or '_' (at most {MAX_NAME})",
            clip(&info.name, MAX_NAME)
        ));
    }
    if info.version.len() > MAX_NAME || info.version.contains(char::is_control) {
        return Err(format!(
            "version {:?} must be at most {MAX_NAME} printable characters",
            clip(&info.version, MAX_NAME)
        ));
    }
    if info.description.len() > MAX_TEXT {
        return Err(format!(
            "description is {} bytes; at most {MAX_TEXT}",
            info.description.len()
        ));
    }
    Ok(())
}

fn check_options(info: &PluginInfo) -> Result<(), String> {
    if info.options.len() > MAX_OPTIONS {
        return Err(format!(
            "{} options; at most {MAX_OPTIONS}",
            info.options.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for option in &info.options {
        if !is_identifier(&option.name) {
            return Err(format!(
                "option name {:?} must be a letter, then letters, digits, '-' or '_' (at most {MAX_NAME})",
                clip(&option.name, MAX_NAME)
            ));
        }
        if !seen.insert(option.name.as_str()) {
            return Err(format!("option --{} is declared twice", option.name));
        }
        if option.help.len() > MAX_TEXT {
            return Err(format!(
                "help of option --{} is {} bytes; at most {MAX_TEXT}",
                option.name,
                option.help.len()
            ));
        }
        if option
            .default
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DEFAULT)
        {
            return Err(format!(
                "default of option --{} is longer than {MAX_DEFAULT} bytes",
                option.name
            ));
        }
    }
    Ok(())
}

fn check_http_paths(info: &PluginInfo, kind: PluginKind) -> Result<(), String> {
    if kind != PluginKind::ConfigSource && !info.http_paths.is_empty() {
        return Err(format!("{} plugins cannot serve HTTP paths", kind.name()));
    }
    if info.http_paths.len() > MAX_HTTP_PATHS {
        return Err(format!(
            "{} HTTP paths; at most {MAX_HTTP_PATHS}",
            info.http_paths.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for path in &info.http_paths {
        check_http_path(path)?;
        if !seen.insert(path.as_str()) {
            return Err(format!("HTTP path {path} is declared twice"));
        }
    }
    Ok(())
}

/// Plugin paths are matched exactly, never as patterns: a literal path of
/// URL-safe characters that the daemon does not serve itself.
fn check_http_path(path: &str) -> Result<(), String> {
    let literal = path.len() <= MAX_HTTP_PATH
        && path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c));
    if !literal {
        return Err(format!(
            "HTTP path {:?} must be a literal path: '/' then letters, digits, '/', '-', '.', '_' or '~' (at most {MAX_HTTP_PATH})",
            clip(path, MAX_HTTP_PATH)
        ));
    }
    let reserved_prefix = ["/plugins/", "/hosts/", "/routes/", "/health/"];
    if RESERVED_HTTP_PATHS.contains(&path) || reserved_prefix.iter().any(|p| path.starts_with(p)) {
        return Err(format!("HTTP path {path} is reserved for the daemon"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(matches!(check_header(b"\0asm\x0d\0\x01\0"), Ok(())));
        assert!(matches!(
            check_header(b"\0asm\x0e\0\x01\0"),
            Err(LoadError::UnknownWasmVersion(_))
        ));
    }

    #[test]
    fn versions_are_checked_by_compatibility() {
        let kind = |name: &str| plugin_kind([name].into_iter()).map(|(kind, _)| kind);
        assert_eq!(
            kind("vpcrouter:plugin/config-source@0.1.0").unwrap(),
            PluginKind::ConfigSource
        );
        assert_eq!(
            kind("vpcrouter:plugin/config-source@0.1.7").unwrap(),
            PluginKind::ConfigSource
        );
        assert_eq!(
            kind("vpcrouter:plugin/health-check@0.1.0").unwrap(),
            PluginKind::HealthCheck
        );
        assert!(matches!(
            kind("vpcrouter:plugin/config-source@0.2.0"),
            Err(LoadError::IncompatibleVersion { .. })
        ));
        assert!(matches!(
            kind("vpcrouter:plugin/config-source@1.0.0"),
            Err(LoadError::IncompatibleVersion { .. })
        ));
        assert!(matches!(
            kind("wasi:cli/run@0.2.0"),
            Err(LoadError::NotAPlugin)
        ));
    }
}
