"""Second hardening pass, secrets and billing (issue 14, items 6-11):
provider keys never in r->headers_in, client credentials never forwarded,
client secrets hashed in the zone and in Redis, usage a client cannot
switch off, case-folded duplicate members refused.
"""

import json
import os
import re
import shutil
import socket
import threading
import time

import pytest

from llmroute_harness import (
    CATALOG, CHAT, CLIENT_SECRET, KEY_A, KEY_B, SERVER, assert_error,
    assert_routed, chat_body, client_id, get, post_json, raw_request,
    stream_post, with_model)
from redis_server import RedisServer

SIMPLE = {"X-LLMRoute-Tier": "simple"}
RETRY = "llmroute_retries 2; proxy_connect_timeout 2s; proxy_read_timeout 2s;"
CLIENT = {"Authorization": "Bearer client-secret-7781",
          "x-api-key": "client-x-7781", "api-key": "client-a-7781"}


# one provider, its URL and the location's extra lines as %%URL%%/%%EXTRA%%
ONE_PROVIDER = """
    llmroute_zone llmroute:1m;
    llmroute_provider one %%URL%% key_env=TEST_KEY_A;
    llmroute_model one small-1 tier=simple input=0.1 output=0.4;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/chat/completions {
            llmroute on;
            proxy_pass $llmroute_url;
            %%EXTRA%%
        }
    }
"""


def log_lines(r, name, n=1, timeout=5.0):
    """The lines of logs/NAME once there are n (nginx writes the access
    log just after the response)."""
    path = r.ngx.prefix / "logs" / name
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            assert len(lines) >= n, (name, lines)
            return lines
        time.sleep(0.05)


def no_credentials(rec, *secrets):
    """Nothing a provider (or mirror) received carries a client secret."""
    for name, value in rec.headers:
        for s in ("client-secret-7781", "client-x-7781", "client-a-7781")\
                + secrets:
            assert s not in value, (name, value)
        assert name.lower() not in ("x-api-key", "api-key"), (name, value)


# ------------------------------------------------------- 6: provider keys

CREDS_LOG = """
    log_format creds '$http_authorization|$http_x_api_key|$http_api_key';
"""


@pytest.mark.parametrize("fail_first", [False, True])
def test_access_log_sees_client_credentials_not_provider_keys(routed,
                                                              fail_first):
    r = routed(http_extra=CREDS_LOG,
               location_extra=RETRY + " access_log logs/creds.log creds;")
    if fail_first:
        r.cheap.script([{"mode": "status", "status": 500}])
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert resp.status == 200, resp
    got = r.provider_requests()[-1]
    assert got.header_all("Authorization") == [
        "Bearer " + (KEY_B if fail_first else KEY_A)]
    no_credentials(got)
    assert log_lines(r, "creds.log") == [
        "Bearer client-secret-7781|client-x-7781|client-a-7781"]


def test_mirror_never_sees_a_provider_key(routed, mocks):
    mirror = mocks("mirror")
    r = routed(location_extra="mirror /mirror;",
               server_extra="""
        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:%d/v1/chat/completions;
        }""" % mirror.port)
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert_routed(resp, "cheap", "small-1")
    for _ in range(100):
        if mirror.requests:
            break
        time.sleep(0.05)
    assert mirror.requests, "the mirror got nothing"
    for name, value in mirror.last.headers:
        assert KEY_A not in value and KEY_B not in value, (name, value)


def test_error_page_fallback_gets_no_key(routed, mocks):
    """All providers fail; an error_page proxies elsewhere: that upstream
    sees neither a provider key nor the client's credentials."""
    other = mocks("other")
    r = routed(location_extra="llmroute_retries 0; proxy_intercept_errors on;"
               " error_page 502 = @fallback;",
               server_extra="""
        location @fallback {
            proxy_pass http://127.0.0.1:%d;
        }""" % other.port)
    r.cheap.script([{"mode": "status", "status": 502}])
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert resp.status == 200, resp
    assert other.requests, "the fallback got nothing"
    for name, value in other.last.headers:
        assert KEY_A not in value and KEY_B not in value, (name, value)


