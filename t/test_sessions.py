"""Agent sessions and their prompt cache, through nginx.

- `llmroute_session VALUE|off`: the session key; unset, the default chain
  X-Claude-Code-Session-Id, x-session-id, metadata.user_id,
  prompt_cache_key, else a hash of system + tools + first user message.
- A session stays on the provider and model holding its prompt cache
  (`cached_input` there, `input`/`cache_write` elsewhere) unless the tier
  rises, the holder is ineligible, cooling down, at a limit, or moving is
  cheaper even after the re-read; `cache_ttl=` ends the stickiness.
- `llmroute_session_moves_total{reason}`, `llmroute_cache_read_ratio`,
  `$llmroute_session`, `$llmroute_cache_hit`.
- `llmroute_cache_key on`: `"prompt_cache_key"` spliced into the body.
"""

import json
import re
import shutil
import threading
import time

import pytest

from llmroute_harness import get, post_json, raw_request, with_model
from redis_server import RedisServer

# a first provider 3 % dearer than b for the same simple model: a session
# that started on a stays there; a new one goes to b
CATALOG = """
    llmroute_zone llmroute:%(zone)s;
    llmroute_provider a %%%%A_URL%%%% key_env=TEST_KEY_A %(a_extra)s;
    llmroute_provider b %%%%B_URL%%%% key_env=TEST_KEY_B;
    llmroute_model a small-a tier=simple input=%(a_in)s output=2.00 cached_input=0.10 %(a_model)s;
    llmroute_model b small-b tier=simple input=%(b_in)s output=%(b_out)s cached_input=0.10 tools json;
    llmroute_model b big-b tier=complex input=3.00 output=15.00 cached_input=0.30 tools json;
    log_format sess '$llmroute_session $llmroute_provider/$llmroute_model '
                    '$llmroute_cache_hit "$llmroute_reason"';
"""

SERVER = """
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/chat/completions {
            llmroute on;
            llmroute_retries 1;
            access_log logs/sess.log sess;
            add_header X-Session $llmroute_session always;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
            %%LOCATION%%
        }
        location = /metrics { llmroute_metrics; }
    }
"""

SYSTEM = "You are a coding agent. " * 200
TOOLS = [{"type": "function", "function": {
    "name": "read_file", "parameters": {"type": "object", "properties": {
        "path": {"type": "string"}}}}}]


class Site:
    def __init__(self, nginx, mocks, location="", zone="1m", a_in="0.90",
                 b_in="1.00", a_model="tools json", a_extra="", http="",
                 b_out="2.00"):
        self.a, self.b = mocks("a"), mocks("b")
        self.location = location
        self.http = http
        self.ngx = nginx("", start=False)
        self.write(zone=zone, a_in=a_in, b_in=b_in, a_model=a_model,
                   a_extra=a_extra, b_out=b_out)
        self.ngx.start()
        self.port = self.ngx.port

    def write(self, zone="1m", a_in="0.90", b_in="1.00", a_model="tools json",
              a_extra="", b_out="2.00"):
        cat = CATALOG % {"zone": zone, "a_in": a_in, "b_in": b_in,
                         "a_model": a_model, "a_extra": a_extra,
                         "b_out": b_out}
        self.ngx.write_config(cat + self.http + SERVER, {
            "A_URL": self.a.url, "B_URL": self.b.url,
            "LOCATION": self.location})

    def reprice(self, **kw):
        self.write(**kw)
        self.ngx.reload()

    def turn(self, session, turns=1, user="fix the failing test", tools=True,
             tier="simple", headers=None, last_role="tool", **extra):
        """One turn of an agent session: history grows with `turns`."""
        msgs = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": user}]
        for i in range(turns - 1):
            msgs.append({"role": "assistant", "content": "step %d" % i})
            # a user's follow-up is a short ask, a tool's output is long
            msgs.append({"role": "user" if last_role == "user" else "tool",
                         "content": "thanks, go on" if last_role == "user"
                         else "output %d " % i * 30,
                         **({} if last_role == "user"
                            else {"tool_call_id": "c%d" % i})})
        body = {"model": "auto", "messages": msgs, **extra}
        if tools:
            body["tools"] = TOOLS
        h = {}
        if session is not None:
            h["x-session-id"] = session
        if tier is not None:
            h["X-LLMRoute-Tier"] = tier
        h.update(headers or {})
        resp = post_json(self.port, "/v1/chat/completions", body, headers=h)
        assert resp.status == 200, resp
        return resp

    def log(self, n, timeout=5.0):
        """The sess.log lines once there are n (logged after the answer)."""
        deadline = time.monotonic() + timeout
        path = self.ngx.prefix / "logs" / "sess.log"
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def where(self, resp):
        return "%s/%s" % (resp.header("X-LLMRoute-Provider"),
                          resp.header("X-LLMRoute-Model"))

    def moves(self):
        text = get(self.port, "/metrics").body.decode()
        return {m.group(1): int(m.group(2)) for m in re.finditer(
            r'^llmroute_session_moves_total\{reason="(\w+)"\} (\d+)$', text,
            re.M)}

    def moved(self, **want):
        got = {k: v for k, v in self.moves().items() if v}
        assert got == want, got


