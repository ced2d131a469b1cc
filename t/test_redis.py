"""Cluster state through Redis (SPEC "Cluster state (Redis)"): two nginx
nodes (two workers each) with the standard catalog, the same two mock
providers and the same real redis-server (t/redis_server.py).

Contract under test:

- `llmroute_redis ADDR [prefix=llmroute:] [password=X] [db=N]
  [timeout=200ms] [sync=100ms];` (http level); ADDR is a numeric
  IP:PORT or unix:/path; nginx -t names file:line and the bad value.
- Each node counts in its own zone; every `sync` one worker pushes the
  node's deltas to Redis (atomically and idempotently: a batch retried
  after a timeout is applied once) and pulls the cluster totals.
- Keys (prefix llmroute: -> hash tag {llmroute}):
  `{llmroute}:c:<client>` hash r<unix_s>/t<unix_s>, expires (120 s);
  `{llmroute}:s:<client>:<period>` string, spend in nano-USD (period of
  a /day budget = unix_time // 86400); `{llmroute}:p:<provider>` hash like
  the client one; `{llmroute}:cool:<provider>` string, cooldown end in ms
  since the epoch, with a TTL.
- `llmroute_redis_up` 1/0 on llmroute_metrics.
- Redis down, unreachable or hung: requests go on with local counters and
  no added latency; the outage and the recovery are logged once; what was
  counted meanwhile is pushed after the reconnect, exactly once.

Exactness is checked against the nodes' access logs: every request's
`$llmroute_cost` (nano-USD, 9 decimals) is logged as JSON, and the spend
key in Redis must equal their sum exactly (budgets here are per UTC day so
the key is `{llmroute}:s:<client>:<unix_time // 86400>`).

Spend is pushed as reservations (the estimate, at admission) and
corrections (when the request ends); totals are compared once every
request has ended.  Most tests use nodes in steady state (every worker has
served a request: `warm()`); the "never used" / "new to the client" tests
cover fresh nodes.

The whole file is skipped when the module does not know `llmroute_redis`
yet (checked once per session with a small `nginx -t`) or when
redis-server is not installed.
"""

import concurrent.futures
import json
import math
import re
import shutil
import threading
import time

import pytest

from llmroute_harness import (
    CATALOG, CHAT, KEYS, MODULE_PATH, SERVER, Nginx, assert_error,
    assert_routed, chat_body, client_id, free_port, get, post_json,
    stream_post)
from mock_provider import close_all
from redis_server import RedisServer

SYNC = 0.1                  # sync=100ms in every cluster below
WORKERS = 2

URLS = {"CHEAP_URL": "http://127.0.0.1:9/v1/chat/completions",
        "PREMIUM_URL": "http://127.0.0.1:10/v1/chat/completions",
        "SERVER_EXTRA": "", "LOCATION_EXTRA": ""}

# one JSON line per request of the chat location
LOG = r"""
    log_format redis escape=json '{"pid":"$pid","status":"$status",'
        '"team":"$http_x_team","provider":"$llmroute_provider",'
        '"model":"$llmroute_model","attempts":"$llmroute_attempts",'
        '"prompt":"$llmroute_prompt_tokens",'
        '"completion":"$llmroute_completion_tokens",'
        '"cost":"$llmroute_cost","est":"$llmroute_est_cost",'
        '"msec":"$msec","rt":"$request_time"}';
"""
METRICS = "location = /metrics { llmroute_metrics; }"
RETRY = "llmroute_retries 1; proxy_connect_timeout 2s; proxy_read_timeout 5s;"
NO_BUDGET_LIMIT = "rpm=100000 budget=1000/day"

# the mocks' default usage (12 prompt + 7 completion) on small-1:
# 12 * 100 + 7 * 400 nano-USD
DEFAULT_TOKENS = 19
DEFAULT_COST = 4000


# ------------------------------------------------------------ skip logic

@pytest.fixture(scope="session")
def redis_directive(tmp_path_factory):
    """Skip the file unless redis-server exists and the module parses
    llmroute_redis (one `nginx -t` per session)."""
    if shutil.which("redis-server") is None or \
            shutil.which("redis-cli") is None:
        pytest.skip("redis-server/redis-cli not installed")
    if not MODULE_PATH.exists():
        pytest.fail("module not built: %s (run ./build.sh)" % MODULE_PATH,
                    pytrace=False)
    ngx = Nginx(tmp_path_factory.mktemp("redis-probe"),
                CATALOG + "    llmroute_redis 127.0.0.1:%d;\n" % free_port()
                + SERVER, vars=URLS, env_vars=KEYS)
    rc, err = ngx.check()
    if 'unknown directive "llmroute_redis"' in err:
        pytest.skip("module %s has no llmroute_redis directive yet "
                    "(nginx -t: unknown directive)" % MODULE_PATH)
    return rc, err


@pytest.fixture(autouse=True)
def _needs_redis_directive(redis_directive):
    pass


# ------------------------------------------------------------ fixtures

@pytest.fixture
def redis_server(tmp_path):
    """Factory: redis_server(**kw) -> a started RedisServer (killed after
    the test)."""
    made = []

    def make(start=True, **kw):
        srv = RedisServer(tmp_path / ("redis%d" % len(made)), **kw)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.kill()


