"""docs/grafana/llmroute.json: every metric its queries use is in the
/metrics output of a gateway after traffic, and every query is valid
PromQL (promtool parses it as a recording rule)."""

import json
import re
import shutil
import subprocess

import pytest

from llmroute_harness import REPO_ROOT, get
from test_reprice import CATALOG, LOG_JSON, MOCK
from test_status import GATEWAY, traffic

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "llmroute.json"
METRIC_RE = re.compile(r"\b(llmroute_[a-z0-9_]+)\b")


def queries():
    d = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            exprs.append(v["definition"])
    return d, exprs


def test_dashboard_metrics_exist(nginx, tmp_path):
    d, exprs = queries()
    assert d["uid"] == "llmroute" and len(d["panels"]) >= 10
    used = set()
    for e in exprs:
        used |= set(METRIC_RE.findall(e))
    assert len(used) >= 8

    mock = nginx(MOCK, module=None, worker_processes=1)
    cat = tmp_path / "catalog.conf"
    cat.write_text(CATALOG.format(port=mock.port))
    gw = nginx(GATEWAY.replace(
        "location = /status {",
        "location = /metrics { llmroute_metrics; }\n"
        "        location = /status {"),
        vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
    traffic(gw, tmp_path)
    r = get(gw.port, "/metrics")
    assert r.status == 200
    names = set()
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    missing = sorted(used - names)
    assert not missing, "dashboard queries use series /metrics lacks: %s" \
        % missing

    # and the label values the panels group by are there too
    text = r.body.decode()
    for label in ("provider", "model", "tier", "code", "kind", "reason",
                  "le"):
        assert '%s="' % label in text, label


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian prometheus) not installed")
def test_dashboard_queries_are_valid_promql(tmp_path):
    _, exprs = queries()
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, e in enumerate(exprs):
        if e.startswith("label_values("):
            continue            # a Grafana function, not PromQL
        e = e.replace("$__rate_interval", "5m").replace("$provider", ".*")
        rules["groups"][0]["rules"].append(
            {"record": "dashboard:query%d" % i, "expr": e})
    f = tmp_path / "rules.json"
    f.write_text(json.dumps(rules))      # YAML is a superset of JSON
    p = subprocess.run(["promtool", "check", "rules", str(f)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
