//! Election through etcd v3's own election API (lease + campaign), spoken
//! over etcd's JSON gateway with the daemon's HTTP client: no gRPC stack,
//! TLS from the operator's PEM files. Several endpoints (the members of a
//! cluster) are tried in turn; the one that answered last is asked first.
//!
//! A campaign is a long poll; it is restarted every [`CAMPAIGN_PERIOD`], so
//! that a standby waiting on a member that hangs moves to another one
//! (re-campaigning with the same lease finds the same key: the place in the
//! queue, or the leadership just won, is kept). A won campaign is believed
//! only once etcd names its key as the leader's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::HaSettings;
use super::{Boxed, Election, ElectionError, Term};
use crate::http_client::{self, Endpoint, TlsFiles};

/// Longest a campaign request waits before it is asked again.
pub const CAMPAIGN_PERIOD: Duration = Duration::from_secs(5);
/// Largest answer read from etcd.
const MAX_ANSWER: usize = 1 << 20;

/// etcd's JSON gateway on the members of a cluster: the election's, and
/// the drains' store.
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    /// Longest a short request may take on one endpoint.
    request_timeout: Duration,
}

pub struct EtcdElection {
    client: Arc<EtcdClient>,
    /// The election's name (a key prefix), e.g. `/vpcrouter/vpc-1/leader`.
    name: String,
    /// This replica's id, the value of its campaign key.
    id: String,
    ttl: Duration,
    /// The session's lease.
    lease: Mutex<Option<i64>>,
}

impl EtcdElection {
    /// The election `settings` describe, for the VPC `vpc`; the error says
    /// which flag is wrong.
    pub fn from_settings(settings: &HaSettings, vpc: &str) -> Result<Self, String> {
        let tls = settings.endpoints.iter().any(|e| e.tls);
        if tls && settings.endpoints.iter().any(|e| !e.tls) {
            return Err("--ha-etcd: use https for every endpoint or for none".into());
        }
        if tls != settings.ca.is_some() {
            return Err(match tls {
                true => "--ha-etcd: https endpoints need --ha-etcd-ca".into(),
                false => "--ha-etcd-ca needs https endpoints in --ha-etcd".into(),
            });
        }
        let files = TlsFiles {
            ca: settings.ca.clone(),
            cert: settings.client.as_ref().map(|(cert, _)| cert.clone()),
            key: settings.client.as_ref().map(|(_, key)| key.clone()),
        };
        let tls = files
            .client_config()
            .map_err(|e| format!("--ha-etcd-ca/--ha-etcd-cert/--ha-etcd-key: {e}"))?;
        let endpoints = settings
            .endpoints
            .iter()
            .map(|url| Endpoint {
                host: url.host.clone(),
                port: url.port,
                tls: tls.clone(),
            })
            .collect();
        Ok(Self::new(
            endpoints,
            settings.election_key(vpc),
            settings.id.clone(),
            settings.lease_ttl,
        ))
    }

    pub fn new(endpoints: Vec<Endpoint>, name: String, id: String, ttl: Duration) -> Self {
        let client = EtcdClient {
            endpoints,
            current: AtomicUsize::new(0),
            request_timeout: (ttl / 6).min(Duration::from_secs(1)),
        };
        Self {
            client: Arc::new(client),
            name,
            id,
            ttl,
            lease: Mutex::new(None),
        }
    }

    /// The election's key prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The etcd the election runs on, for what else replicas share there.
    pub fn client(&self) -> Arc<EtcdClient> {
        self.client.clone()
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, ElectionError> {
        (self.client)
            .call(path, body, self.client.request_timeout)
            .await
    }

    fn lease(&self) -> Result<i64, ElectionError> {
        self.lease
            .lock()
            .expect("lease lock")
            .ok_or_else(|| ElectionError::SessionLost("no lease".into()))
    }
}

impl EtcdClient {
    /// POST `body` to `path` on the first endpoint that answers.
    async fn call(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, ElectionError> {
        let count = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut problems = Vec::new();
        for index in (first..first + count).map(|i| i % count) {
            let endpoint = &self.endpoints[index];
            let request = hyper::Request::builder()
                .method("POST")
                .uri(path)
                .header(hyper::header::CONTENT_TYPE, "application/json");
            let sent = http_client::send(endpoint, request, body.to_string().into(), MAX_ANSWER);
            let response = match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    problems.push(format!("{endpoint:?}{path}: {e}"));
                    continue;
                }
                Err(_) => {
                    problems.push(format!("{endpoint:?}{path}: no answer within {timeout:?}"));
                    continue;
                }
            };
            self.current.store(index, Ordering::Relaxed);
            let answer: Value = serde_json::from_slice(&response.body).map_err(|e| {
                ElectionError::Unavailable(format!("{endpoint:?}{path}: not JSON: {e}"))
            })?;
            if response.status == 200 {
                return Ok(answer);
            }
            let message = answer["message"]
                .as_str()
                .or(answer["error"].as_str())
                .unwrap_or("error")
                .to_string();
            return Err(if message.contains("lease not found") {
                ElectionError::SessionLost(message)
            } else {
                ElectionError::Unavailable(format!("{endpoint:?}{path}: {message}"))
            });
        }
        Err(ElectionError::Unavailable(problems.join("; ")))
    }

