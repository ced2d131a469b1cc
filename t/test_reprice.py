"""llmroute-catalog reprice: a JSON access log (conf.d/log-json.conf)
generated through nginx by wrk (over 10 000 requests, several tiers,
capabilities, pins, regions, clients and a failing provider) is replayed
with the module's own selection code under the same catalog, a catalog
that doubles one model's price and one that adds a cheaper model."""

import json
import os
import subprocess
from decimal import Decimal

import pytest

from llmroute_harness import KEYS, REPO_ROOT, Nginx, chat_body, post_json

TOOL = REPO_ROOT / "build" / "tools" / "llmroute-catalog"
LOG_JSON = REPO_ROOT / "conf.d" / "log-json.conf"
CHAT = "/v1/chat/completions"

# a module-less nginx as the providers: usage from the request's own size
# and id, so tokens vary per request; "flaky" always fails
ANSWER = ('{"id":"c","object":"chat.completion","model":"m","choices":'
          '[{"index":0,"message":{"role":"assistant","content":"ok"},'
          '"finish_reason":"stop"}],"usage":{"prompt_tokens":$content_length,'
          '"completion_tokens":$ctok,"total_tokens":0,"prompt_tokens_details":'
          '{"cached_tokens":$cached}}}')
MOCK = r"""
    map $request_id $ctok { ~0$ 7; ~[1-5]$ 120; ~[6-9a]$ 333; default 42; }
    map $request_id $cached { ~^[0-3] 0; ~^[4-7] 64; default 5000; }
    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_requests 100000;
        location /flaky/ { return 503 '{"error":{"message":"down"}}'; }
        location / {
            default_type application/json;
            return 200 '""" + ANSWER + """';
        }
    }
"""

CATALOG = """
llmroute_provider flaky   http://127.0.0.1:{port}/flaky/v1/chat/completions key_env=TEST_KEY_A;
llmroute_provider cheap   http://127.0.0.1:{port}/cheap/v1/chat/completions key_env=TEST_KEY_A regions=us,eu;
llmroute_provider premium http://127.0.0.1:{port}/premium/v1/chat/completions key_env=TEST_KEY_B;
llmroute_provider alt     http://127.0.0.1:{port}/alt/v1/chat/completions key_env=TEST_KEY_B regions=us;
llmroute_model flaky   tiny-0 tier=simple   input=0.05 output=0.20 context=16k;
llmroute_model cheap   small-1 tier=simple  input=0.10 output=0.40 cached_input=0.01 context=16k json;
llmroute_model premium mid-1  tier=moderate input=1.00 output=4.00 cached_input=0.25 context=128k tools json vision;
llmroute_model alt     mid-2  tier=moderate input=1.50 output=6.00 context=128k tools json vision;
llmroute_model premium big-1  tier=complex  input=3.00 output=15.00 context=200k tools json vision;
llmroute_output_budget simple=256 moderate=1024 complex=4096;
"""

GATEWAY = r"""
    include %%LOG_JSON%%;
    llmroute_zone llmroute:4m;
    include %%CATALOG%%;
    llmroute_retries 2;
    # a name the configuration makes: the log shows it (a raw header
    # value would be logged as a hash, see test_status)
    map $http_x_team $team { default $http_x_team; }
    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_requests 100000;
        location /v1/chat/completions {
            llmroute on;
            llmroute_region $http_x_region;
            llmroute_client $team;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
            access_log logs/llmroute.log llmroute_json;
        }
    }
"""

