//! The EC2 backend: thin. Describes the VPC into the planner's model and
//! carries out route operations through the official SDK, every call paced
//! by the process-wide [`Budget`] and retried (throttling, 5xx, timeouts)
//! with jittered exponential backoff. The SDK's own retries are off so that
//! every attempt is paced and counted here.

mod client;
mod describe;
mod lists;
mod metadata;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, Tag};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::{BucketSize, Budget};
use super::claims::TagChange;
use super::model::{Subnet, VpcState};
use super::operation::{Action, Operation, RouteTarget};
use super::{CloudError, VpcBackend};
pub use client::Outcome;
use client::{Throttling, describe_error, route_error, unavailable};
pub use metadata::discover;

/// One attempt may take this long (a slow EC2 must not hold a failover).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Settings {
    pub region: String,
    pub vpc: String,
    /// Talk to this endpoint instead of EC2's (moto, a VPC endpoint).
    /// `AWS_ENDPOINT_URL` is honoured too, through the SDK.
    pub endpoint: Option<String>,
    pub mutating: BucketSize,
    pub describe: BucketSize,
}

/// Why the daemon cannot start against this VPC.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("VPC {0} does not exist in region {1} (-v/--vpc)")]
    NoSuchVpc(String, String),
    #[error("{0}")]
    Unavailable(String),
}

pub struct Ec2Vpc {
    client: Client,
    vpc: String,
    region: String,
    budget: Arc<Budget>,
    calls: Mutex<BTreeMap<(&'static str, Outcome), u64>>,
    throttling: Throttling,
    /// The routes to prefix lists the last DescribeRouteTables found.
    list_routes: Mutex<Vec<crate::cloud::lists::ListRoute>>,
    /// The version of each of vpcrouter's lists, for its next edit.
    list_versions: Mutex<BTreeMap<String, i64>>,
    /// The subnets last described. A subnet's AZ never changes, so they
    /// are described again only when a subnet appears that is not here.
    subnets: Mutex<Option<Vec<Subnet>>>,
    /// The last reason scheduled events could not be read (said once).
    maintenance_problem: Mutex<Option<String>>,
}

impl Ec2Vpc {
    /// A client for the standard credential chain.
    pub async fn new(settings: &Ec2Settings) -> Self {
        let region = Some(settings.region.as_str());
        let endpoint = settings.endpoint.as_deref();
        let config = crate::aws::sdk_config(region, endpoint, ATTEMPT_TIMEOUT).await;
        Self::with_config((&config).into(), settings)
    }

    /// A client from an SDK configuration made elsewhere (tests give static
    /// credentials this way). The SDK's retries are turned off: ours pace
    /// and count every attempt.
    pub fn with_config(config: aws_sdk_ec2::config::Builder, settings: &Ec2Settings) -> Self {
        let config = config
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(crate::aws::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
            vpc: settings.vpc.clone(),
            region: settings.region.clone(),
            budget: Arc::new(Budget::new(settings.mutating, settings.describe)),
            calls: Mutex::new(BTreeMap::new()),
            throttling: Throttling::default(),
            list_routes: Mutex::new(Vec::new()),
            list_versions: Mutex::new(BTreeMap::new()),
            subnets: Mutex::new(None),
            maintenance_problem: Mutex::new(None),
        }
    }

    /// Does the VPC exist? A definite no is a start-up error; not being able
    /// to ask is not (the daemon keeps trying).
    pub async fn check_vpc(&self) -> Result<(), StartError> {
        let answer = self
            .call(&self.budget.describe, "DescribeVpcs", || {
                self.client.describe_vpcs().vpc_ids(&self.vpc).send()
            })
            .await;
        match answer {
            Ok(found) if !found.vpcs().is_empty() => Ok(()),
            Ok(_) => Err(StartError::NoSuchVpc(self.vpc.clone(), self.region.clone())),
            Err(e) if e.code() == Some("InvalidVpcID.NotFound") => {
                Err(StartError::NoSuchVpc(self.vpc.clone(), self.region.clone()))
            }
            Err(e) => Err(StartError::Unavailable(describe_error("DescribeVpcs", &e))),
        }
    }

