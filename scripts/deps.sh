#!/usr/bin/env bash
# Installs the Debian packages the module, its tests and tools need, once.
set -euo pipefail
pkgs=(nginx nginx-dev libjsmn-dev libyajl-dev libhiredis-dev
      libcurl4-openssl-dev redis-server redis-tools wrk python3 python3-pytest
      clang libclang-rt-14-dev gcc make curl prometheus python3-yaml openssl
      libpcre2-dev zlib1g-dev libssl-dev valgrind)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
