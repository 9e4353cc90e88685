# Sourced by the bench scripts: what every bench needs before it times anything.
# Expects MIB (the corpus size) to be set; sets BIN, WORK and CORPUS.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/backups-target}"

# Installs the reference contenders and tools named as arguments (Debian packages) that
# are missing: `bench_needs restic gnupg zstd`.
bench_needs() {
  local need=() package command
  for package in "$@"; do
    case "$package" in
      gnupg) command=gpg ;;
      time) command=/usr/bin/time ;;
      *) command="$package" ;;
    esac
    command -v "$command" >/dev/null || need+=("$package")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
}

echo "building backups (release)…" >&2
cargo build --release -q -p backups
BIN="$CARGO_TARGET_DIR/release/backups"

# The deterministic corpus (bench/make_corpus.py), kept between runs.
WORK="${BENCH_DIR:-/var/tmp/backups-bench}"
CORPUS="$WORK/corpus-$MIB"
if [ ! -f "$CORPUS/.complete" ]; then
  echo "generating a ${MIB} MiB corpus in $CORPUS…" >&2
  rm -rf "$CORPUS"
  python3 bench/make_corpus.py "$CORPUS" --mib "$MIB"
  touch "$CORPUS/.complete"
fi
