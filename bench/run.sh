#!/usr/bin/env bash
# Benchmark: `backups run` (folder → gzip → OpenPGP → local) against the references, on the
# same corpus, in the same run:
#   - the legacy tool's own pipeline `tar cf - | gzip -1 | gpg -c --compress-algo none`;
#   - with `"compression": "zstd"` (level 3) too, against `tar cf - | zstd -3 -T0 | gpg -c`;
#   - `restic backup` of the same tree into a fresh local repository (restic from Debian);
#   - `backups run` with `tar` spliced in natively instead of the folder plugin reading the
#     files through WASI: the difference is what the WASM boundary costs.
# Prints throughput (MB/s of source data), peak RSS, the most the tmpdir held during the
# run (against the size of the artifact), the time of `backups run --dry-run` on a
# 3-plugin job with a warm compile cache, and the ratios. For `backups run` it also prints
# the dump stage alone (source to encrypted temp file, what the shell pipeline does),
# apart from the upload to the destination that follows it (a synced copy on local disk).
#
#   bench/run.sh [--mib N] [--runs R]     (default: 1024 MiB corpus, 3 runs each, best kept)
#
# BEFORE_FOLDER=path/to/backups_plugin_folder.wasm adds a row for that build of the folder
# plugin (loaded as a third-party plugin by the same host, same corpus, same runs): a
# change to the folder source is measured before and after in one run.
# BEFORE_BIN=path/to/an/older/backups adds a row for that binary on the same folder job
# (its own embedded plugins): a change to the host, before and after in one run.
#
# A benchmark, not a test: numbers depend on the machine and its load; compare the ratios
# of one run. BENCH_DIR (default /var/tmp/backups-bench) holds the corpus (kept between
# runs) and the outputs.
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

# The tools, the release build and the corpus (bench/common.sh).
source bench/common.sh
bench_needs time gnupg restic zstd
FIXTURE="$CARGO_TARGET_DIR/wasm-plugins/wasm32-wasip2/release/backups_test_fixtures.wasm"
BYTES=$(du -sb --exclude=.complete "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)
PASS="bench passphrase"
OUT="$WORK/out"
TMP="$WORK/tmp"

# One job per way of reading the corpus; the pipeline after the source is the same.
job() { # NAME SOURCE-JSON [EXTRA-ENTRIES]
  cat > "$WORK/$1.json" <<JSON
{
  "hostname": "bench",
  "tmpdir": "$TMP",
  "sources": [$2],
  "destinations": [{"id": "disk", "type": "local", "path": "$OUT"}]${3:-}
}
JSON
}
job folder "{\"id\": \"corpus\", \"type\": \"folder\", \"path\": \"$CORPUS\", \"excludes\": [\".complete\"], \"passphrase\": \"$PASS\"}"
job native "{\"id\": \"corpus\", \"type\": \"splice\", \"plugin\": \"$FIXTURE\", \"mode\": \"splice\",
  \"target\": \"tar cf - --exclude=.complete -C $(dirname "$CORPUS") $(basename "$CORPUS")\",
  \"passphrase\": \"$PASS\", \"grants\": {\"run\": [\"tar\"]}}"
if [ -n "${BEFORE_FOLDER:-}" ]; then
  job before "{\"id\": \"corpus\", \"type\": \"folder\", \"plugin\": \"$BEFORE_FOLDER\", \"path\": \"$CORPUS\",
    \"excludes\": [\".complete\"], \"passphrase\": \"$PASS\", \"grants\": {\"read\": [\"$CORPUS\"]}}"
fi
job zstd "{\"id\": \"corpus\", \"type\": \"folder\", \"path\": \"$CORPUS\", \"excludes\": [\".complete\"], \"passphrase\": \"$PASS\", \"compression\": \"zstd\"}"
job three "{\"id\": \"corpus\", \"type\": \"folder\", \"path\": \"$CORPUS\", \"passphrase\": \"$PASS\"}" \
  ", \"notifications\": [{\"id\": \"flag\", \"type\": \"flagfile\", \"flagfile\": \"$WORK/flag\"}]"

# Runs "$@" and prints "seconds peak_rss_kib".
measure() {
  local t
  t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null 2>"$t.err" || { cat "$t.err" >&2; exit 1; }
  cat "$t"
  [ -n "${KEEP_STDERR:-}" ] && cp "$t.err" "$KEEP_STDERR"
  rm -f "$t" "$t.err"
}

# Seconds from the dump call to the finished artifact, from a `backups -v run` log: the
# stage that does what the shell pipeline does (read, tar, gzip, encrypt, write a file).
# The rest of a run is the upload to the destination (here a copy to local disk, synced)
# and retention.
dump_seconds() { # LOG
  python3 - "$1" <<'PY'
import re, sys, datetime
stamps = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+Z)\s+\w+\s+(.*)", line)
    if not m:
        continue
    at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    if "call dump" in m.group(2):
        stamps["start"] = at
    elif "dumped" in m.group(2):
        stamps["end"] = at
print(f"{(stamps['end'] - stamps['start']).total_seconds():.2f}")
PY
}

