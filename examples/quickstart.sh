#!/usr/bin/env bash
# A first backup and its restore, from a fresh clone: builds `backups` (with its embedded
# plugins), backs up /etc with examples/folder-to-local.json into /tmp/backups-example, and
# reads the copy back with nothing but GnuPG and tar.
#
# It builds into the same target directory as .ci/run, so the test suite run afterwards
# (or before) compiles nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/backups-target}"
# The example job reads its passphrase from this variable (never from the job file).
export BACKUPS_EXAMPLE_PASSPHRASE="${BACKUPS_EXAMPLE_PASSPHRASE:-example passphrase: change me}"

bash .ci/build-deps
cargo build --quiet --bin backups
backups="$CARGO_TARGET_DIR/debug/backups"

# --allow-root: a fresh machine's shell is often root, which backups refuses by default;
# on a server, run it as a dedicated user (README: "Running as a dedicated user").
"$backups" run --allow-root examples/folder-to-local.json

copy=$(ls -t /tmp/backups-example/store/example-host/*/*/etc.tar.gz.gpg | head -1)
echo
echo "restoring $copy with gpg and tar (the first lines):"
gpg --batch --quiet --pinentry-mode loopback --passphrase "$BACKUPS_EXAMPLE_PASSPHRASE" \
  --decrypt "$copy" | tar -tzv | awk "NR <= 5"
