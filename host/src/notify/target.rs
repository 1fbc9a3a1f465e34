//! Where `--notify` sends notices: `webhook:URL` (the bundled webhook
//! plugin, given the URL's endpoint as its grant), `sns:TOPIC_ARN`,
//! `eventbridge:BUS` (the daemon's own AWS clients).

/// One `--notify` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    Webhook(WebhookUrl),
    /// An SNS topic, by ARN (its region is the ARN's).
    Sns {
        topic: String,
        region: String,
    },
    /// An EventBridge bus, by name or ARN (with an ARN, its region).
    EventBridge {
        bus: String,
        region: Option<String>,
    },
}

/// An `http://` or `https://` URL, in the parts the webhook plugin's
/// options take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query.
    pub path: String,
}

impl SinkTarget {
    /// Read a `--notify` value.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.split_once(':') {
            Some(("webhook", url)) => WebhookUrl::parse(url).map(SinkTarget::Webhook),
            Some(("sns", arn)) => match arn_region(arn, "sns") {
                Some(region) if arn.split(':').count() == 6 => Ok(SinkTarget::Sns {
                    topic: arn.to_string(),
                    region,
                }),
                _ => Err(format!(
                    "{value:?}: expected sns:arn:aws:sns:REGION:ACCOUNT:TOPIC"
                )),
            },
            Some(("eventbridge", bus)) if bus.starts_with("arn:") => {
                match arn_region(bus, "events") {
                    Some(region) if bus.contains(":event-bus/") => Ok(SinkTarget::EventBridge {
                        bus: bus.to_string(),
                        region: Some(region),
                    }),
                    _ => Err(format!(
                        "{value:?}: expected eventbridge:BUS_NAME or \
                         eventbridge:arn:aws:events:REGION:ACCOUNT:event-bus/NAME"
                    )),
                }
            }
            Some(("eventbridge", bus)) => {
                let named = !bus.is_empty()
                    && bus.len() <= 256
                    && (bus.chars()).all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
                match named {
                    true => Ok(SinkTarget::EventBridge {
                        bus: bus.to_string(),
                        region: None,
                    }),
                    false => Err(format!(
                        "{value:?}: an event bus name is 1 to 256 of letters, digits, '.', '_', '-', '/'"
                    )),
                }
            }
            _ => Err(format!(
                "{value:?}: expected webhook:URL, sns:TOPIC_ARN or eventbridge:BUS"
            )),
        }
    }
}

/// The region of an ARN of `service` (`arn:PARTITION:SERVICE:REGION:...`).
fn arn_region(arn: &str, service: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        ["arn", _, s, region, account, ..]
            if s == service
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(region.to_string())
        }
        _ => None,
    }
}

impl WebhookUrl {
    fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("webhook URL {url:?}: {why}");
        let uri: hyper::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("expected http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "user information is not sent; give a secret file instead",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            tls,
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_become_the_plugins_endpoint() {
        let parsed = SinkTarget::parse("webhook:https://hooks.example.com/v1/x?team=net").unwrap();
        assert_eq!(
            parsed,
            SinkTarget::Webhook(WebhookUrl {
                tls: true,
                host: "hooks.example.com".into(),
                port: 443,
                path: "/v1/x?team=net".into(),
            })
        );
        let webhook = |value| match SinkTarget::parse(value) {
            Ok(SinkTarget::Webhook(url)) => url,
            other => panic!("{other:?}"),
        };
        let plain = webhook("webhook:http://127.0.0.1:8080");
        assert_eq!(
            (plain.tls, plain.port, plain.path.as_str()),
            (false, 8080, "/")
        );
        assert_eq!(webhook("webhook:http://[::1]:9/h").host, "::1");
        assert_eq!(
            SinkTarget::parse("sns:arn:aws:sns:eu-west-1:123456789012:routes").unwrap(),
            SinkTarget::Sns {
                topic: "arn:aws:sns:eu-west-1:123456789012:routes".into(),
                region: "eu-west-1".into(),
            }
        );
        assert_eq!(
            SinkTarget::parse("eventbridge:default").unwrap(),
            SinkTarget::EventBridge {
                bus: "default".into(),
                region: None,
            }
        );
        let arn = "arn:aws:events:us-east-2:123456789012:event-bus/ops";
        assert_eq!(
            SinkTarget::parse(&format!("eventbridge:{arn}")).unwrap(),
            SinkTarget::EventBridge {
                bus: arn.into(),
                region: Some("us-east-2".into()),
            }
        );
        for bad in [
            "webhook:ftp://x/",
            "webhook:hooks.example.com",
            "webhook:https://user:pw@x/",
            "slack:#room",
            "sns:arn:aws:sns:eu-west-1:1:t",
            "sns:routes",
            "sns:arn:aws:sqs:eu-west-1:123456789012:q",
            "eventbridge:",
            "eventbridge:a bus",
            "eventbridge:arn:aws:events:eu-west-1:123456789012:rule/x",
        ] {
            assert!(SinkTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
