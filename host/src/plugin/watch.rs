//! Host-side file watching for plugins (inotify through `notify`): a change
//! arrives as an event within milliseconds instead of a poll. The parent
//! directory is watched, so deleting and re-creating the file, or an editor
//! renaming a new version into place, are seen too.

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub struct FileWatcher {
    watcher: RecommendedWatcher,
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
            watcher,
            files,
            dirs: BTreeSet::new(),
            changed,
        })
    }

    pub fn watch(&mut self, file: &Path) -> notify::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        if !self.dirs.contains(&dir) {
            self.watcher.watch(&dir, RecursiveMode::NonRecursive)?;
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
