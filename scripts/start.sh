#!/usr/bin/env bash
# `npm start`: on a fresh Debian machine, as root — install what is missing, build, start isolad
# (unless one already answers on the socket), run `isola setup`, and say what to type next.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "npm start: run as root (isolad manages namespaces, mounts and cgroups)" >&2; exit 1; fi
bash scripts/install-deps.sh
bash scripts/build.sh
export ISOLA_SOCKET="${ISOLA_SOCKET:-/run/isola/isolad.sock}"
LOG_DIR="${ISOLA_LOG_DIR:-/var/log/isola}"
mkdir -p "$LOG_DIR"
if ! bin/qvm-ls --raw-list >/dev/null 2>&1; then
  # isolad writes and rotates isolad.log itself; stderr keeps only what Node prints if it dies.
  ISOLA_LOG_FILE="$LOG_DIR/isolad.log" nohup bin/isolad >>"$LOG_DIR/isolad.stderr" 2>&1 &
  echo "isolad started (pid $!, log $LOG_DIR/isolad.log)"
  for _ in $(seq 1 100); do bin/qvm-ls --raw-list >/dev/null 2>&1 && break; sleep 0.1; done
fi
bin/isola setup
cat <<EOT

Isola is running. Next:
  export PATH="$PWD/bin:\$PATH"
  qvm-ls
  qvm-start work && qvm-run -p work 'hostname; id'
  isola doctor
EOT
