"""The Anthropic Messages API through the gateway: providers of
format=anthropic, routed among themselves only, bodies byte-exact but for
"model", keys in x-api-key, Anthropic-shaped errors, cache accounting,
count_tokens, /v1/models in Anthropic's shape, llmroute_alias, and the real
clients: @anthropic-ai/sdk and the claude CLI (claude -p)."""

import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

from llmroute_harness import (
    KEY_A, KEY_B, REPO_ROOT, assert_no_keys, free_port, get, post_json,
    stream_post, with_model)
from mock_anthropic import MockAnthropic
from mock_provider import MockProvider

NODE_DIR = REPO_ROOT / "t" / "node"
CLAUDE = NODE_DIR / "node_modules" / ".bin" / "claude"
MESSAGES = "/v1/messages"

CATALOG = """
    llmroute_zone llmroute:1m;
    llmroute_provider oa      %%OA_URL%% key_env=TEST_KEY_A;
    llmroute_provider acheap  %%AC_URL%% key_env=TEST_KEY_A format=anthropic;
    llmroute_provider aprem   %%AP_URL%% key_env=TEST_KEY_B format=anthropic %%AP_EXTRA%%;
    llmroute_model oa     oa-tiny   tier=simple   input=0.01 output=0.02 tools;
    llmroute_model acheap glm-small tier=simple   input=0.10 output=0.40 cached_input=0.01 context=200k tools;
    llmroute_model aprem  opus-big  tier=complex  input=3.00 output=15.00 cached_input=0.30 cache_write=3.75 context=200k tools vision;
    %%HTTP_EXTRA%%
    log_format llmjson escape=json '{"provider":"$llmroute_provider",'
        '"model":"$llmroute_model","prompt":"$llmroute_prompt_tokens",'
        '"completion":"$llmroute_completion_tokens",'
        '"cached":"$llmroute_cached_tokens","cost":"$llmroute_cost",'
        '"source":"$llmroute_usage_source","status":"$status",'
        '"tier":"$llmroute_tier","reason":"$llmroute_reason"}';
"""

SERVER = """
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log logs/llm.log llmjson;
        location /v1/ {
            llmroute on;
            llmroute_retries 2;
            %%LOCATION_EXTRA%%
            proxy_pass $llmroute_url$is_args$args;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_set_header x-api-key $llmroute_x_api_key;
            proxy_http_version 1.1;
            proxy_buffering off;
        }
        location = /v1/models { llmroute_models; }
        location = /metrics { llmroute_metrics; }
    }
"""


class Gateway:
    def __init__(self, ngx, oa, cheap, prem):
        self.ngx, self.oa, self.cheap, self.prem = ngx, oa, cheap, prem
        self.port = ngx.port

    def all_requests(self):
        return self.oa.requests + self.cheap.requests + self.prem.requests


@pytest.fixture
def gateway(nginx):
    made = []

    def make(http_extra="", location_extra="", ap_extra="", start=True):
        oa, cheap, prem = (MockProvider("oa"), MockAnthropic("acheap"),
                           MockAnthropic("aprem"))
        made.extend([oa, cheap, prem])
        ngx = nginx("", start=False)
        ngx.write_config(CATALOG + SERVER, {
            "OA_URL": oa.url, "AC_URL": cheap.url, "AP_URL": prem.url,
            "AP_EXTRA": ap_extra, "HTTP_EXTRA": http_extra,
            "LOCATION_EXTRA": location_extra})
        if start:
            ngx.start()
        return Gateway(ngx, oa, cheap, prem)

    yield make
    for m in made:
        m.close()


def msg_body(text="what is 2+2?", model="claude-haiku-4-5", **extra):
    obj = {"model": model, "max_tokens": 1024,
           "messages": [{"role": "user", "content": text}]}
    obj.update(extra)
    return json.dumps(obj).encode()


HDRS = {"anthropic-version": "2023-06-01", "x-api-key": "client-key-123",
        "X-LLMRoute-Tier": "simple"}


def assert_anthropic_error(resp, status, etype):
    assert resp.status == status, resp
    doc = resp.json()
    assert doc["type"] == "error", doc
    assert doc["error"]["type"] == etype, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    assert_no_keys(resp)
    return doc["error"]


# ------------------------------------------------------------------ routing

