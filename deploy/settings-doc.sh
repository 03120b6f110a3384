#!/usr/bin/env bash
# Regenerates the settings reference of docs/configuration.md — the part between
# `<!-- settings:begin -->` and `<!-- settings:end -->` — from the services' own `--help`
# (tally-ingest, tally-workers, tally-aggregator). The generation lives in one place, the test
# tests/tests/docs.rs; this script runs it with TALLY_UPDATE_DOCS=1, which rewrites the
# section. Without the variable (as deploy/test.sh runs it) the test fails when the committed
# section differs from what the binaries print. Needs no servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-target}"
TALLY_UPDATE_DOCS=1 cargo test --quiet -p tally-tests --test docs -- \
  the_settings_reference_is_the_services_help
echo "docs/configuration.md: settings regenerated from --help" >&2
