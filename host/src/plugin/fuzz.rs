//! Property tests over everything the host accepts from a guest: route
//! specs, descriptions and the options and grants they lead to, health
//! verdicts, HTTP answers. Whatever a plugin returns, the host never panics,
//! and what it accepts keeps the documented bounds. Run with the test suite
//! for a bounded number of cases (`PROPTEST_CASES` raises it).

use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::bindings::{
    HealthState, HostHealth, HttpResponse, OptionKind, OptionSpec, PluginInfo, PluginKind,
};
use super::grants::{self, Trust};
use super::load::check_info;
use super::supervisor::reports;
use crate::spec::{MAX_HOSTS_PER_ROUTE, MAX_ROUTES, MAX_WORKING_SET, RouteSpec};

/// Text a hostile guest might send: random, near-valid, huge, or odd.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9./:a-f]{0,24}",
        "(10|127|fd00:)\\.?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,3})?",
        "/[a-z{}:*_./~-]{0,12}",
        (0usize..20_000).prop_map(|n| "x".repeat(n)),
        Just("/proc/self/environ".to_string()),
        Just("127.0.0.1".to_string()),
        Just("2379".to_string()),
    ]
}

/// Mostly valid CIDRs (so that whole specs are accepted often enough),
/// sometimes anything.
fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (any::<[u8; 4]>(), 0u8..=32).prop_map(|(addr, prefix)| {
            ipnet::Ipv4Net::new(addr.into(), prefix).unwrap().trunc().to_string()
        }),
        1 => text(),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u8..8).prop_map(|i| format!("10.0.0.{i}")),
        8 => any::<[u8; 4]>().prop_map(|a| IpAddr::from(a).to_string()),
        2 => any::<[u16; 8]>().prop_map(|a| IpAddr::from(a).to_string()),
        1 => text(),
    ]
}

fn identifier() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z][a-z0-9_-]{0,10}", 1 => text()]
}

fn short() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[ -~]{0,40}", 1 => text()]
}

fn kind() -> impl Strategy<Value = OptionKind> {
    prop_oneof![
        Just(OptionKind::Text),
        Just(OptionKind::Flag),
        Just(OptionKind::File),
        Just(OptionKind::EndpointHost),
        Just(OptionKind::EndpointPort),
        Just(OptionKind::TlsCa),
        Just(OptionKind::TlsCert),
        Just(OptionKind::TlsKey),
    ]
}

fn option() -> impl Strategy<Value = OptionSpec> {
    (
        identifier(),
        short(),
        proptest::option::of(prop_oneof![3 => short(), 1 => text()]),
        any::<bool>(),
        kind(),
    )
        .prop_map(|(name, help, default, required, kind)| OptionSpec {
            name,
            help,
            default,
            required,
            kind,
        })
}

fn info() -> impl Strategy<Value = PluginInfo> {
    (
        identifier(),
        short(),
        short(),
        vec(option(), 0..6),
        vec(prop_oneof![3 => "/[a-z_]{1,10}", 1 => text()], 0..3),
    )
        .prop_map(
            |(name, version, description, options, http_paths)| PluginInfo {
                name,
                version,
                description,
                options,
                http_paths,
            },
        )
}

fn state() -> impl Strategy<Value = HealthState> {
    prop_oneof![
        Just(HealthState::Healthy),
        Just(HealthState::Questionable),
        Just(HealthState::Failed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_spec_is_refused_or_within_bounds(entries in vec((cidr(), vec(host(), 0..8)), 0..12)) {
        if let Ok(spec) = RouteSpec::from_entries(entries) {
            prop_assert!(spec.len() <= MAX_ROUTES);
            prop_assert!(spec.hosts().len() <= MAX_WORKING_SET);
            for (cidr, hosts) in spec.routes() {
                prop_assert_eq!(cidr.trunc(), *cidr);
                prop_assert!(hosts.len() <= MAX_HOSTS_PER_ROUTE);
                prop_assert!(hosts.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(hosts.iter().all(|h| !h.is_unspecified() && !h.is_multicast()));
            }
            let again = RouteSpec::from_json(spec.to_json().to_string().as_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&spec));
        }
    }

    #[test]
    fn any_json_is_refused_or_parsed(bytes in vec(any::<u8>(), 0..256), text in text()) {
        let _ = RouteSpec::from_json(&bytes);
        let _ = RouteSpec::from_json(text.as_bytes());
    }

    /// An accepted description is bounded, its paths literal; a third-party
    /// plugin's grants all come from the command line.
    #[test]
    fn any_description_is_refused_or_bounded(
        info in info(),
        health in any::<bool>(),
        given in vec((identifier(), prop_oneof![short(), host(), text()]), 0..6),
    ) {
        let kind = if health { PluginKind::HealthCheck } else { PluginKind::ConfigSource };
        if check_info(&info, kind).is_err() {
            return Ok(());
        }
        prop_assert!(info.name.len() <= 64 && info.description.len() <= 1024);
        for path in &info.http_paths {
            prop_assert!(path.starts_with('/'));
            prop_assert!(path.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c)));
        }
        if let Ok(resolved) = grants::resolve(&info, &given, &Trust::ThirdParty) {
            for record in &resolved.grants.records {
                prop_assert!(record.from.contains("on the command line"), "{:?}", record);
            }
            for (name, _) in &resolved.options {
                prop_assert!(info.options.iter().any(|o| &o.name == name));
            }
        }
    }

    /// Verdicts are kept only for the working set, with bounded details.
    #[test]
    fn any_verdicts_keep_to_the_working_set(
        results in vec((host(), state(), proptest::option::of(any::<u32>()), proptest::option::of(text())), 0..32),
        working in vec(host(), 0..8),
    ) {
        let working_set: BTreeSet<IpAddr> = working.iter().filter_map(|h| h.parse().ok()).collect();
        let results = results
            .into_iter()
            .map(|(host, state, rtt_us, detail)| HostHealth { host, state, rtt_us, detail })
            .collect();
        for report in reports("fuzz", &crate::spec::WorkingSet::new(&working_set), results) {
            prop_assert!(working_set.contains(&report.host));
            prop_assert!(report.detail.is_none_or(|d| d.len() <= 512));
        }
    }

    /// A plugin's HTTP answer goes out well-formed or becomes 502.
    #[test]
    fn any_http_answer_is_checked(status in any::<u16>(), content_type in text(), big in any::<bool>()) {
        let body = if big { vec![0; crate::http::plugin::MAX_RESPONSE_BYTES + 1] } else { vec![1; 16] };
        let response = crate::http::plugin::checked(HttpResponse { status, content_type, body });
        let sent = response.status().as_u16();
        prop_assert!(sent == status || sent == 502);
        prop_assert!((200..600).contains(&sent));
    }

    #[test]
    fn clipping_never_panics_and_bounds(text in any::<String>(), max in 0usize..64) {
        let clipped = crate::text::clip(&text, max);
        prop_assert!(clipped.len() <= max + 32 || clipped == text);
    }
}