@pytest.fixture
def site(nginx, mocks):
    def make(**kw):
        return Site(nginx, mocks, **kw)
    return make


def test_session_stays_on_its_cache_and_new_sessions_go_cheapest(site):
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"

    # b becomes 3 % cheaper than a: s1's cached prefix keeps it on a
    s.reprice(a_in="1.03", b_in="1.00")
    for n in range(2, 6):
        assert s.where(s.turn("s1", turns=n)) == "a/small-a"

    # a session without a cache goes to the new cheapest provider
    assert s.where(s.turn("s2")) == "b/small-b"
    s.moved()


def test_move_cheaper_when_the_reread_pays(site):
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"
    s.reprice(a_in="20.00", b_in="1.00")
    assert s.where(s.turn("s1", turns=2)) == "b/small-b"
    assert s.where(s.turn("s1", turns=3)) == "b/small-b"
    s.moved(cheaper=1)


def test_move_pays_back_over_the_turns_to_come(site):
    """b's answers become 5 % cheaper: a re-read does not pay for one turn
    but does over the turns a long session is likely to have left (as
    many as it had, 16 at least): a young session stays, the same one
    moves later, once.  Its answers are 512 tokens: what a turn to come is
    expected to cost."""
    s = site()
    s.a.default = s.b.default = {"mode": "ok",
                                 "usage": {"completion_tokens": 512}}
    assert s.where(s.turn("s1")) == "a/small-a"
    s.reprice(a_in="1.00", b_in="1.00", b_out="1.90")
    where = [s.where(s.turn("s1", turns=n, last_role="user"))
             for n in range(2, 36)]
    assert where[:16] == ["a/small-a"] * 16, where    # within the floor
    assert where[-1] == "b/small-b", where
    assert where == sorted(where), where            # moved once, for good
    s.moved(cheaper=1)
    # a new session goes to b at once
    assert s.where(s.turn("s2")) == "b/small-b"


def test_a_move_rereads_only_what_the_agent_scaffold_leaves(site):
    """Every session of an agent starts with the same system prompt and
    tools, which a provider caches for all of them: once another session
    of the agent went to b, a move of s1 to b re-reads only s1's own
    messages, and b's 20 % cheaper input pays for that at once (priced as
    a whole re-read it would not)."""
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"
    s.reprice(a_in="1.00", b_in="0.80")
    assert s.where(s.turn("s2")) == "b/small-b"
    assert s.where(s.turn("s1", turns=2)) == "b/small-b"
    s.moved(cheaper=1)


def test_an_agent_scaffold_nowhere_else_keeps_the_session(site):
    """The same price cut, but no session of the agent went to b: its
    scaffold is not cached there, the move would re-read all of it."""
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"
    s.reprice(a_in="1.00", b_in="0.80")
    assert s.where(s.turn("s2", tools=False)) == "b/small-b"   # another
    assert s.where(s.turn("s1", turns=2)) == "a/small-a"
    s.moved()


def test_ranked_by_its_answers_not_by_max_tokens(site):
    """An agent asks for max_tokens 32000 and gets a few hundred tokens.
    b's output becomes 3 % cheaper: priced at 32000 tokens a turn, that
    would outweigh re-reading the prompt on b at once; at the session's
    own answers (7 tokens here) it never does, so the session stays."""
    s = site()
    assert s.where(s.turn("s1", max_tokens=32000)) == "a/small-a"
    s.reprice(a_in="1.00", b_in="1.00", b_out="1.94")
    for n in range(2, 9):
        assert s.where(s.turn("s1", turns=n, max_tokens=32000)) \
            == "a/small-a", n
    s.moved()
    # a new session has no answers yet: it goes where this one costs least
    assert s.where(s.turn("s2", max_tokens=32000)) == "b/small-b"


