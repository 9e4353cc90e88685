//! An input stream that breaks part-way: it yields some bytes, then fails the way a
//! vanished temp file or a dying disk would. The conformance kit hands it to a
//! destination's `put` to check the contract's hardest promise: an upload cut short must
//! fail and leave nothing under the object's name.

use bytes::Bytes;
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

pub struct BrokenInput {
    remaining: Bytes,
}

impl BrokenInput {
    /// Yields `good` and then fails every read.
    pub fn new(good: Vec<u8>) -> BrokenInput {
        BrokenInput {
            remaining: Bytes::from(good),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for BrokenInput {
    async fn ready(&mut self) {
        // Always ready: with data, or with the failure.
    }
}

impl InputStream for BrokenInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.remaining.is_empty() {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "the artifact could not be read any further (injected by the conformance kit)"
            )));
        }
        let n = size.min(self.remaining.len());
        Ok(self.remaining.split_to(n))
    }
}
