//! The EC2 backend: thin. Describes the VPC into the planner's model and
//! carries out route operations through the official SDK, every call paced
//! by the process-wide [`Budget`] and retried (throttling, 5xx, timeouts)
//! with jittered exponential backoff. The SDK's own retries are off so that
//! every attempt is paced and counted here.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, InstanceStateName, RouteState};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::{BucketSize, Budget, TokenBucket};
use super::model::{Interface, Route, RouteError, RouteTable, Subnet, Target, VpcState};
use super::operation::{Action, Operation};
use super::{CloudError, VpcBackend};

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 5;
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(2);
/// One attempt may take this long (a slow EC2 must not hold a failover).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Page size of the paginated describes.
const PAGE: i32 = 1000;

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

/// How a call ended, for the call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// `RequestLimitExceeded`: EC2's budget was shorter than ours.
    Throttled,
    /// 5xx, timeout, connection failure: retried.
    Failed,
    /// EC2 answered no (bad id, route exists, limit...): not retried.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
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
}

impl Ec2Vpc {
    /// A client for the standard credential chain (environment, profile,
    /// web identity, container or instance role).
    pub async fn new(settings: &Ec2Settings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self::with_config((&loader.load().await).into(), settings)
    }

    /// A client from an SDK configuration made elsewhere (tests give static
    /// credentials this way). The SDK's retries are turned off: ours pace
    /// and count every attempt.
    pub fn with_config(config: aws_sdk_ec2::config::Builder, settings: &Ec2Settings) -> Self {
        let config = config
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
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

    pub fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }

    fn vpc_filter(&self) -> Filter {
        Filter::builder().name("vpc-id").values(&self.vpc).build()
    }

    /// One EC2 call, paced by `bucket`; throttling, 5xx and timeouts are
    /// retried with full-jitter exponential backoff.
    async fn call<T, E, F, Fut>(
        &self,
        bucket: &TokenBucket,
        action: &'static str,
        send: F,
    ) -> Result<T, SdkError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut delay = RETRY_BASE;
        let mut attempt = 1;
        loop {
            bucket.take().await;
            let sent = std::time::Instant::now();
            let result = send().await;
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) => classify(e),
            };
            crate::metrics::global().ec2_call(action, outcome.as_str(), sent.elapsed());
            *self
                .calls
                .lock()
                .expect("calls lock")
                .entry((action, outcome))
                .or_default() += 1;
            match result {
                Err(e) if matches!(outcome, Outcome::Throttled | Outcome::Failed) => {
                    if attempt == ATTEMPTS {
                        return Err(e);
                    }
                    let pause = delay.mul_f64(fastrand::f64());
                    tracing::debug!(action, attempt, ?pause, "EC2 call retried: {}", causes(&e));
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(RETRY_CAP);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn subnets(&self) -> Result<Vec<Subnet>, CloudError> {
        let mut subnets = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .call(&self.budget.describe, "DescribeSubnets", || {
                    self.client
                        .describe_subnets()
                        .filters(self.vpc_filter())
                        .max_results(PAGE)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| unavailable("DescribeSubnets", &e))?;
            subnets.extend(page.subnets().iter().filter_map(|s| {
                Some(Subnet {
                    id: s.subnet_id()?.to_string(),
                    az: s.availability_zone().unwrap_or_default().to_string(),
                })
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(subnets);
            }
        }
    }

    async fn interfaces(&self) -> Result<Vec<Interface>, CloudError> {
        let mut interfaces = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .call(&self.budget.describe, "DescribeInstances", || {
                    self.client
                        .describe_instances()
                        .filters(self.vpc_filter())
                        .max_results(PAGE)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| unavailable("DescribeInstances", &e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let running =
                    instance.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running);
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
                    });
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(interfaces);
            }
        }
    }

    async fn route_tables(&self) -> Result<Vec<RouteTable>, CloudError> {
        let mut tables = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .call(&self.budget.describe, "DescribeRouteTables", || {
                    self.client
                        .describe_route_tables()
                        .filters(self.vpc_filter())
                        .max_results(100)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| unavailable("DescribeRouteTables", &e))?;
            tables.extend(page.route_tables().iter().filter_map(|table| {
                Some(RouteTable {
                    id: table.route_table_id()?.to_string(),
                    subnets: table
                        .associations()
                        .iter()
                        .filter_map(|a| a.subnet_id().map(str::to_string))
                        .collect(),
                    routes: table.routes().iter().filter_map(route).collect(),
                })
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(tables);
            }
        }
    }
}

/// A route in the planner's terms; `None` for prefix-list destinations,
/// which vpcrouter never manages.
fn route(route: &aws_sdk_ec2::types::Route) -> Option<Route> {
    let destination: IpNet = route
        .destination_cidr_block()
        .or(route.destination_ipv6_cidr_block())?
        .parse()
        .ok()?;
    let target = if let Some(eni) = route.network_interface_id() {
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
    };
    Some(Route {
        destination,
        target,
        blackhole: route.state() == Some(&RouteState::Blackhole),
    })
}

fn classify<E: ProvideErrorMetadata>(error: &SdkError<E>) -> Outcome {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Outcome::Failed
        }
        SdkError::ServiceError(service) => {
            let code = error.code().unwrap_or_default();
            if matches!(
                code,
                "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
            ) {
                Outcome::Throttled
            } else if service.raw().status().is_server_error()
                || matches!(code, "InternalError" | "ServiceUnavailable" | "Unavailable")
            {
                Outcome::Failed
            } else {
                Outcome::Refused
            }
        }
        _ => Outcome::Refused,
    }
}

/// `Action: code: message`, or the transport failure, in one line.
fn describe_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: &str,
    error: &SdkError<E>,
) -> String {
    match (error.code(), error.message()) {
        (Some(code), message) => format!("{action}: {code}: {}", message.unwrap_or("")),
        (None, _) => format!("{action}: {}", causes(error)),
    }
}

