#!/usr/bin/env bash
# bench/browse.sh [WORKROOT] -- finding a lost version, measured (not a test):
#  1. diff of the full corpus's two latest snapshots and find of one name across N (default 50) snapshots, side by
#     side with restic's diff and find on the same data (N backups each, the corpus changed by mutate-corpus.sh
#     between them), best of 3, with the ratio epygibus/restic (target <= 0.3);
#  2. through `epygibus mount`: diff -r of the small corpus's snapshot against the corpus, and cat of a 1 GB
#     compressible file (stored gzip) and a 1 GB random file (stored plain): MB/s, and the mount process's peak RSS
#     from /usr/bin/time -v (target >= 200 MB/s, < 50 MB).
# Needs restic, /usr/bin/time, fuse3 and /dev/fuse (as root): apt-get install restic time fuse3.
# Env: N (snapshots, default 50), NAME (the name find looks for, default os.py), KEEP=1 keeps WORKROOT/browse,
#      REUSE=1 reuses the snapshots a KEEP=1 run left, RUNS (best of, epygibus, default 3), RESTIC_RUNS (default 1:
#      restic find without its cache takes minutes on 50 snapshots).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${EPYGIBUS_SHARED:-$ROOT/../shared}
WORKROOT=$(realpath -m "${1:-/var/tmp/epygibus-bench}")
N=${N:-50}
NAME=${NAME:-os.py}
for tool in restic /usr/bin/time fusermount3; do
  command -v "$tool" >/dev/null || { echo "bench/browse.sh: $tool missing (apt-get install restic time fuse3)" >&2; exit 1; }
done
(cd "$ROOT" && cargo build --release --quiet)
EPY="${CARGO_TARGET_DIR:-$ROOT/target}/release/epygibus"
mkdir -p "$WORKROOT"
for class in full small; do
  [ -d "$WORKROOT/corpus-$class" ] || "$SHARED/bench/make-corpus.sh" "$WORKROOT/corpus-$class" "$class" >&2
done
W="$WORKROOT/browse"
[ "${REUSE:-0}" = 1 ] && [ -d "$W/restic" ] || { REUSE=0; rm -rf "$W"; mkdir -p "$W"; }
export EPYGIBUS_CONFIG_DIR="$W/config" EPYGIBUS_DATA_DIR="$W/data" RESTIC_REPOSITORY="$W/restic" RESTIC_PASSWORD=bench
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
cleanup() {
  for m in "$W"/mnt*; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

# best RUNS CMD... : best wall time of RUNS runs (seconds), output discarded
best() {
  local b="" runs=$1; shift
  for _ in $(seq "$runs"); do
    sync
    /usr/bin/time -f %e -o "$W/t" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
    b=$(awk -v b="$b" '{ if (b == "" || $1 < b) print $1; else print b }' "$W/t")
  done
  echo "$b"
}

if [ "$REUSE" = 0 ]; then
log "copying the full corpus and taking $N snapshots with each tool"
cp -a "$WORKROOT/corpus-full" "$W/src"
mkdir -p "$W/loc"
"$EPY" new_repo --location="$W/loc" r >/dev/null
"$EPY" new -A full -I "$W/src" -R r --location="$W/loc" --keep-broken-soft-links >/dev/null
restic init --quiet
for i in $(seq 1 "$N"); do
  [ "$i" = 1 ] || "$SHARED/bench/mutate-corpus.sh" "$W/src" "$i" >/dev/null
  "$EPY" bu -q -A full
  restic backup --quiet "$W/src" >/dev/null
done
fi
ids=$(restic snapshots --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)[-2:]))')
entries=$("$EPY" lss --build_stats -A full --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["snapshots"][-1]["build_stats"]; print(c["files"]+c["dirs"]+c["links"])')
changes=$("$EPY" diff -A full --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["changes"]))')
hits=$("$EPY" find -A full "$NAME" --json | python3 -c 'import json,sys; print(sum(s["hits"] for s in json.load(sys.stdin)["archives"][0]["snapshots"]))')
log "timing diff and find"
ed=$(best "${RUNS:-3}" "$EPY" diff -A full)
rd=$(best "${RESTIC_RUNS:-1}" restic --no-cache diff $ids)
ef=$(best "${RUNS:-3}" "$EPY" find -A full "$NAME")
rf=$(best "${RESTIC_RUNS:-1}" restic --no-cache find "$NAME")
rdc=$(best "${RESTIC_RUNS:-1}" restic diff $ids)
rfc=$(best "${RESTIC_RUNS:-1}" restic find "$NAME")
echo "## diff and find, full corpus ($entries entries per snapshot, $N snapshots)"
echo
echo "| what | epygibus s | restic s (no cache) | ratio | restic s (with its cache) | ratio |"
echo "|---|---|---|---|---|---|"
awk -v e="$ed" -v r="$rd" -v c="$rdc" -v n="$changes" 'BEGIN { printf "| diff of the two latest (%d changes) | %.3f | %.3f | %.3f | %.3f | %.3f |\n", n, e, r, e/r, c, e/c }'
awk -v e="$ef" -v r="$rf" -v c="$rfc" -v n="$NAME" -v h="$hits" -v s="$N" 'BEGIN { printf "| find %s across %d snapshots (%d hits) | %.3f | %.3f | %.3f | %.3f | %.3f |\n", n, s, h, e, r, e/r, c, e/c }'
echo

