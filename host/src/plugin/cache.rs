//! The on-disk compile cache. Loading an artefact loads native code that
//! nothing checks again, so an entry is used only when the daemon can tell
//! it wrote it itself:
//!
//! - the cache folder is the daemon's own: owned by its user and writable
//!   by no one else, nor is any folder above it (sticky ones like /tmp
//!   aside), as ssh checks the folders of its keys. A folder that fails is
//!   not used at all (and its mode is never changed behind the operator's
//!   back);
//! - every artefact carries a keyed digest (HMAC-SHA256) of its name and
//!   bytes, under a key the daemon keeps outside the cache, in its state
//!   folder (`--state-dir`, checked the same way). An entry written by
//!   anyone else, copied from another machine, truncated or corrupted fails
//!   the check: it is compiled again, replaced, and reported.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

use crate::read::{ReadError, read_regular};

/// The first bytes of every artefact, then the tag, then wasmtime's bytes.
const MAGIC: &[u8; 8] = b"vpcrc01\n";
const TAG: usize = 32;
/// The key's file in the state folder.
const KEY_FILE: &str = "compile-cache.key";

/// Largest artefact read back: a big component (componentize-py) compiles
/// to ~40 MB.
pub const MAX_ARTEFACT: u64 = 512 << 20;

/// The compile cache's default size cap: a dozen big components.
pub const CACHE_CAP: u64 = 512 << 20;

/// Why the cache is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "no state folder to keep its key in: give --state-dir (or set $XDG_STATE_HOME or $HOME)"
    )]
    NoStateDir,
    #[error("{}: {why}", path.display())]
    Untrusted { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the cache had for a component.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// There was an entry, and it failed the check (why).
    Rejected(String),
}

pub struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
    cap: u64,
}

impl CompileCache {
    /// The cache as configured: none without a folder; an error saying why
    /// it cannot be used (the daemon then compiles at every start).
    pub fn configured(
        dir: Option<&Path>,
        state_dir: Option<&Path>,
    ) -> Result<Option<Self>, CacheError> {
        match (dir, state_dir) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(CacheError::NoStateDir),
            (Some(dir), Some(state_dir)) => Self::open(dir, state_dir, CACHE_CAP).map(Some),
        }
    }

    /// The cache in `dir` (created if missing), its key in `state_dir`
    /// (created if missing). Fails when either is not the daemon's own.
    pub fn open(dir: &Path, state_dir: &Path, cap: u64) -> Result<Self, CacheError> {
        private_dir(dir)?;
        private_dir(state_dir)?;
        let key = key(&state_dir.join(KEY_FILE))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            cap,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str, entry: Entry) -> PathBuf {
        self.dir.join(format!("{name}.{}", entry.extension()))
    }

    fn tag(&self, name: &str, artefact: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artefact);
        mac
    }

    /// The artefact stored under `name`, if there is one and it is the
    /// daemon's own.
    pub fn load(&self, name: &str) -> Lookup {
        self.load_entry(name, Entry::Artefact)
    }

    /// The function pack stored under `name` (`function_cache`), checked
    /// as an artefact is: Cranelift puts its machine code in the output.
    pub fn load_functions(&self, name: &str) -> Lookup {
        self.load_entry(name, Entry::Functions)
    }

    pub fn store_functions(&self, name: &str, pack: &[u8]) -> std::io::Result<()> {
        self.store_entry(name, Entry::Functions, pack)
    }

    fn load_entry(&self, name: &str, entry: Entry) -> Lookup {
        let path = self.path(name, entry);
        let bytes = match read_regular(&path, MAX_ARTEFACT) {
            Ok(bytes) => bytes,
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Lookup::Miss;
            }
            Err(e) => return Lookup::Rejected(format!("{}: {e}", path.display())),
        };
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Lookup::Rejected(format!(
                "{}: not an artefact of this daemon",
                path.display()
            ));
        };
        if rest.len() < TAG {
            return Lookup::Rejected(format!("{}: truncated", path.display()));
        }
        let (tag, artefact) = rest.split_at(TAG);
        if self.tag(name, artefact).verify_slice(tag).is_err() {
            return Lookup::Rejected(format!(
                "{}: its digest does not match (written by someone else, or corrupted)",
                path.display()
            ));
        }
        // Used now: the last to be evicted.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Lookup::Hit(bytes[MAGIC.len() + TAG..].to_vec())
    }

    /// Store `artefact` under `name` (atomically), then evict the entries
    /// used longest ago beyond the cap.
    pub fn store(&self, name: &str, artefact: &[u8]) -> std::io::Result<()> {
        self.store_entry(name, Entry::Artefact, artefact)
    }

    fn store_entry(&self, name: &str, entry: Entry, artefact: &[u8]) -> std::io::Result<()> {
        let path = self.path(name, entry);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut bytes = Vec::with_capacity(MAGIC.len() + TAG + artefact.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.tag(name, artefact).finalize().into_bytes());
        bytes.extend_from_slice(artefact);
        write_private(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        prune(&self.dir, self.cap, &path)
    }
}

