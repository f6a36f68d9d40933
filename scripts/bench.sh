#!/usr/bin/env bash
# bench.sh: measures SalesPad against the performance targets of docs/performance.md and prints a
# markdown table. `make bench` builds first and runs this; by hand:
#   scripts/bench.sh                               # build/salespad, 10 s wrk runs
#   SALESPAD_BIN=build-x/salespad BENCH_DURATION=5 scripts/bench.sh
#
# Everything runs on 127.0.0.1, in a fresh temp dir (removed on exit unless BENCH_KEEP=1), on
# free ports, against fresh databases. Per deployment (BENCH_DATABASES, default "sqlite postgres
# postgres+redis"; postgres+redis = PostgreSQL for data and the BullMQ-layout Redis queue, a
# queue name of its own per database):
#   1. `salespad serve` (in-process workers): spawn -> first 200 on GET /ready, in ms;
#   2. lead -> sent at rest: BENCH_LATENCY_N sequential captures (name + email), each polled
#      until its email message is "sent"; latency = message sentAt - lead createdAt (ms stamps);
#   3. wrk POST /leads (BENCH_CONNECTIONS, BENCH_THREADS, BENCH_DURATION), a unique lead per
#      request (name, email, phone: 1 lead, 2 messages, 2 jobs); anything but 201 is an error;
#   4. waits for the queued messages to drain, seeds BENCH_SEED_N leads, then wrk GET
#      /leads/:id round-robin over their ids; anything but 200 is an error;
#   5. peak RSS (VmHWM) of that server, then SIGTERM: it must exit 0;
#   6. worker throughput: `serve --no-worker` on another fresh database takes BENCH_WORKER_LEADS
#      leads (wrk), is stopped, then `salespad worker` is timed from spawn until the mock sink
#      holds every message (rate = messages / (last sink "at" - spawn)); SIGTERM, exit 0;
#   7. the lead list at BENCH_LIST_LEADS leads and the 409 of a known person (the "#11" section
#      below, its own table).
# HTTP_THREADS, WORKER_CONCURRENCY etc. are inherited from the environment (defaults otherwise).
#
# Exit status: 0 when every measurement ran (targets missed are shown as NO in the table),
# 1 when the harness or the service failed (no /ready, lost messages, unclean shutdown...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/scripts/bench"
HELPER=(python3 "$BENCH_DIR/helper.py")

