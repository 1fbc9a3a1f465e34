//! httpcheck: a router is healthy if it answers an HTTP(S) request for a
//! path with an expected status (and, if asked, a body containing a
//! text). 429 (rate-limited) makes it questionable, never failed. The host
//! makes the requests, concurrently, behind the probe grant; this plugin
//! sees only statuses and the start of each body.

use vpcrouter_plugin_sdk::probes::{self, HttpCheck, HttpMethod, HttpResult};
use vpcrouter_plugin_sdk::tracker::{Thresholds, Tracker, Verdict, judge_status};
use vpcrouter_plugin_sdk::{
    HealthCheck, HostHealth, OptionKind, OptionSpec, Options, PluginInfo, export_health_check,
    probes::ProbeTimeout, timers,
};

/// How much of a body is read to look for the expected text.
const BODY_BYTES: u32 = 4096;

struct HttpChecker {
    check: HttpCheck,
    expectation: Expectation,
    timeout: ProbeTimeout,
    tracker: Tracker,
}

/// What a healthy router answers.
struct Expectation {
    /// Inclusive status ranges.
    statuses: Vec<(u16, u16)>,
    /// Text the body must contain.
    body: Option<String>,
}

/// `200-399`, `200,204`, `200-299,301`: inclusive ranges of statuses.
fn status_ranges(value: &str) -> Result<Vec<(u16, u16)>, String> {
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
    };
    let ranges: Option<Vec<_>> = value
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((lo, hi)) => status(lo).zip(status(hi)).filter(|(lo, hi)| lo <= hi),
            None => status(part).map(|s| (s, s)),
        })
        .collect();
    ranges.ok_or_else(|| {
        format!(
            "--httpcheck_expect {value:?}: expected statuses or ranges, e.g. 200-399 or 200,204"
        )
    })
}

impl Expectation {
    fn judge(&self, result: &HttpResult) -> Verdict {
        match (judge_status(result, &self.statuses), &self.body) {
            (Verdict::Good, Some(text))
                if !String::from_utf8_lossy(&result.body).contains(text.as_str()) =>
            {
                Verdict::Bad(format!(
                    "HTTP {}: the body's first {BODY_BYTES} bytes lack {text:?}",
                    result.status.unwrap_or_default()
                ))
            }
            (verdict, _) => verdict,
        }
    }
}

impl HealthCheck for HttpChecker {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::text("httpcheck_port", "Port to ask").default_value("80"),
            OptionSpec::text("httpcheck_path", "Path (and query) to ask for").default_value("/"),
            OptionSpec::text("httpcheck_method", "GET or HEAD").default_value("GET"),
            OptionSpec::text(
                "httpcheck_expect",
                "Statuses that mean healthy, e.g. 200-399 or 200,204 (429 is always \
                 questionable unless listed)",
            )
            .default_value("200-399"),
            OptionSpec::text(
                "httpcheck_body",
                "Text the body's first 4096 bytes must contain (GET only)",
            ),
            OptionSpec::text(
                "httpcheck_interval",
                "Seconds between rounds (fractions allowed)",
            )
            .default_value("2"),
            OptionSpec::text(
                "httpcheck_timeout",
                "Seconds for the whole exchange, at most 5 [default: adaptive, a few of each \
                 host's round trips (at least 0.05), at most the lesser of 1 and the interval]",
            ),
            OptionSpec::of_kind(
                "httpcheck_ca",
                "PEM CA bundle to verify routers by: asks over HTTPS",
                OptionKind::TlsCa,
            ),
            OptionSpec::of_kind(
                "httpcheck_cert",
                "PEM client certificate to present over HTTPS (with --httpcheck_key)",
                OptionKind::TlsCert,
            ),
            OptionSpec::of_kind(
                "httpcheck_key",
                "PEM private key of --httpcheck_cert",
                OptionKind::TlsKey,
            ),
            OptionSpec::text(
                "httpcheck_server_name",
                "Name the routers' certificates carry, sent as the Host header [default: \
                 each router's IP address]",
            ),
        ];
        options.extend(Thresholds::options("httpcheck"));
        PluginInfo {
            name: "httpcheck".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Healthy if the host answers an HTTP(S) request with an expected status"
                .into(),
            options,
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        let port_value = options.require("httpcheck_port")?;
        let port = port_value
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--httpcheck_port {port_value:?}: expected 1-65535"))?;
        let path = options.require("httpcheck_path")?;
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "--httpcheck_path {path:?}: expected '/' then printable ASCII"
            ));
        }
        let method = match options
            .require("httpcheck_method")?
            .to_ascii_uppercase()
            .as_str()
        {
            "GET" => HttpMethod::Get,
            "HEAD" => HttpMethod::Head,
            other => {
                return Err(format!(
                    "--httpcheck_method {other:?}: expected GET or HEAD"
                ));
            }
        };
        let body = options.get("httpcheck_body").map(str::to_string);
        if body.is_some() && method == HttpMethod::Head {
            return Err("--httpcheck_body needs --httpcheck_method GET (HEAD has no body)".into());
        }
        let tls = options.get("httpcheck_ca").is_some();
        if tls {
            probes::http_tls_access().map_err(|why| format!("--httpcheck_ca: {why}"))?;
        }
        let interval = options.millis("httpcheck_interval")?.unwrap_or(2000);
        let timeout = options.probe_round_timeout("httpcheck_timeout", interval)?;
        let thresholds = Thresholds::from_options(&options, "httpcheck")?;
        timers::set_timer(interval);
        Ok(Self {
            check: HttpCheck {
                method,
                port,
                path: path.to_string(),
                tls,
                server_name: options.get("httpcheck_server_name").map(str::to_string),
                body_bytes: if body.is_some() { BODY_BYTES } else { 0 },
            },
            expectation: Expectation {
                statuses: status_ranges(options.require("httpcheck_expect")?)?,
                body,
            },
            timeout,
            tracker: Tracker::new(thresholds),
        })
    }

    fn check(&mut self, hosts: Vec<String>) -> Result<Vec<HostHealth>, String> {
        let expectation = &self.expectation;
        Ok(self
            .tracker
            .run_http_round(&hosts, &self.check, self.timeout, |result| {
                expectation.judge(result)
            }))
    }
}

export_health_check!(HttpChecker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_read_as_operators_write_them() {
        assert_eq!(status_ranges("200-399").unwrap(), [(200, 399)]);
        assert_eq!(status_ranges("200, 204").unwrap(), [(200, 200), (204, 204)]);
        assert_eq!(
            status_ranges("200-299,301").unwrap(),
            [(200, 299), (301, 301)]
        );
        for bad in ["", "abc", "399-200", "99", "600", "200-", "-"] {
            assert!(status_ranges(bad).is_err(), "{bad}");
        }
    }
}