def test_retry_keeps_headers_after_removed_credentials(routed):
    """Credential headers before Content-Length and another header: the
    retry rewrites Content-Length, and must not write it into the header
    that a shifted list would have put in its place."""
    r = routed(location_extra=RETRY)
    r.cheap.script([{"mode": "status", "status": 500}])
    body = chat_body()
    head = ("POST %s HTTP/1.1\r\nHost: localhost\r\nx-api-key: c1\r\n"
            "api-key: c2\r\nX-LLMRoute-Tier: simple\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            "Content-Length: %d\r\nX-Trace: abc\r\nX-Other: def\r\n\r\n"
            % (CHAT, len(body))).encode()
    resp = raw_request(r.port, head + body)
    assert_routed(resp, "premium", "mid-1", attempts="2")
    for got in (r.cheap.last, r.premium.last):
        assert got.header_all("X-Trace") == ["abc"], got.headers
        assert got.header_all("X-Other") == ["def"], got.headers
        assert got.header_all("Content-Length") == [str(len(got.body))]
        assert got.header("x-api-key") is None
        assert got.header("api-key") is None
    assert r.premium.last.body == with_model(body, "mid-1")
    assert r.premium.last.header_all("Host") == [r.premium.host]


def test_header_names_in_any_case_and_the_first_of_a_name(routed):
    """HTTP/1 names arrive as the client spelled them: the credentials and
    Accept-Encoding stay home however they are spelled (nginx refuses a
    second Authorization; a second x-api-key comes), every other header
    goes through in its order, and of two X-LLMRoute-Tier headers the
    first one counts."""
    r = routed()
    body = chat_body("prove the theorem in full generality")
    head = ("POST %s HTTP/1.1\r\nHost: localhost\r\n"
            "AUTHORIZATION: Bearer cred-0-9913\r\n"
            "X-Api-KEY: cred-1-9913\r\nx-api-key: cred-2-9913\r\n"
            "Api-Key: cred-3-9913\r\n"
            "X-GOOG-API-KEY: cred-4-9913\r\n"
            "Proxy-AUTHORIZATION: Basic cred-5-9913\r\n"
            "ACCEPT-ENCODING: gzip\r\nX-Trace: abc\r\n"
            "x-llmroute-TIER: simple\r\nX-LLMRoute-Tier: complex\r\n"
            "X-Other: def\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nContent-Length: %d\r\n\r\n"
            % (CHAT, len(body))).encode()
    resp = raw_request(r.port, head + body)
    assert_routed(resp, "cheap", "small-1", "simple")
    got = r.cheap.last
    no_credentials(got, *("cred-%d-9913" % i for i in range(6)))
    for name in ("x-goog-api-key", "Proxy-Authorization", "Accept-Encoding"):
        assert got.header(name) is None, (name, got.headers)
    names = [n.lower() for n, _ in got.headers]
    assert names.index("x-trace") < names.index("x-other"), names
    assert got.header_all("X-Trace") == ["abc"], got.headers


def test_client_credentials_not_forwarded_without_proxy_set_header(
        nginx, mocks):
    """An operator who forgets proxy_set_header Authorization (and any
    x-api-key line): the client's credentials still stay home."""
    cheap = mocks("cheap")
    ngx = nginx(ONE_PROVIDER, vars={
        "URL": cheap.url, "EXTRA": "proxy_set_header Host $llmroute_host;"})
    resp = post_json(ngx.port, CHAT, chat_body(), CLIENT)
    assert resp.status == 200, resp
    no_credentials(cheap.last)
    assert cheap.last.header("Authorization") is None


# ------------------------------------------------- 7: client keys hashed

SECRET_A = "Bearer client-secret-7781"
SECRET_B = "Bearer client-secret-9902"


def shared_memory(pid):
    """The bytes of every shared mapping of a process (the zone)."""
    out = b""
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "s" not in perms or "r" not in perms:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            mem.seek(lo)
            out += mem.read(hi - lo)
    return out


