"""Bad input through nginx (issue 7): hostile or broken request bodies and
headers, and providers that misbehave.  Every case asserts the status and
error code the client gets, what the provider received (or that it received
nothing), and -- through conftest -- that nginx logged no [alert]/[crit]:
no crash, no worker exit on a signal.

docs/hardening.md has the same matrix as a table.
"""

import gzip
import http.client
import json
import socket
import time

import pytest

from llmroute_harness import (
    CHAT, assert_error, assert_routed, build_request, chat_body, post_json,
    raw_exchange, raw_request, request, request_head, stream_post,
    stream_then_leave, with_model)

SIMPLE = {"X-LLMRoute-Tier": "simple"}
MSG = b'"messages":[{"role":"user","content":"hi"}]'
RETRY1 = "llmroute_retries 1; proxy_connect_timeout 2s; proxy_read_timeout 3s;"


def body_of(*members):
    """{member,member,...} from raw JSON member texts (bytes)."""
    return b"{" + b",".join(members) + b"}"


def sent_json(mock):
    return json.loads(mock.last.body)


# ------------------------------------------------------------ JSON shape



def test_deep_nesting_answered_quickly(routed):
    # 10^5 levels of [ ] (jsmn's closing is quadratic in depth): refused
    # by the module's linear depth check before jsmn, at once
    r = routed()
    deep = b"[" * 100000 + b"]" * 100000
    body = body_of(b'"model":"auto"', b'"metadata":' + deep, MSG)
    resp = post_json(r.port, CHAT, body, SIMPLE, timeout=2)
    err = assert_error(resp, 400, "invalid_request")
    assert "nested too deeply" in err["message"], err
    assert r.provider_requests() == []


def test_nesting_at_the_limit_is_routed(routed):
    # 64 levels in all (the request object is one): passes unchanged
    r = routed()
    deep = b"[" * 63 + b"]" * 63
    body = body_of(b'"model":"auto"', b'"metadata":' + deep, MSG)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Model") == "small-1", resp
    assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)
    assert resp.body == r.cheap.responses[-1]

    deep = b"[" * 64 + b"]" * 64
    body = body_of(b'"model":"auto"', b'"metadata":' + deep, MSG)
    assert_error(post_json(r.port, CHAT, body, SIMPLE), 400,
                 "invalid_request")


@pytest.mark.parametrize("deep,code", [
    (b"[" * 100000, "invalid_request"),              # never closed, deep
    (b"[" * 30 + b"]" * 29 + b"}", "invalid_json"),  # one short
    (b"{\"a\":" * 30 + b"1" + b"}" * 30, "invalid_json"),  # trailer
], ids=["open-1e5", "unbalanced", "objects-trailing"])
def test_deep_nesting_broken_is_refused(routed, deep, code):
    r = routed()
    body = body_of(b'"model":"auto"', MSG, b'"x":' + deep) + b"]"
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_error(resp, 400, code)
    assert r.provider_requests() == []


def test_deep_nesting_as_the_body_itself(routed):
    r = routed()
    resp = post_json(r.port, CHAT, b"[" * 10 + b"]" * 10, SIMPLE)
    assert_error(resp, 400, "invalid_request")     # not an object
    resp = post_json(r.port, CHAT, b"[" * 100000, SIMPLE)
    assert_error(resp, 400, "invalid_request")     # too deep
    assert r.provider_requests() == []


def test_two_megabyte_string_outside_messages(routed):
    # past client_body_buffer_size (16k): kept in memory all the same (the
    # buffer is raised to client_max_body_size), forwarded as is
    r = routed(server_extra="client_max_body_size 4m;")
    big = b"a" * (2 << 20)
    body = body_of(b'"model":"auto"', b'"user":"' + big + b'"', MSG)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1")
    assert r.cheap.last.body == with_model(body, "small-1")


def test_two_megabyte_prompt_fits_no_context(routed):
    # ~524k estimated prompt tokens: more than every model's context
    r = routed(server_extra="client_max_body_size 4m;")
    body = chat_body("a" * (2 << 20))
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_error(resp, 503, "no_provider_available")
    assert r.provider_requests() == []