    /// Calls made so far: (action, outcome) -> count.
    pub fn calls(&self) -> BTreeMap<(&'static str, Outcome), u64> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// The VPC this backend manages.
    pub fn vpc_id(&self) -> &str {
        &self.vpc
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }

    fn vpc_filter(&self) -> Filter {
        Filter::builder().name("vpc-id").values(&self.vpc).build()
    }
}

/// Where a route goes from, as the API takes it: an IPv4 or IPv6 CIDR,
/// or a prefix list.
#[derive(Default)]
struct Destination {
    v4: Option<String>,
    v6: Option<String>,
    list: Option<String>,
}

/// A route call's builder with its table and destination set (CreateRoute,
/// ReplaceRoute and DeleteRoute take the same setters, on three SDK types
/// with no trait in common), and with `to:` its target.
macro_rules! route_call {
    ($builder:expr, $table:expr, $from:expr) => {
        $builder
            .route_table_id($table)
            .set_destination_cidr_block($from.v4.clone())
            .set_destination_ipv6_cidr_block($from.v6.clone())
            .set_destination_prefix_list_id($from.list.clone())
    };
    ($builder:expr, $table:expr, $from:expr, to: $to:expr) => {
        route_call!($builder, $table, $from)
            .set_network_interface_id($to.eni.clone())
            .set_nat_gateway_id($to.nat_gateway.clone())
            .set_gateway_id($to.gateway.clone())
            .set_transit_gateway_id($to.transit_gateway.clone())
            .set_vpc_peering_connection_id($to.peering.clone())
    };
}

impl Ec2Vpc {
    /// One CreateRoute (not paced here).
    fn create_route(
        &self,
        table: &str,
        from: &Destination,
        to: &Targets,
    ) -> impl Future<
        Output = Result<
            aws_sdk_ec2::operation::create_route::CreateRouteOutput,
            aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::create_route::CreateRouteError>,
        >,
    > {
        route_call!(self.client.create_route(), table, from, to: to).send()
    }

    /// One ReplaceRoute (not paced here).
    fn replace_route(
        &self,
        table: &str,
        from: &Destination,
        to: &Targets,
    ) -> impl Future<
        Output = Result<
            aws_sdk_ec2::operation::replace_route::ReplaceRouteOutput,
            aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::replace_route::ReplaceRouteError>,
        >,
    > {
        route_call!(self.client.replace_route(), table, from, to: to).send()
    }