/// The kinds of entry, each under its own extension; both count against
/// the cache's cap.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Artefact,
    Functions,
}

impl Entry {
    fn extension(self) -> &'static str {
        match self {
            Entry::Artefact => "cwasm",
            Entry::Functions => "functions",
        }
    }
}

/// A new file only this user may read or write.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(bytes)
}

/// Create `dir` (mode 0700) if missing, then check that it is this user's
/// own and that no one else can change it or any folder above it.
pub(super) fn private_dir(dir: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let real = dir.canonicalize().map_err(io)?;
    let me = euid();
    let untrusted = |path: &Path, why: String| CacheError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    check_owned(&real, me, false).map_err(|why| untrusted(dir, why))?;
    for above in real.ancestors().skip(1) {
        check_owned(above, me, true).map_err(|why| {
            untrusted(
                dir,
                format!("the folder above it, {}, {why}", above.display()),
            )
        })?;
    }
    Ok(())
}

/// `path` is owned by `me` (or, for a folder above, by root) and writable
/// by no one else (a sticky folder above, like /tmp, is fine: others cannot
/// move what is in it).
fn check_owned(path: &Path, me: u32, above: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let owner_ok = meta.uid() == me || (above && meta.uid() == 0);
    if !owner_ok {
        return Err(format!(
            "is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !(above && sticky) {
        return Err(format!(
            "is writable by others (mode {:o}); make it chmod go-w",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The cache key in `path`, made once (32 random bytes, mode 0600).
fn key(path: &Path) -> Result<[u8; 32], CacheError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    match read_regular(path, 64) {
        Ok(bytes) => {
            let meta = std::fs::metadata(path).map_err(io)?;
            if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
                return Err(CacheError::Untrusted {
                    path: path.to_path_buf(),
                    why: format!(
                        "must be this user's own and private (mode 600), is uid {} mode {:o}",
                        meta.uid(),
                        meta.mode() & 0o7777
                    ),
                });
            }
            bytes.try_into().map_err(|_| CacheError::Untrusted {
                path: path.to_path_buf(),
                why: "is not a key of this daemon (32 bytes)".into(),
            })
        }
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
                .map_err(io)?;
            // Two daemons starting at once: the first key written wins.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            write_private(&tmp, &key).map_err(io)?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(key),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self::key(path),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(CacheError::Untrusted {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

/// Delete the entries used longest ago until the cache holds at most `cap`
/// bytes; `keep` (the entry just written) stays whatever its size.
fn prune(dir: &Path, cap: u64, keep: &Path) -> std::io::Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ours = [Entry::Artefact, Entry::Functions]
            .map(Entry::extension)
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext));
        if !ours {
            continue;
        }
        let meta = entry.metadata()?;
        entries.push((meta.modified()?, meta.len(), path));
    }
    // Newest first; what does not fit after them goes.
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let mut total = 0;
    for (_, size, path) in entries {
        total += size;
        if total > cap && path != keep {
            std::fs::remove_file(&path)?;
            tracing::debug!(path = %path.display(), "evicted from the compile cache");
        }
    }
    Ok(())
}
