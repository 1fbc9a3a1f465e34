//! Per-plugin bounds: memory and table growth (with the cause remembered, so
//! a trap can be reported as "over its memory cap"), and call deadlines,
//! which count the plugin's own time, not the time it waits on the host.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;

/// Largest linear memory a plugin may have, and so the most address space
/// one memory reserves up front (guest pages beyond it are never mapped).
pub const MEMORY_CAP: usize = 64 << 20;

/// Largest plugin file read: a component built from Python or JavaScript
/// (an interpreter inside) is 12-18 MB.
pub const MAX_PLUGIN_FILE: u64 = 64 << 20;

/// Deadlines and restart pacing; the defaults suit the daemon, tests shorten
/// them.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Wall-clock time one call into a plugin may take, not counting the
    /// time it waits in the host's own bounded operations (see
    /// [`CallUsage`]); those may add at most `max_host_wait`.
    pub call_timeout: Duration,
    pub max_host_wait: Duration,
    /// First delay before re-instantiating a failed plugin; doubles per
    /// consecutive failure.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A plugin that has run this long without a fault has its backoff reset.
    pub backoff_reset_after: Duration,
    pub memory_cap: usize,
}

impl Bounds {
    /// A plugin's `init` and its first event (which may read a big spec
    /// for the first time) get this long.
    pub fn start_timeout(&self) -> Duration {
        self.call_timeout * 5
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            max_host_wait: MAX_HOST_WAIT,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(60),
            memory_cap: MEMORY_CAP,
        }
    }
}

/// The most a call may spend waiting on the host: enough for the largest
/// working set (`spec::MAX_WORKING_SET` hosts, 1,024 probes in flight) to
/// be probed with the longest probe timeout, every host silent.
pub const MAX_HOST_WAIT: Duration = Duration::from_secs(60);

/// What the current call has used of the host: time waiting in host
/// operations that bound themselves (probes, outbound requests, file
/// reads), probes per host, outbound requests. A health round over
/// thousands of silent hosts waits for probe timeouts; that is the host's
/// time, not the plugin's, so it does not count against the call deadline.
/// The counts keep one call from turning into a flood.
#[derive(Debug, Default)]
pub struct CallUsage(Mutex<Usage>);

#[derive(Debug, Default)]
struct Usage {
    /// Finished waits of this call.
    waited: Duration,
    /// The wait in progress, if any.
    since: Option<Instant>,
    probes: HashMap<IpAddr, u32>,
    /// Early verdicts reported per host.
    verdicts: HashMap<IpAddr, u32>,
    outbound: u32,
    reads: u32,
}

/// How often one host may be probed in one call (a plugin may probe
/// several ports, or retry).
pub const MAX_PROBES_PER_HOST: u32 = 16;
/// How often one call may report a host's verdict early (a verdict per
/// probe of a few ports is plenty; more would only churn the board).
pub const MAX_VERDICTS_PER_HOST: u32 = 4;
/// Outbound requests one call may send, and file reads it may make: host
/// work the plugin's own time does not pay for, so it is counted instead.
pub const MAX_OUTBOUND_PER_CALL: u32 = 32;
pub const MAX_READS_PER_CALL: u32 = 16;

impl CallUsage {
    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.0.lock().expect("call usage lock")
    }

    /// A new call starts with nothing used.
    pub fn reset(&self) {
        *self.usage() = Usage::default();
    }

    /// Waited so far in this call, the wait in progress included.
    pub fn waited(&self) -> Duration {
        let usage = self.usage();
        usage.waited + usage.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Run `operation` as host time.
    pub async fn wait<F: Future>(&self, operation: F) -> F::Output {
        /// Ends the wait even if the call is cancelled midway.
        struct Ending<'a>(&'a CallUsage);
        impl Drop for Ending<'_> {
            fn drop(&mut self) {
                let mut usage = self.0.usage();
                if let Some(since) = usage.since.take() {
                    usage.waited += since.elapsed();
                }
            }
        }
        self.usage().since = Some(Instant::now());
        let _ending = Ending(self);
        operation.await
    }

    /// Count a probe of `host`; false once it has had its share.
    pub fn probe(&self, host: IpAddr) -> bool {
        let mut usage = self.usage();
        let count = usage.probes.entry(host).or_default();
        *count += 1;
        *count <= MAX_PROBES_PER_HOST
    }

    /// Count an early verdict on `host`; false once the call has had its
    /// share for that host.
    pub fn verdict(&self, host: IpAddr) -> bool {
        let mut usage = self.usage();
        let count = usage.verdicts.entry(host).or_default();
        *count += 1;
        *count <= MAX_VERDICTS_PER_HOST
    }

    /// Count an outbound request; false once the call has had its share.
    pub fn outbound(&self) -> bool {
        let mut usage = self.usage();
        usage.outbound += 1;
        usage.outbound <= MAX_OUTBOUND_PER_CALL
    }

    /// Count a file read; false once the call has had its share.
    pub fn read(&self) -> bool {
        let mut usage = self.usage();
        usage.reads += 1;
        usage.reads <= MAX_READS_PER_CALL
    }
}

/// Most linear memories, tables and core instances one plugin may have (a
/// component built by componentize-py has several of each).
const MAX_MEMORIES: usize = 8;
const MAX_TABLES: usize = 32;
const MAX_INSTANCES: usize = 64;
/// Table elements of all tables of a plugin together.
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// Caps a plugin as a whole: the memory cap counts all of its linear
/// memories together (a component may have several), the element cap all of
/// its tables. Remembers, in a flag readable outside the store (the store
/// is borrowed by the call), whether it refused memory.
pub struct PluginLimiter {
    memory_cap: usize,
    memory_total: usize,
    table_elements: usize,
    refused_memory: Arc<AtomicBool>,
}

impl PluginLimiter {
    pub fn new(memory_cap: usize, refused_memory: Arc<AtomicBool>) -> Self {
        Self {
            memory_cap,
            memory_total: 0,
            table_elements: 0,
            refused_memory,
        }
    }
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_total - current.min(self.memory_total) + desired;
        if total > self.memory_cap {
            self.refused_memory.store(true, Ordering::Relaxed);
            return Err(wasmtime::format_err!(
                "memory of all its memories together would exceed the cap of {} MiB",
                self.memory_cap >> 20
            ));
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements - current.min(self.table_elements) + desired;
        if total > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::format_err!(
                "table elements of all its tables together would exceed {MAX_TABLE_ELEMENTS}"
            ));
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_counts_every_memory_together() {
        let refused = Arc::new(AtomicBool::new(false));
        let mut limiter = PluginLimiter::new(64 << 20, refused.clone());
        // Two memories of 40 MiB: each alone is under the cap.
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 40 << 20, None).is_err());
        assert!(refused.load(Ordering::Relaxed));
        // Growing the first within the cap still works.
        assert!(limiter.memory_growing(40 << 20, 60 << 20, None).unwrap());
        assert!(limiter.memory_growing(60 << 20, 65 << 20, None).is_err());
    }

    #[test]
    fn table_elements_count_every_table_together() {
        let mut limiter = PluginLimiter::new(1 << 20, Arc::default());
        assert!(limiter.table_growing(0, 150_000, None).unwrap());
        assert!(limiter.table_growing(0, 60_000, None).is_err());
    }
}
