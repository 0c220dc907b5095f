#!/usr/bin/env bash
# `npm test`: installs what is missing, builds, type-checks (part of the build), runs the unit
# tests, then — as root — the integration tests against real runc, mounts and SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
export ISOLA_CACHE="${ISOLA_CACHE:-/var/cache/isola}"
mapfile -t unit < <(find dist/test/unit -name '*.test.js' | sort)
node --test --test-reporter=spec "${unit[@]}"
if [ "$(id -u)" -eq 0 ]; then
  mapfile -t integ < <(find dist/test/integration -name '*.test.js' | sort)
  node --test --test-reporter=spec --test-concurrency=1 --test-timeout=900000 "${integ[@]}"
else
  echo "integration tests skipped: they need root (real runc, mounts, namespaces)" >&2
fi