class Monitor:
    """Redis MONITOR on its own connection: every command the server
    executes, as it saw it."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), 5)
        self.sock.sendall(b"MONITOR\r\n")
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.data += chunk

    def close(self):
        self.sock.close()
        self.thread.join(2)
        return self.data


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_client_keys_are_hashed_in_zone_and_redis(routed, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        mon = Monitor(redis)
        r = routed(http_extra="llmroute_redis %s sync=100ms;\n"
                   "    llmroute_client_hash key_env=TEST_CLIENT_SECRET;\n"
                   % redis.addr,
                   server_extra="location = /metrics { llmroute_metrics; }",
                   location_extra="llmroute_client $http_authorization "
                   "rpm=1000 budget=10/day;")
        for secret in (SECRET_A, SECRET_B, SECRET_A):
            resp = post_json(r.port, CHAT, chat_body(),
                             dict(SIMPLE, Authorization=secret))
            assert_routed(resp, "cheap", "small-1")
        ids = [client_id(SECRET_A), client_id(SECRET_B)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            keys = redis.keys("*")
            if all(any(i in k for k in keys) for i in ids):
                break
            time.sleep(0.1)
        assert "{llmroute}:c:" + ids[0] in keys, keys
        assert "{llmroute}:c:" + ids[1] in keys, keys
        seen = mon.close()
        assert ids[0].encode() in seen     # MONITOR saw the sync
        assert redis.call("SAVE") == "OK"
        dump = (redis.dir / "dump.rdb").read_bytes()
        assert ids[0].encode() in dump
        for text in (" ".join(keys).encode(), seen, dump,
                     get(r.port, "/metrics").body,
                     get(r.port, "/metrics?format=json").body,
                     r.ngx.error_log().encode()):
            for s in (b"client-secret", CLIENT_SECRET.encode()):
                assert s not in text, text[:3000]
        # the zone holds the hash, never the key
        for pid in r.ngx.worker_pids():
            shm = shared_memory(pid)
            assert ids[0].encode() in shm
            assert b"client-secret" not in shm
    finally:
        redis.kill()


def test_client_keys_are_hashed_in_the_zone_without_redis(routed):
    """One node, no llmroute_client_hash: a random per-zone secret; the
    budget still counts per client, and survives a reload."""
    r = routed(location_extra="llmroute_client $http_authorization "
               "rpm=2;")
    for _ in range(2):
        resp = post_json(r.port, CHAT, chat_body(),
                         dict(SIMPLE, Authorization=SECRET_A))
        assert_routed(resp, "cheap", "small-1")
    assert r.ngx.reload()
    assert_error(post_json(r.port, CHAT, chat_body(),
                           dict(SIMPLE, Authorization=SECRET_A)),
                 429, "rate_limit_exceeded")
    resp = post_json(r.port, CHAT, chat_body(),
                     dict(SIMPLE, Authorization=SECRET_B))
    assert_routed(resp, "cheap", "small-1")
    for pid in r.ngx.worker_pids():
        shm = shared_memory(pid)
        assert b"client-secret" not in shm
        assert client_id(SECRET_A).encode() not in shm   # a random secret
        assert re.search(rb"[0-9a-f]{32}", shm)


@pytest.mark.parametrize("extra, env, message", [
    ("llmroute_redis 127.0.0.1:6379;", {},
     '"llmroute_client" with "llmroute_redis" needs "llmroute_client_hash'),
    ("llmroute_client_hash key_env=NO_SUCH_VAR_X;", {},
     '"NO_SUCH_VAR_X" of "key_env=NO_SUCH_VAR_X" is not set'),
    ("llmroute_client_hash key_env=SHORT_SECRET;", {"SHORT_SECRET": "abc"},
     '"SHORT_SECRET" of "key_env=SHORT_SECRET" is too short'),
    ("llmroute_client_hash TEST_CLIENT_SECRET;", {},
     'invalid parameter "TEST_CLIENT_SECRET"'),
])
def test_client_hash_config_checked(nginx, extra, env, message):
    ngx = nginx(CATALOG + "    " + extra + "\n" + SERVER, start=False,
                env_vars=env, vars={
                    "CHEAP_URL": "http://127.0.0.1:9/v1/chat/completions",
                    "PREMIUM_URL": "http://127.0.0.1:9/v1/chat/completions",
                    "SERVER_EXTRA": "", "LOCATION_EXTRA":
                    "llmroute_client $http_authorization rpm=5;"})
    rc, err = ngx.check()
    assert rc != 0, err
    assert message in err, err
    line = ngx.conf_line_of("llmroute_client $http" if "redis" in extra
                            else extra)
    assert "nginx.conf:%d" % line in err, err
    assert "abc" not in err.replace("abc\"", "")


# ------------------------------------- 8: compressed answers, unbillable

USAGE_LOG = """
    log_format usage '$llmroute_prompt_tokens $llmroute_completion_tokens '
                     '$llmroute_cost';
