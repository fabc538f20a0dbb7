#!/usr/bin/env bash
# bench/run.sh [small|full|both|smb|s3] [WORKROOT] -- build the release binary and time it against restic
# (and borg) from the same run, printing the shared scripts' Markdown tables (wall time, CPU, peak RSS,
# repository size, ratio to restic, restore verification):
#   small|full|both  ../shared/bench/compare.sh on the small and/or full corpus, everything on local disk;
#   smb              ../shared/bench/compare-smb.sh on the small corpus with the repositories on the SMB rig
#                    (real Samba + smbnetfs; needs root), sources and restore targets on local disk; also
#                    the share's file count after the first backup;
#   s3               bench/s3.sh: the small corpus against a local S3 server, epygibus beside restic -r s3:…,
#                    with request counts.
# Needs restic, borg and /usr/bin/time: `apt-get install restic borgbackup time` (as root), or pass
# COMPARE_FLAGS=--install. Corpora are built once under WORKROOT (default /var/tmp/epygibus-bench).
# SMB_RUNS sets the runs per tool of the smb scenario (default 2).
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
  smb) CLASSES=small ;;
  s3) # The share after one first backup of CORPUS by restic and epygibus: files and bytes (du -sb) of each
# repository on the SMB rig.
share_after_first_backup() {
  local corpus=$1 w=$2 mnt
  mkdir -p "$w"; mnt=$w/share; mkdir -p "$mnt"
  "$SHARED/rigs/smb.sh" up "$mnt" >/dev/null || { echo "(the SMB rig did not start: no share sizes)"; return; }
  (
    export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$w/restic-cache EPYGIBUS_CONFIG_DIR=$w/epy-config EPYGIBUS_DATA_DIR=$w/epy-data
    restic init --repo "$mnt/restic" >/dev/null 2>&1 && restic --repo "$mnt/restic" backup "$corpus" >/dev/null 2>&1
    mkdir -p "$mnt/epygibus"
    "$EPYGIBUS_BIN" new_repo --location="$mnt/epygibus" R >/dev/null &&
      "$EPYGIBUS_BIN" new --location="$mnt/epygibus" -I "$corpus" -R R -A A --keep_broken_soft_links >/dev/null &&
      "$EPYGIBUS_BIN" bu -A A >/dev/null
    echo "The share after one first backup ($(find "$corpus" -type f | wc -l) files in the corpus):"
    echo
    echo "| tool | files | directories | bytes (du -sb) |"
    echo "|---|---|---|---|"
    for t in restic epygibus; do
      echo "| $t | $(find "$mnt/$t" -type f | wc -l) | $(find "$mnt/$t" -type d | wc -l) | $(du -sb "$mnt/$t" | cut -f1) |"
    done
  )
  "$SHARED/rigs/smb.sh" down "$mnt" >/dev/null 2>&1
}

(cd "$ROOT" && cargo build --release --quiet)
      mkdir -p "$WORKROOT"
      [ -d "$WORKROOT/corpus-small" ] || "$SHARED/bench/make-corpus.sh" "$WORKROOT/corpus-small" small >&2
      exec "$HERE/s3.sh" "$WORKROOT/corpus-small" "$WORKROOT/work-s3" ;;
  *) echo "usage: bench/run.sh [small|full|both|smb|s3] [WORKROOT]" >&2; exit 2 ;;
esac

# The share after one first backup of CORPUS by restic and epygibus: files and bytes (du -sb) of each
# repository on the SMB rig.
share_after_first_backup() {
  local corpus=$1 w=$2 mnt
  mkdir -p "$w"; mnt=$w/share; mkdir -p "$mnt"
  "$SHARED/rigs/smb.sh" up "$mnt" >/dev/null || { echo "(the SMB rig did not start: no share sizes)"; return; }
  (
    export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$w/restic-cache EPYGIBUS_CONFIG_DIR=$w/epy-config EPYGIBUS_DATA_DIR=$w/epy-data
    restic init --repo "$mnt/restic" >/dev/null 2>&1 && restic --repo "$mnt/restic" backup "$corpus" >/dev/null 2>&1
    mkdir -p "$mnt/epygibus"
    "$EPYGIBUS_BIN" new_repo --location="$mnt/epygibus" R >/dev/null &&
      "$EPYGIBUS_BIN" new --location="$mnt/epygibus" -I "$corpus" -R R -A A --keep_broken_soft_links >/dev/null &&
      "$EPYGIBUS_BIN" bu -A A >/dev/null
    echo "The share after one first backup ($(find "$corpus" -type f | wc -l) files in the corpus):"
    echo
    echo "| tool | files | directories | bytes (du -sb) |"
    echo "|---|---|---|---|"
    for t in restic epygibus; do
      echo "| $t | $(find "$mnt/$t" -type f | wc -l) | $(find "$mnt/$t" -type d | wc -l) | $(du -sb "$mnt/$t" | cut -f1) |"
    done
  )
  "$SHARED/rigs/smb.sh" down "$mnt" >/dev/null 2>&1
}

(cd "$ROOT" && cargo build --release --quiet)
export EPYGIBUS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/epygibus"
mkdir -p "$WORKROOT"
for class in $CLASSES; do
  corpus="$WORKROOT/corpus-$class"
  [ -d "$corpus" ] || "$SHARED/bench/make-corpus.sh" "$corpus" "$class" >&2
  work="$WORKROOT/work-$WHICH-$class"
  rm -rf "$work"
  echo "## $class corpus ($(du -sh "$corpus" | cut -f1), $(find "$corpus" -type f | wc -l) files)"
  echo
  if [ "$WHICH" = smb ]; then
    echo "Repository on the SMB rig (compare-smb.sh, ${SMB_RUNS:-2} runs per tool):"
    echo
    "$SHARED/bench/compare-smb.sh" --runs "${SMB_RUNS:-2}" --tools "${TOOLS:-restic epygibus-new}" "$corpus" "$work"
    echo
    # The share is gone with the rig; the first backup's repository files were counted by the script.
    [ -f "$work/smb-files.tsv" ] && { echo "Files in each tool's repository on the share (per run):"; sed 's/^/    /' "$work/smb-files.tsv"; }
    echo
    share_after_first_backup "$corpus" "$work/share-size"
  else
    # shellcheck disable=SC2086
    "$SHARED/bench/compare.sh" ${COMPARE_FLAGS:-} --tools "${TOOLS:-restic borg epygibus-new}" "$corpus" "$work"
  fi
  echo
done
