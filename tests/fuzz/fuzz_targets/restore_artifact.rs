//! Restoring reads a stored object: truncated, corrupted, or encrypted with another key.
//! Decrypting and decompressing it must end in data or an error, never a panic or a hang.
#![no_main]

use backups::codec::openpgp::Keys;
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|ciphertext: &[u8]| {
    let mut keys = Keys::default();
    keys.passwords.push("fuzz passphrase".into());
    if let Ok(plain) = keys.decrypt(ciphertext) {
        let mut gz = flate2::read::GzDecoder::new(plain);
        let mut sink = [0u8; 1 << 16];
        // Bounded: a decompression bomb must not hold the fuzzer.
        for _ in 0..256 {
            match gz.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
});
