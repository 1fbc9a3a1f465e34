//! The files capability: a plugin reads and watches only the files the
//! operator granted. Reads go through the plugin's own [`Reader`]: regular
//! files only, at most [`MAX_SPEC_BYTES`], within [`READ_TIMEOUT`], off the
//! daemon's workers, and at most one unfinished at a time, so a file that
//! blocks (a FIFO, a device, a hung network mount) can never stall the
//! daemon or outlive the plugin's call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::bindings::config::vpcrouter::plugin::files::Host;
use super::super::instance::HostState;
use super::super::limits::MAX_READS_PER_CALL;
use crate::read::Reader;
use crate::spec::MAX_SPEC_BYTES;
use crate::text::clip;

/// Longest a read may take: a local file of at most 1 MiB takes
/// milliseconds; anything slower is stuck.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The reader of one plugin's granted files, shared by its instances: a
/// restarted plugin cannot start a second read while its first is stuck.
pub fn granted_files_reader() -> Reader {
    Reader::new(MAX_SPEC_BYTES as u64, READ_TIMEOUT, 1)
}

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
        let read = self.usage.wait(self.files.read(&granted)).await;
        Ok(read.map_err(|e| format!("{path}: {e}")))
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
