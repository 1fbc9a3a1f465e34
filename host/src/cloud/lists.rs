//! Customer-managed prefix lists, as vpcrouter keeps them in prefix-list
//! mode (`--route-mode prefix-list`): the lists and the routes to them as
//! observed, the calls that change them, and how EC2 (or the embedded
//! VPC) carries those out. What to call is the planner's
//! (`reconcile::lists`).

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use super::model::{RouteError, Target, VpcState};
use super::operation::{Operation, RouteTarget};

/// EC2 adds or removes at most this many entries in one
/// `ModifyManagedPrefixList` (and creates a list with at most this many).
pub const ENTRIES_PER_CALL: usize = 100;

/// A customer-managed prefix list of vpcrouter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixList {
    pub id: String,
    /// IPv6 entries (a list holds one address family).
    pub ipv6: bool,
    pub entries: BTreeSet<IpNet>,
    /// What EC2 counts against each referencing table's route quota.
    pub max_entries: usize,
}

/// A route whose destination is one of the lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRoute {
    pub table: String,
    pub list: String,
    pub target: Target,
    /// EC2 says the target is gone.
    pub blackhole: bool,
}

/// The lists and the routes to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub lists: Vec<PrefixList>,
    pub routes: Vec<ListRoute>,
}

/// A list by id, or one this plan creates (its index among the creations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListRef {
    Existing(String),
    New(usize),
}

/// One EC2 call of prefix-list mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCall {
    /// A per-CIDR route operation, as in per-CIDR mode.
    Route(Operation),
    /// Point `table`'s route to `list` at `to` (`ReplaceRoute`).
    Repoint {
        table: String,
        list: ListRef,
        to: RouteTarget,
    },
    /// Route `list` to `to` in `table` (`CreateRoute`).
    RouteList {
        table: String,
        list: ListRef,
        to: RouteTarget,
    },
    /// A new list (`CreateManagedPrefixList`), with its first entries.
    Create {
        list: usize,
        ipv6: bool,
        max_entries: usize,
        entries: Vec<IpNet>,
    },
    /// Make room before entries come (`ModifyManagedPrefixList`).
    Resize { list: ListRef, max_entries: usize },
    /// Add or remove entries (`ModifyManagedPrefixList`; at most
    /// [`ENTRIES_PER_CALL`] of each; calls on one list go one at a time).
    Modify {
        list: ListRef,
        add: Vec<IpNet>,
        remove: Vec<IpNet>,
    },
}

impl ListCall {
    /// The EC2 API call that carries it out.
    pub fn api_call(&self) -> &'static str {
        match self {
            ListCall::Route(op) => op.action.api_call(),
            ListCall::Repoint { .. } => "ReplaceRoute",
            ListCall::RouteList { .. } => "CreateRoute",
            ListCall::Create { .. } => "CreateManagedPrefixList",
            ListCall::Resize { .. } | ListCall::Modify { .. } => "ModifyManagedPrefixList",
        }
    }
}

impl Lists {
    pub fn list(&self, id: &str) -> Option<&PrefixList> {
        self.lists.iter().find(|l| l.id == id)
    }

    /// The route to `list` in `table`.
    pub fn route(&self, table: &str, list: &str) -> Option<&ListRoute> {
        (self.routes.iter()).find(|r| r.table == table && r.list == list)
    }

    /// The lists `table` routes, by id.
    pub fn routed_in<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a ListRoute> {
        let mut routes: Vec<&ListRoute> =
            (self.routes.iter()).filter(|r| r.table == table).collect();
        routes.sort_by(|a, b| a.list.cmp(&b.list));
        routes.into_iter()
    }

    /// Where `list` goes in each table that routes it.
    pub fn signature(&self, list: &str) -> BTreeMap<String, Target> {
        (self.routes.iter())
            .filter(|r| r.list == list)
            .map(|r| (r.table.clone(), r.target.clone()))
            .collect()
    }
}

pub fn target_of(to: &RouteTarget) -> Target {
    match to {
        RouteTarget::Router(router) => Target::Interface(router.eni.clone()),
        RouteTarget::Gateway(id) => Target::Other(id.clone()),
    }
}

impl Lists {
    /// Carry out one call as EC2 would (the embedded VPC's lists, and the
    /// tests' model); `created` holds the ids given to new lists.
    pub fn apply(
        &mut self,
        state: &mut VpcState,
        call: &ListCall,
        created: &mut Vec<String>,
    ) -> Result<(), RouteError> {
        let resolve = |list: &ListRef, created: &[String]| match list {
            ListRef::Existing(id) => Ok(id.clone()),
            ListRef::New(k) => created.get(*k).cloned().ok_or_else(|| RouteError::Other {
                code: "InvalidPrefixListID.NotFound".into(),
                message: format!("new list {k} was not created"),
            }),
        };
        let missing = |id: &str| RouteError::Other {
            code: "InvalidPrefixListID.NotFound".into(),
            message: id.to_string(),
        };
        match call {
            ListCall::Route(op) => state.apply(op),
            ListCall::Repoint { table, list, to } => {
                let id = resolve(list, created)?;
                let route = (self.routes.iter_mut())
                    .find(|r| &r.table == table && r.list == id)
                    .ok_or_else(|| RouteError::Other {
                        code: "InvalidRoute.NotFound".into(),
                        message: format!("{id} in {table}"),
                    })?;
                route.target = target_of(to);
                route.blackhole = false;
                Ok(())
            }
            ListCall::RouteList { table, list, to } => {
                let id = resolve(list, created)?;
                if state.table(table).is_none() {
                    return Err(RouteError::NoSuchTable(table.clone()));
                }
                if self.route(table, &id).is_some() {
                    return Err(RouteError::Other {
                        code: "RouteAlreadyExists".into(),
                        message: format!("{id} in {table}"),
                    });
                }
                self.routes.push(ListRoute {
                    table: table.clone(),
                    list: id,
                    target: target_of(to),
                    blackhole: false,
                });
                Ok(())
            }
            ListCall::Create {
                ipv6,
                max_entries,
                entries,
                ..
            } => {
                // Lists are never deleted here: their count numbers them.
                let id = format!("pl-{:017x}", self.lists.len() + 1);
                self.lists.push(PrefixList {
                    id: id.clone(),
                    ipv6: *ipv6,
                    entries: entries.iter().copied().collect(),
                    max_entries: *max_entries,
                });
                created.push(id);
                Ok(())
            }
            ListCall::Resize { list, max_entries } => {
                let id = resolve(list, created)?;
                let list =
                    (self.lists.iter_mut().find(|l| l.id == id)).ok_or_else(|| missing(&id))?;
                list.max_entries = *max_entries;
                Ok(())
            }
            ListCall::Modify { list, add, remove } => {
                let id = resolve(list, created)?;
                let list =
                    (self.lists.iter_mut().find(|l| l.id == id)).ok_or_else(|| missing(&id))?;
                let mut entries = list.entries.clone();
                entries.extend(add);
                for cidr in remove {
                    entries.remove(cidr);
                }
                if entries.len() > list.max_entries {
                    return Err(RouteError::Other {
                        code: "PrefixListMaxEntriesExceeded".into(),
                        message: format!("{id} holds at most {}", list.max_entries),
                    });
                }
                list.entries = entries;
                Ok(())
            }
        }
    }
}
