//! A notifier plugin (PLUGINS.md "Notifier plugins"): each batch of the
//! daemon's notices becomes one text message to a chat service's incoming
//! webhook, the one endpoint the operator grants.

use vpcrouter_plugin_sdk::outbound::{self, OutboundRequest};
use vpcrouter_plugin_sdk::{
    Batch, Notifier, OptionKind, OptionSpec, Options, PluginInfo, export_notifier,
};

struct Chat {
    path: String,
}

impl Notifier for Chat {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "chat".into(),
            version: "0.1.0".into(),
            description: "Posts route changes to a chat room".into(),
            options: vec![
                OptionSpec::of_kind("chat_host", "The chat service", OptionKind::EndpointHost)
                    .required(),
                OptionSpec::of_kind("chat_port", "Its port", OptionKind::EndpointPort)
                    .default_value("443"),
                OptionSpec::of_kind("chat_ca", "CA bundle (HTTPS)", OptionKind::TlsCa),
                OptionSpec::text("chat_path", "The room's webhook path").required(),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        Ok(Self {
            path: options.require("chat_path")?.to_string(),
        })
    }

    fn notify(&mut self, batch: Batch) -> Result<(), String> {
        let lines: Vec<String> = batch
            .notices
            .iter()
            .map(|n| format!("{} {}: {}", n.kind, n.subject, n.reason))
            .collect();
        let text = serde_json::json!({ "text": lines.join("\n") }).to_string();
        let response = outbound::send(&OutboundRequest {
            method: "POST".into(),
            path: self.path.clone(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: text.into_bytes(),
            timeout_ms: 5_000,
        })?;
        match response.status {
            200..=299 => Ok(()),
            status => Err(format!("the chat service answered HTTP {status}")),
        }
    }
}

export_notifier!(Chat);
