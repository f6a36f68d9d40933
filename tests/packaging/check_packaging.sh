#!/usr/bin/env bash
# check_packaging.sh: static checks of the container packaging; no Docker engine needed.
#   bash tests/packaging/check_packaging.sh [path/to/salespad]   (or SALESPAD_BIN=...)
# Overrides (for trying it on a modified copy): COMPOSE_FILE=/tmp/x.yml DOCKERFILE=/tmp/Dockerfile.
#
#  a. `docker-compose -f docker-compose.yml config -q` accepts the file (docker-compose 1.29.2 from
#     Debian, or `docker compose`; both validate without an engine);
#  b. every environment variable of the services that run the salespad image is a setting the
#     binary lists (--print-config / --help), and the binary accepts their values (the image's ENV
#     merged with the service's environment, through --print-config); the services' commands name
#     commands and flags the binary's --help mentions;
#  c. the Dockerfile: at least two stages, a final USER that is not root, a HEALTHCHECK, every
#     package an apt-get install names exists in Debian (apt-cache policy, when this machine runs
#     the image's Debian release), the runtime stage installs the package of every shared library
#     the binary loads, and the files the build stage COPYs exist;
#  d. the image's HEALTHCHECK command passes against the binary serving on a free loopback port
#     and fails once it has stopped.
# Every failure is printed with its reason; exit 1 if any. Exit 77 (skipped) when no compose tool
# is installed, except under CI=true, where that is a failure.
# shellcheck disable=SC2154  # arrays filled by nul_list (through a nameref)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${1:-${SALESPAD_BIN:-$root/build/salespad}}
compose_file=${COMPOSE_FILE:-$root/docker-compose.yml}
dockerfile=${DOCKERFILE:-$root/Dockerfile}
failures=0
skipped=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
note() { echo "note: $*"; }
ok() { echo "ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/salespad-packaging.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

for f in "$bin" "$compose_file" "$dockerfile"; do
  [ -e "$f" ] || { echo "FAIL: $f not found (usage: $0 path/to/salespad)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "FAIL: $bin is not executable" >&2; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is needed to read the YAML and the Dockerfile" >&2; exit 1; }
echo "checking $compose_file and $dockerfile against $bin"

# The binary runs with a clean environment: the caller's settings must not change what it says.
run_bin() { env -i PATH="$PATH" ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} "$@"; }

# ---- what the binary knows ---------------------------------------------------------------------
if ! run_bin "$bin" --print-config >"$tmp/print-config" 2>&1; then
  echo "FAIL: $bin --print-config failed:" >&2; cat "$tmp/print-config" >&2; exit 1
fi
run_bin "$bin" --help >"$tmp/help" 2>&1 || { echo "FAIL: $bin --help failed:" >&2; cat "$tmp/help" >&2; exit 1; }
known=$( { sed -nE 's/^([A-Z][A-Z0-9_]*)=.*/\1/p' "$tmp/print-config"
           sed -nE 's/^  ([A-Z][A-Z0-9_]*) +--.*/\1/p' "$tmp/help"; } | sort -u)
[ -n "$known" ] || { echo "FAIL: no settings found in $bin --print-config or --help" >&2; exit 1; }
is_known() { grep -qxF "$1" <<<"$known"; }
known_list=$(tr '\n' ' ' <<<"$known")