class Cluster:
    """`nodes` nginx instances with the standard catalog, the same two
    mocks (cheap, premium) and the same redis."""

    def __init__(self, nginx, mocks, redis, *, nodes, client, redis_args,
                 catalog, location, sync):
        self.redis = redis
        self.cheap, self.premium = mocks("cheap"), mocks("premium")
        addr = redis_args.pop("addr", redis.addr)
        params = " ".join(["sync=%s" % sync] + [
            "%s=%s" % kv for kv in redis_args.items()])
        self.redis_line = "llmroute_redis %s %s;" % (addr, params)
        loc = ("access_log logs/redis.log redis; %s "
               "llmroute_client $http_x_team %s; %s" % (RETRY, client,
                                                        location))
        self.vars = {"CHEAP_URL": self.cheap.url,
                     "PREMIUM_URL": self.premium.url,
                     "SERVER_EXTRA": METRICS, "LOCATION_EXTRA": loc}
        self.http = (catalog + LOG + "    " + self.redis_line + "\n"
                     + "    llmroute_client_hash key_env=TEST_CLIENT_SECRET;\n"
                     + SERVER)
        self.nodes = []
        for _ in range(nodes):
            # each node also listens for HTTP/2 (h2c) on a port of its own
            h2 = free_port()
            node = nginx(self.http, worker_processes=WORKERS, vars=dict(
                self.vars, SERVER_EXTRA=METRICS
                + " listen 127.0.0.1:%d http2;" % h2))
            node.h2 = h2
            self.nodes.append(node)


@pytest.fixture
def cluster(nginx, mocks, redis_server):
    """Factory: cluster(nodes=2, client="rpm=100000 budget=1000/day",
    redis=None (a new one), catalog=CATALOG, location="", sync="100ms",
    **llmroute_redis parameters) -> Cluster."""
    made = []

    def make(nodes=2, client=NO_BUDGET_LIMIT, redis=None, catalog=CATALOG,
             location="", sync="100ms", **redis_args):
        c = Cluster(nginx, mocks, redis or redis_server(), nodes=nodes,
                    client=client, redis_args=redis_args, catalog=catalog,
                    location=location, sync=sync)
        made.append(c)
        return c

    yield make
    close_all([m for c in made for m in (c.cheap, c.premium)])


# ------------------------------------------------------------ helpers

def nano(usd):
    """'0.000041200' ($llmroute_cost) -> 41200; '' or '-' -> 0."""
    if not re.fullmatch(r"\d+\.\d{9}", usd or ""):
        assert usd in ("", "-"), "bad $llmroute_cost %r" % usd
        return 0
    whole, frac = usd.split(".")
    return int(whole) * 10 ** 9 + int(frac)


def log_lines(node):
    path = node.prefix / "logs" / "redis.log"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def all_lines(nodes):
    return [line for n in nodes for line in log_lines(n)]


def wait_logged(nodes, n, timeout=10.0):
    """Wait until the nodes logged n requests in all (nginx logs after the
    module settled a request's tokens and spend)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = all_lines(nodes)
        if len(lines) >= n or time.monotonic() > deadline:
            assert len(lines) >= n, "%d of %d requests logged" % (
                len(lines), n)
            return lines
        time.sleep(0.02)


def spend(lines, team):
    return sum(nano(x["cost"]) for x in lines if x["team"] == team)


def headers(team, tier="simple", extra=None):
    h = {"X-Team": team}
    if tier:
        h["X-LLMRoute-Tier"] = tier
    h.update(extra or {})
    return h


def send(node, team, tier="simple", extra=None, body=None, **kw):
    return post_json(node.port, CHAT,
                     body if body is not None else chat_body(**kw),
                     headers(team, tier, extra), timeout=15)


def metrics_text(node):
    resp = get(node.port, "/metrics", timeout=5)
    assert resp.status == 200, resp
    return resp.body.decode()


def metric(node, name, **labels):
    """One Prometheus series (None if absent)."""
    want = sorted('%s="%s"' % kv for kv in labels.items())
    for line in metrics_text(node).splitlines():
        if line.startswith("#"):
            continue
        if not labels and line.startswith(name + " "):
            return float(line.split()[1])
        if line.startswith(name + "{"):
            lab, val = line[len(name) + 1:].rsplit("} ", 1)
            if sorted(x for x in lab.split(",") if x) == want:
                return float(val)
    return None


def redis_up(node):
    return metric(node, "llmroute_redis_up")


def eventually(fn, timeout, interval=0.05):
    """fn() until it returns something true or the time is over; returns
    the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_redis_up(c, value=1, timeout=5.0):
    ok = eventually(lambda: all(redis_up(n) == value for n in c.nodes),
                    timeout)
    assert ok, "llmroute_redis_up: %r, want %d" % (
        [redis_up(n) for n in c.nodes], value)


def day():
    return int(time.time()) // 86400


def ckey(team, tag="llmroute"):
    """The request/token hash of a client (named by its keyed hash)."""
    return "{%s}:c:%s" % (tag, client_id(team))


def spend_keys(redis, team, db=None, tag="llmroute"):
    """{key: int} of the client's spend keys."""
    out = {}
    team = client_id(team)
    for k in redis.keys("{%s}:s:%s:*" % (tag, team), db=db):
        # only the documented {tag}:s:<client>:<period>; keys below it
        # (the module's own per-node bookkeeping) are not the total
        if re.fullmatch(r"\{%s\}:s:%s:\d+" % (re.escape(tag),
                                               re.escape(team)), k):
            out[k] = int(redis.call("GET", k, db=db))
    return out


