"""llmroute_status: the JSON (?format=json) after traffic through nginx
matches the access log; the page is self-contained and, rendered by a real
headless Chromium, shows the JSON's numbers; allow/deny protect it; no
client or provider key ever appears on it."""

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from llmroute_harness import CLIENT_SECRET, KEYS, REPO_ROOT, chat_body, get, post_json
from test_reprice import CATALOG, LOG_JSON, MOCK, WRK_SCRIPT

CHAT = "/v1/chat/completions"

GATEWAY = r"""
    include %%LOG_JSON%%;
    llmroute_zone llmroute:2m;
    include %%CATALOG%%;
    llmroute_client_hash key_env=TEST_CLIENT_SECRET;
    llmroute_retries 2;
    llmroute_baseline_model big-1;
    map $http_x_team $team { default $http_x_team; "" anonymous; }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/chat/completions {
            llmroute on;
            llmroute_region $http_x_region;
            llmroute_client $team budget=50/day;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
            access_log logs/llmroute.log llmroute_json;
        }
        location /raw/v1/chat/completions {
            llmroute on;
            llmroute_client $http_authorization;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            access_log logs/llmroute.log llmroute_json;
        }
        location = /status {
            llmroute_status;
            allow 127.0.0.1;
            deny all;
        }
        location = /status-denied {
            llmroute_status;
            deny all;
        }
    }
"""

CLIENT_KEY = "Bearer sk-client-secret-77f1c0de"


def start(nginx, tmp_path):
    mock = nginx(MOCK, module=None, worker_processes=1)
    cat = tmp_path / "catalog.conf"
    cat.write_text(CATALOG.format(port=mock.port))
    return nginx(GATEWAY, vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})


def traffic(gw, tmp_path):
    script = tmp_path / "variants.lua"
    script.write_text(WRK_SCRIPT)
    p = subprocess.run(["wrk", "-t", "1", "-c", "4", "-d", "1s", "-s",
                        str(script), "http://127.0.0.1:%d/" % gw.port],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for _ in range(3):
        r = post_json(gw.port, "/raw" + CHAT, chat_body("hi"),
                      headers={"Authorization": CLIENT_KEY,
                               "X-LLMRoute-Tier": "simple"})
        assert r.status == 200
    # nginx logs (and counts) a request just after its response: wait
    # until the log and the status page agree on the last one
    deadline = time.time() + 10
    while status_json(gw)["totals"]["requests"] != len(logged(gw)):
        assert time.time() < deadline
        time.sleep(0.05)


def status_json(gw):
    r = get(gw.port, "/status?format=json")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    return json.loads(r.body)


def logged(gw):
    log = gw.prefix / "logs" / "llmroute.log"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    return [r for r in recs if r["provider"]]


def usd(values):
    return sum((Decimal(v) for v in values), Decimal(0))


def test_status_json_matches_the_access_log(nginx, tmp_path):
    gw = start(nginx, tmp_path)
    empty = status_json(gw)
    assert empty["totals"]["requests"] == 0 and empty["models"] == []
    assert len(empty["minutes"]) == 60

    traffic(gw, tmp_path)
    recs = logged(gw)
    d = status_json(gw)

    # every billed attempt of the last hour: the access log's requests
    t = d["totals"]
    assert t["requests"] == len(recs)
    assert Decimal(t["cost_usd"]) == usd(r["cost_usd"] for r in recs)
    assert t["prompt_tokens"] == sum(int(r["prompt_tokens"]) for r in recs)
    # cached as billed: at most the prompt (the mock reports more)
    assert t["cached_tokens"] == sum(min(int(r["cached_tokens"]),
                                         int(r["prompt_tokens"]))
                                     for r in recs)
    assert 0 < d["cache_hit_share"] < 1
    assert Decimal(t["savings_usd"]) == usd(r["savings_usd"] for r in recs)
    assert abs(d["cache_hit_share"] - t["cached_tokens"]
               / t["prompt_tokens"]) < 1e-6
    for tier in ("simple", "moderate", "complex"):
        assert d["tiers"][tier] == sum(1 for r in recs if r["tier"] == tier)

    models = {"%s/%s" % (m["provider"], m["model"]): m for m in d["models"]}
    for name, m in models.items():
        mine = [r for r in recs
                if "%s/%s" % (r["provider"], r["model"]) == name]
        assert m["requests"] == len(mine)
        assert Decimal(m["cost_usd"]) == usd(r["cost_usd"] for r in mine)

    provs = {p["provider"]: p for p in d["providers"]}
    assert set(provs) == {"flaky", "cheap", "premium", "alt"}
    assert provs["flaky"]["failures"]["5xx"] > 0
    assert provs["flaky"]["requests"] == 0
    assert provs["premium"]["requests"] == sum(
        1 for r in recs if r["provider"] == "premium")

    clients = {c["client"]: c for c in d["clients"]}
    for team in ("team-a", "team-b", "team-c"):
        mine = [r for r in recs if r["client"] == team]
        assert clients[team]["requests"] == len(mine)
        assert Decimal(clients[team]["cost_usd"]) == usd(
            r["cost_usd"] for r in mine)
        assert clients[team]["budget_usd"] == "50.000000000"
        assert clients[team]["budget_period"] == "day"
        assert Decimal(clients[team]["budget_used_usd"]) == usd(
            r["cost_usd"] for r in mine)

    # the raw Authorization is a client key: hashed, never shown or logged
    # labelled by the deployment's keyed id (HMAC), as in Redis, not by an
    # unkeyed checksum anyone holding a guessed key could match
    raw = [c for c in d["clients"] if c["client"].startswith("#")]
    assert len(raw) == 1 and raw[0]["requests"] == 3
    assert raw[0]["client"] == "#" + hmac.new(
        CLIENT_SECRET.encode(), CLIENT_KEY.encode(),
        hashlib.sha256).hexdigest()[:8]
    assert raw[0]["budget_usd"] is None
    page = get(gw.port, "/status").body.decode()
    for text in (json.dumps(d), page, gw.access_log(),
                 (gw.prefix / "logs" / "llmroute.log").read_text()):
        assert CLIENT_KEY not in text and "sk-client" not in text
        assert not any(k in text for k in KEYS.values())

    assert sum(m["requests"] for m in d["minutes"]) == len(recs)
    for pr in d["providers"]:
        assert len(pr["cost_per_minute_usd"]) == 60
        assert usd(pr["cost_per_minute_usd"]) == Decimal(pr["cost_usd"])
    assert usd(m["cost_usd"] for m in d["minutes"]) == Decimal(t["cost_usd"])
    assert d["baseline_model"] == "premium/big-1"
    assert d["redis"] == {"configured": False, "up": False}


def test_status_page_is_self_contained_and_protected(nginx, tmp_path):
    gw = start(nginx, tmp_path)
    r = get(gw.port, "/status")
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    csp = r.header("Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    page = r.body.decode()
    assert page.startswith("<!DOCTYPE html>")
    # nothing loaded from elsewhere: no src/href to another origin
    for needle in ("http://", "https://", "src=", "<link", "@import"):
        assert needle not in page.replace(
            'createElementNS("http://www.w3.org/2000/svg"', ""), needle
    assert get(gw.port, "/status-denied").status == 403
    assert get(gw.port, "/status-denied?format=json").status == 403
    r = post_json(gw.port, "/status", b"{}")
    assert r.status == 405


def chromium():
    """The chromium binary, installing Debian's package when missing."""
    exe = shutil.which("chromium")
    if exe is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq",
                        "--no-install-recommends", "chromium"],
                       capture_output=True, timeout=900)
        exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed and could not be "
                    "installed (apt-get install chromium)")
    return exe


