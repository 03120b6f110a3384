#!/usr/bin/env bash
# Sets up the local stack, starts ingest, the Postgres writer and the aggregator in the
# background, sends a demo burst and shows the rows arriving in Postgres and the live tally
# in Redis.
#
#   deploy/demo.sh         set up, start, send the burst, leave the services running
#   deploy/demo.sh stop    stop ingest, workers and aggregator started here (servers keep running;
#                          deploy/stack.sh down stops the ones the stack script started)
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
INGEST_ADDR="${TALLY_INGEST_ADDR:-127.0.0.1:8080}"
log() { printf '[demo] %s\n' "$*" >&2; }

stop() {
  for svc in ingest workers aggregator; do
    local f="$STATE_DIR/pids/$svc.pid"
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
      local pid; pid=$(cat "$f")
      log "stopping $svc ($pid)"; kill "$pid"
      # Wait for the graceful stop: the next start needs its ports.
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
  done
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

command -v cargo >/dev/null || { log "cargo is needed (Rust 1.95 or newer, e.g. from rustup)"; exit 1; }
deploy/stack.sh up
deploy/tools.sh build-deps
# shellcheck disable=SC1091
. "$STATE_DIR/env"
export TALLY_INGEST_ADDR="$INGEST_ADDR"

log "building (release)…"
cargo build --release --quiet -p tally-ingest -p tally-workers -p tally-aggregator -p tally-loadtest -p tally-cli
"$BIN/tally-workers" setup

stop # a previous demo's services
mkdir -p "$STATE_DIR/logs" "$STATE_DIR/pids"
nohup "$BIN/tally-workers" >>"$STATE_DIR/logs/workers.log" 2>&1 </dev/null &
echo $! >"$STATE_DIR/pids/workers.pid"
nohup "$BIN/tally-aggregator" >>"$STATE_DIR/logs/aggregator.log" 2>&1 </dev/null &
echo $! >"$STATE_DIR/pids/aggregator.pid"
nohup "$BIN/tally-ingest" >>"$STATE_DIR/logs/ingest.log" 2>&1 </dev/null &
echo $! >"$STATE_DIR/pids/ingest.pid"
for _ in $(seq 1 100); do
  curl -fsS "http://$INGEST_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.1
done
curl -fsS "http://$INGEST_ADDR/readyz" >/dev/null || { log "ingest did not become ready; see $STATE_DIR/logs/ingest.log"; exit 1; }
for svc in "workers 9101" "aggregator 9102"; do
  set -- $svc
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null || { log "$1 did not start; see $STATE_DIR/logs/$1.log"; exit 1; }
done
log "ingest on http://$INGEST_ADDR, workers metrics on http://127.0.0.1:9101/metrics"

# An admin key for this machine, made once and kept only here (mode 600); the database holds
# its hash. The tally CLI and the load test read it from TALLY_API_KEY.
KEY_FILE="$STATE_DIR/admin.key"
export TALLY_API_URL="http://$INGEST_ADDR"
if [ ! -s "$KEY_FILE" ] || ! TALLY_API_KEY="$(cat "$KEY_FILE")" "$BIN/tally" polls list >/dev/null 2>&1; then
  (umask 077; "$BIN/tally" keys create --name "demo-$(date +%s)" --role admin >"$KEY_FILE")
  log "made an admin key: $KEY_FILE"
fi
TALLY_API_KEY="$(cat "$KEY_FILE")"
export TALLY_API_KEY
define() { # plural, JSON definition: created once, left as it is when it exists
  local id; id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$2")
  "$BIN/tally" "$1" get "$id" >/dev/null 2>&1 || "$BIN/tally" "$1" create - <<<"$2" >/dev/null
}
define polls '{"id":"demo","title":"Favourite colour","options":["red","green","blue"]}'
define tournaments '{"id":"cup","title":"Demo cup","teams":["owls","larks","bats"],"score_operator":"incr"}'
log "defined poll 'demo' and tournament 'cup' (tally polls list, tally tournaments list)"

log "one vote by hand:"
curl -sS -X POST "http://$INGEST_ADDR/v1/polls/demo/votes" -H 'content-type: application/json' \
  -H "Idempotency-Key: demo-$(date +%s)" -d '{"voter":"ada","options":["red"]}'; echo
log "a bad one, for the error shape:"
curl -sS -X POST "http://$INGEST_ADDR/v1/polls/demo/votes" -H 'content-type: application/json' \
  -d '{"voter":"ada","options":["red"],"received_at":"yesterday"}'; echo

log "a burst of 5,000 single-vote requests, then the outcome check in Postgres:"
burst=$("$BIN/tally-loadtest" --ingest "http://$INGEST_ADDR" --connections 64 burst --count 5000)
echo "$burst"
poll=$(grep -o 'load-[0-9a-f]*' <<<"$burst" | head -1)
# The aggregator may first be catching up on older events; wait (bounded) for this burst.
for _ in $(seq 1 300); do
  total=$(redis-cli -u "$TALLY_REDIS_URL" HVALS "tally:poll:$poll:tally" | awk '{s += $1} END {print s + 0}')
  [ "$total" -ge 5000 ] && break; sleep 0.1
done
log "the live tally of $poll in Redis (key tally:poll:$poll:tally):"
redis-cli -u "$TALLY_REDIS_URL" HGETALL "tally:poll:$poll:tally" | paste - -

log "rows in Postgres:"
psql "$TALLY_DATABASE_URL" -c "SELECT poll, options[1] AS option, count(*) AS votes, max(received_at) AS last_vote
  FROM poll_votes GROUP BY 1, 2 ORDER BY max(received_at) DESC, 2 LIMIT 6"

cat >&2 <<MSG
[demo] Running in the background:
[demo]   ingest   http://$INGEST_ADDR   (log: $STATE_DIR/logs/ingest.log)
[demo]   workers  Postgres writer      (log: $STATE_DIR/logs/workers.log)
[demo]   aggregator  Redis sink        (log: $STATE_DIR/logs/aggregator.log)
[demo] Watch: http://$INGEST_ADDR/live/polls/demo   (live bars; post votes to poll "demo")
[demo] Try:  curl -X POST http://$INGEST_ADDR/v1/tournaments/cup/scores -H 'content-type: application/json' -d '{"match":"m1","team":"owls","points":3}'
[demo] Admin: TALLY_API_KEY=\$(cat $KEY_FILE) $BIN/tally polls list
[demo] Stop: deploy/demo.sh stop      (and deploy/stack.sh down for the servers it started)
MSG
