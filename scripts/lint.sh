#!/usr/bin/env bash
# lint.sh: the checks a script can make: formatting, include rules, banned calls,
# header self-containment, the Redis client library kept inside redis.c. Exits non-zero on the first kind of failure it reports.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
fail() { echo "lint: $*" >&2; status=1; }

# 1. Formatting.
if command -v clang-format >/dev/null 2>&1; then
  if ! clang-format --dry-run -Werror $(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h') 2>/tmp/lint-fmt.$$; then
    head -20 /tmp/lint-fmt.$$ >&2
    fail "formatting differs from .clang-format (run make fmt)"
  fi
  rm -f /tmp/lint-fmt.$$
else
  echo "lint: clang-format not installed, skipping the format check" >&2
fi

# 2. Banned functions (curl's list) and SQL built with printf.
banned='\b(sprintf|vsprintf|strcpy|strcat|strncpy|atoi|atol|gets|strtok|gmtime|localtime|rand|system)[[:space:]]*\('
if grep -nE "$banned" $(git ls-files 'src/*.c' 'src/*.h') ; then
  fail "banned function used (unbounded or locale/thread-unsafe: see the list above)"
fi
if grep -nE 'printf\([^;]*"(SELECT|INSERT|UPDATE|DELETE) ' $(git ls-files 'src/*.c'); then
  fail "SQL built with printf: pass values as parameters"
fi

# 3. Include rules: layers only include what they may (README.md, "How it works").
check_includes() { # dir, allowed-regex
  local dir=$1 allowed=$2 f inc
  for f in $(git ls-files "$dir"); do
    while IFS= read -r inc; do
      [[ "$inc" =~ $allowed ]] || fail "$f includes \"$inc\" (not allowed from ${dir})"
    done < <(grep -oE '#include "[^"]+"' "$f" | sed -E 's/#include "(.*)"/\1/')
  done
}
check_includes 'src/core/' '^core/'
check_includes 'src/infra/' '^(core|infra)/'
check_includes 'src/features/leads/domain/' '^(core/|features/leads/domain/)'
# Delivery (leads/application) calls the channel senders through the messaging slice's public
# header, its sender port.
check_includes 'src/features/leads/application/' '^(core/|features/leads/(domain|application)/|features/messaging/domain/sender\.h)'
check_includes 'src/features/leads/presentation/' '^(core/|features/leads/(domain|application|presentation)/)'
check_includes 'src/features/leads/infrastructure/' '^(core/|infra/|features/leads/(domain|infrastructure)/)'
check_includes 'src/features/messaging/domain/' '^(core/|features/messaging/domain/|features/leads/domain/lead\.h)'
# The webhooks (messaging/presentation) read the providers' formats and call the leads use
# cases and their error mapping.
check_includes 'src/features/messaging/presentation/' '^(core/|features/messaging/(infrastructure|presentation)/|features/leads/(domain/lead|application/leads|presentation/leads_http)\.h)'
check_includes 'src/features/messaging/infrastructure/' '^(core/|infra/|features/messaging/(domain|infrastructure)/|features/leads/domain/lead\.h)'

# 4. Every header compiles on its own and starts with #pragma once.
cflags=$(pkg-config --cflags libmicrohttpd jansson sqlite3 2>/dev/null || true)
for h in $(git ls-files 'src/*.h'); do
  head -20 "$h" | grep -q '^#pragma once' || fail "$h: missing #pragma once"
  echo "#include \"${h#src/}\"" | gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -Isrc $cflags -fsyntax-only -x c - 2>/dev/null \
    || fail "$h does not compile on its own"
done

# 5. The Redis client library stays inside src/infra/redis.c: everything else uses
# struct redis_value (infra/redis.h), so the library can change without touching callers.
if grep -nIE 'hiredis|redisReply' $(git ls-files 'src/*' 'tests/*' | grep -vx 'src/infra/redis.c'); then
  fail "hiredis used outside src/infra/redis.c (use struct redis_value from infra/redis.h)"
fi

[ $status -eq 0 ] && echo "lint: ok"
exit $status