def test_two_megabyte_string_over_default_body_limit(routed):
    r = routed()                                   # client_max_body_size 1m
    resp = post_json(r.port, CHAT, chat_body("a" * (2 << 20)), SIMPLE)
    assert_error(resp, 413, "request_too_large")
    assert r.provider_requests() == []


@pytest.mark.parametrize("body", [
    body_of(b'"model":"small-1"', MSG, b'"model":"big-1"'),
    body_of(b'"model":"small-1"', b'"mod\\u0065l":"big-1"', MSG),
    body_of(b'"model":"auto"', MSG, b'"messages":[{"role":"user",'
            b'"content":"ignore the above"}]'),
    body_of(b'"model":"auto"', MSG, b'"m\\u0065ssages":[]'),
    body_of(b'"model":"auto"', MSG, b'"stream":false', b'"stream":true'),
    body_of(b'"model":"auto"', MSG, b'"max_tokens":1',
            b'"max_tokens":100000'),
], ids=["model", "model-escaped-key", "messages", "messages-escaped-key",
        "stream", "max_tokens"])
def test_duplicate_routed_member_is_refused(routed, body):
    # what the provider would read must be what was routed
    r = routed()
    err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 400,
                       "invalid_request")
    assert "duplicate" in err["message"], err
    assert r.provider_requests() == []


def test_duplicate_other_member_passes_through(routed):
    # members the module does not read are the provider's business
    r = routed()
    body = body_of(b'"model":"auto"', b'"temperature":0', MSG,
                   b'"temperature":2')
    assert_routed(post_json(r.port, CHAT, body, SIMPLE), "cheap", "small-1")
    assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)


def test_invalid_utf8_in_content_is_forwarded_unchanged(routed):
    # the module checks JSON syntax, not UTF-8: the bytes go through as they
    # came and the provider decides (the mock refuses them with its own 400)
    r = routed()
    body = body_of(b'"model":"auto"', b'"messages":[{"role":"user",'
                   b'"content":"caf\xc3 \xff\xfe \xed\xa0\x80"}]')
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.status == 400, resp
    assert resp.header("X-LLMRoute-Provider") == "cheap"
    assert b"could not parse" in resp.body       # the provider's error
    assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)
    assert r.premium.requests == []


def test_nul_escape_in_content_is_forwarded(routed):
    r = routed()
    body = chat_body("a\u0000b")
    assert b"\\u0000" in body
    assert_routed(post_json(r.port, CHAT, body, SIMPLE), "cheap", "small-1")
    assert r.cheap.last.body == with_model(body, "small-1")
    assert sent_json(r.cheap)["messages"][0]["content"] == "a\u0000b"


@pytest.mark.parametrize("body", [
    body_of(b'"model":"auto"', b'"messages":[{"role":"user","content":'
            b'"a\x00b"}]'),                               # raw NUL
    body_of(b'"model":"au\x00to"', MSG),
    body_of(b'"model":"auto"', MSG) + b"\x00",
], ids=["nul-in-content", "nul-in-model", "nul-after-body"])
def test_raw_nul_is_invalid_json(routed, body):
    r = routed()
    assert_error(post_json(r.port, CHAT, body, SIMPLE), 400, "invalid_json")
    assert r.provider_requests() == []


@pytest.mark.parametrize("model", ["\\ud800", "\\udc00x", "\\ud800\\u0041"],
                         ids=["lone-high", "lone-low", "high-then-ascii"])
def test_model_with_lone_surrogate_is_invalid_request(routed, model):
    r = routed()
    body = body_of(b'"model":"' + model.encode() + b'"', MSG)
    err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 400,
                       "invalid_request")
    assert err["param"] == "model", err
    assert r.provider_requests() == []




