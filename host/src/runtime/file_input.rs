//! A regular file as the `input-stream` a plugin reads: the artifact for a destination's
//! `put`, a granted file for a source's `files.open-file`.
//!
//! wasmtime's generic `AsyncReadStream` over a tokio file reads 64 KiB at a time, each
//! read a round trip to tokio's blocking pool and back through a channel: uploading a
//! 753 MiB artifact to a local destination took ~12 000 of them. A regular file is read
//! here on the calling thread, in pieces as large as the plugin asks for (up to
//! [`MAX_READ`]). A file on a mount that hangs is left to the call backstop (backstop.rs).

use bytes::Bytes;
use std::io::Read;
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// The most one read returns: the size of the pieces the source side writes too.
pub const MAX_READ: usize = super::sink::CHUNK_BYTES;

pub struct FileInput {
    file: std::fs::File,
}

impl FileInput {
    pub fn new(file: std::fs::File) -> FileInput {
        FileInput { file }
    }
}

#[async_trait::async_trait]
impl Pollable for FileInput {
    async fn ready(&mut self) {
        // A regular file always has data or its end ready.
    }
}

impl InputStream for FileInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let want = size.min(MAX_READ);
        if want == 0 {
            return Ok(Bytes::new());
        }
        // Read into spare capacity: no zero-filling of every piece first.
        let mut buf = Vec::with_capacity(want);
        (&self.file)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))?;
        if buf.is_empty() {
            return Err(StreamError::Closed);
        }
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_whole_file_in_pieces_no_larger_than_asked_then_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifact");
        let data: Vec<u8> = (0..(MAX_READ * 2 + 12_345)).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut input = FileInput::new(std::fs::File::open(&path).unwrap());
        let mut back = Vec::new();
        for size in [7, 100_000, usize::MAX].into_iter().cycle() {
            match input.read(size) {
                Ok(piece) => {
                    assert!(piece.len() <= size.min(MAX_READ));
                    back.extend_from_slice(&piece);
                }
                Err(StreamError::Closed) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(back == data);
    }
}