def assert_spend(redis, team, want, days, db=None, tag="llmroute",
                 timeout=3.0):
    """Redis holds exactly `want` nano-USD for the client: the key
    {tag}:s:<team>:<day> (two keys if the test ran over midnight UTC),
    and it stays so (nothing is pushed twice later)."""
    def total():
        return sum(spend_keys(redis, team, db, tag).values())
    eventually(lambda: total() == want, timeout)
    keys = spend_keys(redis, team, db, tag)
    assert sum(keys.values()) == want, (
        "spend of %s in Redis: %r, want %d in all (every key: %r)"
        % (team, keys, want, redis.keys("*", db=db)))
    assert set(keys) <= {"{%s}:s:%s:%d" % (tag, client_id(team), d)
                         for d in days}, \
        keys
    for k in keys:
        assert redis.call("TYPE", k, db=db) == "string", k
    time.sleep(3 * SYNC)
    assert spend_keys(redis, team, db, tag) == keys, "pushed again"
    return keys


def hash_sums(redis, key, db=None):
    """(sum of r<sec> fields, sum of t<sec> fields, seconds seen).
    Fields with a further prefix (`<node>:r<sec>`: the module's per-node
    bookkeeping) are not part of the documented totals and are skipped."""
    h = redis.hgetall(key, db=db)
    r = t = 0
    secs = set()
    for f, v in h.items():
        m = re.fullmatch(r"([rt])(\d+)", f)
        if m is None:
            assert re.fullmatch(r".+:[rt]\d+", f), \
                "unexpected field %r in %s: %r" % (f, key, h)
            continue
        secs.add(int(m.group(2)))
        if m.group(1) == "r":
            r += int(v)
        else:
            t += int(v)
    return r, t, secs


def assert_counts(redis, key, requests, tokens=None, t0=None, db=None,
                  timeout=3.0):
    """The hash `key` (client or provider) has r<sec> fields summing to
    `requests` (and t<sec> to `tokens`), seconds from the test's time
    span, and an expiry of at most 120 s."""
    def sums():
        r, t, _ = hash_sums(redis, key, db)
        return r == requests and (tokens is None or t == tokens)
    eventually(sums, timeout)
    r, t, secs = hash_sums(redis, key, db)
    assert r == requests, "%s: requests %d, want %d (%r)" % (
        key, r, requests, redis.hgetall(key, db=db))
    if tokens is not None:
        assert t == tokens, "%s: tokens %d, want %d" % (key, t, tokens)
    if t0 is not None:
        assert secs and min(secs) >= int(t0) - 1 and \
            max(secs) <= time.time() + 1, (key, sorted(secs))
    ttl = redis.call("TTL", key, db=db)
    assert 0 < ttl <= 120, "%s: TTL %r" % (key, ttl)


def paced(nodes, n, team, gap=0.05):
    """Send n requests, one every `gap` seconds, alternating between the
    nodes; yields (time sent, node index, response)."""
    start = time.monotonic()
    for i in range(n):
        delay = start + i * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.monotonic()
        yield t, i % len(nodes), send(nodes[i % len(nodes)], team)


def most_per_node(sent, seconds):
    """The most requests one node got in any `seconds` of the run, from
    (start, node index, ...) tuples."""
    return max(sum(1 for t2, n2, *_ in sent if n2 == n and t <= t2 < t +
                   seconds) for t, n, *_ in sent)


def p99(values):
    v = sorted(values)
    return v[max(0, math.ceil(0.99 * len(v)) - 1)]


class Load:
    """Background traffic: `threads` threads, each sending requests one
    after the other (a new connection each) to the nodes in turn, at most
    one every `pace` seconds per thread.  Records, per request: start
    (monotonic), node index, latency, status (or the exception)."""

    def __init__(self, nodes, team, threads=2, pace=0.02, tier="simple",
                 **body):
        self.nodes, self.team, self.pace, self.tier = nodes, team, pace, tier
        self.body = body                # chat_body(**body)
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,),
                                         daemon=True)
                        for i in range(threads)]

    def _run(self, i):
        k = i
        while not self.stopping.is_set():
            idx = k % len(self.nodes)
            k += 1
            t0 = time.monotonic()
            try:
                status = send(self.nodes[idx], self.team, self.tier,
                              **self.body).status
            except Exception as e:          # noqa: BLE001 -- recorded
                status = e
            t1 = time.monotonic()
            with self.lock:
                self.results.append((t0, idx, t1 - t0, status))
            self.stopping.wait(max(0.0, self.pace - (t1 - t0)))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)
        return self.results

    def failures(self):
        return [r for r in self.results if r[3] != 200]

    def latencies(self, t0, t1):
        return [r[2] for r in self.results if t0 <= r[0] < t1]


def warm(node, team="warm-up", tier="simple"):
    """Requests to `node` until each of its workers has served one (seen
    by $pid in its log): a node in steady state, as opposed to one that
    has not served anything yet."""
    for _ in range(60):
        if len({x["pid"] for x in log_lines(node)}) >= WORKERS:
            return
        n = len(log_lines(node))
        assert send(node, team, tier).status == 200
        wait_logged([node], n + 1)
    pytest.fail("requests never reached every worker of %s" % node.prefix)


def error_lines(node, pattern):
    """error.log lines at warn or error level matching `pattern`."""
    rx = re.compile(pattern, re.I)
    return [line for line in node.error_log().splitlines()
            if re.search(r"\[(warn|error)\]", line) and rx.search(line)]


DOWN_RE = r"llmroute: redis.*\bdown\b"
UP_RE = r"llmroute: redis.*\b(up|reconnected|connected|recovered|back)\b"


# ------------------------------------------------------------ 1. config

def checked(nginx, line):
    ngx = nginx(CATALOG + "    " + line + "\n" + SERVER, start=False,
                vars=URLS)
    rc, err = ngx.check()
    return ngx, rc, err


