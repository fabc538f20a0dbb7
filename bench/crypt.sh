#!/usr/bin/env bash
# bench/crypt.sh [RUNS] [CORPUS] [WORKDIR] -- what encryption costs: the first backup of CORPUS and a full
# extract of it, into a plain repository and into an encrypted one (new_repo --encrypt --recipient), run
# RUNS times each (default 2), interleaved (plain, encrypted, plain, …) because the machine is shared and
# noisy. Prints every run (wall and CPU seconds, as /usr/bin/time measures them) and the ratio of the
# medians, encrypted over plain. Uses the release binary (built here) and age-keygen when installed (else
# a key made by `epygibus` itself is not possible: install Debian's age). Warm cache, a sync before each
# timed command, as ../shared/bench/compare.sh does. Every run keeps its own repository and extract until
# all runs are done: on this machine's ext4 (no journal), creating files within a minute of deleting tens of
# thousands walks the just-deleted inodes (perf: `find_get_block_common` and `recently_deleted` 41% of an
# extract's samples; its system time went from 8 s to 31 s), so deleting one run's extract before the next
# made the timings depend on the order. Leftovers of an earlier bench are deleted first, then the bench
# waits 65 s. Needs about 2.5 GB per run and variant (WORKDIR on a tmpfs measures the CPU-bound case).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=${1:-2}
CORPUS=${2:-/var/tmp/epygibus-bench/corpus-full}
WORK=${3:-/var/tmp/epygibus-bench/work-crypt}
[ -d "$CORPUS" ] || { echo "bench/crypt.sh: $CORPUS not found (../shared/bench/make-corpus.sh makes it)" >&2; exit 1; }
command -v age-keygen >/dev/null || { echo "bench/crypt.sh: age-keygen not found (apt-get install age)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/crypt.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/epygibus"
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
age-keygen -o "$WORK/key.txt" 2>/dev/null || true
PUB=$(age-keygen -y "$WORK/key.txt")

if compgen -G "$WORK/run-*" >/dev/null; then
  rm -rf "$WORK"/run-*; sync
  echo "(deleted an earlier bench's runs: waiting 65 s, see the comment at the top)"; sleep 65
fi

# one VARIANT RUN: a fresh repository and archive (untimed), the first backup, then the extract (timed)
one() {
  local variant=$1 run=$2 d="$WORK/run-$2-$1"
  mkdir -p "$d/loc" "$d/config" "$d/out"
  export EPYGIBUS_CONFIG_DIR="$d/config"
  local enc=()
  [ "$variant" = encrypted ] && enc=(--encrypt --recipient "$PUB")
  "$BIN" new_repo --location="$d/loc" "${enc[@]}" r >/dev/null
  "$BIN" new --location="$d/loc" -I "$CORPUS" -R r -A a >/dev/null
  for step in backup restore; do
    local cmd=("$BIN" bu -A a --quiet)
    [ "$step" = restore ] && cmd=("$BIN" extract -A a --dir "$CORPUS" --into_dir "$d/out" --quiet)
    sync
    /usr/bin/time -f '%e %U %S' -o "$d/time" "${cmd[@]}"
    read -r wall user sys < "$d/time"
    printf '%s\t%s\t%s\t%s\t%s\n' "$variant" "$step" "$run" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" >> "$RESULTS"
    printf '%-9s %-7s run %s: wall %6.2f s  cpu %6.2f s\n' "$variant" "$step" "$run" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')"
  done
  [ "$variant" = encrypted ] && du -sb "$d/loc" | awk '{printf "encrypted repository: %d bytes\n", $1}'
  [ "$variant" = plain ] && du -sb "$d/loc" | awk '{printf "plain repository:     %d bytes\n", $1}'
  return 0
}

echo "## Encryption cost on $CORPUS ($(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files), $RUNS runs each, interleaved"
for run in $(seq 1 "$RUNS"); do
  one plain "$run"
  one encrypted "$run"
done
echo
awk -F'\t' '
  { key = $1 " " $2; n[key]++; wall[key, n[key]] = $4; cpu[key, n[key]] = $5 }
  function median(arr, key, m,   i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = arr[key, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  END {
    for (s = 1; s <= 2; s++) {
      step = s == 1 ? "backup" : "restore"
      p = "plain " step; e = "encrypted " step
      pw = median(wall, p, n[p]); ew = median(wall, e, n[e])
      pc = median(cpu, p, n[p]); ec = median(cpu, e, n[e])
      printf "%-8s median wall: plain %.2f s, encrypted %.2f s, ratio %.3f; median cpu: plain %.2f s, encrypted %.2f s, ratio %.3f\n", step, pw, ew, ew / pw, pc, ec, ec / pc
    }
  }' "$RESULTS"
rm -rf "$WORK"/run-*