def test_move_tier_up(site):
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"
    assert s.where(s.turn("s1", turns=2, tier="complex")) == "b/big-b"
    s.moved(tier_up=1)


def test_move_ineligible(site):
    s = site(a_model="json")         # a cannot call tools
    assert s.where(s.turn("s1", tools=False)) == "a/small-a"
    assert s.where(s.turn("s1", turns=2, tools=True)) == "b/small-b"
    s.moved(ineligible=1)


def test_move_cooldown(site):
    s = site()
    assert s.where(s.turn("s1")) == "a/small-a"
    # another session finds a rate limited: a cools down for 30 s
    s.a.script([{"mode": "status", "status": 429, "retry_after": "30"}])
    r = s.turn("s2")
    assert s.where(r) == "b/small-b"
    assert s.where(s.turn("s1", turns=2)) == "b/small-b"
    s.moved(cooldown=1)


def leave_a_while_it_cools(s):
    """s1's turns 1-3 on a, turn 4 on b while a cools down for 2 s (after
    another session's 429), then a is back."""
    for n in (1, 2, 3):
        assert s.where(s.turn("s1", turns=n)) == "a/small-a"
    s.a.script([{"mode": "status", "status": 429, "retry_after": "2"}])
    assert s.where(s.turn("s2")) == "b/small-b"
    assert s.where(s.turn("s1", turns=4)) == "b/small-b"
    time.sleep(2.3)


def test_back_to_a_previous_holder_whose_cache_lives(site):
    """After a move, the old holder still caches the session's prompt up
    to the move (until its TTL): going back re-reads only what came
    since, so a price cut there makes the session return."""
    s = site()
    leave_a_while_it_cools(s)
    # a's cache of turn 3 makes it cheaper than b's of turn 4; priced as
    # a whole re-read, a would lose
    s.reprice(a_in="0.30", b_in="1.00")
    assert s.where(s.turn("s1", turns=5)) == "a/small-a"
    s.moved(cooldown=1, cheaper=1)


def test_move_limit(site):
    s = site(a_extra="rpm=2")
    assert s.where(s.turn("s1")) == "a/small-a"
    assert s.where(s.turn("s2")) == "a/small-a"
    # a has served its 2 requests this minute
    assert s.where(s.turn("s1", turns=2)) == "b/small-b"
    s.moved(limit=1)


def test_cache_ttl_ends_stickiness(site):
    s = site(a_model="tools json cache_ttl=1s")
    assert s.where(s.turn("s1")) == "a/small-a"
    s.reprice(a_in="1.03", b_in="1.00", a_model="tools json cache_ttl=1s")
    assert s.where(s.turn("s1", turns=2)) == "a/small-a"    # still cached
    time.sleep(1.6)
    assert s.where(s.turn("s1", turns=3)) == "b/small-b"    # cache gone
    s.moved(expired=1)


def test_eviction_under_a_small_zone(site):
    s = site(zone="32k")
    assert s.where(s.turn("first")) == "a/small-a"
    s.reprice(zone="32k", a_in="1.03", b_in="1.00")
    for i in range(400):
        s.turn("filler-%d" % i, tools=False)
    assert s.moves()["evicted"] > 0
    # the first session lost its entry: it is a new session, on b
    assert s.where(s.turn("first", turns=2)) == "b/small-b"


