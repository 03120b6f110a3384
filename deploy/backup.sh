#!/usr/bin/env bash
# Postgres backups and restores with pgBackRest (Debian's package; deploy/tools.sh installs
# it): physical backups of the whole cluster, taken online, plus its WAL archived as Postgres
# writes it, so a restore reaches the last archived segment (archive_timeout bounds its age).
# Postgres is the system of record, but every event is also on the JetStream stream (7 days):
# after a restore the Postgres writer inserts again what the stream holds and Postgres lacks.
#
#   deploy/backup.sh archive-command   prints the archive_command Postgres must use
#   deploy/backup.sh setup             writes the pgBackRest config, creates the repository
#                                      (the stanza) and checks that Postgres archives into it
#   deploy/backup.sh full | incr       takes a full or an incremental backup, online
#   deploy/backup.sh info              lists the backups and the archived WAL
#   deploy/backup.sh restore [--to-backup]
#       with Postgres stopped: replaces its data directory with the latest backup and replays
#       the archived WAL to its end (--to-backup: only to where the backup became consistent).
#       Then start Postgres, run `tally-workers replay` with the workers stopped, start them.
#
# Postgres needs, in postgresql.conf (archive_mode takes a restart, which this script never
# does): wal_level = replica, archive_mode = on, archive_timeout = 60,
# archive_command = '<what `deploy/backup.sh archive-command` prints>'.
#
# Settings (environment):
#   TALLY_PG_DATA           the cluster's data directory (setup asks Postgres; restore reads
#                           it from the configuration setup wrote)
#   TALLY_PG_PORT           5432
#   TALLY_PG_SOCKET         /var/run/postgresql (the directory of its Unix socket)
#   TALLY_BACKUP_REPO       where backups and archived WAL go ($TALLY_STATE_DIR/backup;
#                           /var/lib/tally/backup as root)
#   TALLY_BACKUP_STANZA     tally
#   TALLY_BACKUP_RETENTION  full backups kept (2; older ones and their WAL are expired)
# Run as the owner of the data directory, or as root (pgBackRest then runs as that owner).
set -euo pipefail
STATE_DIR="${TALLY_STATE_DIR:-$HOME/.local/state/tally}"
# Root's home is closed to the postgres user, who writes the archive: a system path then.
default_repo="$STATE_DIR/backup"; [ "$(id -u)" = 0 ] && default_repo=/var/lib/tally/backup
REPO="${TALLY_BACKUP_REPO:-$default_repo}"
STANZA="${TALLY_BACKUP_STANZA:-tally}"
CONF="$REPO/pgbackrest.conf"
log() { printf '[backup] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# pgBackRest as the data directory's owner.
pgbr() {
  local owner
  owner=$(stat -c %U "$REPO")
  if [ "$(id -un)" = "$owner" ]; then
    pgbackrest --config="$CONF" --stanza="$STANZA" "$@"
  else
    setpriv --reuid="$owner" --regid="$owner" --init-groups -- \
      pgbackrest --config="$CONF" --stanza="$STANZA" "$@"
  fi
}

SOCKET="${TALLY_PG_SOCKET:-/var/run/postgresql}"
PORT="${TALLY_PG_PORT:-5432}"

# A query to the running Postgres, as its `postgres` superuser (through the Unix socket).
pg_query() {
  local as=()
  [ "$(id -u)" = 0 ] && as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  "${as[@]}" psql -h "$SOCKET" -p "$PORT" -U postgres -d postgres -tAc "$1"
}

# TALLY_PG_DATA, else what the running Postgres says, else what setup wrote.
need_data() {
  if [ -z "${TALLY_PG_DATA:-}" ] && [ "${1:-}" = running ]; then
    TALLY_PG_DATA=$(pg_query 'SHOW data_directory' 2>/dev/null) || true
  fi
  if [ -z "${TALLY_PG_DATA:-}" ] && [ -f "$CONF" ]; then
    TALLY_PG_DATA=$(sed -n 's/^pg1-path=//p' "$CONF")
  fi
  [ -n "${TALLY_PG_DATA:-}" ] || die "set TALLY_PG_DATA to the cluster's data directory"
}

# Postgres must archive through this repository; if not, say how (a restart is the operator's).
check_archiving() {
  local mode command want
  want=$("$0" archive-command)
  mode=$(pg_query 'SHOW archive_mode') || die "cannot ask Postgres on $SOCKET:$PORT"
  command=$(pg_query 'SHOW archive_command')
  if [ "$mode" != on ] || [ "$command" != "$want" ]; then
    log "Postgres does not archive its WAL here yet (archive_mode=$mode). As its superuser:"
    printf "  ALTER SYSTEM SET wal_level = 'replica';\n  ALTER SYSTEM SET archive_mode = 'on';\n" >&2
    printf "  ALTER SYSTEM SET archive_timeout = '60';\n  ALTER SYSTEM SET archive_command = '%s';\n" "$want" >&2
    log "then restart Postgres (archive_mode takes a restart) and run setup again"
    exit 1
  fi
}

case "${1:-}" in
  archive-command)
    echo "pgbackrest --config=$CONF --stanza=$STANZA archive-push %p"
    ;;
  setup)
    command -v pgbackrest >/dev/null || die "pgbackrest is missing: deploy/tools.sh installs it"
    need_data running
    owner=$(stat -c %U "$TALLY_PG_DATA")
    mkdir -p "$REPO/repo" "$REPO/log" "$REPO/spool"
    cat >"$CONF" <<CONF
[global]
repo1-path=$REPO/repo
repo1-retention-full=${TALLY_BACKUP_RETENTION:-2}
log-path=$REPO/log
spool-path=$REPO/spool
lock-path=$REPO/spool
log-level-console=warn
start-fast=y
compress-type=lz4

[$STANZA]
pg1-path=$TALLY_PG_DATA
pg1-port=$PORT
pg1-socket-path=$SOCKET
CONF
    chown -R "$owner:$owner" "$REPO"
    pgbr stanza-create
    # The repository first, so that once archive_command is set, every segment has a home.
    check_archiving
    # Forces a WAL switch and waits for it to be archived: archive_command works.
    pgbr check
    log "stanza $STANZA ready in $REPO; Postgres archives into it"
    ;;
  full | incr)
    started=$(date +%s%N)
    pgbr backup --type="$1"
    log "$1 backup done in $(( ($(date +%s%N) - started) / 1000000 )) ms"
    ;;
  info)
    pgbr info
    ;;
  restore)
    need_data
    target=()
    [ "${2:-}" = --to-backup ] && target=(--type=immediate --target-action=promote)
    if pg_isready -q -h "$SOCKET" -p "$PORT"; then
      die "Postgres answers on port $PORT: stop it before restoring"
    fi
    # Starting up or shutting down, it does not answer yet: its pid file says it runs.
    pid=$(head -1 "$TALLY_PG_DATA/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      die "Postgres ($pid) still runs on $TALLY_PG_DATA: stop it before restoring"
    fi
    delta=()
    # Into what is left of the directory (only changed files are rewritten), or a new one.
    [ -f "$TALLY_PG_DATA/PG_VERSION" ] && delta=(--delta)
    started=$(date +%s%N)
    pgbr restore "${delta[@]}" "${target[@]}"
    log "restored in $(( ($(date +%s%N) - started) / 1000000 )) ms; start Postgres, then run" \
      "\`tally-workers replay\` with the workers stopped, then start them"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
