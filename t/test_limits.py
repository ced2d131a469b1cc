"""Limits, budgets, cooldowns and the circuit breaker (SPEC "Failures" and
"Accounting"; ngx_http_llmroute_limits.c), through a real nginx with two
workers:

- llmroute_client KEY rpm= tpm= budget= degrade: 401 for an empty key,
  429 rate_limit_exceeded, 402 budget_exceeded, degrading to a cheaper tier;
- llmroute_provider rpm= tpm= concurrency=: a provider at its limit is
  skipped for the next cheapest one, 503 when none is left;
- cooldown after a provider's Retry-After, the 5-failure circuit breaker
  and its one-probe-at-a-time half-open state;
- all of it in the shared zone: exact under concurrency across workers,
  kept across `nginx -s reload`.

rpm/tpm are per rolling minute (the current second and the 59 before it):
no test waits for the window to roll, they count admissions instead.  Each
test has its own nginx, hence a fresh zone.

Prices (USD per 1M tokens) in nano-USD per token: small-1 100 in / 400 out
/ 10 cached; mid-1 1000 / 4000; big-1 3000 / 15000.
"""

import concurrent.futures
import email.utils
import socket
import threading
import time

import pytest

from llmroute_harness import (
    CATALOG, CHAT, KEY_A, assert_error, assert_routed, build_request,
    chat_body, get, post_json, request)
from mock_provider import close_all

# one line per request of the chat location: pid|status|provider|model|
# estimated cost|attempts ("-" where the module did not route)
LOG = ("log_format lim '$pid|$status|$llmroute_provider|$llmroute_model|"
       "$llmroute_est_cost|$llmroute_attempts';\n")
METRICS = "location = /metrics { llmroute_metrics; }"
RETRY = "llmroute_retries 1; proxy_connect_timeout 2s; proxy_read_timeout 5s;"

USAGE_1000 = {"prompt_tokens": 900, "completion_tokens": 100}


def catalog(cheap="", premium=""):
    """The standard catalog with extra parameters (rpm=, tpm=,
    concurrency=) on the cheap and premium provider lines."""
    out = CATALOG.replace("regions=us,eu;", "regions=us,eu %s;" % cheap)
    return out.replace("key_env=TEST_KEY_B;", "key_env=TEST_KEY_B %s;"
                       % premium)


@pytest.fixture
def lim(routed):
    """Factory: nginx with the standard catalog (or `catalog`), the `lim`
    access log and /metrics; `client` is the llmroute_client parameters
    (the key is $http_x_team), put in the location."""
    made = []

    def make(client=None, catalog=CATALOG, location="", server="", http=""):
        loc = "access_log logs/lim.log lim; " + location
        if client is not None:
            loc += " llmroute_client $http_x_team %s;" % client
        r = routed(catalog=catalog, http_extra=LOG + http,
                   server_extra=METRICS + " " + server, location_extra=loc)
        made.append(r)
        return r

    yield make
    close_all([m for r in made for m in (r.cheap, r.premium)])


def reconfigure(r, client):
    """Rewrite nginx.conf as lim(client) does (for a reload)."""
    r.write_config(http_extra=LOG, server_extra=METRICS, location_extra=(
        "access_log logs/lim.log lim; llmroute_client $http_x_team %s;"
        % client))


# ------------------------------------------------------------ helpers

def log_lines(r):
    path = r.ngx.prefix / "logs" / "lim.log"
    if not path.exists():
        return []
    return [line.split("|") for line in path.read_text().splitlines()]


