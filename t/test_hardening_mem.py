"""Second hardening pass, memory and locking (issue 14, items 1-5, 12, 13),
through a real nginx with two workers:

- client nodes in the zone are pinned while a request uses them: a flood
  of new clients into a small zone never evicts (and reuses) the node of
  a client whose stream is still open;
- no function called under the zone mutex takes it again (a zone full of
  clients and a reload that adds a provider used to hang the worker);
- the circuit breaker's half-open probe is released on every terminal
  state (a client that leaves before the provider answers);
- tokens x price saturates instead of wrapping; cooldowns are written
  under the mutex only;
- memory per request is bounded: a pathological body, a long stream.
"""

import concurrent.futures
import shutil
import signal
import socket
import threading
import time

import pytest

from llmroute_harness import (
    CATALOG, CHAT, assert_error, assert_routed, build_request, chat_body,
    get, post_json, stream_post)

# the `lim` fixture (nginx with the lim access log and /metrics) and its
# helpers are test_limits.py's
from test_limits import (  # noqa: F401
    LOG, METRICS, RETRY, headers as hdr, lim, log_lines, metric, send,
    wait_logged)

# sessions off: in 32 KB (a few slab pages) a session's page, pinned by
# the requests using it, would leave client nodes one page fewer
SMALL_ZONE = CATALOG.replace("llmroute_zone llmroute:1m;",
                             "llmroute_zone llmroute:32k; "
                             "llmroute_session off;")


def flood(r, n, prefix, threads=8):
    """n requests, each from a new client key."""
    def one(i):
        return post_json(r.port, CHAT, chat_body(),
                         hdr("%s-%d" % (prefix, i))).status
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, range(n)))


# ------------------------------------------------------------ item 1

def test_pinned_client_survives_a_flood_of_new_clients(lim):
    """Client A streams slowly while 1500 new clients arrive in a 32 KB
    zone (room for a few dozen nodes).  A's node is pinned by its open
    request: it is never evicted, so the spend A's stream settles lands
    in A's own node and A's budget still holds afterwards (a node evicted
    and reused would have lost it, or written it into another client)."""
    r = lim("budget=0.001/month", catalog=SMALL_ZONE)
    r.cheap.script([{"mode": "ok", "chunk_delay": 0.4,
                     "usage": {"prompt_tokens": 0,
                               "completion_tokens": 2000}}])
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("a", stream_post(
        r.port, CHAT, chat_body(stream=True, max_tokens=1), hdr("team-a"),
        timeout=60)))
    t.start()
    assert r.cheap.wait_requests(1)
    statuses = flood(r, 1500, "flood")
    assert set(statuses) == {200}, statuses[:20]
    t.join()
    assert out["a"].status == 200
    assert not out["a"].incomplete
    wait_logged(r, 1501)
    # 800,000 of 1,000,000 nano-USD spent: +400,000 more is refused
    assert_error(send(r, "team-a", max_tokens=1000), 402, "budget_exceeded")
    assert send(r, "team-b", max_tokens=1000).status == 200


# ------------------------------------------------------------ item 2

def test_full_zone_reload_adding_provider_does_not_hang(lim):
    """A zone full of clients, then a reload that adds a provider: its
    series cannot be allocated when the new workers start.  A request
    routed to it must be answered (it used to relock the zone mutex the
    worker already held: the worker hung forever)."""
    r = lim("rpm=1000", catalog=SMALL_ZONE)
    assert set(flood(r, 300, "fill")) == {200}
    third = r.premium
    extra = ("llmroute_provider third %s key_env=TEST_KEY_B;\n"
             "llmroute_model third extra-1 tier=simple input=0.01 "
             "output=0.01 context=16k;\n" % third.url)
    r.write_config(catalog=SMALL_ZONE + extra, http_extra=LOG,
                   server_extra=METRICS, location_extra=(
                       "access_log logs/lim.log lim; "
                       "llmroute_client $http_x_team rpm=1000;"))
    assert r.ngx.reload()
    for i in range(6):
        resp = post_json(r.port, CHAT, chat_body(model="extra-1"),
                         hdr("after-%d" % i), timeout=10)
        assert resp.status == 200, resp
        assert resp.header("X-LLMRoute-Provider") == "third"
    assert get(r.port, "/metrics", timeout=10).status == 200


