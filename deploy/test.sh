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
cargo test --workspace "$@"