"""


def usage_line(r, n=1):
    return log_lines(r, "usage.log", n)[n - 1].split()


def test_client_gzip_does_not_switch_billing_off(routed):
    """The client asks for gzip, the location has no Accept-Encoding line:
    the provider is asked for identity, and the usage is read."""
    r = routed(http_extra=USAGE_LOG,
               location_extra="access_log logs/usage.log usage;")
    r.cheap.default = {"mode": "ok", "gzip": True}
    resp = post_json(r.port, CHAT, chat_body(),
                     dict(SIMPLE, **{"Accept-Encoding": "gzip, br"}))
    assert_routed(resp, "cheap", "small-1")
    assert r.cheap.last.header("Accept-Encoding") is None
    assert resp.header("Content-Encoding") is None
    assert usage_line(r) == ["12", "7", "0.000004000"]


def test_forced_gzip_is_billed_by_estimate(routed):
    """A location that forces Accept-Encoding itself: the answer cannot be
    read, and is billed by the admission estimate, not as free."""
    r = routed(http_extra=USAGE_LOG,
               location_extra="access_log logs/usage.log usage;"
               " proxy_set_header Accept-Encoding gzip;")
    r.cheap.default = {"mode": "ok", "gzip": True}
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert resp.status == 200 and resp.header("Content-Encoding") == "gzip"
    prompt, completion, cost = usage_line(r)
    assert int(completion) == 512, (prompt, completion)   # simple's budget
    assert float(cost) > 0
    assert "usage unreadable, billed by estimate" in r.ngx.error_log()


# ------------------------------- 9: stream usage a client cannot turn off

@pytest.mark.parametrize("options, sent_options", [
    ({"include_usage": False}, {"include_usage": True}),
    ({"include_usage": None}, {"include_usage": True}),
    (None, {"include_usage": True}),
    ({}, {"include_usage": True}),
    ({"include_obfuscation": False},
     {"include_usage": True, "include_obfuscation": False}),
    ({"include_obfuscation": False, "include_usage": False},
     {"include_obfuscation": False, "include_usage": True}),
], ids=["false", "usage-null", "null", "empty", "other", "other-false"])
def test_stream_usage_asked_whatever_the_client_says(routed, options,
                                                     sent_options):
    r = routed(http_extra=USAGE_LOG,
               location_extra="access_log logs/usage.log usage;")
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 40, "completion_tokens": 9, "cached_tokens": 0}}
    body = chat_body("hi", stream=True, stream_options=options)
    res = stream_post(r.port, CHAT, body, SIMPLE)
    assert res.status == 200
    sent = r.cheap.last.json()
    assert sent["stream_options"] == sent_options
    assert sent == dict(json.loads(body), model="small-1",
                        stream_options=sent_options)
    events = res.data_events()
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        assert json.loads(e)["choices"], "usage-only chunk reached client"
    assert usage_line(r)[:2] == ["40", "9"]


# ------------------------------------------- 11: case-folded duplicates

@pytest.mark.parametrize("member", [
    '"Model":"big-1"', '"MODEL":"big-1"', '"Stream":true',
    '"Max_Tokens":100000', '"Tools":[]', '"Messages":[]',
    '"Response_Format":{"type":"text"}', '"Stream_Options":null',
    '"MOD\\u0045L":"big-1"', '"mOdEl":"big-1"'])
def test_case_folded_member_refused(routed, member):
    r = routed()
    body = (b'{"model":"small-1","messages":[{"role":"user","content":'
            b'"hi"}],' + member.encode() + b'}')
    err = assert_error(post_json(r.port, CHAT, body), 400,
                       "invalid_request")
    assert "case" in err["message"]
    assert r.provider_requests() == []


@pytest.mark.parametrize("value, ok", [
    ("1", False), ("0", False), ('"true"', False), ("[]", False),
    ("{}", False), ("true", True), ("false", True), ("null", True)])
def test_stream_must_be_boolean(routed, value, ok):
    r = routed()
    body = (b'{"model":"small-1","messages":[{"role":"user","content":'
            b'"hi"}],"stream":' + value.encode() + b'}')
    resp = post_json(r.port, CHAT, body)
    if ok:
        assert resp.status == 200, resp
        return
    err = assert_error(resp, 400, "invalid_request")
    assert err["param"] == "stream"
    assert r.provider_requests() == []


# ------------------------------------------ 10: escalation and billing

ESC_LOG = r"""
    log_format esc escape=json '{"model":"$llmroute_model",'
        '"attempts":"$llmroute_attempts","cost":"$llmroute_cost",'
        '"status":"$status"}';
