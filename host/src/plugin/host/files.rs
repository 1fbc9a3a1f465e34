//! The files capability: a plugin reads and watches only the files the
//! operator granted. A read runs on a blocking thread with a timeout, so a
//! file that blocks (a FIFO, a device, a hung network mount) can never stall
//! the daemon or outlive the plugin's call; anything but a regular file (or
//! a symlink to one) is refused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::bindings::config::vpcrouter::plugin::files::Host;
use super::super::instance::HostState;
use super::super::limits::MAX_READS_PER_CALL;
use super::super::text::clip;
use crate::spec::MAX_SPEC_BYTES;

/// Longest a read may take: a local file of at most 1 MiB takes
/// milliseconds; anything slower is stuck.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

impl HostState {
    fn granted_file(&self, path: &str) -> Result<PathBuf, String> {
        self.grants
            .readable_file(path)
            .map(Path::to_path_buf)
            .inspect_err(|e| {
                tracing::warn!(plugin = &*self.plugin, "denied: {}", clip(e, 512));
            })
    }
}

impl Host for HostState {
    async fn read_file(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let granted = match self.granted_file(&path) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        if !self.usage.read() {
            return Ok(Err(format!(
                "{path}: refused: at most {MAX_READS_PER_CALL} reads per call"
            )));
        }
        // At most one read per plugin in flight: a read stuck in the kernel
        // keeps its thread, and a plugin must not pile up more of them.
        if self.reading.swap(true, Ordering::SeqCst) {
            return Ok(Err(format!(
                "{path}: an earlier read of this plugin is still stuck; not starting another"
            )));
        }
        let reading = self.reading.clone();
        let read = tokio::task::spawn_blocking(move || {
            let read = read_regular(&granted);
            reading.store(false, Ordering::SeqCst);
            read
        });
        let answer = match self
            .usage
            .wait(tokio::time::timeout(READ_TIMEOUT, read))
            .await
        {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => Err(format!("the read failed: {e}")),
            Err(_) => Err(format!(
                "no data within {READ_TIMEOUT:?} (is it on a hung mount?)"
            )),
        };
        Ok(answer.map_err(|e| format!("{path}: {e}")))
    }

    async fn watch_file(&mut self, path: String) -> wasmtime::Result<Result<(), String>> {
        // Once per file, however often a plugin asks.
        Ok(self.granted_file(&path).map(|granted| {
            if !self.requests.watches.contains(&granted) {
                self.requests.watches.push(granted);
            }
        }))
    }
}

/// The content of a regular file of at most [`MAX_SPEC_BYTES`]. Opened
/// without blocking (a FIFO with no writer would block the open) and checked
/// by the opened descriptor, so a swap after the check cannot fool it.
fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file; only regular files (or symlinks to one) are read".into());
    }
    if meta.len() > MAX_SPEC_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn too_large() -> String {
    format!("larger than the {MAX_SPEC_BYTES}-byte limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_symlinks_to_them_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spec.json");
        std::fs::write(&file, b"{}").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link).unwrap(), b"{}");
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        let err = read_regular(&fifo).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            read_regular(dir.path())
                .unwrap_err()
                .contains("not a regular file")
        );
        std::fs::write(&file, vec![b' '; MAX_SPEC_BYTES + 1]).unwrap();
        assert!(read_regular(&file).unwrap_err().contains("limit"));
    }
}
