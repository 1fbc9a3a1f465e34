//! The bundled plugins this binary was built with. A copy on disk (an
//! install's `PREFIX/lib/vpcrouter/plugins`, `--plugin-dir`) is what
//! `-m NAME` loads; a binary with none beside it (`target/debug`, a copied
//! binary) still runs its own: the built-in bytes are written once to the
//! state folder, which must be the daemon's own as the compile cache's
//! key's is, and loaded from there like any file (digest, trust, pins and
//! reload all work on files).

use std::path::{Path, PathBuf};

use super::cache::{CacheError, private_dir, write_private};
use crate::read::read_regular;

/// (name, SHA-256, bytes) of every bundled plugin, recorded at build time;
/// a build before `make plugins` has none.
pub(super) const BUNDLED: &[(&str, &str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The names of the plugins built into this binary.
pub fn built_in_names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(name, _, _)| *name).collect()
}

/// `NAME.wasm` from this binary, as a file in `state_dir/bundled` (written
/// when missing or different); `None` when the binary has no such plugin.
pub fn built_in(name: &str, state_dir: &Path) -> Option<Result<PathBuf, CacheError>> {
    let (_, _, bytes) = BUNDLED.iter().find(|(known, _, _)| *known == name)?;
    Some(write_copy(name, bytes, &state_dir.join("bundled")))
}

fn write_copy(name: &str, bytes: &[u8], dir: &Path) -> Result<PathBuf, CacheError> {
    private_dir(dir)?;
    let path = dir.join(format!("{name}.wasm"));
    let io = |source| CacheError::Io {
        path: path.clone(),
        source,
    };
    let same = read_regular(&path, bytes.len() as u64).is_ok_and(|on_disk| on_disk == bytes);
    if !same {
        let staged = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        write_private(&staged, bytes).map_err(io)?;
        std::fs::rename(&staged, &path).map_err(io)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_in_copy_is_written_once_and_mended_when_changed() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("bundled");
        let path = write_copy("demo", b"bytes", &dir).unwrap();
        assert_eq!(path, dir.join("demo.wasm"));
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(write_copy("demo", b"bytes", &dir).unwrap(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
        std::fs::write(&path, b"changed").unwrap();
        write_copy("demo", b"bytes", &dir).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"bytes");
    }
}
