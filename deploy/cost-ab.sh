#!/usr/bin/env bash
# Before/after of the cost per event (docs/benchmarks.md): runs `tally-loadtest cost` against
# two or more builds of ingest, workers and aggregator, alternating them round after round on
# the same stack, so drift of the machine falls on every side alike; prints each side's mean
# CPU µs per event per process, and its ratio to the first side.
#
#   deploy/cost-ab.sh base=/tmp/base new=/tmp/new
#   deploy/cost-ab.sh base=/tmp/base 'nolinger=/tmp/new TALLY_PUBLISH_LINGER_US=0' new=/tmp/new
#   ROUNDS=3 RUNS=5000x50000 deploy/cost-ab.sh …
#
# Each side is `label=DIR [VAR=value …]`: DIR holds tally-ingest, tally-workers and
# tally-aggregator (the cost mode finds processes by those names), started with the demo's
# environment plus the side's variables. The demo's own services are stopped first. Writes
# loadtest/out/cost-ab-<label>-<round>.md and loadtest/out/cost-ab.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,15p "$0"; exit 2; }
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
ROUNDS="${ROUNDS:-2}"
RUNS="${RUNS:-5000x50000,20000x100000}"
OUT=loadtest/out
mkdir -p "$OUT" "$STATE_DIR/logs"
curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 || deploy/demo.sh >/dev/null
deploy/demo.sh stop >/dev/null
cargo build --release --quiet -p tally-loadtest
# shellcheck disable=SC1091
. "$STATE_DIR/env"
export TALLY_API_KEY="$(cat "$STATE_DIR/admin.key")"
"$BIN/tally-noop" --addr 127.0.0.1:8099 & NOOP=$!
PIDS=()
stop_side() { [ ${#PIDS[@]} -eq 0 ] || { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; }; PIDS=(); }
trap 'stop_side; kill $NOOP 2>/dev/null || true' EXIT

run_side() { # label dir [VAR=value …] round
  local label=$1 dir=$2 round=${*: -1}
  local vars=("${@:3:$#-3}")
  for svc in workers aggregator ingest; do
    env "${vars[@]}" "$dir/tally-$svc" >>"$STATE_DIR/logs/cost-ab-$label.log" 2>&1 </dev/null &
    PIDS+=($!)
  done
  for url in 127.0.0.1:8080/readyz 127.0.0.1:9101/healthz 127.0.0.1:9102/healthz; do
    for _ in $(seq 1 150); do curl -fsS "http://$url" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://$url" >/dev/null || { echo "$label: $url did not come up" >&2; exit 1; }
  done
  sleep 2
  "$BIN/tally-loadtest" cost --runs "$RUNS" --idle-seconds 1 >/dev/null
  cp "$OUT/cost-summary.md" "$OUT/cost-ab-$label-$round.md"
  stop_side
}

LABELS=()
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order, so neither side always runs first.
  sides=("$@"); [ $((round % 2)) -eq 0 ] && mapfile -t sides < <(printf '%s\n' "$@" | tac)
  for side in "${sides[@]}"; do
    read -r -a words <<<"$side"
    label=${words[0]%%=*}; dir=${words[0]#*=}
    echo "== round $round: $label ($side)"
    run_side "$label" "$dir" "${words[@]:1}" "$round"
  done
done
for side in "$@"; do LABELS+=("${side%%=*}"); done

# Mean of each side's rows, and the ratio to the first side, per run and process.
files=()
for label in "${LABELS[@]}"; do files+=("$OUT"/cost-ab-"$label"-*.md); done
awk -F'|' -v order="${LABELS[*]}" -v rounds="$ROUNDS" '
  FNR == 1 { label = FILENAME; sub(/.*cost-ab-/, "", label); sub(/-[0-9]+\.md$/, "", label); table = 0 }
  /^\| run \| events/ { for (i = 2; i < NF; i++) { h = $i; gsub(/[ *]|\(idle\)/, "", h); col[i] = h }; last = NF - 1; table = 1; next }
  table && /^\| flash votes/ {
    run = $2; gsub(/^ +| +$/, "", run); runs[run] = 1
    for (i = 5; i <= last; i++) { v = $i; gsub(/\(.*\)|[* ]/, "", v); sum[label, run, i] += v; n[label, run, i]++ }
  }
  END {
    split(order, labels, " ")
    printf "Mean CPU µs per acknowledged event over %d rounds (ratio to %s)\n\n", rounds, labels[1]
    printf "| run | side |"; for (i = 5; i <= last; i++) if (col[i] != "tally-noop") printf " %s |", col[i]; print ""
    printf "| --- | --- |"; for (i = 5; i <= last; i++) if (col[i] != "tally-noop") printf " ---: |"; print ""
    for (r in runs) for (k = 1; k in labels; k++) {
      l = labels[k]; printf "| %s | %s |", r, l
      for (i = 5; i <= last; i++) {
        if (col[i] == "tally-noop") continue
        m = sum[l, r, i] / n[l, r, i]; b = sum[labels[1], r, i] / n[labels[1], r, i]
        printf " %.1f%s |", m, (k > 1 && b > 0) ? sprintf(" (%.2f×)", m / b) : ""
      }
      print ""
    }
  }' "${files[@]}" | tee "$OUT/cost-ab.md"
