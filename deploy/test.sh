#!/usr/bin/env bash
# Brings the local stack up (idempotent) and runs every test: unit tests and the end-to-end
# tests against the real NATS, Postgres and Redis, and a headless Chromium for the live page.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
deploy/stack.sh up
# promtool, docker-compose, the tansu Kafka broker: built or unpacked once, outside the clone.
deploy/tools.sh
# The live page's test drives a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null && [ -z "${TALLY_CHROMIUM:-}" ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq chromium >/dev/null; }
fi
# shellcheck disable=SC1091
. "$STATE_DIR/env"
log=$(mktemp)
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo's own last line is the doc-tests').
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}' "$log"
rm -f "$log"
exit "$status"
