#!/usr/bin/env bash
# Foundation benchmark, all figures from one run on this machine:
#   1. the HTTP ceiling: a do-nothing axum handler (tally-noop) under oha;
#   2. ingest under the same oha load, a burst of BURST_COUNT single-event requests, then the
#      outcome check: Postgres holds exactly as many rows for that poll as oha saw 202s;
#   3. the batch endpoint (tally-loadtest burst --batch), checked event by event in Postgres;
#   4. the Postgres writer alone: a backlog of DRAIN_COUNT events drained, rows/s;
#   5. the read API (standings top 10) at 10,000 reads/s for 10 s;
#   6. ingest-to-Redis lag while 5,000 votes/s arrive for 10 s (aggregator's lag histogram).
# Needs the services from deploy/demo.sh running (it starts them if not).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
BURST_COUNT="${BURST_COUNT:-20000}" DRAIN_COUNT="${DRAIN_COUNT:-300000}"
CONNECTIONS="${CONNECTIONS:-100}"
TOOLS="${TALLY_TOOLS_DIR:-$HOME/.cache/tally-tools}"
# oha (crates.io) sends exactly N requests and reports every status; built once, kept outside the clone.
[ -x "$TOOLS/bin/oha" ] || cargo install oha --locked --quiet --root "$TOOLS"
curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 || deploy/demo.sh >/dev/null
# shellcheck disable=SC1091
. "$STATE_DIR/env"
TALLY_API_KEY="$(cat "$STATE_DIR/admin.key")" # made by deploy/demo.sh
export TALLY_API_KEY TALLY_API_URL=http://127.0.0.1:8080
cargo build --release --quiet -p tally-loadtest -p tally-cli
define() { # plural, JSON definition: created once
  local id; id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$2")
  "$BIN/tally" "$1" get "$id" >/dev/null 2>&1 || "$BIN/tally" "$1" create - <<<"$2" >/dev/null
}
define tournaments '{"id":"bench"}'
define polls '{"id":"lag","options":["red","green","blue"]}'
rows() { psql -tA "$TALLY_DATABASE_URL" -c "SELECT count(*) FROM poll_votes WHERE poll = '$1'"; }
wait_rows() { # poll, expected
  for _ in $(seq 1 600); do [ "$(rows "$1")" -ge "$2" ] && return 0; sleep 0.1; done; return 1
}
burst() { # url -> prints a summary line, leaves the number of 202s in $ACCEPTED
  "$TOOLS/bin/oha" -n "$BURST_COUNT" -c "$CONNECTIONS" -m POST -T application/json \
    -d '{"voter":"oha","options":["red"]}' --no-tui --output-format json "$1" >/tmp/tally-oha.json
  ACCEPTED=$(python3 - <<'PY'
import json
d = json.load(open("/tmp/tally-oha.json"))
s, p = d["summary"], d["latencyPercentiles"]
codes = d["statusCodeDistribution"]
print(f"  {sum(codes.values())} requests, {s['requestsPerSec']:.0f} req/s, p50 {p['p50']*1000:.1f} ms, "
      f"p99 {p['p99']*1000:.1f} ms, max {s['slowest']*1000:.1f} ms, statuses {codes}, errors {d['errorDistribution']}",
      file=__import__("sys").stderr)
print(codes.get("202", 0))
PY
)
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(date -u +%FT%TZ)"
"$BIN/tally-noop" --addr 127.0.0.1:8099 & NOOP=$!
trap 'kill $NOOP 2>/dev/null || true' EXIT
sleep 0.3
echo "== 1. do-nothing axum handler: oha -n $BURST_COUNT -c $CONNECTIONS"
burst http://127.0.0.1:8099/v1/polls/noop/votes

POLL="oha-$(date +%s)"
define polls "{\"id\":\"$POLL\",\"options\":[\"red\",\"green\",\"blue\"]}"
echo "== 2. ingest, same load, poll $POLL (the writer runs meanwhile)"
burst "http://127.0.0.1:8080/v1/polls/$POLL/votes"
wait_rows "$POLL" "$ACCEPTED" || true
sleep 1
stored=$(rows "$POLL")
echo "  outcome: $ACCEPTED answered 202, $stored rows in Postgres for the poll"
[ "$stored" = "$ACCEPTED" ] || { echo "MISMATCH"; exit 1; }

echo "== 3. batch endpoint, 1000 events per request, 8 concurrent"
"$BIN/tally-loadtest" --connections 8 burst --count 200000 --batch 1000

echo "== 4. Postgres writer draining a backlog of $DRAIN_COUNT events"
kill "$(cat "$STATE_DIR/pids/workers.pid")"; sleep 1
batch_out=$("$BIN/tally-loadtest" --connections 8 burst --count "$DRAIN_COUNT" --batch 1000 --no-check)
echo "$batch_out"
DPOLL=$(grep -o 'load-[0-9a-f]*' <<<"$batch_out" | head -1)
t0=$(date +%s.%N)
nohup "$BIN/tally-workers" >>"$STATE_DIR/logs/workers.log" 2>&1 </dev/null &
echo $! >"$STATE_DIR/pids/workers.pid"
wait_rows "$DPOLL" "$DRAIN_COUNT"
t1=$(date +%s.%N)
python3 -c "print('writer: $DRAIN_COUNT rows in %.2f s = %.0f rows/s' % ($t1 - $t0, $DRAIN_COUNT / ($t1 - $t0)))"

echo "== 5. read API at 10,000 reads/s for 10 s (standings, top 10)"
for i in $(seq 1 20); do
  curl -fsS -X POST http://127.0.0.1:8080/v1/tournaments/bench/scores -H 'content-type: application/json' \
    -d "{\"match\":\"m\",\"team\":\"team$i\",\"points\":$i}" >/dev/null
done
sleep 1
"$TOOLS/bin/oha" -q 10000 -z 10s -c 50 --no-tui --output-format json \
  'http://127.0.0.1:8080/v1/tournaments/bench/standings?limit=10' >/tmp/tally-oha.json
python3 - <<'PY'
import json
d = json.load(open("/tmp/tally-oha.json"))
s, p = d["summary"], d["latencyPercentiles"]
print(f"  {s['requestsPerSec']:.0f} reads/s, p50 {p['p50']*1000:.2f} ms, p99 {p['p99']*1000:.2f} ms, "
      f"p99.9 {p['p99.9']*1000:.2f} ms, statuses {d['statusCodeDistribution']}")
PY

echo "== 6. ingest-to-Redis lag under 5,000 votes/s for 10 s"
lag_buckets() {
  curl -fsS http://127.0.0.1:9102/metrics | grep 'tally_aggregator_lag_seconds_bucket' | grep 'kind="poll_vote"' | grep 'sink="redis"'
}
lag_buckets >/tmp/tally-lag-before
"$TOOLS/bin/oha" -q 5000 -z 10s -c 50 -m POST -T application/json -d '{"voter":"lag","options":["red"]}' \
  --no-tui --output-format json http://127.0.0.1:8080/v1/polls/lag/votes >/tmp/tally-oha.json
sleep 1
lag_buckets >/tmp/tally-lag-after
python3 - <<'PY'
import json, re
def read(path):
    out = {}
    for line in open(path):
        m = re.search(r'le="([^"]+)"\} (\d+)', line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
before, after = read("/tmp/tally-lag-before"), read("/tmp/tally-lag-after")
delta = {k: after[k] - before.get(k, 0) for k in after}
total = delta.get("+Inf", 0)
bounds = sorted((k for k in delta if k != "+Inf"), key=float)
def q(x):
    return next((b for b in bounds if delta[b] >= x * total), "+Inf")
codes = json.load(open("/tmp/tally-oha.json"))["statusCodeDistribution"]
print(f"  {codes} accepted; lag of each batch's worst event over {total} batches: p50 <= {q(0.5)} s, p99 <= {q(0.99)} s")
PY
