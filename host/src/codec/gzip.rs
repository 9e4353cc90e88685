//! Block-parallel gzip, the way pigz splits its work: the stream is cut into blocks, each
//! block is compressed on a worker thread as a gzip member of its own, and the members are
//! written out in their original order.
//!
//! Concatenated members are one valid gzip file (RFC 1952, 2.2): `gunzip`, `tar -z`,
//! `zcat` and Python's `gzip` read it whole, so a restore needs nothing but stock tools.
//! (Readers must use a multi-member decoder: flate2's `MultiGzDecoder`, not `GzDecoder`.)
//! Each member starts with an empty dictionary, which costs about 0.2% in size at 512 KiB
//! blocks, and buys compression on every core.
//!
//! Memory stays bounded: at most `2 × workers` blocks are in flight, so a writer that
//! outruns the workers waits for the oldest block to come back.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Input per member: large enough that the per-member header and the lost dictionary cost
/// nothing measurable, small enough that `2 × workers` of them are a few MiB.
pub const BLOCK_BYTES: usize = 512 << 10;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

pub struct ParallelGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    /// Dropped without `finish` (an error upstream), the queue closes and each worker
    /// ends after its current block.
    workers: Vec<JoinHandle<()>>,
    /// Sequence number of the next block handed out, and of the next member to write.
    next_block: u64,
    next_member: u64,
    /// Members that came back before an earlier one.
    waiting: BTreeMap<u64, Vec<u8>>,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// Compresses onto `inner` with `workers` threads (at least one), storing blocks
    /// that look incompressible (see [`Probe`]).
    pub fn new(inner: W, level: Compression, workers: usize) -> Self {
        Self::with_probe(inner, level, workers, true)
    }

    /// As [`new`](Self::new); `probe: false` deflates every block (for the benchmark's
    /// before/after).
    pub fn with_probe(inner: W, level: Compression, workers: usize, probe: bool) -> Self {
        let workers = workers.max(1);
        let max_in_flight = 2 * workers;
        let (jobs, job_queue) = sync_channel::<Job>(max_in_flight);
        let (done_tx, done) = sync_channel::<Done>(max_in_flight);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let workers = (0..workers)
            .map(|i| {
                let job_queue = Arc::clone(&job_queue);
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || compress_blocks(&job_queue, &done_tx, level, probe))
                    .expect("spawning a gzip worker thread")
            })
            .collect();
        ParallelGzip {
            inner,
            block: Vec::with_capacity(BLOCK_BYTES),
            jobs: Some(jobs),
            done,
            workers,
            next_block: 0,
            next_member: 0,
            waiting: BTreeMap::new(),
            max_in_flight: max_in_flight as u64,
        }
    }

    /// Compresses what is left, writes every member, and gives back the inner writer.
    /// An empty input still makes one (empty) member, as `gzip` does for an empty file.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || self.next_block == 0 {
            self.send_block()?;
        }
        while self.next_member < self.next_block {
            self.write_next_member()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn send_block(&mut self) -> io::Result<()> {
        while self.next_block - self.next_member >= self.max_in_flight {
            self.write_next_member()?;
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES));
        self.jobs
            .as_ref()
            .expect("jobs open until finish")
            .send((self.next_block, block))
            .map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.next_block += 1;
        Ok(())
    }

    /// Waits for the member that is next in order, then writes it.
    fn write_next_member(&mut self) -> io::Result<()> {
        let member = loop {
            if let Some(member) = self.waiting.remove(&self.next_member) {
                break member;
            }
            let (seq, result) = self
                .done
                .recv()
                .map_err(|_| io::Error::other("the gzip workers stopped"))?;
            self.waiting.insert(seq, result?);
        };
        self.inner.write_all(&member)?;
        self.next_member += 1;
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK_BYTES - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_BYTES {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members go out when their block is full or at finish: flushing mid-stream would
        // only make small members.
        Ok(())
    }
}

fn compress_blocks(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Done>,
    level: Compression,
    probing: bool,
) {
    let mut blocks = 0u64;
    let mut stored = 0u64;
    let mut probe = Probe::new();
    loop {
        // The lock is held only while taking a job, not while compressing it.
        let job = jobs.lock().map(|queue| queue.recv());
        let Ok(Ok((seq, block))) = job else {
            break;
        };
        let level = if probing && probe.looks_incompressible(&block) {
            stored += 1;
            Compression::none()
        } else {
            level
        };
        let member = compress_member(&block, level);
        blocks += 1;
        if done.send((seq, member)).is_err() {
            break;
        }
    }
    tracing::debug!(
        "gzip worker: {blocks} blocks ({stored} stored) in {:.2}s of CPU",
        crate::cpu_time::thread_seconds()
    );
}

