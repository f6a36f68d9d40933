# shellcheck shell=bash
# fixture.sh: what the throwaway-server scripts (tests/pg/pgserver.sh, tests/redis/redisserver.sh)
# share. Source it after setting FIXTURE (the script's name, for messages); the script defines
# start_process (start on $port; non-zero when the port was taken) and, optionally,
# prepare_port (called with $port set, before each start_process).

# Prints the message and the tail of $log (when set and present), exits 1.
die() {
  echo "$FIXTURE: $*" >&2
  if [ -n "${log:-}" ] && [ -f "$log" ]; then
    echo "$FIXTURE: ---- tail of $log ----" >&2
    tail -n 40 "$log" >&2 || true
  fi
  exit 1
}
say() { echo "$FIXTURE: $*" >&2; }

# A free loopback port (bound then released: start_on_free_port retries a collision).
pick_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Starts the server on port $1 (when given) or a free one, retrying with a new free port when
# the chosen one turns out to be taken. Sets $port.
start_on_free_port() {
  local first=${1:-} try rc
  for try in 1 2 3 4 5 6 7 8; do
    if [ $try -eq 1 ] && [ -n "$first" ]; then
      port=$first
    else
      port=$(pick_port)
    fi
    if declare -F prepare_port >/dev/null; then prepare_port; fi
    rc=0
    start_process || rc=$?
    [ $rc -eq 0 ] && return 0
    say "port $port was taken, retrying ($try)"
  done
  die "could not find a free port after 8 tries"
}
