//! `std::io` adapters over the `wasi:io` streams the host hands to a plugin.
//!
//! They write in the largest pieces the host accepts (`check-write`), not the 4 KiB that
//! `blocking-write-and-flush` allows, so bulk data crosses the boundary cheaply.

use crate::error::{PluginError, Result};
use crate::world::wasi::io::streams::{InputStream, OutputStream, StreamError};
use std::io;

fn stream_error(err: StreamError) -> io::Error {
    match err {
        StreamError::Closed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "stream closed by the host")
        }
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

/// Writes to a host output stream. Unbuffered: every `write` reaches the host in order, so
/// it may be mixed freely with `process::stream_stdout`.
pub struct StreamWriter<'a> {
    stream: &'a OutputStream,
    written: u64,
}

/// Where a source writes its backup. The host compresses and encrypts what arrives.
#[cfg(feature = "source")]
pub type ArtifactWriter<'a> = StreamWriter<'a>;

/// Where a destination writes an object's bytes for `get`.
#[cfg(feature = "destination")]
pub type ObjectWriter<'a> = StreamWriter<'a>;

impl<'a> StreamWriter<'a> {
    #[doc(hidden)]
    pub fn new(stream: &'a OutputStream) -> Self {
        Self { stream, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// For host calls that write into this stream themselves (`process::stdout_to`);
    /// they report what they wrote with [`Self::count`].
    #[cfg(feature = "destination")]
    pub(crate) fn stream(&self) -> &'a OutputStream {
        self.stream
    }

    #[cfg(feature = "destination")]
    pub(crate) fn count(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// Flushes and waits until the host has taken everything.
    #[doc(hidden)]
    pub fn finish(&mut self) -> Result<()> {
        self.stream
            .blocking_flush()
            .map_err(|e| PluginError::from_io(&stream_error(e), "finishing the stream"))
    }
}

impl io::Write for StreamWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let permit = self.stream.check_write().map_err(stream_error)?;
            if permit == 0 {
                self.stream.subscribe().block();
                continue;
            }
            let n = buf.len().min(permit as usize);
            self.stream.write(&buf[..n]).map_err(stream_error)?;
            self.written += n as u64;
            return Ok(n);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.blocking_flush().map_err(stream_error)
    }
}

/// Reads an object's bytes from the host (for `put`).
#[cfg(feature = "destination")]
pub struct ObjectReader<'a> {
    stream: &'a InputStream,
}

/// Reads the index an earlier full wrote (for `dump-incremental`).
#[cfg(feature = "incremental")]
pub struct IndexReader<'a> {
    stream: &'a InputStream,
}

#[cfg(feature = "incremental")]
impl<'a> IndexReader<'a> {
    #[doc(hidden)]
    pub fn new(stream: &'a InputStream) -> Self {
        Self { stream }
    }
}

#[cfg(feature = "incremental")]
impl io::Read for IndexReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_into(self.stream, buf)
    }
}

#[cfg(feature = "destination")]
impl<'a> ObjectReader<'a> {
    #[doc(hidden)]
    pub fn new(stream: &'a InputStream) -> Self {
        Self { stream }
    }

    /// For host calls that read this stream themselves (`process::stdin_from`).
    pub(crate) fn stream(&self) -> &'a InputStream {
        self.stream
    }
}

#[cfg(feature = "destination")]
impl io::Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_into(self.stream, buf)
    }
}

/// One `read` from a host input stream into `buf`: the end of the stream reads as 0.
pub(crate) fn read_into(stream: &InputStream, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    match stream.blocking_read(buf.len() as u64) {
        Ok(bytes) => {
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }
        Err(StreamError::Closed) => Ok(0),
        Err(e) => Err(stream_error(e)),
    }
}