"""


def test_no_escalation_at_the_clients_own_max_tokens(routed):
    r = routed(http_extra=ESC_LOG,
               location_extra="llmroute_escalate on;"
               " access_log logs/esc.log esc;")
    r.cheap.default = {"mode": "ok", "finish_reason": "length",
                       "content": "cut sho", "usage": {
                           "prompt_tokens": 100, "completion_tokens": 5}}
    resp = post_json(r.port, CHAT, chat_body("hi", max_tokens=5), SIMPLE)
    assert_routed(resp, "cheap", "small-1")
    assert resp.header("X-LLMRoute-Escalated") is None
    assert resp.json()["choices"][0]["finish_reason"] == "length"
    assert r.premium.requests == []
    (line,) = r.ngx.json_log("esc.log")
    assert round(float(line["cost"]) * 1e9) == 100 * 100 + 5 * 400


def test_escalated_attempt_passes_the_budget(routed):
    """The first answer fits the client's budget, the escalation to the
    next tier does not: refused with 402 like any request, not run."""
    r = routed(http_extra=ESC_LOG,
               location_extra="llmroute_escalate on;"
               " access_log logs/esc.log esc;"
               " llmroute_client $http_x_team budget=0.001/day;")
    r.cheap.default = {"mode": "ok", "finish_reason": "length",
                       "content": "cut sho", "usage": {
                           "prompt_tokens": 10, "completion_tokens": 5}}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     dict(SIMPLE, **{"X-Team": "t1"}))
    assert_error(resp, 402, "budget_exceeded")
    assert len(r.cheap.requests) == 1 and r.premium.requests == []
    # the first attempt is billed all the same
    (line,) = r.ngx.json_log("esc.log")
    assert round(float(line["cost"]) * 1e9) == 10 * 100 + 5 * 400


def test_failover_passes_the_budget_with_its_own_estimate(routed):
    """cheap fails; premium's estimate does not fit: 502/402, not run."""
    r = routed(location_extra=RETRY +
               " llmroute_client $http_x_team budget=0.001/day;")
    r.cheap.script([{"mode": "status", "status": 500}])
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     dict(SIMPLE, **{"X-Team": "t1"}))
    assert resp.status in (402, 502), resp
    assert r.premium.requests == []
    # the failed attempt's reservation was given back: the budget is whole
    r.cheap.default = {"mode": "ok"}
    for _ in range(3):
        resp = post_json(r.port, CHAT, chat_body("hi"),
                         dict(SIMPLE, **{"X-Team": "t1"}))
        assert_routed(resp, "cheap", "small-1")


# --------------------------------------------- 17: the repository alone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked(pattern):
    import subprocess
    out = subprocess.run(["git", "-C", REPO, "ls-files", "-co",
                          "--exclude-standard", pattern],
                         stdout=subprocess.PIPE, check=True).stdout
    return [f for f in out.decode().split() if not f.startswith("t/node/")]


def test_docs_link_only_inside_the_repository():
    """Every relative link of every Markdown file resolves to a file of the
    repository; no document cites the project's folders outside it."""
    bad = []
    for f in tracked("*.md"):
        text = open(os.path.join(REPO, f), encoding="utf-8").read()
        for m in re.finditer(r"\]\(([^)\s]+)\)", text):
            link = m.group(1)
            if re.match(r"[a-z]+:", link) or link.startswith("#"):
                continue
            target = os.path.normpath(os.path.join(
                REPO, os.path.dirname(f), link.split("#")[0]))
            if not target.startswith(REPO + os.sep) \
                    or not os.path.exists(target):
                bad.append((f, link))
        for needle in ("../shared", "/work/shared", "SPEC.md"):
            if needle in text:
                bad.append((f, needle))
    assert bad == []
    spec = open(os.path.join(REPO, "docs", "spec.md")).read()
    for name in ("llmroute_zone", "llmroute_client_hash",
                 "$llmroute_authorization", "all_providers_failed",
                 "llmroute_alias", "(planned)"):
        assert name in spec, name


