//! Describing the VPC: every page of each describe call, turned into the
//! planner's model.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{InstanceStateName, RouteOrigin as Ec2Origin, RouteState};
use ipnet::IpNet;

use super::Ec2Vpc;
use super::client::unavailable;
use crate::cloud::CloudError;
use crate::cloud::model::{Interface, Route, RouteOrigin, RouteTable, Subnet, Target};

/// A scheduled event drains its instance from this long before it starts.
pub const MAINTENANCE_LEAD: std::time::Duration = std::time::Duration::from_secs(1800);
/// The scheduled events that take an instance down.
const DOWNTIME: [&str; 5] = [
    "instance-reboot",
    "system-reboot",
    "system-maintenance",
    "instance-retirement",
    "instance-stop",
];

/// Page size of the paginated describes (DescribeRouteTables allows 100).
const PAGE: i32 = 1000;
const ROUTE_TABLE_PAGE: i32 = 100;

impl Ec2Vpc {
    /// Every page of a describe call: `request` sends one for a page token,
    /// `collect` adds a page's items and gives the next token.
    pub(super) async fn describe_all<T, P, E, Fut>(
        &self,
        action: &'static str,
        request: impl Fn(Option<String>) -> Fut,
        mut collect: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Vec<T>, CloudError>
    where
        Fut: Future<Output = Result<P, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut items = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .call(&self.budget.describe, action, || request(token.clone()))
                .await
                .map_err(|e| unavailable(action, &e))?;
            token = collect(page, &mut items);
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    pub(super) async fn subnets(&self) -> Result<Vec<Subnet>, CloudError> {
        let request = |token| {
            (self.client.describe_subnets())
                .filters(self.vpc_filter())
                .max_results(PAGE)
                .set_next_token(token)
                .send()
        };
        self.describe_all("DescribeSubnets", request, |page, subnets| {
            subnets.extend(page.subnets().iter().filter_map(|s| {
                Some(Subnet {
                    id: s.subnet_id()?.to_string(),
                    az: s.availability_zone().unwrap_or_default().to_string(),
                })
            }));
            page.next_token().map(str::to_string)
        })
        .await
    }

    /// The ENIs of the VPC's instances, with their instance's state.
    pub(super) async fn interfaces(&self) -> Result<Vec<Interface>, CloudError> {
        let request = |token| {
            (self.client.describe_instances())
                .filters(self.vpc_filter())
                .max_results(PAGE)
                .set_next_token(token)
                .send()
        };
        self.describe_all("DescribeInstances", request, |page, interfaces| {
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let state = instance.state().and_then(|s| s.name());
                let running = state == Some(&InstanceStateName::Running);
                for eni in instance.network_interfaces() {
                    let Some(id) = eni.network_interface_id() else {
                        continue;
                    };
                    let v4 = eni
                        .private_ip_addresses()
                        .iter()
                        .filter_map(|a| a.private_ip_address());
                    let v6 = eni.ipv6_addresses().iter().filter_map(|a| a.ipv6_address());
                    interfaces.push(Interface {
                        id: id.to_string(),
                        instance: instance.instance_id().map(str::to_string),
                        subnet: eni.subnet_id().unwrap_or_default().to_string(),
                        ips: v4.chain(v6).filter_map(|ip| ip.parse().ok()).collect(),
                        running,
                        source_dest_check: eni.source_dest_check().unwrap_or(true),
                        instance_state: state.map(|s| s.as_str().to_string()),
                        maintenance: None,
                    });
                }
            }
            page.next_token().map(str::to_string)
        })
        .await
    }

