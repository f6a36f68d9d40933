#!/usr/bin/env bash
# redisserver.sh: a throwaway Redis server for the tests (Debian's redis-server package).
#
#   tests/redis/redisserver.sh start <dir>         start (or reuse the one running in <dir>)
#   tests/redis/redisserver.sh stop <dir>          SHUTDOWN NOSAVE, then remove <dir>
#   tests/redis/redisserver.sh stop-server <dir> [shutdown|nosave|kill]
#                                                  stop the server process, keep the data
#                                                  (outage tests); default: SHUTDOWN
#   tests/redis/redisserver.sh start-server <dir>  start it again on the same port, wait for PONG
#   tests/redis/redisserver.sh restart <dir>       stop-server + start-server
#   tests/redis/redisserver.sh status <dir>        exit 0 when it answers PING
#
# The server: redis-server listening on 127.0.0.1 only, on a free port (picked by binding port
# 0; retried with another one when it turns out to be taken), --protected-mode yes and no
# password (loopback clients only), --maxmemory-policy noeviction (BullMQ requires it: an
# evicted lock or job hash corrupts the queue), no RDB snapshots (--save ''), and the append
# only file on (--appendonly yes --appendfsync everysec): every write reaches the kernel before
# its reply is sent, so the data survives `stop-server` in any mode, `kill` included (only an OS
# crash could lose the last second, which no test simulates). Daemonized, with its pidfile,
# logfile, configuration and data (appendonlydir/) in <dir>. Runs as the calling user (root
# included: redis-server needs no user switching).
#
# Files written in <dir>: url (redis://127.0.0.1:<port>), port, redis.conf, redis.pid,
# redis.log. SP_REDIS_PORT=<n> tries that port first; SP_REDIS_SERVER and SP_REDIS_CLI name the
# programs (default: redis-server and redis-cli from PATH). One command at a time per <dir>
# (flock); a second `start` while one runs reuses its server. Every failure prints what failed
# and the tail of the server log, and exits non-zero.
set -euo pipefail

# shellcheck disable=SC2034 # read by tests/lib/fixture.sh
FIXTURE=redisserver.sh
# shellcheck source=../lib/fixture.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/fixture.sh"

usage() {
  echo "usage: $0 start|stop|start-server|restart|status <dir>" >&2
  echo "       $0 stop-server <dir> [shutdown|nosave|kill]" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
stop_mode=${3:-shutdown}
case "$stop_mode" in shutdown | nosave | kill) ;; *) usage ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
exec 9>"$dir/.lock"
flock 9

# redis-cli must not pick up a developer's credentials.
unset REDISCLI_AUTH REDISCLI_CLUSTER_YES 2>/dev/null || true

READY_TIMEOUT_S=${SP_REDIS_READY_TIMEOUT_S:-30}
STOP_TIMEOUT_S=${SP_REDIS_STOP_TIMEOUT_S:-30}
server_bin=${SP_REDIS_SERVER:-redis-server}
cli_bin=${SP_REDIS_CLI:-redis-cli}

command -v "$server_bin" >/dev/null 2>&1 ||
  die "$server_bin not found: install the Debian package redis-server (scripts/deps.sh test)"
command -v "$cli_bin" >/dev/null 2>&1 ||
  die "$cli_bin not found: install the Debian package redis-tools (scripts/deps.sh test)"

conf=$dir/redis.conf
pidfile=$dir/redis.pid
log=$dir/redis.log


cli() {
  # -t: never hang on a server that accepts but does not answer.
  timeout 5 "$cli_bin" -h 127.0.0.1 -p "$port" "$@" 2>/dev/null </dev/null
}

