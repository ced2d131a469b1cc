#!/usr/bin/env bash
# Builds ngx_http_llmroute_module.so against Debian's nginx (nginx-dev), the
# way Debian's own dh_nginx helper does: Debian's configure flags, our addon,
# a private build directory.  Output: build/ngx_http_llmroute_module.so
#
#   ./build.sh            normal build (nginx's flags + -Wall -Wextra -Werror)
#   SANITIZE=1 ./build.sh AddressSanitizer + UBSan build into build-asan/
set -euo pipefail
repo=$(cd "$(dirname "$0")" && pwd)
src=/usr/share/nginx/src
builddir=${BUILDDIR:-$repo/build}
extra="-Wall -Wextra -Wno-unused-parameter -Werror"
if [ "${SANITIZE:-0}" = 1 ]; then
    builddir=${BUILDDIR:-$repo/build-asan}
    extra="$extra -fsanitize=address,undefined -fno-omit-frame-pointer"
fi
[ -f $src/conf_flags ] || { echo "nginx-dev is not installed" >&2; exit 1; }
mkdir -p "$builddir"
stamp="$builddir/.configured"
if [ ! -f "$stamp" ] || [ "$repo/config" -nt "$stamp" ]; then
    cd $src
    . ./conf_flags
    ./configure \
        --with-cc-opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS) $extra" \
        --with-ld-opt="$(dpkg-buildflags --get LDFLAGS) -fPIC" \
        "${NGX_CONF_FLAGS[@]}" \
        --add-dynamic-module="$repo" --builddir="$builddir" > "$builddir/configure.log" 2>&1 \
        || { tail -20 "$builddir/configure.log"; exit 1; }
    touch "$stamp"
fi
make -s -f "$builddir/Makefile" -C $src modules
ls -l "$builddir/ngx_http_llmroute_module.so"