def wait_logged(r, n, timeout=10.0):
    """Wait for n lines in lim.log.  nginx writes a request's line in the
    log phase, after the module settled its tokens and spend, so a request
    sent after this sees the counters of every logged one."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_lines(r)
        if len(lines) >= n or time.monotonic() > deadline:
            assert len(lines) >= n, lines
            return lines
        time.sleep(0.01)


def headers(team=None, tier="simple", extra=None):
    h = {}
    if tier:
        h["X-LLMRoute-Tier"] = tier
    if team:
        h["X-Team"] = team
    h.update(extra or {})
    return h


def send(r, team=None, tier="simple", body=None, extra=None, **kw):
    """One request (chat_body(**kw) unless `body`), returned once nginx has
    logged and so settled it."""
    n = len(log_lines(r))
    resp = post_json(r.port, CHAT, body if body is not None
                     else chat_body(**kw), headers(team, tier, extra))
    wait_logged(r, n + 1)
    return resp


def parallel(r, n, team=None, threads=8, **kw):
    """n requests from `threads` threads, each on a new connection; the
    responses once all are logged."""
    def one(_):
        return post_json(r.port, CHAT, chat_body(**kw), headers(team))
    before = len(log_lines(r))
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        out = list(ex.map(one, range(n)))
    wait_logged(r, before + n)
    return out


def metric(r, name, **labels):
    """Value of one Prometheus series from /metrics (None if absent)."""
    resp = get(r.port, "/metrics")
    assert resp.status == 200, resp
    want = sorted('%s="%s"' % kv for kv in labels.items())
    for line in resp.body.decode().splitlines():
        if line.startswith(name + "{"):
            lab, val = line[len(name) + 1:].rsplit("} ", 1)
            if sorted(lab.split(",")) == want:
                return float(val)
    return None


def cooldown(r, provider):
    return metric(r, "llmroute_provider_cooldown_seconds", provider=provider)


def nano(usd):
    """'0.000041200' (as $llmroute_est_cost prints it) -> 41200."""
    whole, frac = usd.split(".")
    assert len(frac) == 9, usd
    return int(whole) * 10 ** 9 + int(frac)


def retry_after(resp):
    ra = resp.header("Retry-After")
    assert ra is not None and ra.isdigit(), resp.headers
    return int(ra)


def assert_rate_limited(resp, limit=None):
    """429 rate_limit_exceeded from the module, with Retry-After; with the
    x-ratelimit-* request headers when the refusal is the client's rpm."""
    err = assert_error(resp, 429, "rate_limit_exceeded")
    assert err["type"] == "rate_limit_error", err
    assert 1 <= retry_after(resp) <= 61, resp.headers
    if limit is not None:
        assert resp.header("x-ratelimit-limit-requests") == str(limit), \
            resp.headers
        assert resp.header("x-ratelimit-remaining-requests") == "0", \
            resp.headers


def assert_no_ratelimit_headers(resp):
    names = {k.lower() for k, _ in resp.headers}
    assert not {n for n in names if n.startswith("x-ratelimit")}, \
        resp.headers


def assert_over_budget(resp):
    err = assert_error(resp, 402, "budget_exceeded")
    assert err["type"] == "insufficient_quota", err


def assert_no_provider(resp):
    assert_error(resp, 503, "no_provider_available")
    assert retry_after(resp) >= 1, resp.headers


def statuses(resps):
    out = {}
    for x in resps:
        out[x.status] = out.get(x.status, 0) + 1
    return out


# ------------------------------------------------------------ client key

def test_empty_client_key_is_401(lim):
    """llmroute_client evaluating to "" refuses with 401 invalid_api_key,
    before any provider is contacted."""
    r = lim("rpm=100")
    err = assert_error(send(r), 401, "invalid_api_key")
    assert err["type"] == "authentication_error", err
    assert_error(send(r, extra={"X-Team": ""}), 401, "invalid_api_key")
    assert r.provider_requests() == []
    assert_routed(send(r, "team-a"), "cheap", "small-1")
    assert metric(r, "llmroute_rejected_total",
                  reason="invalid_api_key") == 2


MAP = """
    map $http_authorization $llm_client {
        default "";
        "Bearer team-a-secret" team-a;
        "Bearer team-b-secret" team-b;
    }
"""


