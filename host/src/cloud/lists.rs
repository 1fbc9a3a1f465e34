//! Customer-managed prefix lists, as vpcrouter keeps them in prefix-list
//! mode (`--route-mode prefix-list`): the lists and the routes to them as
//! observed, the calls that change them, and how EC2 (or the embedded
//! VPC) carries those out. What to call is the planner's
//! (`reconcile::lists`).

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use super::model::{RouteError, Target, VpcState};
use super::operation::{Operation, RouteTarget};
use super::{CloudError, VpcBackend};

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
    /// Remove `table`'s route to an empty list (`DeleteRoute`).
    Unroute { table: String, list: String },
    /// Delete an empty list no table routes (`DeleteManagedPrefixList`).
    Delete { list: String },
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
            ListCall::Unroute { .. } => "DeleteRoute",
            ListCall::Delete { .. } => "DeleteManagedPrefixList",
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

impl ListCall {
    /// The call with the lists it names by number (made by the same plan)
    /// named by id, from `created`.
    pub fn resolved(&self, created: &BTreeMap<usize, String>) -> Result<ListCall, String> {
        let resolve = |list: &ListRef| match list {
            ListRef::Existing(_) => Ok(list.clone()),
            ListRef::New(k) => (created.get(k).cloned())
                .map(ListRef::Existing)
                .ok_or_else(|| format!("not sent: new list {k} was not created")),
        };
        Ok(match self {
            ListCall::Repoint { table, list, to } => ListCall::Repoint {
                table: table.clone(),
                list: resolve(list)?,
                to: to.clone(),
            },
            ListCall::RouteList { table, list, to } => ListCall::RouteList {
                table: table.clone(),
                list: resolve(list)?,
                to: to.clone(),
            },
            ListCall::Resize { list, max_entries } => ListCall::Resize {
                list: resolve(list)?,
                max_entries: *max_entries,
            },
            ListCall::Modify { list, add, remove } => ListCall::Modify {
                list: resolve(list)?,
                add: add.clone(),
                remove: remove.clone(),
            },
            ListCall::Route(_)
            | ListCall::Create { .. }
            | ListCall::Unroute { .. }
            | ListCall::Delete { .. } => self.clone(),
        })
    }

    /// One line for the log: what the call does.
    pub fn describe(&self) -> String {
        let name = |list: &ListRef| match list {
            ListRef::Existing(id) => id.clone(),
            ListRef::New(k) => format!("new list {k}"),
        };
        match self {
            ListCall::Route(op) => format!(
                "{} {} {} {}",
                op.action.name(),
                op.table,
                op.destination,
                op.target
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            ListCall::Repoint { table, list, to } => {
                format!("{table}: {} now to {to}", name(list))
            }
            ListCall::RouteList { table, list, to } => {
                format!("{table}: {} routed to {to}", name(list))
            }
            ListCall::Create {
                entries,
                max_entries,
                ..
            } => format!(
                "a list of {} entries (at most {max_entries})",
                entries.len()
            ),
            ListCall::Resize { list, max_entries } => {
                format!("{} to hold at most {max_entries}", name(list))
            }
            ListCall::Modify { list, add, remove } => {
                format!(
                    "{}: {} added, {} removed",
                    name(list),
                    add.len(),
                    remove.len()
                )
            }
            ListCall::Unroute { table, list } => format!("{table}: {list} no longer routed"),
            ListCall::Delete { list } => format!("{list} deleted"),
        }
    }
}

/// A VPC that keeps prefix lists.
pub trait ListBackend: VpcBackend {
    /// The lists vpcrouter keeps, and the routes to them.
    fn describe_lists(&self) -> impl Future<Output = Result<Lists, CloudError>> + Send;
    /// One call, its lists named by id; a new list's id.
    fn apply_list(
        &self,
        call: &ListCall,
    ) -> impl Future<Output = Result<Option<String>, CloudError>> + Send;
}

/// The id the embedded VPC gives the next list: one past the highest.
pub fn next_id(lists: &Lists) -> String {
    let highest = (lists.lists.iter())
        .filter_map(|l| u64::from_str_radix(l.id.strip_prefix("pl-")?, 16).ok())
        .max()
        .unwrap_or(0);
    format!("pl-{:017x}", highest + 1)
}

impl Lists {
    /// Carry out one call, its lists named by id, as EC2 would (the
    /// embedded VPC, the daemon's kept model, the tests); a new list is
    /// given the id `new_id` makes, and that id is the answer.
    pub fn apply(
        &mut self,
        state: &mut VpcState,
        call: &ListCall,
        new_id: impl FnOnce(&Lists) -> String,
    ) -> Result<Option<String>, RouteError> {
        let id_of = |list: &ListRef| match list {
            ListRef::Existing(id) => Ok(id.clone()),
            ListRef::New(k) => Err(RouteError::Other {
                code: "InvalidPrefixListID.Malformed".into(),
                message: format!("new list {k} named by number"),
            }),
        };
        let missing = |id: &str| RouteError::Other {
            code: "InvalidPrefixListID.NotFound".into(),
            message: id.to_string(),
        };
        match call {
            ListCall::Route(op) => state.apply(op).map(|()| None),
            ListCall::Repoint { table, list, to } => {
                let id = id_of(list)?;
                let route = (self.routes.iter_mut())
                    .find(|r| &r.table == table && r.list == id)
                    .ok_or_else(|| RouteError::Other {
                        code: "InvalidRoute.NotFound".into(),
                        message: format!("{id} in {table}"),
                    })?;
                route.target = target_of(to);
                route.blackhole = false;
                Ok(None)
            }
            ListCall::RouteList { table, list, to } => {
                let id = id_of(list)?;
                if state.table(table).is_none() {
                    return Err(RouteError::NoSuchTable(table.clone()));
                }
                if self.list(&id).is_none() {
                    return Err(missing(&id));
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
                Ok(None)
            }
            ListCall::Create {
                ipv6,
                max_entries,
                entries,
                ..
            } => {
                let id = new_id(self);
                self.lists.push(PrefixList {
                    id: id.clone(),
                    ipv6: *ipv6,
                    entries: entries.iter().copied().collect(),
                    max_entries: *max_entries,
                });
                Ok(Some(id))
            }
            ListCall::Resize { list, max_entries } => {
                let id = id_of(list)?;
                let list =
                    (self.lists.iter_mut().find(|l| l.id == id)).ok_or_else(|| missing(&id))?;
                if *max_entries < list.entries.len() {
                    return Err(RouteError::Other {
                        code: "InvalidParameterValue".into(),
                        message: format!("{id} holds more than {max_entries}"),
                    });
                }
                list.max_entries = *max_entries;
                Ok(None)
            }
            ListCall::Modify { list, add, remove } => {
                let id = id_of(list)?;
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
                Ok(None)
            }
            ListCall::Unroute { table, list } => {
                let at = (self.routes.iter())
                    .position(|r| &r.table == table && &r.list == list)
                    .ok_or_else(|| RouteError::Other {
                        code: "InvalidRoute.NotFound".into(),
                        message: format!("{list} in {table}"),
                    })?;
                self.routes.remove(at);
                Ok(None)
            }
            ListCall::Delete { list } => {
                if self.routes.iter().any(|r| &r.list == list) {
                    return Err(RouteError::Other {
                        code: "InvalidPrefixListModification".into(),
                        message: format!("{list} is still routed"),
                    });
                }
                let at =
                    (self.lists.iter().position(|l| &l.id == list)).ok_or_else(|| missing(list))?;
                self.lists.remove(at);
                Ok(None)
            }
        }
    }
}
