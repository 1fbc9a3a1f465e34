//! The embedded in-memory VPC: behaves like EC2 for everything the planner
//! uses (describe, create/replace/delete route with EC2's errors), loaded
//! from a JSON topology file. The default for the demo and fast tests.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::claims::TagChange;
use super::lists::{ListBackend, ListCall, Lists};
use super::model::{RouteError, VpcState};
use super::operation::Operation;
use super::{CloudError, VpcBackend};

pub struct SimVpc {
    state: Mutex<VpcState>,
    /// Prefix lists and the routes to them (prefix-list mode).
    lists: Mutex<Lists>,
    describes: AtomicU64,
    mutations: AtomicU64,
    /// Answer every call with an outage (fault injection).
    unavailable: AtomicBool,
}

impl SimVpc {
    pub fn new(state: VpcState) -> Self {
        Self {
            state: Mutex::new(state),
            lists: Mutex::new(Lists::default()),
            describes: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
            unavailable: AtomicBool::new(false),
        }
    }

    /// Load a topology: the JSON form of [`VpcState`].
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let state = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::new(state))
    }

    /// What the VPC holds now (tests look behind the backend's back).
    pub fn snapshot(&self) -> VpcState {
        self.state.lock().expect("sim lock").clone()
    }

    /// Change the VPC as an operator or AWS would (tests).
    pub fn edit(&self, change: impl FnOnce(&mut VpcState)) {
        change(&mut self.state.lock().expect("sim lock"));
    }

    /// Make every call fail as if the API could not be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Relaxed);
    }

    fn reachable(&self) -> Result<(), CloudError> {
        match self.unavailable.load(Ordering::Relaxed) {
            true => Err(CloudError::Unavailable("simulated outage".into())),
            false => Ok(()),
        }
    }

    /// (describe calls, mutating calls) so far.
    pub fn calls(&self) -> (u64, u64) {
        (
            self.describes.load(Ordering::Relaxed),
            self.mutations.load(Ordering::Relaxed),
        )
    }
}

impl VpcBackend for SimVpc {
    async fn describe(&self) -> Result<VpcState, CloudError> {
        self.describes.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        Ok(self.snapshot())
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        self.mutations.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        self.state
            .lock()
            .expect("sim lock")
            .apply(op)
            .map_err(CloudError::Refused)
    }

    async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
        self.mutations.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        let mut state = self.state.lock().expect("sim lock");
        let interface = state
            .interfaces
            .iter_mut()
            .find(|i| i.id == eni)
            .ok_or_else(|| RouteError::NoSuchInterface(eni.to_string()))?;
        interface.source_dest_check = false;
        Ok(())
    }

    async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
        self.mutations.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        self.state
            .lock()
            .expect("sim lock")
            .write_tags(change)
            .map_err(CloudError::Refused)
    }
}

impl ListBackend for SimVpc {
    async fn describe_lists(&self) -> Result<Lists, CloudError> {
        self.describes.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        Ok(self.lists.lock().expect("sim lock").clone())
    }

    async fn apply_list(&self, call: &ListCall) -> Result<Option<String>, CloudError> {
        self.mutations.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        let mut state = self.state.lock().expect("sim lock");
        let mut lists = self.lists.lock().expect("sim lock");
        (lists.apply(&mut state, call, super::lists::next_id)).map_err(CloudError::Refused)
    }
}