def test_eviction_takes_the_least_recently_used_not_in_use(site):
    """A full zone evicts the session least recently used that no request
    is using: one whose turn is in flight survives being the oldest, one
    used lately survives, an idle old one goes (counted as evicted)."""
    s = site(zone="32k")
    for name in ("old", "busy", "recent"):
        assert s.where(s.turn(name)) == "a/small-a"
    s.reprice(zone="32k", a_in="1.03", b_in="1.00")
    # busy's next turn stays on its cache at a, and a takes 3 s to answer
    s.a.script([{"mode": "ok", "delay": 3}])
    busy = {}
    t = threading.Thread(target=lambda: busy.update(
        r=s.turn("busy", turns=2)))
    t.start()
    assert s.a.wait_requests(4)
    for i in range(300):
        s.turn("filler-%d" % i, tools=False)
        if i % 20 == 0:
            assert s.where(s.turn("recent", turns=2)) == "a/small-a"
    t.join()
    assert s.where(busy["r"]) == "a/small-a"
    # far more sessions went than the zone holds: busy was the least
    # recently used one many times over
    assert s.moves()["evicted"] > 200
    # busy and recent kept their entries (their caches are on a); old,
    # evicted, is a new session: on b, the cheapest
    assert s.where(s.turn("busy", turns=3)) == "a/small-a"
    assert s.where(s.turn("recent", turns=3)) == "a/small-a"
    assert s.where(s.turn("old", turns=2)) == "b/small-b"


def test_tool_loop_keeps_the_sessions_tier(site):
    s = site()
    # the ask is complex (auto:complex floor); tool results follow
    r = s.turn("s1", tier=None, model="auto:complex")
    assert s.where(r) == "b/big-b"
    r = s.turn("s1", turns=2, tier=None)
    assert s.where(r) == "b/big-b"
    assert "session complex" in s.log(2)[-1]
    # a new user ask is classified afresh: the session's tier may drop
    r = s.turn("s1", turns=3, tier=None, last_role="user", user="hi")
    assert r.header("X-LLMRoute-Tier") != "complex", s.log(3)
    assert "session" not in s.log(3)[-1]


def session_of(resp):
    v = resp.header("X-Session")
    assert v and re.fullmatch(r"[0-9a-f]{32}", v), v
    return v


def test_default_key_chain(site):
    s = site()

    def sid(headers=None, session=None, **extra):
        return session_of(s.turn(session, headers=headers, **extra))

    base = sid(session="abc")
    assert "abc" not in base
    assert sid(headers={"X-Claude-Code-Session-Id": "abc"}) == base
    assert sid(metadata={"user_id": "user_1_account_2_session_abc"}) == base
    assert sid(metadata={"user_id": json.dumps(
        {"device_id": "d", "session_id": "abc"})}) == base
    assert sid(prompt_cache_key="abc") == base
    # the header comes first in the chain
    assert sid(headers={"X-Claude-Code-Session-Id": "abc"},
               prompt_cache_key="zzz") == base
    assert sid(session="other") != base

    # no key: the prefix (system, tools, first user message) is the session
    p1 = sid(turns=1)
    assert p1 != base
    assert sid(turns=4) == p1
    assert sid(turns=4, user="another task") != p1


def test_session_headers_in_any_case_the_first_of_a_name(site):
    """The session headers are found whatever their case; of two of a
    name the first counts; X-Claude-Code-Session-Id comes before
    x-session-id wherever it stands."""
    s = site()

    def sid(*lines):
        body = json.dumps({"model": "auto", "messages": [
            {"role": "user", "content": "hello"}]}).encode()
        head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                "%sContent-Type: application/json\r\nConnection: close\r\n"
                "Content-Length: %d\r\n\r\n"
                % ("".join(l + "\r\n" for l in lines), len(body))).encode()
        resp = raw_request(s.port, head + body)
        assert resp.status == 200, resp
        return session_of(resp)

    base = session_of(s.turn("abc"))
    assert sid("X-SESSION-ID: abc") == base
    assert sid("x-session-id: abc", "X-Session-Id: zzz") == base
    assert sid("X-Session-Id: zzz", "X-CLAUDE-CODE-SESSION-ID: abc") == base
    assert sid("x-claude-code-session-id: abc",
               "X-Claude-Code-Session-Id: zzz") == base
    assert sid("X-Session-Id: zzz") != base