# Whether process $1 exists and is not a zombie (a killed daemon is reparented to PID 1, which
# may reap it late).
alive() {
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# The pid in the pidfile when that process is a live redis-server, else nothing.
server_pid() {
  local pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -q redis; then
    echo "$pid"
  fi
}

running() { [ -n "$(server_pid)" ]; }

# PONG from *our* server: a server on that port that is not ours (another run's, after a port
# collision) must not count, so its process_id has to match our pidfile.
ready() {
  local pid answer
  pid=$(server_pid)
  [ -n "$pid" ] || return 1
  answer=$(cli ping) || return 1
  [ "$answer" = "PONG" ] || return 1
  cli info server | tr -d '\r' | grep -qx "process_id:$pid"
}

write_conf() {
  cat >"$conf" <<EOF
# redisserver.sh: throwaway test server; the port is given on the command line.
bind 127.0.0.1
protected-mode yes
daemonize yes
supervised no
pidfile $pidfile
logfile $log
loglevel notice
dir $dir
save ""
appendonly yes
appendfsync everysec
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
maxmemory-policy noeviction
databases 16
tcp-backlog 511
timeout 0
EOF
}

# Starts the daemon on $port. Returns 0 once it answers PING, 3 when the port was taken (the
# caller retries with another port); dies on any other failure.
start_process() {
  local before deadline pid=""
  : >>"$log"
  before=$(wc -l <"$log")
  if [ -f "$pidfile" ] && ! running; then
    rm -f "$pidfile" # left behind by a killed server
  fi
  if ! "$server_bin" "$conf" --port "$port" >/dev/null 2>>"$log" 9>&-; then
    die "redis-server failed to start (port $port, dir $dir)"
  fi
  # The daemon writes its pidfile once it listens; a failed bind makes it exit without one.
  deadline=$((SECONDS + READY_TIMEOUT_S))
  while :; do
    if ready; then
      return 0
    fi
    if tail -n +"$((before + 1))" "$log" |
      grep -qiE 'address already in use|could not create server tcp listening socket'; then
      # The daemon exits right after logging this, before it writes its pidfile.
      pid=$(server_pid)
      [ -z "$pid" ] || die "redis-server logged a bind failure on port $port but runs (pid $pid)"
      return 3
    fi
    if tail -n +"$((before + 1))" "$log" |
      grep -qE '# (Fatal|FATAL)|Bad directive|FATAL CONFIG'; then
      die "redis-server failed on port $port"
    fi
    [ $SECONDS -lt $deadline ] ||
      die "redis-server on port $port did not answer PING within ${READY_TIMEOUT_S}s"
    sleep 0.05
  done
}


write_files() {
  echo "$port" >"$dir/port"
  echo "redis://127.0.0.1:$port" >"$dir/url"
}

# Stops the process (mode: shutdown, nosave or kill) and waits until it is gone.
stop_process() {
  local mode=$1 pid deadline
  pid=$(server_pid)
  [ -n "$pid" ] || return 0
  case "$mode" in
    shutdown) cli shutdown >/dev/null || true ;;
    nosave) cli shutdown nosave >/dev/null || true ;;
    kill) kill -KILL "$pid" 2>/dev/null || true ;;
  esac
  deadline=$((SECONDS + STOP_TIMEOUT_S))
  while alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      [ "$mode" = kill ] && die "redis-server (pid $pid) survived SIGKILL for ${STOP_TIMEOUT_S}s"
      say "redis-server (pid $pid) did not stop within ${STOP_TIMEOUT_S}s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + STOP_TIMEOUT_S))
      mode="kill"
    fi
    sleep 0.05
  done
  [ "$mode" != kill ] || rm -f "$pidfile"
}

server_version() {
  "$server_bin" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'
}

cmd_start() {
  if [ -f "$dir/port" ] && [ -f "$conf" ]; then
    port=$(cat "$dir/port")
    if ready; then
      write_files
      say "already running on port $port ($dir)"
      cat "$dir/url"
      return 0
    fi
    # Started earlier and stopped since: start it again (same data), on another port if its
    # old one was taken meanwhile.
    write_conf
    start_on_free_port "$port"
    write_files
    say "restarted the existing server on port $port ($dir)"
    cat "$dir/url"
    return 0
  fi
  if running; then
    say "a half-started server runs in $dir: stopping it"
    port=$(cat "$dir/port" 2>/dev/null || echo 0)
    stop_process kill
  fi
  write_conf
  start_on_free_port "${SP_REDIS_PORT:-}"
  write_files
  say "Redis $(server_version) ready on 127.0.0.1:$port as $(id -un) (dir $dir)"
  cat "$dir/url"
}

need_server() {
  if [ ! -f "$dir/port" ] || [ ! -f "$conf" ]; then
    die "no server in $dir (run: $0 start $dir)"
  fi
  port=$(cat "$dir/port")
}

cmd_stop_server() {
  need_server
  stop_process "$stop_mode"
  say "stopped the server on port $port ($stop_mode); data kept in $dir"
}

cmd_start_server() {
  need_server
  if ready; then
    return 0
  fi
  local rc=0
  start_process || rc=$?
  [ $rc -eq 0 ] || die "port $port is taken by another process; cannot restart on the same port"
  write_files
  say "started the server on port $port"
}

cmd_stop() {
  if [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
    stop_process nosave
  elif running; then
    port=0
    stop_process kill
  fi
  rm -rf "$dir"
  say "stopped and removed $dir"
}

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
    need_server
    ready
    ;;
  *) usage ;;
esac