def test_client_key_from_map_at_server_level(lim):
    """The key may be a map over Authorization, the directive set at server
    level; unknown keys get 401, each known key has its own limit, and the
    client's secret never reaches the provider."""
    r = lim(http=MAP, server="llmroute_client $llm_client rpm=2;")

    def auth(secret):
        return send(r, extra={"Authorization": "Bearer " + secret})

    assert_error(auth("nope"), 401, "invalid_api_key")
    assert_error(send(r), 401, "invalid_api_key")     # no Authorization
    assert_routed(auth("team-a-secret"), "cheap", "small-1")
    assert_routed(auth("team-a-secret"), "cheap", "small-1")
    assert_rate_limited(auth("team-a-secret"), limit=2)
    assert_routed(auth("team-b-secret"), "cheap", "small-1")
    assert len(r.cheap.requests) == 3
    for got in r.cheap.requests:
        assert got.header_all("Authorization") == ["Bearer " + KEY_A]


# ------------------------------------------------------------ client rpm

def test_client_rpm(lim):
    """rpm=3: three requests pass (without x-ratelimit headers), the 4th
    gets 429 with Retry-After and x-ratelimit-*, and reaches no provider."""
    r = lim("rpm=3")
    for _ in range(3):
        resp = send(r, "team-a")
        assert_routed(resp, "cheap", "small-1")
        assert_no_ratelimit_headers(resp)
    for _ in range(2):
        assert_rate_limited(send(r, "team-a"), limit=3)
    assert len(r.cheap.requests) == 3 and r.premium.requests == []
    assert metric(r, "llmroute_rejected_total",
                  reason="rate_limit_exceeded") == 2


def test_client_rpm_set_at_http_level(lim):
    """llmroute_client at http level applies to the location."""
    r = lim(http="llmroute_client $http_x_team rpm=1;")
    assert_routed(send(r, "team-a"), "cheap", "small-1")
    assert_rate_limited(send(r, "team-a"), limit=1)


def test_clients_are_separate(lim):
    """One client at its limit does not limit another."""
    r = lim("rpm=2")
    for _ in range(2):
        assert send(r, "team-a").status == 200
    assert_rate_limited(send(r, "team-a"), limit=2)
    for _ in range(2):
        assert send(r, "team-b").status == 200
    assert_rate_limited(send(r, "team-b"), limit=2)
    assert_rate_limited(send(r, "team-a"), limit=2)
    assert len(r.cheap.requests) == 4


def test_refusals_do_not_count(lim):
    """The module's own refusals (400, 404, 405, 503 nothing eligible) do
    not use the client's requests; successful ones do."""
    r = lim("rpm=2")
    team = {"X-Team": "team-a", "Content-Type": "application/json"}
    assert_error(send(r, "team-a", body=b"{bad"), 400, "invalid_json")
    assert_error(send(r, "team-a", body=b"{}"), 400, "invalid_request")
    assert_error(send(r, "team-a", model="no-such-model"), 404,
                 "model_not_found")
    assert_error(send(r, "team-a", extra={"X-LLMRoute-Tier": "genius"}),
                 400, "invalid_request")
    assert_error(request(r.port, "GET", CHAT, None, team), 405,
                 "method_not_allowed")
    for _ in range(3):
        assert_no_provider(send(r, "team-a", max_tokens=500000))
    assert r.provider_requests() == []
    assert send(r, "team-a").status == 200
    assert send(r, "team-a").status == 200
    assert_rate_limited(send(r, "team-a"), limit=2)


def test_provider_errors_count(lim):
    """A request the module admitted counts even when the provider fails."""
    r = lim("rpm=2")
    r.cheap.script([{"mode": "status", "status": 500}])
    assert send(r, "team-a").status == 500
    assert send(r, "team-a").status == 200
    assert_rate_limited(send(r, "team-a"), limit=2)


