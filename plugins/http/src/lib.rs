//! http: the route spec is posted to the daemon's listener.
//! `POST /route_spec` with the JSON spec replaces it (200, or 400 with the
//! reason); `GET /route_spec` shows the spec in force (404 before the first).
//! Bodies over the host's size limit are answered 413 by the host.

use serde_json::json;
use vpcrouter_plugin_sdk::{
    ConfigSource, Event, HttpRequest, HttpResponse, Options, PluginInfo, RouteSpec, daemon,
    export_config_source, spec,
};

const PATH: &str = "/route_spec";

struct Http;

impl ConfigSource for Http {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: format!("Route spec posted as JSON to {PATH} on the daemon's listener"),
            options: vec![],
            http_paths: vec![PATH.into()],
        }
    }

    fn init(_options: Options) -> Result<Self, String> {
        Ok(Self)
    }

    fn on_event(&mut self, _event: Event) -> Result<Option<RouteSpec>, String> {
        Ok(None)
    }

    fn handle_http(&mut self, request: HttpRequest) -> (HttpResponse, Option<RouteSpec>) {
        match request.method.as_str() {
            "GET" => match daemon::accepted_spec() {
                Some(routes) => (HttpResponse::json(200, &spec::to_json(&routes)), None),
                None => (
                    HttpResponse::json(404, &json!({"error": "no route spec yet"})),
                    None,
                ),
            },
            "POST" => match spec::from_json(&request.body) {
                Ok(routes) => {
                    let reply = json!({"msg": "route spec accepted", "routes": routes.len()});
                    (HttpResponse::json(200, &reply), Some(routes))
                }
                Err(reason) => (HttpResponse::json(400, &json!({"error": reason})), None),
            },
            other => {
                let reply = json!({"error": format!("method {other} not allowed on {PATH}")});
                (HttpResponse::json(405, &reply), None)
            }
        }
    }
}

export_config_source!(Http);