@pytest.mark.parametrize("line", [
    "llmroute_redis 127.0.0.1:%(port)d;",
    "llmroute_redis 127.0.0.1:%(port)d prefix=llmroute: password=s3cret "
    "db=2 timeout=200ms sync=100ms;",
    "llmroute_redis unix:/tmp/llmroute-test-no-such.sock sync=1s;",
], ids=["addr", "all_params", "unix"])
def test_config_valid(nginx, line):
    """A valid line passes nginx -t (nothing listens there: nginx -t
    does not connect)."""
    ngx, rc, err = checked(nginx, line % {"port": free_port()})
    assert rc == 0, err
    assert "test is successful" in err and "[emerg]" not in err, err
    assert "s3cret" not in err


@pytest.mark.parametrize("line,value", [
    ("llmroute_redis localhost:6379;", "localhost"),
    ("llmroute_redis 127.0.0.1:99999;", "99999"),
    ("llmroute_redis 127.0.0.1:6379 foo=bar;", "foo=bar"),
    ("llmroute_redis 127.0.0.1:6379 sync=fast;", "fast"),
    ("llmroute_redis 127.0.0.1:6379 db=abc;", "abc"),
], ids=["hostname", "bad_port", "unknown_param", "bad_sync", "bad_db"])
def test_config_rejected(nginx, line, value):
    """nginx -t fails with an [emerg] naming file:line and the value."""
    ngx, rc, err = checked(nginx, line)
    assert rc != 0, err
    assert "[emerg]" in err, err
    where = "%s:%d" % (ngx.conf_path, ngx.conf_line_of("llmroute_redis"))
    assert where in err, "expected %s in:\n%s" % (where, err)
    assert value in err, "expected %r in:\n%s" % (value, err)


# ------------------------------------------------------------ 2. spend

def test_spend_is_pushed_exactly_from_both_nodes(cluster):
    """Mixed traffic of two clients on both nodes (JSON and SSE, simple,
    moderate, a pinned big-1, two failovers after a 500): the spend key of
    each client in Redis equals exactly the sum of $llmroute_cost that
    both nodes logged for it, and stays so (pushed once)."""
    c = cluster(client="rpm=100000 budget=1000/day")
    redis, (a, b) = c.redis, c.nodes
    days = {day()}
    t0 = time.time()
    c.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 1000, "completion_tokens": 500,
        "cached_tokens": 200}}                           # 282,000 nano
    c.premium.default = {"mode": "ok", "usage": {
        "prompt_tokens": 300, "completion_tokens": 50}}  # mid-1 500,000
    c.cheap.script([{"mode": "status", "status": 500}] * 2)

    def one(i):
        node, team = c.nodes[i % 2], ("team-a", "team-b")[i % 3 == 0]
        kind = i % 4
        if kind == 0:
            return send(node, team, "simple").status
        if kind == 1:
            return send(node, team, "moderate").status
        if kind == 2:
            return stream_post(node.port, CHAT, chat_body(stream=True),
                               headers(team), timeout=15).status
        return send(node, team, None, model="premium/big-1").status

    n = 32
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        got = list(ex.map(one, range(n)))
    assert got == [200] * n, got
    lines = wait_logged(c.nodes, n)
    days.add(day())
    assert len(log_lines(a)) == len(log_lines(b)) == n // 2
    assert sum(x["attempts"] == "2" for x in lines) == 2   # the failovers
    want_a, want_b = spend(lines, "team-a"), spend(lines, "team-b")
    assert want_a > 0 and want_b > 0
    assert_spend(redis, "team-a", want_a, days)
    assert_spend(redis, "team-b", want_b, days)
    # as the documentation shows it
    key = "{llmroute}:s:%s:%d" % (client_id("team-a"), day())
    if day() in days and len(days) == 1:
        assert redis.cli("GET", key) == str(want_a)
    # request counts per client: every request was admitted once
    assert_counts(redis, ckey("team-a"),
                  sum(x["team"] == "team-a" for x in lines), t0=t0)
    assert_counts(redis, ckey("team-b"),
                  sum(x["team"] == "team-b" for x in lines), t0=t0)


def test_budget_is_enforced_across_nodes(cluster):
    """budget=0.001/day: the client has used node B (at no cost); node A
    then spends exactly the budget (2500 completion tokens on small-1 =
    1,000,000 nano-USD); once that is in Redis, node B -- which spent
    nothing itself -- refuses the client with 402 after at most a few
    sync intervals; other clients pass."""
    c = cluster(client="budget=0.001/day")
    a, b = c.nodes
    c.cheap.script([
        {"mode": "ok", "usage": {"prompt_tokens": 0, "completion_tokens": 0}},
        {"mode": "ok", "usage": {"prompt_tokens": 0,
                                 "completion_tokens": 2500}}])
    days = {day()}
    assert_routed(send(b, "team-a", max_tokens=1), "cheap", "small-1")
    wait_logged(c.nodes, 1)
    assert_routed(send(a, "team-a", max_tokens=1), "cheap", "small-1")
    wait_logged(c.nodes, 2)
    days.add(day())
    assert_spend(c.redis, "team-a", 10 ** 6, days)
    time.sleep(3 * SYNC)                 # B's next pull
    err = assert_error(send(b, "team-a", max_tokens=1), 402,
                       "budget_exceeded")
    assert err["type"] == "insufficient_quota", err
    assert_error(send(a, "team-a", max_tokens=1), 402, "budget_exceeded")
    assert send(b, "team-b", max_tokens=1).status == 200
    assert len(c.cheap.requests) == 3


