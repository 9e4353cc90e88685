//! zstd, as the stock `zstd` tool writes it: one frame, compressed by libzstd's own worker
//! threads (zstdmt), so `gpg -d | zstd -d | tar -x` restores it. Chosen with
//! `"compression": "zstd"` (or `{"codec": "zstd", "level": N}`); gzip stays the default.

use std::io::{self, Write};

/// The input one libzstd worker compresses at a time.
const JOB_BYTES: u32 = 1 << 20;

/// zstd's own default level, as `zstd` without `-#` uses it.
pub const DEFAULT_LEVEL: i32 = 3;

/// The levels libzstd accepts (negative ones are its "fast" levels).
pub fn valid_level(level: i32) -> bool {
    zstd::compression_level_range().contains(&level)
}

/// A zstd encoder over `inner`, at `level`, compressing on `workers` threads of libzstd.
pub fn encoder<W: Write>(
    inner: W,
    level: i32,
    workers: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(inner, level)?;
    if workers > 1 {
        encoder.multithread(workers as u32)?;
        // libzstd sizes each worker's job from the level (4 windows: 8 MiB at level 3,
        // far more at high levels) and keeps a pool of such buffers per worker; a fixed
        // job size keeps a run's memory bounded whatever the level.
        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_BYTES))?;
    }
    // The content checksum, as the zstd tool writes it: `zstd -d` and `zstd -t` check it.
    encoder.include_checksum(true)?;
    Ok(encoder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn what_the_encoder_writes_decodes_to_the_same_bytes() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut encoder = encoder(Vec::new(), DEFAULT_LEVEL, 2).unwrap();
        encoder.write_all(&data).unwrap();
        let compressed = encoder.finish().unwrap();
        assert!(compressed.len() < data.len() / 10);
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&compressed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(valid_level(19) && valid_level(1) && !valid_level(100));
    }
}