BIN=${SALESPAD_BIN:-build/salespad}
if [[ "$BIN" != /* && ! -x "$BIN" && -x "$ROOT/$BIN" ]]; then BIN="$ROOT/$BIN"; fi
[[ -x "$BIN" ]] || { echo "bench.sh: no executable salespad at '$BIN' (set SALESPAD_BIN)" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_DURATION=${BENCH_DURATION%s}
[[ "$BENCH_DURATION" =~ ^[0-9]+$ && "$BENCH_DURATION" -ge 1 && "$BENCH_DURATION" -le 600 ]] ||
  { echo "bench.sh: BENCH_DURATION must be 1..600 seconds" >&2; exit 2; }
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_LATENCY_N=${BENCH_LATENCY_N:-200}
BENCH_SEED_N=${BENCH_SEED_N:-1000}
BENCH_WORKER_LEADS=${BENCH_WORKER_LEADS:-10000}
BENCH_DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-180}
BENCH_DATABASES=${BENCH_DATABASES:-sqlite postgres postgres+redis}
BENCH_KEEP=${BENCH_KEEP:-0}
MSGS_PER_LEAD=2 # the wrk and seed leads have an email and a phone

for tool in wrk python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found (scripts/deps.sh bench)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/salespad-bench.XXXXXX")
PIDS=()     # every process we started, for the trap
FAILED=0    # a harness/service failure (not a missed target)
NOTES=()

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -d "$TMP/redis" ]]; then
    "$REDISSERVER" stop "$TMP/redis" >/dev/null 2>&1 || true
  fi
  if [[ -d "$TMP/pg" ]]; then
    "$PGSERVER" stop "$TMP/pg" >/dev/null 2>&1 || true
  fi
  if [[ "$BENCH_KEEP" == 1 ]]; then
    echo "bench.sh: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() { log "FAIL: $*"; FAILED=1; NOTES+=("FAIL: $*"); }
die() { log "FATAL: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
calc() { awk "BEGIN { printf \"%s\", $1 }"; }
# met VALUE OP LIMIT -> "yes" or "NO" (OP is <, <=, >=, >)
met() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
  ok = (op == "<" ? v < l : op == "<=" ? v <= l : op == ">=" ? v >= l : v > l)
  print (v == "" || v == "n/a") ? "n/a" : (ok ? "yes" : "NO") }'; }
# kv "k1=v1 k2=v2" KEY -> value
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }
forget_pid() { local p keep=(); for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
status_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null || true; }

PGSERVER="$(dirname "$0")/../tests/pg/pgserver.sh"
REDISSERVER="$(dirname "$0")/../tests/redis/redisserver.sh"
SVC_ENV=() # extra settings of the deployment being measured (REDIS_URL)

# A throwaway Redis for the postgres+redis kind, started once (append-only file, fsync every
# second, noeviction: as docker-compose.yml runs it).
redis_ensure() {
  [[ -f "$TMP/redis/url" ]] && return 0
  "$REDISSERVER" start "$TMP/redis" >&2 || die "could not start Redis (tests/redis/redisserver.sh)"
}

# A throwaway PostgreSQL for the postgres kind, started once. The test harness runs it with
# fsync off; the bench turns fsync and full-page writes back on, so commits are durable and the
# numbers compare with a production server (synchronous_commit is on).
pg_ensure() {
  [[ -f "$TMP/pg/url" ]] && return 0
  "$PGSERVER" start "$TMP/pg" >&2 || die "could not start PostgreSQL (tests/pg/pgserver.sh)"
  pg_psql "$(cat "$TMP/pg/url")" -c "ALTER SYSTEM SET fsync = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null \
    || die "could not configure PostgreSQL"
}
pg_psql() { "$(cat "$TMP/pg/bindir")/psql" -X -q -v ON_ERROR_STOP=1 -d "$@"; }

# The database URL for a fresh database of KIND named NAME. Add a kind here to bench it; the
# rest of the script is the same.
db_url() {
  local kind=$1 name=$2 base
  case "$kind" in
    sqlite) echo "sqlite:$TMP/$name.db" ;;
    postgres | postgres+redis)
      pg_ensure
      base=$(cat "$TMP/pg/url")
      name="bench_${kind//[^a-z]/_}_$name"
      pg_psql "$base" -c "CREATE DATABASE $name" >/dev/null || die "CREATE DATABASE failed"
      echo "${base%/*}/$name"
      ;;
    *) die "db_url: unknown database kind '$kind' (known: sqlite, postgres, postgres+redis)" ;;
  esac
}

# start_service NAME DATABASE_URL SINK CMD... : spawns salespad with CMD, waits for /ready when
# CMD is serve. Sets SVC_PID, SVC_PORT, SVC_READY_MS.
start_service() {
  local name=$1 url=$2 sink=$3; shift 3
  local port marker ready_file poller t0 t_ready i
  SVC_PORT=$("${HELPER[@]}" freeport)
  SVC_READY_MS=
  marker="$TMP/$name.poller-up" ready_file="$TMP/$name.ready"
  if [[ "$1" == serve ]]; then
    # The poller starts first (python takes tens of ms to start) and polls every ~0.5 ms.
    "${HELPER[@]}" wait-ready "$SVC_PORT" "$marker" 10 >"$ready_file" &
    poller=$!
    PIDS+=("$poller")
    for ((i = 0; i < 200; i++)); do [[ -e "$marker" ]] && break; sleep 0.02; done
    [[ -e "$marker" ]] || die "$name: /ready poller did not start"
  fi
  t0=$(now_us)
  # With Redis, each database gets a queue of its own (serve and worker of one phase share it).
  env ${SVC_ENV[@]+"${SVC_ENV[@]}"} ${SVC_ENV[@]+QUEUE_NAME="q_$(basename "$url")"} \
    HOST=127.0.0.1 PORT="$SVC_PORT" DATABASE_URL="$url" MOCK_SINK="$sink" LOG_LEVEL=warn \
    "$BIN" "$@" >"$TMP/$name.log" 2>&1 &
  SVC_PID=$!
  PIDS+=("$SVC_PID")
  if [[ "$1" == serve ]]; then
    if ! wait "$poller"; then
      forget_pid "$poller"
      tail -n 20 "$TMP/$name.log" >&2 || true
      die "$name: never ready on 127.0.0.1:$SVC_PORT"
    fi
    forget_pid "$poller"
    t_ready=$(tr -d . <"$ready_file")
    SVC_READY_MS=$(calc "($t_ready - $t0) / 1000")
    log "$name: pid $SVC_PID on 127.0.0.1:$SVC_PORT, ready in $(printf %.1f "$SVC_READY_MS") ms"
  else
    log "$name: pid $SVC_PID ($*)"
  fi
}

# stop_service NAME PID: SIGTERM, wait (bounded), record whether it exited 0.
stop_service() {
  local name=$1 pid=$2 i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$name: still running 30 s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  forget_pid "$pid"
  if [[ $rc -ne 0 ]]; then
    fail "$name: exit status $rc after SIGTERM (want 0); log: $(tail -n 3 "$TMP/$name.log" | tr '\n' ' ')"
  else
    log "$name: SIGTERM -> exit 0"
  fi
  return 0
}

# run_wrk TAG LUA PORT DURATION [VAR=VALUE...]: sets WRK (the BENCH line) and WRK_CPU (server
# CPU % of one core over the run, for the pid in WRK_SERVER_PID).
run_wrk() {
  local tag=$1 lua=$2 port=$3 dur=$4; shift 4
  local out="$TMP/wrk-$tag.txt" c0 c1 t0 t1 hz
  hz=$(getconf CLK_TCK)
  c0=$(cpu_ticks "$WRK_SERVER_PID") t0=$(now_us)
  env "$@" BENCH_RUN="$tag-$$" timeout $((dur + 30)) \
    wrk -c "$BENCH_CONNECTIONS" -t "$BENCH_THREADS" -d "${dur}s" --latency \
    -s "$BENCH_DIR/$lua" "http://127.0.0.1:$port" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk $tag failed"; }
  c1=$(cpu_ticks "$WRK_SERVER_PID") t1=$(now_us)
  WRK=$(sed -n 's/^BENCH //p' "$out" | tail -n1)
  [[ -n "$WRK" ]] || { cat "$out" >&2; die "wrk $tag printed no BENCH line"; }
  WRK_CPU=$(calc "($c1 - $c0) / $hz / (($t1 - $t0) / 1e6) * 100")
  log "wrk $tag: $WRK server_cpu=$(printf %.0f "$WRK_CPU")%"
}

# wait_sink SINK EXPECTED TIMEOUT_S QUIET_S -> "LINES EPOCH": waits for EXPECTED lines, then for
# QUIET_S s without a new one (requests in flight when wrk stopped are not in its counts).
wait_sink() {
  "${HELPER[@]}" wait-lines "$1" "$2" "$3" "$4"
}

ROWS=""
row() { ROWS+="| $1 | $2 | $3 | $4 |"$'\n'; }

run_suite() {
  local kind=$1 url sink p post_ok lat expected t_drain0 t_drain1 hwm rss
  local wurl wsink pushed wexp t0 stats last_ms first_ms wrate n s i w
  url=$(db_url "$kind" main) sink="$TMP/$kind-main.sink"
  log "== $kind: $url"

  start_service "$kind-serve" "$url" "$sink" serve
  local pid=$SVC_PID port=$SVC_PORT ready_ms=$SVC_READY_MS
  WRK_SERVER_PID=$pid

  log "lead -> sent at rest: $BENCH_LATENCY_N sequential captures"
  lat=$("${HELPER[@]}" latency "$port" "$BENCH_LATENCY_N") || die "latency run failed"
  log "latency: $lat"
  [[ $(kv "$lat" failures) == 0 ]] || fail "$(kv "$lat" failures) captures not sent within 2 s"

  log "wrk POST /leads for ${BENCH_DURATION}s"
  run_wrk "$kind-post" post_lead.lua "$port" "$BENCH_DURATION"
  p=$WRK
  local post_cpu=$WRK_CPU
  post_ok=$(kv "$p" ok)
  kill -0 "$pid" 2>/dev/null || die "$kind-serve died during the POST load (log: $TMP/$kind-serve.log)"

  # Let the backlog drain before the GET run, so the GET numbers are not shared with workers.
  expected=$((BENCH_LATENCY_N + post_ok * MSGS_PER_LEAD))
  t_drain0=$(now_us)
  if t_drain1=$(wait_sink "$sink" "$expected" "$BENCH_DRAIN_TIMEOUT" 0.3); then
    local drain_s
    drain_s=$(calc "(${t_drain1#* } * 1e6 - $t_drain0) / 1e6")
    expected=${t_drain1%% *}
    NOTES+=("$kind: after the POST run the in-process workers needed $(printf %.1f "$drain_s") s more to send the backlog ($expected messages sent in all)")
  else
    fail "$kind: the in-process workers did not send all $expected messages within ${BENCH_DRAIN_TIMEOUT}s"
  fi

  log "seeding $BENCH_SEED_N leads for the GET run"
  n=$("${HELPER[@]}" seed "$port" "$BENCH_SEED_N" "$TMP/ids.txt") || die "seeding failed"
  expected=$((expected + n * MSGS_PER_LEAD))
  wait_sink "$sink" "$expected" 60 0.2 >/dev/null || fail "$kind: seeded leads' messages not all sent"

  log "wrk GET /leads/:id for ${BENCH_DURATION}s over $n ids"
  run_wrk "$kind-get" get_lead.lua "$port" "$BENCH_DURATION" BENCH_IDS_FILE="$TMP/ids.txt"
  local g=$WRK get_cpu=$WRK_CPU
  kill -0 "$pid" 2>/dev/null || die "$kind-serve died during the GET load (log: $TMP/$kind-serve.log)"

  hwm=$(status_kb "$pid" VmHWM) rss=$(status_kb "$pid" VmRSS)
  log "$kind-serve: VmHWM ${hwm} kB, VmRSS ${rss} kB"
  stop_service "$kind-serve" "$pid"
  s=$(grep -c -E ' (warn|error) ' "$TMP/$kind-serve.log" || true)
  [[ "$s" == 0 ]] || NOTES+=("$kind-serve logged $s warn/error lines, e.g.: $(grep -m3 -E ' (warn|error) ' "$TMP/$kind-serve.log" | cut -c1-200 | tr '\n' ' ')")
  stats=$("${HELPER[@]}" sink-stats "$sink")
  [[ $(kv "$stats" duplicates) == 0 ]] || fail "$kind: duplicate deliveries in the sink: $stats"

  # Worker throughput: a backlog enqueued with no workers, then `salespad worker` alone.
  wurl=$(db_url "$kind" worker) wsink="$TMP/$kind-worker.sink"
  start_service "$kind-enqueue" "$wurl" "$TMP/$kind-enqueue.sink" serve --no-worker
  WRK_SERVER_PID=$SVC_PID
  log "enqueueing >= $BENCH_WORKER_LEADS leads with no workers (wrk in 2 s runs)"
  pushed=0 api_rps_sum=0 api_runs=0
  for ((i = 0; i < 100 && pushed < BENCH_WORKER_LEADS; i++)); do
    run_wrk "$kind-enqueue$i" post_lead.lua "$SVC_PORT" 2
    pushed=$((pushed + $(kv "$WRK" ok)))
    api_rps_sum=$(calc "$api_rps_sum + $(kv "$WRK" ok_rps)") api_runs=$((api_runs + 1))
  done
  api_rps=$(calc "$api_rps_sum / ($api_runs > 0 ? $api_runs : 1)")
  stop_service "$kind-enqueue" "$SVC_PID"
  wexp=$((pushed * MSGS_PER_LEAD))
  t0=$(now_us)
  start_service "$kind-worker" "$wurl" "$wsink" worker
  if w=$(wait_sink "$wsink" "$wexp" "$BENCH_DRAIN_TIMEOUT" 0.5); then
    wexp=${w%% *} # the true count: wrk does not count requests in flight when it stopped
    stats=$("${HELPER[@]}" sink-stats "$wsink")
    last_ms=$(kv "$stats" last_ms) first_ms=$(kv "$stats" first_ms)
    wrate=$(calc "$wexp / (($last_ms - $t0 / 1000) / 1000)")
    log "worker: $stats -> $(printf %.0f "$wrate") sends/s from spawn"
    NOTES+=("$kind worker: $wexp messages (~$pushed leads); first->last send $((last_ms - first_ms)) ms ($(calc "$wexp / (($last_ms - $first_ms + 1) / 1000)" | xargs printf %.0f) sends/s excluding startup)")
    [[ $(kv "$stats" duplicates) == 0 && $(kv "$stats" distinct) == "$wexp" ]] ||
      fail "$kind worker: sink $stats, want $wexp distinct and no duplicates"
  else
    wrate=0
    fail "$kind worker: the sink never reached $wexp lines"
  fi
  stop_service "$kind-worker" "$SVC_PID"
  s=$(grep -c -E ' (warn|error) ' "$TMP/$kind-worker.log" || true)
  [[ "$s" == 0 ]] || NOTES+=("$kind-worker logged $s warn/error lines, e.g.: $(grep -m3 -E ' (warn|error) ' "$TMP/$kind-worker.log" | cut -c1-200 | tr '\n' ' ')")

  # The table.
  local perr gerr mb
  perr=$(($(kv "$p" bad_status) + $(kv "$p" socket_errors)))
  gerr=$(($(kv "$g" bad_status) + $(kv "$g" socket_errors)))
  mb=$(calc "$hwm / 1024")
  ROWS=""
  # Fixed stand-ins for the targets of docs/performance.md, which are ratios to ceilings this
  # script does not measure yet: 5,000 captures/s and 5,000 sends/s embedded; 3,000 and 2,500
  # for the production deployment (the PostgreSQL targets are stated for PostgreSQL+Redis).
  local post_target=5000 send_target=5000
  if [[ "$kind" == postgres* ]]; then post_target=3000 send_target=2500; fi
  row "POST /leads req/s (serve, its workers sending meanwhile)" "$(printf %.0f "$(kv "$p" ok_rps)")" "≥ $post_target" "$(met "$(kv "$p" ok_rps)" ">=" "$post_target")"
  row "POST /leads req/s, API alone (serve --no-worker, 2 s runs)" "$(printf %.0f "$api_rps")" "(same)" "$(met "$api_rps" ">=" "$post_target")"
  row "POST /leads p50 / p99 (ms)" "$(printf '%.2f / %.2f' "$(kv "$p" p50_ms)" "$(kv "$p" p99_ms)")" "p99 < 20" "$(met "$(kv "$p" p99_ms)" "<" 20)"
  row "POST /leads errors" "$perr of $(kv "$p" requests) (codes $(kv "$p" codes))" "0" "$(met "$perr" "<=" 0)"
  row "GET /leads/:id req/s" "$(printf %.0f "$(kv "$g" ok_rps)")" "≥ 20000" "$(met "$(kv "$g" ok_rps)" ">=" 20000)"
  row "GET /leads/:id p50 / p99 (ms)" "$(printf '%.2f / %.2f' "$(kv "$g" p50_ms)" "$(kv "$g" p99_ms)")" "p99 < 10" "$(met "$(kv "$g" p99_ms)" "<" 10)"
  row "GET errors" "$gerr of $(kv "$g" requests) (codes $(kv "$g" codes))" "0" "$(met "$gerr" "<=" 0)"
  row "lead → sent p50 / p99 (ms)" "$(kv "$lat" p50_ms) / $(kv "$lat" p99_ms)" "p50 < 10" "$(met "$(kv "$lat" p50_ms)" "<" 10)"
  row "worker sends/s" "$(printf %.0f "$wrate")" "≥ $send_target" "$(met "$wrate" ">=" "$send_target")"
  row "peak RSS (MB)" "$(printf %.1f "$mb")" "< 30" "$(met "$mb" "<" 30)"
  row "start → ready (ms)" "$(printf %.1f "$ready_ms")" "< 100" "$(met "$ready_ms" "<" 100)"
  NOTES+=("$kind: server CPU during POST $(printf %.0f "$post_cpu")% / GET $(printf %.0f "$get_cpu")% of one core ($(nproc) cores shared with wrk); lead → sent wall clock as seen by the client p50/p99 $(kv "$lat" wall_p50_ms) / $(kv "$lat" wall_p99_ms) ms")
  REPORT+=$'\n'"### SalesPad bench: database $kind (DATABASE_URL=${url%%:*}:…/$(basename "${url#*:}")), salespad $("$BIN" --version | awk '{print $2}')"$'\n\n'
  REPORT+="wrk -c $BENCH_CONNECTIONS -t $BENCH_THREADS -d ${BENCH_DURATION}s on 127.0.0.1; HTTP_THREADS=$(cfg HTTP_THREADS) WORKER_CONCURRENCY=$(cfg WORKER_CONCURRENCY); $(nproc) CPUs"$'\n\n'
  REPORT+="| metric | value | target | met |"$'\n'"|---|---|---|---|"$'\n'"$ROWS"
}

cfg() { HOST=127.0.0.1 "$BIN" --print-config | sed -n "s/^$1=//p"; }

# ==== #11 begin: the lead list at 1,000,000 leads and the 409 of a known person ===============
# Kept apart from run_suite (its own table per deployment). Per deployment: a fresh database,
# migrated (`salespad migrate`), then BENCH_LIST_LEADS leads (default 1,000,000) inserted
# straight with SQL (scripts/bench/seed_leads.py: the same rows on SQLite and PostgreSQL); the
# postgres+redis deployment clones the postgres one's seeded database (CREATE DATABASE ...
# TEMPLATE: the same rows, without seeding twice). Then `serve --no-worker` on it and wrk runs of
# BENCH_LIST_DURATION s (default 3) each: GET /leads first page, a deep page (a cursor half way
# down the list), status filters, q searches (rare and common prefixes of names, emails and
# phones, so both of the search's plans run), and POST /leads of a lead already stored (409),
# with BENCH_LIST_CONNECTIONS connections (default 8: the time a page takes to answer, which is
# what the p99 target is about; at -c 64 on a small machine a search, ~1-2 ms of CPU, measures
# the queue in front of the CPU instead). BENCH_LIST=0 skips the phase.
BENCH_LIST=${BENCH_LIST:-1}
BENCH_LIST_CONNECTIONS=${BENCH_LIST_CONNECTIONS:-8}
BENCH_LIST_LEADS=${BENCH_LIST_LEADS:-1000000}
BENCH_LIST_DURATION=${BENCH_LIST_DURATION:-3}
LIST_PG_SEEDED= # the postgres deployment's seeded database, cloned by the next postgres kind

# list_db KIND -> URL of a migrated database holding BENCH_LIST_LEADS seeded leads.
list_db() {
  local kind=$1 url base name out
  if [[ "$kind" == postgres* && -n "$LIST_PG_SEEDED" ]]; then
    base=$(cat "$TMP/pg/url")
    name="bench_${kind//[^a-z]/_}_list"
    pg_psql "$base" -c "CREATE DATABASE $name TEMPLATE $LIST_PG_SEEDED" >/dev/null ||
      die "cloning the seeded list database failed"
    log "list: $name cloned from $LIST_PG_SEEDED"
    echo "${base%/*}/$name"
    return 0
  fi
  url=$(db_url "$kind" list)
  env DATABASE_URL="$url" LOG_LEVEL=warn "$BIN" migrate >"$TMP/$kind-list-migrate.log" 2>&1 ||
    die "$kind: salespad migrate failed: $(tail -n 3 "$TMP/$kind-list-migrate.log")"
  case "$kind" in
    sqlite) out=$(python3 "$BENCH_DIR/seed_leads.py" sqlite "${url#sqlite:}" "$BENCH_LIST_LEADS") ;;
    *) out=$(python3 "$BENCH_DIR/seed_leads.py" postgres "$(cat "$TMP/pg/bindir")/psql" "$url" \
      "$BENCH_LIST_LEADS") ;;
  esac || die "$kind: seeding $BENCH_LIST_LEADS leads failed"
  log "list: $out"
  echo "$url"
}

# list_cursor PORT QUERY -> the nextCursor of GET /leads?QUERY (empty when there is none).
list_cursor() {
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:%s/leads?%s" % (sys.argv[1], sys.argv[2])) as r:
    print(json.load(r)["nextCursor"] or "")
PY
}

list_bench() {
  local kind=$1 url t0 port pid deep half first_s="" deep_s="" status_s="" q_s="" known_s k
  local BENCH_CONNECTIONS=$BENCH_LIST_CONNECTIONS # run_wrk's, for this phase
  t0=$(now_us)
  url=$(list_db "$kind")
  start_service "$kind-list" "$url" "$TMP/$kind-list.sink" serve --no-worker
  pid=$SVC_PID port=$SVC_PORT
  WRK_SERVER_PID=$pid
  # Half way down: the seeded lead number BENCH_LIST_LEADS / 2 (created 15 s apart in pairs
  # from 2025-01-01, seed_leads.sqlite.sql); its page's cursor.
  half=$(calc "(1735689600000 + int($BENCH_LIST_LEADS / 4) * 15000) / 1000")
  deep=$(list_cursor "$port" "limit=1&createdBefore=$(date -u -d "@$half" +%Y-%m-%dT%H:%M:%SZ)")
  [[ -n "$deep" ]] || die "$kind-list: no cursor half way down the list"
  printf '%s\n' "/leads?limit=20" >"$TMP/list-first.txt"
  printf '%s\n' "/leads?limit=20&cursor=$deep" "/leads?limit=100&cursor=$deep" >"$TMP/list-deep.txt"
  printf '%s\n' "/leads?status=converted&limit=20" "/leads?status=dead&limit=20&cursor=$deep" \
    "/leads?status=replied&limit=100&createdAfter=2025-02-01T00:00:00Z" >"$TMP/list-status.txt"
  # Rare and common prefixes: a name, a name's start, an email, phones' digits, with a status.
  printf '%s\n' "/leads?q=ana%20s&limit=20" "/leads?q=Zoe&limit=20" \
    "/leads?q=karin.pinto1&limit=20" "/leads?q=%2B35%200001&limit=20" \
    "/leads?q=35&limit=20&cursor=$deep" "/leads?q=uma&status=dead&limit=20" \
    "/leads?q=Xavier%20Alves&limit=100" >"$TMP/list-q.txt"
  for k in first deep status q; do
    run_wrk "$kind-list-$k" get_paths.lua "$port" "$BENCH_LIST_DURATION" \
      BENCH_PATHS_FILE="$TMP/list-$k.txt"
    printf -v "${k}_s" '%s' "$WRK"
  done
  run_wrk "$kind-list-known" post_known.lua "$port" "$BENCH_LIST_DURATION" \
    BENCH_KNOWN_EMAIL="bruno.silva1@example.com"
  known_s=$WRK
  kill -0 "$pid" 2>/dev/null || die "$kind-list died during the list runs (log: $TMP/$kind-list.log)"
  stop_service "$kind-list" "$pid"
  if [[ "$kind" == postgres* && -z "$LIST_PG_SEEDED" ]]; then LIST_PG_SEEDED=$(basename "$url"); fi

  ROWS=""
  list_rows "GET /leads, first page" "$first_s" 10
  list_rows "GET /leads, deep page (cursor half way)" "$deep_s" 10
  list_rows "GET /leads?status=" "$status_s" 10
  list_rows "GET /leads?q= (names, emails, phones)" "$q_s" 10
  list_rows "POST /leads of a known person (409)" "$known_s" 20
  REPORT+=$'\n'"### SalesPad bench: lead list at $BENCH_LIST_LEADS leads, database $kind"$'\n\n'
  REPORT+="wrk -c $BENCH_CONNECTIONS -t $BENCH_THREADS -d ${BENCH_LIST_DURATION}s per row, serve --no-worker; phase wall time $(printf %.0f "$(calc "($(now_us) - $t0) / 1e6")") s (seeding included)"$'\n\n'
  REPORT+="| metric | value | target | met |"$'\n'"|---|---|---|---|"$'\n'"$ROWS"
}

# list_rows LABEL WRK_LINE P99_TARGET_MS: the p50/p99, req/s and error rows of one run.
list_rows() {
  local err
  err=$(($(kv "$2" bad_status) + $(kv "$2" socket_errors)))
  row "$1 p50 / p99 (ms)" "$(printf '%.2f / %.2f' "$(kv "$2" p50_ms)" "$(kv "$2" p99_ms)")" "p99 < $3" "$(met "$(kv "$2" p99_ms)" "<" "$3")"
  row "$1 req/s" "$(printf %.0f "$(kv "$2" ok_rps)")" "" ""
  row "$1 errors" "$err of $(kv "$2" requests) (codes $(kv "$2" codes))" "0" "$(met "$err" "<=" 0)"
}
# ==== #11 end ==================================================================================

REPORT=""
for kind in $BENCH_DATABASES; do
  SVC_ENV=()
  if [[ "$kind" == *+redis ]]; then
    redis_ensure
    SVC_ENV=(REDIS_URL="$(cat "$TMP/redis/url")")
  fi
  run_suite "$kind"
  if [[ "$BENCH_LIST" == 1 ]]; then list_bench "$kind"; fi # #11
done

printf '%s\n' "$REPORT"
if [[ ${#NOTES[@]} -gt 0 ]]; then
  printf 'Notes:\n'
  printf -- '- %s\n' "${NOTES[@]}"
fi
exit "$FAILED"
