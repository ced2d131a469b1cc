#!/usr/bin/env bash
# Streams at scale: STREAMS concurrent SSE streams (an event every
# INTERVAL ms, CHUNKS events each, from bench/sse_streams mock, which
# streams like an OpenAI-compatible provider) through the llmroute location
# and through a plain proxy_pass location of the same gateway nginx (one
# worker), in ONE run: plain, llmroute, llmroute, plain.
#
#   bench/streams.sh                      defaults below
#   STREAMS=500 CHUNKS=50 bench/streams.sh
#
# Environment (defaults):
#   STREAMS=2000 INTERVAL=20 CHUNKS=200  streams, ms between events, events
#   RAMP=1000                            ms over which the streams open
#   MODULE=build/ngx_http_llmroute_module.so  OUT=bench/out/streams-DATE
#
# Per run: gateway worker CPU per event (utime+stime from /proc), the
# worker's RSS growth per open stream (VmRSS mid-run minus idle, over
# STREAMS; a fresh gateway each run), and the delay of each event from the mock's write to the
# client's read (p50/p99).  Summary: llmroute/plain CPU ratio, RSS per
# stream, p99 llmroute - plain.  Exits 1 when a stream does not complete.

set -euo pipefail

STREAMS=${STREAMS:-2000}
INTERVAL=${INTERVAL:-20}
CHUNKS=${CHUNKS:-200}
RAMP=${RAMP:-1000}
NGINX=${NGINX:-/usr/sbin/nginx}

bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
MODULE=${MODULE:-$repo/build/ngx_http_llmroute_module.so}
OUT=${OUT:-$bench/out/streams-$(date +%Y%m%d-%H%M%S)}

die() { echo "streams.sh: $*" >&2; exit 2; }

[ -f "$MODULE" ] || die "$MODULE missing (./build.sh)"
mkdir -p "$OUT/gw/logs" "$OUT/gw/tmp" "$OUT/gw/modules"
OUT=$(cd "$OUT" && pwd)
gw=$OUT/gw
cp "$MODULE" "$gw/modules/ngx_http_llmroute_module.so"

${CC:-cc} -O2 -Wall -o "$OUT/sse_streams" "$bench/sse_streams.c" \
    || die "cannot build sse_streams"

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$bench/gateway.sh"

mock_port=$(pick_port)
gw_port=$(pick_port)

cat > "$gw/nginx.conf" <<EOF
load_module $gw/modules/ngx_http_llmroute_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $gw/nginx.pid;
error_log $gw/logs/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $gw/tmp/body; proxy_temp_path $gw/tmp/proxy;
    fastcgi_temp_path $gw/tmp/fastcgi; uwsgi_temp_path $gw/tmp/uwsgi;
    scgi_temp_path $gw/tmp/scgi;
    client_body_buffer_size 1m;

    upstream mockup {
        server 127.0.0.1:$mock_port;
        keepalive 64;
    }

    llmroute_zone llmroute:1m;
    llmroute_provider p1 http://mockup/v1/chat/completions key_env=LLMROUTE_BENCH_KEY;
    llmroute_model p1 small-1 tier=simple input=0.10 output=0.40 context=128k json tools;

    server {
        listen 127.0.0.1:$gw_port backlog=4096;
        proxy_http_version 1.1;
        proxy_buffering off;

$(gateway_locations)
    }
}
EOF

export LLMROUTE_BENCH_KEY=sk-bench-provider-key

"$OUT/sse_streams" mock "$mock_port" "$INTERVAL" "$CHUNKS" &
pids+=($!)
"$NGINX" -t -q -p "$gw" -c "$gw/nginx.conf" || die "nginx -t failed"

# a fresh gateway per run: the worker's idle RSS is the baseline
start_gw() {
    local i
    "$NGINX" -p "$gw" -c "$gw/nginx.conf" -g 'daemon off;' 2>>"$gw/logs/stderr.log" &
    master=$!
    pids+=($master)
    worker=
    for i in $(seq 1 100); do
        # ps fails while the master has no child yet
        worker=$(ps -o pid= --ppid "$master" | head -1 | tr -d ' ' || true)
        [ -n "$worker" ] && curl -s -o /dev/null "http://127.0.0.1:$gw_port/" && return
        sleep 0.05
    done
    die "gateway did not start"
}

stop_gw() {
    kill -QUIT "$master" 2>/dev/null || true
    wait "$master" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$worker/status"; }
hz=$(getconf CLK_TCK)
secs=$(( (RAMP + INTERVAL * (CHUNKS + 1)) / 1000 + 1 ))

echo "streams.sh: $STREAMS streams x $CHUNKS events, ${INTERVAL} ms apart," \
     "ramp ${RAMP} ms; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '%-9s %8s %9s %12s %10s %9s %9s\n' side chunks cpu_s us/chunk rss_kb/str p50_us p99_us \
    | tee "$OUT/runs.txt"

for side in plain llmroute llmroute plain; do
    start_gw
    path=/v1/chat/completions
    [ $side = plain ] && path=/plain/v1/chat/completions
    c0=$(cpu_ticks)
    r0=$(rss_kb)
    "$OUT/sse_streams" client "$gw_port" "$path" "$STREAMS" "$RAMP" \
        > "$OUT/client-$side.txt" &
    cl=$!
    # mid-run: every stream open
    sleep $(( (RAMP + INTERVAL * CHUNKS / 2) / 1000 ))
    r1=$(rss_kb)
    wait $cl || { cat "$OUT/client-$side.txt"; tail -5 "$gw/logs/error.log";
                  echo "streams.sh: FAIL: $side: streams did not complete" >&2; exit 1; }
    c1=$(cpu_ticks)
    read -r chunks p50 p99 < <(sed -E 's/.*chunks=([0-9]+) p50_us=([0-9]+).*p99_us=([0-9]+).*/\1 \2 \3/' \
                                   "$OUT/client-$side.txt")
    awk -v s=$side -v n="$chunks" -v c=$((c1 - c0)) -v hz="$hz" -v r=$((r1 - r0)) \
        -v st="$STREAMS" -v p50="$p50" -v p99="$p99" 'BEGIN {
        printf "%-9s %8d %9.2f %12.2f %10.1f %9d %9d\n", s, n, c / hz,
               n ? c / hz * 1e6 / n : 0, r / st, p50, p99 }' | tee -a "$OUT/runs.txt"
    stop_gw
done

awk 'NR > 1 { n[$1]++; cpu[$1] += $4; rss[$1] += $5; p99[$1] += $7 }
     END {
        printf "\nllmroute / plain CPU per chunk: %.2f (%.2f / %.2f us)\n",
               cpu["llmroute"] / cpu["plain"], cpu["llmroute"] / n["llmroute"],
               cpu["plain"] / n["plain"]
        printf "RSS per open stream: llmroute %.1f KB, plain %.1f KB\n",
               rss["llmroute"] / n["llmroute"], rss["plain"] / n["plain"]
        printf "p99 delay per chunk: llmroute %.0f us, plain %.0f us, added %.0f us\n",
               p99["llmroute"] / n["llmroute"], p99["plain"] / n["plain"],
               (p99["llmroute"] - p99["plain"]) / n["plain"]
     }' "$OUT/runs.txt" | tee "$OUT/summary.txt"