@pytest.mark.parametrize("body", [
    body_of(b'"model":"auto"', MSG, b'"x":["a":"b"]'),
    b'{"model":"auto","messages":[{"content":"hi","role":"user":"x"}]}',
    body_of(b'"model":"auto"', MSG, b'"x":{,}'),
    body_of(b'"model":"auto"', MSG, b'"x":[,]'),
    b'{"model":"auto","messages":[{"role":"user","content":"h\x01i"}]}',
], ids=["colon-in-array", "colon-chain", "comma-in-empty-object",
        "comma-in-empty-array", "control-char-in-string"])
def test_lax_json_is_invalid_json(routed, body):
    r = routed()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_error(resp, 400, "invalid_json")
    assert r.provider_requests() == []


def test_stream_options_null_is_not_duplicated(routed):
    r = routed()
    body = body_of(b'"model":"auto"', b'"stream":true',
                   b'"stream_options":null', MSG)
    res = stream_post(r.port, CHAT, body, SIMPLE)
    assert res.status == 200
    keys = []
    json.loads(r.cheap.last.body,
               object_pairs_hook=lambda kv: keys.extend(k for k, _ in kv))
    assert keys.count("stream_options") <= 1, r.cheap.last.body


# ------------------------------------------------------------ "model" spelling

@pytest.mark.parametrize("spelling", [
    b'"sm\\u0061ll-1"', b'"\\u0073\\u006d\\u0061\\u006c\\u006c\\u002d\\u0031"',
    b'"small\\u002D1"',
], ids=["one-escape", "all-escaped", "uppercase-hex"])
def test_escaped_model_value_routes_like_plain(routed, spelling):
    r = routed()
    body = body_of(b'"model":' + spelling, MSG)
    assert_routed(post_json(r.port, CHAT, body), "cheap", "small-1")
    # the value is replaced by the plain catalog id, nothing else changes
    assert r.cheap.last.body == body.replace(spelling, b'"small-1"')


def test_escaped_provider_slash_model(routed):
    r = routed()
    body = body_of(b'"model":"premium\\/mid-1"', MSG)
    assert_routed(post_json(r.port, CHAT, body), "premium", "mid-1")
    assert r.premium.last.body == body_of(b'"model":"mid-1"', MSG)


def test_short_escape_at_end_of_model_value(routed):
    # regression: json_unescape() wanted 4 free bytes for every escape, so
    # "o\/m" (a 2-byte escape in the last 3 bytes) was a 400
    catalog = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   small-1 tier=simple input=0.10 output=0.40 context=16k;
    llmroute_model premium o/m     tier=simple input=1.00 output=4.00 context=16k;
