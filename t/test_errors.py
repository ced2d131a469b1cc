"""Module errors (SPEC "Failures"): OpenAI-style JSON errors for bad
requests, and provider failures (retry, cooldown, all failed)."""

import json

import pytest

from llmroute_harness import (
    CHAT, KEY_B, assert_error, assert_no_keys, assert_routed, build_request,
    chat_body, post_chunked, post_json, raw_request, request, request_head,
    stream_post, with_model)

SIMPLE = {"X-LLMRoute-Tier": "simple"}


# ------------------------------------------------------------ 400

@pytest.mark.parametrize("body", [
    b'{"model": "auto", "messages": [',                     # truncated
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi}]}',
    b'{bad json}',
    b'{"model": "auto",, "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}],}',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi",}]}',
    b'{"model": "auto" "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": auto, "messages": [{"role": "user", "content": "hi"}]}',
    b"{'model': 'auto', 'messages': [{'role': 'user', 'content': 'hi'}]}",
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]} x',
    b'not json at all',
    b'{',
])
def test_invalid_json(routed, body):
    r = routed()
    resp = post_json(r.port, CHAT, body)
    assert_error(resp, 400, "invalid_json")
    assert r.provider_requests() == []


@pytest.mark.parametrize("body", [
    b'',
    b'{}',
    b'{"model": "auto"}',
    b'{"model": "auto", "messages": "hello"}',
    b'{"model": "auto", "messages": {"role": "user", "content": "hi"}}',
    b'{"model": "auto", "messages": null}',
    b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": ["auto"], "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": {"id": "auto"}, "messages": []}',
])
def test_invalid_request(routed, body):
    r = routed()
    resp = post_json(r.port, CHAT, body)
    assert_error(resp, 400, "invalid_request")
    assert r.provider_requests() == []


@pytest.mark.parametrize("body", [b'[]', b'"hello"', b'42', b'null'])
def test_body_not_an_object(routed, body):
    r = routed()
    resp = post_json(r.port, CHAT, body)
    assert_error(resp, 400, "invalid_request")
    assert r.provider_requests() == []


def test_duplicate_model_member(routed):
    # which "model" would count is ambiguous: refused (README)
    r = routed()
    body = (b'{"model": "small-1", "messages": [{"role": "user", '
            b'"content": "hi"}], "model": "big-1"}')
    assert_error(post_json(r.port, CHAT, body), 400, "invalid_request")
    assert r.provider_requests() == []


@pytest.mark.parametrize("tier", ["genius", "", "simple,complex", "1"])
def test_bad_tier_header(routed, tier):
    r = routed()
    resp = post_json(r.port, CHAT, chat_body(), {"X-LLMRoute-Tier": tier})
    assert_error(resp, 400, "invalid_request")
    assert r.provider_requests() == []


def test_post_without_body_is_invalid_request(routed):
    r = routed()
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
           b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
    assert_error(raw_request(r.port, raw), 400, "invalid_request")
    assert r.provider_requests() == []


# ------------------------------------------------------------ 405

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_method_not_allowed(routed, method):
    r = routed()
    body = None if method == "GET" else chat_body()
    resp = request(r.port, method, CHAT, body,
                   {"Content-Type": "application/json"})
    assert_error(resp, 405, "method_not_allowed")
    assert resp.header("Allow") == "POST", resp.headers
    assert r.provider_requests() == []


# ------------------------------------------------------------ 413

def test_too_large_with_content_length(routed):
    r = routed(server_extra="client_max_body_size 1k;")
    body = chat_body("x" * 2000)
    resp = raw_request(r.port, build_request(CHAT, body))
    assert_error(resp, 413, "request_too_large")
    assert r.provider_requests() == []


def test_too_large_chunked(routed):
    r = routed(server_extra="client_max_body_size 1k;")
    body = chat_body("x" * 4000)
    resp = post_chunked(r.port, CHAT, [body[i:i + 500]
                                       for i in range(0, len(body), 500)])
    assert_error(resp, 413, "request_too_large")
    assert r.provider_requests() == []


def test_body_at_limit_is_accepted(routed):
    r = routed(server_extra="client_max_body_size 1k;")
    body = chat_body("x" * (1024 - len(chat_body(""))))
    assert len(body) == 1024
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1")
    assert r.cheap.last.body == with_model(body, "small-1")


@pytest.mark.parametrize("chunked", [
    b"zz\r\n{}\r\n0\r\n\r\n",                    # bad chunk size
    b"5\r\n{\"a\":1}\r\n0\r\n\r\n",               # chunk longer than said
])
def test_broken_chunked_body(routed, chunked):
    # nginx's own 400 in an llmroute location comes out as JSON (README)
    r = routed()
    resp = raw_request(r.port, request_head(CHAT) + chunked)
    assert_error(resp, 400, ("invalid_request", "invalid_json"))
    assert r.provider_requests() == []


# ------------------------------------------------------------ 503

def assert_no_provider(resp):
    assert_error(resp, 503, "no_provider_available")
    ra = resp.header("Retry-After")
    assert ra is not None and ra.isdigit(), resp.headers


