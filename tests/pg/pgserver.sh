#!/usr/bin/env bash
# pgserver.sh: a throwaway PostgreSQL server for the tests (Debian's postgresql packages).
#
#   tests/pg/pgserver.sh start <dir>         initdb + start (or reuse the one running in <dir>)
#   tests/pg/pgserver.sh stop <dir>          pg_ctl stop -m fast, then remove <dir>
#   tests/pg/pgserver.sh stop-server <dir> [fast|immediate]
#                                            stop the server process, keep the data (outage test)
#   tests/pg/pgserver.sh start-server <dir>  start it again on the same port, wait until ready
#   tests/pg/pgserver.sh restart <dir>       stop-server + start-server
#   tests/pg/pgserver.sh status <dir>        exit 0 when it accepts connections
#
# The cluster: initdb as an unprivileged user (the `postgres` system user of the Debian package
# when run as root, else the current user), bootstrap superuser `salespad`, database
# `salespad`, trust authentication for loopback TCP and the socket only, listening on
# 127.0.0.1 on a free port (picked by binding port 0; retried on a collision), its unix socket
# directory inside <dir>, max_connections=200.
#
# Durability settings: fsync=off, full_page_writes=off, synchronous_commit=on. A COMMIT still
# waits until its WAL is written to the kernel, so an acknowledged commit survives any process
# crash (ours or PostgreSQL's own, e.g. `stop-server <dir> immediate`); only an OS or power
# failure could lose it, which no test simulates and the throwaway data would not outlive
# anyway. Skipping the disk flushes keeps the suite fast and quiet on shared CI disks.
#
# Files written in <dir>: url (postgres://salespad@127.0.0.1:<port>/salespad), bindir, port,
# sockdir, base (where data/, sock/ and server.log live: <dir> itself, or a directory under
# /tmp when the server user cannot reach <dir> or its path is too long for a unix socket).
# SP_PG_PORT=<n> tries that port first; SP_PG_BINDIR, SP_PG_USER override the defaults. Every
# failure prints what failed and the tail of the server log, and exits non-zero.
set -euo pipefail

# shellcheck disable=SC2034 # read by tests/lib/fixture.sh
FIXTURE=pgserver.sh
# shellcheck source=../lib/fixture.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/fixture.sh"

usage() {
  echo "usage: $0 start|stop|stop-server|start-server|restart|status <dir>" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
stop_mode=${3:-fast}
case "$stop_mode" in fast | immediate | smart) ;; *) usage ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
# One command at a time per <dir> (two `start`s at once: the second reuses the first's server).
exec 9>"$dir/.lock"
flock 9

# The client and server programs must not pick up a developer's PG* settings.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)

READY_TIMEOUT_S=${SP_PG_READY_TIMEOUT_S:-30}

# ---- the binaries ----------------------------------------------------------------------------
find_bindir() {
  local d
  if [ -n "${SP_PG_BINDIR:-}" ]; then
    [ -x "$SP_PG_BINDIR/initdb" ] || die "SP_PG_BINDIR=$SP_PG_BINDIR has no initdb"
    echo "$SP_PG_BINDIR"
    return
  fi
  # Debian keeps the server programs out of PATH, one dir per major version: take the newest.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ]; then
      echo "$d"
      return
    fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  die "no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin and PATH):" \
    "install the Debian packages postgresql and postgresql-client (scripts/deps.sh test)"
}

# ---- who runs the server ---------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  run_user=${SP_PG_USER:-postgres}
  getent passwd "$run_user" >/dev/null ||
    die "running as root, and the system user '$run_user' (created by Debian's postgresql" \
      "package) does not exist; install postgresql or set SP_PG_USER"
  as_user() { (cd "$base" && runuser -u "$run_user" -- "$@"); }
else
  run_user=$(id -un)
  as_user() { (cd "$base" && "$@"); }
fi

