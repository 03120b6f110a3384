#!/usr/bin/env bash
# Brings the local stack up (idempotent) and runs every test: unit tests and the end-to-end
# tests against the real NATS and Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
deploy/stack.sh up
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