# ---- Dockerfile parsing (python3, no dependency): NUL-separated answers ------------------------
# dockerfile_query FILE WHAT [STAGE]: WHAT is stages | user | healthcheck | apt STAGE | env | cmd |
# copy-sources STAGE | base-codename. STAGE is an index (0 first, -1 the runtime stage).
dockerfile_query() {
  python3 - "$@" <<'PY'
import json, re, shlex, sys
path, what = sys.argv[1], sys.argv[2]
arg = int(sys.argv[3]) if len(sys.argv) > 3 else -1
lines, cur = [], ""
for raw in open(path, encoding="utf-8"):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if cur and s.lstrip().startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append(cur + s)
    cur = ""
if cur:
    lines.append(cur)
stages = []
for l in lines:
    parts = l.strip().split(None, 1)
    ins, rest = parts[0].upper(), (parts[1] if len(parts) > 1 else "")
    if ins == "FROM":
        stages.append({"from": rest, "ins": []})
    elif stages:
        stages[-1]["ins"].append((ins, rest))
def out(items):
    sys.stdout.write("".join(str(i) + "\0" for i in items))
def exec_or_shell(rest):
    rest = rest.strip()
    if rest.startswith("["):
        try:
            return json.loads(rest)
        except ValueError:
            pass
    return ["/bin/sh", "-c", rest]
if what == "stages":
    out(s["from"] for s in stages); sys.exit(0)
if not stages:
    sys.exit(0)
st = stages[arg] if -len(stages) <= arg < len(stages) else {"from": "", "ins": []}
final = stages[-1]
if what == "user":
    users = [r for i, r in final["ins"] if i == "USER"]
    out(users[-1:])
elif what == "healthcheck":
    hc = [r for i, r in final["ins"] if i == "HEALTHCHECK"]
    if hc:
        r = hc[-1].strip()
        if r.upper() == "NONE":
            out(["NONE"])
        else:
            m = re.search(r"\bCMD\s+(.*)$", r, re.S)
            out(exec_or_shell(m.group(1)) if m else [])
elif what == "apt":
    pkgs = []
    for i, r in st["ins"]:
        if i != "RUN":
            continue
        for m in re.finditer(r"apt-get\s+install\s+(.*?)(?:&&|;|\|\||$)", r):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    out(pkgs)
elif what == "env":
    env = {}
    for i, r in final["ins"]:
        if i != "ENV":
            continue
        words = shlex.split(r)
        if words and "=" in words[0]:
            for w in words:
                k, _, v = w.partition("=")
                env[k] = v
        elif words:
            env[words[0]] = " ".join(words[1:])
    out(k + "=" + v for k, v in env.items())
elif what == "cmd":
    for name in ("ENTRYPOINT", "CMD"):
        rs = [r for i, r in final["ins"] if i == name]
        out([name] + (exec_or_shell(rs[-1]) if rs else []))
elif what == "copy-sources":
    for i, r in st["ins"]:
        if i not in ("COPY", "ADD"):
            continue
        words = r.split()
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        if words and words[0].startswith("["):
            words = json.loads(r[r.index("["):])
        out(words[:-1])
elif what == "base-codename":
    m = re.search(r"(?:debian|ubuntu):([a-z]+)", final["from"])
    out([m.group(1)] if m else [])
PY
}
nul_list() { local -n _arr=$1; _arr=(); while IFS= read -r -d '' x; do _arr+=("$x"); done; }