def test_nothing_eligible_tools_vision_huge_prompt(routed):
    r = routed(server_extra="client_max_body_size 16m; "
                            "client_body_buffer_size 16m;")
    huge = "lorem ipsum dolor sit amet consectetur " * 32000   # ~1.2 MB
    body = json.dumps({"model": "auto", "tools": [{
        "type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {}}}}], "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": huge},
            {"type": "image_url", "image_url": {
                "url": "data:image/png;base64,iVBORw0KGgo="}}]}]}).encode()
    assert_no_provider(post_json(r.port, CHAT, body, SIMPLE))
    assert r.provider_requests() == []


def test_nothing_eligible_output_budget(routed):
    r = routed()
    body = chat_body("what is 2+2?", max_tokens=500000)  # > every context
    assert_no_provider(post_json(r.port, CHAT, body, SIMPLE))
    assert r.provider_requests() == []


REGIONAL = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A regions=us,eu;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B regions=us;
    llmroute_model cheap   small-1 tier=simple   input=0.10 output=0.40 context=16k;
    llmroute_model premium mid-1   tier=moderate input=1.00 output=4.00 context=128k;
"""


def test_nothing_eligible_region(routed):
    r = routed(catalog=REGIONAL)
    assert_no_provider(post_json(r.port, CHAT, chat_body(),
                                 dict(SIMPLE, **{"X-Region": "ap"})))
    assert r.provider_requests() == []
    resp = post_json(r.port, CHAT, chat_body(),
                     dict(SIMPLE, **{"X-Region": "us"}))
    assert_routed(resp, "cheap", "small-1")


def test_pinned_model_not_eligible(routed):
    # small-1 has no tools: pinning it does not bypass eligibility
    r = routed()
    body = chat_body("weather?", model="small-1", tools=[{
        "type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {}}}}])
    assert_no_provider(post_json(r.port, CHAT, body))
    assert r.provider_requests() == []


# ------------------------------------------------------------ failover

RETRY = "llmroute_retries 2; proxy_connect_timeout 2s; proxy_read_timeout 2s;"


@pytest.mark.parametrize("failure", [
    {"mode": "status", "status": 429, "retry_after": "1"},
    {"mode": "status", "status": 500},
    {"mode": "status", "status": 502},
    {"mode": "status", "status": 503},
    {"mode": "reset"},
    {"mode": "close"},
    {"mode": "delay", "delay": 4},                     # read timeout
], ids=lambda f: str(f.get("status", f["mode"])))
def test_retry_on_next_provider(routed, failure):
    r = routed(location_extra=RETRY)
    r.cheap.script([failure])
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple", attempts="2")
    assert len(r.cheap.requests) == 1 and len(r.premium.requests) == 1
    assert r.cheap.last.body == with_model(body, "small-1")
    got = r.premium.last
    assert got.body == with_model(body, "mid-1")
    assert got.header_all("Authorization") == ["Bearer " + KEY_B]
    assert got.header_all("Host") == [r.premium.host]
    assert got.header("Content-Length") == str(len(got.body))
    assert resp.body == r.premium.responses[-1]


def test_retry_on_connect_error(routed):
    r = routed(location_extra=RETRY)
    r.cheap.close()                                # port now refuses
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple", attempts="2")
    assert r.premium.last.body == with_model(body, "mid-1")


def test_retry_with_body_in_file(routed):
    r = routed(location_extra=RETRY,
               server_extra="client_body_buffer_size 1k;")
    r.cheap.script([{"mode": "status", "status": 500}])
    body = chat_body("y" * 50000, max_tokens=100)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple", attempts="2")
    assert r.cheap.last.body == with_model(body, "small-1")
    assert r.premium.last.body == with_model(body, "mid-1")


def test_client_errors_from_provider_are_not_retried(routed):
    r = routed(location_extra=RETRY)
    r.cheap.script([{"mode": "status", "status": 400, "body":
                     b'{"error":{"message":"bad","type":"invalid_request_'
                     b'error","param":null,"code":null}}'}])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert resp.status == 400, resp
    assert len(r.cheap.requests) == 1 and r.premium.requests == []
    assert_no_keys(resp)


def test_all_providers_failed(routed):
    r = routed(location_extra=RETRY)
    r.cheap.default = r.premium.default = {"mode": "status", "status": 500}
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_error(resp, 502, "all_providers_failed")
    n = len(r.provider_requests())
    assert 2 <= n <= 3, r.provider_requests()     # 1 try + up to 2 retries


def test_no_retry_after_response_started(routed):
    r = routed(location_extra=RETRY)
    r.cheap.script([{"mode": "reset_mid_stream", "reset_after": 3,
                     "chunk_delay": 0.1}])
    res = stream_post(r.port, CHAT, chat_body(stream=True), SIMPLE)
    assert res.status == 200
    assert res.header("X-LLMRoute-Provider") == "cheap"
    assert res.incomplete or res.data_events()[-1:] != ["[DONE]"]
    assert len(res.data_events()) >= 1
    assert r.premium.requests == []


def test_429_retry_after_puts_provider_in_cooldown(routed):
    r = routed(location_extra=RETRY)
    r.cheap.script([{"mode": "status", "status": 429, "retry_after": "30"}])
    resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
    assert_routed(resp, "premium", "mid-1", attempts="2")
    # cooling down, in every worker: the next requests skip cheap
    for _ in range(6):
        resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
        assert_routed(resp, "premium", "mid-1", attempts="1")
    assert len(r.cheap.requests) == 1
