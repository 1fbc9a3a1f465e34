//! Prefix lists on EC2 (prefix-list mode). vpcrouter's lists carry the tag
//! `vpcrouter:vpc` = the VPC's id. Each edit names the version it edits
//! (EC2 refuses a stale one: someone else changed the list, and the
//! reconciler observes again) and waits for the list to settle before the
//! next, as EC2 refuses an edit while one is in progress.

use aws_sdk_ec2::types::{
    AddPrefixListEntry, Filter, PrefixListState, RemovePrefixListEntry, ResourceType, Tag,
    TagSpecification,
};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

use super::client::unavailable;
use super::{Destination, Ec2Vpc, Targets};
use crate::cloud::lists::{ListBackend, ListCall, ListRef, Lists, PrefixList};
use crate::cloud::model::RouteError;
use crate::cloud::{CloudError, VpcBackend};

/// The tag that makes a list vpcrouter's, for the VPC it names.
pub const LIST_TAG: &str = "vpcrouter:vpc";
/// A list still being changed after this long is a failure.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// DescribeManagedPrefixLists and GetManagedPrefixListEntries pages.
const LIST_PAGE: i32 = 100;

impl Ec2Vpc {
    /// vpcrouter's lists of this VPC, with their entries (and each one's
    /// version, kept for the next edit).
    async fn our_lists(&self) -> Result<Vec<PrefixList>, CloudError> {
        let ours = Filter::builder()
            .name(format!("tag:{LIST_TAG}"))
            .values(&self.vpc)
            .build();
        let request = |token| {
            (self.client.describe_managed_prefix_lists())
                .filters(ours.clone())
                .max_results(LIST_PAGE)
                .set_next_token(token)
                .send()
        };
        let described = self
            .describe_all("DescribeManagedPrefixLists", request, |page, lists| {
                lists.extend(page.prefix_lists().iter().cloned());
                page.next_token().map(str::to_string)
            })
            .await?;
        let mut lists = Vec::with_capacity(described.len());
        for list in described {
            // A list being deleted, or deleted, is shown a while longer.
            let deleted = matches!(
                list.state(),
                Some(PrefixListState::DeleteInProgress | PrefixListState::DeleteComplete)
            );
            let Some(id) = list.prefix_list_id().filter(|_| !deleted) else {
                continue;
            };
            let request = |token| {
                (self.client.get_managed_prefix_list_entries())
                    .prefix_list_id(id)
                    .max_results(LIST_PAGE)
                    .set_next_token(token)
                    .send()
            };
            let entries = self
                .describe_all("GetManagedPrefixListEntries", request, |page, entries| {
                    let cidrs = page.entries().iter().filter_map(|e| e.cidr());
                    entries.extend(cidrs.filter_map(|c| c.parse::<IpNet>().ok()));
                    page.next_token().map(str::to_string)
                })
                .await?;
            self.list_versions
                .lock()
                .expect("versions lock")
                .insert(id.to_string(), list.version().unwrap_or(1));
            lists.push(PrefixList {
                id: id.to_string(),
                ipv6: list.address_family() == Some("IPv6"),
                entries: entries.into_iter().collect(),
                max_entries: list.max_entries().unwrap_or_default().max(0) as usize,
            });
        }
        Ok(lists)
    }

