#!/usr/bin/env bash
# bench/s3.sh [CORPUS] [WORKDIR] -- one run of epygibus and restic against the same local S3 server
# (moto_server from ../shared/rigs/s3.sh, on loopback): first backup, no-change backup and full restore of
# the corpus (default: the small benchmark corpus), each tool into its own prefix of bucket `epygibus`.
# Prints a Markdown table: seconds per phase, the ratio epygibus/restic, and the HTTP requests each phase
# sent (counted from the server's access log), with requests per backed-up file. Restores are verified
# with `diff -r` against the corpus. Needs restic (apt-get install restic) and python3 for the rig.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${EPYGIBUS_SHARED:-$ROOT/../shared}
CORPUS=${1:-/var/tmp/epygibus-bench/corpus-small}
WORK=${2:-/var/tmp/epygibus-bench/work-s3}
RIG="$SHARED/rigs/s3.sh"
EPY=${EPYGIBUS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/epygibus}
command -v restic >/dev/null || { echo "bench/s3.sh: restic missing (apt-get install restic)" >&2; exit 1; }
[ -d "$CORPUS" ] || "$SHARED/bench/make-corpus.sh" "$CORPUS" small >&2
[ -x "$EPY" ] || (cd "$ROOT" && cargo build --release --quiet)
rm -rf "$WORK"; mkdir -p "$WORK"
KEY="$WORK/rig"
eval "$("$RIG" up "$KEY" | sed 's/^/export /')"
trap '"$RIG" down "$KEY" >/dev/null 2>&1 || true' EXIT
LOG="${RIG_STATE_ROOT:-/tmp/epygibus-rigs}/s3/$(printf '%s' "$(realpath -m "$KEY")" | sha1sum | cut -c1-12)/server.log"
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=$AWS_DEFAULT_REGION
requests() { grep -cE '"(GET|PUT|POST|DELETE|HEAD) ' "$LOG" || true; }
FILES=$(find "$CORPUS" -type f | wc -l)
declare -A SECS REQS
# phase TOOL PHASE CMD... : time one command and count the requests it sent
phase() {
  local tool=$1 name=$2 before t0 t1; shift 2
  sync
  before=$(requests); t0=$(date +%s.%N)
  "$@" >"$WORK/$tool-$name.log" 2>&1 || { echo "bench/s3.sh: $tool $name failed:" >&2; tail -5 "$WORK/$tool-$name.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  SECS[$tool-$name]=$(echo "$t1 - $t0" | bc -l)
  REQS[$tool-$name]=$(( $(requests) - before ))
}

# epygibus: repository and snapshots in the bucket
export EPYGIBUS_CONFIG_DIR="$WORK/epy-config" HOME="$WORK/home"
mkdir -p "$HOME"
"$EPY" new_repo --location="s3://$S3_BUCKET/epy" r >/dev/null
"$EPY" new -A b -I "$CORPUS" -R r --location="s3://$S3_BUCKET/epy" --keep-broken-soft-links >/dev/null
phase epygibus first "$EPY" bu -A b
phase epygibus nochange "$EPY" bu -A b
mkdir -p "$WORK/epy-out"
phase epygibus restore "$EPY" extract -A b --dir "$CORPUS" --into-dir "$WORK/epy-out"
diff -r --no-dereference "$CORPUS" "$WORK/epy-out/$(basename "$CORPUS")" >/dev/null || { echo "epygibus restore differs" >&2; exit 1; }

# restic: the same server, another prefix
export RESTIC_REPOSITORY="s3:$S3_ENDPOINT/$S3_BUCKET/restic" RESTIC_PASSWORD=bench
restic init >/dev/null
phase restic first restic backup "$CORPUS"
phase restic nochange restic backup "$CORPUS"
phase restic restore restic restore latest --target "$WORK/restic-out"
diff -r --no-dereference "$CORPUS" "$WORK/restic-out$CORPUS" >/dev/null || { echo "restic restore differs" >&2; exit 1; }

echo "## S3 ($(du -sh "$CORPUS" | cut -f1) corpus, $FILES files; moto_server on loopback; one run)"
echo
echo "| phase | epygibus s | restic s | ratio | epygibus requests | restic requests |"
echo "|---|---|---|---|---|---|"
for p in first nochange restore; do
  printf '| %s | %.2f | %.2f | %.2fx | %d | %d |\n' "$p" "${SECS[epygibus-$p]}" "${SECS[restic-$p]}" \
    "$(echo "${SECS[epygibus-$p]} / ${SECS[restic-$p]}" | bc -l)" "${REQS[epygibus-$p]}" "${REQS[restic-$p]}"
done
echo
printf 'Requests per backed-up file (first backup): epygibus %.2f, restic %.2f\n' \
  "$(echo "${REQS[epygibus-first]} / $FILES" | bc -l)" "$(echo "${REQS[restic-first]} / $FILES" | bc -l)"