# ---- (a) docker-compose config -----------------------------------------------------------------
compose=()
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
fi
compose_env=(env -i PATH="$PATH" HOME="${HOME:-/tmp}")   # defaults of ${VAR:-x}, not the caller's
have_config=0
if [ ${#compose[@]} -eq 0 ]; then
  if [ "${CI:-}" = true ]; then
    fail "neither docker-compose nor 'docker compose' is installed (scripts/deps.sh test installs docker-compose)"
  else
    note "neither docker-compose nor 'docker compose' is installed: compose checks (a, b) skipped"
    skipped=1
  fi
elif ! "${compose_env[@]}" "${compose[@]}" -f "$compose_file" config -q >"$tmp/config-q.log" 2>&1; then
  fail "${compose[*]} -f $compose_file config -q rejects the file:"
  sed 's/^/    /' "$tmp/config-q.log" >&2
elif ! "${compose_env[@]}" "${compose[@]}" -f "$compose_file" config >"$tmp/config.yml" 2>"$tmp/config.log"; then
  fail "${compose[*]} -f $compose_file config failed:"; sed 's/^/    /' "$tmp/config.log" >&2
else
  ok "${compose[*]} config accepts $(basename "$compose_file")"
  have_config=1
fi

# ---- (b) settings of the services that run the salespad image ----------------------------------
# compose_query WHAT [SERVICE]: WHAT is services (those built from this repository or using a
# salespad image) | env SERVICE (NAME=VALUE, or NAME alone when passed through from the host) |
# command SERVICE.
compose_query() {
  python3 - "$tmp/config.yml" "$@" <<'PY'
import sys
try:
    import yaml
except ImportError:
    sys.stderr.write("python3-yaml is missing (docker-compose depends on it)\n"); sys.exit(3)
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
services = cfg.get("services") or {}
what = sys.argv[2]
def out(items):
    sys.stdout.write("".join(str(i) + "\0" for i in items))
if what == "services":
    out(n for n, s in services.items()
        if "build" in s or str(s.get("image", "")).split("/")[-1].startswith("salespad"))
    sys.exit(0)
s = services.get(sys.argv[3]) or {}
if what == "env":
    env = s.get("environment") or {}
    if isinstance(env, list):
        env = dict((e.split("=", 1) + [None])[:2] for e in env)
    out(k if v is None else "%s=%s" % (k, v) for k, v in env.items())
elif what == "command":
    c = s.get("command")
    out(c.split() if isinstance(c, str) else (c or []))
PY
}

nul_list image_env < <(dockerfile_query "$dockerfile" env)
check_words_in_help() { # context, words...
  local ctx=$1 w; shift
  for w in "$@"; do
    grep -qF -- "$w" "$tmp/help" || fail "$ctx: '$w' is not a command or flag of salespad (not in salespad --help)"
  done
}
check_names() { # context, NAME[=VALUE]...: every NAME is a setting of the binary
  local ctx=$1 kv; shift
  for kv in "$@"; do
    is_known "${kv%%=*}" ||
      fail "$ctx sets ${kv%%=*}, which is not a setting of salespad (salespad --print-config lists: ${known_list% })"
  done
}
check_values() { # context, NAME[=VALUE]...: the binary accepts the values (--print-config)
  local ctx=$1 kv out; shift
  local assigns=()
  for kv in "$@"; do
    [[ "$kv" == *=* ]] && assigns+=("$kv")
  done
  if ! out=$(run_bin "${assigns[@]}" "$bin" --print-config 2>&1); then
    fail "$ctx: salespad refuses its settings: $(tail -n1 <<<"$out")"
  fi
}

before=$failures
check_names "$(basename "$dockerfile") (ENV)" "${image_env[@]}"
check_values "$(basename "$dockerfile") (ENV)" "${image_env[@]}"
nul_list cmd_words < <(dockerfile_query "$dockerfile" cmd)
cmd_args=()
for w in "${cmd_words[@]}"; do
  [[ "$w" =~ ^(ENTRYPOINT|CMD|salespad|/usr/local/bin/salespad)$ ]] || cmd_args+=("$w")
done
check_words_in_help "$(basename "$dockerfile") ENTRYPOINT/CMD" "${cmd_args[@]}"
if [ "$failures" = "$before" ]; then
  ok "$(basename "$dockerfile"): ENV ${image_env[*]%%=*} known and accepted; ENTRYPOINT/CMD ${cmd_args[*]}"
fi

if [ "$have_config" = 1 ]; then
  if ! python3 -c 'import yaml' 2>/dev/null; then
    fail "python3-yaml is missing: cannot read the output of docker-compose config (apt-get install python3-yaml)"
  else
    nul_list services < <(compose_query services)
    for want in api worker; do
      grep -qxF "$want" <<<"$(printf '%s\n' "${services[@]}")" \
        || fail "$(basename "$compose_file"): no service '$want' built from this repository (services checked: ${services[*]:-none})"
    done
    for svc in "${services[@]}"; do
      nul_list svc_env < <(compose_query env "$svc")
      nul_list svc_cmd < <(compose_query command "$svc")
      before=$failures
      # Values: the container's environment, the image's ENV overridden by the service's.
      check_names "$(basename "$compose_file") service $svc" "${svc_env[@]}"
      check_values "$(basename "$compose_file") service $svc" "${image_env[@]}" "${svc_env[@]}"
      check_words_in_help "$(basename "$compose_file") service $svc command" "${svc_cmd[@]}"
      [ "$failures" = "$before" ] && ok "service $svc: ${#svc_env[@]} settings known and accepted, command '${svc_cmd[*]}'"
    done
  fi
fi

# ---- (c) the Dockerfile ------------------------------------------------------------------------
df=$(basename "$dockerfile")
nul_list stages < <(dockerfile_query "$dockerfile" stages)
if [ ${#stages[@]} -lt 2 ]; then
  fail "$df has ${#stages[@]} FROM stage(s): expected a build stage and a runtime stage"
else
  ok "$df: ${#stages[@]} stages (${stages[*]})"
fi
nul_list user < <(dockerfile_query "$dockerfile" user)
if [ ${#user[@]} -eq 0 ]; then
  fail "$df: the runtime stage has no USER: the service would run as root"
elif [[ "${user[0]%%:*}" =~ ^(root|0)$ ]]; then
  fail "$df: the runtime stage runs as USER ${user[0]} (root)"
else
  ok "$df: runs as USER ${user[0]}"
fi
nul_list healthcheck < <(dockerfile_query "$dockerfile" healthcheck)
if [ ${#healthcheck[@]} -eq 0 ] || [ "${healthcheck[0]}" = NONE ]; then
  fail "$df: the runtime stage has no HEALTHCHECK CMD"
  healthcheck=()
else
  ok "$df: HEALTHCHECK present"
fi

# Files the stages COPY from the build context.
for ((i = 0; i < ${#stages[@]}; i++)); do
  nul_list sources < <(dockerfile_query "$dockerfile" copy-sources "$i")
  for s in "${sources[@]}"; do
    path="$(dirname "$dockerfile")/$s"
    if [[ "$s" == *[*?[]* ]]; then compgen -G "$path" >/dev/null; else [ -e "$path" ]; fi || fail "$df stage $((i + 1)) copies '$s', which does not exist next to $df"
  done
done

# Packages: do they exist? Only meaningful when apt-cache answers for the image's Debian release.
codename=$(dockerfile_query "$dockerfile" base-codename | tr -d '\0')
# shellcheck source=/dev/null
host_codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
nul_list runtime_pkgs < <(dockerfile_query "$dockerfile" apt -1)
# One apt-cache call for all names (each call takes ~0.5 s): the packages with a candidate version.
candidates() {
  apt-cache policy "$@" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1); sub(/:[a-z0-9]+$/, "", p)}
         /^  Candidate:/ && $2 != "(none)" {print p}' || true
}
if ! command -v apt-cache >/dev/null 2>&1; then
  note "apt-cache not found: package names not checked"
elif [ -z "$codename" ] || [ "$codename" != "$host_codename" ]; then
  note "apt-cache answers for '${host_codename:-unknown}', the image is '${codename:-unknown}': package names not checked"
else
  all_pkgs=()
  for ((i = 0; i < ${#stages[@]}; i++)); do
    nul_list pkgs < <(dockerfile_query "$dockerfile" apt "$i")
    all_pkgs+=("${pkgs[@]}")
  done
  available=$(candidates libc6 "${all_pkgs[@]}")
  if ! grep -qxF libc6 <<<"$available"; then
    note "apt-cache has no package lists (apt-get update): package names not checked"
  else
    for ((i = 0; i < ${#stages[@]}; i++)); do
      nul_list pkgs < <(dockerfile_query "$dockerfile" apt "$i")
      missing=()
      for p in "${pkgs[@]}"; do
        grep -qxF "$p" <<<"$available" || missing+=("$p")
      done
      if [ ${#missing[@]} -gt 0 ]; then
        fail "$df stage $((i + 1)) (${stages[$i]}) installs packages $codename does not have: ${missing[*]} (apt-cache policy)"
      else
        ok "$df stage $((i + 1)): ${#pkgs[@]} packages exist in $codename"
      fi
    done
  fi
fi

# Shared libraries: the runtime stage must install the package of each library the binary loads
# directly. Packages of debian:bookworm-slim itself need no install.
base_pkgs="libc6 libgcc-s1 libstdc++6 zlib1g"
if ! command -v readelf >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  note "readelf or dpkg not found: the runtime libraries are not compared with the binary"
elif [ -n "$codename" ] && [ "$codename" != "$host_codename" ]; then
  note "this machine runs '${host_codename:-unknown}', the image '$codename': the runtime libraries are not compared with the binary"
else
  needed=$(readelf -d "$bin" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p')
  ldd_out=$(ldd "$bin" 2>/dev/null || true)
  before=$failures
  for so in $needed; do
    if [[ "$so" =~ ^lib(asan|ubsan|tsan|lsan)\. ]]; then
      note "$so: a sanitizer runtime (this binary is an instrumented build; the image's is not)"
      continue
    fi
    # The package of the copy the loader picks (ldd: /lib/x86_64-linux-gnu/libm.so.6), not of a
    # same-named library of another architecture (libc6-i386's /lib32/libm.so.6).
    loaded=$(awk -v so="$so" '$1 == so && $2 == "=>" {print $3}' <<<"$ldd_out")
    suffix=/$so
    [ -n "$loaded" ] && suffix=/$(basename "$(dirname "$loaded")")/$so
    pkg=$(dpkg -S "$so" 2>/dev/null | awk -F': ' -v sfx="$suffix" \
      'substr($2, length($2) - length(sfx) + 1) == sfx && !found {print $1; found = 1}')
    pkg=${pkg%%:*}
    if [ -z "$pkg" ]; then
      note "$so: no Debian package owns it (built by hand?): not checked"
    elif grep -qwF "$pkg" <<<"$base_pkgs"; then
      :
    elif ! grep -qxF "$pkg" <<<"$(printf '%s\n' "${runtime_pkgs[@]}")"; then
      fail "$df: the binary loads $so (package $pkg), which the runtime stage does not install"
    fi
  done
  [ "$failures" = "$before" ] && ok "$df: the runtime stage installs the libraries the binary loads (${needed//$'\n'/ })"
fi

# ---- (d) the HEALTHCHECK command against the real binary ---------------------------------------
if [ ${#healthcheck[@]} -gt 0 ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # env execs the binary: $! is the server's pid.
  env -i PATH="$PATH" ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} HOST=127.0.0.1 \
    PORT="$port" DATABASE_URL="sqlite:$tmp/health.db" "$bin" serve --no-worker >"$tmp/serve.log" 2>&1 &
  server_pid=$!
  healthy=0
  for _ in $(seq 50); do
    if run_bin PORT="$port" timeout 3 "${healthcheck[@]}" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$healthy" = 1 ]; then
    kill "$server_pid"; wait "$server_pid" || true; server_pid=
    if run_bin PORT="$port" timeout 3 "${healthcheck[@]}" >/dev/null 2>&1; then
      fail "$df: the HEALTHCHECK command passes with no server on port $port (it checks nothing)"
    else
      ok "$df: HEALTHCHECK passes against 'salespad serve' on port $port and fails once it stopped"
    fi
  else
    fail "$df: the HEALTHCHECK command (${healthcheck[*]}) never passed against 'salespad serve' on port $port; server log:"
    sed 's/^/    /' "$tmp/serve.log" >&2
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "packaging: $failures check(s) failed (see FAIL lines above)" >&2
  exit 1
fi
if [ "$skipped" = 1 ]; then
  echo "packaging: passed, but the compose checks were skipped"
  exit 77
fi
echo "packaging: ok"