def test_failover_counts_once_for_the_client(lim):
    """A request that failed over to a second provider is one request for
    the client's rpm."""
    r = lim("rpm=2", location=RETRY)
    r.cheap.script([{"mode": "status", "status": 500}])
    assert_routed(send(r, "team-a"), "premium", "mid-1", attempts="2")
    assert_routed(send(r, "team-a"), "cheap", "small-1", attempts="1")
    assert_rate_limited(send(r, "team-a"), limit=2)


# ------------------------------------------------------------ client tpm

def test_client_tpm_counts_actual_usage(lim):
    """tpm=1000: each request reserves its estimate (prompt + max_tokens)
    and is corrected to the provider's usage when it ends -- three
    600-token estimates fit when each used 20 tokens; a request that used
    1000 fills the window, and the next one gets 429."""
    r = lim("tpm=1000")
    r.cheap.default = {"mode": "ok", "usage": {"prompt_tokens": 10,
                                                "completion_tokens": 10}}
    for _ in range(3):
        assert_routed(send(r, "team-a", max_tokens=600), "cheap", "small-1")
    r.cheap.default = {"mode": "ok", "usage": USAGE_1000}
    assert send(r, "team-a", max_tokens=1).status == 200     # now 1060
    assert_rate_limited(send(r, "team-a", max_tokens=1))
    assert send(r, "team-b", max_tokens=1).status == 200
    assert len(r.cheap.requests) == 5


@pytest.mark.parametrize("tier,kw", [
    ("simple", {"max_tokens": 2000}),         # max_tokens
    ("complex", {}),                          # complex tier default: 4096
], ids=["max_tokens", "tier_default"])
def test_client_tpm_estimate_includes_output_budget(lim, tier, kw):
    """tpm=1000 with 19 tokens used: a request whose estimate (prompt +
    output budget: max_tokens, else the tier's default) is over 981 tokens
    gets 429.  (Regression: the code committed up to 1a44d2a checked
    the client's tpm before the output budget was known, i.e. the prompt
    only.)"""
    r = lim("tpm=1000")
    assert send(r, "team-a", max_tokens=1).status == 200    # 19 tokens
    resp = send(r, "team-a", tier=tier, **kw)
    assert_rate_limited(resp)
    assert len(r.provider_requests()) == 1


def test_client_tpm_released_after_all_providers_failed(lim):
    """A request that ends in 502 used no tokens: it leaves the client's
    tpm window empty again.  (Regression: the code committed up to
    1a44d2a lost the client's reservation when the failed attempt was
    released for the failover, and never gave the tokens back.)"""
    r = lim("tpm=1000", location=RETRY)
    r.cheap.script([{"mode": "status", "status": 500}])
    r.premium.script([{"mode": "status", "status": 500}])
    resp = send(r, "team-a", max_tokens=990)
    assert_error(resp, 502, "all_providers_failed")
    assert len(r.provider_requests()) == 2
    # window at 0: admitted whatever its estimate (a correct window is 0,
    # the leaked one holds the 990+ token estimate)
    assert_routed(send(r, "team-a", max_tokens=1), "cheap", "small-1")


# ------------------------------------------------------------ budgets

def test_budget_admits_while_estimate_fits(lim):
    """budget=0.001/hour (1,000,000 nano-USD): a request is admitted iff
    spend + its estimate <= budget, exactly at the boundary; the spend is
    what the provider's usage cost."""
    r = lim("budget=0.001/hour")
    # the estimate of this body on small-1, learned from another client
    assert send(r, "probe", max_tokens=100).status == 200
    est = nano(log_lines(r)[-1][4])
    assert est % 100 == 0 and 40000 < est < 50000, est   # p*100 + 100*400
    # spend to exactly budget - est, then 100 nano-USD more
    r.cheap.script([
        {"mode": "ok", "usage": {"prompt_tokens": (10 ** 6 - est) // 100,
                                 "completion_tokens": 0}},
        {"mode": "ok", "usage": {"prompt_tokens": 1,
                                 "completion_tokens": 0}}])
    assert send(r, "team-a", max_tokens=100).status == 200
    resp = send(r, "team-a", max_tokens=100)       # spend + est == budget
    assert_routed(resp, "cheap", "small-1")
    assert_over_budget(send(r, "team-a", max_tokens=100))  # 100 over
    assert len(r.cheap.requests) == 3
    assert send(r, "team-b", max_tokens=100).status == 200
    assert metric(r, "llmroute_rejected_total",
                  reason="budget_exceeded") == 1


