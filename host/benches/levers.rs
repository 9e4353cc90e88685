//! Each performance lever of the pipeline, before and after, on the same bytes in one run:
//!
//!   cargo bench -p backups --bench levers            (BENCH_MIB=256 by default)
//!
//! - gzip -1 on one thread (flate2/zlib-rs) against block-parallel gzip on every core,
//!   without and with incompressible blocks stored;
//! - sequoia's streaming SEIPDv1 encryptor against ours (`seipd`: OpenSSL AES-CFB, SHA-1);
//! - sha256 of the output, which the encrypting thread also does.
//!
//! A benchmark, not a test: it prints MB/s of input per lever; compare the ratios.

use backups::codec::gzip::ParallelGzip;
use backups::codec::openpgp::Plan;
use flate2::Compression;
use flate2::write::GzEncoder;
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::Instant;

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let data = corpus_like(mib << 20);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} MiB, mixed like bench/make_corpus.py; {cores} cores",
        data.len() >> 20
    );

    let (single, gz_single) = timed(|| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&data).unwrap();
        gz.finish().unwrap()
    });
    let parallel_gzip = |probe: bool| {
        timed(|| {
            let mut gz = ParallelGzip::with_probe(Vec::new(), Compression::fast(), cores, probe);
            for piece in data.chunks(256 << 10) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap()
        })
    };
    let (parallel, gz_parallel_all) = parallel_gzip(false);
    let (probed, gz_parallel) = parallel_gzip(true);
    report("gzip -1, one thread", data.len(), single, gz_single.len());
    report(
        &format!("gzip -1, block-parallel ({cores} workers)"),
        data.len(),
        parallel,
        gz_parallel_all.len(),
    );
    report(
        "  + incompressible blocks stored",
        data.len(),
        probed,
        gz_parallel.len(),
    );

    // Encryption works on the compressed stream.
    let compressed = gz_parallel;
    let password = openpgp::crypto::Password::from("bench passphrase");
    let (sequoia, by_sequoia) = timed(|| {
        use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
        let mut sink = Vec::with_capacity(compressed.len() + (1 << 20));
        let message = Message::new(&mut sink);
        let message = Encryptor::with_passwords(message, Some(password.clone()))
            .build()
            .unwrap();
        let mut literal = LiteralWriter::new(message).build().unwrap();
        for block in compressed.chunks(1 << 20) {
            literal.write_all(block).unwrap();
        }
        literal.finalize().unwrap();
        sink
    });
    let plan = Plan::Passphrase(password);
    let (ours, by_seipd) = timed(|| {
        let mut message = plan
            .encryptor(Vec::with_capacity(compressed.len() + (1 << 20)))
            .unwrap();
        for block in compressed.chunks(1 << 20) {
            message.write_all(block).unwrap();
        }
        message.finish().unwrap()
    });
    report(
        "encrypt, sequoia's stream Encryptor",
        compressed.len(),
        sequoia,
        by_sequoia.len(),
    );
    report(
        "encrypt, seipd (OpenSSL AES-CFB + SHA-1)",
        compressed.len(),
        ours,
        by_seipd.len(),
    );
    let (hashing, _) = timed(|| Sha256::digest(&by_seipd));
    report("sha256 of the artifact", by_seipd.len(), hashing, 0);
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64(), out)
}

fn report(what: &str, input: usize, seconds: f64, output: usize) {
    println!(
        "{what:<46} {:>8.1} MB/s   ({:.2}s, {} MiB in{})",
        input as f64 / 1e6 / seconds,
        seconds,
        input >> 20,
        if output > 0 {
            format!(", {} MiB out", output >> 20)
        } else {
            String::new()
        }
    );
}

/// 40% log-like text, 30% random, 20% already compressed, 10% short text records: the
/// proportions of bench/make_corpus.py, in memory.
fn corpus_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: &[&str] = &[
        "backup", "restore", "archive", "stream", "server", "database", "error", "warning", "user",
        "file", "path", "host", "config", "job", "run", "source", "the", "of", "to",
    ];
    let mut text = |out: &mut Vec<u8>, n: usize| {
        let end = out.len() + n;
        while out.len() < end {
            let line = format!(
                "2026-11-22T02:{:02}:{:02}Z [INFO] {} {} {} id={}\n",
                next() % 60,
                next() % 60,
                WORDS[(next() % WORDS.len() as u64) as usize],
                WORDS[(next() % WORDS.len() as u64) as usize],
                WORDS[(next() % WORDS.len() as u64) as usize],
                next() % 1_000_000_000
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(end);
    };
    text(&mut out, len * 40 / 100);
    let random_start = out.len();
    out.resize(random_start + len * 30 / 100, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for word in out[random_start..].chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        word.copy_from_slice(&seed.to_le_bytes()[..word.len()]);
    }
    let mut sample = Vec::new();
    text(&mut sample, len * 20 / 100 * 4);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&sample).unwrap();
    let squeezed = gz.finish().unwrap();
    out.extend_from_slice(&squeezed[..squeezed.len().min(len * 20 / 100)]);
    let rest = len.saturating_sub(out.len());
    text(&mut out, rest);
    out
}
