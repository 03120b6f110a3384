#!/usr/bin/env bash
# Foundation benchmark, all figures from one run on this machine:
#   1. the HTTP ceiling: a do-nothing axum handler (tally-noop) under wrk;
#   2. ingest under the same wrk load, a burst of BURST_COUNT single-event requests, then the
#      outcome check: Postgres holds exactly as many rows for that poll as wrk saw 202s;
#   3. the batch endpoint (tally-loadtest batch), checked event by event in Postgres;
#   4. the Postgres writer alone: a backlog of DRAIN_COUNT events drained, rows/s.
# Needs the services from deploy/demo.sh running (it starts them if not).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
BURST_COUNT="${BURST_COUNT:-20000}" DRAIN_COUNT="${DRAIN_COUNT:-300000}"
CONNECTIONS="${CONNECTIONS:-100}" WRK_THREADS=2
export BURST_COUNT WRK_THREADS
command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo; $sudo_ apt-get install -y -qq wrk >/dev/null; }
curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 || deploy/demo.sh >/dev/null
# shellcheck disable=SC1091
. "$STATE_DIR/env"
cargo build --release --quiet -p tally-loadtest
rows() { psql -tA "$TALLY_DATABASE_URL" -c "SELECT count(*) FROM poll_votes WHERE poll = '$1'"; }
wait_rows() { # poll, expected
  for _ in $(seq 1 600); do [ "$(rows "$1")" -ge "$2" ] && return 0; sleep 0.1; done; return 1
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(date -u +%FT%TZ)"
"$BIN/tally-noop" --addr 127.0.0.1:8099 & NOOP=$!
trap 'kill $NOOP 2>/dev/null || true' EXIT
sleep 0.3
echo "== 1. do-nothing axum handler, wrk -t2 -c$CONNECTIONS, $BURST_COUNT requests"
wrk -t2 -c"$CONNECTIONS" -d60s --latency -s loadtest/wrk/burst.lua http://127.0.0.1:8099/v1/polls/noop/votes \
  | grep -E "wrk:"

POLL="wrk-$(date +%s)"
echo "== 2. ingest, same load, poll $POLL"
# wrk stops with requests still in flight and never reads their answers, so the exact
# acknowledged count is ingest's own count of 202s sent (from /metrics), checked against wrk's.
sent_202() {
  curl -fsS http://127.0.0.1:8080/metrics | awk -F' ' '/^tally_ingest_requests_total\{route="\/v1\/polls\/\{poll\}\/votes",status="202"\}/ {print $2}'
}
before=$(sent_202); before=${before:-0}
out=$(wrk -t2 -c"$CONNECTIONS" -d60s --latency -s loadtest/wrk/burst.lua "http://127.0.0.1:8080/v1/polls/$POLL/votes")
grep -E "wrk:" <<<"$out"
sleep 0.5
acked=$(( $(sent_202) - before ))
seen=$(sed -n 's/.*, \([0-9]*\) of them 202.*/\1/p' <<<"$out")
wait_rows "$POLL" "$acked" || true
sleep 1
stored=$(rows "$POLL")
echo "outcome: ingest sent $acked 202s (wrk read $seen of them), Postgres holds $stored rows for the poll"
[ "$stored" = "$acked" ] && [ "$seen" -le "$acked" ] || { echo "MISMATCH"; exit 1; }

echo "== 3. batch endpoint, 1000 events per request, 8 concurrent"
"$BIN/tally-loadtest" --concurrency 8 --database-url "$TALLY_DATABASE_URL" batch --count 200000 --size 1000

echo "== 4. Postgres writer draining a backlog of $DRAIN_COUNT events"
kill "$(cat "$STATE_DIR/pids/workers.pid")"; sleep 1
batch_out=$(env -u TALLY_DATABASE_URL "$BIN/tally-loadtest" --concurrency 8 batch --count "$DRAIN_COUNT" --size 1000)
echo "$batch_out"
DPOLL=$(grep -o 'load-[0-9a-f]*' <<<"$batch_out" | head -1)
t0=$(date +%s.%N)
nohup "$BIN/tally-workers" >>"$STATE_DIR/logs/workers.log" 2>&1 </dev/null &
echo $! >"$STATE_DIR/pids/workers.pid"
wait_rows "$DPOLL" "$DRAIN_COUNT"
t1=$(date +%s.%N)
python3 -c "print('writer: $DRAIN_COUNT rows in %.2f s = %.0f rows/s' % ($t1 - $t0, $DRAIN_COUNT / ($t1 - $t0)))"
