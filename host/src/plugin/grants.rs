//! Capabilities granted to a plugin, decided in one place and checked
//! through one value, [`Grants`]: the operator's options of the grant kinds
//! (`file`, `endpoint-*`, `tls-*`) become the files a plugin may read and
//! the one endpoint it may reach; loading a plugin as a health checker
//! grants it the hosts of the route spec in force (the working set) to probe
//! and report on, and raw-socket probes where the process may send them. A
//! plugin's own declaration never grants anything by itself: the defaults of
//! its grant options apply only to the bundled plugins (known by their
//! digests), so a third-party plugin holds exactly what the command line
//! gave it. A denied request is an error the plugin sees (and a log line),
//! never a trap.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

use crate::spec::RouteSpec;

pub use crate::http_client::{Endpoint, TlsFiles};

use super::bindings::{OptionKind, OptionSpec, PluginInfo, PluginKind};

/// Where a plugin file comes from, as far as the daemon can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Byte for byte one of the plugins this daemon was built with.
    Bundled {
        name: &'static str,
    },
    ThirdParty,
}

impl Trust {
    /// Whose plugin the file with this SHA-256 digest (hex) is.
    pub fn of(digest: &str) -> Self {
        super::bundled::BUNDLED
            .iter()
            .find(|(_, known, _)| *known == digest)
            .map_or(Trust::ThirdParty, |(name, _, _)| Trust::Bundled { name })
    }

    pub fn describe(&self) -> String {
        match self {
            Trust::Bundled { name } => format!("bundled ({name})"),
            Trust::ThirdParty => "third-party".into(),
        }
    }
}

/// One grant and where it came from, as the daemon shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecord {
    /// What the plugin may do, e.g. `read /etc/vpcrouter/spec.json`.
    pub grant: String,
    /// e.g. `--file on the command line`.
    pub from: String,
}

/// What one plugin may touch beyond its own memory.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Files the plugin may read and watch: the values of its options of
    /// kind `file`, as absolute paths.
    pub readable_files: Vec<PathBuf>,
    /// The one outside service it may send requests to.
    pub endpoint: Option<Endpoint>,
    /// Health checkers: how HTTPS probes verify routers (its `tls-*`
    /// options, which need no endpoint there).
    pub probe_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Health checkers: the spec in force, whose hosts they may probe.
    working_set: Option<watch::Receiver<Option<Arc<RouteSpec>>>>,
    /// Every grant above, with its origin.
    pub records: Vec<GrantRecord>,
}

/// The kinds whose values are capabilities.
pub fn is_grant(kind: OptionKind) -> bool {
    !matches!(kind, OptionKind::Text | OptionKind::Flag)
}

/// Refuse declarations whose grants cannot be meant: more than one option of
/// an endpoint or TLS kind (which would win?), half an endpoint, TLS without
/// an endpoint in a config source or notifier, and files or endpoints in a health-check
/// plugin (its world has no files or outbound interface to use them with;
/// its TLS options verify the routers its HTTP probes ask).
pub fn check_declaration(info: &PluginInfo, kind: PluginKind) -> Result<(), String> {
    let declared = |wanted: OptionKind| -> Vec<&str> {
        info.options
            .iter()
            .filter(|o| o.kind == wanted)
            .map(|o| o.name.as_str())
            .collect()
    };
    let tls = [OptionKind::TlsCa, OptionKind::TlsCert, OptionKind::TlsKey];
    if kind == PluginKind::HealthCheck
        && let Some(option) = info
            .options
            .iter()
            .find(|o| is_grant(o.kind) && !tls.contains(&o.kind))
    {
        return Err(format!(
            "option --{} is of kind {}, but health-check plugins can hold no file or endpoint grant",
            option.name,
            kind_name(option.kind)
        ));
    }
    for single in [
        OptionKind::EndpointHost,
        OptionKind::EndpointPort,
        OptionKind::TlsCa,
        OptionKind::TlsCert,
        OptionKind::TlsKey,
    ] {
        if let [first, second, ..] = declared(single)[..] {
            return Err(format!(
                "options --{first} and --{second} are both of kind {}; a plugin has at most one endpoint",
                kind_name(single)
            ));
        }
    }
    let has = |kind| !declared(kind).is_empty();
    if has(OptionKind::EndpointHost) != has(OptionKind::EndpointPort) {
        return Err(
            "an endpoint needs one option of kind endpoint-host and one of kind endpoint-port"
                .into(),
        );
    }
    if kind != PluginKind::HealthCheck && tls.into_iter().any(has) && !has(OptionKind::EndpointHost)
    {
        return Err(
            "options of kind tls-* need an endpoint (endpoint-host and endpoint-port)".into(),
        );
    }
    if has(OptionKind::TlsCert) != has(OptionKind::TlsKey) {
        return Err("a client certificate (tls-cert) and its key (tls-key) go together".into());
    }
    Ok(())
}

