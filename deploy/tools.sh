#!/usr/bin/env bash
# Installs the tools the operations tests use, idempotently, outside the clone, and writes
# their paths to $TALLY_STATE_DIR/tools.env:
#
#   promtool        (Debian's prometheus package, unpacked only: no Prometheus server starts)
#   docker-compose  (Debian's package: `docker-compose config` checks a file without an engine)
#   tansu           (a Kafka-compatible broker from crates.io, built once with --features
#                    dynostore into $TALLY_TOOLS_DIR: ~20 minutes on 2 cores the first time)
#   nats-server     (the version deploy/stack.sh runs, for the three-node cluster test)
#   schemathesis    (PyPI, pinned, in a venv under $TALLY_TOOLS_DIR: the API conformance test)
#   PyJWT           (PyPI, pinned, same venv: the token-minting example in docs/architecture.md, run by a test)
#   aiosmtpd        (PyPI, pinned, same venv: the SMTP server the winners' email test sends to)
#   cargo-deny      (crates.io, pinned, into $TALLY_TOOLS_DIR: licences, bans and sources in CI)
#   cmake, libcurl  (rdkafka's cmake-build of librdkafka)
#   pgbackrest      (Debian's package: Postgres backups and restores, deploy/backup.sh, and
#                    the restore drill in the test suite)
#
#   deploy/tools.sh               everything above
#   deploy/tools.sh build-deps    only what compiling Tally needs (cmake, libcurl headers)
#   deploy/tools.sh schemathesis  only schemathesis (updates its line in tools.env)
#   deploy/tools.sh cargo-deny    only cargo-deny; prints its path
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
TOOLS_DIR="${TALLY_TOOLS_DIR:-$HOME/.cache/tally-tools}"
TANSU_VERSION=0.6.0
SCHEMATHESIS_VERSION=4.32.5
PYJWT_VERSION=2.15.1
AIOSMTPD_VERSION=1.4.6
CARGO_DENY_VERSION=0.20.2
mkdir -p "$STATE_DIR" "$TOOLS_DIR/bin"
log() { printf '[tools] %s\n' "$*" >&2; }
sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then $sudo_ apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

promtool_bin() {
  local bin="$TOOLS_DIR/bin/promtool"
  if [ ! -x "$bin" ]; then
    local tmp; tmp=$(mktemp -d)
    log "unpacking promtool from Debian's prometheus package"
    (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
      || { $sudo_ apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; } \
      && dpkg -x prometheus_*.deb x)
    cp "$tmp/x/usr/bin/promtool" "$bin"; rm -rf "$tmp"
  fi
  echo "$bin"
}

tansu_bin() {
  local bin="$TOOLS_DIR/bin/tansu"
  if [ ! -x "$bin" ] || ! grep -q "^\"tansu $TANSU_VERSION " "$TOOLS_DIR/.crates.toml" 2>/dev/null; then
    log "building tansu $TANSU_VERSION (dynostore) once into $TOOLS_DIR; this takes ~20 minutes"
    CARGO_TARGET_DIR="$TOOLS_DIR/target" cargo install --quiet tansu --version "$TANSU_VERSION" \
      --features dynostore --root "$TOOLS_DIR" >&2
  fi
  echo "$bin"
}

schemathesis_bin() {
  local venv="$TOOLS_DIR/venv"
  local bin="$venv/bin/st" have
  have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
  if [ ! -x "$bin" ] || [ "$have" != "$SCHEMATHESIS_VERSION" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "schemathesis==$SCHEMATHESIS_VERSION" >&2
  fi
  have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pyjwt"))' 2>/dev/null || true)
  if [ "$have" != "$PYJWT_VERSION" ]; then
    log "installing PyJWT $PYJWT_VERSION from PyPI into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "pyjwt[crypto]==$PYJWT_VERSION" >&2
  fi
  have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))' 2>/dev/null || true)
  if [ "$have" != "$AIOSMTPD_VERSION" ]; then
    log "installing aiosmtpd $AIOSMTPD_VERSION from PyPI into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "aiosmtpd==$AIOSMTPD_VERSION" >&2
  fi
  echo "$bin"
}

cargo_deny_bin() {
  local bin="$TOOLS_DIR/bin/cargo-deny"
  if [ ! -x "$bin" ] || ! grep -q "^\"cargo-deny $CARGO_DENY_VERSION " "$TOOLS_DIR/.crates.toml" 2>/dev/null; then
    log "building cargo-deny $CARGO_DENY_VERSION once into $TOOLS_DIR (a few minutes)"
    CARGO_TARGET_DIR="$TOOLS_DIR/target" cargo install --quiet --locked cargo-deny \
      --version "$CARGO_DENY_VERSION" --root "$TOOLS_DIR" >&2
  fi
  echo "$bin"
}

# Replaces (or adds) one `export NAME=VALUE` line of tools.env, keeping the others.
set_tools_env() {
  local file="$STATE_DIR/tools.env"
  { grep -v "^export $1=" "$file" 2>/dev/null || true; echo "export $1=$2"; } >"$file.tmp"
  mv "$file.tmp" "$file"
}

if [ "${1:-}" = schemathesis ]; then
  st=$(schemathesis_bin)
  set_tools_env TALLY_SCHEMATHESIS "$st"
  set_tools_env TALLY_PYTHON "$(dirname "$st")/python"
  log "schemathesis path written to $STATE_DIR/tools.env"
  exit 0
fi

if [ "${1:-}" = cargo-deny ]; then
  cargo_deny_bin
  exit 0
fi

apt_install cmake libcurl4-openssl-dev
[ "${1:-}" = build-deps ] && exit 0
apt_install docker-compose pgbackrest
promtool=$(promtool_bin)
tansu=$(tansu_bin)
nats=$(deploy/stack.sh nats-binary)
schemathesis=$(schemathesis_bin)
cat >"$STATE_DIR/tools.env" <<ENV
export TALLY_PROMTOOL=$promtool
export TALLY_DOCKER_COMPOSE=$(command -v docker-compose)
export TALLY_TANSU=$tansu
export TALLY_NATS_SERVER=$nats
export TALLY_SCHEMATHESIS=$schemathesis
export TALLY_PYTHON=$(dirname "$schemathesis")/python
ENV
log "tool paths written to $STATE_DIR/tools.env"
