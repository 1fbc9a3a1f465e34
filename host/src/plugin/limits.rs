//! Per-plugin bounds: memory and table growth (with the cause remembered, so
//! a trap can be reported as "over its memory cap"), and call deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::engine::MEMORY_CAP;

/// Deadlines and restart pacing; the defaults suit the daemon, tests shorten
/// them.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Wall-clock time one call into a plugin may take, host calls included.
    pub call_timeout: Duration,
    /// First delay before re-instantiating a failed plugin; doubles per
    /// consecutive failure.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A plugin that has run this long without a fault has its backoff reset.
    pub backoff_reset_after: Duration,
    pub memory_cap: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(60),
            memory_cap: MEMORY_CAP,
        }
    }
}

/// `StoreLimits` that remembers whether it refused a memory growth, in a
/// flag readable outside the store (the store is borrowed by the call).
pub struct PluginLimiter {
    limits: StoreLimits,
    refused_memory: Arc<AtomicBool>,
}

impl PluginLimiter {
    pub fn new(memory_cap: usize, refused_memory: Arc<AtomicBool>) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_cap)
            .memories(4)
            .tables(16)
            .table_elements(100_000)
            .instances(32)
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            refused_memory,
        }
    }
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.refused_memory.store(true, Ordering::Relaxed);
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
