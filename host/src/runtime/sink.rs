//! The stream a source writes its backup into.
//!
//! A bounded channel of chunks: the plugin's `output-stream` (and any command spliced in
//! by `process.stream-stdout`) feeds it, the pipeline thread drains it into gzip and
//! OpenPGP. The bound is what keeps memory flat for a dump of any size: when the pipeline
//! falls behind, `check-write` returns 0 and the plugin waits on its pollable.

use bytes::Bytes;
use tokio::sync::mpsc;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The largest single write the plugin is offered (`check-write`).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the plugin and the pipeline thread.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The writing end; cheap to clone.
#[derive(Clone)]
pub struct ArtifactSink {
    tx: mpsc::Sender<Bytes>,
}

/// The reading end, drained by the pipeline thread.
pub type ArtifactChunks = mpsc::Receiver<Bytes>;

pub fn artifact_channel() -> (ArtifactSink, ArtifactChunks) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    (ArtifactSink { tx }, rx)
}

impl ArtifactSink {
    /// For host-side producers (a command's stdout). Fails when the pipeline has stopped.
    pub async fn send(&self, chunk: Bytes) -> Result<(), ()> {
        self.tx.send(chunk).await.map_err(|_| ())
    }

    /// The `wasi:io` view handed to the plugin.
    pub fn stream(&self) -> SinkStream {
        SinkStream {
            tx: self.tx.clone(),
            permit: None,
        }
    }
}

pub struct SinkStream {
    tx: mpsc::Sender<Bytes>,
    /// A reserved slot, taken by `check-write` or `ready`, spent by `write`.
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

impl SinkStream {
    fn try_reserve(&mut self) -> StreamResult<bool> {
        if self.permit.is_some() {
            return Ok(true);
        }
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(true)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {
        if self.permit.is_none()
            && let Ok(permit) = self.tx.clone().reserve_owned().await
        {
            self.permit = Some(permit);
        }
        // A closed channel is ready too: the next check-write reports it.
    }
}

impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > CHUNK_BYTES {
            return Err(StreamError::trap("write larger than check-write permitted"));
        }
        if !self.try_reserve()? {
            return Err(StreamError::trap("write without a check-write permit"));
        }
        let permit = self.permit.take().expect("reserved above");
        permit.send(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Chunks are handed over whole on write; there is nothing buffered here.
        if self.tx.is_closed() {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(if self.try_reserve()? { CHUNK_BYTES } else { 0 })
    }
}
