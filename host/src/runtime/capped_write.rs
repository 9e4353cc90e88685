//! A writer that refuses bytes past a limit: what a destination sends back (`get`) is
//! written through it, so a lying destination cannot make the host hold or store more
//! than the object was said to be.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

pub struct CappedWrite<W> {
    inner: W,
    left: u64,
    overflowed: Arc<AtomicBool>,
}

impl<W> CappedWrite<W> {
    /// The writer, and a flag that says whether anything past `most` was refused.
    pub fn new(inner: W, most: u64) -> (Self, Arc<AtomicBool>) {
        let overflowed = Arc::new(AtomicBool::new(false));
        let writer = CappedWrite {
            inner,
            left: most,
            overflowed: overflowed.clone(),
        };
        (writer, overflowed)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CappedWrite<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() as u64 > self.left {
            self.overflowed.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other(
                "more bytes than the object was said to hold",
            )));
        }
        let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.left -= written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