def test_budget_settles_cached_tokens(lim):
    """Spend is (prompt - cached) * input + cached * cached_input +
    completion * output: 10000 cached prompt tokens on small-1 cost
    100,000 nano-USD, so a 500,000 budget admits exactly 5 such requests
    (1 if cached tokens cost the input price, all if they were free)."""
    r = lim("budget=0.0005/month")
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 10000, "cached_tokens": 10000,
        "completion_tokens": 0}}
    got = [send(r, "team-a", max_tokens=1).status for _ in range(7)]
    assert got == [200] * 5 + [402] * 2, got
    assert len(r.cheap.requests) == 5


def test_budget_exact_under_concurrency(lim):
    """Budget reservations are made under the zone mutex: with room for 5
    estimates (and a half), 8 concurrent slow requests admit exactly 5."""
    r = lim("budget=1/month")
    assert send(r, "probe", max_tokens=100).status == 200
    est = nano(log_lines(r)[-1][4])
    budget = 5 * est + est // 2
    reconfigure(r, "budget=%d.%09d/month" % divmod(budget, 10 ** 9))
    assert r.ngx.reload()
    r.cheap.default = {"mode": "delay", "delay": 1.0, "usage": {
        "prompt_tokens": 0, "completion_tokens": 0}}
    out = parallel(r, 8, team="team-a", max_tokens=100)
    assert statuses(out) == {200: 5, 402: 3}
    assert len(r.cheap.requests) == 1 + 5
    # they cost nothing in the end: the reservations are given back
    assert send(r, "team-a", max_tokens=100).status == 200


def test_budget_without_degrade_refuses(lim):
    """budget=0.01/day: a complex request whose big-1 estimate (1000 output
    tokens at 15 USD/1M = 0.015) exceeds the budget is refused with 402;
    a moderate one (mid-1, ~0.004) passes."""
    r = lim("budget=0.01/day")
    assert_over_budget(send(r, "team-a", tier="complex", max_tokens=1000))
    assert r.provider_requests() == []
    assert_routed(send(r, "team-a", tier="moderate", max_tokens=1000),
                  "premium", "mid-1")


def test_budget_degrade(lim):
    """budget=0.01/day degrade: an auto request whose model does not fit
    drops tier by tier to the first model whose estimate fits; a pinned
    model is not degraded (402); nothing fits -> 402."""
    r = lim("budget=0.01/day degrade")
    # big-1 (>= 15,000,000) does not fit: mid-1 (~4,000,000) does
    resp = send(r, "team-a", tier="complex", max_tokens=1000)
    assert_routed(resp, "premium", "mid-1")
    assert r.premium.last.json()["model"] == "mid-1"
    # that one cost 1500 * 4000 = 6,000,000: mid-1 no longer fits
    r.premium.script([{"mode": "ok", "usage": {"prompt_tokens": 0,
                                               "completion_tokens": 1500}}])
    assert send(r, "team-a", tier="moderate", max_tokens=1000).status == 200
    assert_over_budget(send(r, "team-a", model="mid-1", max_tokens=1000))
    assert_over_budget(send(r, "team-a", model="premium/big-1",
                            max_tokens=1000))
    # ... but small-1 (~400,000) does
    resp = send(r, "team-a", tier="complex", max_tokens=1000)
    assert_routed(resp, "cheap", "small-1")
    # spend it all: 10000 * 400 = 4,000,000 more, 10,000,000 in total
    r.cheap.script([{"mode": "ok", "usage": {"prompt_tokens": 0,
                                             "completion_tokens": 10000}}])
    assert send(r, "team-a", tier="simple", max_tokens=1000).status == 200
    assert_over_budget(send(r, "team-a", tier="complex", max_tokens=1000))
    assert_over_budget(send(r, "team-a", tier="simple", max_tokens=1))
    assert len(r.premium.requests) == 2 and len(r.cheap.requests) == 2


