use super::super::bindings::config::vpcrouter::plugin::daemon::{Host, RouteTables};
use super::super::bindings::config::vpcrouter::plugin::types::Route;
use super::super::instance::HostState;
use crate::spec::{MAX_ROUTES, MAX_TABLES_PER_ROUTE};

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

    fn set_route_tables(&mut self, scopes: Vec<RouteTables>) -> wasmtime::Result<()> {
        // Bounded as the spec is: one past the limits, so that the spec's
        // check names what is too many.
        self.route_tables = (scopes.into_iter().take(MAX_ROUTES + 1))
            .map(|scope| {
                let tables = scope.tables.into_iter().take(MAX_TABLES_PER_ROUTE + 1);
                (scope.cidr, tables.collect())
            })
            .collect();
        Ok(())
    }
}
