#!/usr/bin/env bash
# Rate limits on versus off, in one run on this machine: two more ingest instances beside the
# demo's (same NATS, Postgres, Redis), one limiting in process (governor), one in Redis
# (shared GCRA script), each rule generous enough that nothing is refused, so the figures are
# the limiter's cost. The same burst (unique voters, tally-loadtest burst) goes to each in turn,
# twice, and every acknowledged vote is checked in Postgres.
#   deploy/bench-limits.sh            (needs deploy/demo.sh's services; starts them if not)
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
COUNT="${COUNT:-20000}" CONCURRENCY="${CONCURRENCY:-100}"
curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 || deploy/demo.sh >/dev/null
# shellcheck disable=SC1091
. "$STATE_DIR/env"
TALLY_API_KEY="$(cat "$STATE_DIR/admin.key")"
export TALLY_API_KEY
cargo build --release --quiet -p tally-ingest -p tally-loadtest
LIMITS='poll_vote:actor=5/minute;poll_vote:ip=1000000000/minute;poll_vote:scope=1000000000/minute'
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { # addr store
  TALLY_INGEST_ADDR="$1" TALLY_RATE_LIMITS="$LIMITS" TALLY_RATE_LIMIT_STORE="$2" RUST_LOG=warn \
    "$BIN/tally-ingest" >>"$STATE_DIR/logs/ingest-limits.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "ingest on $1 did not start"; exit 1
}
start 127.0.0.1:8081 memory
start 127.0.0.1:8082 redis
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ); $COUNT votes per run, $CONCURRENCY concurrent"
echo "== limits: $LIMITS (3 rules per vote, none refuses)"
for round in 1 2; do
  for target in "off 127.0.0.1:8080" "memory 127.0.0.1:8081" "redis 127.0.0.1:8082"; do
    set -- $target
    line=$("$BIN/tally-loadtest" --ingest "http://$2" --connections "$CONCURRENCY" \
      burst --count "$COUNT" 2>&1 | grep '^| burst' | tr '\n' ' ')
    echo "round $round, limits $1: $line"
  done
done