# ------------------------------------------------------------ providers

def test_provider_rpm_skips_to_next_cheapest(lim):
    """cheap rpm=3, premium rpm=2: simple requests go to cheap three times,
    then to premium/mid-1 twice, then 503 no_provider_available."""
    r = lim(catalog=catalog(cheap="rpm=3", premium="rpm=2"))
    for _ in range(3):
        assert_routed(send(r), "cheap", "small-1", "simple")
    for _ in range(2):
        assert_routed(send(r), "premium", "mid-1", "simple")
    assert_no_provider(send(r))
    assert len(r.cheap.requests) == 3 and len(r.premium.requests) == 2


def test_provider_tpm(lim):
    """cheap tpm=1000: the estimate (prompt + max_tokens) must fit what is
    left, and it is corrected to the actual usage at the end."""
    r = lim(catalog=catalog(cheap="tpm=1000"))
    r.cheap.script([
        {"mode": "ok", "usage": {"prompt_tokens": 10,
                                 "completion_tokens": 10}},
        {"mode": "ok", "usage": USAGE_1000}])
    assert_routed(send(r, max_tokens=800), "cheap", "small-1")   # 20 used
    # 20 + 2000+: does not fit
    assert_routed(send(r, max_tokens=2000), "premium", "mid-1")
    # 20 + 800+ fits: the first 800 were given back
    assert_routed(send(r, max_tokens=800), "cheap", "small-1")   # 1020 used
    assert_routed(send(r, max_tokens=1), "premium", "mid-1")
    assert len(r.cheap.requests) == 2


def test_provider_concurrency(lim):
    """concurrency=1: while cheap holds a slow request, the next goes to
    premium; both busy -> 503; a finished request frees its slot."""
    r = lim(catalog=catalog(cheap="concurrency=1", premium="concurrency=1"))
    r.cheap.script([{"mode": "delay", "delay": 1.5}])
    r.premium.script([{"mode": "delay", "delay": 1.5}])
    out = {}

    def slow(name):
        out[name] = post_json(r.port, CHAT, chat_body(), headers())

    a = threading.Thread(target=slow, args=("a",))
    a.start()
    assert r.cheap.wait_requests(1)
    b = threading.Thread(target=slow, args=("b",))
    b.start()
    assert r.premium.wait_requests(1)
    assert_no_provider(post_json(r.port, CHAT, chat_body(), headers()))
    a.join()
    b.join()
    assert_routed(out["a"], "cheap", "small-1")
    assert_routed(out["b"], "premium", "mid-1")
    wait_logged(r, 3)
    assert_routed(send(r), "cheap", "small-1")
    assert len(r.cheap.requests) == 2 and len(r.premium.requests) == 1


def test_failover_frees_concurrency_slot(lim):
    """concurrency=1: the slot of an attempt that failed over is free again
    at once, not held until the request ends."""
    r = lim(catalog=catalog(cheap="concurrency=1"), location=RETRY)
    r.cheap.script([{"mode": "status", "status": 500}])
    assert_routed(send(r), "premium", "mid-1", attempts="2")
    for _ in range(2):
        assert_routed(send(r), "cheap", "small-1", attempts="1")


# ------------------------------------------------------------ cooldown

def http_date(seconds_from_now):
    return email.utils.formatdate(time.time() + seconds_from_now,
                                  usegmt=True)


@pytest.mark.parametrize("status,retry", [
    (429, "30"), (503, "30"), (429, "date")])
