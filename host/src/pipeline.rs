//! Source bytes → gzip → OpenPGP → one temporary artifact file, on a thread of its own.
//!
//! The plugin (or a command spliced in for it) fills a bounded channel; this thread drains
//! it. Nothing is held in memory beyond the channel's few chunks and the codecs' buffers,
//! so a dump of any size runs in the same memory. The file's sha256 and size are computed
//! as it is written, for the manifest.

use crate::crypto::Plan;
use crate::runtime::sink::ArtifactChunks;
use anyhow::{Context as _, Result};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

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
    plan: Plan,
) -> std::thread::JoinHandle<Result<Artifact>> {
    std::thread::Builder::new()
        .name("artifact-writer".into())
        .spawn(move || write_artifact(chunks, &path, &plan))
        .expect("spawning the artifact writer thread")
}

fn write_artifact(mut chunks: ArtifactChunks, path: &Path, plan: &Plan) -> Result<Artifact> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut hashed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let mut bytes_in = 0u64;
    let ctx = || format!("writing {}", path.display());

    if plan.encrypts() {
        let message = plan.encrypting_writer(&mut hashed).with_context(ctx)?;
        let mut gz = GzEncoder::new(message, Compression::fast());
        while let Some(chunk) = chunks.blocking_recv() {
            bytes_in += chunk.len() as u64;
            gz.write_all(&chunk).with_context(ctx)?;
        }
        let message = gz.finish().with_context(ctx)?;
        message.finalize().with_context(ctx)?;
    } else {
        let mut gz = GzEncoder::new(&mut hashed, Compression::fast());
        while let Some(chunk) = chunks.blocking_recv() {
            bytes_in += chunk.len() as u64;
            gz.write_all(&chunk).with_context(ctx)?;
        }
        gz.finish().with_context(ctx)?;
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