def test_prefix_key_is_the_same_from_the_worker_memo(site):
    """A worker keeps the prefix keys (and scaffold levels) it computed,
    with the sampled bytes they came from: a prefix sent again gets its
    key back without hashing it again.  That key is the one hashing would
    give: the same after the memo's 16 slots went to other prefixes, and a
    prefix that differs in its length or in a sampled byte has its own;
    one that differs only between the samples (the first and last 1024
    bytes of each part) shares the key, as it always did."""
    s = site()

    def sid(system, user="fix the failing test", tools=True):
        body = {"model": "auto", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user}]}
        if tools:
            body["tools"] = TOOLS
        resp = post_json(s.port, "/v1/chat/completions", body,
                         headers={"X-LLMRoute-Tier": "simple"})
        assert resp.status == 200, resp
        return session_of(resp)

    k = sid(SYSTEM)                     # hashed, then kept
    assert sid(SYSTEM) == k             # from the memo
    middle = len(SYSTEM) // 2
    longer = SYSTEM[:middle] + "x" + SYSTEM[middle:]
    assert sid(longer) not in (k, sid(SYSTEM[:middle] + SYSTEM[middle + 1:]))
    assert sid("Z" + SYSTEM[1:]) != k   # in the head sample
    assert sid(SYSTEM[:-1] + "Y") != k  # in the tail sample
    same = SYSTEM[:middle] + "Z" + SYSTEM[middle + 1:]
    assert sid(same) == k               # between the samples
    assert sid(SYSTEM, tools=False) != k
    assert sid(SYSTEM, user="another task") != k

    # every slot taken by other prefixes: hashed again, the same key
    for i in range(20):
        sid(SYSTEM, user="task %d" % i)
    assert sid(SYSTEM) == k
    assert sid(same) == k


def test_session_directive_value_and_off(site):
    s = site(location="llmroute_session $http_x_conversation;")
    a = session_of(s.turn(None, headers={"X-Conversation": "abc"}))
    assert a == session_of(s.turn("abc"))      # same key, any source
    assert session_of(s.turn(None, headers={"X-Conversation": "x"})) != a

    s2 = site(location="llmroute_session off;")
    r = s2.turn("abc")
    assert r.header("X-Session") in (None, "")


def test_prompt_cache_key_splice(site):
    s = site(location="llmroute_cache_key on;")
    body = (b'{ "messages" : [{"role":"user","content":"hi \\u00e9"}],'
            b'\n  "model":"auto" }')
    r = post_json(s.port, "/v1/chat/completions", body,
                  headers={"x-session-id": "abc", "X-LLMRoute-Tier": "simple"})
    assert r.status == 200, r
    key = session_of(r)
    got = s.a.last.body
    want = with_model(body, "small-a")
    want = (want[:1] + b'"prompt_cache_key":"' + key.encode() + b'",'
            + want[1:])
    assert got == want, got

    # the client's own key is kept: byte-exact but for the model
    body2 = (b'{"model":"auto","prompt_cache_key":"mine",'
             b'"messages":[{"role":"user","content":"hi"}]}')
    r = post_json(s.port, "/v1/chat/completions", body2,
                  headers={"X-LLMRoute-Tier": "simple"})
    assert r.status == 200
    assert s.a.last.body == with_model(body2, "small-a")

    # a stream gets both additions; the rest is the client's bytes
    body3 = (b'{"stream":true,"messages":[{"role":"user","content":"x"}]}')
    r = post_json(s.port, "/v1/chat/completions", body3,
                  headers={"x-session-id": "s3", "X-LLMRoute-Tier": "simple"})
    assert r.status == 200
    k3 = session_of(r)
    assert s.a.last.body == (
        b'{"model":"small-a","prompt_cache_key":"' + k3.encode() + b'",'
        b'"stream":true,"messages":[{"role":"user","content":"x"}],'
        b'"stream_options":{"include_usage":true}}')


def test_cache_key_off_by_default(site):
    s = site()
    body = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
    r = post_json(s.port, "/v1/chat/completions", body,
                  headers={"x-session-id": "abc", "X-LLMRoute-Tier": "simple"})
    assert r.status == 200
    assert s.a.last.body == with_model(body, "small-a")


def test_cache_hit_variable_and_metric(site):
    s = site()
    s.a.default = {"mode": "ok", "usage": {"prompt_tokens": 2000,
                                           "completion_tokens": 10,
                                           "cached_tokens": 1536}}
    s.turn("s1")
    s.turn("s1", turns=2)
    assert s.log(2)[-1].split()[2] == "0.768"
    text = get(s.port, "/metrics").body.decode()
    assert ('llmroute_cache_read_ratio{provider="a",model="small-a"} '
            '0.768000') in text, text
    js = get(s.port, "/metrics?format=json").json()
    assert set(js["session_moves"]) == {
        "tier_up", "ineligible", "cooldown", "limit", "cheaper", "expired",
        "evicted"}