# wrk: one request variant after another, each connection its own offset
WRK_SCRIPT = r"""
local variants = {
  {"simple", "", '{"model":"auto","messages":[{"role":"user","content":"hi there"}]}'},
  {"moderate", "", '{"model":"auto","messages":[{"role":"user","content":"refactor this function please"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}'},
  {"complex", "", '{"model":"auto","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"design a distributed system"}]}'},
  {"simple", "", '{"model":"auto","max_tokens":50,"response_format":{"type":"json_object"},"messages":[{"role":"user","content":"json please"}]}'},
  {"simple", "", '{"model":"mid-1","messages":[{"role":"user","content":"pinned to a model"}]}'},
  {"simple", "", '{"model":"premium/big-1","messages":[{"role":"user","content":"pinned to a provider"}]}'},
  {"simple", "", '{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}'},
  {"simple", "eu", '{"model":"auto","messages":[{"role":"user","content":"from europe"}]}'},
  {"simple", "", '{"model":"auto:moderate","messages":[{"role":"user","content":"a floor"}]}'},
  {"moderate", "us", '{"model":"auto","max_tokens":300,"messages":[{"role":"user","content":"moderate in the us, a bit longer prompt text here"}]}'},
}
local teams = {"team-a", "team-b", "team-c"}
local n = 0
request = function()
  n = n + 1
  local v = variants[(n % #variants) + 1]
  local h = {["Content-Type"] = "application/json",
             ["X-LLMRoute-Tier"] = v[1],
             ["X-Team"] = teams[(n % #teams) + 1]}
  if v[2] ~= "" then h["X-Region"] = v[2] end
  return wrk.format("POST", "/v1/chat/completions", h, v[3])
end
"""

MIN_REQUESTS = 10000