    /// Instances with a scheduled event that takes them down and starts
    /// within [`MAINTENANCE_LEAD`]: instance -> what and when (events
    /// completed or canceled left out).
    pub(super) async fn maintenance(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, CloudError> {
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("event.code")
            .set_values(Some(DOWNTIME.map(String::from).to_vec()))
            .build();
        let request = |token| {
            (self.client.describe_instance_status())
                .filters(filter.clone())
                .max_results(PAGE)
                .set_next_token(token)
                .send()
        };
        let soon = std::time::SystemTime::now() + MAINTENANCE_LEAD;
        let due = self
            .describe_all("DescribeInstanceStatus", request, |page, due| {
                for status in page.instance_statuses() {
                    let Some(instance) = status.instance_id() else {
                        continue;
                    };
                    let events = status.events().iter().filter(|e| {
                        let description = e.description().unwrap_or_default();
                        !description.starts_with("[Completed]")
                            && !description.starts_with("[Canceled]")
                    });
                    let first = events
                        .filter_map(|e| {
                            let at = std::time::SystemTime::try_from(*e.not_before()?).ok()?;
                            Some((at, e.code()?.as_str().to_string()))
                        })
                        .filter(|(at, _)| *at <= soon)
                        .min();
                    if let Some((at, code)) = first {
                        let at = humantime::format_rfc3339_seconds(at);
                        due.push((
                            instance.to_string(),
                            format!("EC2 scheduled {code} at {at}"),
                        ));
                    }
                }
                page.next_token().map(str::to_string)
            })
            .await?;
        Ok(due.into_iter().collect())
    }

    /// The VPC's tables with their per-CIDR routes; the routes to prefix
    /// lists are kept aside for `describe_lists`.
    pub(super) async fn route_tables(&self) -> Result<Vec<RouteTable>, CloudError> {
        let mut list_routes = Vec::new();
        let request = |token| {
            (self.client.describe_route_tables())
                .filters(self.vpc_filter())
                .max_results(ROUTE_TABLE_PAGE)
                .set_next_token(token)
                .send()
        };
        let tables = self.describe_all("DescribeRouteTables", request, |page, tables| {
            tables.extend(page.route_tables().iter().filter_map(|table| {
                let id = table.route_table_id()?;
                let to_lists = table.routes().iter();
                list_routes.extend(to_lists.filter_map(|r| list_route(id, r)));
                Some(RouteTable {
                    id: id.to_string(),
                    subnets: table
                        .associations()
                        .iter()
                        .filter_map(|a| a.subnet_id().map(str::to_string))
                        .collect(),
                    routes: table.routes().iter().filter_map(route).collect(),
                    main: table.associations().iter().any(|a| a.main() == Some(true)),
                    tags: (table.tags().iter())
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                })
            }));
            page.next_token().map(str::to_string)
        });
        let tables = tables.await?;
        *self.list_routes.lock().expect("list routes lock") = list_routes;
        Ok(tables)
    }
}

/// A route in the planner's terms; `None` for prefix-list destinations
/// (those of vpcrouter's lists are `describe_lists`').
fn route(route: &aws_sdk_ec2::types::Route) -> Option<Route> {
    let destination: IpNet = route
        .destination_cidr_block()
        .or(route.destination_ipv6_cidr_block())?
        .parse()
        .ok()?;
    Some(Route {
        destination,
        target: target(route),
        blackhole: route.state() == Some(&RouteState::Blackhole),
        origin: match route.origin() {
            None | Some(Ec2Origin::CreateRoute) => RouteOrigin::CreateRoute,
            Some(Ec2Origin::CreateRouteTable) => RouteOrigin::CreateRouteTable,
            Some(Ec2Origin::EnableVgwRoutePropagation) => RouteOrigin::EnableVgwRoutePropagation,
            Some(other) => RouteOrigin::Other(crate::text::clip(other.as_str(), 64).into_owned()),
        },
    })
}

/// Where a route points, in the planner's terms.
fn target(route: &aws_sdk_ec2::types::Route) -> Target {
    if let Some(eni) = route.network_interface_id() {
        Target::Interface(eni.to_string())
    } else if let Some(instance) = route.instance_id() {
        Target::Instance(instance.to_string())
    } else {
        let other = [
            route.gateway_id(),
            route.nat_gateway_id(),
            route.vpc_peering_connection_id(),
            route.transit_gateway_id(),
            route.egress_only_internet_gateway_id(),
            route.local_gateway_id(),
            route.carrier_gateway_id(),
        ];
        Target::Other(
            other
                .into_iter()
                .flatten()
                .next()
                .unwrap_or("?")
                .to_string(),
        )
    }
}

/// A route whose destination is a prefix list, as the model has it.
fn list_route(
    table: &str,
    route: &aws_sdk_ec2::types::Route,
) -> Option<crate::cloud::lists::ListRoute> {
    let list = route.destination_prefix_list_id()?;
    Some(crate::cloud::lists::ListRoute {
        table: table.to_string(),
        list: list.to_string(),
        target: target(route),
        blackhole: route.state() == Some(&RouteState::Blackhole),
    })
}
