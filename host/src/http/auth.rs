//! Bearer-token protection. What can change state (anything but GET and
//! HEAD, and every request to a path a plugin serves) needs the token when
//! one is configured;
//! with `--http-auth-all` the read-only views need it too. A listener on a
//! non-loopback address must have a token: the daemon always serves
//! endpoints that change state (checked at start, see [`AuthPolicy::new`]).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    token: Option<String>,
    all: bool,
    /// Paths plugins serve: with a token set, every request to them needs
    /// it, whatever the method (a plugin may change the spec on a GET).
    plugin_paths: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("--http-token-file {0}: {1}")]
    TokenFile(String, String),
    #[error(
        "--address {0} is not a loopback address: the endpoints that change state (POST /plugins/reload, POST /rebalance, the paths plugins serve such as /route_spec) would be open to the network; give --http-token-file (views stay open without it)"
    )]
    OpenMutation(String),
    #[error("--http-auth-all needs --http-token-file")]
    AllWithoutToken,
}

/// The one token a token file holds (the daemon's, and the client
/// subcommands' that talk to it).
pub fn read_token(file: &Path) -> Result<String, String> {
    let text = crate::read::read_regular(file, MAX_TOKEN_FILE).map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&text).trim().to_string();
    match token.is_empty() || token.contains(char::is_whitespace) {
        true => Err("must hold one token (no blanks)".into()),
        false => Ok(token),
    }
}

impl AuthPolicy {
    /// The policy for a listener on `address`.
    pub fn new(address: &str, token_file: Option<&Path>, all: bool) -> Result<Self, AuthError> {
        let token = token_file
            .map(|file| {
                read_token(file).map_err(|e| AuthError::TokenFile(file.display().to_string(), e))
            })
            .transpose()?;
        if all && token.is_none() {
            return Err(AuthError::AllWithoutToken);
        }
        if token.is_none() && !is_loopback(address) {
            return Err(AuthError::OpenMutation(address.into()));
        }
        Ok(Self {
            token,
            all,
            plugin_paths: BTreeSet::new(),
        })
    }

    /// Guard the paths plugins serve.
    pub fn guarding(self, plugin_paths: impl IntoIterator<Item = String>) -> Self {
        Self {
            plugin_paths: plugin_paths.into_iter().collect(),
            ..self
        }
    }

    /// What the daemon says at start about who may do what.
    pub fn describe(&self) -> &'static str {
        match (&self.token, self.all) {
            (None, _) => "no HTTP token: the listener is loopback-only for changes",
            (Some(_), false) => {
                "requests that can change state (plugin paths, any POST) require the bearer token; views are open"
            }
            (Some(_), true) => "every HTTP request requires the bearer token",
        }
    }

    fn requires_token(&self, method: &Method, path: &str) -> bool {
        self.token.is_some()
            && (self.all
                || !matches!(*method, Method::GET | Method::HEAD)
                || self.plugin_paths.contains(path))
    }

    fn accepts(&self, authorization: Option<&str>) -> bool {
        let (Some(token), Some(given)) = (&self.token, authorization) else {
            return false;
        };
        let Some(given) = given.strip_prefix("Bearer ") else {
            return false;
        };
        constant_time_eq(token.as_bytes(), given.trim().as_bytes())
    }
}

fn is_loopback(address: &str) -> bool {
    address == "localhost" || address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compare without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn check(
    State(policy): State<Arc<AuthPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if policy.requires_token(request.method(), request.uri().path()) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !policy.accepts(given) {
            let body =
                serde_json::json!({ "error": "a valid bearer token is required" }).to_string();
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, "Bearer"),
                    (header::CONTENT_TYPE, "application/json"),
                ],
                body,
            )
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    /// Every daemon serves endpoints that change state (reload, rebalance),
    /// so any listener beyond loopback needs the token.
    #[test]
    fn a_non_loopback_listener_needs_a_token() {
        assert!(AuthPolicy::new("127.0.0.1", None, false).is_ok());
        assert!(AuthPolicy::new("localhost", None, false).is_ok());
        assert!(AuthPolicy::new("::1", None, false).is_ok());
        for open in ["0.0.0.0", "::", "10.1.2.3"] {
            assert_eq!(
                AuthPolicy::new(open, None, false).unwrap_err(),
                AuthError::OpenMutation(open.into())
            );
        }
        let file = token_file("s3cret\n");
        assert!(AuthPolicy::new("0.0.0.0", Some(file.path()), false).is_ok());
        assert_eq!(
            AuthPolicy::new("127.0.0.1", None, true).unwrap_err(),
            AuthError::AllWithoutToken
        );
        for bad in ["", "  \n", "two words"] {
            let file = token_file(bad);
            assert!(AuthPolicy::new("127.0.0.1", Some(file.path()), false).is_err());
        }
    }

    #[test]
    fn tokens_are_checked_for_changes_and_with_auth_all_for_everything() {
        let file = token_file("s3cret");
        let policy = AuthPolicy::new("0.0.0.0", Some(file.path()), false)
            .unwrap()
            .guarding(["/route_spec".to_string()]);
        assert!(!policy.requires_token(&Method::GET, "/ips"));
        assert!(policy.requires_token(&Method::GET, "/route_spec"));
        assert!(policy.requires_token(&Method::POST, "/ips"));
        assert!(policy.accepts(Some("Bearer s3cret")));
        assert!(!policy.accepts(Some("Bearer s3cre")));
        assert!(!policy.accepts(Some("Basic s3cret")));
        assert!(!policy.accepts(None));
        let all = AuthPolicy::new("0.0.0.0", Some(file.path()), true).unwrap();
        assert!(all.requires_token(&Method::GET, "/ips"));
        assert!(!AuthPolicy::default().requires_token(&Method::POST, "/route_spec"));
    }
}
