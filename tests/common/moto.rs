//! moto's EC2 server as the EC2 peer: one server per test on a free
//! loopback port, and a VPC built in it through the real SDK.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, InstanceType};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

/// Every one of `routers` listening on one free port, so that its tcp
/// probes are answered: the listeners in order (drop one and its router
/// is dead), and the port.
pub fn listening(routers: &[&str]) -> (Vec<Option<std::net::TcpListener>>, u16) {
    let first = std::net::TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![Some(first)];
    let others = routers[1..].iter();
    listeners.extend(others.map(|r| Some(std::net::TcpListener::bind((*r, port)).unwrap())));
    (listeners, port)
}

/// The routers of the VPC the EC2 tests and the failover benchmark use:
/// two in each subnet of three AZs (`build_vpc(ec2, 3, &ROUTERS)`).
pub const ROUTERS: [&str; 6] = [
    "127.0.1.10",
    "127.0.2.10",
    "127.0.3.10",
    "127.0.1.11",
    "127.0.2.11",
    "127.0.3.11",
];
/// The CIDRs they route.
pub const CIDRS: [&str; 3] = ["10.55.0.0/16", "10.56.0.0/16", "10.57.0.0/16"];

pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// Start moto's server on 127.0.0.1 (installed by `make test` /
    /// `.ci/run`: `pip install 'moto[server]' cbor2`), through
    /// moto_server.py: moto's own, taught the Smithy CBOR protocol the
    /// SDK's CloudWatch client speaks.
    pub fn start() -> Self {
        let port = super::free_port();
        let child = Command::new("python3")
            .args([
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/common/moto_server.py"
                ),
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 moto_server.py (pip install 'moto[server]' cbor2)");
        let mut moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited ({status}): is it installed? pip install 'moto[server]' cbor2");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// An SDK client for the test's own look at moto (not the daemon's).
    pub async fn client(&self) -> Client {
        Client::from_conf(client_config(&self.url).build())
    }

    /// The EC2 backend on moto (or on a proxy in front of it at
    /// `endpoint`), with static credentials: the standard chain would look
    /// for the instance metadata service.
    pub fn backend(&self, vpc: &str, endpoint: &str) -> vpcrouter::cloud::ec2::Ec2Vpc {
        use vpcrouter::cloud::budget::{EC2_DESCRIBE, EC2_MUTATING};
        let settings = vpcrouter::cloud::ec2::Ec2Settings {
            region: REGION.into(),
            vpc: vpc.into(),
            endpoint: Some(endpoint.into()),
            mutating: EC2_MUTATING,
            describe: EC2_DESCRIBE,
        };
        vpcrouter::cloud::ec2::Ec2Vpc::with_config(client_config(endpoint), &settings)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Region, endpoint and static credentials; nothing from the environment.
pub fn client_config(endpoint: &str) -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
}

/// The VPC the tests share the shape of: 127.0.0.0/16 (so routers can be
/// real listeners on loopback), one subnet per AZ with its own route table
/// (a gateway route in each), one unassociated table, and router instances
/// at fixed addresses.
pub struct Vpc {
    pub id: String,
    /// Subnet id per AZ, in order.
    pub subnets: Vec<String>,
    /// The associated tables, one per subnet, in order.
    pub tables: Vec<String>,
    pub unassociated_table: String,
    /// Router address -> (instance id, ENI id).
    pub routers: BTreeMap<String, (String, String)>,
}

/// Build it: `routers[i]` go into subnet `i % subnets`; subnet `i` is
/// 127.0.(i+1).0/24, so router addresses must fit their subnets.
pub async fn build_vpc(ec2: &Client, azs: usize, routers: &[&str]) -> Vpc {
    let vpc = ec2
        .create_vpc()
        .cidr_block("127.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let gateway = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    ec2.attach_internet_gateway()
        .vpc_id(&vpc)
        .internet_gateway_id(&gateway)
        .send()
        .await
        .unwrap();
    let mut subnets = Vec::new();
    let mut tables = Vec::new();
    for i in 0..azs {
        let az = format!("{REGION}{}", (b'a' + i as u8) as char);
        let subnet = create_subnet(ec2, &vpc, &format!("127.0.{}.0/24", i + 1), &az).await;
        let table = route_table(ec2, &vpc).await;
        associate(ec2, &table, &subnet).await;
        ec2.create_route()
            .route_table_id(&table)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&gateway)
            .send()
            .await
            .unwrap();
        subnets.push(subnet);
        tables.push(table);
    }
    let unassociated_table = route_table(ec2, &vpc).await;
    let mut by_ip = BTreeMap::new();
    for (i, ip) in routers.iter().enumerate() {
        by_ip.insert(
            ip.to_string(),
            launch(ec2, &subnets[i % subnets.len()], ip).await,
        );
    }
    Vpc {
        id: vpc,
        subnets,
        tables,
        unassociated_table,
        routers: by_ip,
    }
}

/// A new route table of `vpc`; its id.
pub async fn route_table(ec2: &Client, vpc: &str) -> String {
    ec2.create_route_table()
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .route_table
        .unwrap()
        .route_table_id
        .unwrap()
}

/// Associate `subnet` with `table` explicitly.
pub async fn associate(ec2: &Client, table: &str, subnet: &str) {
    ec2.associate_route_table()
        .route_table_id(table)
        .subnet_id(subnet)
        .send()
        .await
        .unwrap();
}

/// A router instance at `ip`, source/destination check off as a router
/// needs; (instance id, ENI id).
pub async fn launch(ec2: &Client, subnet: &str, ip: &str) -> (String, String) {
    let instance = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .private_ip_address(ip)
        .send()
        .await
        .unwrap()
        .instances
        .unwrap()
        .remove(0);
    let eni = instance.network_interfaces()[0]
        .network_interface_id()
        .unwrap()
        .to_string();
    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni)
        .source_dest_check(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    (instance.instance_id.unwrap(), eni)
}

/// Every route of every table in the VPC: table -> [(destination, target)],
/// the target being the ENI, instance or gateway id.
/// A subnet of `vpc` in `az`; its id.
pub async fn create_subnet(ec2: &Client, vpc: &str, cidr: &str, az: &str) -> String {
    ec2.create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(az)
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap()
}

/// Each associated table's target (an ENI) for `cidr`, in table order.
pub async fn targets(ec2: &Client, vpc: &Vpc, cidr: &str) -> Vec<Option<String>> {
    targets_in(&routes(ec2, &vpc.id).await, vpc, cidr)
}

/// The same, from routes already described (see [`routes`]).
pub fn targets_in(
    routes: &BTreeMap<String, Vec<(String, String)>>,
    vpc: &Vpc,
    cidr: &str,
) -> Vec<Option<String>> {
    vpc.tables
        .iter()
        .map(|t| {
            routes[t]
                .iter()
                .find(|(d, _)| d == cidr)
                .map(|(_, target)| target.clone())
        })
        .collect()
}

/// The daemon on `vpc` through `endpoint` (moto, or a proxy in front of
/// it), configfile reading `spec`, tcp checks on `port` every 0.2 s.
pub fn daemon_args(spec: &std::path::Path, port: u16, vpc: &Vpc, endpoint: &str) -> Vec<String> {
    // (Spelled out: the failover bench includes this file on its own.)
    let port = port.to_string();
    let mut args: Vec<String> = [
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "-H",
        "tcp",
        "--tcp_check_port",
        &port,
        "--tcp_check_interval",
        "0.2",
    ]
    .map(String::from)
    .to_vec();
    args.extend(ec2_args(&vpc.id, endpoint));
    args
}

/// The flags that point the daemon at VPC `vpc` through `endpoint`.
pub fn ec2_args(vpc: &str, endpoint: &str) -> Vec<String> {
    ["-r", REGION, "-v", vpc, "--ec2-endpoint", endpoint]
        .map(String::from)
        .to_vec()
}

pub async fn routes(ec2: &Client, vpc: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let answer = ec2
        .describe_route_tables()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    answer
        .route_tables()
        .iter()
        .map(|t| {
            let routes = t
                .routes()
                .iter()
                .map(|r| {
                    let destination = r
                        .destination_cidr_block()
                        .or(r.destination_ipv6_cidr_block())
                        .unwrap_or("?");
                    let target = r
                        .network_interface_id()
                        .or(r.instance_id())
                        .or(r.gateway_id())
                        .or(r.nat_gateway_id())
                        .unwrap_or("?");
                    (destination.to_string(), target.to_string())
                })
                .collect();
            (t.route_table_id().unwrap().to_string(), routes)
        })
        .collect()
}

/// The target of `cidr` in `table`, if it has a route for it.
pub async fn target(ec2: &Client, vpc: &str, table: &str, cidr: &str) -> Option<String> {
    routes(ec2, vpc)
        .await
        .remove(table)?
        .into_iter()
        .find(|(d, _)| d == cidr)
        .map(|(_, t)| t)
}

/// The SDK configuration of the tests' own clients of moto at `url`
/// (SQS, SNS, EventBridge, CloudWatch).
pub async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// An SQS client of moto at `url`, and a new queue `name` there (its URL).
pub async fn sqs_queue(url: &str, name: &str) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(url).await);
    let created = sqs.create_queue().queue_name(name).send().await.unwrap();
    (sqs, created.queue_url.unwrap())
}

