#!/usr/bin/env bash
# End-to-end benchmark: the llmroute location against a plain proxy_pass
# location of the same gateway nginx, to the same mock upstream (a second,
# module-less nginx answering a fixed chat.completion), with the same
# keepalive upstream block, in ONE run, interleaved round by round
# (plain, llmroute, llmroute, plain, ...) so that machine noise hits both.
#
#   bench/run.sh                     defaults below; `make bench` runs this
#   ROUNDS=7 DURATION=10 SIZES="2k" bench/run.sh
#
# Environment (defaults):
#   ROUNDS=5 DURATION=5    rounds per body size, seconds per wrk run
#   WARMUP=2               seconds of warm-up per side and size (not counted)
#   SIZES="2k 64k"         request bodies: bench/genbody sizes (chat), or
#                          agentSIZE (bench/agentbody.py: system prompt +
#                          12 tool schemas + a short ask), e.g. agent49k
#   THREADS=2 CONNS=32     wrk -t / -c, the same for both sides
#   WORKERS=1              worker_processes of the gateway (mock: MOCK_WORKERS=1)
#   BODY_BUFFER=1m         client_body_buffer_size of the gateway (both
#                          locations); 16k: bodies over 16 KB go to temp files
#   PIN=0                  1: taskset the gateway to CPU 0, mock + wrk to CPU 1
#   PERF=0                 1: after the rounds, one extra (uncounted) run per
#                          side under perf record -p <gateway worker>; the top
#                          symbols are printed at the end
#   MIN_RATIO=0            exit 1 when llmroute/plain throughput (median of
#                          the per-round ratios) is below this for any size
#   MODULE=build/ngx_http_llmroute_module.so (built with ./build.sh if absent)
#   OUT=bench/out/e2e-DATE run directory: configs, logs, raw wrk output
#
# Prints every round and a summary table (also in $OUT/summary.txt); exits
# 1 on any non-2xx response or socket error, 2 on a setup failure.

set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
SIZES=${SIZES:-"2k 64k"}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-1}
MOCK_WORKERS=${MOCK_WORKERS:-1}
BODY_BUFFER=${BODY_BUFFER:-1m}
PIN=${PIN:-0}
PERF=${PERF:-0}
MIN_RATIO=${MIN_RATIO:-0}

bench=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$bench")
MODULE=${MODULE:-$repo/build/ngx_http_llmroute_module.so}
OUT=${OUT:-$bench/out/e2e-$(date +%Y%m%d-%H%M%S)}
NGINX=${NGINX:-/usr/sbin/nginx}

die() { echo "run.sh: $*" >&2; exit 2; }

for t in "$NGINX" wrk curl ss; do
    command -v "$t" >/dev/null || die "$t is not installed (scripts/deps.sh)"
done

if [ ! -f "$MODULE" ]; then
    echo "run.sh: $MODULE missing, building it" >&2
    (cd "$repo" && ./build.sh) >&2 || die "build failed"
fi

make -s -C "$bench" out/genbody >&2 || die "cannot build bench/out/genbody"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mock=$OUT/mock
gw=$OUT/gw
mkdir -p "$mock/logs" "$mock/tmp" "$gw/logs" "$gw/tmp" "$gw/modules"

# the module as it is now: others may rebuild build/ during the run
cp "$MODULE" "$gw/modules/ngx_http_llmroute_module.so"

pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$bench/gateway.sh"

mock_port=$(pick_port)
gw_port=$(pick_port)

taskset_for() {
    if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then
        echo "taskset -c $1"
    fi
}

temp_paths() {
    local d=$1
    echo "client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy;"
    echo "    fastcgi_temp_path $d/tmp/fastcgi; uwsgi_temp_path $d/tmp/uwsgi;"
    echo "    scgi_temp_path $d/tmp/scgi;"
}

# a chat.completion of 686 bytes (no ' or $: nginx string literal)
response='{"id":"chatcmpl-bench00000000000000000000000001","object":"chat.completion","created":1732550400,"model":"small-1","system_fingerprint":"fp_bench_0001","choices":[{"index":0,"message":{"role":"assistant","content":"The race comes from closing the pool while a request is in flight. Track in-flight requests with a counter, make close() wait until it drops to zero, and reject new work once closing is set. Add a test that closes the pool during a slow request.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":512,"completion_tokens":64,"total_tokens":576,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}'