def test_retry_after_cools_down_every_worker(lim, status, retry):
    """A provider's 429 (or 503) with Retry-After: N (seconds or an HTTP
    date) fails over and cools the provider down for N s in every worker:
    many requests on new connections, served by both workers, skip it."""
    r = lim(location=RETRY)
    r.cheap.script([{"mode": "status", "status": status,
                     "retry_after": http_date(30) if retry == "date"
                     else retry}])
    assert_routed(send(r), "premium", "mid-1", attempts="2")
    assert 25 <= cooldown(r, "cheap") <= 30
    assert cooldown(r, "premium") == 0
    for x in parallel(r, 40, threads=4):
        assert_routed(x, "premium", "mid-1", attempts="1")
    assert len(r.cheap.requests) == 1
    assert len({line[0] for line in log_lines(r)}) == 2, "one worker only"


def test_cooldown_ends(lim):
    """Retry-After: 2 -> the provider is skipped, then used again once the
    two seconds are over (the metric goes back to 0)."""
    r = lim(location=RETRY)
    r.cheap.script([{"mode": "status", "status": 429, "retry_after": "2"}])
    assert_routed(send(r), "premium", "mid-1", attempts="2")
    assert_routed(send(r), "premium", "mid-1", attempts="1")
    assert 1 <= cooldown(r, "cheap") <= 2
    time.sleep(2.2)
    assert cooldown(r, "cheap") == 0
    assert_routed(send(r), "cheap", "small-1", attempts="1")


# ------------------------------------------------------------ circuit breaker

FAIL = {"mode": "status", "status": 500}


def test_circuit_opens_after_5_consecutive_failures(lim):
    """Five failures in a row (500, no Retry-After) open cheap's circuit:
    it is then skipped without being contacted, for 30 s."""
    r = lim(location=RETRY)
    r.cheap.default = FAIL
    for i in range(4):
        assert_routed(send(r), "premium", "mid-1", attempts="2")
        assert cooldown(r, "cheap") == 0, "open after %d failures" % (i + 1)
    assert_routed(send(r), "premium", "mid-1", attempts="2")
    assert len(r.cheap.requests) == 5
    assert 28 <= cooldown(r, "cheap") <= 30
    for x in parallel(r, 20, threads=4):
        assert_routed(x, "premium", "mid-1", attempts="1")
    assert len(r.cheap.requests) == 5
    assert metric(r, "llmroute_upstream_failures_total",
                  provider="cheap", reason="5xx") == 5


def test_success_resets_failure_count(lim):
    """Only consecutive failures count: 4 failures, a success, 4 failures
    leave the circuit closed."""
    r = lim(location=RETRY)
    r.cheap.script([FAIL] * 4 + ["ok"] + [FAIL] * 4)
    for i in range(9):
        resp = send(r)
        if i == 4:
            assert_routed(resp, "cheap", "small-1", attempts="1")
        else:
            assert_routed(resp, "premium", "mid-1", attempts="2")
    assert cooldown(r, "cheap") == 0
    assert_routed(send(r), "cheap", "small-1", attempts="1")
    assert len(r.cheap.requests) == 10


def test_circuit_half_open_one_probe(lim):
    """After the 30 s, one probe at a time goes to the provider (others
    keep going elsewhere while it runs); its success closes the circuit.
    Slow: waits for the 30 s cooldown."""
    r = lim(location=RETRY)
    r.cheap.script([FAIL] * 5)
    for _ in range(5):
        assert_routed(send(r), "premium", "mid-1", attempts="2")
    assert cooldown(r, "cheap") > 0
    deadline = time.monotonic() + 35
    while cooldown(r, "cheap") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    r.cheap.script([{"mode": "delay", "delay": 2.5}])
    out = {}
    probe = threading.Thread(target=lambda: out.setdefault(
        "probe", post_json(r.port, CHAT, chat_body(), headers())))
    probe.start()
    assert r.cheap.wait_requests(6)
    for _ in range(3):                   # the probe is still running
        assert_routed(send(r), "premium", "mid-1", attempts="1")
    probe.join()
    assert_routed(out["probe"], "cheap", "small-1", attempts="1")
    wait_logged(r, 9)
    for _ in range(3):                   # closed again
        assert_routed(send(r), "cheap", "small-1", attempts="1")
    assert len(r.cheap.requests) == 9