# ---- layout ----------------------------------------------------------------------------------
choose_base() {
  if [ -f "$dir/base" ]; then
    base=$(cat "$dir/base")
    return
  fi
  base=$dir
  local sock_path="$dir/sock/.s.PGSQL.65535"
  local reachable=1
  if [ "$(id -u)" -eq 0 ] && ! runuser -u "$run_user" -- test -x "$dir" 2>/dev/null; then
    reachable=0
  fi
  if [ $reachable -eq 0 ] || [ ${#sock_path} -gt 100 ]; then
    base=$(mktemp -d /tmp/salespad-pg.XXXXXX)
    chmod 755 "$base"
  fi
  echo "$base" >"$dir/base"
}

set_paths() {
  data=$base/data
  sock=$base/sock
  log=$base/server.log
}


running() {
  [ -f "$data/postmaster.pid" ] && as_user "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

ready() {
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U salespad -d postgres -t 2 >/dev/null 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until ready; do
    running || die "the server on port $port exited while starting"
    [ $SECONDS -lt $deadline ] || die "the server on port $port was not ready within ${READY_TIMEOUT_S}s"
    sleep 0.05
  done
}

# pg_ctl start; returns 3 when the port was taken (the caller retries with another one).
start_process() {
  : >>"$log"
  [ "$(id -u)" -eq 0 ] && chown "$run_user" "$log"
  local before
  before=$(wc -l <"$log")
  if as_user "$bindir/pg_ctl" start -w -t "$READY_TIMEOUT_S" -D "$data" -l "$log" \
    -o "-p $port" >/dev/null 2>&1 9>&-; then
    return 0
  fi
  if tail -n +"$((before + 1))" "$log" | grep -qiE 'could not bind|address already in use'; then
    return 3
  fi
  die "pg_ctl start failed (port $port, data $data)"
}


write_files() {
  echo "$port" >"$dir/port"
  echo "$bindir" >"$dir/bindir"
  echo "$sock" >"$dir/sockdir"
  echo "postgres://salespad@127.0.0.1:$port/salespad" >"$dir/url"
}

psql_admin() {
  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U salespad "$@"
}

do_initdb() {
  rm -rf "$data" "$sock"
  mkdir -p "$data" "$sock"
  chmod 700 "$data"
  chmod 755 "$sock"
  : >"$log"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$run_user" "$data" "$sock" "$log"
    # base is only traversed by the server user, never written.
    [ "$base" = "$dir" ] || chown "$run_user" "$base"
  fi
  if ! as_user "$bindir/initdb" -D "$data" -U salespad -A trust -E UTF8 --no-locale \
    --no-sync --no-instructions >>"$log" 2>&1; then
    die "initdb failed"
  fi
  # Trust on the socket and loopback only; nothing else may connect.
  cat >"$data/pg_hba.conf" <<EOF
# pgserver.sh: throwaway test cluster, trust on loopback only
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
  cat >>"$data/postgresql.conf" <<EOF

# ---- pgserver.sh (throwaway test cluster) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
max_connections = 200
fsync = off
full_page_writes = off
synchronous_commit = on
shared_buffers = 64MB
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
include_if_exists = 'port.conf'
EOF
  [ "$(id -u)" -eq 0 ] && chown "$run_user" "$data/pg_hba.conf" "$data/postgresql.conf"
  return 0
}

# Called by start_on_free_port (tests/lib/fixture.sh) before each start on $port.
prepare_port() {
  echo "port = $port" >"$data/port.conf"
  [ "$(id -u)" -eq 0 ] && chown "$run_user" "$data/port.conf"
  return 0
}

cmd_start() {
  choose_base
  set_paths
  if [ -f "$dir/port" ] && [ -f "$data/PG_VERSION" ]; then
    port=$(cat "$dir/port")
    if running && ready; then
      write_files
      say "already running on port $port ($dir)"
      cat "$dir/url"
      return 0
    fi
    if [ -f "$dir/url" ]; then
      # Initialised earlier (the url is written last): start it again, on another port if
      # its old one was taken meanwhile.
      start_on_free_port "$port"
      wait_ready
      write_files
      say "restarted the existing cluster on port $port ($dir)"
      cat "$dir/url"
      return 0
    fi
  fi
  if [ -f "$data/postmaster.pid" ] && running; then
    say "a half-initialised cluster is running in $data: stopping it"
    as_user "$bindir/pg_ctl" stop -w -D "$data" -m immediate >/dev/null 2>&1 || true
  fi
  do_initdb
  start_on_free_port "${SP_PG_PORT:-}"
  wait_ready
  psql_admin -d postgres -c "CREATE DATABASE salespad" >/dev/null ||
    die "CREATE DATABASE salespad failed"
  write_files
  say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') ready on" \
    "127.0.0.1:$port as $run_user (data $data)"
  cat "$dir/url"
}

need_cluster() {
  [ -f "$dir/port" ] && [ -f "$dir/base" ] || die "no cluster in $dir (run: $0 start $dir)"
  base=$(cat "$dir/base")
  set_paths
  port=$(cat "$dir/port")
  [ -f "$data/PG_VERSION" ] || die "no cluster data in $data"
}

cmd_stop_server() {
  need_cluster
  if running; then
    as_user "$bindir/pg_ctl" stop -w -t 60 -D "$data" -m "$stop_mode" >/dev/null 2>&1 ||
      die "pg_ctl stop -m $stop_mode failed"
  fi
  say "stopped the server on port $port ($stop_mode); data kept in $data"
}

cmd_start_server() {
  need_cluster
  if running; then
    wait_ready
    return 0
  fi
  local rc=0
  start_process || rc=$?
  [ $rc -eq 0 ] || die "port $port is taken by another process; cannot restart on the same port"
  wait_ready
  write_files
  say "started the server on port $port"
}

cmd_stop() {
  if [ ! -f "$dir/base" ]; then
    rm -rf "$dir"
    return 0
  fi
  base=$(cat "$dir/base")
  set_paths
  if [ -f "$data/postmaster.pid" ] && running; then
    if ! as_user "$bindir/pg_ctl" stop -w -t 60 -D "$data" -m fast >/dev/null 2>&1; then
      say "pg_ctl stop -m fast failed; trying immediate"
      as_user "$bindir/pg_ctl" stop -w -t 30 -D "$data" -m immediate >/dev/null 2>&1 ||
        die "could not stop the server in $data"
    fi
  fi
  [ "$base" = "$dir" ] || rm -rf "$base"
  rm -rf "$dir"
  say "stopped and removed $dir"
}

bindir=$(find_bindir)
case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-server) cmd_stop_server ;;
  start-server) cmd_start_server ;;
  restart)
    cmd_stop_server
    cmd_start_server
    ;;
  status)
    need_cluster
    ready
    ;;
  *) usage ;;
esac
