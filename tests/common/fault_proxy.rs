//! A small HTTP proxy in front of moto that counts the AWS calls passing
//! through (by `Action`, or SQS's `X-Amz-Target`) and injects faults into
//! chosen ones: EC2's throttling answer, a 500, a slow answer, or no answer
//! at all. It also stands in for calls moto lacks (Auto Scaling's lifecycle
//! actions): it answers them itself and keeps what the client sent.
//!
//! It speaks just enough HTTP/1.1 for the AWS SDK's query-protocol requests
//! and moto's answers: bodies framed by Content-Length, one upstream
//! connection per request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded`, as EC2 throttles.
    Throttle,
    /// HTTP 500 `InternalError`.
    ServerError,
    /// HTTP 400 with this error code, as EC2 refuses a request
    /// (`InvalidNatGatewayID.NotFound`, ...).
    Refuse(&'static str),
    /// Forward after this delay.
    Slow(Duration),
    /// Never answer (the client's timeout must fire).
    Hang,
}

#[derive(Default)]
struct Shared {
    faults: BTreeMap<String, VecDeque<Fault>>,
    /// Action -> requests seen (faulted ones included).
    calls: BTreeMap<String, u64>,
    /// Action -> the answer given instead of moto's.
    stand_ins: BTreeMap<String, String>,
    /// Action -> (text, replacement) in moto's answers: a field moto lacks.
    rewrites: BTreeMap<String, (String, String)>,
    /// Action -> the bodies of the requests stood in for.
    sent: BTreeMap<String, Vec<String>>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Listen on a free loopback port, forwarding to `upstream` (a URL
    /// `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("http upstream")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream.clone(), state.clone()));
            }
        });
        Self { url, shared }
    }

    /// The next requests for `action` meet these faults, in order; later
    /// ones pass.
    pub fn inject(&self, action: &str, faults: impl IntoIterator<Item = Fault>) {
        self.shared
            .lock()
            .unwrap()
            .faults
            .entry(action.to_string())
            .or_default()
            .extend(faults);
    }

    /// Requests for `action` pass again: the faults not met are dropped.
    pub fn clear(&self, action: &str) {
        self.shared.lock().unwrap().faults.remove(action);
    }

    /// Faults injected for `action` that no request has met yet.
    pub fn pending(&self, action: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .faults
            .get(action)
            .map_or(0, VecDeque::len)
    }

    /// Requests seen per action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.lock().unwrap().calls.clone()
    }

    /// Answer `action` with this XML body (HTTP 200) instead of moto.
    pub fn stand_in(&self, action: &str, answer: &str) {
        let mut shared = self.shared.lock().unwrap();
        shared
            .stand_ins
            .insert(action.to_string(), answer.to_string());
    }

    /// Replace `text` with `by` in moto's answers to `action` (moto goes
    /// from running to stopped at once; EC2 says `stopping` first).
    pub fn rewrite(&self, action: &str, text: &str, by: &str) {
        let mut shared = self.shared.lock().unwrap();
        let rewrite = (text.to_string(), by.to_string());
        shared.rewrites.insert(action.to_string(), rewrite);
    }

    /// The request bodies of `action` stood in for, in order.
    pub fn sent(&self, action: &str) -> Vec<String> {
        let shared = self.shared.lock().unwrap();
        shared.sent.get(action).cloned().unwrap_or_default()
    }
}

/// Requests of one client connection, in turn.
async fn serve(client: TcpStream, upstream: String, shared: Arc<Mutex<Shared>>) {
    let mut client = BufReader::new(client);
    while let Some((head, body)) = read_message(&mut client).await {
        let action = action(&head, &body);
        let (fault, stand_in, rewrite) = {
            let mut shared = shared.lock().unwrap();
            *shared.calls.entry(action.clone()).or_default() += 1;
            let stand_in = shared.stand_ins.get(&action).cloned();
            if stand_in.is_some() {
                let body = String::from_utf8_lossy(&body).into_owned();
                shared.sent.entry(action.clone()).or_default().push(body);
            }
            let fault = shared.faults.get_mut(&action).and_then(VecDeque::pop_front);
            (fault, stand_in, shared.rewrites.get(&action).cloned())
        };
        let response = match (fault, stand_in) {
            (None, Some(answer)) => Some(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                )
                .into_bytes(),
            ),
            (fault, _) => match fault {
            Some(Fault::Throttle) => {
                error_response(503, "RequestLimitExceeded", "Request limit exceeded.")
            }
            Some(Fault::ServerError) => {
                error_response(500, "InternalError", "An internal error has occurred.")
            }
            Some(Fault::Refuse(code)) => error_response(400, code, "Refused by the test proxy."),
            Some(Fault::Hang) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                forward(&upstream, &head, &body).await
            }
            None => forward(&upstream, &head, &body).await.map(|answer| match &rewrite {
                Some((text, by)) => rewritten(answer, text, by),
                None => answer,
            }),
            },
        };
        let Some(response) = response else {
            return;
        };
        if client.get_mut().write_all(&response).await.is_err() {
            return;
        }
    }
}

/// One HTTP message: its head (through the blank line) and body.
async fn read_message<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// `Action=...` of a form-encoded (query protocol) request, or the
/// operation of a JSON one (`X-Amz-Target: AmazonSQS.ReceiveMessage`).
fn action(head: &[u8], body: &[u8]) -> String {
    let head = String::from_utf8_lossy(head);
    let target = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-amz-target")
            .then(|| value.trim().to_string())
    });
    if let Some(target) = target {
        return target.rsplit('.').next().unwrap_or("?").to_string();
    }
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("?")
        .to_string()
}

async fn forward(upstream: &str, head: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut server = BufReader::new(TcpStream::connect(upstream).await.ok()?);
    server.get_mut().write_all(head).await.ok()?;
    server.get_mut().write_all(body).await.ok()?;
    let (head, body) = read_message(&mut server).await?;
    Some([head, body].concat())
}

/// An HTTP answer with `text` replaced by `by` in its body, its length
/// told anew.
fn rewritten(answer: Vec<u8>, text: &str, by: &str) -> Vec<u8> {
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return answer.into_bytes();
    };
    let body = body.replace(text, by);
    let head: Vec<String> = (head.split("\r\n"))
        .map(
            |line| match line.to_ascii_lowercase().starts_with("content-length:") {
                true => format!("Content-Length: {}", body.len()),
                false => line.to_string(),
            },
        )
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

fn error_response(status: u16, code: &str, message: &str) -> Option<Vec<u8>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
    );
    let reason = match status {
        503 => "Service Unavailable",
        500 => "Internal Server Error",
        _ => "Bad Request",
    };
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}