best() { sort -n | head -1; }

# The most the tmpdir held while "$@" ran, in bytes (sampled every 50 ms).
TMP_PEAK_FILE="$WORK/tmp-peak"
with_tmp_watch() {
  echo 0 > "$TMP_PEAK_FILE"
  ( peak=0
    while :; do
      now=$(du -sb "$TMP" 2>/dev/null | cut -f1 || echo 0)
      [ "${now:-0}" -gt "$peak" ] && { peak=$now; echo "$peak" > "$TMP_PEAK_FILE"; }
      sleep 0.05
    done ) &
  local watcher=$!
  "$@"
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
}

# Reads the whole corpus, unmeasured, right before each measured run, so that every
# contender finds it in the page cache. This VM's host reclaims idle page cache within
# 30-60 s (DAMON: 1042 MiB of the corpus resident after a read, 364 MiB 30 s later, 9 MiB
# after 60 s), so without this each run read most of the corpus from disk, and how much
# depended on how long the run before it took.
warm_corpus() {
  find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null
}

backups_once() { # JOB [-v]
  rm -rf "$OUT" "$TMP" && mkdir -p "$OUT" "$TMP"
  warm_corpus
  measure "${RUN_BIN:-$BIN}" "${2:--q}" --allow-root run "$WORK/$1.json"
}

pipeline_once() {
  rm -f "$WORK/pipeline.tar.gz.gpg"
  warm_corpus
  measure bash -c "tar cf - -C '$(dirname "$CORPUS")' '$(basename "$CORPUS")' | gzip -1 | gpg --batch --quiet -c --pinentry-mode loopback --passphrase '$PASS' --compress-algo none -o '$WORK/pipeline.tar.gz.gpg'"
}

zstd_pipeline_once() {
  rm -f "$WORK/pipeline.tar.zst.gpg"
  warm_corpus
  measure bash -c "tar cf - -C '$(dirname "$CORPUS")' '$(basename "$CORPUS")' | zstd -3 -T0 -q | gpg --batch --quiet -c --pinentry-mode loopback --passphrase '$PASS' --compress-algo none -o '$WORK/pipeline.tar.zst.gpg'"
}

restic_once() {
  rm -rf "$WORK/restic-repo"
  RESTIC_PASSWORD="$PASS" restic init -q -r "$WORK/restic-repo" >/dev/null
  warm_corpus
  RESTIC_PASSWORD="$PASS" measure restic -q -r "$WORK/restic-repo" backup "$CORPUS"
}

# Warm the compile cache and the page cache once, unmeasured.
backups_once folder >/dev/null
backups_once native >/dev/null
pipeline_once >/dev/null

[ -n "${BEFORE_FOLDER:-}" ] && backups_once before >/dev/null
[ -n "${BEFORE_BIN:-}" ] && RUN_BIN="$BEFORE_BIN" backups_once folder >/dev/null
declare -a B S N P R D O H Z ZP
for _ in $(seq "$RUNS"); do
  [ -n "${BEFORE_FOLDER:-}" ] && O+=("$(backups_once before)")
  [ -n "${BEFORE_BIN:-}" ] && H+=("$(RUN_BIN="$BEFORE_BIN" backups_once folder)")
  B+=("$(KEEP_STDERR="$WORK/folder-run.log" backups_once folder -v)")
  S+=("$(dump_seconds "$WORK/folder-run.log")")
  N+=("$(backups_once native)")
  P+=("$(pipeline_once)")
  Z+=("$(backups_once zstd)")
  zstd_artifact=$(find "$OUT" -name '*.zst.gpg' -printf '%s\n' | sort -n | tail -1)
  ZP+=("$(zstd_pipeline_once)")
  R+=("$(restic_once)")
done
# Wall time in ms with nanosecond clocks (/usr/bin/time rounds to 10 ms).
for _ in $(seq 10); do
  t0=$(date +%s%N)
  "$BIN" -q --allow-root run --dry-run "$WORK/three.json" >/dev/null 2>&1
  t1=$(date +%s%N)
  D+=("$(( (t1 - t0) / 1000000 ))")