def test_bad_session_directives(nginx, mocks):
    a = mocks("a")
    for line, msg in [
            ("llmroute_model a m tier=simple input=1 output=1 cache_ttl=x;",
             'invalid cache_ttl "cache_ttl=x"'),
            ("llmroute_model a m tier=simple input=1 output=1 cache_ttl=0;",
             'invalid cache_ttl "cache_ttl=0"'),
            ("llmroute_model a m tier=simple input=1 output=1 "
             "cache_write=1.2345;", 'invalid price'),
            ('llmroute_session "";', 'empty session key'),
            ("llmroute_session a; llmroute_session b;", 'is duplicate'),
            ("llmroute_cache_key maybe;", 'invalid value "maybe"')]:
        conf = ("llmroute_zone z:1m; llmroute_provider a %s;\n    " % a.url
                + line + "\n")
        if "llmroute_model" not in line:
            conf += "    llmroute_model a m tier=simple input=1 output=1;\n"
        ngx = nginx(conf, start=False)
        rc, err = ngx.check()
        assert rc != 0 and msg in err and "nginx.conf:" in err, err


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_two_nodes_share_a_session_through_redis(site, tmp_path):
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        line = "    llmroute_redis %s sync=100ms;\n" % srv.addr
        n1, n2 = site(http=line), site(http=line)
        assert n1.where(n1.turn("s1")) == "a/small-a"
        # b becomes 3 % cheaper on both nodes
        n1.reprice(a_in="1.03", b_in="1.00")
        n2.reprice(a_in="1.03", b_in="1.00")
        time.sleep(0.5)             # a few sync intervals
        # node 2 never saw s1: Redis says its cache is on a
        assert n2.where(n2.turn("s1", turns=2)) == "a/small-a"
        assert n2.where(n2.turn("s2")) == "b/small-b"
        n2.moved()
        # no client session id reaches Redis, only the keyed hash
        dump = repr(srv.hgetall("{llmroute}:sessions"))
        assert "s1" not in dump and len(srv.keys("*sessions*")) == 2, dump
    finally:
        srv.kill()


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_two_nodes_share_the_previous_holder(site, tmp_path):
    """After a move, the holder it left still caches the prompt up to the
    move: the other node learns that too, so a price cut there brings the
    session back (priced as a whole re-read, it would stay)."""
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        line = "    llmroute_redis %s sync=100ms;\n" % srv.addr
        n1, n2 = site(http=line), site(http=line)
        leave_a_while_it_cools(n1)
        n2.reprice(a_in="0.30", b_in="1.00")
        time.sleep(0.5)
        assert n2.where(n2.turn("s1", turns=5)) == "a/small-a"
        n2.moved(cheaper=1)
    finally:
        srv.kill()


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_a_failed_session_push_is_pushed_again(site, tmp_path):
    """Redis refuses the sync's script for a while (an ACL here; a dropped
    connection alike): the sessions of the failed pushes are not lost, the
    next push that succeeds carries them."""
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        line = "    llmroute_redis %s sync=100ms;\n" % srv.addr
        n1 = site(http=line)
        n1.ngx.allow_alerts = True
        srv.call("ACL", "SETUSER", "default", "-eval", "-evalsha")
        time.sleep(0.3)
        assert n1.where(n1.turn("s1")) == "a/small-a"
        time.sleep(0.5)             # pushes fail
        assert srv.hgetall("{llmroute}:sessions") == {}
        srv.call("ACL", "SETUSER", "default", "+eval", "+evalsha")
        time.sleep(0.5)
        assert len(srv.hgetall("{llmroute}:sessions")) == 1
        # a node that never saw s1 finds its cache on a
        n2 = site(http=line)
        n2.reprice(a_in="1.03", b_in="1.00")
        time.sleep(0.5)
        assert n2.where(n2.turn("s1", turns=2)) == "a/small-a"
    finally:
        srv.kill()