    /// Wait until `id` is no longer being created or changed.
    async fn settled(&self, id: &str) -> Result<(), CloudError> {
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            let answer = self
                .call(&self.budget.describe, "DescribeManagedPrefixLists", || {
                    (self.client.describe_managed_prefix_lists())
                        .prefix_list_ids(id)
                        .send()
                })
                .await
                .map_err(|e| unavailable("DescribeManagedPrefixLists", &e))?;
            let list = answer.prefix_lists().first();
            match list.and_then(|l| l.state()) {
                Some(PrefixListState::CreateComplete | PrefixListState::ModifyComplete) => {
                    return Ok(());
                }
                Some(failed @ (PrefixListState::CreateFailed | PrefixListState::ModifyFailed)) => {
                    return Err(CloudError::Refused(RouteError::Other {
                        code: failed.as_str().to_string(),
                        message: list.and_then(|l| l.state_message()).unwrap_or(id).into(),
                    }));
                }
                state if Instant::now() >= deadline => {
                    return Err(CloudError::Unavailable(format!(
                        "{id} still {} after {} s",
                        state.map_or("unknown", |s| s.as_str()),
                        SETTLE_WITHIN.as_secs()
                    )));
                }
                _ => tokio::time::sleep(SETTLE_POLL).await,
            }
        }
    }

    /// One edit of a list at the version last seen; the list's next
    /// version is kept once it has settled.
    async fn edit(
        &self,
        id: &str,
        edit: impl Fn(
            aws_sdk_ec2::operation::modify_managed_prefix_list::builders::ModifyManagedPrefixListFluentBuilder,
        ) -> aws_sdk_ec2::operation::modify_managed_prefix_list::builders::ModifyManagedPrefixListFluentBuilder,
    ) -> Result<(), CloudError> {
        let version = self
            .list_versions
            .lock()
            .expect("versions lock")
            .get(id)
            .copied();
        let version = version.ok_or_else(|| unknown_list(id))?;
        let answer = self
            .call(&self.budget.mutating, "ModifyManagedPrefixList", || {
                edit(self.client.modify_managed_prefix_list())
                    .prefix_list_id(id)
                    .current_version(version)
                    .send()
            })
            .await
            .map_err(|e| refused("ModifyManagedPrefixList", &e))?;
        let next = (answer.prefix_list().and_then(|l| l.version())).unwrap_or(version + 1);
        self.list_versions
            .lock()
            .expect("versions lock")
            .insert(id.to_string(), next);
        self.settled(id).await
    }
}

fn unknown_list(id: &str) -> CloudError {
    CloudError::Unavailable(format!("{id}: not among the lists last described"))
}

/// EC2's answer as a refusal the reconciler reports with its code (a
/// version mismatch, a table that cannot hold the list, ...), or an
/// outage.
fn refused<E>(action: &str, error: &aws_sdk_ec2::error::SdkError<E>) -> CloudError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    match (error, error.code()) {
        (aws_sdk_ec2::error::SdkError::ServiceError(service), Some(code))
            if service.raw().status().is_client_error() =>
        {
            CloudError::Refused(RouteError::Other {
                code: code.to_string(),
                message: format!("{action}: {}", error.message().unwrap_or_default()),
            })
        }
        _ => unavailable(action, error),
    }
}

fn id_of(list: &ListRef) -> Result<&str, CloudError> {
    match list {
        ListRef::Existing(id) => Ok(id),
        ListRef::New(k) => Err(CloudError::Unavailable(format!(
            "new list {k} named by number"
        ))),
    }
}

impl ListBackend for Ec2Vpc {
    async fn describe_lists(&self) -> Result<Lists, CloudError> {
        let lists = self.our_lists().await?;
        let ours: BTreeSet<&str> = lists.iter().map(|l| l.id.as_str()).collect();
        let routes = (self.list_routes.lock().expect("list routes lock").iter())
            .filter(|r| ours.contains(r.list.as_str()))
            .cloned()
            .collect();
        Ok(Lists { lists, routes })
    }

