//! A plugin's stderr: not inherited, but not lost either. Lines go to the log (redacted,
//! within the instance's log budget) and the last few are kept, so that a plugin that
//! panics and traps is reported with its panic message.

use crate::redact::Redactor;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const TAIL_BYTES: usize = 2048;

#[derive(Clone)]
pub struct StderrCapture {
    label: Arc<str>,
    redactor: Redactor,
    state: Arc<Mutex<Captured>>,
}

struct Captured {
    partial: Vec<u8>,
    tail: String,
    budget: u64,
    truncated: bool,
}

impl StderrCapture {
    pub fn new(label: &str, redactor: Redactor, budget: u64) -> Self {
        Self {
            label: label.into(),
            redactor,
            state: Arc::new(Mutex::new(Captured {
                partial: Vec::new(),
                tail: String::new(),
                budget,
                truncated: false,
            })),
        }
    }

    /// The last lines written, redacted.
    pub fn tail(&self) -> String {
        let state = self.state.lock().expect("stderr capture");
        let mut tail = state.tail.clone();
        if !state.partial.is_empty() {
            tail.push_str(&crate::text::for_terminal(
                &self
                    .redactor
                    .redact(&String::from_utf8_lossy(&state.partial)),
                TAIL_BYTES,
            ));
        }
        tail.trim().to_string()
    }

    fn write(&self, bytes: &[u8]) {
        let mut state = self.state.lock().expect("stderr capture");
        state.partial.extend_from_slice(bytes);
        while let Some(end) = state.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = state.partial.drain(..=end).collect();
            let line = crate::text::for_terminal(
                &self
                    .redactor
                    .redact(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref()),
                4096,
            );
            state.tail.push_str(&line);
            state.tail.push('\n');
            if state.tail.len() > TAIL_BYTES {
                let mut cut = state.tail.len() - TAIL_BYTES;
                while !state.tail.is_char_boundary(cut) {
                    cut += 1;
                }
                state.tail.drain(..cut);
            }
            if state.truncated {
                continue;
            }
            if line.len() as u64 + 1 > state.budget {
                state.truncated = true;
                tracing::warn!(plugin = %self.label, "stderr limit reached: further output dropped");
                continue;
            }
            state.budget -= line.len() as u64 + 1;
            tracing::info!(plugin = %self.label, "stderr: {line}");
        }
        // A plugin writing one endless line must not grow memory without bound.
        if state.partial.len() > TAIL_BYTES {
            let at = state.partial.len() - TAIL_BYTES;
            let keep = state.partial.split_off(at);
            state.partial = keep;
        }
    }
}

impl IsTerminal for StderrCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrCapture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StderrCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
