#!/usr/bin/env bash
# Builds ngx_http_llmroute_module.so from nginx source configured with
# --with-compat, the way nginx documents third-party dynamic modules for its
# binary packages: any nginx binary of the same version that was itself
# built with --with-compat (nginx.org packages, the official Docker images,
# Debian's nginx) loads the result.
#
#   docker/build-module.sh SOURCE OUTDIR
#
# SOURCE  an nginx source directory (with ./configure), a release tarball
#         (nginx-X.Y.Z.tar.gz), or a tarball URL
#         (https://nginx.org/download/nginx-X.Y.Z.tar.gz)
# OUTDIR  where ngx_http_llmroute_module.so is copied
#
# Environment:
#   MODULE_DIR     the module's repository (default: this script's repo)
#   NGINX_SHA256   expected SHA-256 of a downloaded tarball (checked if set)
#   CC_OPT LD_OPT  extra --with-cc-opt / --with-ld-opt
#   CONFIGURE_ARGS extra configure arguments (word-split)
#   JOBS           make -j (default: nproc)
# Needs: a C compiler, make, libpcre2-dev, zlib1g-dev, libssl-dev,
# libjsmn-dev, libyajl-dev (and curl for a URL).  Nothing is written into
# SOURCE except the Makefile nginx's configure leaves in its top directory.
set -euo pipefail

die() { echo "build-module.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 NGINX_SOURCE_DIR|TARBALL|URL OUTDIR"
src=$1
out=$2
repo=${MODULE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
[ -f "$repo/config" ] || die "no nginx addon 'config' in $repo"

work=$(mktemp -d "${TMPDIR:-/tmp}/llmroute-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

case "$src" in
http://*|https://*)
    echo "fetching $src"
    curl -fsSL --retry 3 -o "$work/nginx.tar.gz" "$src" \
        || die "cannot download $src"
    src=$work/nginx.tar.gz
    ;;
esac

if [ -f "$src" ]; then
    if [ -n "${NGINX_SHA256:-}" ]; then
        echo "$NGINX_SHA256  $src" | sha256sum -c - >/dev/null \
            || die "SHA-256 mismatch for $src"
    fi
    mkdir "$work/src"
    tar -xzf "$src" -C "$work/src" --strip-components=1 \
        || die "cannot unpack $src"
    src=$work/src
fi

[ -x "$src/configure" ] || die "$src is not an nginx source tree (no configure)"
src=$(cd "$src" && pwd)
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
          "$src/src/core/nginx.h")
echo "nginx $version source: $src"

builddir=$work/build
# shellcheck disable=SC2086
(cd "$src" && ./configure --with-compat \
    ${CC_OPT:+--with-cc-opt="$CC_OPT"} ${LD_OPT:+--with-ld-opt="$LD_OPT"} \
    ${CONFIGURE_ARGS:-} \
    --add-dynamic-module="$repo" --builddir="$builddir") \
    > "$work/configure.log" 2>&1 \
    || { tail -30 "$work/configure.log" >&2; die "configure failed"; }

make -s -j"${JOBS:-$(nproc)}" -C "$src" -f "$builddir/Makefile" modules \
    || die "make modules failed"

mkdir -p "$out"
cp "$builddir/ngx_http_llmroute_module.so" "$out/"
echo "built $out/ngx_http_llmroute_module.so for nginx $version"