log "mount: diff -r of the small corpus"
rm -rf "$W/big" "$W/mnt"
"$EPY" new -A small -I "$WORKROOT/corpus-small" -R r --location="$W/loc" --keep-broken-soft-links >/dev/null
"$EPY" bu -q -A small
mkdir -p "$W/big" "$W/mnt"
python3 - "$W/big" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(1)
words = [b"alpha", b"beta", b"gamma", b"delta", b"error", b"GET", b"/index.html", b"200", b"404", b"user"]
with open(os.path.join(d, "big.log"), "wb") as f:
    block = b"".join(b"2024-06-01T%02d:%02d:%02d host%d " % (r.randrange(24), r.randrange(60), r.randrange(60), r.randrange(9)) + b" ".join(r.choice(words) for _ in range(8)) + b"\n" for _ in range(20000))
    n = 0
    while n < 1 << 30:
        chunk = block[: (1 << 30) - n]
        f.write(chunk); n += len(chunk)
        block = block[1:] + block[:1]
with open(os.path.join(d, "big.bin"), "wb") as f:
    for _ in range(1024):
        f.write(r.randbytes(1 << 20))
PY
"$EPY" new -A big -I "$W/big" -R r --location="$W/loc" >/dev/null
"$EPY" bu -q -A big
forms=$("$EPY" list_content_items -R r --json | python3 -c 'import json,sys; print(" ".join(sorted("%s:%d" % (i["form"], i["stored_size"]) for i in json.load(sys.stdin)["items"] if i["size"] == 1 << 30)))')
/usr/bin/time -v -o "$W/mount.time" "$EPY" mount -A small -A big "$W/mnt" 2>"$W/mount.err" &
for _ in $(seq 100); do mountpoint -q "$W/mnt" && break; sleep 0.1; done
mountpoint -q "$W/mnt" || { cat "$W/mount.err" >&2; exit 1; }
if diff -r --no-dereference "$WORKROOT/corpus-small" "$W/mnt/small/latest$WORKROOT/corpus-small" >"$W/diff.out" 2>&1; then
  dr="no difference"
else
  dr="DIFFERENCES: $(head -5 "$W/diff.out")"
fi
cat_rate() {
  /usr/bin/time -f "%e %M" -o "$W/t" cat "$1" >/dev/null
  awk '{ printf "%.0f MB/s (%.2f s; cat %d KB)", 1073.741824/$1, $1, $2 }' "$W/t"
}
log "mount: cat of two 1 GB files"
cl=$(cat_rate "$W/mnt/big/latest$W/big/big.log")
cb=$(cat_rate "$W/mnt/big/latest$W/big/big.bin")
fusermount3 -u "$W/mnt"
wait
rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/mount.time")
echo "## through the mount"
echo
echo "- diff -r of the small corpus's snapshot against the corpus: $dr"
echo "- stored forms of the two files (form:stored bytes): $forms"
echo "- cat of the 1 GB compressible file: $cl"
echo "- cat of the 1 GB random file: $cb"
echo "- peak RSS of the mount process over all of this: $((rss / 1024)) MB ($rss KB)"