/// An error and its causes in one line, `a: b: c` (the SDK's errors nest
/// deep, and their outer layers say little).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line: Vec<String> = Vec::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let text = cause.to_string();
        if !line.iter().any(|seen| seen.contains(&text)) {
            line.push(text);
        }
    }
    line.join(": ")
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: &str,
    error: &SdkError<E>,
) -> CloudError {
    CloudError::Unavailable(describe_error(action, error))
}

/// EC2's answer to a route operation as the model's error, if it is one
/// the model knows; otherwise the API failed.
fn route_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    op: &Operation,
    error: &SdkError<E>,
) -> CloudError {
    let table = op.table.clone();
    let refused = match (classify(error), error.code()) {
        (Outcome::Refused, Some("RouteAlreadyExists")) => {
            RouteError::AlreadyExists(op.destination, table)
        }
        (Outcome::Refused, Some("InvalidRoute.NotFound")) => {
            RouteError::NoSuchRoute(op.destination, table)
        }
        (Outcome::Refused, Some("InvalidRouteTableID.NotFound")) => RouteError::NoSuchTable(table),
        (Outcome::Refused, Some("InvalidNetworkInterfaceID.NotFound")) => {
            RouteError::NoSuchInterface(op.target.clone().map(|t| t.0).unwrap_or_default())
        }
        (Outcome::Refused, Some("RouteLimitExceeded")) => RouteError::LimitExceeded(table),
        (Outcome::Refused, Some(code)) => RouteError::Other {
            code: code.to_string(),
            message: error.message().unwrap_or_default().to_string(),
        },
        _ => return unavailable(op.action.api_call(), error),
    };
    CloudError::Refused(refused)
}

/// The destination as the API wants it: (IPv4 CIDR, IPv6 CIDR).
fn destination(op: &Operation) -> (Option<String>, Option<String>) {
    match op.destination {
        IpNet::V4(v4) => (Some(v4.to_string()), None),
        IpNet::V6(v6) => (None, Some(v6.to_string())),
    }
}

impl VpcBackend for Ec2Vpc {
    /// Three describes, concurrently: subnets, instances with their ENIs,
    /// route tables; all filtered to the VPC.
    async fn describe(&self) -> Result<VpcState, CloudError> {
        let (subnets, interfaces, route_tables) =
            tokio::try_join!(self.subnets(), self.interfaces(), self.route_tables())?;
        Ok(VpcState {
            subnets,
            interfaces,
            route_tables,
        })
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        let (v4, v6) = destination(op);
        let eni = op.target.as_ref().map(|(eni, _)| eni.clone());
        let table = &op.table;
        let bucket = &self.budget.mutating;
        let action = op.action.api_call();
        match op.action {
            Action::Create => self
                .call(bucket, action, || {
                    self.client
                        .create_route()
                        .route_table_id(table)
                        .set_destination_cidr_block(v4.clone())
                        .set_destination_ipv6_cidr_block(v6.clone())
                        .set_network_interface_id(eni.clone())
                        .send()
                })
                .await
                .map(drop)
                .map_err(|e| route_error(op, &e)),
            Action::Replace => self
                .call(bucket, action, || {
                    self.client
                        .replace_route()
                        .route_table_id(table)
                        .set_destination_cidr_block(v4.clone())
                        .set_destination_ipv6_cidr_block(v6.clone())
                        .set_network_interface_id(eni.clone())
                        .send()
                })
                .await
                .map(drop)
                .map_err(|e| route_error(op, &e)),
            Action::Delete => self
                .call(bucket, action, || {
                    self.client
                        .delete_route()
                        .route_table_id(table)
                        .set_destination_cidr_block(v4.clone())
                        .set_destination_ipv6_cidr_block(v6.clone())
                        .send()
                })
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
}

/// Region and VPC from the command line, else from the instance metadata
/// service (IMDSv2) of the EC2 instance we run on.
pub async fn discover(
    region: Option<String>,
    vpc: Option<String>,
) -> Result<(String, String), String> {
    if let (Some(region), Some(vpc)) = (&region, &vpc) {
        return Ok((region.clone(), vpc.clone()));
    }
    let missing = match (&region, &vpc) {
        (None, None) => "-r/--region and -v/--vpc",
        (None, _) => "-r/--region",
        _ => "-v/--vpc",
    };
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(format!(
            "give {missing}: the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)"
        ));
    }
    let imds = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(3))
        .max_attempts(2)
        .build();
    let get = |path: String| {
        let imds = &imds;
        async move {
            imds.get(path.clone())
                .await
                .map(|value| value.as_ref().trim().to_string())
                .map_err(|e| {
                    format!(
                        "give {missing}: the instance metadata service did not answer {path} (not on EC2?): {}",
                        causes(&e)
                    )
                })
        }
    };
    let region = match region {
        Some(region) => region,
        None => get("/latest/meta-data/placement/region".into()).await?,
    };
    let vpc = match vpc {
        Some(vpc) => vpc,
        None => {
            let mac = get("/latest/meta-data/mac".into()).await?;
            get(format!(
                "/latest/meta-data/network/interfaces/macs/{mac}/vpc-id"
            ))
            .await?
        }
    };
    Ok((region, vpc))
}