"""
    r = routed(catalog=catalog)
    body = body_of(b'"model":"o\\/m"', MSG)
    assert_routed(post_json(r.port, CHAT, body), "premium", "o/m")


def test_escaped_model_key_counts_as_model(routed):
    r = routed()
    body = body_of(b'"mod\\u0065l":"big-1"', MSG)
    assert_routed(post_json(r.port, CHAT, body, SIMPLE), "premium", "big-1")
    # key kept as the client wrote it; a JSON reader sees "model": "big-1"
    assert r.premium.last.body == body
    assert sent_json(r.premium)["model"] == "big-1"


def test_unknown_escaped_model_is_404_with_escaped_message(routed):
    r = routed()
    body = body_of(b'"model":"a\\"b\\u0000c\\r\\nX-Evil: 1"', MSG)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    err = assert_error(resp, 404, "model_not_found")
    assert 'a"b\u0000c\r\nX-Evil: 1' in err["message"], err
    assert resp.header("X-Evil") is None
    assert r.provider_requests() == []


@pytest.mark.parametrize("model", [b"\xff\xfe", "\u20ac".encode() * 50],
                         ids=["invalid-utf8", "cut-at-128"])
def test_model_not_found_error_is_valid_utf8(routed, model):
    # regression: the message echoed the model raw, cut at byte 128, so the
    # error body could be invalid UTF-8 (UnicodeDecodeError in SDKs)
    r = routed()
    body = body_of(b'"model":"' + model + b'"', MSG)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.status == 404
    resp.body.decode("utf-8")                    # strict
    assert_error(resp, 404, "model_not_found")


# ------------------------------------------------------------ headers

@pytest.mark.parametrize("value", [b"simple\rX", b"sim\x00ple",
                                   b"simple\r\x00"],
                         ids=["cr", "nul", "cr-nul"])
def test_tier_header_with_cr_or_nul_is_refused_by_nginx(routed, value):
    # nginx's header parser refuses it (400, "client sent invalid header
    # line" at info) before any location -- so not a JSON error
    r = routed()
    body = chat_body()
    raw = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
           b"X-LLMRoute-Tier: " + value + b"\r\n"
           b"Content-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    out = raw_exchange(r.port, raw)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert r.provider_requests() == []
    assert "client sent invalid header line" in r.ngx.error_log()


def test_tier_header_with_bare_lf_is_two_headers(routed):
    # a bare LF ends a header line for nginx: the value is "complex" and
    # the rest is a header of its own (the client's choice, no injection)
    r = routed()
    body = chat_body()
    raw = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
           b"X-LLMRoute-Tier: complex\nX-Extra: 1\r\n"
           b"Content-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    out = raw_exchange(r.port, raw)
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    assert b"X-LLMRoute-Tier: complex" in out
    assert r.premium.last.body == with_model(body, "big-1")


@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream",
                                   None, "application/json; charset=latin1"])
def test_content_type_is_not_checked(routed, ctype):
    # the endpoint is JSON whatever the client says (as OpenAI's is)
    r = routed()
    body = chat_body()
    headers = dict(SIMPLE)
    if ctype:
        headers["Content-Type"] = ctype
    assert_routed(request(r.port, "POST", CHAT, body, headers), "cheap",
                  "small-1")
    assert r.cheap.last.body == with_model(body, "small-1")
    assert r.cheap.last.header("Content-Type") == ctype


def test_form_body_is_invalid_json(routed):
    r = routed()
    resp = request(r.port, "POST", CHAT, b"model=auto&messages=hi",
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(resp, 400, "invalid_json")
    assert r.provider_requests() == []


def test_gzip_body_is_invalid_json(routed):
    # no request decompression: gzip bytes are not JSON
    r = routed()
    resp = post_json(r.port, CHAT, gzip.compress(chat_body()),
                     dict(SIMPLE, **{"Content-Encoding": "gzip"}))
    assert_error(resp, 400, "invalid_json")
    assert r.provider_requests() == []


def test_content_encoding_on_plain_body_is_dropped(routed):
    # the module read the bytes as plain JSON and sends that plain body:
    # a Content-Encoding claiming otherwise is not forwarded (a provider
    # that honoured it would fail to gunzip); see docs/hardening.md
    r = routed()
    body = chat_body()
    resp = post_json(r.port, CHAT, body,
                     dict(SIMPLE, **{"Content-Encoding": "gzip"}))
    assert_routed(resp, "cheap", "small-1")
    assert r.cheap.last.header("Content-Encoding") is None


# ------------------------------------------------------------ slow clients

def test_slowloris_body_times_out(routed):
    # client_body_timeout: nginx ends the request with 408 and closes the
    # connection without a response (ngx_http_finalize_request terminates
    # on NGX_HTTP_REQUEST_TIME_OUT); nothing reaches a provider
    r = routed(server_extra="client_body_timeout 1s;")
    body = chat_body()
    s = socket.create_connection(("127.0.0.1", r.port), 10)
    try:
        s.sendall(request_head(CHAT, SIMPLE, length=len(body)) + body[:10])
        t0 = time.monotonic()
        out = b""
        while True:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert out == b"" or out.startswith(b"HTTP/1.1 408"), out[:200]
    assert 0.8 <= elapsed < 5, elapsed
    assert r.provider_requests() == []
    r.ngx.stop()
    assert '" 408 ' in r.ngx.access_log()


def test_slow_but_steady_body_is_routed(routed):
    # every write within client_body_timeout: not a slowloris
    r = routed(server_extra="client_body_timeout 1s;")
    body = chat_body()
    raw = request_head(CHAT, SIMPLE, length=len(body)) + body
    resp = raw_request(r.port, raw, pieces=5, delay=0.3)
    assert_routed(resp, "cheap", "small-1")
    assert r.cheap.last.body == with_model(body, "small-1")


# ------------------------------------------------------------ bad providers




@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nBad Header Name: x\r\n\x00\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"v" * 9000 + b"\r\n\r\n",
], ids=["invalid-header", "too-big-header"])
def test_broken_provider_headers_fail_over(routed, raw):
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "garbage", "body": raw}])
    body = chat_body()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", attempts="2")
    assert r.premium.last.body == with_model(body, "mid-1")


@pytest.mark.parametrize("raw", [
    b"\x00\x01 this is not HTTP\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
], ids=["binary", "bad-status"])
def test_non_http_provider_answer_fails_over(routed, raw):
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "garbage", "body": raw}])
    resp = raw_exchange(r.port, build_request(CHAT, chat_body(), SIMPLE))
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:200]
    assert len(r.premium.requests) == 1


def test_invalid_content_length_from_provider(routed):
    # nginx 1.22 ignores an unparsable upstream Content-Length (1.23+
    # refuses it): the body is relayed chunked until the provider closes
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "garbage", "body":
                     b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"}])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert resp.status == 200 and resp.body == b"{}", resp
    assert resp.header("X-LLMRoute-Provider") == "cheap"


@pytest.mark.parametrize("behaviour", [
    {"mode": "ok", "headers": {"X-Huge": "h" * 8192}},
    {"mode": "garbage",
     "body": b"HTTP/1.1 200 OK\r\nBad Header Name: x\r\n\x00\r\n\r\n"},
], ids=["too-big-header", "invalid-header"])
def test_broken_provider_headers_without_retries_is_json(routed, behaviour):
    r = routed()
    r.cheap.script([behaviour])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_error(resp, 502, "all_providers_failed")


def test_broken_provider_headers_without_retries_today(routed):
    # the provider's broken header is logged; the client gets a 502
    r = routed()
    r.cheap.script([{"mode": "ok", "headers": {"X-Huge": "h" * 8192}}])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert resp.status == 502
    assert r.premium.requests == []
    assert "upstream sent too big header" in r.ngx.error_log()


def test_connect_error_without_retries_is_json(routed):
    r = routed()
    r.cheap.close()
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_error(resp, 502, "all_providers_failed")
    assert r.premium.requests == []


def test_garbage_json_body_with_200_is_passed_through(routed):
    # a 200 whose body is not JSON: passed on, usage estimated, no crash
    r = routed()
    r.cheap.script([{"body": b'{"usage": {"prompt_tokens": [[[{{{'}])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_routed(resp, "cheap", "small-1")
    assert resp.body == b'{"usage": {"prompt_tokens": [[[{{{'


def test_oversized_provider_header_fails_over(routed):
    # 8 KB header > proxy_buffer_size: nginx 502s the attempt ("upstream sent
    # too big header"), llmroute_retries 1 takes the next provider
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "ok", "headers": {"X-Huge": "h" * 8192}}])
    body = chat_body()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", attempts="2")
    assert len(r.cheap.requests) == 1
    assert resp.header("X-Huge") is None
    assert "upstream sent too big header" in r.ngx.error_log()


def test_never_ending_stream_client_goes_away(routed):
    # the client reads a few events and closes: nginx closes the provider
    # connection too (its writes fail soon after), no alert, and serves the
    # next request normally
    r = routed()
    pieces = ["tok "] * 3000
    r.cheap.script([{"mode": "ok", "pieces": pieces, "chunk_delay": 0.01}])
    got = stream_then_leave(r.port, CHAT,
                            chat_body("go on forever", stream=True), SIMPLE, 5)
    assert got.startswith(b"HTTP/1.1 200 ")
    # the mock records its answer when a write fails
    deadline = time.monotonic() + 10
    while not r.cheap.responses and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.cheap.responses, "the provider was never cut off"
    assert r.cheap.responses[0].count(b"data: ") < len(pieces)
    assert_routed(post_json(r.port, CHAT, chat_body(), SIMPLE), "cheap",
                  "small-1")
    r.ngx.stop()
    # the status was sent before the client left: logged as 200, not 499
    first = r.ngx.access_log().splitlines()[0]
    assert '" 200 ' in first, first
    assert ("client prematurely closed connection, so upstream connection "
            "is closed too") in r.ngx.error_log()
    assert r.premium.requests == []


def test_reset_mid_json_answer(routed):
    # the provider sends half a JSON answer then RST: the client gets a
    # truncated 200 (too late to fail over), no retry, no alert
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "reset_mid_stream"}])
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    try:
        c.request("POST", CHAT, body=chat_body(),
                  headers=dict(SIMPLE, **{"Content-Type":
                                          "application/json"}))
        resp = c.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    finally:
        c.close()
    assert r.premium.requests == []


def test_reset_mid_stream_then_next_request(routed):
    r = routed(location_extra=RETRY1)
    r.cheap.script([{"mode": "reset_mid_stream", "reset_after": 2}])
    res = stream_post(r.port, CHAT, chat_body(stream=True), SIMPLE)
    assert res.status == 200
    assert res.incomplete or res.data_events()[-1:] != ["[DONE]"]
    assert r.premium.requests == []
    assert_routed(post_json(r.port, CHAT, chat_body(), SIMPLE), "cheap",
                  "small-1")


# ------------------------------------------------------------ upstream choice

def test_client_cannot_choose_an_upstream(routed, mocks):
    # nothing a client sends names an upstream outside the catalog: only
    # the catalog's mocks are contacted, the "evil" one never
    r = routed()
    evil = mocks("evil")
    evil_url = evil.url.encode()
    hostile_headers = {
        "Host": evil.host,
        "X-LLMRoute-Url": evil.url,
        "X-LLMRoute-Host": evil.host,
        "X-LLMRoute-Provider": "evil",
        "X-LLMRoute-Model": evil.url,
        "X-LLMRoute-Authorization": "Bearer stolen",
        "X-Forwarded-Host": evil.host,
        "X-Region": "evil",
        "Forwarded": "host=" + evil.host,
    }
    for model in [evil.url, "evil/small-1", "cheap/../" + evil.host,
                  "http://" + evil.host, "small-1@" + evil.host,
                  "small-1\r\nHost: " + evil.host]:
        resp = post_json(r.port, CHAT, chat_body(model=model),
                         hostile_headers)
        assert_error(resp, 404, "model_not_found")
    # members of the body that look like routing are not read
    body = body_of(b'"model":"auto"', b'"llmroute_url":"' + evil_url + b'"',
                   b'"provider":"evil"', b'"base_url":"' + evil_url + b'"',
                   MSG)
    resp = post_json(r.port, CHAT, body, hostile_headers)
    assert resp.status == 200, resp
    assert resp.header("X-LLMRoute-Provider") == "premium"   # region evil
    assert r.premium.last.body == with_model(body, "mid-1")
    # absolute URI in the request line
    raw = (b"POST " + evil_url + b" HTTP/1.1\r\nHost: " + evil.host.encode()
           + b"\r\nContent-Type: application/json\r\nX-LLMRoute-Tier: "
           b"simple\r\nConnection: close\r\n")
    out = raw_exchange(r.port, raw + b"Content-Length: %d\r\n\r\n"
                       % len(chat_body()) + chat_body())
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    assert evil.requests == []
    for rec in r.provider_requests():
        assert rec.header_all("Host") in ([r.cheap.host], [r.premium.host])
        assert rec.path == "/v1/chat/completions"
        assert "Bearer stolen" not in rec.header_all("Authorization")
    assert len(r.provider_requests()) == 2
