#!/usr/bin/env bash
# Benchmark: `backups run` (folder → gzip → OpenPGP → local) against the legacy tool's own
# pipeline `tar cf - | gzip -1 | gpg -c --compress-algo none`, on the same corpus, in the
# same run. Prints throughput (MB/s of source data) and peak RSS of each, and the ratio.
#
#   bench/run.sh [--mib N] [--runs R]     (default: 1024 MiB corpus, 3 runs each, best kept)
#
# A benchmark, not a test: numbers depend on the machine and its load; compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=1024
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) MIB="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "usage: bench/run.sh [--mib N] [--runs R]" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/backups-target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
command -v gpg >/dev/null || { apt-get update -qq && apt-get install -y -qq gnupg; }

echo "building backups (release)…" >&2
cargo build --release -q -p backups
BIN="$CARGO_TARGET_DIR/release/backups"

WORK="${BENCH_DIR:-/var/tmp/backups-bench}"
CORPUS="$WORK/corpus-$MIB"
if [ ! -f "$CORPUS/.complete" ]; then
  echo "generating a ${MIB} MiB corpus in $CORPUS…" >&2
  rm -rf "$CORPUS"
  python3 bench/make_corpus.py "$CORPUS" --mib "$MIB"
  touch "$CORPUS/.complete"
fi
BYTES=$(du -sb --exclude=.complete "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)
PASS="bench passphrase"

OUT="$WORK/out"
JOB="$WORK/job.json"
cat > "$JOB" <<JSON
{
  "hostname": "bench",
  "tmpdir": "$WORK/tmp",
  "sources": [{"id": "corpus", "type": "folder", "path": "$CORPUS", "excludes": [".complete"], "passphrase": "$PASS"}],
  "destinations": [{"id": "disk", "type": "local", "path": "$OUT"}]
}
JSON

# Runs "$@" and prints "seconds peak_rss_kib".
measure() {
  local t
  t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null 2>"$t.err" || { cat "$t.err" >&2; exit 1; }
  cat "$t"
  rm -f "$t" "$t.err"
}

best() { sort -n | head -1; }

backups_once() {
  rm -rf "$OUT" && mkdir -p "$OUT"
  measure "$BIN" -q --allow-root run "$JOB"
}

pipeline_once() {
  rm -f "$WORK/pipeline.tar.gz.gpg"
  measure bash -c "tar cf - -C '$(dirname "$CORPUS")' '$(basename "$CORPUS")' | gzip -1 | gpg --batch --quiet -c --pinentry-mode loopback --passphrase '$PASS' --compress-algo none -o '$WORK/pipeline.tar.gz.gpg'"
}

# Warm the compile cache and the page cache once, unmeasured.
backups_once >/dev/null
pipeline_once >/dev/null

declare -a B P
for _ in $(seq "$RUNS"); do
  B+=("$(backups_once)")
  P+=("$(pipeline_once)")
done
read -r b_s b_rss < <(printf '%s\n' "${B[@]}" | best)
read -r p_s p_rss < <(printf '%s\n' "${P[@]}" | best)

mbps() { python3 -c "print(f'{$BYTES / 1e6 / max($1, 0.001):.1f}')"; }
b_mbps=$(mbps "$b_s"); p_mbps=$(mbps "$p_s")
ratio=$(python3 -c "print(f'{$p_s / max($b_s, 0.001):.2f}')")
out_size=$(du -sb "$OUT" | cut -f1)
pipe_size=$(stat -c %s "$WORK/pipeline.tar.gz.gpg")

printf '\ncorpus: %s MiB, %s files (%s); best of %s runs; %s cores\n' \
  "$((BYTES >> 20))" "$FILES" "$CORPUS" "$RUNS" "$(nproc)"
printf '%-42s %10s %10s %14s %12s\n' "pipeline" "seconds" "MB/s" "peak RSS MiB" "output MiB"
printf '%-42s %10s %10s %14s %12s\n' "backups run (folder → local)" "$b_s" "$b_mbps" "$((b_rss >> 10))" "$((out_size >> 20))"
printf '%-42s %10s %10s %14s %12s\n' "tar | gzip -1 | gpg -c --compress-algo none" "$p_s" "$p_mbps" "$((p_rss >> 10))" "$((pipe_size >> 20))"
printf 'backups is %sx the shell pipeline\n' "$ratio"
