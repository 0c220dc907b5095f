#!/usr/bin/env bash
# `npm run bench`: builds, then runs each benchmark; each prints a table and writes bench/results/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p bench/results
for b in dist/bench/*.bench.js; do node "$b" "$@"; done
