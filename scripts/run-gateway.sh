#!/usr/bin/env bash
# Runs the gateway on 127.0.0.1:8080 in the foreground (Ctrl-C stops it).
# LLMROUTE_MODULE, NGINX_BINARY and LLMROUTE_RUN_DIR override the module,
# the nginx binary and the run directory (run/).
# Providers whose key is in the environment (OPENAI_API_KEY,
# DEEPSEEK_API_KEY, ANTHROPIC_API_KEY) are used; with none, the bundled demo
# providers (tools/demo_provider.py) answer instead.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run=${LLMROUTE_RUN_DIR:-$repo/run}
module=${LLMROUTE_MODULE:-$repo/build/ngx_http_llmroute_module.so}
nginx=${NGINX_BINARY:-/usr/sbin/nginx}
mkdir -p "$run/logs" "$run/tmp"

providers=()
envs=()
for p in openai:OPENAI_API_KEY deepseek:DEEPSEEK_API_KEY \
         anthropic:ANTHROPIC_API_KEY; do
    name=${p%%:*} var=${p#*:}
    if [ -n "${!var:-}" ]; then
        providers+=("$repo/conf.d/providers/$name.conf")
        envs+=("env $var;")
    fi
done

pids=()
cleanup() {
    [ -f "$run/nginx.pid" ] && kill -QUIT "$(cat "$run/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

if [ ${#providers[@]} -eq 0 ]; then
    echo "no provider API key set: using the bundled demo providers"
    providers=("$repo/conf.d/providers/demo.conf")
    python3 "$repo/tools/demo_provider.py" --port 9101 --name demo-cheap &
    pids+=($!)
    python3 "$repo/tools/demo_provider.py" --port 9102 --name demo-premium &
    pids+=($!)
fi

{
    echo "load_module $module;"
    printf '%s\n' "${envs[@]}"
    echo "pid $run/nginx.pid;"
    echo "error_log $run/logs/error.log info;"
    echo "worker_processes auto;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    for d in client_body proxy fastcgi uwsgi scgi; do
        echo "    ${d}_temp_path $run/tmp/$d;"
    done
    echo "    access_log $run/logs/access.log;"
    echo "    resolver 127.0.0.53 ipv6=off;"
    for f in "${providers[@]}"; do echo "    include $f;"; done
    echo "    include $repo/conf.d/log-json.conf;"
    echo "    include $repo/conf.d/gateway.conf;"
    echo "}"
} > "$run/nginx.conf"

$nginx -t -q -p "$run" -c "$run/nginx.conf"
echo "gateway: http://127.0.0.1:8080/v1  (config: $run/nginx.conf)"
echo "try:  curl -s localhost:8080/v1/chat/completions -d '{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'"
$nginx -p "$run" -c "$run/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait "${pids[-1]}"
