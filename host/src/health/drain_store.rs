//! Drains outlive the process that took them: one daemon keeps them in a
//! file in its state folder; HA replicas keep them in etcd, where a new
//! leader finds what the last one was told. A drain is kept before it takes
//! effect (an answer of 200 means it is kept), and what a store hands back
//! is checked like a request: bounded, printable, not yet over.
//!
//! [`Drains`] is the one way in: it changes the kept record and the health
//! board together, one change at a time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use super::HealthBoard;
use super::drain::{Drain, MAX_DRAINS};
use crate::ha::etcd::EtcdClient;
use crate::ha::{Leadership, Role};

/// Largest record read back: [`MAX_DRAINS`] drains of the longest reason.
const MAX_RECORD: u64 = 1 << 20;
/// How often a standby reads the leader's drains.
const STANDBY_SYNC: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("{0}: not a record of drains: {1}")]
    Content(String, String),
    #[error("not kept: {0}")]
    NotLeader(String),
}

/// Where drains are kept.
pub enum DrainStore {
    /// Nowhere (no state folder): drains end with the process.
    Nowhere,
    /// A file of the state folder.
    File(PathBuf),
    /// A key in the HA replicas' etcd, written only in the leader's term.
    Etcd {
        client: Arc<EtcdClient>,
        key: String,
        leadership: Leadership,
    },
}

/// The record as kept: host -> drain, times in RFC 3339.
#[derive(Serialize, Deserialize, Default)]
struct Record {
    drains: BTreeMap<IpAddr, Kept>,
}

#[derive(Serialize, Deserialize)]
struct Kept {
    reason: String,
    since: String,
    until: Option<String>,
}

impl DrainStore {
    /// Where it is, for the log.
    pub fn describe(&self) -> String {
        match self {
            Self::Nowhere => "nowhere (no state folder): drains end with the daemon".into(),
            Self::File(path) => path.display().to_string(),
            Self::Etcd { key, .. } => format!("etcd key {key}"),
        }
    }

    /// The drains kept that still hold.
    pub async fn load(&self) -> Result<BTreeMap<IpAddr, Drain>, StoreError> {
        let bytes = match self {
            Self::Nowhere => return Ok(BTreeMap::new()),
            Self::File(path) => match std::fs::File::open(path) {
                Ok(file) => {
                    let mut bytes = Vec::new();
                    (file.take(MAX_RECORD + 1).read_to_end(&mut bytes)).map_err(|source| {
                        StoreError::Io {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    bytes
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
                Err(source) => {
                    let path = path.clone();
                    return Err(StoreError::Io { path, source });
                }
            },
            Self::Etcd { client, key, .. } => match client.get(key).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ok(BTreeMap::new()),
                Err(e) => return Err(StoreError::Etcd(e.to_string())),
            },
        };
        decode(&bytes).map_err(|why| StoreError::Content(self.describe(), why))
    }

    async fn save(&self, drains: &BTreeMap<IpAddr, Drain>) -> Result<(), StoreError> {
        let bytes = encode(drains);
        match self {
            Self::Nowhere => Ok(()),
            Self::File(path) => write_replacing(path, &bytes).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            }),
            Self::Etcd {
                client,
                key,
                leadership,
            } => {
                let term = leadership.confirm().await.map_err(StoreError::NotLeader)?;
                match client.put_in_term(&term, key, &bytes).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StoreError::NotLeader(format!(
                        "term {} is over",
                        term.revision
                    ))),
                    Err(e) => Err(StoreError::Etcd(e.to_string())),
                }
            }
        }
    }
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn encode(drains: &BTreeMap<IpAddr, Drain>) -> Vec<u8> {
    let record = Record {
        drains: (drains.iter())
            .map(|(host, drain)| {
                let kept = Kept {
                    reason: drain.reason.clone(),
                    since: time(drain.since),
                    until: drain.until.map(time),
                };
                (*host, kept)
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&record).expect("drains serialise")
}

/// The drains of a record that still hold; a record that is too big, not
/// JSON, or holds a drain that is not one is refused whole.
fn decode(bytes: &[u8]) -> Result<BTreeMap<IpAddr, Drain>, String> {
    if bytes.len() as u64 > MAX_RECORD {
        return Err(format!("larger than {MAX_RECORD} bytes"));
    }
    let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if record.drains.len() > MAX_DRAINS {
        return Err(format!("more than {MAX_DRAINS} drains"));
    }
    let parse =
        |text: &str| humantime::parse_rfc3339_weak(text).map_err(|e| format!("{text:?}: {e}"));
    let mut drains = BTreeMap::new();
    for (host, kept) in record.drains {
        let until = kept.until.as_deref().map(parse).transpose()?;
        if until.is_some_and(|until| until <= SystemTime::now()) {
            continue;
        }
        let drain = Drain::made(&kept.reason, parse(&kept.since)?, until)
            .map_err(|why| format!("{host}: {why}"))?;
        drains.insert(host, drain);
    }
    Ok(drains)
}

/// Write `path` whole or not at all (a new file renamed over the old).
fn write_replacing(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(folder) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)?;
    }
    let fresh = path.with_extension("new");
    let mut file = (std::fs::OpenOptions::new())
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)
}

/// The drains of this daemon: kept, and in force on the health board.
pub struct Drains {
    board: Arc<HealthBoard>,
    store: DrainStore,
    /// One change at a time: each writes the whole record.
    changing: tokio::sync::Mutex<()>,
}