cat > "$mock/nginx.conf" <<EOF
# mock upstream: a module-less nginx that reads and discards the request
# body (return does) and answers a fixed chat.completion
worker_processes $MOCK_WORKERS;
pid $mock/nginx.pid;
error_log $mock/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    $(temp_paths "$mock")
    client_max_body_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$mock_port backlog=4096;
        default_type application/json;
        location / {
            # the body size the upstream saw: the pre-flight checks the splice
            add_header X-Mock-Content-Length \$content_length;
            return 200 '$response';
        }
    }
}
EOF

cat > "$gw/nginx.conf" <<EOF
load_module $gw/modules/ngx_http_llmroute_module.so;
worker_processes $WORKERS;
pid $gw/nginx.pid;
error_log $gw/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    $(temp_paths "$gw")
    client_max_body_size 16m;
    client_body_buffer_size $BODY_BUFFER;
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    # one upstream block for both locations: the same keepalive pool
    upstream mockup {
        server 127.0.0.1:$mock_port;
        keepalive 64;
        keepalive_requests 1000000;
    }

    llmroute_zone llmroute:1m;
    ${HTTP_EXTRA:-}
    llmroute_provider p1 http://mockup/v1/chat/completions key_env=LLMROUTE_BENCH_KEY ${PROVIDER_EXTRA:-};
    llmroute_model p1 small-1 tier=simple input=0.10 output=0.40 context=128k json tools;
    llmroute_model p1 big-1 tier=complex input=3.00 output=15.00 context=1000k json tools vision;

    server {
        listen 127.0.0.1:$gw_port backlog=4096;
        proxy_http_version 1.1;

$(gateway_locations)
    }
}
EOF

export LLMROUTE_BENCH_KEY=sk-bench-provider-key

start_nginx() {
    local dir=$1 cpu=$2
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/nginx-t.log" \
        || { cat "$dir/logs/nginx-t.log" >&2; die "nginx -t failed for $dir"; }
    $(taskset_for "$cpu") "$NGINX" -p "$dir" -c "$dir/nginx.conf" \
        -g 'daemon off;' 2>>"$dir/logs/stderr.log" &
    pids+=($!)
}

wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            return 0
        fi
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$port (see $OUT/*/logs)"
}

start_nginx "$mock" 1
start_nginx "$gw" 0
wait_port "$mock_port"
wait_port "$gw_port"

plain_url=http://127.0.0.1:$gw_port/plain/v1/chat/completions
route_url=http://127.0.0.1:$gw_port/v1/chat/completions

# bodies and a pre-flight per size: 200 on both sides, the module routed
# (X-LLMRoute-Model), the upstream got the whole, spliced body
for size in $SIZES; do
    body=$OUT/body-$size.json
    case $size in
    agent*) python3 "$bench/agentbody.py" --size "${size#agent}" "$body" \
                || die "agentbody $size failed" ;;
    *)      "$bench/out/genbody" "$size" "$body" || die "genbody $size failed" ;;
    esac
    blen=$(stat -c %s "$body")

    for side in plain llmroute; do
        url=$plain_url; [ $side = llmroute ] && url=$route_url
        hdrs=$OUT/preflight-$side-$size.txt
        code=$(curl -s --max-time 10 -o "$OUT/preflight-$side-$size.json" -D "$hdrs" \
                    -w '%{http_code}' -H 'Content-Type: application/json' \
                    --data-binary @"$body" "$url") || true
        [ "$code" = 200 ] || { cat "$hdrs" "$OUT/preflight-$side-$size.json" >&2;
                               die "pre-flight $side $size: HTTP $code"; }
        up=$(tr -d '\r' < "$hdrs" | awk -F': ' 'tolower($1)=="x-mock-content-length"{print $2}')
        if [ $side = llmroute ]; then
            model=$(tr -d '\r' < "$hdrs" | awk -F': ' 'tolower($1)=="x-llmroute-model"{print $2}')
            [ -n "$model" ] || die "pre-flight: no X-LLMRoute-Model header"
            # "auto" -> "<model>": the upstream body differs by the id length
            want=$((blen + ${#model} - 4))
            echo "pre-flight $size: body $blen B -> routed to $model ($(tr -d '\r' < "$hdrs" | awk -F': ' 'tolower($1)=="x-llmroute-tier"{print $2}')), upstream got $up B" >&2
        else
            want=$blen
        fi
        [ "$up" = "$want" ] || die "pre-flight $side $size: upstream got ${up:-?} bytes, expected $want"
    done
done

# run_wrk SIDE SIZE SECONDS LABEL -> "rps p50 p99 errors" on stdout
# CPU time (utime + stime, clock ticks) of the gateway's worker processes:
# per request, the metric least disturbed by other load on the machine
gw_ticks() {
    local master w t=0
    master=$(cat "$gw/nginx.pid")
    for w in $(pgrep -P "$master"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$w/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

clk_tck=$(getconf CLK_TCK)

# run_wrk SIDE SIZE SECONDS LABEL
#   -> "req/s p50_us p99_us errors non2xx gateway_cpu_us_per_request"
run_wrk() {
    local side=$1 size=$2 secs=$3 label=$4 url raw t0 t1
    url=$plain_url; [ "$side" = llmroute ] && url=$route_url
    raw=$OUT/wrk-$size-$label-$side.txt
    t0=$(gw_ticks)
    BODY_FILE=$OUT/body-$size.json \
        timeout $((secs + 30)) $(taskset_for 1) wrk -t"$THREADS" -c"$CONNS" \
        -d"${secs}s" --timeout 5s -s "$bench/post.lua" "$url" > "$raw" 2>&1 \
        || die "wrk failed ($raw)"
    t1=$(gw_ticks)
    awk -v ticks=$((t1 - t0)) -v hz="$clk_tck" '/^RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        err = v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
        printf "%.1f %d %d %d %d %.1f\n", v["requests"] / (v["duration_us"] / 1e6),
               v["p50_us"], v["p99_us"], err, v["status"],
               v["requests"] ? ticks / hz * 1e6 / v["requests"] : 0
    }' "$raw"
}

median() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

summary=$OUT/summary.txt
: > "$summary"
failed=0

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -n), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
    rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "?")
    dirty=$( (git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null || true) | wc -l)
    echo "# tree $rev ($dirty locally modified files), module $(stat -c %y "$MODULE" | cut -d. -f1)"
    echo "# nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), gateway workers $WORKERS, mock workers $MOCK_WORKERS, wrk -t$THREADS -c$CONNS, ${ROUNDS}x${DURATION}s per side, body buffer $BODY_BUFFER, pin $PIN"
} | tee -a "$summary"

for size in $SIZES; do
    blen=$(stat -c %s "$OUT/body-$size.json")
    echo "== body $size ($blen bytes): warm-up ${WARMUP}s per side" >&2
    if [ "$WARMUP" -gt 0 ]; then
        run_wrk plain "$size" "$WARMUP" warmup >/dev/null
        run_wrk llmroute "$size" "$WARMUP" warmup >/dev/null
    fi

    : > "$OUT/rounds-$size.txt"
    printf '%-6s %5s %-8s %10s %9s %9s %6s %12s\n' size round side req/s p50_ms p99_ms errors gw_cpu_us/req

    for r in $(seq 1 "$ROUNDS"); do
        # alternate which side goes first, so neither always runs warmer
        order="plain llmroute"; [ $((r % 2)) = 0 ] && order="llmroute plain"
        for side in $order; do
            read -r rps p50 p99 err status cpu < <(run_wrk "$side" "$size" "$DURATION" "r$r")
            [ -n "${rps:-}" ] || die "no RESULT line in $OUT/wrk-$size-r$r-$side.txt"
            printf '%-6s %5d %-8s %10.0f %9.2f %9.2f %6d %12.1f\n' "$size" "$r" "$side" \
                "$rps" "$(awk -v u="$p50" 'BEGIN{print u/1000}')" \
                "$(awk -v u="$p99" 'BEGIN{print u/1000}')" "$err" "$cpu"
            echo "$r $side $rps $p50 $p99 $err $cpu" >> "$OUT/rounds-$size.txt"
            if [ "$err" != 0 ]; then
                echo "run.sh: FAIL: $side $size round $r: $err errors ($status non-2xx/3xx responses); see $OUT/wrk-$size-r$r-$side.txt and $gw/logs/error.log" >&2
                tail -5 "$gw/logs/error.log" >&2 || true
                exit 1
            fi
        done
    done

    # an extra, uncounted pair of runs under perf: where the gateway's time goes
    if [ "$PERF" = 1 ]; then
        worker=$(pgrep -P "$(cat "$gw/nginx.pid")" | head -1)
        for side in plain llmroute; do
            perf record -q -g -o "$OUT/perf-$size-$side.data" -p "$worker" \
                -- sleep "$(( DURATION > 2 ? DURATION - 1 : 1 ))" >/dev/null 2>&1 &
            perf_pid=$!
            run_wrk "$side" "$size" "$DURATION" perf >/dev/null
            wait "$perf_pid" || true
        done
    fi
done

# summary: medians over rounds; the ratio is the median of the per-round
# ratios (each round's two runs are adjacent in time)
{
    echo
    printf '| %-5s | %7s | %11s | %12s | %5s | %12s | %12s | %14s | %14s | %9s | %6s |\n' \
        body bytes "plain req/s" "llmroute r/s" ratio "plain p99 ms" "llmr. p99 ms" \
        "gw CPU us/req" "added us/req" "CPU ratio" errors
    printf '|%s|\n' "-------|---------|-------------|--------------|-------|--------------|--------------|----------------|----------------|-----------|--------"
} | tee -a "$summary"

for size in $SIZES; do
    f=$OUT/rounds-$size.txt
    blen=$(stat -c %s "$OUT/body-$size.json")
    prps=$(awk '$2=="plain"{print $3}' "$f" | median)
    lrps=$(awk '$2=="llmroute"{print $3}' "$f" | median)
    pp99=$(awk '$2=="plain"{print $5/1000}' "$f" | median)
    lp99=$(awk '$2=="llmroute"{print $5/1000}' "$f" | median)
    errs=$(awk '{s+=$6} END{print s+0}' "$f")
    ratio=$(awk '{ if ($2=="plain") p[$1]=$3; else l[$1]=$3 }
                 END { for (r in p) if (p[r] > 0) print l[r] / p[r] }' "$f" | median)
    pcpu=$(awk '$2=="plain"{print $7}' "$f" | median)
    lcpu=$(awk '$2=="llmroute"{print $7}' "$f" | median)
    added=$(awk '{ if ($2=="plain") p[$1]=$7; else l[$1]=$7 }
                 END { for (r in p) print l[r] - p[r] }' "$f" | median)
    # plain's CPU per request over llmroute's: the ratio a gateway-bound
    # machine would see, whatever else shares its cores
    cratio=$(awk '{ if ($2=="plain") p[$1]=$7; else l[$1]=$7 }
                  END { for (r in p) if (l[r] > 0) print p[r] / l[r] }' "$f" | median)
    printf '| %-5s | %7d | %11.0f | %12.0f | %5.3f | %12.2f | %12.2f | %6.1f / %5.1f | %14.1f | %9.3f | %6d |\n' \
        "$size" "$blen" "$prps" "$lrps" "$ratio" "$pp99" "$lp99" "$pcpu" "$lcpu" "$added" "$cratio" "$errs" \
        | tee -a "$summary"
    if awk -v r="$ratio" -v m="$MIN_RATIO" 'BEGIN{exit !(r < m)}'; then
        echo "run.sh: FAIL: $size: ratio $ratio is below MIN_RATIO=$MIN_RATIO" >&2
        failed=1
    fi
done

if [ "$PERF" = 1 ]; then
    for f in "$OUT"/perf-*.data; do
        [ -f "$f" ] || continue
        echo; echo "== gateway worker profile: $(basename "$f" .data): by object, top symbols"
        perf report -i "$f" --no-children -g none --stdio --sort dso 2>/dev/null \
            | awk '/^ +[0-9]/ && ++n <= 5'      # no head: SIGPIPE under pipefail
        perf report -i "$f" --no-children -g none --stdio --sort dso,sym 2>/dev/null \
            | awk '/^ +[0-9]/ && ++n <= 12'
    done | tee -a "$summary"
fi

{
    echo "(req/s, p99 and gateway CPU per request (plain / llmroute, worker utime+stime):"
    echo " medians over rounds; ratio, added CPU and CPU ratio: medians of the"
    echo " per-round llmroute/plain, llmroute-plain and plain/llmroute CPU per"
    echo " request; raw data in $OUT)"
} | tee -a "$summary"

exit $failed