# ------------------------------------ 14: TLS and semi-trusted providers

@pytest.mark.parametrize("extra, warned", [
    ("", True),
    ("proxy_ssl_verify off;", True),
    ("proxy_ssl_verify on; proxy_ssl_trusted_certificate "
     "/etc/ssl/certs/ca-certificates.crt;", False),
])
def test_https_provider_without_verify_is_warned(nginx, extra, warned):
    ngx = nginx(ONE_PROVIDER, start=False, vars={
        "URL": "https://127.0.0.1:9/v1/chat/completions",
        "EXTRA": "proxy_set_header Authorization $llmroute_authorization; "
                 + extra})
    rc, err = ngx.check()
    assert rc == 0, err
    msg = ('location "/v1/chat/completions" sends the key of https '
           'provider "one" without "proxy_ssl_verify on"')
    assert (msg in err) == warned, err
    assert KEY_A not in err


def test_provider_x_accel_headers_are_ignored(routed):
    """A provider's X-Accel-Redirect would send the request to any location
    of the gateway (an internal one here); it is ignored."""
    r = routed(server_extra="""
        location /internal-only {
            internal;
            return 200 "INTERNAL-PAGE";
        }""")
    r.cheap.default = {"mode": "ok", "headers": {
        "X-Accel-Redirect": "/internal-only", "X-Accel-Limit-Rate": "1",
        "X-Accel-Buffering": "yes"}}
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_routed(resp, "cheap", "small-1")
    assert b"INTERNAL-PAGE" not in resp.body
    assert resp.body == r.cheap.responses[-1]
    assert resp.header("X-Accel-Redirect") is None


# ------------------------------------------------ 16: HTTP/2 clients (h2c)

H2_SERVER = """
    server {
        listen 127.0.0.1:%d http2;
        location /v1/chat/completions {
            llmroute on;
            llmroute_retries 2;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
            proxy_buffering off;
            access_log logs/usage.log usage;
        }
    }
"""


def h2_post(port, body, headers):
    """POST over h2c (prior knowledge) with curl: (status, headers dict,
    body bytes, HTTP version)."""
    import subprocess
    cmd = ["curl", "-sS", "--http2-prior-knowledge", "-X", "POST",
           "--data-binary", "@-", "-D", "-", "--max-time", "20",
           "-H", "Content-Type: application/json"]
    for k, v in headers.items():
        cmd += ["-H", "%s: %s" % (k, v)]
    cmd.append("http://127.0.0.1:%d%s" % (port, CHAT))
    out = subprocess.run(cmd, input=body, stdout=subprocess.PIPE,
                         check=True, timeout=30).stdout
    head, _, data = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    version, status = lines[0].split()[:2]
    hdrs = {k.lower(): v.strip() for k, _, v in
            (x.partition(":") for x in lines[1:])}
    return int(status), hdrs, data, version