def test_client_aborts_do_not_open_circuit(lim):
    """Clients that hang up while the provider is still working (499) are
    not failures of the provider: its circuit stays closed."""
    r = lim()
    r.cheap.default = {"mode": "delay", "delay": 3}
    req = build_request(CHAT, chat_body(), headers())
    for i in range(5):
        with socket.create_connection(("127.0.0.1", r.port)) as s:
            s.sendall(req)
            assert r.cheap.wait_requests(i + 1)
        assert wait_logged(r, i + 1)[-1][1] == "499"
    r.cheap.default = {"mode": "ok"}
    assert cooldown(r, "cheap") == 0
    assert_routed(send(r), "cheap", "small-1")


# ------------------------------------------------------------ reload

def test_client_counters_survive_reload(lim):
    """Client rpm counts live in the zone: after a reload the client is
    still at its limit; raising rpm=3 to rpm=4 admits exactly one more
    (so the refused requests were not counted either)."""
    r = lim("rpm=3")
    for _ in range(3):
        assert send(r, "team-a").status == 200
    for _ in range(3):
        assert_rate_limited(send(r, "team-a"), limit=3)
    assert r.ngx.reload()
    for _ in range(2):
        assert_rate_limited(send(r, "team-a"), limit=3)
    reconfigure(r, "rpm=4")
    assert r.ngx.reload()
    assert send(r, "team-a").status == 200
    assert_rate_limited(send(r, "team-a"), limit=4)
    assert len(r.cheap.requests) == 4


def test_spend_survives_reload(lim):
    """Client spend lives in the zone: spent before a reload, refused
    after it."""
    r = lim("budget=0.001/month")
    r.cheap.script([{"mode": "ok", "usage": {"prompt_tokens": 0,
                                             "completion_tokens": 2000}}])
    assert send(r, "team-a", max_tokens=1).status == 200   # 800,000 spent
    assert r.ngx.reload()
    assert_over_budget(send(r, "team-a", max_tokens=1000))  # +400,000
    assert send(r, "team-b", max_tokens=1000).status == 200


def test_cooldown_survives_reload(lim):
    """A provider cooling down still is after a reload, in every worker."""
    r = lim(location=RETRY)
    r.cheap.script([{"mode": "status", "status": 429, "retry_after": "30"}])
    assert_routed(send(r), "premium", "mid-1", attempts="2")
    assert r.ngx.reload()
    assert 25 <= cooldown(r, "cheap") <= 30
    for x in parallel(r, 20, threads=4):
        assert x.status == 200 and x.header("X-LLMRoute-Provider") == \
            "premium", x
    assert len(r.cheap.requests) == 1


# ------------------------------------------------------------ concurrency

def test_client_rpm_exact_under_concurrency(lim):
    """rpm=20, 60 requests from 8 threads on both workers: exactly 20 are
    admitted (one decision at a time under the zone mutex)."""
    r = lim("rpm=20")
    out = parallel(r, 60, team="team-a")
    assert statuses(out) == {200: 20, 429: 40}
    for x in out:
        if x.status == 429:
            assert_rate_limited(x, limit=20)
    assert len(r.cheap.requests) == 20
    assert len({line[0] for line in log_lines(r)}) == 2, "one worker only"


def test_provider_rpm_exact_under_concurrency(lim):
    """cheap rpm=20, premium rpm=10, 60 concurrent requests: exactly 20 to
    cheap, 10 to premium, 30 refused with 503."""
    r = lim(catalog=catalog(cheap="rpm=20", premium="rpm=10"))
    out = parallel(r, 60)
    assert statuses(out) == {200: 30, 503: 30}
    assert len(r.cheap.requests) == 20 and len(r.premium.requests) == 10
    assert len({line[0] for line in log_lines(r)}) == 2, "one worker only"
