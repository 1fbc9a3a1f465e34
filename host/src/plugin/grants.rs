//! Capabilities granted to a plugin by the operator's options, checked in
//! one place. A denied request is an error the plugin sees (and a log line),
//! never a trap.

use std::path::{Path, PathBuf};

/// What one plugin may touch beyond its own memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Files the plugin may read and watch: the values of its options of
    /// kind `file`, as absolute paths.
    pub readable_files: Vec<PathBuf>,
}

impl Grants {
    /// The granted file `requested` names, or why it is refused. Paths are
    /// compared lexically after making them absolute: a plugin cannot create
    /// links, and `..` in a request never matches a granted path.
    pub fn readable_file(&self, requested: &str) -> Result<&Path, String> {
        let absolute = std::path::absolute(requested).map_err(|e| format!("{requested}: {e}"))?;
        self.readable_files
            .iter()
            .find(|granted| **granted == absolute)
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                format!("{requested}: access denied (not a file granted to this plugin)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_granted_file_is_readable() {
        let grants = Grants {
            readable_files: vec![PathBuf::from("/etc/vpcrouter/spec.json")],
        };
        assert!(grants.readable_file("/etc/vpcrouter/spec.json").is_ok());
        for denied in [
            "/etc/passwd",
            "/etc/vpcrouter/../passwd",
            "/etc/vpcrouter/spec.json/..",
            "/etc/vpcrouter",
            "spec.json",
        ] {
            let err = grants.readable_file(denied).unwrap_err();
            assert!(err.contains("access denied"), "{denied}: {err}");
        }
    }
}
