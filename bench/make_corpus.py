#!/usr/bin/env python3
"""Writes a deterministic mixed corpus for the benchmark: the same bytes on every machine.

Roughly (for --mib 1024): 40% text (log- and source-like: compresses ~4x with gzip -1),
30% random binary (incompressible), 20% already-compressed files (gzip members),
10% many small files (1-16 KiB, ~13k of them at 1 GiB).
Usage: make_corpus.py DIR [--mib N]
"""
import argparse
import os
import random
import zlib

WORDS = (
    "backup restore archive tar gzip stream chunk server database table index query "
    "error warning info debug user group mode owner file folder path host port key "
    "value config job run source destination notify retention copy day week month "
    "the a an of to in for on with by from at as is are was were be been it this that"
).split()


def text_block(rng, size):
    out = []
    n = 0
    line_no = 0
    while n < size:
        line_no += 1
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line = f"2026-11-22T02:{line_no % 60:02d}:{rng.randint(0, 59):02d}Z [{rng.choice(('INFO', 'WARN', 'DEBUG'))}] {words} id={rng.randint(0, 10**9)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    rng = random.Random(20261122)
    total = args.mib << 20
    root = args.dir
    os.makedirs(root, exist_ok=True)

    # A pool of text to slice files from: generating fresh text for every byte is slow.
    pool = text_block(rng, 16 << 20)

    def text(size):
        start = rng.randrange(0, len(pool) - 1)
        chunk = (pool[start:] + pool)[:size]
        return chunk

    budget = {"text": total * 40 // 100, "binary": total * 30 // 100,
              "compressed": total * 20 // 100, "small": total * 10 // 100}

    def write(path, data):
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)

    i = 0
    left = budget["text"]
    while left > 0:
        size = min(left, rng.choice((1, 2, 4, 8, 16)) << 20)
        write(f"logs/{i // 50:03d}/app-{i:05d}.log", text(size))
        left -= size
        i += 1

    i = 0
    left = budget["binary"]
    while left > 0:
        size = min(left, rng.choice((1, 4, 16, 32)) << 20)
        write(f"blobs/{i // 20:03d}/blob-{i:05d}.bin", rng.randbytes(size))
        left -= size
        i += 1

    i = 0
    left = budget["compressed"]
    while left > 0:
        raw = text(rng.choice((4, 8, 16)) << 20)
        packed = zlib.compress(raw, 6)[: max(1, left)]
        write(f"archives/{i // 20:03d}/old-{i:05d}.log.gz", packed)
        left -= len(packed)
        i += 1

    i = 0
    left = budget["small"]
    while left > 0:
        size = min(left, rng.randint(1, 16) << 10)
        data = text(size) if rng.random() < 0.7 else rng.randbytes(size)
        write(f"small/{i // 500:04d}/f{i:06d}.{rng.choice(('txt', 'json', 'dat', 'cfg'))}", data)
        left -= size
        i += 1


if __name__ == "__main__":
    main()