/// Tells random or already-compressed data from the rest before deflating it.
///
/// Deflate at level 1 spends about as long on bytes it cannot shrink (encrypted files,
/// media, archives) as on text, and then emits them as stored blocks anyway. A few
/// samples of a block, deflated, tell which case it is: when none of them shrinks by
/// `MIN_GAIN`, the block is written as stored deflate blocks (level 0: a copy and a
/// CRC), which is what deflate would have produced, at a fraction of the cost. The same
/// idea as zstd's and btrfs's incompressibility checks.
struct Probe {
    deflate: flate2::Compress,
    out: Vec<u8>,
}

/// Samples per block, and their size: 4 × 8 KiB is 6% of a 512 KiB block, and a
/// compressible block usually stops at the first.
const PROBES: usize = 4;
const PROBE_BYTES: usize = 8 << 10;
/// A sample that shrinks by less than this (3%) counts as incompressible.
const MIN_GAIN_PERCENT: usize = 3;

impl Probe {
    fn new() -> Self {
        Probe {
            deflate: flate2::Compress::new(Compression::fast(), false),
            out: Vec::with_capacity(PROBE_BYTES + 1024),
        }
    }

    fn looks_incompressible(&mut self, block: &[u8]) -> bool {
        if block.len() < PROBES * PROBE_BYTES * 4 {
            return false;
        }
        (0..PROBES).all(|i| {
            let start = block.len() / PROBES * i;
            let sample = &block[start..start + PROBE_BYTES];
            self.deflate.reset();
            self.out.clear();
            let finished =
                self.deflate
                    .compress_vec(sample, &mut self.out, flate2::FlushCompress::Finish);
            // A sample that does not even fit its own size plus slack is incompressible.
            let ended = matches!(finished, Ok(flate2::Status::StreamEnd));
            !ended || self.out.len() * 100 > sample.len() * (100 - MIN_GAIN_PERCENT)
        })
    }
}

fn compress_member(block: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::with_capacity(block.len() / 2 + 64), level);
    gz.write_all(block)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use std::io::Read;

    fn roundtrip(data: &[u8], workers: usize, chunk: usize) {
        let mut gz = ParallelGzip::new(Vec::new(), Compression::fast(), workers);
        for piece in data.chunks(chunk.max(1)) {
            gz.write_all(piece).unwrap();
        }
        let compressed = gz.finish().unwrap();
        let mut back = Vec::new();
        MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "round trip differs");
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a counter.
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!("line {i} of the sample {}\n", i * 7919 % 104729).as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let compressed = ParallelGzip::new(Vec::new(), Compression::fast(), 2)
            .finish()
            .unwrap();
        assert!(!compressed.is_empty());
        roundtrip(b"", 2, 1);
    }

    #[test]
    fn round_trips_across_block_boundaries_in_order() {
        // More blocks than can be in flight, odd write sizes, several worker counts.
        let data = sample(5 * BLOCK_BYTES + 12345);
        for workers in [1, 2, 3] {
            roundtrip(&data, workers, 100_003);
        }
        roundtrip(&data[..BLOCK_BYTES], 2, BLOCK_BYTES);
    }

    #[test]
    fn random_blocks_are_stored_and_text_blocks_compressed() {
        let mut probe = Probe::new();
        let text = sample(BLOCK_BYTES);
        let mut random = vec![0u8; BLOCK_BYTES];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in random.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        assert!(!probe.looks_incompressible(&text));
        assert!(probe.looks_incompressible(&random));
        // Half text, half random: some sample shrinks, so the block is compressed.
        let mut mixed = text[..BLOCK_BYTES / 2].to_vec();
        mixed.extend_from_slice(&random[..BLOCK_BYTES / 2]);
        assert!(!probe.looks_incompressible(&mixed));
        // Stored or not, what comes back is what went in.
        let mut all = random.clone();
        all.extend_from_slice(&text);
        roundtrip(&all, 2, 77_777);
    }

    #[test]
    fn stock_gunzip_reads_every_member() {
        let data = sample(3 * BLOCK_BYTES + 7);
        let mut gz = ParallelGzip::new(Vec::new(), Compression::fast(), 2);
        gz.write_all(&data).unwrap();
        let compressed = gz.finish().unwrap();
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&compressed).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data, "gunzip output differs");
    }
}