def test_routes_only_among_anthropic_providers_byte_exact(gateway):
    """oa-tiny is the cheapest model, but speaks OpenAI: the Anthropic body
    goes to the cheapest Anthropic provider, only "model" rewritten, with
    its own key in x-api-key, the query string and beta headers kept."""
    g = gateway()
    body = (b'{"model":"glm-small","max_tokens":64,  "system":[{"type":"text",'
            b'"text":"be brief","cache_control":{"type":"ephemeral"}}],'
            b'"messages":[{"role":"user","content":[{"type":"text","text":'
            b'"hi \\u00e9"}]},{"role":"assistant","content":[{"type":'
            b'"thinking","thinking":"hm","signature":"EqQBCgIYAhIM+/=="}]},'
            b'{"role":"user","content":"and?"}],"unknown_member":{"x":[1,2]}}')
    hdrs = dict(HDRS, **{"anthropic-beta": "prompt-caching-2024-07-31,"
                                           "interleaved-thinking-2025-05-14",
                         "Authorization": "Bearer client-bearer"})
    r = post_json(g.port, MESSAGES + "?beta=true", body, headers=hdrs)
    assert r.status == 200, r
    assert r.header("X-LLMRoute-Provider") == "acheap"
    assert r.json()["type"] == "message"
    rec = g.cheap.last
    assert rec.path == "/v1/messages?beta=true"
    assert rec.body == with_model(body, "glm-small")
    assert rec.header("x-api-key") == KEY_A
    assert rec.header("Authorization") is None
    assert rec.header("anthropic-version") == "2023-06-01"
    assert rec.header("anthropic-beta") == hdrs["anthropic-beta"]
    assert "client-key-123" not in str(rec.headers)
    assert "client-bearer" not in str(rec.headers)
    assert g.oa.requests == [] and g.prem.requests == []


def test_openai_requests_never_reach_anthropic_providers(gateway):
    g = gateway()
    body = json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": "hi"}]}).encode()
    r = post_json(g.port, "/v1/chat/completions", body,
                  headers={"X-LLMRoute-Tier": "simple"})
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "oa"
    rec = g.oa.last
    assert rec.header("Authorization") == "Bearer " + KEY_A
    assert rec.header("x-api-key") is None


def test_no_provider_of_the_format_is_503_in_anthropic_shape(nginx):
    oa = MockProvider("oa")
    try:
        ngx = nginx("""
            llmroute_zone llmroute:1m;
            llmroute_provider oa %s key_env=TEST_KEY_A;
            llmroute_model oa oa-tiny tier=simple input=0.01 output=0.02;
            server { listen 127.0.0.1:%%%%PORT%%%%;
                location /v1/ { llmroute on; proxy_pass $llmroute_url; } }
        """ % oa.url)
        r = post_json(ngx.port, MESSAGES, msg_body(model="auto"),
                      headers=HDRS)
        err = assert_anthropic_error(r, 503, "overloaded_error")
        assert "format" in err["message"]
        assert oa.requests == []
    finally:
        oa.close()


