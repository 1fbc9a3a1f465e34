//! webhook: POSTs each batch of the daemon's notices, as JSON, to the one
//! endpoint it is granted (`--notify webhook:URL` gives it), signed with
//! HMAC-SHA256 when given a key file, so the receiver can tell the daemon
//! from anyone else. A status other than 2xx is an error: the daemon tries
//! the batch again later.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use vpcrouter_plugin_sdk::outbound::{self, OutboundRequest};
use vpcrouter_plugin_sdk::{
    Batch, Notifier, OptionKind, OptionSpec, Options, PluginInfo, export_notifier, files,
};

/// The header carrying `sha256=` and the hex HMAC of the body.
const SIGNATURE_HEADER: &str = "X-Vpcrouter-Signature";
/// How long one POST may take (the host cuts it to the call's deadline).
const TIMEOUT_MS: u32 = 5_000;
/// The longest key taken from the key file.
const MAX_KEY: usize = 4096;

struct Webhook {
    path: String,
    key: Option<Vec<u8>>,
}

/// `sha256=HEX` of `body` under `key`.
fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Notifier for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "POSTs the daemon's notices as JSON, HMAC-signed".into(),
            options: vec![
                OptionSpec::of_kind(
                    "webhook_host",
                    "The receiver's host (given by --notify webhook:URL)",
                    OptionKind::EndpointHost,
                ),
                OptionSpec::of_kind(
                    "webhook_port",
                    "The receiver's port (given by --notify webhook:URL)",
                    OptionKind::EndpointPort,
                ),
                OptionSpec::text("webhook_path", "Path (and query) to POST to").default_value("/"),
                OptionSpec::of_kind(
                    "webhook_ca",
                    "PEM CA bundle to verify an https receiver by (--notify-ca)",
                    OptionKind::TlsCa,
                ),
                OptionSpec::file(
                    "webhook_secret",
                    "File holding the HMAC-SHA256 key (--notify-secret-file)",
                ),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        if options.get("webhook_host").is_none() {
            return Err("no receiver: give --notify webhook:URL".into());
        }
        let path = options.require("webhook_path")?.to_string();
        if !path.starts_with('/') {
            return Err(format!(
                "--webhook_path {path:?}: expected a path starting with '/'"
            ));
        }
        let key = match options.get("webhook_secret") {
            None => {
                vpcrouter_plugin_sdk::log!(
                    Warn,
                    "notices are sent unsigned: give --notify-secret-file to sign them"
                );
                None
            }
            Some(file) => {
                let bytes = files::read_file(file).map_err(|e| format!("the key file: {e}"))?;
                let key = bytes.trim_ascii().to_vec();
                if key.is_empty() || key.len() > MAX_KEY {
                    return Err(format!(
                        "the key file {file}: expected 1 to {MAX_KEY} bytes of key"
                    ));
                }
                Some(key)
            }
        };
        Ok(Self { path, key })
    }

    fn notify(&mut self, batch: Batch) -> Result<(), String> {
        let body = batch.json.into_bytes();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(key) = &self.key {
            headers.push((SIGNATURE_HEADER.to_string(), signature(key, &body)));
        }
        let response = outbound::send(&OutboundRequest {
            method: "POST".into(),
            path: self.path.clone(),
            headers,
            body,
            timeout_ms: TIMEOUT_MS,
        })?;
        match response.status {
            200..=299 => Ok(()),
            status => Err(format!("the receiver answered HTTP {status}")),
        }
    }
}

export_notifier!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
