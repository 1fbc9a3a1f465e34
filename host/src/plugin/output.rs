//! What a plugin instance writes to its standard output and error: every
//! line is logged at debug (under the plugin's log budget), and the last
//! [`TAIL_BYTES`] are kept, so that a trap can say what the plugin printed
//! last (a Python traceback, a JavaScript exception, a Rust panic message).
//! Writes never block and never fail: a plugin cannot stall or break on its
//! own output.

use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::text::clip;

/// How much of an instance's output is kept.
pub const TAIL_BYTES: usize = 8 << 10;
/// Longest output line logged.
const MAX_LOGGED_LINE: usize = 1024;

/// The output of one instance (stdout and stderr together, in order).
#[derive(Clone)]
pub struct Output(Arc<Mutex<Captured>>);

struct Captured {
    plugin: Arc<str>,
    tail: VecDeque<u8>,
    /// The line being written, up to its newline (bounded).
    line: Vec<u8>,
}

impl Output {
    pub fn new(plugin: Arc<str>) -> Self {
        Self(Arc::new(Mutex::new(Captured {
            plugin,
            tail: VecDeque::with_capacity(TAIL_BYTES),
            line: Vec::new(),
        })))
    }

    /// The last output, at most `max` bytes of it, trimmed; empty if none.
    pub fn tail(&self, max: usize) -> String {
        let captured = self.0.lock().expect("plugin output lock");
        let skip = captured.tail.len().saturating_sub(max);
        let bytes: Vec<u8> = captured.tail.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    fn write(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().expect("plugin output lock");
        let kept = bytes.len().min(TAIL_BYTES);
        let overflow = (captured.tail.len() + kept).saturating_sub(TAIL_BYTES);
        captured.tail.drain(..overflow);
        captured.tail.extend(&bytes[bytes.len() - kept..]);
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut captured.line);
                let line = String::from_utf8_lossy(&line);
                tracing::debug!(target: crate::logging::PLUGIN_LINES, plugin = &*captured.plugin, output = %clip(line.trim_end(), MAX_LOGGED_LINE), "plugin output");
            } else if captured.line.len() <= MAX_LOGGED_LINE {
                captured.line.push(byte);
            }
        }
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

impl OutputStream for Output {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        Output::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Output::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tail_is_kept() {
        let output = Output::new("p".into());
        output.write(b"first line\n");
        assert_eq!(output.tail(100), "first line");
        output.write(&vec![b'x'; 3 * TAIL_BYTES]);
        output.write(b"\nTraceback: ValueError\n");
        let tail = output.tail(TAIL_BYTES);
        assert!(tail.len() <= TAIL_BYTES);
        assert!(tail.ends_with("Traceback: ValueError"), "{tail}");
        assert_eq!(output.tail(22), "Traceback: ValueError");
    }
}
