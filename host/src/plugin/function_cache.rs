//! What makes a rebuilt plugin compile in seconds: Cranelift's incremental
//! cache, which keys each function's machine code by the function itself.
//! A new build of a Python or JavaScript plugin is an interpreter of tens
//! of thousands of functions of which a handful changed, so nearly every
//! function is found and only the changed ones are compiled.
//!
//! The compiler child never touches the disk: the daemon hands it the pack
//! of functions the previous compile of the same plugin file kept (read
//! from the compile cache, whose keyed digest proves the daemon stored it),
//! and gets back the pack of the functions this compile used, which
//! replaces it. One pack per plugin file keeps them small and never mixes
//! two plugins' functions.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Functions of the previous compile, and what this one used or added.
#[derive(Debug, Default)]
pub struct FunctionCache {
    previous: HashMap<Vec<u8>, Vec<u8>>,
    found: Mutex<HashSet<Vec<u8>>>,
    added: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    reused: AtomicU64,
}

/// How much of a compile its pack spared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// Functions taken from the previous compile.
    pub reused: u64,
    /// Functions compiled.
    pub compiled: u64,
}

impl FunctionCache {
    /// The cache holding `pack`'s functions; a pack that does not decode is
    /// taken as empty (it only costs the time it would have saved).
    pub fn from_pack(pack: &[u8]) -> Self {
        Self {
            previous: decode(pack).unwrap_or_default(),
            ..Self::default()
        }
    }

    /// The pack of the functions this compile used, and how many it reused.
    pub fn into_pack(self) -> (Vec<u8>, Reuse) {
        let found = self.found.into_inner().unwrap_or_else(|e| e.into_inner());
        let added = self.added.into_inner().unwrap_or_else(|e| e.into_inner());
        let reuse = Reuse {
            reused: self.reused.into_inner(),
            compiled: added.len() as u64,
        };
        let mut previous = self.previous;
        let kept = found
            .into_iter()
            .filter_map(|key| previous.remove_entry(&key));
        let entries: Vec<(Vec<u8>, Vec<u8>)> = kept.chain(added).collect();
        (encode(&entries), reuse)
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let value = self.previous.get(key)?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        lock(&self.found).insert(key.to_vec());
        Some(Cow::Borrowed(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        lock(&self.added).push((key.to_vec(), value));
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entries as `len key len value`, lengths u32 little-endian.
fn encode(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut pack = Vec::with_capacity(size);
    for (key, value) in entries {
        for part in [key, value] {
            pack.extend_from_slice(&(part.len() as u32).to_le_bytes());
            pack.extend_from_slice(part);
        }
    }
    pack
}

fn decode(mut pack: &[u8]) -> Option<HashMap<Vec<u8>, Vec<u8>>> {
    let take = |pack: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, rest) = pack.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let part = rest.get(..len)?.to_vec();
        *pack = &rest[len..];
        Some(part)
    };
    let mut entries = HashMap::new();
    while !pack.is_empty() {
        let key = take(&mut pack)?;
        let value = take(&mut pack)?;
        entries.insert(key, value);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn a_pack_keeps_what_was_found_and_added_and_drops_the_rest() {
        let old = encode(&[
            (b"used".to_vec(), b"A".to_vec()),
            (b"stale".to_vec(), b"B".to_vec()),
        ]);
        let cache = FunctionCache::from_pack(&old);
        assert_eq!(cache.get(b"used").as_deref(), Some(&b"A"[..]));
        assert_eq!(cache.get(b"missing"), None);
        assert!(cache.insert(b"new", b"C".to_vec()));
        let (pack, reuse) = cache.into_pack();
        assert_eq!(
            reuse,
            Reuse {
                reused: 1,
                compiled: 1
            }
        );
        let entries = decode(&pack).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[&b"used"[..]], b"A");
        assert_eq!(entries[&b"new"[..]], b"C");
    }

    #[test]
    fn a_pack_that_does_not_decode_is_empty() {
        for bad in [&[1u8, 0, 0][..], &[9, 0, 0, 0, 1][..], &[0, 0, 0, 0][..]] {
            assert!(FunctionCache::from_pack(bad).previous.is_empty(), "{bad:?}");
        }
    }
}