/// The private side of the NAT layout in a moto VPC.
pub struct Private {
    /// The tagged tables of the private subnets of AZ a and b.
    pub private: [String; 2],
    pub main: String,
    /// An untagged table with a hand-made route to a VPN instance's ENI.
    pub vpn: String,
    pub vpn_eni: String,
}

pub async fn private_tables(ec2: &Client, vpc: &Vpc) -> Private {
    use aws_sdk_ec2::types::{Filter, Tag};
    let az = |i: u8| format!("{}{}", REGION, (b'a' + i) as char);
    let mut private = Vec::new();
    for i in 0..2u8 {
        let subnet = create_subnet(ec2, &vpc.id, &format!("127.0.{}.0/24", 11 + i), &az(i)).await;
        let table = route_table(ec2, &vpc.id).await;
        associate(ec2, &table, &subnet).await;
        ec2.create_tags()
            .resources(&table)
            .tags(Tag::builder().key("vpcrouter").value("egress").build())
            .send()
            .await
            .unwrap();
        private.push(table);
    }
    // A third private subnet, on the main table (no explicit association).
    create_subnet(ec2, &vpc.id, "127.0.13.0/24", &az(0)).await;
    let main = ec2
        .describe_route_tables()
        .filters(Filter::builder().name("vpc-id").values(&vpc.id).build())
        .filters(
            Filter::builder()
                .name("association.main")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .route_tables()[0]
        .route_table_id()
        .unwrap()
        .to_string();
    let subnet = create_subnet(ec2, &vpc.id, "127.0.14.0/24", &az(0)).await;
    let vpn = route_table(ec2, &vpc.id).await;
    associate(ec2, &vpn, &subnet).await;
    let (_, vpn_eni) = launch(ec2, &subnet, "127.0.14.10").await;
    ec2.create_route()
        .route_table_id(&vpn)
        .destination_cidr_block("10.200.0.0/16")
        .network_interface_id(&vpn_eni)
        .send()
        .await
        .unwrap();
    Private {
        private: private.try_into().unwrap(),
        main,
        vpn,
        vpn_eni,
    }
}

/// A NAT gateway in `subnet` (with an Elastic IP of its own); its id.
pub async fn nat_gateway(ec2: &Client, subnet: &str) -> String {
    let address = ec2.allocate_address().send().await.unwrap();
    let created = ec2
        .create_nat_gateway()
        .subnet_id(subnet)
        .allocation_id(address.allocation_id().unwrap())
        .send()
        .await
        .unwrap();
    created.nat_gateway.unwrap().nat_gateway_id.unwrap()
}

/// (table, CIDR) -> ENI, from per-CIDR routes and routes to prefix lists
/// (a per-CIDR route wins, as in EC2). The tables are read before the
/// lists' entries: sound while CIDRs go into lists before their per-CIDR
/// routes go (a CIDR is seen in one or the other).
pub async fn routing(
    ec2: &aws_sdk_ec2::Client,
    tables: &[String],
) -> BTreeMap<(String, String), String> {
    routing_with(ec2, tables, BTreeMap::new()).await
}

/// The same with the entries of every list read first: sound while CIDRs
/// get their per-CIDR routes before they leave their lists.
pub async fn routing_lists_first(
    ec2: &aws_sdk_ec2::Client,
    tables: &[String],
) -> BTreeMap<(String, String), String> {
    let lists = ec2.describe_managed_prefix_lists().send().await.unwrap();
    let mut entries = BTreeMap::new();
    for list in lists.prefix_lists() {
        let id = list.prefix_list_id().unwrap();
        entries.insert(id.to_string(), list_entries(ec2, id).await);
    }
    routing_with(ec2, tables, entries).await
}

async fn list_entries(ec2: &aws_sdk_ec2::Client, list: &str) -> Vec<String> {
    let got = (ec2.get_managed_prefix_list_entries())
        .prefix_list_id(list)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let cidrs = got.entries().iter().filter_map(|e| e.cidr());
    cidrs.map(String::from).collect()
}

/// Routing from the tables, with the entries of the lists in `entries`
/// (the others read after the tables).
async fn routing_with(
    ec2: &aws_sdk_ec2::Client,
    tables: &[String],
    mut entries: BTreeMap<String, Vec<String>>,
) -> BTreeMap<(String, String), String> {
    let described = (ec2.describe_route_tables())
        .set_route_table_ids(Some(tables.to_vec()))
        .send()
        .await
        .unwrap();
    let mut routed = BTreeMap::new();
    for table in described.route_tables() {
        let id = table.route_table_id().unwrap().to_string();
        for route in table.routes() {
            let Some(eni) = route.network_interface_id() else {
                continue;
            };
            if let Some(cidr) = route.destination_cidr_block() {
                routed.insert((id.clone(), cidr.to_string()), eni.to_string());
            } else if let Some(list) = route.destination_prefix_list_id() {
                if !entries.contains_key(list) {
                    entries.insert(list.to_string(), list_entries(ec2, list).await);
                }
                for cidr in &entries[list] {
                    routed
                        .entry((id.clone(), cidr.clone()))
                        .or_insert_with(|| eni.to_string());
                }
            }
        }
    }
    routed
}
