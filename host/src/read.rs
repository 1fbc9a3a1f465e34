//! Reading files the operator names: plugin files, the files plugins are
//! granted, the HTTP token.
//! Only regular files (or symlinks to one) are read: opened without
//! blocking (a FIFO with no writer would block the open) and checked by the
//! opened descriptor, so a swap after the check cannot fool it; at most a
//! given size; on a blocking thread with a deadline. A device, a FIFO, a
//! huge file or one on a hung mount never stalls the daemon's workers or
//! grows its memory past the limit.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file; only regular files (or symlinks to one) are read")]
    NotRegular,
    #[error("larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("no data within {0:?} (is it on a hung mount?)")]
    TimedOut(Duration),
    #[error("an earlier read is still stuck; not starting another")]
    Stuck,
}

/// Reads of one kind of file: their size limit, their deadline, and how
/// many may be unfinished at once (a read stuck in the kernel keeps its
/// thread until the kernel lets go; callers must not pile up more).
#[derive(Debug, Clone)]
pub struct Reader {
    limit: u64,
    timeout: Duration,
    most_unfinished: usize,
    unfinished: Arc<AtomicUsize>,
}

impl Reader {
    pub fn new(limit: u64, timeout: Duration, most_unfinished: usize) -> Self {
        Self {
            limit,
            timeout,
            most_unfinished,
            unfinished: Arc::default(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The content of the regular file at `path`, read off the runtime's
    /// workers within the deadline.
    pub async fn read(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        if self.unfinished.fetch_add(1, Ordering::SeqCst) >= self.most_unfinished {
            self.unfinished.fetch_sub(1, Ordering::SeqCst);
            return Err(ReadError::Stuck);
        }
        let (path, limit, unfinished) = (path.to_path_buf(), self.limit, self.unfinished.clone());
        let read = tokio::task::spawn_blocking(move || {
            let read = read_regular(&path, limit);
            unfinished.fetch_sub(1, Ordering::SeqCst);
            read
        });
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => Err(ReadError::Io(std::io::Error::other(e))),
            Err(_) => Err(ReadError::TimedOut(self.timeout)),
        }
    }
}

/// The content of a regular file of at most `limit` bytes, read on this
/// thread (for tools and tests; the daemon uses [`Reader`]).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
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
        assert_eq!(read_regular(&link, 16).unwrap(), b"{}");
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        assert!(matches!(
            read_regular(&fifo, 16),
            Err(ReadError::NotRegular)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(
            read_regular(dir.path(), 16),
            Err(ReadError::NotRegular)
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 16),
            Err(ReadError::NotRegular)
        ));
        std::fs::write(&file, vec![b' '; 17]).unwrap();
        assert!(matches!(
            read_regular(&file, 16),
            Err(ReadError::TooLarge(16))
        ));
    }

    /// A read that cannot finish gives up at its deadline, and no more
    /// reads than allowed are left hanging on threads.
    #[tokio::test]
    async fn a_read_that_hangs_times_out_and_does_not_pile_up() {
        let (unfinished, reader) = {
            let reader = Reader::new(16, Duration::from_millis(100), 1);
            (reader.unfinished.clone(), reader)
        };
        // Stands for a read stuck in the kernel.
        unfinished.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(reader.read(&file).await, Err(ReadError::Stuck)));
        unfinished.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(reader.read(&file).await.unwrap(), b"x");
        assert_eq!(unfinished.load(Ordering::SeqCst), 0);
    }
}
