use std::io::Read;

use super::super::bindings::config::vpcrouter::plugin::files::Host;
use super::super::instance::HostState;
use crate::spec::MAX_SPEC_BYTES;

impl HostState {
    fn granted_file(&self, path: &str) -> Result<std::path::PathBuf, String> {
        self.grants
            .readable_file(path)
            .map(|p| p.to_path_buf())
            .inspect_err(|e| {
                tracing::warn!(plugin = &*self.plugin, "denied: {e}");
            })
    }
}

impl Host for HostState {
    fn read_file(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let read = || -> Result<Vec<u8>, String> {
            let granted = self.granted_file(&path)?;
            let file = std::fs::File::open(&granted).map_err(|e| format!("{path}: {e}"))?;
            let mut bytes = Vec::new();
            file.take(MAX_SPEC_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{path}: {e}"))?;
            if bytes.len() > MAX_SPEC_BYTES {
                return Err(format!(
                    "{path}: larger than the {MAX_SPEC_BYTES}-byte limit"
                ));
            }
            Ok(bytes)
        };
        Ok(read())
    }

    fn watch_file(&mut self, path: String) -> wasmtime::Result<Result<(), String>> {
        Ok(self.granted_file(&path).map(|granted| {
            self.requests.watches.push(granted);
        }))
    }
}
