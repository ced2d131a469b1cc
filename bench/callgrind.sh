#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: deterministic
# where wall-clock time on a shared VM is not.  Reuses the configs of a
# bench/run.sh run (its mock upstream and gateway nginx.conf), starts the
# mock, runs the gateway under callgrind in one process, sends N requests
# over one keepalive connection (after 20 not counted) and prints the
# instructions per request, whole and by function.
#
#   bench/callgrind.sh OUTDIR [PATH] [N]
#       OUTDIR  a bench/out/e2e-* directory (run bench/run.sh once first)
#       PATH    /v1/chat/completions (llmroute, default) or
#               /plain/v1/chat/completions (plain proxy_pass)
#       N       requests counted (default 300)
#   BODY=file   request body (default OUTDIR/body-2k.json)
#   MODULE=.so  module to load (default build/ngx_http_llmroute_module.so)
#   KEEP=file   keep the callgrind profile (for callgrind_annotate --auto=yes)
#   VALGRIND_ARGS="--cache-sim=yes --branch-sim=yes"
#               extra callgrind options; with the simulators on, the misses
#               (I1mr D1mr D1mw ILmr DLmr DLmw) and mispredicts (Bcm Bim)
#               per request are printed after the instructions
set -euo pipefail

out=$(cd "${1:?usage: bench/callgrind.sh OUTDIR [PATH] [N]}" && pwd)
path=${2:-/v1/chat/completions}
n=${3:-300}
repo=$(cd "$(dirname "$0")/.." && pwd)
body=${BODY:-$out/body-2k.json}
module=${MODULE:-$repo/build/ngx_http_llmroute_module.so}
work=$(mktemp -d)

for t in valgrind callgrind_annotate /usr/sbin/nginx python3; do
    command -v "$t" >/dev/null || { echo "callgrind.sh: $t missing" >&2; exit 2; }
done

cleanup() {
    [ -n "${gw_pid:-}" ] && kill -QUIT "$gw_pid" 2>/dev/null || true
    [ -f "$work/mock.pid" ] && kill -QUIT "$(cat "$work/mock.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# private copies: pid files and the module in the work directory
sed "s#^pid .*#pid $work/mock.pid;#" "$out/mock/nginx.conf" > "$work/mock.conf"
sed -e "s#^pid .*#pid $work/gw.pid;#" \
    -e "s#^load_module .*#load_module $module;#" \
    "$out/gw/nginx.conf" > "$work/gw.conf"
port=$(grep -m1 -o 'listen 127.0.0.1:[0-9]*' "$work/gw.conf" | cut -d: -f2)

/usr/sbin/nginx -c "$work/mock.conf" -p "$out/mock/"
export LLMROUTE_BENCH_KEY=${LLMROUTE_BENCH_KEY:-sk-bench-provider-key}
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" ${VALGRIND_ARGS:-} \
    /usr/sbin/nginx -c "$work/gw.conf" -p "$out/gw/" \
    -g 'daemon off; master_process off;' 2>"$work/valgrind.log" &
gw_pid=$!

send() {
    python3 - "$port" "$path" "$body" "$1" <<'PY'
import http.client, sys, time
port, path, body, n = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read(), int(sys.argv[4])
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port); c.connect(); break
    except OSError:
        time.sleep(0.2)
for _ in range(n):
    c.request("POST", path, body, {"Content-Type": "application/json",
                                   "Authorization": "Bearer client-key"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit("callgrind.sh: HTTP %d" % r.status)
PY
}

send 20
callgrind_control -z "$gw_pid" >/dev/null 2>&1
send "$n"
callgrind_control -d "$gw_pid" >/dev/null 2>&1
sleep 0.5

profiles=("$work"/cg.*.1)
f=${profiles[0]}
[ -n "${KEEP:-}" ] && cp "$f" "$KEEP"
total=$(callgrind_annotate "$f" 2>/dev/null \
        | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }')
echo "$path: $((total / n)) instructions per request ($n requests, body $(wc -c < "$body") bytes)"
if grep -q '^events:.*Bcm' "$f"; then
    # the simulators' events per request, from the profile's totals line
    awk -v n="$n" '/^events:/ { for (i = 2; i <= NF; i++) ev[i] = $i }
        /^(summary|totals):/ { for (i = 2; i <= NF; i++) t[ev[i + 0]] = $i }
        END { split("I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim", k, " ")
              s = "per request:"
              for (j = 1; j in k; j++) s = s sprintf(" %s %.1f", k[j], t[k[j]] / n)
              print s }' "$f"
fi
callgrind_annotate --show=Ir --threshold=100 "$f" 2>/dev/null | grep -v '(100.0%)' \
    | sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%)  *\([^ ]*\).*/\1 \2/p' \
    | awk -v n="$n" 'NR <= 25 { v = $1; gsub(",", "", v); printf "%10d  %s\n", v / n, $2 }'
# (awk reads to the end: a "head" here would SIGPIPE the pipeline under pipefail)