done
# One more folder run for the tmpdir high-water mark (du itself costs a little time).
rm -rf "$OUT" "$TMP" && mkdir -p "$OUT" "$TMP"
warm_corpus
with_tmp_watch "$BIN" -q --allow-root run "$WORK/folder.json"
tmp_peak=$(cat "$TMP_PEAK_FILE")
artifact=$(find "$OUT" -name '*.gpg' -printf '%s\n' | sort -n | tail -1)

read -r b_s b_rss < <(printf '%s\n' "${B[@]}" | best)
s_s=$(printf '%s\n' "${S[@]}" | best)
read -r n_s n_rss < <(printf '%s\n' "${N[@]}" | best)
read -r p_s p_rss < <(printf '%s\n' "${P[@]}" | best)
read -r r_s r_rss < <(printf '%s\n' "${R[@]}" | best)
read -r z_s z_rss < <(printf '%s\n' "${Z[@]}" | best)
read -r zp_s zp_rss < <(printf '%s\n' "${ZP[@]}" | best)
d_ms=$(printf '%s\n' "${D[@]}" | best)

py() { python3 -c "print($1)"; }
mbps() { py "f'{$BYTES / 1e6 / max($1, 0.001):.1f}'"; }
pipe_size=$(stat -c %s "$WORK/pipeline.tar.gz.gpg")
restic_size=$(du -sb "$WORK/restic-repo" | cut -f1)
zpipe_size=$(stat -c %s "$WORK/pipeline.tar.zst.gpg")

printf '\ncorpus: %s MiB, %s files (%s); best of %s runs; %s cores\n' \
  "$((BYTES >> 20))" "$FILES" "$CORPUS" "$RUNS" "$(nproc)"
row() { printf '%-46s %9s %9s %13s %11s\n' "$@"; }
row "" "seconds" "MB/s" "peak RSS MiB" "output MiB"
row "backups run (folder plugin → local)" "$b_s" "$(mbps "$b_s")" "$((b_rss >> 10))" "$((artifact >> 20))"
row "  of which the dump, to the encrypted file" "$s_s" "$(mbps "$s_s")" "" ""
if [ -n "${BEFORE_BIN:-}" ]; then
  read -r h_s h_rss < <(printf '%s\n' "${H[@]}" | best)
  row "  the same, binary \$BEFORE_BIN" "$h_s" "$(mbps "$h_s")" "$((h_rss >> 10))" ""
fi
if [ -n "${BEFORE_FOLDER:-}" ]; then
  read -r o_s o_rss < <(printf '%s\n' "${O[@]}" | best)
  row "  the same, folder plugin of \$BEFORE_FOLDER" "$o_s" "$(mbps "$o_s")" "$((o_rss >> 10))" ""
fi
row "backups run (tar spliced natively → local)" "$n_s" "$(mbps "$n_s")" "$((n_rss >> 10))" "-"
row "tar | gzip -1 | gpg -c --compress-algo none" "$p_s" "$(mbps "$p_s")" "$((p_rss >> 10))" "$((pipe_size >> 20))"
row "backups run, \"compression\": \"zstd\" (-3)" "$z_s" "$(mbps "$z_s")" "$((z_rss >> 10))" "$((zstd_artifact >> 20))"
row "tar | zstd -3 -T0 | gpg -c --compress-algo none" "$zp_s" "$(mbps "$zp_s")" "$((zp_rss >> 10))" "$((zpipe_size >> 20))"
row "restic backup (fresh local repository)" "$r_s" "$(mbps "$r_s")" "$((r_rss >> 10))" "$((restic_size >> 20))"
printf '\nbackups is %sx the shell pipeline and %sx restic\n' \
  "$(py "f'{$p_s / max($b_s, 0.001):.2f}'")" "$(py "f'{$r_s / max($b_s, 0.001):.2f}'")"
printf 'with zstd: %sx the gzip shell pipeline, %sx the zstd one, %sx restic\n' \
  "$(py "f'{$p_s / max($z_s, 0.001):.2f}'")" "$(py "f'{$zp_s / max($z_s, 0.001):.2f}'")" \
  "$(py "f'{$r_s / max($z_s, 0.001):.2f}'")"
printf 'its dump stage alone (what the pipeline does) is %sx the shell pipeline\n' \
  "$(py "f'{$p_s / max($s_s, 0.001):.2f}'")"
printf 'WASM boundary: the folder plugin takes %s%% longer than tar spliced natively\n' \
  "$(py "f'{($b_s / max($n_s, 0.001) - 1) * 100:+.1f}'")"
printf 'tmpdir peak: %s MiB for an artifact of %s MiB\n' "$((tmp_peak >> 20))" "$((artifact >> 20))"
printf 'backups run --dry-run (3 plugins, warm cache): %s ms (best of 10)\n' "$d_ms"