def reprice(*args):
    p = subprocess.run([str(TOOL), "reprice", *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    return p


def reprice_json(*args):
    p = reprice(*args, "--json")
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


@pytest.fixture(scope="module")
def tool():
    subprocess.run(["make", "-s", "-f", "tools/catalog.mk", "catalog-tool"],
                   cwd=REPO_ROOT, check=True)
    return TOOL


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, tool):
    """The gateway after >= 10 000 requests, made once for the module's
    tests: (catalog path, log path, catalog text)."""
    tmp = tmp_path_factory.mktemp("reprice")
    env = dict(KEYS)
    mock = Nginx(tmp / "mock", MOCK, module=None, worker_processes=1)
    text = CATALOG.format(port=mock.port)
    cat = tmp / "catalog.conf"
    cat.write_text(text)
    gw = Nginx(tmp / "gw", GATEWAY, env_vars=env,
               vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
    script = tmp / "variants.lua"
    script.write_text(WRK_SCRIPT)
    log = gw.prefix / "logs" / "llmroute.log"
    lines = 0
    try:
        mock.start()
        gw.start()
        for _ in range(20):
            p = subprocess.run(["wrk", "-t", "2", "-c", "16", "-d", "2s",
                                "-s", str(script),
                                "http://127.0.0.1:%d/" % gw.port],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
            lines = len(log.read_text().splitlines()) if log.exists() else 0
            if lines >= MIN_REQUESTS:
                break
    finally:
        gw.stop()
        mock.stop()
    assert lines >= MIN_REQUESTS
    assert gw.alerts() == []
    assert not any(k in gw.error_log() + log.read_text()
                   for k in KEYS.values())
    return cat, log, text


def log_records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def usd_sum(records):
    return sum((Decimal(r["cost_usd"]) for r in records if r["cost_usd"]),
               Decimal(0))


def test_route_facts_and_client_in_the_log(nginx, tmp_path, tool):
    mock = nginx(MOCK, module=None, worker_processes=1)
    cat = tmp_path / "catalog.conf"
    cat.write_text(CATALOG.format(port=mock.port))
    gw = nginx(GATEWAY, vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
    tools = [{"type": "function", "function": {"name": "f",
                                               "parameters": {}}}]
    r = post_json(gw.port, CHAT, chat_body(
        "hello", model="premium/mid-1", tools=tools, max_tokens=77),
        headers={"X-Team": "team-x", "X-Region": "EU",
                 "X-LLMRoute-Tier": "moderate"})
    assert r.status == 200
    r = post_json(gw.port, CHAT, chat_body("hi"),
                  headers={"X-Team": "team-y", "X-LLMRoute-Tier": "simple"})
    assert r.status == 200
    recs = gw.json_log("llmroute.log", 2)
    a, b = recs
    assert a["client"] == "team-x" and b["client"] == "team-y"
    facts = dict(kv.split("=", 1) for kv in a["route_facts"].split())
    assert facts["tier"] == "moderate"
    assert facts["max"] == "77"
    assert facts["caps"] == "tools"
    assert facts["pin"] == "mid-1" and facts["via"] == "premium"
    assert facts["region"].lower() == "eu"
    assert int(facts["est"]) > 0
    facts = dict(kv.split("=", 1) for kv in b["route_facts"].split())
    # the failing provider was tried first, then skipped
    assert facts["pin"] == "-" and facts["region"] == "-"
    assert facts["caps"] == "-" and facts["max"] == "-1"
    assert "flaky" in facts["excl"].split(",")
    assert b["provider"] == "cheap" and b["attempts"] == "2"


def test_reprice_same_catalog_is_exact(traffic):
    cat, log, _ = traffic
    recs = log_records(log)
    routed = [r for r in recs if r["provider"]]
    assert len(routed) >= MIN_REQUESTS
    # the variants reach every model, pins, regions and failover
    assert {r["model"] for r in routed} == {"small-1", "mid-1", "big-1"}
    assert any("excl=flaky" in r["route_facts"] for r in routed)

    rc, out, err = reprice_json("--old", cat, "--new", cat, "--log", log,
                                "--max-increase", "0%")
    assert rc == 0, err
    assert out["requests"] == len(routed)
    assert out["difference_usd"] == "0.000000000"
    assert out["changed"] == 0 and out["changed_requests"] == []
    assert out["logged_mismatches"] == 0
    # before = the log's own $llmroute_cost, to the nano-dollar
    assert Decimal(out["before_usd"]) == usd_sum(routed)
    assert out["before_usd"] == out["logged_usd"] == out["after_usd"]
    assert out["gate"]["exceeded"] is False
    by_client = {r["key"]: r for r in out["by_client"]}
    assert set(by_client) == {"team-a", "team-b", "team-c"}
    for team, row in by_client.items():
        assert Decimal(row["before_usd"]) == usd_sum(
            r for r in routed if r["client"] == team)
    by_model = {r["key"]: r for r in out["by_model"]}
    assert by_model["premium/mid-1"]["requests_before"] == sum(
        1 for r in routed if r["model"] == "mid-1")
    assert {r["key"] for r in out["by_tier"]} == {
        "simple", "moderate", "complex"}

    # the text report says the same
    p = reprice("--old", cat, "--new", cat, "--log", log)
    assert p.returncode == 0, p.stderr
    assert "difference: $0.000000000 (+0.000%" in p.stdout
    assert "by client:" in p.stdout and "team-b" in p.stdout


def price_nano(rec, inp, out, cin):
    """nano-USD; prices in nano-USD per token (USD per 1M x 1000)"""
    prompt, comp = int(rec["prompt_tokens"]), int(rec["completion_tokens"])
    cached = min(int(rec["cached_tokens"]), prompt)
    return (prompt - cached) * inp + cached * cin + comp * out


def test_reprice_doubled_price_trips_the_gate(traffic, tmp_path):
    cat, log, text = traffic
    doubled = tmp_path / "doubled.conf"
    doubled.write_text(text.replace(
        "mid-1  tier=moderate input=1.00 output=4.00 cached_input=0.25",
        "mid-1  tier=moderate input=2.00 output=8.00 cached_input=0.50"))
    assert doubled.read_text() != text

    rc, out, err = reprice_json("--old", cat, "--new", doubled, "--log", log,
                                "--max-increase", "10%")
    assert rc == 1, err
    assert out["gate"]["exceeded"] is True and out["gate"]["total"] is True
    assert Decimal(out["after_usd"]) > Decimal(out["before_usd"]) * \
        Decimal("1.10")
    recs = {r["request_id"]: r for r in log_records(log) if r["provider"]}

    # auto-routed moderate traffic moves to alt/mid-2 (now cheaper); the
    # EU requests cannot (alt serves only the US) and pinned ones stay
    changed = out["changed_requests"]
    assert changed and out["changed"] == len(changed)
    for c in changed:
        rec = recs[c["request_id"]]
        assert c["from"] == "premium/mid-1" and rec["model"] == "mid-1"
        assert c["to"] == "alt/mid-2"
        assert "pin=-" in rec["route_facts"]
        assert c["after_usd"] == "%d.%09d" % divmod(
            price_nano(rec, 1500, 6000, 1500), 10 ** 9)
    moves = {m["key"]: m for m in out["moves"]}
    assert set(moves) == {"premium/mid-1 -> alt/mid-2"}
    pinned = [r for r in recs.values()
              if r["model"] == "mid-1" and "pin=mid-1" in r["route_facts"]]
    assert pinned and not {r["request_id"] for r in pinned} & {
        c["request_id"] for c in changed}

    # a generous gate passes; the text report lists the changes
    p = reprice("--old", cat, "--new", doubled, "--log", log,
                "--max-increase", "500%")
    assert p.returncode == 0, p.stderr
    assert "premium/mid-1 -> alt/mid-2" in p.stdout
    assert "OK: within --max-increase 500.000%" in p.stdout
    p = reprice("--old", cat, "--new", doubled, "--log", log,
                "--max-increase", "10%")
    assert p.returncode == 1
    assert "FAIL: --max-increase 10.000% exceeded: total" in p.stdout


def test_reprice_gate_per_request_mean(traffic, tmp_path):
    """Doubling the cheap model barely moves the total, but a third of the
    requests doubled: the per-request mean trips the gate."""
    cat, log, text = traffic
    doubled = tmp_path / "cheap-doubled.conf"
    doubled.write_text(text.replace(
        "small-1 tier=simple  input=0.10 output=0.40 cached_input=0.01",
        "small-1 tier=simple  input=0.20 output=0.80 cached_input=0.02"))
    rc, out, err = reprice_json("--old", cat, "--new", doubled, "--log", log,
                                "--max-increase", "10%")
    assert rc == 1, err
    assert out["changed"] == 0
    assert out["increase_pct"] < 10 < out["mean_increase_pct"]
    assert out["gate"] == {"max_increase_pct": 10.0, "exceeded": True,
                           "total": False, "mean": True}
    p = reprice("--old", cat, "--new", doubled, "--log", log,
                "--max-increase", "10%")
    assert "exceeded: per-request mean" in p.stdout


def test_reprice_cheaper_model_lowers_cost(traffic, tmp_path):
    cat, log, text = traffic
    cheaper = tmp_path / "cheaper.conf"
    cheaper.write_text(text + "llmroute_model cheap mid-lite tier=moderate "
                       "input=0.30 output=1.20 context=128k tools json "
                       "vision;\n")
    rc, out, err = reprice_json("--old", cat, "--new", cheaper, "--log", log,
                                "--max-increase", "0%")
    assert rc == 0, err
    assert Decimal(out["after_usd"]) < Decimal(out["before_usd"])
    assert out["difference_usd"].startswith("-")
    assert out["increase_pct"] < 0 and out["mean_increase_pct"] < 0
    tos = {c["to"] for c in out["changed_requests"]}
    assert tos == {"cheap/mid-lite"}
    froms = {c["from"] for c in out["changed_requests"]}
    # moderate and vision traffic, and the complex tier keeps big-1
    assert "premium/mid-1" in froms and "premium/big-1" not in froms
    by_model = {r["key"]: r for r in out["by_model"]}
    assert by_model["cheap/mid-lite"]["requests_before"] == 0
    assert by_model["cheap/mid-lite"]["requests_after"] == len(
        out["changed_requests"])


def test_reprice_bad_input(tool, tmp_path):
    cat = tmp_path / "c.conf"
    cat.write_text(CATALOG.format(port=1))
    log = tmp_path / "a.log"
    log.write_text('{"request_id":"r1","provider":"cheap","model":"small-1",'
                   '"prompt_tokens":"1","completion_tokens":"1",'
                   '"cached_tokens":"0","cost_usd":"0.000000500"}\n')
    p = reprice("--old", cat, "--new", cat, "--log", log)
    assert p.returncode == 7
    assert "a.log:1: no \"route_facts\"" in p.stderr
    log.write_text("not json\n")
    p = reprice("--old", cat, "--new", cat, "--log", log)
    assert p.returncode == 7 and "a.log:1: not a JSON object" in p.stderr
    p = reprice("--old", cat, "--new", cat, "--log", log,
                "--max-increase", "ten")
    assert p.returncode == 1 and "invalid --max-increase" in p.stderr
    p = reprice("--old", cat, "--log", log)
    assert p.returncode == 1 and "needs --old" in p.stderr
    p = reprice("--old", tmp_path / "missing.conf", "--new", cat,
                "--log", log)
    assert p.returncode == 2 and "missing.conf" in p.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("llmroute_provider p http://x;\n"
                   "llmroute_model p m tier=simple input=abc output=1;\n")
    p = reprice("--old", bad, "--new", cat, "--log", log)
    assert p.returncode == 2 and "bad.conf:2: invalid" in p.stderr
    log.write_text('{"request_id":"r1","provider":"gone","model":"x-1",'
                   '"prompt_tokens":"1","completion_tokens":"1",'
                   '"cached_tokens":"0","cost_usd":"0.1",'
                   '"route_facts":"tier=simple est=1"}\n')
    p = reprice("--old", cat, "--new", cat, "--log", log)
    assert p.returncode == 7 and "gone/x-1 is not in" in p.stderr


SAMPLE = REPO_ROOT / "t" / "data" / "reprice-sample.log"
EXAMPLE = REPO_ROOT / "conf.d" / "catalog-example.conf"


def sample_bodies():
    """(tier header, region, body) for the committed sample log."""
    tools = [{"type": "function", "function": {"name": "f",
                                               "parameters": {}}}]
    image = [{"type": "text", "text": "what is it"},
             {"type": "image_url",
              "image_url": {"url": "data:image/png;base64,AAAA"}}]
    return [
        ("simple", "", chat_body("rename this variable")),
        ("simple", "", chat_body("list files", tools=tools)),
        ("moderate", "", chat_body("write a unit test", tools=tools)),
        ("moderate", "eu", chat_body("review this diff", max_tokens=800)),
        ("moderate", "", chat_body(image)),
        ("complex", "", chat_body("design a sharded queue", tools=tools)),
        ("complex", "eu", chat_body("diagnose this deadlock")),
        ("simple", "ap", chat_body("from asia")),
        ("simple", "", chat_body("pinned", model="anthropic/"
                                 "claude-haiku-4-5")),
        ("simple", "", chat_body("json", response_format={
            "type": "json_object"})),
    ]


def test_reprice_committed_sample(tool, nginx, tmp_path):
    """The CI step of README ("Cost regression check") on the committed
    sample: the catalog against itself is exact.  LLMROUTE_WRITE_SAMPLE=1
    regenerates the sample through nginx from conf.d/catalog-example.conf
    (providers pointed at a mock)."""
    import os
    import re
    if os.environ.get("LLMROUTE_WRITE_SAMPLE") == "1":
        mock = nginx(MOCK, module=None, worker_processes=1)
        cat = tmp_path / "catalog.conf"
        cat.write_text(re.sub(r"https://[^ \n]+",
                              "http://127.0.0.1:%d/p" % mock.port,
                              EXAMPLE.read_text()))
        keys = {"DEEPSEEK_API_KEY": KEYS["TEST_KEY_A"],
                "OPENAI_API_KEY": KEYS["TEST_KEY_A"],
                "ANTHROPIC_API_KEY": KEYS["TEST_KEY_B"]}
        gw = nginx(GATEWAY, vars={"LOG_JSON": LOG_JSON, "CATALOG": cat},
                   env_vars=keys)
        bodies = sample_bodies()
        for i in range(300):
            tier, region, body = bodies[i % len(bodies)]
            h = {"X-LLMRoute-Tier": tier,
                 "X-Team": ("team-a", "team-b", "team-c")[i % 3]}
            if region:
                h["X-Region"] = region
            assert post_json(gw.port, CHAT, body, headers=h).status == 200
        gw.json_log("llmroute.log", 300)
        gw.stop()
        SAMPLE.parent.mkdir(exist_ok=True)
        SAMPLE.write_text((gw.prefix / "logs" / "llmroute.log").read_text())

    rc, out, err = reprice_json("--old", EXAMPLE, "--new", EXAMPLE,
                                "--log", SAMPLE, "--max-increase", "10%")
    assert rc == 0, err
    assert out["requests"] == 300 and out["changed"] == 0
    assert out["difference_usd"] == "0.000000000"
    assert len({r["key"] for r in out["by_model"]}) >= 4


def test_cost_gate_script(tmp_path):
    """scripts/cost-gate.sh (the CI step): silent when conf.d/ did not
    change, exit 1 when a catalog change makes the sample cost more."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)],
                   check=True)
    gate = clone / "scripts" / "cost-gate.sh"
    p = subprocess.run([str(gate)], env=dict(os.environ, BASE="HEAD"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "conf.d/ unchanged" in p.stdout, p.stderr
    example = clone / "conf.d" / "catalog-example.conf"
    text = example.read_text()
    example.write_text(text.replace("input=1.25 output=10.00",
                                    "input=2.50 output=20.00"))
    assert example.read_text() != text
    p = subprocess.run([str(gate)], env=dict(os.environ, BASE="HEAD"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL: --max-increase 10.000% exceeded" in p.stdout


def test_reprice_escalated_request(routed, tmp_path, tool):
    """An escalated request: the first answer (prior=) is paid as logged on
    both sides; the answer that was kept is repriced."""
    from llmroute_harness import CATALOG as STANDARD, expand
    r = routed(http_extra="include %s;" % LOG_JSON,
               location_extra="llmroute_escalate on; "
                              "access_log logs/llmroute.log llmroute_json;")
    r.cheap.default = {"mode": "ok", "finish_reason": "length",
                       "content": "cut sho",
                       "usage": {"prompt_tokens": 100,
                                 "completion_tokens": 50}}
    r.premium.default = {"mode": "ok", "content": "a full answer",
                         "usage": {"prompt_tokens": 100,
                                   "completion_tokens": 10}}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 200 and resp.header("X-LLMRoute-Escalated") == "1"
    (line,) = r.ngx.json_log("llmroute.log", 1)
    assert "prior=30000" in line["route_facts"]     # small-1: 100x100+50x400
    assert "tier=moderate" in line["route_facts"]
    log = r.ngx.prefix / "logs" / "llmroute.log"
    cat = tmp_path / "standard.conf"
    cat.write_text(expand(STANDARD, {"CHEAP_URL": "http://127.0.0.1:1/c",
                                     "PREMIUM_URL": "http://127.0.0.1:1/p"}))
    rc, out, err = reprice_json("--old", cat, "--new", cat, "--log", log)
    assert rc == 0, err
    assert out["before_usd"] == out["logged_usd"] == line["cost_usd"]
    assert out["difference_usd"] == "0.000000000"
    doubled = tmp_path / "doubled.conf"
    doubled.write_text(cat.read_text().replace(
        "input=1.00 output=4.00", "input=2.00 output=8.00"))
    rc, out, err = reprice_json("--old", cat, "--new", doubled, "--log", log)
    assert rc == 0, err
    # 30000 as logged + mid-1 at the new price: 100x2000 + 10x8000
    assert out["after_usd"] == "0.000310000"


# ------------------------------------------------ both wire formats, cache

BOTH_CATALOG = """
llmroute_provider oa     {oa} key_env=TEST_KEY_A;
llmroute_provider acheap {ac} key_env=TEST_KEY_A format=anthropic;
llmroute_provider aprem  {ap} key_env=TEST_KEY_B format=anthropic;
llmroute_model oa     oa-small  tier=simple  input=0.20 output=0.80 cached_input=0.05 context=128k tools json;
llmroute_model oa     oa-big    tier=complex input=2.00 output=8.00 cached_input=0.50 context=200k tools json vision;
llmroute_model acheap glm-small tier=simple  input=0.10 output=0.40 cached_input=0.01 context=200k tools;
llmroute_model aprem  opus-big  tier=complex input=3.00 output=15.00 cached_input=0.30 cache_write=3.75 context=200k tools vision;
"""

BOTH_GATEWAY = r"""
    include %%LOG_JSON%%;
    llmroute_zone llmroute:1m;
    include %%CATALOG%%;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            llmroute on;
            proxy_pass $llmroute_url$is_args$args;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_set_header x-api-key $llmroute_x_api_key;
            proxy_http_version 1.1;
            access_log logs/llmroute.log llmroute_json;
        }
    }
"""


@pytest.fixture
def both_formats(nginx, tmp_path, tool):
    """A log of OpenAI and Anthropic requests through one gateway, the
    Anthropic answers with cache reads and writes: (catalog path, catalog
    text, log path, records)."""
    from mock_anthropic import MockAnthropic
    from mock_provider import MockProvider
    mocks = [MockProvider("oa"), MockAnthropic("acheap"),
             MockAnthropic("aprem")]
    try:
        oa, ac, ap = mocks
        text = BOTH_CATALOG.format(oa=oa.url, ac=ac.url, ap=ap.url)
        cat = tmp_path / "both.conf"
        cat.write_text(text)
        gw = nginx(BOTH_GATEWAY, vars={"LOG_JSON": LOG_JSON, "CATALOG": cat})
        n = 0
        for i in range(8):
            ac.default = ap.default = {"mode": "ok", "usage": {
                "input_tokens": 11 + 7 * i, "output_tokens": 5 + 13 * i,
                "cache_read_input_tokens": 100 * i,
                "cache_creation_input_tokens": 1000 + 37 * i}}
            oa.default = {"mode": "ok", "usage": {
                "prompt_tokens": 300 + 11 * i, "completion_tokens": 9 + i,
                "cached_tokens": 50 * i}}
            for tier in ("simple", "complex"):
                h = {"X-LLMRoute-Tier": tier}
                r = post_json(gw.port, "/v1/messages", {
                    "model": "auto", "max_tokens": 256,
                    "messages": [{"role": "user", "content": "hi %d" % i}]},
                    headers=dict(h, **{"anthropic-version": "2023-06-01"}))
                assert r.status == 200, r
                r = post_json(gw.port, CHAT, chat_body("hi %d" % i),
                              headers=h)
                assert r.status == 200, r
                n += 2
            # pinned: stays where it is whatever the new catalog offers
            r = post_json(gw.port, "/v1/messages", {
                "model": "opus-big", "max_tokens": 64,
                "messages": [{"role": "user", "content": "pinned %d" % i}]},
                headers={"anthropic-version": "2023-06-01"})
            assert r.status == 200, r
            n += 1
        recs = gw.json_log("llmroute.log", n)
        log = gw.prefix / "logs" / "llmroute.log"
        yield cat, text, log, recs
    finally:
        for m in mocks:
            m.close()


def facts_of(rec):
    return dict(kv.split("=", 1) for kv in rec["route_facts"].split())


def test_reprice_both_formats_same_catalog_is_exact(both_formats):
    cat, _, log, recs = both_formats
    anth = [r for r in recs if r["provider"] in ("acheap", "aprem")]
    oai = [r for r in recs if r["provider"] == "oa"]
    assert len(anth) == 24 and len(oai) == 16
    assert {r["model"] for r in anth} == {"glm-small", "opus-big"}
    assert {r["model"] for r in oai} == {"oa-small", "oa-big"}
    # the log carries the format and the cache writes
    assert {facts_of(r)["format"] for r in anth} == {"anthropic"}
    assert {facts_of(r)["format"] for r in oai} == {"openai"}
    assert {facts_of(r)["cache_write"] for r in oai} == {"0"}
    writes = [int(facts_of(r)["cache_write"]) for r in anth]
    assert min(writes) >= 1000 and len(set(writes)) == 8
    assert any(int(r["cached_tokens"]) > 0 for r in anth)

    rc, out, err = reprice_json("--old", cat, "--new", cat, "--log", log,
                                "--max-increase", "0%")
    assert rc == 0, err
    assert out["requests"] == len(recs)
    assert out["difference_usd"] == "0.000000000"
    assert out["changed"] == 0 and out["logged_mismatches"] == 0
    # before = the log's own $llmroute_cost, to the nano-dollar, cache
    # writes at cache_write= (opus-big) and at the default 1.25 x input
    assert Decimal(out["before_usd"]) == usd_sum(recs)
    assert out["before_usd"] == out["logged_usd"] == out["after_usd"]
    by_model = {r["key"]: r for r in out["by_model"]}
    for key, model in (("aprem/opus-big", "opus-big"),
                       ("acheap/glm-small", "glm-small")):
        assert Decimal(by_model[key]["before_usd"]) == usd_sum(
            r for r in recs if r["model"] == model)


def test_reprice_keeps_each_request_in_its_format(both_formats, tmp_path):
    cat, text, log, recs = both_formats
    by_id = {r["request_id"]: r for r in recs}
    pinned = {r["request_id"] for r in recs
              if facts_of(r)["pin"] == "opus-big"}
    assert len(pinned) == 8

    def moved_by(model_line):
        """requests that move to a far cheaper model for every tier"""
        new = tmp_path / "cheaper.conf"
        new.write_text(text + model_line + " tier=complex input=0.001 "
                       "output=0.001 cached_input=0.001 cache_write=0.001 "
                       "context=200k tools json vision;\n")
        rc, out, err = reprice_json("--old", cat, "--new", new, "--log", log)
        assert rc == 0, err
        assert Decimal(out["after_usd"]) < Decimal(out["before_usd"])
        assert not pinned & {c["request_id"] for c in out["changed_requests"]}
        return out["changed_requests"]

    # an OpenAI-format one: OpenAI requests move to it, Anthropic never do
    changed = moved_by("llmroute_model oa oa-lite")
    assert {c["to"] for c in changed} == {"oa/oa-lite"}
    assert {by_id[c["request_id"]]["provider"] for c in changed} == {"oa"}
    assert len(changed) == 16

    # an Anthropic-format one: the other way round, pins kept
    changed = moved_by("llmroute_model acheap claude-lite")
    assert {c["to"] for c in changed} == {"acheap/claude-lite"}
    assert {by_id[c["request_id"]]["provider"] for c in changed} == {
        "acheap", "aprem"}
    assert len(changed) == 16
    # the cache writes are priced at the new model's cache_write=
    for c in changed:
        rec = by_id[c["request_id"]]
        prompt = int(rec["prompt_tokens"])
        comp = int(rec["completion_tokens"])
        assert c["after_usd"] == "%d.%09d" % divmod(
            (prompt + comp) * 1, 10 ** 9)


def test_reprice_log_without_format_is_openai(tool, tmp_path):
    """A log from before format= and cache_write= were logged replays as
    OpenAI traffic, its cache writes none."""
    cat = tmp_path / "both.conf"
    cat.write_text(BOTH_CATALOG.format(oa="http://127.0.0.1:1/o",
                                       ac="http://127.0.0.1:1/a",
                                       ap="http://127.0.0.1:1/p"))
    new = tmp_path / "new.conf"
    new.write_text(cat.read_text() + "llmroute_model acheap claude-lite "
                   "tier=complex input=0.001 output=0.001 context=200k;\n")
    log = tmp_path / "old.log"
    log.write_text('{"request_id":"r1","provider":"oa","model":"oa-small",'
                   '"prompt_tokens":"100","completion_tokens":"10",'
                   '"cached_tokens":"0","cost_usd":"0.000028000",'
                   '"route_facts":"tier=simple est=90 max=-1 caps=- pin=- '
                   'region=- excl=- prior=0"}\n')
    rc, out, err = reprice_json("--old", cat, "--new", new, "--log", log)
    assert rc == 0, err
    assert out["logged_mismatches"] == 0 and out["changed"] == 0
    assert out["after_usd"] == out["before_usd"] == "0.000028000"
    log.write_text(log.read_text().replace("prior=0", "prior=0 format=soap"))
    p = reprice("--old", cat, "--new", new, "--log", log)
    assert p.returncode == 7 and "invalid \"route_facts\"" in p.stderr
