#!/usr/bin/env bash
# The CI cost-regression gate: when conf.d/ changed since BASE (default:
# the merge-base with main), replay the committed sample access log
# (t/data/reprice-sample.log) under the example catalog before and after
# the change; exit 1 when the total or the per-request mean cost grows by
# more than MAX_INCREASE (default 10%).  README: "Cost regression check".
#
#   scripts/cost-gate.sh                     BASE=origin/main MAX_INCREASE=5%
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE:-$(git merge-base HEAD main 2>/dev/null || true)}
if [ -z "$base" ]; then
    echo "cost-gate: no base revision (set BASE), skipped"
    exit 0
fi
if git diff --quiet "$base" -- conf.d/; then
    echo "cost-gate: conf.d/ unchanged since $base"
    exit 0
fi

old=$(mktemp)
trap 'rm -f "$old"' EXIT
git show "$base:conf.d/catalog-example.conf" > "$old"

make -s -f tools/catalog.mk catalog-tool
build/tools/llmroute-catalog reprice --old "$old" \
    --new conf.d/catalog-example.conf --log t/data/reprice-sample.log \
    --max-increase "${MAX_INCREASE:-10%}"