    async fn apply_list(&self, call: &ListCall) -> Result<Option<String>, CloudError> {
        let bucket = &self.budget.mutating;
        match call {
            ListCall::Route(op) => self.apply(op).await.map(|()| None),
            ListCall::Repoint { table, list, to } | ListCall::RouteList { table, list, to } => {
                let from = Destination {
                    list: Some(id_of(list)?.to_string()),
                    ..Destination::default()
                };
                let to = Targets::of(Some(to));
                let action = call.api_call();
                let sent = match call {
                    ListCall::Repoint { .. } => self
                        .call(bucket, action, || self.replace_route(table, &from, &to))
                        .await
                        .map(drop)
                        .map_err(|e| refused(action, &e)),
                    // A table whose quota cannot hold the list's maximum
                    // more: said as any full table is.
                    _ => self
                        .call(bucket, action, || self.create_route(table, &from, &to))
                        .await
                        .map(drop)
                        .map_err(|e| match refused(action, &e) {
                            CloudError::Refused(RouteError::Other { code, .. })
                                if code == "RouteLimitExceeded" =>
                            {
                                CloudError::Refused(RouteError::LimitExceeded(table.clone()))
                            }
                            other => other,
                        }),
                };
                sent.map(|()| None)
            }
            ListCall::Create {
                ipv6,
                max_entries,
                entries,
                ..
            } => {
                let tag = Tag::builder().key(LIST_TAG).value(&self.vpc).build();
                let tags = (TagSpecification::builder())
                    .resource_type(ResourceType::PrefixList)
                    .tags(tag)
                    .build();
                let entries: Vec<AddPrefixListEntry> = (entries.iter())
                    .map(|c| AddPrefixListEntry::builder().cidr(c.to_string()).build())
                    .collect();
                let made = self
                    .call(bucket, "CreateManagedPrefixList", || {
                        (self.client.create_managed_prefix_list())
                            .prefix_list_name(format!("vpcrouter-{}", self.vpc))
                            .address_family(if *ipv6 { "IPv6" } else { "IPv4" })
                            .max_entries(*max_entries as i32)
                            .set_entries(Some(entries.clone()))
                            .tag_specifications(tags.clone())
                            .send()
                    })
                    .await
                    .map_err(|e| refused("CreateManagedPrefixList", &e))?;
                let list = made.prefix_list();
                let id = (list.and_then(|l| l.prefix_list_id())).ok_or_else(|| {
                    CloudError::Unavailable("CreateManagedPrefixList: no id in the answer".into())
                })?;
                let version = list.and_then(|l| l.version()).unwrap_or(1);
                self.list_versions
                    .lock()
                    .expect("versions lock")
                    .insert(id.to_string(), version);
                self.settled(id).await?;
                Ok(Some(id.to_string()))
            }
            ListCall::Resize { list, max_entries } => {
                let size = *max_entries as i32;
                self.edit(id_of(list)?, |edit| edit.max_entries(size))
                    .await
                    .map(|()| None)
            }
            ListCall::Modify { list, add, remove } => {
                let add: Vec<AddPrefixListEntry> = (add.iter())
                    .map(|c| AddPrefixListEntry::builder().cidr(c.to_string()).build())
                    .collect();
                let remove: Vec<RemovePrefixListEntry> = (remove.iter())
                    .map(|c| RemovePrefixListEntry::builder().cidr(c.to_string()).build())
                    .collect();
                let edit = |edit: aws_sdk_ec2::operation::modify_managed_prefix_list::builders::ModifyManagedPrefixListFluentBuilder| {
                    edit.set_add_entries((!add.is_empty()).then(|| add.clone()))
                        .set_remove_entries((!remove.is_empty()).then(|| remove.clone()))
                };
                self.edit(id_of(list)?, edit).await.map(|()| None)
            }
            ListCall::Unroute { table, list } => {
                let from = Destination {
                    list: Some(list.clone()),
                    ..Destination::default()
                };
                self.call(bucket, "DeleteRoute", || self.delete_route(table, &from))
                    .await
                    .map(|_| None)
                    .map_err(|e| refused("DeleteRoute", &e))
            }
            ListCall::Delete { list } => {
                self.call(bucket, "DeleteManagedPrefixList", || {
                    (self.client.delete_managed_prefix_list())
                        .prefix_list_id(list)
                        .send()
                })
                .await
                .map_err(|e| refused("DeleteManagedPrefixList", &e))?;
                self.list_versions
                    .lock()
                    .expect("versions lock")
                    .remove(list);
                Ok(None)
            }
        }
    }
}
