#!/usr/bin/env bash
# Installs the Debian packages and npm modules Isola needs, only what is missing.
# Used by `npm start` and `npm test`, so a fresh Debian 12 machine needs nothing done by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(runc e2fsprogs mmdebstrap debian-archive-keyring ca-certificates nftables iproute2 qemu-system-x86 gcc libc6-dev make g++ python3 tar util-linux busybox-static procps attr qemu-utils conntrack iputils-ping)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "isola: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "isola: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm modules from the lockfile, again only when they changed.
stamp=node_modules/.isola-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi
