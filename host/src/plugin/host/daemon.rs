use super::super::bindings::config::vpcrouter::plugin::daemon::{
    Host, RouteOptions as GivenOptions, RouteTables,
};
use super::super::bindings::config::vpcrouter::plugin::types::Route;
use super::super::instance::HostState;
use crate::spec::{MAX_HOSTS_PER_ROUTE, MAX_ROUTES, MAX_TABLES_PER_ROUTE, RouteOptions};

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
        self.spec_details.tables = (scopes.into_iter().take(MAX_ROUTES + 1))
            .map(|scope| {
                let tables = scope.tables.into_iter().take(MAX_TABLES_PER_ROUTE + 1);
                (scope.cidr, tables.collect())
            })
            .collect();
        Ok(())
    }

    fn set_route_options(&mut self, options: Vec<GivenOptions>) -> wasmtime::Result<()> {
        self.spec_details.options = (options.into_iter().take(MAX_ROUTES + 1))
            .map(|given| RouteOptions {
                cidr: given.cidr,
                fallback: given.fallback,
                hosts: (given.routers.into_iter().take(MAX_HOSTS_PER_ROUTE + 1))
                    .map(|r| (r.host, r.tier, r.weight))
                    .collect(),
            })
            .collect();
        Ok(())
    }
}