pub fn kind_name(kind: OptionKind) -> &'static str {
    match kind {
        OptionKind::Text => "text",
        OptionKind::Flag => "flag",
        OptionKind::File => "file",
        OptionKind::EndpointHost => "endpoint-host",
        OptionKind::EndpointPort => "endpoint-port",
        OptionKind::TlsCa => "tls-ca",
        OptionKind::TlsCert => "tls-cert",
        OptionKind::TlsKey => "tls-key",
    }
}

/// A problem with the options given to a plugin.
#[derive(Debug, thiserror::Error)]
#[error("option --{option}: {problem}")]
pub struct OptionError {
    pub option: String,
    pub problem: String,
}

fn option_error(option: &str, problem: impl Into<String>) -> OptionError {
    OptionError {
        option: option.into(),
        problem: problem.into(),
    }
}

/// The options a plugin's `init` gets (defaults filled in where they may
/// be) and what they grant.
#[derive(Debug, Default)]
pub struct Resolved {
    pub options: Vec<(String, String)>,
    pub grants: Grants,
    /// Defaults of grant options that were not applied: (option, default).
    pub withheld: Vec<(String, String)>,
}

/// Check the operator's options against the plugin's (already checked)
/// declaration and work out its grants.
pub fn resolve(
    info: &PluginInfo,
    given: &[(String, String)],
    trust: &Trust,
) -> Result<Resolved, OptionError> {
    if let Some((name, _)) = given
        .iter()
        .find(|(name, _)| !info.options.iter().any(|o| &o.name == name))
    {
        return Err(option_error(
            name,
            format!("not an option of plugin {}", info.name),
        ));
    }
    let mut resolving = Resolving::default();
    for spec in &info.options {
        let Some((value, from)) = resolving.value_of(spec, given, trust)? else {
            continue;
        };
        let value = resolving.grant(spec, value, from)?;
        resolving.resolved.options.push((spec.name.clone(), value));
    }
    resolving.endpoint(info)
}

/// Options resolved so far, and the parts of the endpoint seen so far (an
/// endpoint is granted once its host and port are both known).
#[derive(Default)]
struct Resolving {
    resolved: Resolved,
    /// (value, where it came from), as for every grant.
    host: Option<(String, String)>,
    port: Option<(u16, String)>,
    tls: TlsFiles,
}

impl Resolving {
    /// The option's value and where it came from (empty for a plain
    /// option's default); `None` when it has none. A grant option's default
    /// applies to a bundled plugin only: a third-party plugin's is withheld.
    fn value_of(
        &mut self,
        spec: &OptionSpec,
        given: &[(String, String)],
        trust: &Trust,
    ) -> Result<Option<(String, String)>, OptionError> {
        let given = given.iter().rev().find(|(name, _)| *name == spec.name);
        Ok(Some(match (given, &spec.default) {
            (Some((_, value)), _) => (
                value.clone(),
                format!("--{} on the command line", spec.name),
            ),
            (None, Some(default)) if !is_grant(spec.kind) => (default.clone(), String::new()),
            (None, Some(default)) => match trust {
                Trust::Bundled { name } => (
                    default.clone(),
                    format!("the default of --{} (bundled plugin {name})", spec.name),
                ),
                Trust::ThirdParty => {
                    self.resolved
                        .withheld
                        .push((spec.name.clone(), default.clone()));
                    if spec.required {
                        return Err(option_error(
                            &spec.name,
                            format!(
                                "required; its default {default:?} is not granted to a third-party plugin: give --{} to grant it",
                                spec.name
                            ),
                        ));
                    }
                    return Ok(None);
                }
            },
            (None, None) if spec.required => return Err(option_error(&spec.name, "required")),
            (None, None) => return Ok(None),
        }))
    }

