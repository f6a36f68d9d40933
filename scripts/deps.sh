#!/usr/bin/env bash
# deps.sh: installs the Debian packages SalesPad needs, only those that are missing.
#   scripts/deps.sh build   # compiler, cmake, pkg-config and the -dev libraries
#   scripts/deps.sh test    # build + python3, valgrind, curl, the PostgreSQL server and client
#                           # (tests/pg/pgserver.sh runs a throwaway server from
#                           # /usr/lib/postgresql/<version>/bin), the Redis server
#                           # (tests/redis/redisserver.sh), Node.js and npm (the BullMQ interop
#                           # tests, the OpenAPI validator), python3-jsonschema (responses
#                           # checked against docs/openapi.json), docker-compose (validates
#                           # docker-compose.yml; no engine), aiosmtpd and openssl
#                           # (tests/integration/test_smtp.py: a loopback SMTP server and its
#                           # self-signed certificate), prometheus_client
#                           # (tests/integration/test_metrics.py parses GET /metrics with it),
#                           # chromium (the dashboard's browser test, tests/browser: driven by
#                           # puppeteer-core)
#   scripts/deps.sh bench   # build + wrk, curl, the PostgreSQL and Redis servers and aiosmtpd
#                           # (scripts/bench/smtp_sink.py: the loopback SMTP server of the
#                           # EMAIL_PROVIDER=smtp rows)
set -euo pipefail

profile=${1:-build}
build_pkgs=(gcc make cmake pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libssl-dev
            libcurl4-openssl-dev)
case "$profile" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test)  pkgs=("${build_pkgs[@]}" python3 python3-pytest python3-psycopg2 python3-redis python3-jsonschema valgrind curl postgresql postgresql-client redis-server
               redis-tools nodejs docker-compose python3-aiosmtpd openssl python3-prometheus-client
               chromium) ;;
  bench) pkgs=("${build_pkgs[@]}" wrk curl python3 postgresql postgresql-client redis-server
               redis-tools python3-aiosmtpd) ;;
  *) echo "deps.sh: unknown profile '$profile' (build, test or bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm comes with the nodejs package of some apt sources (NodeSource) and is a package of its own
# in Debian's: ask for it only when the command is missing.
if [ "$profile" = test ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "deps.sh: need root (or sudo) to install: apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: apt-get not found; install these packages by hand: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || echo "deps.sh: apt-get update failed; trying the cached lists" >&2
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "deps.sh: could not install ${missing[*]}: check the network or the apt sources" >&2
  exit 1
fi