def test_duplicate_session_hints_are_refused(site):
    s = site()
    for body, param in [
            (b'{"prompt_cache_key":"a","prompt_cache_key":"b",'
             b'"messages":[{"role":"user","content":"hi"}]}',
             "prompt_cache_key"),
            (b'{"metadata":{},"metadata":{"user_id":"u"},'
             b'"messages":[{"role":"user","content":"hi"}]}', "metadata")]:
        r = post_json(s.port, "/v1/chat/completions", body)
        assert r.status == 400, r
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and err["param"] == param, err
    assert s.a.requests == [] and s.b.requests == []


# Anthropic-format providers: Claude Code's session header or its
# metadata.user_id keeps a session on the holder of its prompt cache; the
# uncached rest is priced at cache_write there (1.25 x input by default)
ANTHROPIC = """
    llmroute_zone llmroute:1m;
    llmroute_provider a %%A_URL%% key_env=TEST_KEY_A format=anthropic;
    llmroute_provider b %%B_URL%% key_env=TEST_KEY_B format=anthropic;
    llmroute_model a claude-a tier=simple input=%%A_IN%% output=2.00 cached_input=0.10 tools;
    llmroute_model b claude-b tier=simple input=1.00 output=2.00 cached_input=0.10 tools;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            llmroute on;
            llmroute_cache_key on;
            add_header X-Session $llmroute_session always;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header x-api-key $llmroute_x_api_key;
            proxy_http_version 1.1;
        }
        location = /metrics { llmroute_metrics; }
    }
"""


def test_anthropic_session_stays_on_its_holder(nginx):
    from mock_anthropic import MockAnthropic

    a, b = MockAnthropic("a"), MockAnthropic("b")
    try:
        ngx = nginx("", start=False)

        def conf(a_in):
            ngx.write_config(ANTHROPIC, {"A_URL": a.url, "B_URL": b.url,
                                         "A_IN": a_in})

        conf("0.90")
        ngx.start()
        hdrs = {"anthropic-version": "2023-06-01",
                "X-LLMRoute-Tier": "simple"}

        def turn(turns, headers=None, **extra):
            msgs = [{"role": "user", "content": "fix the failing test"}]
            for i in range(turns - 1):
                msgs.append({"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t%d" % i, "name": "Read",
                     "input": {"file_path": "a.py"}}]})
                msgs.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t%d" % i,
                     "content": "output %d " % i * 30}]})
            body = {"model": "auto", "max_tokens": 1024,
                    "system": SYSTEM, "messages": msgs,
                    "tools": [{"name": "Read", "input_schema": {
                        "type": "object"}}], **extra}
            r = post_json(ngx.port, "/v1/messages", body,
                          headers=dict(hdrs, **(headers or {})))
            assert r.status == 200, r
            return r

        def where(r):
            return r.header("X-LLMRoute-Provider")

        cc = {"X-Claude-Code-Session-Id": "cc-1"}
        meta = {"user_id": "user_1_account_2_session_meta-1"}
        assert where(turn(1, headers=cc)) == "a"
        assert where(turn(1, metadata=meta)) == "a"

        # b is now 3 % cheaper: both sessions keep a, a new one goes to b
        conf("1.03")
        ngx.reload()
        for n in range(2, 5):
            assert where(turn(n, headers=cc)) == "a"
            assert where(turn(n, metadata=meta)) == "a"
        assert where(turn(1, headers={"X-Claude-Code-Session-Id": "new"})) \
            == "b"

        # the header and metadata.user_id name the same session
        s1 = turn(2, headers={"X-Claude-Code-Session-Id": "same"})
        s2 = turn(2, metadata={"user_id": "user_1_session_same"})
        assert s1.header("X-Session") == s2.header("X-Session") != ""

        # Anthropic's API has no prompt_cache_key: none is spliced in
        for m in (a, b):
            for rec in m.requests:
                assert b"prompt_cache_key" not in rec.body, rec.body[:200]
        text = get(ngx.port, "/metrics").body.decode()
        assert re.search(r'^llmroute_session_moves_total\{reason="cheaper"\}'
                         r' 0$', text, re.M), text

        # the hash is keyed with the providers' x-api-key keys: other keys,
        # another hash of the same session id
        ngx.stop()
        ngx.env_vars.update(TEST_KEY_A="sk-other-a", TEST_KEY_B="sk-other-b")
        ngx.start()
        s3 = turn(2, headers={"X-Claude-Code-Session-Id": "same"})
        assert s3.header("X-Session") not in ("", s1.header("X-Session"))
    finally:
        a.close()
        b.close()