# ------------------------------------------------------------ item 3

FAIL = {"mode": "status", "status": 500}


def test_probe_released_when_client_leaves(lim):
    """The circuit opens after 5 failures; after its 30 s the next request
    is the half-open probe.  Its client hangs up before the provider
    answers (499): the probe must be released, so a later request probes
    again and closes the circuit (it stayed excluded until a restart).
    Slow: waits for the 30 s."""
    r = lim(location=RETRY)
    r.cheap.script([FAIL] * 5)
    for _ in range(5):
        assert_routed(send(r), "premium", "mid-1", attempts="2")
    deadline = time.monotonic() + 40
    while metric(r, "llmroute_provider_cooldown_seconds",
                 provider="cheap") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    r.cheap.script([{"mode": "delay", "delay": 3}])
    n = len(log_lines(r))
    with socket.create_connection(("127.0.0.1", r.port)) as s:
        s.sendall(build_request(CHAT, chat_body(), hdr()))
        assert r.cheap.wait_requests(6)
    assert wait_logged(r, n + 1)[-1][1] == "499"
    assert_routed(send(r), "cheap", "small-1", attempts="1")
    assert_routed(send(r), "cheap", "small-1", attempts="1")


# ------------------------------------------------------------ item 4

def test_cost_saturates_instead_of_wrapping(lim):
    """A provider reporting absurd usage (10^16 tokens at $15/M) makes a
    product past 2^64 nano-USD: the cost saturates at the largest value
    the counters hold instead of wrapping to a small number."""
    r = lim()
    huge = {"prompt_tokens": 10 ** 16, "completion_tokens": 10 ** 16}
    r.premium.script([{"mode": "ok", "usage": huge}])
    resp = send(r, tier="complex")
    assert_routed(resp, "premium", "big-1", tier="complex")
    resp = get(r.port, "/metrics")
    line = [x for x in resp.body.decode().splitlines()
            if x.startswith('llmroute_cost_usd_total{provider="premium",'
                            'model="big-1"}')]
    assert line == ['llmroute_cost_usd_total{provider="premium",'
                    'model="big-1"} 9223372036.854775807'], line


# ------------------------------------------------------------ item 5

def peak_rss(ngx):
    """Peak resident set (VmHWM, kB) of each worker, by pid."""
    out = {}
    for pid in ngx.worker_pids():
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                out[pid] = int(line.split()[1])
    return out


def rss_growth(ngx, before):
    after = peak_rss(ngx)
    return max(after[p] - before.get(p, after[p]) for p in after)


def test_long_stream_memory_is_flat(lim):
    """A 100,000-event stream in strip mode (the client did not ask for
    usage, the module did and strips it): the module re-emits the stream
    through a few reused buffers, so a worker's peak memory grows by far
    less than the 20 MB the stream carries (it used to allocate a new
    buffer per upstream buffer for the whole stream)."""
    r = lim(location="llmroute_retries 0;")
    send(r)                            # warm both workers' pools up
    send(r)
    pieces = ["w%d " % i for i in range(100000)]
    r.cheap.script([{"mode": "ok", "pieces": pieces}])
    before = peak_rss(r.ngx)
    res = stream_post(r.port, CHAT, chat_body(stream=True), hdr(),
                      timeout=300)
    assert res.status == 200 and not res.incomplete
    data = res.data_events()
    assert len(data) == 100000 + 3, len(data)      # role, pieces, stop, DONE
    assert all('"prompt_tokens"' not in d for d in data[-3:])
    growth = rss_growth(r.ngx, before)
    print("100,000-event stream: worker peak RSS +%d kB" % growth)
    assert growth < 4096, "worker peak RSS grew by %d kB" % growth


def test_pathological_body_memory_is_bounded(lim):
    """A 4 MB body of [0,0,...] (2,000,000 JSON values): refused as too
    complex (over 262,144 values) with at most the body and the
    documented token bound in memory; the token array once reached
    40 MB.  The body stays in memory (client_body_buffer_size is raised
    to client_max_body_size in llmroute locations): no blocking read of
    a temp file."""
    r = lim(location="client_max_body_size 8m;")
    send(r)
    send(r)
    before = peak_rss(r.ngx)
    zeros = b"[" + b"0," * 2000000 + b"0]"
    body = (b'{"model":"auto","messages":[{"role":"user","content":"hi"}],'
            b'"x":' + zeros + b'}')
    assert len(body) > 4000000
    resp = post_json(r.port, CHAT, body, hdr(), timeout=60)
    assert_error(resp, 413, "request_too_large")
    growth = rss_growth(r.ngx, before)
    print("pathological 4 MB body: worker peak RSS +%d kB" % growth)
    assert "buffered to a temporary file" not in r.ngx.error_log()
    assert growth < 16 * 1024, "worker peak RSS grew by %d kB" % growth


# ------------------------------------------------------------ item 12

def test_llmroute_on_at_server_level_keeps_models_and_metrics(routed):
    """`llmroute on` in the server block is inherited by every location;
    /v1/models and the metrics location still answer their GET (they
    answered 405 method_not_allowed)."""
    r = routed(server_extra="llmroute on; "
               "location = /metrics { llmroute_metrics; }")
    assert post_json(r.port, CHAT, chat_body(), hdr()).status == 200
    models = get(r.port, "/v1/models")
    assert models.status == 200, models
    assert models.json()["object"] == "list"
    m = get(r.port, "/metrics")
    assert m.status == 200 and b"llmroute_requests_total" in m.body, m


def test_client_gone_during_body_is_not_invalid_json(lim):
    """A client that hangs up while sending its body is not a request the
    gateway refused as invalid JSON."""
    r = lim()
    head = build_request(CHAT, b"x" * 1000, hdr())[:-990]
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", r.port)) as s:
            s.sendall(head)
            time.sleep(0.1)
    wait_logged(r, 3)
    assert metric(r, "llmroute_rejected_total", reason="invalid_json") == 0
    assert r.cheap.requests == []


def test_variables_readable_by_name(routed):
    """SSI (like njs and Lua) finds variables by name at run time: the
    module's variables are hashed, except $llmroute_authorization, which
    holds a provider key."""
    r = routed(location_extra="ssi on; ssi_types application/json;")
    r.cheap.script([{"mode": "ok", "content":
                     "<!--# echo var='llmroute_provider' -->/"
                     "<!--# echo var='llmroute_model' -->/"
                     "<!--# echo var='llmroute_authorization' "
                     "default='hidden' -->"}])
    resp = post_json(r.port, CHAT, chat_body(), hdr())
    assert resp.status == 200, resp
    content = resp.json()["choices"][0]["message"]["content"]
    assert content == "cheap/small-1/hidden", content


def test_longest_model_id_in_metrics(lim):
    """A model id of the longest length nginx -t accepts (256) fits the
    metrics text of its series, every tier and status code included."""
    long_id = "m" * 256
    cat = CATALOG + ("llmroute_model cheap %s tier=complex input=0.1 "
                     "output=0.1 context=16k;\n" % long_id)
    r = lim(catalog=cat, location=RETRY)
    for tier in ("simple", "moderate", "complex"):
        assert send(r, tier=tier, model=long_id).status == 200
    r.cheap.default = {"mode": "status", "status": 500}
    r.premium.default = {"mode": "status", "status": 429}
    for tier in ("simple", "moderate", "complex"):
        send(r, tier=tier, model=long_id)
    text = get(r.port, "/metrics").body.decode()
    assert ('llmroute_cost_usd_total{provider="cheap",model="%s"}' % long_id
            in text), text[-2000:]


# ------------------------------------------------------------ item 13

