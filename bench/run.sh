#!/usr/bin/env bash
# bench/run.sh [small|full|both|s3] [WORKROOT] -- `s3` runs bench/s3.sh (the small corpus against a local S3
# server, epygibus beside restic -r s3:…, with request counts). Otherwise: build the release binary and time it against restic and
# borg with ../shared/bench/compare.sh on the small and/or full corpus; prints compare.sh's Markdown tables
# (wall time, CPU, peak RSS, repository size, ratio to restic from the same run, restore verification).
# Needs restic, borg and /usr/bin/time: `apt-get install restic borgbackup time` (as root), or pass
# COMPARE_FLAGS=--install. Corpora are built once under WORKROOT (default /var/tmp/epygibus-bench).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${EPYGIBUS_SHARED:-$ROOT/../shared}
WHICH=${1:-small}
WORKROOT=${2:-/var/tmp/epygibus-bench}
[ -x "$SHARED/bench/compare.sh" ] || { echo "bench/run.sh: $SHARED/bench/compare.sh not found (set EPYGIBUS_SHARED)" >&2; exit 1; }
case "$WHICH" in
  small|full) CLASSES=$WHICH ;;
  both) CLASSES="small full" ;;
  s3) (cd "$ROOT" && cargo build --release --quiet)
      mkdir -p "$WORKROOT"
      [ -d "$WORKROOT/corpus-small" ] || "$SHARED/bench/make-corpus.sh" "$WORKROOT/corpus-small" small >&2
      exec "$HERE/s3.sh" "$WORKROOT/corpus-small" "$WORKROOT/work-s3" ;;
  *) echo "usage: bench/run.sh [small|full|both|s3] [WORKROOT]" >&2; exit 2 ;;
esac

(cd "$ROOT" && cargo build --release --quiet)
export EPYGIBUS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/epygibus"
mkdir -p "$WORKROOT"
for class in $CLASSES; do
  corpus="$WORKROOT/corpus-$class"
  [ -d "$corpus" ] || "$SHARED/bench/make-corpus.sh" "$corpus" "$class" >&2
  work="$WORKROOT/work-$class"
  rm -rf "$work"
  echo "## $class corpus ($(du -sh "$corpus" | cut -f1))"
  echo
  # shellcheck disable=SC2086
  "$SHARED/bench/compare.sh" ${COMPARE_FLAGS:-} --tools "${TOOLS:-restic borg epygibus-new}" "$corpus" "$work"
  echo
done