def test_budget_is_enforced_on_a_node_new_to_the_client(cluster):
    """As above, but node B has never seen the client: its first request
    there must be refused too -- the spend is in Redis, and a node that
    admits a client's first request on its own count alone lets every
    client overspend once per node (and after every restart).  B's first
    request for the client waits for B's next sync, which brings it."""
    c = cluster(client="budget=0.001/day")
    a, b = c.nodes
    c.cheap.script([{"mode": "ok", "usage": {"prompt_tokens": 0,
                                             "completion_tokens": 2500}}])
    days = {day()}
    assert_routed(send(a, "team-a", max_tokens=1), "cheap", "small-1")
    wait_logged(c.nodes, 1)
    days.add(day())
    assert_spend(c.redis, "team-a", 10 ** 6, days)
    time.sleep(3 * SYNC)
    assert_error(send(b, "team-a", max_tokens=1), 402, "budget_exceeded")
    assert len(c.cheap.requests) == 1


def test_new_client_waits_for_one_sync_at_most(cluster):
    """A client's first request on a node waits for the sync that brings
    its cluster counts: about one interval.  With Redis hung (SIGSTOP,
    still "up" until its PING times out) the wait is capped at two
    intervals plus min(timeout, 500ms), then the node admits on its own
    count; once Redis is known down nothing waits."""
    c = cluster(timeout="300ms")
    a, _ = c.nodes
    wait_redis_up(c, 1)
    t = time.monotonic()
    assert_routed(send(a, "new-1", max_tokens=1), "cheap", "small-1")
    assert time.monotonic() - t < 2 * SYNC + 0.3
    c.redis.pause()
    try:
        t = time.monotonic()
        assert_routed(send(a, "new-2", max_tokens=1), "cheap", "small-1")
        took = time.monotonic() - t
        assert took < 2 * SYNC + 0.3 + 0.3, took
        wait_redis_up(c, 0, timeout=5)
        t = time.monotonic()
        assert_routed(send(a, "new-3", max_tokens=1), "cheap", "small-1")
        assert time.monotonic() - t < 0.2
    finally:
        c.redis.resume()


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_h2c_client_new_to_a_node_waits_for_the_sync(cluster):
    """The first-sync wait over HTTP/2: the request that waits for the
    node's next sync is an h2 stream (a timer resumes it), and what the
    sync brings is enforced: a client at its budget on node A is refused
    on its first h2c request to node B, and a new client's first h2c
    request is admitted within the wait's bound."""
    from test_hardening_sec import h2_post
    c = cluster(client="budget=0.001/day")
    a, b = c.nodes
    wait_redis_up(c, 1)
    c.cheap.script([{"mode": "ok", "usage": {"prompt_tokens": 0,
                                             "completion_tokens": 2500}}])
    body = chat_body(max_tokens=1)
    status, hdrs, _, version = h2_post(a.h2, body, headers("team-a"))
    assert (version, status) == ("HTTP/2", 200)
    wait_logged(c.nodes, 1)
    time.sleep(3 * SYNC)
    status, _, data, version = h2_post(b.h2, body, headers("team-a"))
    assert (version, status) == ("HTTP/2", 402), data
    assert json.loads(data)["error"]["code"] == "budget_exceeded"
    t = time.monotonic()
    status, hdrs, _, _ = h2_post(b.h2, body, headers("team-new"))
    assert status == 200 and hdrs["x-llmroute-provider"] == "cheap"
    assert time.monotonic() - t < 2 * SYNC + 0.5
    assert len(c.cheap.requests) == 2


# ------------------------------------------------------------ 3. rpm

def test_client_rpm_is_cluster_wide(cluster):
    """rpm=20 on both nodes, sync=100ms; 60 requests alternate between the
    nodes, 50 ms apart (one per node every 100 ms).

    Bound: a node sees the other's admissions at most ~2 sync intervals
    late (the other's push, then its own pull) plus the push latency, so
    the cluster admits at most 20 + what each node admitted in 0.3 s:
    200s <= 20 + 2 * (the most requests one node got in any 0.3 s of this
    run, measured), i.e. about 26 -- and never fewer than 20 (a node's view
    of the total is never more than the truth), far from the 40 two
    independent nodes would admit.  After two sync intervals both nodes
    refuse (converged), and Redis counted each admission once."""
    c = cluster(client="rpm=20")
    redis = c.redis
    t0 = time.time()
    sent = []
    for t, node, resp in paced(c.nodes, 60, "team-a"):
        assert resp.status in (200, 429), resp
        sent.append((t, node, resp.status))
    ok = sum(s == 200 for _, _, s in sent)
    per_node = most_per_node(sent, 0.3)
    bound = 20 + 2 * per_node
    assert 20 <= ok <= bound, "200s: %d, want 20..%d (per node in 0.3 s: " \
        "%d): %r" % (ok, bound, per_node, [(n, s) for _, n, s in sent])
    assert ok < 40
    wait_logged(c.nodes, 60)
    time.sleep(3 * SYNC)
    for node in c.nodes:
        for _ in range(3):
            resp = send(node, "team-a")
            assert_error(resp, 429, "rate_limit_exceeded")
            assert resp.header("x-ratelimit-limit-requests") == "20"
    assert len(c.cheap.requests) == ok
    assert send(c.nodes[1], "team-b").status == 200
    wait_logged(c.nodes, 67)
    assert_counts(redis, ckey("team-a"), ok, ok * DEFAULT_TOKENS,
                  t0=t0)
    assert_counts(redis, "{llmroute}:p:cheap", ok + 1,
                  (ok + 1) * DEFAULT_TOKENS, t0=t0)


