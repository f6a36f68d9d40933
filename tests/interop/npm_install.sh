#!/usr/bin/env bash
# npm_install.sh <dir>...: installs the pinned npm packages of each dir (tests/interop/bullmqN:
# bullmq; tests/browser: puppeteer-core; tests/openapi: the OpenAPI validator) with `npm ci`,
# unless its node_modules already matches its package-lock.json, then checks that every
# dependency of its package.json loads.
#
# Up to date means: node_modules/.salespad-npm-ci holds the SHA-256 of package-lock.json and the
# Node.js major it was installed with (npm ci deletes node_modules first, so an interrupted
# install leaves no stamp and is redone). One install per dir at a time (flock on the lock file).
# --ignore-scripts: no package needs an install script here (msgpackr's optional native
# extract has a pure JavaScript fallback; puppeteer-core downloads no browser: the tests drive
# Debian's chromium), and none runs on the test machine.
# Used by CTest's fixtures `npm_interop` (tests/interop/CMakeLists.txt), `npm_browser`
# (tests/browser/CMakeLists.txt) and `npm_openapi` (tests/openapi/CMakeLists.txt), and by
# test_interop.py.
set -euo pipefail

die() { echo "npm_install.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 <dir>..."
command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 18 (scripts/deps.sh test)"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm (scripts/deps.sh test)"
node_major=$(node -p 'process.versions.node.split(".")[0]')

for dir in "$@"; do
  lock=$dir/package-lock.json
  [ -f "$lock" ] || die "$lock not found"
  stamp=$dir/node_modules/.salespad-npm-ci
  exec 9<"$lock"
  flock 9
  want="$(sha256sum <"$lock" | cut -d' ' -f1) node$node_major"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "npm_install.sh: $dir: node_modules up to date"
  else
    echo "npm_install.sh: $dir: npm ci"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) ||
      die "$dir: npm ci failed"
    # import() loads CommonJS and ES modules alike (the OpenAPI validator is an ES module).
    (cd "$dir" && node --input-type=module -e '
      import { readFileSync } from "node:fs";
      const deps = JSON.parse(readFileSync("package.json")).dependencies || {};
      for (const name of Object.keys(deps)) {
        await import(name);
        const version = JSON.parse(readFileSync("node_modules/" + name + "/package.json")).version;
        console.log("npm_install.sh: " + name + " " + version + " loads");
      }') || die "$dir: a dependency does not load after npm ci"
    echo "$want" >"$stamp"
  fi
  exec 9<&-
done
