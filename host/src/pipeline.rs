//! Source bytes → compression (gzip block-parallel, or zstd multi-threaded: see `codec`) →
//! OpenPGP → one temporary artifact file, on threads of their own.
//!
//! The plugin (or a command spliced in for it) fills a bounded channel; this thread drains
//! it. Nothing is held in memory beyond the channel's few chunks and the codecs' buffers,
//! so a dump of any size runs in the same memory. The file's sha256 and size are computed
//! as it is written, for the manifest.

use crate::codec::Compression;
use crate::codec::openpgp::Plan;
use crate::runtime::sink::ArtifactChunks;
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An artifact on disk, complete.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    /// Bytes the source produced.
    pub bytes_in: u64,
    /// Size of the file (what destinations store).
    pub size: u64,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// Starts the thread that turns `chunks` into the file at `path` (created new, mode 0600).
pub fn spawn(
    chunks: ArtifactChunks,
    path: PathBuf,
    compression: Compression,
    plan: Plan,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<Artifact>> {
    std::thread::Builder::new()
        .name("artifact-writer".into())
        .spawn(move || write_artifact(chunks, &path, compression, &plan, &progress))
        .expect("spawning the artifact writer thread")
}

/// `progress` counts the source's bytes as they arrive, for the CLI's progress line.
fn write_artifact(
    mut chunks: ArtifactChunks,
    path: &Path,
    compression: Compression,
    plan: &Plan,
    progress: &AtomicU64,
) -> Result<Artifact> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut hashed = Hashing::new(BufWriter::with_capacity(256 << 10, file));
    let mut bytes_in = 0u64;
    let ctx = || format!("writing {}", path.display());
    // Compression is the costliest stage: it gets every core; encryption runs beside it.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());

    if plan.encrypts() {
        // Encryption is serial (CFB and the MDC hash chain through the whole message), so
        // it runs on a thread of its own, fed compressed blocks through a short queue.
        // Encrypting on this thread instead (which only feeds the gzip workers and puts
        // their members in order) saves this queue and a copy, but was 25% slower: while
        // it encrypts, nobody feeds the workers or drains the source.
        let (blocks, compressed) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let encrypting = std::thread::scope(|scope| -> Result<()> {
            let encryptor = scope.spawn(|| -> Result<()> {
                let mut message = plan.encryptor(&mut hashed).with_context(ctx)?;
                for block in compressed {
                    message.write_all(&block).with_context(ctx)?;
                }
                message.finish().with_context(ctx)?;
                tracing::debug!(
                    "encryption: {:.2}s of CPU",
                    crate::cpu_time::thread_seconds()
                );
                Ok(())
            });
            let compressed_ok = (|| -> Result<()> {
                let mut compressor = compression
                    .encoder(BlockSender::new(blocks), workers)
                    .with_context(ctx)?;
                while let Some(chunk) = chunks.blocking_recv() {
                    bytes_in += chunk.len() as u64;
                    progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    compressor.write_all(&chunk).with_context(ctx)?;
                }
                compressor
                    .finish()
                    .with_context(ctx)?
                    .finish()
                    .with_context(ctx)
            })();
            let encrypted_ok = encryptor
                .join()
                .map_err(|_| anyhow::anyhow!("the encryption thread panicked"))?;
            // The encryptor's error is the cause when it stopped first.
            encrypted_ok.and(compressed_ok)
        });
        encrypting?;
    } else {
        let mut compressor = compression
            .encoder(&mut hashed, workers)
            .with_context(ctx)?;
        while let Some(chunk) = chunks.blocking_recv() {
            bytes_in += chunk.len() as u64;
            progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            compressor.write_all(&chunk).with_context(ctx)?;
        }
        compressor.finish().with_context(ctx)?;
    }
    let (buffered, sha256, size) = hashed.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(ctx)?;
    file.sync_all().with_context(ctx)?;
    Ok(Artifact {
        path: path.to_path_buf(),
        bytes_in,
        size,
        sha256,
    })
}

/// Compressed blocks queued between the compressing and the encrypting thread.
const BLOCKS_IN_FLIGHT: usize = 2;
/// Size of those blocks: large enough that the queue costs nothing per byte.
const BLOCK_BYTES: usize = 512 << 10;

/// A `Write` that hands what it is given to the encrypting thread in 512 KiB blocks.
struct BlockSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    block: Vec<u8>,
}

impl BlockSender {
    fn new(tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> Self {
        Self {
            tx,
            block: Vec::with_capacity(BLOCK_BYTES),
        }
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the encryption thread stopped"))
    }

    /// Sends the last partial block; dropping `self` then ends the encryptor's loop.
    fn finish(mut self) -> io::Result<()> {
        self.send_block()
    }
}

impl Write for BlockSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_BYTES - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_BYTES {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks go out when full or at finish; flushing mid-stream would only make
        // small blocks (a compressor's finish flushes, and finish() sends the rest).
        Ok(())
    }
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