def test_provider_rpm_is_cluster_wide(cluster):
    """cheap rpm=10 on both nodes (warmed up with moderate requests, which
    go to premium); 30 simple requests alternate between the nodes 50 ms
    apart: cheap gets at least 10 and at most 10 + 2 * (the most requests
    one node got in any 0.3 s) -- the bound of the rpm test above -- the
    others fail over to premium by routing (no 503, nothing refused);
    after two sync intervals both nodes send simple requests to premium."""
    catalog = CATALOG.replace("regions=us,eu;", "regions=us,eu rpm=10;")
    c = cluster(catalog=catalog)
    for node in c.nodes:
        warm(node, tier="moderate")
    assert c.cheap.requests == []
    sent = []
    for t, node, resp in paced(c.nodes, 30, "team-a"):
        assert resp.status == 200, resp
        sent.append((t, node, resp.header("X-LLMRoute-Provider")))
    to_cheap = sum(p == "cheap" for _, _, p in sent)
    assert to_cheap == len(c.cheap.requests)
    per_node = most_per_node(sent, 0.3)
    bound = 10 + 2 * per_node
    assert 10 <= to_cheap <= bound, "to cheap: %d, want 10..%d: %r" % (
        to_cheap, bound, [(n, p) for _, n, p in sent])
    assert to_cheap < 20
    time.sleep(3 * SYNC)
    for node in c.nodes:
        for _ in range(2):
            assert_routed(send(node, "team-a"), "premium", "mid-1")
    assert len(c.cheap.requests) == to_cheap


# ------------------------------------------------------------ 4. cooldown

def test_cooldown_is_cluster_wide(cluster):
    """Both nodes have served traffic (every worker); then node A gets
    429 Retry-After: 30 from cheap and fails over.  Redis has
    {llmroute}:cool:cheap = the cooldown's end in ms since the epoch (with
    a TTL); 0.5 s after A's answer node B sends simple requests to premium
    without contacting cheap, and reports the cooldown in its metrics."""
    c = cluster()
    a, b = c.nodes
    for node in c.nodes:
        warm(node)
    warmed = len(c.cheap.requests)
    c.cheap.script([{"mode": "status", "status": 429, "retry_after": "30"}])
    assert_routed(send(a, "team-a"), "premium", "mid-1", attempts="2")
    t_resp = time.monotonic()
    now_ms = time.time() * 1000
    key = "{llmroute}:cool:cheap"
    val = eventually(lambda: c.redis.call("GET", key), 1.0)
    assert val is not None, "no %s: %r" % (key, c.redis.keys())
    assert now_ms + 25000 <= int(val) <= now_ms + 31000, (val, now_ms)
    assert c.redis.call("PTTL", key) > 0, "no TTL on %s" % key
    time.sleep(max(0.0, t_resp + 0.5 - time.monotonic()))
    for _ in range(10):
        assert_routed(send(b, "team-a"), "premium", "mid-1", attempts="1")
    assert len(c.cheap.requests) == warmed + 1
    assert 25 <= metric(b, "llmroute_provider_cooldown_seconds",
                        provider="cheap") <= 30
    assert metric(b, "llmroute_provider_cooldown_seconds",
                  provider="premium") == 0


def test_cooldown_reaches_a_node_that_never_used_the_provider(cluster):
    """Fresh nodes: A's first request gets the 429 (whichever worker serves
    it), B has served nothing yet.  The cooldown reaches Redis and, 0.5 s
    after A's answer, B's first requests skip cheap too.  (Regression: a
    build whose syncing worker read its own lazily filled provider cache
    pushed and pulled only providers that worker had served itself.)"""
    c = cluster()
    a, b = c.nodes
    c.cheap.script([{"mode": "status", "status": 429, "retry_after": "30"}])
    assert_routed(send(a, "team-a"), "premium", "mid-1", attempts="2")
    t_resp = time.monotonic()
    assert eventually(lambda: c.redis.call("GET", "{llmroute}:cool:cheap"),
                      1.0)
    time.sleep(max(0.0, t_resp + 0.5 - time.monotonic()))
    for _ in range(5):
        assert_routed(send(b, "team-a"), "premium", "mid-1", attempts="1")
    assert len(c.cheap.requests) == 1


def test_cooldown_set_in_redis_by_hand(cluster):
    """SPEC: cooldown overrides can be set in Redis without a reload.  An
    operator sets {llmroute}:cool:cheap to now + 30 s (ms since the epoch,
    with a TTL); within 0.5 s both (warmed-up) nodes route simple requests
    to premium, and report the cooldown."""
    c = cluster()
    for node in c.nodes:
        warm(node)
    warmed = len(c.cheap.requests)
    until = int(time.time() * 1000) + 30000
    assert c.redis.call("SET", "{llmroute}:cool:cheap", until,
                        "PX", 30000) == "OK"
    time.sleep(0.5)
    for node in c.nodes:
        for _ in range(3):
            assert_routed(send(node, "team-a"), "premium", "mid-1")
        # <= 31, not 30: see test_cooldown_metric_rounds_from_the_ms
        assert 25 <= metric(node, "llmroute_provider_cooldown_seconds",
                            provider="cheap") <= 31
    assert len(c.cheap.requests) == warmed


def test_cooldown_metric_rounds_from_the_ms(cluster):
    """A cooldown set in Redis to end 0.1 s into a second 10 s ahead, read
    0.2-0.8 s into the current second: under 10 s are left, so the
    metric (seconds left, rounded up) says at most 10, not 11."""
    c = cluster(nodes=1)
    (node,) = c.nodes
    warm(node)
    while not 0.2 <= time.time() % 1 <= 0.4:
        time.sleep(0.01)
    until = (int(time.time()) + 10) * 1000 + 100
    c.redis.call("SET", "{llmroute}:cool:cheap", until, "PX", 10100)
    while True:
        t = time.time() * 1000
        v = metric(node, "llmroute_provider_cooldown_seconds",
                   provider="cheap")
        if v:
            break
        assert t < until - 9000, "the cooldown never reached the node"
        time.sleep(0.02)
    assert v <= math.ceil((until - t) / 1000), (v, (until - t) / 1000)