@pytest.fixture
def h2(routed):
    def make():
        from llmroute_harness import free_port
        port = free_port()
        r = routed(http_extra=USAGE_LOG + H2_SERVER % port)
        r.h2 = port
        return r
    return make


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_h2c_json(h2):
    r = h2()
    body = chat_body()
    status, hdrs, data, version = h2_post(r.h2, body, SIMPLE)
    assert (version, status) == ("HTTP/2", 200)
    assert hdrs["x-llmroute-provider"] == "cheap"
    assert data == r.cheap.responses[-1]
    assert r.cheap.last.body == with_model(body, "small-1")
    assert r.cheap.last.header_all("Authorization") == ["Bearer " + KEY_A]
    assert usage_line(r)[:2] == ["12", "7"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_h2c_sse_strips_the_usage_chunk(h2):
    r = h2()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 40, "completion_tokens": 9, "cached_tokens": 0}}
    status, hdrs, data, version = h2_post(
        r.h2, chat_body("hi", stream=True), SIMPLE)
    assert (version, status) == ("HTTP/2", 200)
    assert hdrs["content-type"].startswith("text/event-stream")
    events = [e[6:] for e in data.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        assert json.loads(e)["choices"]
    assert r.cheap.last.json()["stream_options"] == {"include_usage": True}
    assert usage_line(r)[:2] == ["40", "9"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_h2c_failover(h2):
    r = h2()
    r.cheap.script([{"mode": "status", "status": 503}])
    body = chat_body()
    status, hdrs, data, version = h2_post(
        r.h2, body, dict(SIMPLE, Authorization="Bearer client-secret-7781"))
    assert (version, status) == ("HTTP/2", 200)
    assert hdrs["x-llmroute-provider"] == "premium"
    assert hdrs["x-llmroute-attempts"] == "2"
    got = r.premium.last
    assert got.body == with_model(body, "mid-1")
    assert got.header_all("Content-Length") == [str(len(got.body))]
    assert got.header_all("Authorization") == ["Bearer " + KEY_B]
    no_credentials(got)
    assert data == r.premium.responses[-1]


# --------------------------------------------- 15: client policy

def policy(routed, params, start=True):
    return routed(location_extra="llmroute_client $http_x_team "
                  "rpm=1000 %s;" % params, start=start)


def team(name, **extra):
    return dict({"X-Team": name}, **extra)


def test_client_tiers_cap_the_tier(routed):
    r = policy(routed, "tiers=simple,moderate")
    resp = post_json(r.port, CHAT, chat_body(),
                     team("t1", **{"X-LLMRoute-Tier": "complex"}))
    assert_routed(resp, "premium", "mid-1", "moderate")
    resp = post_json(r.port, CHAT, chat_body(model="auto:complex"),
                     team("t1"))
    assert_routed(resp, "premium", "mid-1", "moderate")
    err = assert_error(post_json(r.port, CHAT, chat_body(model="big-1"),
                                 team("t1")), 403, "model_not_allowed")
    assert err["param"] == "model"
    assert r.premium.requests[-1].json()["model"] == "mid-1"


def test_client_models_allow_list(routed):
    r = policy(routed, "models=small-1,premium/big-1")
    resp = post_json(r.port, CHAT, chat_body(), team("t1", **SIMPLE))
    assert_routed(resp, "cheap", "small-1")
    # moderate: mid-1 is not allowed, big-1 serves it
    resp = post_json(r.port, CHAT, chat_body(),
                     team("t1", **{"X-LLMRoute-Tier": "moderate"}))
    assert_routed(resp, "premium", "big-1", "moderate")
    assert_error(post_json(r.port, CHAT, chat_body(model="mid-1"),
                           team("t1")), 403, "model_not_allowed")
    resp = post_json(r.port, CHAT, chat_body(model="premium/big-1"),
                     team("t1"))
    assert_routed(resp, "premium", "big-1")


def test_client_not_allowed_to_choose(routed):
    """choose=off: the tier header, a pinned model and an auto:TIER floor
    from this client are ignored: the classifier decides."""
    r = policy(routed, "choose=off")
    for body, headers in (
            (chat_body(), {"X-LLMRoute-Tier": "complex"}),
            (chat_body(model="big-1"), {}),
            (chat_body(model="premium/big-1"), {}),
            (chat_body(model="auto:complex"), {})):
        resp = post_json(r.port, CHAT, body, team("t1", **headers))
        assert_routed(resp, "cheap", "small-1", "simple")
    assert r.premium.requests == []


@pytest.mark.parametrize("params, message", [
    ("tiers=simple,huge", 'invalid parameter "tiers=simple,huge"'),
    ("tiers=", 'invalid parameter "tiers="'),
    ("models=small-1,", 'invalid parameter "models=small-1,"'),
    ("choose=maybe", 'invalid parameter "choose=maybe"'),
    ("models=small-1,nope-9",
     'unknown model "nope-9" in "models=" of "llmroute_client"'),
])
def test_client_policy_config_checked(routed, params, message):
    r = policy(routed, params, start=False)
    rc, err = r.ngx.check()
    assert rc != 0 and message in err, err
    assert "nginx.conf:%d" % r.ngx.conf_line_of("llmroute_client") in err
