//! `vpcrouter drain IP`, `vpcrouter undrain IP` and `vpcrouter failover
//! CIDR`: the planned-loss endpoints of a running daemon (`POST`/`DELETE
//! /hosts/{ip}/drain`, `POST /routes/{cidr}/failover`), from its own
//! command line, with its token file when it has one.

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::failure::{self, Failure};
use crate::http_client::{Endpoint, send};

/// Words after the program name that run this module.
pub const COMMANDS: [&str; 3] = ["drain", "undrain", "failover"];

/// Longest answer read: a JSON object of a few lines.
const MAX_ANSWER: usize = 64 << 10;
/// A daemon answers these at once; one that does not is stuck or gone.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "vpcrouter", bin_name = "vpcrouter")]
struct RemoteCli {
    #[command(subcommand)]
    command: RemoteCommand,
}

#[derive(Subcommand, Debug)]
enum RemoteCommand {
    /// Take a router out of service on a running daemon: its routes move
    /// at once to routers a probe has confirmed (none: they stay)
    Drain {
        /// The router's IP address, as in the route spec
        ip: IpAddr,
        /// Why, shown in the views and events
        #[arg(long)]
        reason: Option<String>,
        /// When the drain ends by itself (RFC 3339, e.g. 2026-12-03T06:00:00Z)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Put a drained router back in service (no route moves back to it)
    Undrain {
        ip: IpAddr,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Move one CIDR off the router its routes point at, now, to a router a
    /// probe has confirmed (refused, saying why, when none can take it)
    Failover {
        /// The CIDR, as in the route spec
        cidr: ipnet::IpNet,
        /// The router to move it off, when its tables point at several
        #[arg(long, value_name = "IP")]
        from: Option<IpAddr>,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// Where the daemon listens and how to prove the right to change it.
#[derive(Args, Debug)]
struct DaemonArgs {
    /// The daemon's address and port
    #[arg(long, value_name = "HOST:PORT", default_value = "localhost:33289")]
    daemon: String,
    /// The daemon's --http-token-file
    #[arg(long = "http-token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// `vpcrouter drain|undrain|failover` as clap commands, for completions
/// and manual pages.
pub fn commands() -> Vec<clap::Command> {
    RemoteCli::command().get_subcommands().cloned().collect()
}

/// Run `vpcrouter drain|undrain|failover ...` (`args` starts at the
/// program name).
pub async fn main(args: &[OsString]) -> Result<(), Failure> {
    let (method, path, body, daemon) = match failure::parse::<RemoteCli>(args)?.command {
        RemoteCommand::Drain {
            ip,
            reason,
            until,
            daemon,
        } => {
            let body = serde_json::json!({ "reason": reason.unwrap_or_default(), "until": until });
            (
                "POST",
                format!("/hosts/{ip}/drain"),
                body.to_string().into_bytes(),
                daemon,
            )
        }
        RemoteCommand::Undrain { ip, daemon } => {
            ("DELETE", format!("/hosts/{ip}/drain"), Vec::new(), daemon)
        }
        RemoteCommand::Failover { cidr, from, daemon } => {
            let body = match from {
                Some(from) => serde_json::json!({ "from": from }).to_string().into_bytes(),
                None => Vec::new(),
            };
            ("POST", format!("/routes/{cidr}/failover"), body, daemon)
        }
    };
    let (host, port) = daemon
        .daemon
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
        .ok_or_else(|| Failure::Usage(format!("--daemon {}: expected HOST:PORT", daemon.daemon)))?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(file) = &daemon.token_file {
        let token = crate::http::read_token(file)
            .map_err(|e| Failure::Usage(format!("--http-token-file {}: {e}", file.display())))?;
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let endpoint = Endpoint {
        host: host.to_string(),
        port,
        tls: None,
    };
    let answer = tokio::time::timeout(TIMEOUT, send(&endpoint, request, body, MAX_ANSWER))
        .await
        .map_err(|_| Failure::failed(&format!("{endpoint:?}"), "no answer within 10 s"))?
        .map_err(|e| Failure::failed(&format!("cannot reach the daemon at {endpoint:?}"), e))?;
    let text = String::from_utf8_lossy(&answer.body);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match answer.status {
        200..=299 => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or(text.into_owned())
            );
            Ok(())
        }
        status => {
            let said = json["error"]
                .as_str()
                .map_or(text.trim().to_string(), str::to_string);
            Err(Failure::Usage(format!(
                "the daemon answered {status}: {said}"
            )))
        }
    }
}