impl Drains {
    pub fn new(board: Arc<HealthBoard>, store: DrainStore) -> Self {
        Self {
            board,
            store,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// Drain `host`, kept first; the drain it replaced.
    pub async fn drain(&self, host: IpAddr, drain: Drain) -> Result<Option<Drain>, StoreError> {
        let _one = self.changing.lock().await;
        let mut drains = self.board.snapshot().drained;
        drains.insert(host, drain.clone());
        self.store.save(&drains).await?;
        Ok(self.board.drain(host, drain))
    }

    /// Undrain `host`, kept first; the drain lifted (none: nothing kept
    /// changes).
    pub async fn undrain(&self, host: IpAddr) -> Result<Option<Drain>, StoreError> {
        let _one = self.changing.lock().await;
        let mut drains = self.board.snapshot().drained;
        if drains.remove(&host).is_none() {
            return Ok(None);
        }
        self.store.save(&drains).await?;
        Ok(self.board.undrain(host))
    }

    /// Put the kept drains in force (at start, and as a standby follows the
    /// leader): the number in force.
    pub async fn restore(&self, why_lifted: &str) -> Result<usize, StoreError> {
        let _one = self.changing.lock().await;
        let kept = self.store.load().await?;
        self.board.restore(&kept, why_lifted);
        Ok(kept.len())
    }

    /// The drains in force.
    pub fn drained(&self) -> BTreeMap<IpAddr, Drain> {
        self.board.snapshot().drained
    }

    /// Where they are kept, for the log.
    pub fn store(&self) -> &DrainStore {
        &self.store
    }

    /// Under HA: the record is read at start and at every change of the
    /// election, and every [`STANDBY_SYNC`] by a standby (its views show
    /// the leader's drains; it has them when elected) or after a failed
    /// read.
    pub fn follow(
        self: Arc<Self>,
        mut status: watch::Receiver<crate::ha::HaStatus>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut problem: Option<String> = None;
            loop {
                let role = status.borrow_and_update().role;
                // Under the same lock as a change, so a read never undoes
                // one (a leader reads its own record as it is elected).
                match self.restore("undrained on the leader").await {
                    Ok(_) => problem = None,
                    Err(e) => {
                        let said = e.to_string();
                        if problem.as_ref() != Some(&said) {
                            tracing::warn!(
                                problem = said,
                                "cannot read the kept drains; the ones in force stay"
                            );
                        }
                        problem = Some(said);
                    }
                }
                let again = role == Role::Standby || problem.is_some();
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    changed = status.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(STANDBY_SYNC), if again => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reason: &str, until: Option<u64>) -> Drain {
        let until = until.map(|s| SystemTime::now() + Duration::from_secs(s));
        Drain::new(reason, until).unwrap()
    }

    #[test]
    fn records_round_trip_and_drop_what_is_over() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "fd00::2".parse().unwrap();
        let drains = BTreeMap::from([(a, drain("patch", None)), (b, drain("spot", Some(600)))]);
        let back = decode(&encode(&drains)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[&a].reason, "patch");
        assert!(back[&b].until.is_some());
        assert_eq!(back, drains, "read back the same");
        let over = r#"{"drains": {"10.0.0.1": {"reason": "x", "since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}}}"#;
        assert!(decode(over.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn hostile_records_are_refused_whole() {
        let long = "x".repeat(300);
        let control = "a\u{7}b";
        for bad in [
            "not json".to_string(),
            r#"{"drains": {"not-an-ip": {"reason": "", "since": "2026-01-01T00:00:00Z"}}}"#.into(),
            format!(
                r#"{{"drains": {{"10.0.0.1": {{"reason": "{long}", "since": "2026-01-01T00:00:00Z"}}}}}}"#
            ),
            format!(
                r#"{{"drains": {{"10.0.0.1": {{"reason": "{control}", "since": "2026-01-01T00:00:00Z"}}}}}}"#
            ),
            r#"{"drains": {"10.0.0.1": {"reason": "", "since": "yesterday"}}}"#.into(),
            " ".repeat(MAX_RECORD as usize + 1),
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:.80}");
        }
        let many: BTreeMap<IpAddr, Drain> = (0..=MAX_DRAINS as u32)
            .map(|i| (IpAddr::from(i.to_be_bytes()), drain("", None)))
            .collect();
        assert!(decode(&encode(&many)).unwrap_err().contains("more than"));
    }

    #[tokio::test]
    async fn a_file_store_keeps_drains_for_the_next_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet/drains.json");
        let board = Arc::new(HealthBoard::default());
        let drains = Drains::new(board.clone(), DrainStore::File(path.clone()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drains.drain(a, drain("patch", None)).await.unwrap();
        assert!(board.snapshot().drained.contains_key(&a));

        let next = Arc::new(HealthBoard::default());
        let restored = Drains::new(next.clone(), DrainStore::File(path.clone()));
        assert_eq!(restored.restore("gone").await.unwrap(), 1);
        assert_eq!(next.snapshot().drained[&a].reason, "patch");
        restored.undrain(a).await.unwrap().unwrap();
        assert_eq!(
            DrainStore::File(path.clone()).load().await.unwrap().len(),
            0
        );

        // A record that cannot be read is an error and changes nothing.
        drains.drain(a, drain("again", None)).await.unwrap();
        std::fs::write(&path, "{").unwrap();
        assert!(drains.restore("gone").await.is_err());
        assert_eq!(board.snapshot().drained[&a].reason, "again");
    }
}