    /// The value of `key`, if it exists (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ElectionError> {
        let request = json!({"key": BASE64.encode(key)});
        let answer = self
            .call("/v3/kv/range", &request, self.request_timeout)
            .await?;
        Ok(answer["kvs"][0]["value"]
            .as_str()
            .map(|value| BASE64.decode(value).unwrap_or_default())
            .or_else(|| answer["kvs"][0].is_object().then(Vec::new)))
    }

    /// Set `key` to `value` if `term` is still the current one (its
    /// leader key has not been re-created): a replica that no longer leads
    /// changes nothing. Whether it was set.
    pub async fn put_in_term(
        &self,
        term: &Term,
        key: &str,
        value: &[u8],
    ) -> Result<bool, ElectionError> {
        let request = json!({
            "compare": [term_holds(term)],
            "success": [{"request_put": {
                "key": BASE64.encode(key),
                "value": BASE64.encode(value),
            }}],
        });
        let answer = self
            .call("/v3/kv/txn", &request, self.request_timeout)
            .await?;
        // Protobuf's JSON leaves out false.
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }
}

/// The comparison that holds while `term` is the current one.
fn term_holds(term: &Term) -> Value {
    json!({
        "key": term.key,
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": term.revision.to_string(),
    })
}

/// etcd's JSON gives 64-bit numbers as strings.
fn number(value: &Value) -> Option<i64> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or(value.as_i64())
}

fn text(value: &Value) -> String {
    let bytes = value
        .as_str()
        .and_then(|s| BASE64.decode(s).ok())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Election for EtcdElection {
    fn open(&self) -> Boxed<'_, ()> {
        Box::pin(async move {
            // A session left from before (etcd was away) is ended first, so
            // that it cannot hold leadership nobody acts on.
            let old = self.lease.lock().expect("lease lock").take();
            if let Some(old) = old {
                let _ = self
                    .call("/v3/lease/revoke", &json!({"ID": old.to_string()}))
                    .await;
            }
            let granted = self
                .call("/v3/lease/grant", &json!({"TTL": self.ttl.as_secs()}))
                .await?;
            let id = number(&granted["ID"])
                .ok_or_else(|| ElectionError::Unavailable("lease grant without an ID".into()))?;
            *self.lease.lock().expect("lease lock") = Some(id);
            Ok(())
        })
    }

    fn renew(&self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let lease = self.lease()?;
            let answer = self
                .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
                .await?;
            // An expired lease answers with no TTL (or 0), not an error.
            match number(&answer["result"]["TTL"]) {
                Some(ttl) if ttl > 0 => Ok(()),
                _ => Err(ElectionError::SessionLost(format!(
                    "lease {lease:x} expired"
                ))),
            }
        })
    }

    fn campaign(&self) -> Boxed<'_, Term> {
        Box::pin(async move {
            let lease = self.lease()?;
            let request = json!({
                "name": BASE64.encode(&self.name),
                "lease": lease.to_string(),
                "value": BASE64.encode(&self.id),
            });
            loop {
                match self
                    .client
                    .call("/v3/election/campaign", &request, CAMPAIGN_PERIOD)
                    .await
                {
                    Ok(answer) => {
                        let leader = &answer["leader"];
                        let revision = number(&leader["rev"]).ok_or_else(|| {
                            ElectionError::Unavailable("campaign answer without a revision".into())
                        })?;
                        let key = leader["key"].as_str().unwrap_or_default().to_string();
                        let term = Term {
                            leader: self.id.clone(),
                            revision,
                            key,
                        };
                        // A campaign given up (timed out, reconnected) resigns
                        // in etcd as it ends: it can delete the key a newer
                        // campaign of this lease has just found and waited
                        // on. Leading is the oldest key existing, ours.
                        match self.leader().await? {
                            Some(current)
                                if current.key == term.key && current.revision == revision =>
                            {
                                return Ok(term);
                            }
                            _ => continue,
                        }
                    }
                    // Still waiting for the leader ahead: ask again.
                    Err(ElectionError::Unavailable(e)) if e.contains("no answer within") => {}
                    Err(e) => return Err(e),
                }
            }
        })
    }

    fn confirm<'a>(&'a self, term: &'a Term) -> Boxed<'a, bool> {
        Box::pin(async move {
            let compare = json!({"compare": [term_holds(term)]});
            let answer = self.call("/v3/kv/txn", &compare).await?;
            // Protobuf's JSON leaves out false.
            Ok(answer["succeeded"].as_bool().unwrap_or(false))
        })
    }

    fn leader(&self) -> Boxed<'_, Option<Term>> {
        Box::pin(async move {
            let request = json!({"name": BASE64.encode(&self.name)});
            match self.call("/v3/election/leader", &request).await {
                Ok(answer) => {
                    let kv = &answer["kv"];
                    Ok(number(&kv["create_revision"]).map(|revision| Term {
                        leader: text(&kv["value"]),
                        revision,
                        key: kv["key"].as_str().unwrap_or_default().to_string(),
                    }))
                }
                Err(ElectionError::Unavailable(e)) if e.contains("no leader") => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn resign<'a>(&'a self, _term: Option<&'a Term>) -> Boxed<'a, ()> {
        Box::pin(async move {
            // Revoking the lease deletes the campaign key with it: a leader's
            // key going is what wakes the next in line.
            let lease = self.lease.lock().expect("lease lock").take();
            let Some(lease) = lease else {
                return Ok(());
            };
            self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
                .await
                .map(drop)
        })
    }
}