    /// What the option's value grants, recorded with where it came from;
    /// the value as the plugin gets it (a file's absolute path).
    fn grant(
        &mut self,
        spec: &OptionSpec,
        value: String,
        from: String,
    ) -> Result<String, OptionError> {
        let bad = |problem: String| option_error(&spec.name, problem);
        let grants = &mut self.resolved.grants;
        let mut record = |grant: String| {
            grants.records.push(GrantRecord {
                grant,
                from: from.clone(),
            })
        };
        match spec.kind {
            OptionKind::Text | OptionKind::Flag => Ok(value),
            OptionKind::File => {
                let path = granted_file(&value).map_err(bad)?;
                let value = path.display().to_string();
                record(format!("read {value}"));
                grants.readable_files.push(path);
                Ok(value)
            }
            OptionKind::EndpointHost => {
                if value.is_empty()
                    || value.contains(|c: char| c.is_whitespace() || "/@?#".contains(c))
                {
                    return Err(bad(format!(
                        "{value:?}: expected a host name or IP address"
                    )));
                }
                self.host = Some((value.clone(), from));
                Ok(value)
            }
            OptionKind::EndpointPort => {
                let number = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(format!("{value:?}: not a TCP port")))?;
                self.port = Some((number, from));
                Ok(value)
            }
            OptionKind::TlsCa | OptionKind::TlsCert | OptionKind::TlsKey => {
                let path = granted_file(&value).map_err(bad)?;
                let value = path.display().to_string();
                let (slot, what) = match spec.kind {
                    OptionKind::TlsCa => (&mut self.tls.ca, "verify the endpoint by"),
                    OptionKind::TlsCert => (&mut self.tls.cert, "present the client certificate"),
                    _ => (&mut self.tls.key, "sign with the client key"),
                };
                *slot = Some(path);
                // Read by the host only: the plugin never sees the bytes.
                record(format!("{what} {value} (read by the daemon)"));
                Ok(value)
            }
        }
    }

    /// The endpoint, granted when its host and port are both given (with
    /// its TLS files, if any); half an endpoint is an error naming the
    /// missing option.
    fn endpoint(mut self, info: &PluginInfo) -> Result<Resolved, OptionError> {
        let option_of = |kind| {
            info.options
                .iter()
                .find(|o| o.kind == kind)
                .map_or_else(String::new, |o| o.name.clone())
        };
        let tls_given = self.tls.ca.is_some() || self.tls.cert.is_some() || self.tls.key.is_some();
        let (host, port) = match (self.host, self.port) {
            (Some(host), Some(port)) => (host, port),
            (Some(_), None) => {
                let port = option_of(OptionKind::EndpointPort);
                let problem = format!("the endpoint needs its port too: give --{port}");
                return Err(option_error(&port, problem));
            }
            (None, Some(_)) => {
                let host = option_of(OptionKind::EndpointHost);
                let problem = format!("the endpoint needs its host too: give --{host}");
                return Err(option_error(&host, problem));
            }
            // A health checker's TLS (it declares no endpoint): verify the
            // routers its HTTPS probes ask.
            (None, None) if tls_given && option_of(OptionKind::EndpointHost).is_empty() => {
                let ca = option_of(OptionKind::TlsCa);
                let config = self
                    .tls
                    .client_config()
                    .map_err(|problem| option_error(&ca, problem))?
                    .ok_or_else(|| option_error(&ca, "a client certificate needs a CA too"))?;
                self.resolved.grants.probe_tls = Some(config);
                return Ok(self.resolved);
            }
            (None, None) if tls_given => {
                let host = option_of(OptionKind::EndpointHost);
                let problem = format!("TLS options need an endpoint: give --{host}");
                return Err(option_error(&host, problem));
            }
            (None, None) => return Ok(self.resolved),
        };
        let ((host, host_from), (port, port_from)) = (host, port);
        let tls = self
            .tls
            .client_config()
            .map_err(|problem| option_error(&option_of(OptionKind::TlsCa), problem))?;
        let endpoint = Endpoint { host, port, tls };
        let from = if host_from == port_from {
            host_from
        } else {
            format!("{host_from}, {port_from}")
        };
        self.resolved.grants.records.push(GrantRecord {
            grant: format!("HTTP requests to {endpoint:?}"),
            from,
        });
        self.resolved.grants.endpoint = Some(endpoint);
        Ok(self.resolved)
    }
}

/// A file option must name an existing regular file (a symlink to one is
/// fine: Kubernetes ConfigMaps are symlinks); the plugin is granted its
/// absolute path.
fn granted_file(value: &str) -> Result<PathBuf, String> {
    let path = std::path::absolute(value).map_err(|e| format!("{value}: {e}"))?;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{value}: not a regular file")),
        Err(e) => Err(format!("{value}: {e}")),
    }
}

