use super::super::bindings::config::vpcrouter::plugin::daemon::Host;
use super::super::bindings::config::vpcrouter::plugin::types::Route;
use super::super::instance::HostState;

impl Host for HostState {
    fn accepted_spec(&mut self) -> wasmtime::Result<Option<Vec<Route>>> {
        let spec = self.accepted.borrow().clone();
        Ok(spec.map(|spec| {
            spec.routes()
                .iter()
                .map(|(cidr, hosts)| Route {
                    cidr: cidr.to_string(),
                    hosts: hosts.iter().map(ToString::to_string).collect(),
                })
                .collect()
        }))
    }
}