def test_llmroute_format_directive_overrides_the_uri(gateway):
    g = gateway(location_extra="llmroute_format anthropic;")
    r = post_json(g.port, "/v1/chat/completions", msg_body(model="auto"),
                  headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "acheap"


# ---------------------------------------------------------------- streaming

def test_stream_passes_unchanged_and_bills_cache(gateway):
    g = gateway()
    g.cheap.default = {"mode": "ok", "usage": {
        "input_tokens": 100, "output_tokens": 9,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200}}
    r = stream_post(g.port, MESSAGES, msg_body(model="auto", stream=True),
                    headers=HDRS)
    assert r.status == 200
    assert r.body == g.cheap.responses[-1]
    assert b"event: message_stop" in r.body
    log = g.ngx.json_log("llm.log")[-1]
    assert log["provider"] == "acheap" and log["source"] == "provider"
    # all input: 100 + 1000 read + 200 written; cached: the reads
    assert log["prompt"] == "1300" and log["cached"] == "1000"
    assert log["completion"] == "9"
    # 100*0.10 + 1000*0.01 + 200*0.125 (1.25 x input) + 9*0.40, per 1M
    assert log["cost"] == "%.9f" % ((100 * 0.10 + 1000 * 0.01 + 200 * 0.125
                                     + 9 * 0.40) / 1e6)


def test_stream_cut_short_bills_what_was_generated(gateway):
    """A reset after message_start and some text: the prompt and cache
    numbers of message_start count, the output is at least the text seen
    (message_start's output_tokens is 1, not a count)."""
    g = gateway()
    text = "word " * 200
    g.cheap.default = {"mode": "reset_mid_stream", "reset_after": 6,
                       "pieces": [text[:500], text[500:]] + ["x"] * 5,
                       "usage": {"input_tokens": 40, "output_tokens": 300,
                                 "cache_read_input_tokens": 60}}
    r = stream_post(g.port, MESSAGES, msg_body(model="auto", stream=True),
                    headers=HDRS)
    assert b"message_stop" not in r.body
    log = g.ngx.json_log("llm.log")[-1]
    assert log["provider"] == "acheap" and log["source"] == "provider"
    assert log["prompt"] == "100" and log["cached"] == "60"
    assert int(log["completion"]) >= 250, log


def test_cache_write_metric_and_price(gateway):
    g = gateway()
    g.prem.default = {"mode": "ok", "usage": {
        "input_tokens": 10, "output_tokens": 5,
        "cache_read_input_tokens": 0, "cache_creation_input_tokens": 1000}}
    r = post_json(g.port, MESSAGES, msg_body(model="opus-big"), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"
    log = g.ngx.json_log("llm.log")[-1]
    assert log["prompt"] == "1010" and log["cached"] == "0"
    assert log["cost"] == "%.9f" % ((10 * 3.0 + 1000 * 3.75 + 5 * 15.0) / 1e6)
    text = get(g.port, "/metrics").text()
    assert ('llmroute_tokens_total{provider="aprem",model="opus-big",'
            'kind="cache_write"} 1000') in text


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed")
def test_live_price_moves_cache_write(gateway, tmp_path):
    """A live Redis price update reprices prompt-cache writes too: a hash
    without cache_write keeps the configured ratio to input (3.75 / 3.00),
    one with cache_write sets it."""
    import time
    from redis_server import RedisServer
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        g = gateway(http_extra="llmroute_redis 127.0.0.1:%d sync=100ms;"
                    % redis.port)
        g.prem.default = {"mode": "ok", "usage": {
            "input_tokens": 10, "output_tokens": 5,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 1000}}

        def cost():
            r = post_json(g.port, MESSAGES, msg_body(model="opus-big"),
                          headers=HDRS)
            assert r.status == 200
            return g.ngx.json_log("llm.log")[-1]["cost"]

        def until(want):
            deadline = time.monotonic() + 10
            while cost() != want:
                assert time.monotonic() < deadline, want
                time.sleep(0.1)

        key = "{llmroute}:price:aprem/opus-big"
        assert cost() == "%.9f" % ((10 * 3.0 + 1000 * 3.75 + 5 * 15.0) / 1e6)
        redis.call("HSET", key, "input", "6.00", "output", "15.00",
                   "cached_input", "0.60")
        redis.call("INCR", "{llmroute}:prices:version")
        until("%.9f" % ((10 * 6.0 + 1000 * 7.5 + 5 * 15.0) / 1e6))
        redis.call("HSET", key, "cache_write", "9.00")
        redis.call("INCR", "{llmroute}:prices:version")
        until("%.9f" % ((10 * 6.0 + 1000 * 9.0 + 5 * 15.0) / 1e6))
    finally:
        redis.stop()


# ------------------------------------------------------------------- errors

@pytest.mark.parametrize("body,etype,status", [
    (b'{"model":"auto","messages":[', "invalid_request_error", 400),
    (b'{"model":7,"max_tokens":5,"messages":[]}', "invalid_request_error",
     400),
    (b'{"model":"auto","max_tokens":5,"messages":{}}',
     "invalid_request_error", 400),
    (b'{"model":"auto","max_tokens":-1,"messages":[{"role":"user",'
     b'"content":"x"}]}', "invalid_request_error", 400),
    (b'{"model":"auto","max_tokens":5,"system":5,"messages":[{"role":'
     b'"user","content":"x"}]}', "invalid_request_error", 400),
    (b'{"model":"auto","max_tokens":5,"messages":[{"role":"user",'
     b'"content":[1]}]}', "invalid_request_error", 400),
    (b'{"model":"auto","model":"auto","max_tokens":5,"messages":[{"role":'
     b'"user","content":"x"}]}', "invalid_request_error", 400),
    (b'{"model":"auto","mod\\u0065l":"x","max_tokens":5,"messages":[{"role":'
     b'"user","content":"x"}]}', "invalid_request_error", 400),
    (b'{"model":"no-such-model","max_tokens":5,"messages":[{"role":"user",'
     b'"content":"x"}]}', "not_found_error", 404),
])
def test_bad_input_gets_anthropic_errors(gateway, body, etype, status):
    g = gateway()
    r = post_json(g.port, MESSAGES, body, headers=HDRS)
    assert_anthropic_error(r, status, etype)
    assert g.all_requests() == []


def test_too_large_is_request_too_large(gateway):
    g = gateway(location_extra="client_max_body_size 1k;")
    r = post_json(g.port, MESSAGES, msg_body("x" * 5000), headers=HDRS)
    assert_anthropic_error(r, 413, "request_too_large")


def test_method_not_allowed_in_anthropic_shape(gateway):
    g = gateway()
    r = get(g.port, MESSAGES, headers=HDRS)
    assert_anthropic_error(r, 405, "invalid_request_error")


def test_529_fails_over_and_cools_down(gateway):
    g = gateway()
    g.cheap.script([{"mode": "status", "status": 529, "retry_after": "30"}])
    r = post_json(g.port, MESSAGES + "?beta=true", msg_body(model="auto"),
                  headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"
    assert r.header("X-LLMRoute-Attempts") == "2"
    assert g.cheap.last.path == g.prem.last.path == "/v1/messages?beta=true"
    assert g.prem.last.header("x-api-key") == KEY_B
    assert g.prem.last.body == with_model(msg_body(model="auto"), "opus-big")
    # its retry-after cools the provider down: the next request skips it
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"
    assert r.header("X-LLMRoute-Attempts") == "1"
    assert len(g.cheap.requests) == 1


def test_last_providers_own_error_passes_unchanged(gateway):
    """Every provider overloaded: the client gets the last provider's own
    529 body and headers (Claude Code's recovery matches on them)."""
    g = gateway()
    g.cheap.default = {"mode": "status", "status": 529}
    g.prem.default = {"mode": "status", "status": 529,
                      "headers": {"x-should-retry": "true"}}
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 529, r
    assert r.body == g.prem.responses[-1]
    assert r.header("x-should-retry") == "true"
    assert r.header("X-LLMRoute-Attempts") == "2"
    assert len(g.cheap.requests) == 1 and len(g.prem.requests) == 1


def test_429_everywhere_then_cooldown_is_an_anthropic_error(gateway):
    g = gateway()
    g.cheap.default = {"mode": "status", "status": 429, "retry_after": "7"}
    g.prem.default = {"mode": "status", "status": 429, "retry_after": "7"}
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 429 and r.header("Retry-After") == "7"
    assert r.body == g.prem.responses[-1]
    # both providers cool down: the gateway's own 503, Anthropic-shaped
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert_anthropic_error(r, 503, "overloaded_error")
    assert r.header("Retry-After")


# ---------------------------------------------------------- client limits

def test_client_limits_and_budget_in_anthropic_shape(gateway):
    """llmroute_client as for chat: a missing key 401, rpm 429 with
    Retry-After, a spent budget 402, each in Anthropic's shape."""
    g = gateway(location_extra="llmroute_client $http_x_team rpm=1;")
    h = dict(HDRS, **{"X-Team": "a"})
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert_anthropic_error(r, 401, "authentication_error")
    assert post_json(g.port, MESSAGES, msg_body(model="auto"),
                     headers=h).status == 200
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=h)
    assert_anthropic_error(r, 429, "rate_limit_error")
    assert r.header("Retry-After")

    g2 = gateway(location_extra="llmroute_client $http_x_team "
                                "budget=0.000001/day;")
    r = post_json(g2.port, MESSAGES, msg_body(model="opus-big"), headers=h)
    assert_anthropic_error(r, 402, "billing_error")
    assert g2.all_requests() == []


# --------------------------------------------------------------- escalation

def test_escalates_an_empty_answer(gateway):
    g = gateway(location_extra="llmroute_escalate on;")
    g.cheap.script([{"mode": "ok", "content": "  "}])
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"
    assert r.header("X-LLMRoute-Escalated") == "1"


def test_max_tokens_the_client_asked_for_is_not_escalated(gateway):
    g = gateway(location_extra="llmroute_escalate on;")
    g.cheap.script([{"mode": "ok", "finish_reason": "max_tokens",
                     "usage": {"output_tokens": 1024}}])
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "acheap"
    g.cheap.script([{"mode": "ok", "finish_reason": "max_tokens",
                     "usage": {"output_tokens": 100}}])
    r = post_json(g.port, MESSAGES, msg_body(model="auto"), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"


# ------------------------------------------------- classification and tools

def test_tools_and_images_need_capable_models(gateway):
    g = gateway()
    img = {"type": "image", "source": {"type": "base64",
                                       "media_type": "image/png",
                                       "data": "iVBORw0KGgo="}}
    body = json.dumps({"model": "auto", "max_tokens": 100, "messages": [
        {"role": "user", "content": [img, {"type": "text",
                                           "text": "what is it?"}]}]})
    r = post_json(g.port, MESSAGES, body.encode(), headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"


def test_tool_result_turn_is_not_the_ask(gateway):
    """A user turn of tool results only is tool output: the est. prompt
    counts its text, and it routes like any turn (no error)."""
    g = gateway()
    body = json.dumps({"model": "auto", "max_tokens": 100, "tools": [
        {"name": "ls", "description": "list", "input_schema": {
            "type": "object"}}], "messages": [
        {"role": "user", "content": "list the files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                           "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result",
                                      "tool_use_id": "t1",
                                      "content": "a.c b.c"}]}]}).encode()
    r = post_json(g.port, MESSAGES, body, headers=HDRS)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "acheap"
    assert g.cheap.last.body == with_model(body, "glm-small")


# ---------------------------------------------------- alias, models, count

def test_alias_maps_claude_names(gateway):
    g = gateway(http_extra="llmroute_alias claude-opus-* auto:complex; "
                           "llmroute_alias claude-* auto;")
    h = {k: v for k, v in HDRS.items() if k != "X-LLMRoute-Tier"}
    r = post_json(g.port, MESSAGES, msg_body("hi", model="claude-opus-5-5"),
                  headers=h)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "aprem"
    r = post_json(g.port, MESSAGES, msg_body("hi", model="claude-haiku-4"),
                  headers=h)
    assert r.status == 200 and r.header("X-LLMRoute-Provider") == "acheap"


def test_alias_to_unknown_target_fails_nginx_t(gateway):
    g = gateway(http_extra="llmroute_alias claude-* no-such-model;",
                start=False)
    rc, err = g.ngx.check()
    assert rc != 0 and "no-such-model" in err


@pytest.mark.parametrize("extra,needle", [
    ("llmroute_provider bad http://127.0.0.1:1/v1/messages format=grpc;",
     'invalid format "format=grpc"'),
    ("llmroute_provider bad http://127.0.0.1:1/v1/chat count_tokens=on;",
     '"count_tokens=on" needs "format=anthropic"'),
    ("llmroute_alias claude-*-opus auto;", 'invalid alias pattern'),
    ("llmroute_alias claude-* auto:genius;", 'auto:genius'),
    ("llmroute_alias claude-* oa/glm-small;", 'oa/glm-small'),
])
def test_bad_directives_fail_nginx_t(gateway, extra, needle):
    g = gateway(http_extra=extra, start=False)
    rc, err = g.ngx.check()
    assert rc != 0 and needle in err, err
    assert "nginx.conf:" in err, err


def test_https_anthropic_provider_without_verify_is_warned(nginx):
    """The x-api-key goes out as readable as a Bearer key: the same
    warning as for OpenAI-format providers."""
    ngx = nginx("""
        llmroute_zone llmroute:1m;
        llmroute_provider a https://127.0.0.1:9/v1/messages
                          key_env=TEST_KEY_A format=anthropic;
        llmroute_model a m tier=simple input=1 output=1;
        server { listen 127.0.0.1:%%PORT%%;
            location /v1/ { llmroute on; proxy_pass $llmroute_url;
                proxy_set_header x-api-key $llmroute_x_api_key; } }
    """, start=False)
    rc, err = ngx.check()
    assert rc == 0, err
    assert 'sends the key of https provider "a"' in err, err
    assert KEY_A not in err


def test_bad_llmroute_format_fails_nginx_t(gateway):
    g = gateway(location_extra="llmroute_format soap;", start=False)
    rc, err = g.ngx.check()
    assert rc != 0 and 'invalid format "soap"' in err, err


def test_count_tokens_local_and_forwarded(gateway):
    g = gateway()
    r = post_json(g.port, MESSAGES + "/count_tokens",
                  json.dumps({"model": "auto", "messages": [
                      {"role": "user", "content": "x" * 400}]}).encode(),
                  headers=HDRS)
    assert r.status == 200, r
    n = r.json()["input_tokens"]
    assert 100 <= n <= 120
    assert g.all_requests() == []

    g2 = gateway(ap_extra="count_tokens=on")
    body = json.dumps({"model": "opus-big", "messages": [
        {"role": "user", "content": "hello"}]}).encode()
    r = post_json(g2.port, MESSAGES + "/count_tokens", body, headers=HDRS)
    assert r.status == 200 and r.json() == {"input_tokens": 4242}
    assert g2.prem.last.path == "/v1/messages/count_tokens"
    assert g2.prem.last.header("x-api-key") == KEY_B


def test_models_in_anthropic_shape(gateway):
    g = gateway()
    doc = get(g.port, "/v1/models",
              headers={"anthropic-version": "2023-06-01"}).json()
    ids = [m["id"] for m in doc["data"]]
    assert "aprem/opus-big" in ids and "acheap/glm-small" in ids
    assert "oa/oa-tiny" not in ids
    assert all(m["type"] == "model" and "display_name" in m
               and "created_at" in m for m in doc["data"])
    assert doc["has_more"] is False
    assert doc["first_id"] == ids[0] and doc["last_id"] == ids[-1]
    doc = get(g.port, "/v1/models").json()
    assert doc["object"] == "list"


# -------------------------------------------------------- real clients

def _node(script, env):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").exists():
        pytest.skip("node or t/node/node_modules missing (scripts/deps.sh)")
    return subprocess.run(["node", str(NODE_DIR / script)], env=env,
                          capture_output=True, text=True, timeout=120,
                          cwd=str(NODE_DIR))


def test_official_sdk_json_stream_tools_errors(gateway):
    g = gateway(http_extra="llmroute_alias claude-* auto;")
    g.cheap.script(["ok", "ok",
                    {"mode": "ok", "tool_use": {"name": "get_weather",
                                                "input": {"city": "Paris"}}},
                    {"mode": "status", "status": 529}])
    g.prem.script([{"mode": "status", "status": 529}])
    lim = gateway(http_extra="llmroute_alias claude-* auto;",
                  location_extra="llmroute_client $http_authorization "
                                 "rpm=1;")
    env = dict(os.environ, GATEWAY="http://127.0.0.1:%d" % g.port,
               GATEWAY_LIMITED="http://127.0.0.1:%d" % lim.port)
    p = _node("anthropic_sdk.mjs", env)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["json"].startswith("Hello from acheap")
    assert out["stream"].startswith("Hello from acheap")
    assert out["tool"] == {"name": "get_weather", "input": {"city": "Paris"}}
    assert out["bad_request"] == "BadRequestError"
    assert out["not_found"] == "NotFoundError"
    # both providers overloaded: the last one's own 529 reaches the SDK
    assert out["overloaded"] == "OverloadedError"
    assert out["limited_first"] == "none", p.stderr
    assert out["rate_limited"] == "RateLimitError"
    # this SDK sends its key as "authorization: Bearer": never forwarded
    for rq in g.all_requests() + lim.all_requests():
        assert "client-key" not in str(rq.headers), rq.headers
        assert rq.header("x-api-key") in (KEY_A, KEY_B)
    assert out["stream_usage"]["cache_read_input_tokens"] == 0


class Tap:
    """A TCP relay in front of nginx that records every byte the client
    sent, so a test can compare what a provider got with what the client
    sent."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.sent = []
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            buf = bytearray()
            self.sent.append(buf)
            threading.Thread(target=self._pipe, args=(c, u, buf),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, None),
                             daemon=True).start()

    @staticmethod
    def _pipe(a, b, record):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if record is not None:
                    record.extend(d)
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def bodies(self, path_prefix):
        """(request line, body) of each POST whose path starts so."""
        out = []
        for buf in self.sent:
            data = bytes(buf)
            while data:
                head, _, rest = data.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                n = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                if lines[0].startswith(b"POST " + path_prefix.encode()):
                    out.append((lines[0], rest[:n]))
                data = rest[n:]
        return out

    def close(self):
        self.sock.close()


def run_claude(g, tmp_path, prompt, *args):
    """claude -p PROMPT ARGS with the README's environment, through a Tap
    in front of the gateway; returns the (closed) tap and the process.
    The tier is pinned: which tier an agent's turn gets is the
    classifier's tests' business, these are about the wire."""
    tap = Tap(g.port)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home),
           "ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % tap.port,
           "ANTHROPIC_API_KEY": "client-key-claude",
           "ANTHROPIC_CUSTOM_HEADERS": "X-LLMRoute-Tier: simple",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1"}
    try:
        p = subprocess.run([str(CLAUDE), "-p", prompt] + list(args),
                           env=env, capture_output=True, text=True,
                           timeout=180, cwd=str(tmp_path))
    finally:
        tap.close()
    return tap, p


def test_claude_code_cli_through_the_gateway(gateway, tmp_path):
    """The real claude CLI (claude -p) with ANTHROPIC_BASE_URL at nginx:
    the answer arrives; the cheapest eligible Anthropic provider got the
    request with its own key, the rewritten model and every other body
    byte as the CLI sent it; anthropic-beta passed; usage billed with cache
    reads and writes."""
    if not CLAUDE.exists() or shutil.which("node") is None:
        pytest.skip("claude CLI not installed (scripts/deps.sh)")
    g = gateway(http_extra="llmroute_alias claude-* auto;")
    g.cheap.default = {"mode": "ok", "content": "The answer is 4.",
                       "usage": {"input_tokens": 50, "output_tokens": 6,
                                 "cache_read_input_tokens": 3000,
                                 "cache_creation_input_tokens": 400}}
    tap, p = run_claude(g, tmp_path, "what is 2+2? answer briefly")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "The answer is 4." in p.stdout
    posts = [rq for rq in g.all_requests() if rq.method == "POST"]
    assert posts, "claude sent nothing"
    assert g.oa.requests == [] and g.prem.requests == []
    rec = posts[-1]
    assert rec.provider == "acheap"
    assert rec.path.startswith("/v1/messages")
    assert rec.header("x-api-key") == KEY_A
    assert rec.header("Authorization") is None
    assert "client-key-claude" not in str(rec.headers)
    sent = tap.bodies("/v1/messages")
    assert len(sent) == len(posts)
    line, client_body = sent[-1]
    assert line.split()[1].decode() == rec.path      # ?beta=true kept
    doc = json.loads(client_body)
    assert doc["model"].startswith("claude-") and doc["stream"] is True
    assert rec.body == with_model(client_body, "glm-small")
    assert len(rec.body) > 10000 and doc.get("tools") and doc.get("system")
    assert rec.header("anthropic-beta")
    assert rec.header("anthropic-version") == "2023-06-01"
    log = [x for x in g.ngx.json_log("llm.log", n=len(posts))
           if x["provider"] == "acheap"][-1]
    assert log["source"] == "provider"
    assert log["prompt"] == "3450" and log["cached"] == "3000"
    assert log["completion"] == "6"
    assert log["cost"] == "%.9f" % ((50 * 0.10 + 3000 * 0.01 + 400 * 0.125
                                     + 6 * 0.40) / 1e6)


def test_claude_code_tool_loop(gateway, tmp_path):
    """A two-request turn of the real CLI: the provider asks for the Read
    tool, Claude Code runs it and sends its result back; both requests
    reach the provider byte-exact but for "model", and the second one (a
    user turn of tool_result blocks only) is routed like the first."""
    if not CLAUDE.exists() or shutil.which("node") is None:
        pytest.skip("claude CLI not installed (scripts/deps.sh)")
    g = gateway(http_extra="llmroute_alias claude-* auto;")
    note = tmp_path / "note.txt"
    note.write_text("the secret word is artichoke\n")
    g.cheap.script([{"mode": "ok", "content": "",
                     "tool_use": {"name": "Read",
                                  "input": {"file_path": str(note)}}}])
    g.cheap.default = {"mode": "ok", "content": "The word is artichoke."}
    tap, p = run_claude(g, tmp_path, "what is the secret word in note.txt?",
                        "--allowedTools", "Read")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "artichoke" in p.stdout
    posts = [rq for rq in g.cheap.requests if rq.method == "POST"]
    assert len(posts) >= 2 and g.prem.requests == [] and g.oa.requests == []
    sent = tap.bodies("/v1/messages")
    assert len(sent) == len(posts)
    for (line, body), rec in zip(sent, posts):
        assert rec.body == with_model(body, "glm-small")
    last = json.loads(posts[-1].body)["messages"][-1]
    assert last["role"] == "user"
    assert any(b.get("type") == "tool_result" for b in last["content"])
    assert "artichoke" in posts[-1].body.decode()