impl Grants {
    /// Grant a health checker the hosts of the spec in force (`specs`).
    pub fn grant_probes(&mut self, specs: watch::Receiver<Option<Arc<RouteSpec>>>) {
        self.working_set = Some(specs);
        self.records.push(GrantRecord {
            grant: "probe and report on the hosts of the route spec in force".into(),
            from: "loaded as a health-check plugin (--health-plugin / -H)".into(),
        });
    }

    /// The spec whose hosts the plugin may probe and report on now; `None`
    /// if it holds no probe grant or no spec is in force yet.
    pub fn working_set(&self) -> Option<Arc<RouteSpec>> {
        self.working_set.as_ref()?.borrow().clone()
    }

    /// Whether half-open probes may be sent: a probe grant, and a process
    /// that may open raw sockets (else what the operator must grant).
    pub fn half_open_probes(&self) -> Result<(), String> {
        self.may_probe()?;
        crate::probe::half_open::access()
    }

    /// Whether ICMP echo probes may be sent, as [`Grants::half_open_probes`].
    pub fn icmp_probes(&self) -> Result<(), String> {
        self.may_probe()?;
        crate::probe::icmp::access().map(drop)
    }

    /// Whether HTTPS probes can verify routers: a probe grant and a CA.
    pub fn http_tls_probes(&self) -> Result<(), String> {
        self.may_probe()?;
        match self.probe_tls {
            Some(_) => Ok(()),
            None => Err("no CA to verify routers by: give the plugin's tls-ca option".into()),
        }
    }

    fn may_probe(&self) -> Result<(), String> {
        match self.working_set {
            Some(_) => Ok(()),
            None => Err("no probe access: not loaded as a health-check plugin".into()),
        }
    }

    /// The granted file `requested` names, or why it is refused. Paths are
    /// compared lexically after making them absolute: a plugin cannot create
    /// links, and `..` in a request never matches a granted path.
    pub fn readable_file(&self, requested: &str) -> Result<&Path, String> {
        let absolute = std::path::absolute(requested).map_err(|e| format!("{requested}: {e}"))?;
        self.readable_files
            .iter()
            .find(|granted| **granted == absolute)
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                format!("{requested}: access denied (not a file granted to this plugin)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(name: &str, kind: OptionKind, default: Option<&str>) -> OptionSpec {
        OptionSpec {
            name: name.into(),
            help: String::new(),
            default: default.map(Into::into),
            required: false,
            kind,
        }
    }

    fn info(options: Vec<OptionSpec>) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            options,
            http_paths: vec![],
        }
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_the_granted_file_is_readable() {
        let grants = Grants {
            readable_files: vec![PathBuf::from("/etc/vpcrouter/spec.json")],
            ..Grants::default()
        };
        assert!(grants.readable_file("/etc/vpcrouter/spec.json").is_ok());
        for denied in [
            "/etc/vpcrouter/../passwd",
            "/etc/passwd",
            "/etc/vpcrouter/spec.json/..",
            "/etc/vpcrouter",
            "spec.json",
        ] {
            let err = grants.readable_file(denied).unwrap_err();
            assert!(err.contains("access denied"), "{denied}: {err}");
        }
    }

