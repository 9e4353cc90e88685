//! Reading a file's contents into the archive: in large pieces (each read is a call into
//! the host) and exactly as many bytes as its header announced.

use std::io::{self, Read};

/// Reads through a borrowed buffer: large reads from the host, small copies out of it.
pub struct ReadAhead<'b, R> {
    inner: R,
    buf: &'b mut [u8],
    pos: usize,
    end: usize,
}

impl<'b, R: Read> ReadAhead<'b, R> {
    pub fn new(inner: R, buf: &'b mut [u8]) -> Self {
        ReadAhead {
            inner,
            buf,
            pos: 0,
            end: 0,
        }
    }
}

impl<R: Read> Read for ReadAhead<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if out.len() >= self.buf.len() {
                return self.inner.read(out);
            }
            self.end = self.inner.read(self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads exactly `size` bytes, as the tar header promised: a file that grew is cut at
/// `size` (the archive holds it as it was when the walk reached it); one that shrank is
/// padded with zeros, as GNU tar does, and reported.
pub struct Exactly<R> {
    inner: io::Take<R>,
    remaining: u64,
    padding: bool,
    /// What went wrong, for a warning: the file shrank while being read.
    pub problem: Option<String>,
}

impl<R: Read> Exactly<R> {
    pub fn new(inner: R, size: u64) -> Self {
        Self {
            inner: inner.take(size),
            remaining: size,
            padding: false,
            problem: None,
        }
    }
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = if self.padding {
            buf[..want].fill(0);
            want
        } else {
            match self.inner.read(&mut buf[..want])? {
                0 => {
                    self.padding = true;
                    self.problem = Some(format!(
                        "file shrank by {} bytes while being read; padded with zeros",
                        self.remaining
                    ));
                    buf[..want].fill(0);
                    want
                }
                n => n,
            }
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}