def run_chromium(exe, *args):
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=" + profile, *args],
            capture_output=True, timeout=120)
    return p


class DataK(HTMLParser):
    """Text of every element with a data-k attribute."""

    def __init__(self):
        super().__init__()
        self.values, self.stack, self.attrs = {}, [], {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.attrs = a
        self.stack.append(a.get("data-k"))
        if a.get("data-k"):
            self.values[a["data-k"]] = ""

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for k in self.stack:
            if k:
                self.values[k] += data


def test_status_page_in_a_real_browser(nginx, tmp_path):
    exe = chromium()
    gw = start(nginx, tmp_path)
    traffic(gw, tmp_path)
    url = "http://127.0.0.1:%d/status" % gw.port

    p = run_chromium(exe, "--virtual-time-budget=4000", "--dump-dom", url)
    dom = p.stdout.decode(errors="replace")
    assert "data-rendered" in dom, p.stderr.decode(errors="replace")[-3000:]
    d = status_json(gw)
    v = DataK()
    v.feed(dom)
    got = v.values

    t = d["totals"]
    assert got["totals.cost_usd"] == "$" + t["cost_usd"]
    assert got["totals.requests"] == str(t["requests"])
    assert got["totals.tokens"] == str(t["prompt_tokens"]
                                       + t["completion_tokens"])
    assert got["totals.savings_usd"] == "$" + t["savings_usd"]
    assert got["cache_hit_share"] == "%.1f%%" % (d["cache_hit_share"] * 100)
    assert got["redis"] == "not configured"
    for tier in ("simple", "moderate", "complex"):
        assert got["tiers." + tier] == str(d["tiers"][tier])
    for m in d["models"]:
        k = "model.%s/%s." % (m["provider"], m["model"])
        assert got[k + "requests"] == str(m["requests"])
        assert got[k + "cost_usd"] == m["cost_usd"]
        assert got[k + "cached_tokens"] == str(m["cached_tokens"])
    for pr in d["providers"]:
        k = "provider.%s." % pr["provider"]
        assert got[k + "requests"] == str(pr["requests"])
        assert got[k + "cost_usd"] == pr["cost_usd"]
    assert "5xx" in got["provider.flaky.failures"]
    for c in d["clients"]:
        k = "client.%s." % c["client"]
        assert got[k + "cost_usd"] == c["cost_usd"]
        assert got[k + "requests"] == str(c["requests"])
    assert got["client.team-a.budget"].startswith(
        "$%s of $50.000000000/day" % next(
            c["budget_used_usd"] for c in d["clients"]
            if c["client"] == "team-a"))

    # the spend chart: one line in all, one per provider
    lines = re.findall(r'data-line="([^"]+)"', dom)
    assert lines == ["all"] + [pr["provider"] for pr in d["providers"]]

    shot = REPO_ROOT / "build" / "status.png"
    shot.parent.mkdir(exist_ok=True)
    if shot.exists():
        shot.unlink()
    p = run_chromium(exe, "--virtual-time-budget=4000",
                     "--window-size=1280,1000", "--hide-scrollbars",
                     "--screenshot=%s" % shot, url)
    assert shot.exists() and shot.stat().st_size > 10000, p.stderr


def test_status_page_header_is_generated_from_the_html():
    p = subprocess.run([str(REPO_ROOT / "scripts" / "status_page.py"),
                        "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_status_shows_redis(nginx, tmp_path):
    from redis_server import RedisServer
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        mock = nginx(MOCK, module=None, worker_processes=1)
        cat = tmp_path / "catalog.conf"
        cat.write_text(CATALOG.format(port=mock.port))
        gw = nginx(GATEWAY.replace(
            "llmroute_retries 2;",
            "llmroute_retries 2;\n    llmroute_redis %s sync=50ms;"
            % srv.addr), vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
        deadline = time.time() + 10
        while status_json(gw)["redis"] != {"configured": True, "up": True}:
            assert time.time() < deadline, status_json(gw)["redis"]
            time.sleep(0.1)
        srv.kill()
        deadline = time.time() + 10
        while status_json(gw)["redis"]["up"]:
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        srv.kill()


def test_status_directive_takes_no_arguments(nginx, tmp_path):
    cat = tmp_path / "catalog.conf"
    cat.write_text(CATALOG.format(port=1))
    ngx = nginx(GATEWAY.replace("llmroute_status;\n            allow",
                                "llmroute_status json;\n            allow"),
                vars={"LOG_JSON": LOG_JSON, "CATALOG": cat}, start=False)
    rc, err = ngx.check()
    assert rc != 0
    assert 'invalid number of arguments in "llmroute_status" directive' \
        in err
    assert "nginx.conf:%d" % ngx.conf_line_of("llmroute_status json") in err


def test_status_zone_too_small(nginx, tmp_path):
    """No room for the hour in a small zone: one [alert] per worker, the
    routing goes on, the page answers with an empty hour."""
    mock = nginx(MOCK, module=None, worker_processes=1)
    cat = tmp_path / "catalog.conf"
    cat.write_text(CATALOG.format(port=mock.port))
    gw = nginx(GATEWAY.replace("llmroute:2m", "llmroute:64k"),
               vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
    gw.allow_alerts = True
    for _ in range(20):
        r = post_json(gw.port, CHAT, chat_body("hi"),
                      headers={"X-Team": "t", "X-LLMRoute-Tier": "moderate"})
        assert r.status == 200
    gw.json_log("llmroute.log", 20)
    d = status_json(gw)
    assert d["totals"]["requests"] == 0 and d["models"] == []
    alerts = [a for a in gw.alerts() if "no room for llmroute_status" in a]
    assert 1 <= len(alerts) <= gw.worker_processes, alerts


def test_status_more_clients_than_keys(nginx, tmp_path):
    """Past 64 names (models and clients), clients are counted under
    "(other)": nothing is lost, the zone does not grow."""
    gw = start(nginx, tmp_path)
    for i in list(range(70)) + [69] * 5 + [0] * 5:
        r = post_json(gw.port, CHAT, chat_body("hi"),
                      headers={"X-Team": "team-%02d" % i,
                               "X-LLMRoute-Tier": "simple"})
        assert r.status == 200
    deadline = time.time() + 10
    while status_json(gw)["totals"]["requests"] != 80:
        assert time.time() < deadline
        time.sleep(0.05)
    d = status_json(gw)
    clients = {c["client"]: c for c in d["clients"]}
    assert "(other)" in clients
    assert len(clients) == 64 - len(d["models"]) + 1
    assert sum(c["requests"] for c in d["clients"]) == 80
    assert clients["team-00"]["requests"] == 6
    assert clients["(other)"]["requests"] >= 6
    assert usd(c["cost_usd"] for c in d["clients"]) == Decimal(
        d["totals"]["cost_usd"])
