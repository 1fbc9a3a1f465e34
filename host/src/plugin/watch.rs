//! Host-side file watching for plugins (inotify through `notify`): a change
//! arrives as an event within milliseconds instead of a poll. The parent
//! directory is watched, so deleting and re-creating the file, or an editor
//! renaming a new version into place, are seen too. Adding a watch looks the
//! directory up, which blocks on a hung mount: it runs on a blocking thread
//! with a timeout.

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest a watch may take to add.
const ADD_TIMEOUT: Duration = Duration::from_secs(1);

pub struct FileWatcher {
    watcher: Arc<Mutex<RecommendedWatcher>>,
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
    dirs: BTreeSet<PathBuf>,
    changed: mpsc::UnboundedSender<PathBuf>,
}

impl FileWatcher {
    /// Changed watched files are sent on `changed`.
    pub fn new(changed: mpsc::UnboundedSender<PathBuf>) -> notify::Result<Self> {
        let files = Arc::new(Mutex::new(BTreeSet::<PathBuf>::new()));
        let watched = files.clone();
        let notify = changed.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !is_change(&event.kind) {
                return;
            }
            let watched = watched.lock().expect("watch list lock");
            for path in event.paths.iter().filter(|p| watched.contains(*p)) {
                let _ = notify.send(path.clone());
            }
        })?;
        Ok(Self {
            watcher: Arc::new(Mutex::new(watcher)),
            files,
            dirs: BTreeSet::new(),
            changed,
        })
    }

    pub async fn watch(&mut self, file: &Path) -> Result<(), String> {
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        if !self.dirs.contains(&dir) {
            let (watcher, watched) = (self.watcher.clone(), dir.clone());
            let add = tokio::task::spawn_blocking(move || {
                let mut watcher = watcher.lock().expect("watcher lock");
                watcher.watch(&watched, RecursiveMode::NonRecursive)
            });
            match tokio::time::timeout(ADD_TIMEOUT, add).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(e.to_string()),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!(
                        "{}: no answer within {ADD_TIMEOUT:?}",
                        dir.display()
                    ));
                }
            }
            self.dirs.insert(dir);
        }
        let new = self
            .files
            .lock()
            .expect("watch list lock")
            .insert(file.to_path_buf());
        // The plugin read the file before asking for the watch; a write in
        // between would be lost. One change event makes it read again.
        if new {
            let _ = self.changed.send(file.to_path_buf());
        }
        Ok(())
    }
}

/// Content may have changed. Opens and reads (the plugin's own reads among
/// them) are not changes; a close after writing is the surest one.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}
