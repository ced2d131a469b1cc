#!/usr/bin/env bash
# Session affinity and prompt caching, end to end: replays agent sessions
# through nginx (the module in build/) to two caching mock providers and a
# real redis-server, in four modes on the same sessions — affinity on,
# affinity off (per-request routing), all-complex, all-cheapest — and prints
# cost, the share of prompt tokens billed as cached and moves, per phase
# (steady, limit, cooldown, live price update).  Exits 1 when a goal fails.
#
#   bench/sessions/run.sh                  corpus sessions when
#                                          build/corpus/sessions.jsonl exists
#                                          (make corpus), else 52 generated
#   bench/sessions/run.sh --count 20 --modes on,off
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$repo/build/ngx_http_llmroute_module.so" ] || "$repo/build.sh" >/dev/null
command -v redis-server >/dev/null || { echo "redis-server is needed" >&2; exit 2; }
exec /usr/bin/python3 "$repo/bench/sessions/replay.py" "$@"