# ------------------------------------------------------------ 5. kill -9

def test_redis_killed_and_restarted_empty(cluster):
    """Traffic (team-a) on both nodes; kill -9 redis: zero failed
    requests, llmroute_redis_up 0, the outage logged once per node (at
    most once per worker, no line per reconnect attempt).  Then, with
    Redis still down, team-b sends 10 requests; Redis is started again on
    the same port, empty (no persistence): both nodes reconnect
    (llmroute_redis_up 1, recovery logged) and push what they counted
    during the outage -- team-b's spend key equals exactly the cost of
    those 10 requests; team-a's holds at most what team-a spent in all,
    and at least what its requests that ended after the kill spent (less
    the estimates of those admitted before it, whose reservation the old
    Redis may have acknowledged)."""
    c = cluster()
    redis = c.redis
    wait_redis_up(c, 1)
    t0 = time.time()
    # max_tokens=1: each request's estimate (~2,000 nano-USD) is below
    # its cost (4,000), see below
    load = Load(c.nodes, "team-a", threads=2, pace=0.02,
                max_tokens=1).start()
    time.sleep(0.8)
    redis.kill()
    t_kill = time.time()
    time.sleep(1.2)
    load.stop()
    assert load.results and not load.failures(), load.failures()[:5]
    wait_redis_up(c, 0, timeout=3)

    # only while Redis is down
    c.cheap.default = {"mode": "ok", "usage": {"prompt_tokens": 123,
                                               "completion_tokens": 45}}
    for i in range(10):
        assert_routed(send(c.nodes[i % 2], "team-b"), "cheap", "small-1")
    n = len(load.results) + 10
    lines = wait_logged(c.nodes, n)
    want_b = spend(lines, "team-b")
    assert want_b == 10 * (123 * 100 + 45 * 400)
    total_a = spend(lines, "team-a")
    # Spend is pushed as reservations (the estimate, at admission) and
    # corrections (cost - estimate, when the request ends); the old Redis
    # may have acknowledged either, both or none of a request's deltas
    # (the batch in flight at the kill is re-sent to the new one).  So a
    # request adds 0, cost - estimate or cost to the new Redis: never more
    # than its cost, and never less than 0 as long as estimate <= cost.  A
    # request that ended after the kill adds at least cost - estimate, one
    # admitted after it exactly its cost.  ($msec and $request_time are
    # nginx's cached ms times, never ahead of the real ones: msec - rt >
    # t_kill means admitted after the kill.)
    assert all(nano(x["est"]) <= nano(x["cost"]) for x in lines
               if x["team"] == "team-a"), "estimates above the cost"
    after_kill_a = 0
    for x in lines:
        if x["team"] == "team-a" and float(x["msec"]) > t_kill:
            after_kill_a += nano(x["cost"])
            if float(x["msec"]) - float(x["rt"]) <= t_kill + 0.001:
                after_kill_a -= nano(x["est"])
    for node in c.nodes:
        down = error_lines(node, DOWN_RE)
        assert 1 <= len(down) <= WORKERS, (
            "outage lines in %s: %r" % (node.error_log_path, down))
        noisy = error_lines(node, r"redis|:%d\b" % redis.port)
        assert len(noisy) <= 2 * WORKERS, (
            "Redis outage logged too often in %s:\n%s"
            % (node.error_log_path, "\n".join(noisy)))

    redis.start()                               # empty, same port
    wait_redis_up(c, 1, timeout=8)
    assert_spend(redis, "team-b", want_b, {day(), int(t0) // 86400})
    assert_counts(redis, ckey("team-b"), 10, 10 * 168, t0=t0)
    got_a = sum(spend_keys(redis, "team-a").values())
    assert after_kill_a <= got_a <= total_a, (
        "team-a spend in Redis after the restart: %d, want between %d "
        "(what ended after the kill) and %d (all); keys: %r" % (
            got_a, after_kill_a, total_a,
            {k: redis.call("GET", k) for k in redis.keys("*:s:*")}))
    for node in c.nodes:
        log = node.error_log().splitlines()
        first_down = min(i for i, x in enumerate(log)
                         if re.search(DOWN_RE, x, re.I))
        up = [x for x in log[first_down:]
              if re.search(UP_RE, x, re.I) and not re.search(DOWN_RE, x,
                                                              re.I)]
        assert 1 <= len(up) <= WORKERS, (
            "recovery lines in %s: %r" % (node.error_log_path, up))


# ------------------------------------------------------------ 6. SIGSTOP

def test_redis_hung_adds_no_latency_and_counts_once(cluster):
    """Redis stopped (SIGSTOP) for 2 s under load, timeout=500ms: the
    port still accepts connections but nothing answers.  No request waits
    on Redis: p99 latency while it hangs is at most 200 ms above the p99
    before (a module waiting on Redis would add up to the 500 ms timeout),
    zero failures.  After SIGCONT Redis executes the batches that were
    waiting in its socket buffers and the nodes retry theirs: totals must
    still be exact -- spend, client and provider request and token counts
    each equal what was logged (each batch applied once)."""
    c = cluster(timeout="500ms")
    redis = c.redis
    wait_redis_up(c, 1)
    t0 = time.time()
    load = Load(c.nodes, "team-a", threads=2, pace=0.02).start()
    start = time.monotonic()
    time.sleep(1.0)
    hang0 = time.monotonic()
    redis.pause()
    time.sleep(2.0)
    redis.resume()
    hang1 = time.monotonic()
    time.sleep(0.5)
    load.stop()
    assert load.results and not load.failures(), load.failures()[:5]
    base = load.latencies(start, hang0)
    hung = load.latencies(hang0, hang1)
    assert len(base) >= 10 and len(hung) >= 10, (len(base), len(hung))
    assert p99(hung) <= p99(base) + 0.2, (
        "p99 %.3f s while Redis hung, %.3f s before; slowest: %r"
        % (p99(hung), p99(base), sorted(hung)[-5:]))
    n = len(load.results)
    lines = wait_logged(c.nodes, n)
    assert all(x["status"] == "200" for x in lines)
    wait_redis_up(c, 1, timeout=8)
    assert_spend(redis, "team-a", spend(lines, "team-a"),
                 {int(t0) // 86400, day()}, timeout=5)
    assert spend(lines, "team-a") == n * DEFAULT_COST
    assert_counts(redis, ckey("team-a"), n, n * DEFAULT_TOKENS, t0=t0)
    assert len(c.cheap.requests) == n
    assert_counts(redis, "{llmroute}:p:cheap", n, n * DEFAULT_TOKENS, t0=t0)


def test_redis_hung_is_one_outage(cluster):
    """Redis stopped for 3 s under light load: from the first timeout
    until SIGCONT llmroute_redis_up stays 0 on both nodes (a connection
    that answers nothing is not up), the outage is logged once and the
    recovery once (per node, at most once per worker)."""
    c = cluster()
    redis = c.redis
    wait_redis_up(c, 1)
    load = Load(c.nodes, "team-a", threads=1, pace=0.05).start()
    time.sleep(0.3)
    redis.pause()
    hang0 = time.monotonic()
    time.sleep(0.8)                     # > timeout (200ms) + sync
    samples = []
    while time.monotonic() < hang0 + 3.0:
        samples.append(tuple(redis_up(n) for n in c.nodes))
        time.sleep(0.1)
    redis.resume()
    wait_redis_up(c, 1, timeout=8)
    load.stop()
    assert load.results and not load.failures(), load.failures()[:5]
    flaps = [x for x in samples if x != (0, 0)]
    for node in c.nodes:
        log = node.error_log().splitlines()
        down = [x for x in log if re.search(DOWN_RE, x, re.I)
                and re.search(r"\[(warn|error)\]", x)]
        assert 1 <= len(down) <= WORKERS, "\n".join(down)
        first = log.index(down[0])
        up = [x for x in log[first:] if re.search(UP_RE, x, re.I)
              and not re.search(DOWN_RE, x, re.I)]
        assert 1 <= len(up) <= WORKERS, "\n".join(up)
    assert not flaps, "llmroute_redis_up while Redis hung: %r" % samples


# ------------------------------------------------------------ 7. reload

def test_reload_of_one_node_keeps_totals_exact(cluster):
    """Traffic on both nodes while node A is reloaded twice: no failed
    request, and Redis' totals (spend, client and provider counts) equal
    exactly what both nodes logged -- the new workers push what the old
    ones had not, and their batches are neither lost nor applied twice."""
    c = cluster()
    a = c.nodes[0]
    wait_redis_up(c, 1)
    t0 = time.time()
    load = Load(c.nodes, "team-a", threads=2, pace=0.02).start()
    time.sleep(0.6)
    assert a.reload()
    time.sleep(0.6)
    assert a.reload()
    time.sleep(0.6)
    load.stop()
    assert load.results and not load.failures(), load.failures()[:5]
    n = len(load.results)
    lines = wait_logged(c.nodes, n)
    assert len({x["pid"] for x in log_lines(a)}) > WORKERS   # new workers
    wait_redis_up(c, 1, timeout=5)
    assert_spend(c.redis, "team-a", n * DEFAULT_COST,
                 {int(t0) // 86400, day()}, timeout=5)
    assert spend(lines, "team-a") == n * DEFAULT_COST
    assert_counts(c.redis, ckey("team-a"), n, n * DEFAULT_TOKENS,
                  t0=t0)
    assert_counts(c.redis, "{llmroute}:p:cheap", n, n * DEFAULT_TOKENS,
                  t0=t0)


# ------------------------------------------------------------ connection

@pytest.mark.parametrize("how", ["password_db_prefix", "unix_socket"])
def test_password_db_prefix_and_unix_socket(cluster, redis_server, how):
    """password= and db= are used (the keys land in db 3 of a Redis with
    requirepass), prefix=gw-eu: gives the hash tag {gw-eu}; a unix:
    address works.  The password never appears in nginx's logs."""
    pw = "redis-pw-5d1f0a9c"
    if how == "password_db_prefix":
        srv = redis_server(requirepass=pw)
        c = cluster(nodes=1, redis=srv, password=pw, db=3, prefix="gw-eu:")
        db, tag = 3, "gw-eu"
    else:
        srv = redis_server(unixsocket=True)
        c = cluster(nodes=1, redis=srv, addr="unix:" + srv.unix_path)
        db, tag = None, "llmroute"
    (node,) = c.nodes
    wait_redis_up(c, 1)
    days = {day()}
    for _ in range(3):
        assert send(node, "team-a").status == 200
    wait_logged(c.nodes, 3)
    days.add(day())
    assert_spend(srv, "team-a", 3 * DEFAULT_COST, days, db=db, tag=tag)
    if db is not None:
        assert srv.keys("*", db=0) == [], "keys in db 0"
    assert_counts(srv, ckey("team-a", tag), 3, 3 * DEFAULT_TOKENS, db=db)
    logs = node.error_log() + node.access_log()
    assert pw not in logs, "Redis password in a log"
