#!/usr/bin/env bash
# Installs the Debian packages the module, its tests and tools need, once.
set -euo pipefail
pkgs=(nginx nginx-dev libjsmn-dev libyajl-dev libhiredis-dev
      libcurl4-openssl-dev redis-server redis-tools wrk python3 python3-pytest
      clang libclang-rt-14-dev gcc make curl prometheus python3-yaml openssl
      libpcre2-dev zlib1g-dev libssl-dev valgrind
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
      chromium)  # chromium: t/test_status.py renders the status page
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$p")
done
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# the real client SDKs and agent CLIs the tests drive (pinned in t/node)
if [ -f t/node/package-lock.json ] && [ ! -d t/node/node_modules/openai ]; then
    command -v npm >/dev/null || $SUDO apt-get install -y -qq nodejs npm
    (cd t/node && npm install --no-audit --no-fund --loglevel=error)
fi