    /// One DeleteRoute (not paced here).
    fn delete_route(
        &self,
        table: &str,
        from: &Destination,
    ) -> impl Future<
        Output = Result<
            aws_sdk_ec2::operation::delete_route::DeleteRouteOutput,
            aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::delete_route::DeleteRouteError>,
        >,
    > {
        route_call!(self.client.delete_route(), table, from).send()
    }
}

/// The destination as the API wants it: (IPv4 CIDR, IPv6 CIDR).
fn destination(op: &Operation) -> (Option<String>, Option<String>) {
    match op.destination {
        IpNet::V4(v4) => (Some(v4.to_string()), None),
        IpNet::V6(v6) => (None, Some(v6.to_string())),
    }
}

/// A route's target as EC2's calls take it: one field set, by its kind.
#[derive(Default)]
struct Targets {
    eni: Option<String>,
    nat_gateway: Option<String>,
    gateway: Option<String>,
    transit_gateway: Option<String>,
    peering: Option<String>,
}

impl Targets {
    fn of(target: Option<&RouteTarget>) -> Self {
        let mut to = Targets::default();
        match target {
            None => {}
            Some(RouteTarget::Router(router)) => to.eni = Some(router.eni.clone()),
            Some(RouteTarget::Gateway(id)) => {
                let field = match id.split('-').next() {
                    Some("nat") => &mut to.nat_gateway,
                    Some("tgw") => &mut to.transit_gateway,
                    Some("pcx") => &mut to.peering,
                    _ => &mut to.gateway,
                };
                *field = Some(id.clone());
            }
        }
        to
    }
}

impl VpcBackend for Ec2Vpc {
    /// Instances with their ENIs and route tables, concurrently, both
    /// filtered to the VPC: what can change by hand. Subnets only at first
    /// and when one appears that was not described yet (two calls per
    /// recheck, not three).
    async fn describe(&self) -> Result<VpcState, CloudError> {
        let (interfaces, route_tables, maintenance) =
            tokio::join!(self.interfaces(), self.route_tables(), self.maintenance());
        let (mut interfaces, route_tables) = (interfaces?, route_tables?);
        // Auxiliary: without it, nothing is drained early; nothing is lost.
        match maintenance {
            Ok(due) => {
                for interface in &mut interfaces {
                    let instance = interface.instance.as_deref().unwrap_or_default();
                    interface.maintenance = due.get(instance).cloned();
                }
            }
            Err(e) => {
                let said = e.to_string();
                let mut told = self.maintenance_problem.lock().expect("problem lock");
                if told.as_ref() != Some(&said) {
                    tracing::warn!(
                        problem = said,
                        "scheduled events unknown (ec2:DescribeInstanceStatus); routers are not drained before them"
                    );
                    *told = Some(said);
                }
            }
        }
        let known = self.subnets.lock().expect("subnets lock").clone();
        let mut referenced = (interfaces.iter().map(|i| &i.subnet))
            .chain(route_tables.iter().flat_map(|t| &t.subnets))
            .filter(|id| !id.is_empty());
        let subnets = match known {
            Some(known) if referenced.all(|id| known.iter().any(|s| s.id == *id)) => known,
            _ => {
                let subnets = self.subnets().await?;
                *self.subnets.lock().expect("subnets lock") = Some(subnets.clone());
                subnets
            }
        };
        Ok(VpcState {
            subnets,
            interfaces,
            route_tables,
        })
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        let (v4, v6) = destination(op);
        let to = Targets::of(op.target.as_ref());
        let table = &op.table;
        let bucket = &self.budget.mutating;
        let action = op.action.api_call();
        let from = Destination { v4, v6, list: None };
        match op.action {
            Action::Create => self
                .call(bucket, action, || self.create_route(table, &from, &to))
                .await
                .map(drop)
                .map_err(|e| route_error(op, &e)),
            Action::Replace => self
                .call(bucket, action, || self.replace_route(table, &from, &to))
                .await
                .map(drop)
                .map_err(|e| route_error(op, &e)),
            Action::Delete => self
                .call(bucket, action, || self.delete_route(table, &from))
                .await
                .map(drop)
                .map_err(|e| route_error(op, &e)),
        }
    }

    /// The mutating calls above half the burst: the other half stays for
    /// failovers.
    async fn spare_operations(&self) -> usize {
        let reserve = f64::from(self.budget.mutating.size().burst) / 2.0;
        (self.budget.mutating.level().await - reserve).max(0.0) as usize
    }

    fn throttled_since(&self) -> Option<std::time::Instant> {
        self.throttling.since()
    }

    async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
        let off = AttributeBooleanValue::builder().value(false).build();
        self.call(
            &self.budget.mutating,
            "ModifyNetworkInterfaceAttribute",
            || {
                self.client
                    .modify_network_interface_attribute()
                    .network_interface_id(eni)
                    .source_dest_check(off.clone())
                    .send()
            },
        )
        .await
        .map(drop)
        .map_err(|e| unavailable("ModifyNetworkInterfaceAttribute", &e))
    }

    async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
        let table = &change.table;
        let bucket = &self.budget.mutating;
        if !change.set.is_empty() {
            let tags: Vec<Tag> = (change.set.iter())
                .map(|(key, value)| Tag::builder().key(key).value(value).build())
                .collect();
            self.call(bucket, "CreateTags", || {
                (self.client.create_tags())
                    .resources(table)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map_err(|e| unavailable("CreateTags", &e))?;
        }
        if !change.remove.is_empty() {
            let tags: Vec<Tag> = (change.remove.iter())
                .map(|key| Tag::builder().key(key).build())
                .collect();
            self.call(bucket, "DeleteTags", || {
                (self.client.delete_tags())
                    .resources(table)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map_err(|e| unavailable("DeleteTags", &e))?;
        }
        Ok(())
    }
}