    #[test]
    fn a_third_party_default_grants_nothing() {
        let plugin = info(vec![
            option("secret", OptionKind::File, Some("/proc/self/environ")),
            option("host", OptionKind::EndpointHost, Some("127.0.0.1")),
            option("port", OptionKind::EndpointPort, Some("2379")),
            option("colour", OptionKind::Text, Some("red")),
        ]);
        let resolved = resolve(&plugin, &[], &Trust::ThirdParty).unwrap();
        assert!(resolved.grants.readable_files.is_empty());
        assert!(resolved.grants.endpoint.is_none());
        assert!(resolved.grants.records.is_empty());
        assert_eq!(resolved.options, given(&[("colour", "red")]));
        assert_eq!(resolved.withheld.len(), 3);

        // The same declaration from a bundled plugin: its defaults apply.
        let bundled = Trust::Bundled { name: "romana" };
        let plugin = info(plugin.options[1..].to_vec());
        let resolved = resolve(&plugin, &[], &bundled).unwrap();
        let endpoint = resolved.grants.endpoint.expect("granted");
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("127.0.0.1", 2379));
        assert!(
            resolved.grants.records[0]
                .from
                .contains("bundled plugin romana")
        );
    }

    #[test]
    fn the_command_line_grants_and_says_so() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().to_str().unwrap();
        let plugin = info(vec![
            option("spec", OptionKind::File, None),
            option("host", OptionKind::EndpointHost, Some("10.0.0.1")),
            option("port", OptionKind::EndpointPort, None),
        ]);
        let resolved = resolve(
            &plugin,
            &given(&[("spec", path), ("host", "127.0.0.1"), ("port", "80")]),
            &Trust::ThirdParty,
        )
        .unwrap();
        assert_eq!(resolved.grants.readable_files, [file.path()]);
        let records = &resolved.grants.records;
        assert_eq!(records[0].grant, format!("read {path}"));
        assert_eq!(records[0].from, "--spec on the command line");
        assert_eq!(records[1].grant, "HTTP requests to http://127.0.0.1:80");
    }

    #[test]
    fn half_an_endpoint_or_a_required_withheld_default_is_an_error() {
        let plugin = info(vec![
            option("host", OptionKind::EndpointHost, None),
            option("port", OptionKind::EndpointPort, Some("2379")),
        ]);
        // The port's default is withheld: the host alone is half an endpoint.
        let err = resolve(
            &plugin,
            &given(&[("host", "127.0.0.1")]),
            &Trust::ThirdParty,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("give --port"), "{err}");
        let err = resolve(&plugin, &given(&[("port", "1")]), &Trust::ThirdParty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("give --host"), "{err}");
        let mut required = option("spec", OptionKind::File, Some("/etc/passwd"));
        required.required = true;
        let err = resolve(&info(vec![required]), &[], &Trust::ThirdParty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not granted to a third-party plugin"), "{err}");
        let err = resolve(
            &plugin,
            &given(&[("host", "a b"), ("port", "1")]),
            &Trust::ThirdParty,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected a host name"), "{err}");
    }

    #[test]
    fn meaningless_grant_declarations_are_refused() {
        let cases: [(Vec<OptionSpec>, PluginKind, &str); 6] = [
            (
                vec![
                    option("a", OptionKind::EndpointHost, None),
                    option("b", OptionKind::EndpointHost, None),
                    option("p", OptionKind::EndpointPort, None),
                ],
                PluginKind::ConfigSource,
                "--a and --b are both of kind endpoint-host",
            ),
            (
                vec![option("a", OptionKind::EndpointHost, None)],
                PluginKind::ConfigSource,
                "endpoint needs one option",
            ),
            (
                vec![option("p", OptionKind::EndpointPort, None)],
                PluginKind::ConfigSource,
                "endpoint needs one option",
            ),
            (
                vec![option("ca", OptionKind::TlsCa, None)],
                PluginKind::ConfigSource,
                "need an endpoint",
            ),
            (
                vec![
                    option("a", OptionKind::EndpointHost, None),
                    option("p", OptionKind::EndpointPort, None),
                    option("c", OptionKind::TlsCert, None),
                ],
                PluginKind::ConfigSource,
                "go together",
            ),
            (
                vec![option("f", OptionKind::File, None)],
                PluginKind::HealthCheck,
                "health-check plugins can hold no",
            ),
        ];
        for (options, kind, expected) in cases {
            let err = check_declaration(&info(options), kind).unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    /// A health check's TLS options need no endpoint: the CA verifies the
    /// routers its HTTPS probes ask, and grants no endpoint.
    #[test]
    fn a_health_checks_ca_verifies_its_https_probes() {
        let declared = info(vec![
            option("ca", OptionKind::TlsCa, None),
            option("endpoint", OptionKind::EndpointHost, None),
            option("port", OptionKind::EndpointPort, None),
        ]);
        let err = check_declaration(&declared, PluginKind::HealthCheck).unwrap_err();
        assert!(err.contains("--endpoint is of kind endpoint-host"), "{err}");
        let declared = info(vec![option("ca", OptionKind::TlsCa, None)]);
        check_declaration(&declared, PluginKind::HealthCheck).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let ca = ca.display().to_string();
        let resolved = resolve(&declared, &given(&[("ca", &ca)]), &Trust::ThirdParty).unwrap();
        assert!(resolved.grants.probe_tls.is_some());
        assert!(resolved.grants.endpoint.is_none());
        let without = resolve(&declared, &[], &Trust::ThirdParty).unwrap();
        assert!(without.grants.probe_tls.is_none());
    }
}
