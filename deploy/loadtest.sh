#!/usr/bin/env bash
# The load scenarios of docs/benchmarks.md, in one run on this machine: the three references
# (tally-noop, raw JetStream, tally-naive) under the flash-poll load, then flash-poll, arena,
# tournament, registration-rush and batch against the running pipeline, each checked in
# Postgres, Redis and ClickHouse. Writes loadtest/out/{summary.md,run.json,plot.png}; a single
# scenario or the overload run writes the same files prefixed with its name (overload-plot.png).
#
#   deploy/loadtest.sh              the full scenarios
#   SCALE=0.1 deploy/loadtest.sh    a tenth of the requests at the same rates
#   deploy/loadtest.sh suite        only the scenarios (arena-crowd on a second ingest, :8081)
#   deploy/loadtest.sh overload [--sustainable-rate N]   only the overload run
#   deploy/loadtest.sh cost [--runs 5000x50000,20000x100000]   CPU µs per event by process
#   deploy/loadtest.sh followers [--followers 19000]   one channel's SSE fan-out on one ingest
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
BIN="$CARGO_TARGET_DIR/release"
SCALE="${SCALE:-1}"
# The plot's text needs a TrueType font.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || {
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq fonts-dejavu-core >/dev/null
}
# Ingest, workers and aggregator (release), a poll and an admin key: deploy/demo.sh.
curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 || deploy/demo.sh >/dev/null
cargo build --release --quiet -p tally-loadtest
# shellcheck disable=SC1091
. "$STATE_DIR/env"
export TALLY_API_KEY="$(cat "$STATE_DIR/admin.key")"
"$BIN/tally-noop" --addr 127.0.0.1:8099 & NOOP=$!
"$BIN/tally-naive" --addr 127.0.0.1:8098 & NAIVE=$!
trap 'kill $NOOP $NAIVE 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null 127.0.0.1:8098 && break; sleep 0.1; done
ulimit -n 20000 2>/dev/null || true
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(date -u +%FT%TZ); scale $SCALE"
WHAT="${1:-all}"
if [ "$WHAT" = all ] || [ "$WHAT" = suite ]; then
  # arena-crowd holds 20,000 connections at once, more than one process may have open here:
  # a second ingest (stateless, like the first) takes half of them, as a load balancer would.
  TALLY_INGEST_ADDR=127.0.0.1:8081 "$BIN/tally-ingest" >>"$STATE_DIR/logs/ingest-2.log" 2>&1 &
  INGEST2=$!
  trap 'kill $NOOP $NAIVE $INGEST2 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do curl -fsS 127.0.0.1:8081/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS 127.0.0.1:8081/readyz >/dev/null \
    || { echo "the second ingest did not start; see $STATE_DIR/logs/ingest-2.log" >&2; exit 1; }
  "$BIN/tally-loadtest" --scale "$SCALE" --ingest-also http://127.0.0.1:8081 suite
  kill "$INGEST2"; wait "$INGEST2" 2>/dev/null || true
fi
# Three times the sustainable rate for 10 s between two sustainable phases; ingest's RSS
# sampled from /proc. Writes loadtest/out/overload.{md,json} (the phases) and
# overload-{summary.md,run.json,plot.png}.
if [ "$WHAT" = all ] || [ "$WHAT" = overload ]; then
  "$BIN/tally-loadtest" --scale "$SCALE" --connections 8000 overload \
    --ingest-pid "$(pgrep -x tally-ingest | head -1)" "${@:2}"
fi
# CPU µs per acknowledged event of each process (ingest, nats-server, Postgres, aggregator,
# workers, Redis, ClickHouse, the generator) at steady rates, beside the do-nothing handler's
# CPU per request at the same rates. Writes loadtest/out/cost-{summary.md,run.json,plot.png}.
# Not part of `all`: run it on an otherwise quiet box, every process of those names counts.
if [ "$WHAT" = cost ]; then
  "$BIN/tally-loadtest" --scale "$SCALE" cost "${@:2}"
fi
# As many SSE followers of one channel as one ingest holds (its open-file limit less 1,000:
# 19,000 here), from four generator processes, then a message every 2 s: the time from each
# publish to each follower. On an ingest of its own (:8082), so nothing else holds its files.
# Writes loadtest/out/channel-followers-{summary.md,run.json,plot.png}.
if [ "$WHAT" = followers ]; then
  TALLY_INGEST_ADDR=127.0.0.1:8082 "$BIN/tally-ingest" >>"$STATE_DIR/logs/ingest-3.log" 2>&1 &
  INGEST3=$!
  trap 'kill $NOOP $NAIVE $INGEST3 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do curl -fsS 127.0.0.1:8082/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN/tally-loadtest" --scale "$SCALE" --ingest http://127.0.0.1:8082 channel-followers "${@:2}"
  kill "$INGEST3"; wait "$INGEST3" 2>/dev/null || true
fi
