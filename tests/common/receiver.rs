//! A webhook receiver on loopback, for the notification tests: keeps every
//! POST (its signature header and body) and answers 200, or takes each
//! request and never answers.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One POST the receiver took: its signature header and its body.
#[derive(Clone, Debug)]
pub struct Received {
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on loopback: keeps every POST and answers 200, or
/// (`hangs`) reads it and never answers.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(hangs: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || take(connection, &kept, hangs));
            }
        });
        Self { port, got }
    }

    #[allow(dead_code)] // not every test binary sends webhooks
    pub fn url(&self) -> String {
        format!("webhook:http://127.0.0.1:{}/hooks/vpcrouter", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Every notice received so far, with the message it came in.
    #[allow(dead_code)] // not every test binary reads notices
    pub fn notices(&self) -> Vec<(usize, Value)> {
        (self.received().iter().enumerate())
            .flat_map(|(i, r)| {
                let notices = r.json()["notices"].as_array().cloned().unwrap_or_default();
                notices.into_iter().map(move |n| (i, n))
            })
            .collect()
    }
}

fn take(connection: TcpStream, kept: &Mutex<Vec<Received>>, hangs: bool) {
    let mut reader = BufReader::new(connection);
    let (mut length, mut signature) = (0, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(": ") {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-vpcrouter-signature" => signature = Some(value.to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if hangs {
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    kept.lock().unwrap().push(Received { signature, body });
    let _ = reader
        .get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}
