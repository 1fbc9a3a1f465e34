//! A config-source plugin built straight from the newer contract (0.1.1)
//! with wit-bindgen, using what 0.1.1 added (`log.enabled`): the host, which
//! also loads plugins of the frozen 0.1.0, must load this one too.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.1",
    world: "config-plugin",
});

use exports::vpcrouter::plugin::config_source::{
    Event, Guest, HttpRequest, HttpResponse, Options, PluginInfo, RouteSpec,
};
use vpcrouter::plugin::log::{Level, enabled, log};
use vpcrouter::plugin::types::Route;

struct Newer;

impl Guest for Newer {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "newer".into(),
            version: "0.1.1".into(),
            description: "Built against vpcrouter:plugin@0.1.1".into(),
            options: vec![],
            http_paths: vec![],
        }
    }

    fn init(_options: Options) -> Result<(), String> {
        Ok(())
    }

    fn on_event(event: Event) -> Result<Option<RouteSpec>, String> {
        let debug = enabled(Level::Debug);
        log(Level::Info, &format!("debug logging enabled: {debug}"));
        Ok(matches!(event, Event::Started).then(|| {
            vec![Route {
                cidr: "10.55.16.0/24".into(),
                hosts: vec!["10.33.20.142".into()],
            }]
        }))
    }

    fn handle_http(_request: HttpRequest) -> (HttpResponse, Option<RouteSpec>) {
        let response = HttpResponse {
            status: 404,
            content_type: "text/plain".into(),
            body: vec![],
        };
        (response, None)
    }
}

export!(Newer);
