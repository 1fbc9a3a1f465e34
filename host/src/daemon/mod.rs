//! The daemon from command line to shutdown: start-up (load and check the
//! plugins, parse the rest of the command line against their options,
//! choose the VPC), then either a dry run or the daemon wired together and
//! run until SIGINT/SIGTERM.

mod signals;
mod start;
mod wiring;

use std::ffi::OsString;
use std::sync::Arc;

use crate::cloud::Vpc;
use crate::config::Config;
use crate::failure::Failure;
use crate::ha::etcd::EtcdElection;
use crate::http::AuthPolicy;
use crate::plugin::{ConfiguredPlugin, PluginRuntime};
use crate::spec_store::SpecStore;

pub use wiring::planning;

/// Run the daemon with these arguments (program name first).
pub async fn main(args: Vec<OsString>) -> Result<(), Failure> {
    let prepared = start::prepare(args).await?;
    match prepared.config.dry_run {
        Some(output) => {
            let settings = planning(&prepared.config);
            let prepared_mode = prepared.config.route_mode;
            let Prepared {
                plugins,
                specs,
                vpc,
                ..
            } = prepared;
            let vpc = Arc::new(crate::reconcile::lists::Listed::new(
                vpc,
                prepared_mode.into(),
            ));
            let dry_run = crate::dry_run::run(plugins, specs, vpc, &settings, output).await;
            dry_run.map_err(Failure::Failed)
        }
        None => {
            let listen = &prepared.config.listen;
            let token = prepared.config.http_token_file.as_deref();
            let auth = AuthPolicy::new(&listen.host, token, prepared.config.http_auth_all)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            wiring::run(prepared, auth).await.map_err(Failure::Failed)
        }
    }
}

/// Everything checked and set up before the daemon runs.
pub struct Prepared {
    pub config: Config,
    /// The mode plugin first, then the health-check plugins.
    pub plugins: Vec<ConfiguredPlugin>,
    /// Kept for reloads.
    pub runtime: Arc<PluginRuntime>,
    /// Read again at every reload, when there is a pins file.
    pub pins: Option<start::PinSource>,
    pub specs: Arc<SpecStore>,
    pub vpc: Arc<Vpc>,
    pub election: Option<EtcdElection>,
}