def test_reload_removes_model_from_metrics(lim):
    """A model a reload takes out of the catalog is no longer in /metrics
    (its series stays in the zone: it resumes if the model comes back)."""
    extra = ("llmroute_model cheap gone-1 tier=simple input=0.1 "
             "output=0.1 context=16k;\n")
    r = lim(catalog=CATALOG + extra)
    assert send(r, model="gone-1").status == 200
    assert 'model="gone-1"' in get(r.port, "/metrics").body.decode()
    r.write_config(catalog=CATALOG, http_extra=LOG, server_extra=METRICS,
                   location_extra="access_log logs/lim.log lim;")
    assert r.ngx.reload()
    text = get(r.port, "/metrics").body.decode()
    assert 'model="gone-1"' not in text
    r.write_config(catalog=CATALOG + extra, http_extra=LOG,
                   server_extra=METRICS,
                   location_extra="access_log logs/lim.log lim;")
    assert r.ngx.reload()
    assert metric(r, "llmroute_requests_total", provider="cheap",
                  model="gone-1", tier="simple", code="200") == 1


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_config_price_edit_beats_live_price_until_version_moves(
        lim, tmp_path):
    """Precedence of a live Redis price and the configured one: the most
    recent wins.  A live price applies; a reload that edits the model's
    configured price takes over (it used to be overridden silently by the
    old live price); a new Redis price version applies again."""
    from redis_server import RedisServer
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        http = ("log_format costs '$llmroute_cost';\n"
                "llmroute_redis 127.0.0.1:%d sync=100ms;\n" % redis.port)
        loc = "access_log logs/cost.log costs;"
        r = lim(http=http, location=loc)
        r.cheap.default = {"mode": "ok", "usage": {
            "prompt_tokens": 1000000, "completion_tokens": 0}}
        path = r.ngx.prefix / "logs" / "cost.log"

        def cost():
            send(r)
            return path.read_text().split()[-1]

        def live(input_usd):
            redis.call("HSET", "{llmroute}:price:cheap/small-1", "input",
                       input_usd, "output", "0.40", "cached_input", "0.01")
            redis.call("INCR", "{llmroute}:prices:version")

        assert cost() == "0.100000000"          # configured 0.10
        live("5.00")
        deadline = time.monotonic() + 10
        while cost() != "5.000000000":
            assert time.monotonic() < deadline
        r.write_config(
            catalog=CATALOG.replace("input=0.10 output=0.40",
                                    "input=0.20 output=0.40"),
            http_extra=LOG + http, server_extra=METRICS,
            location_extra="access_log logs/lim.log lim; " + loc)
        assert r.ngx.reload()
        time.sleep(0.5)                         # a few sync intervals
        assert cost() == "0.200000000"
        live("7.00")
        deadline = time.monotonic() + 10
        while cost() != "7.000000000":
            assert time.monotonic() < deadline
    finally:
        redis.stop()


def redis_spend(redis):
    """Sum of the cluster spend keys ({llmroute}:s:<client>:<period>)."""
    total = 0
    for k in redis.call("KEYS", "{llmroute}:s:*"):
        if len(k.split(":")) == 4:
            total += int(redis.call("GET", k))
    return total


def nano_of(usd):
    whole, frac = usd.split(".")
    return int(whole) * 10 ** 9 + int(frac)


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_unconfirmed_batch_survives_reload(lim, tmp_path):
    """Redis stops answering after a batch of spend was sent, nginx
    reloads, and that Redis dies before it read the batch (a fresh one
    takes its place): the exiting sync worker hands its unconfirmed batch
    over through the zone and the new one re-sends it, so Redis gets every
    nano-dollar the access log billed since (the batch was dropped)."""
    from redis_server import RedisServer
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        http = ("log_format costs '$llmroute_cost';\n"
                "llmroute_client_hash key_env=TEST_CLIENT_SECRET;\n"
                "llmroute_redis 127.0.0.1:%d sync=100ms timeout=300ms;\n"
                % redis.port)
        loc = "access_log logs/cost.log costs;"
        r = lim("budget=1000/day", http=http, location=loc)
        r.cheap.default = {"mode": "ok", "usage": {
            "prompt_tokens": 1234, "completion_tokens": 567}}
        path = r.ngx.prefix / "logs" / "cost.log"

        def billed():
            return sum(nano_of(x) for x in path.read_text().split())

        def wait_spend(want):
            deadline = time.monotonic() + 10
            while redis_spend(redis) != want:
                assert time.monotonic() < deadline, (redis_spend(redis),
                                                     want)
                time.sleep(0.1)

        for _ in range(3):
            assert send(r, "team-a").status == 200
        wait_spend(billed())
        before = billed()
        redis.pause()
        for _ in range(3):
            assert send(r, "team-a").status == 200
        time.sleep(0.6)                 # batched, sent, never answered
        assert r.ngx.reload()
        redis.proc.send_signal(signal.SIGKILL)      # unread batch lost
        redis.proc.wait(10)
        redis.proc, redis.paused = None, False
        redis.start()
        wait_spend(billed() - before)
        time.sleep(0.5)                 # and not twice
        assert redis_spend(redis) == billed() - before
    finally:
        if redis.paused:
            redis.resume()
        redis.stop()
