"""Providers' own rate-limit headers steer traffic away before a 429."""

import time

from llmroute_harness import chat_body, get, post_json

CHAT = "/v1/chat/completions"
SIMPLE = {"X-LLMRoute-Tier": "simple"}


def test_remaining_zero_cools_provider_until_reset(routed):
    r = routed(server_extra="location = /metrics { llmroute_metrics; }")
    r.cheap.script([{"mode": "ok", "headers": {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1.5s"}}])
    first = post_json(r.port, CHAT, chat_body("a"), SIMPLE)
    assert first.header("X-LLMRoute-Provider") == "cheap"

    # every worker now skips cheap, on fresh connections
    for i in range(6):
        resp = post_json(r.port, CHAT, chat_body("b%d" % i), SIMPLE)
        assert resp.status == 200
        assert resp.header("X-LLMRoute-Provider") == "premium", i
    assert len(r.cheap.requests) == 1
    text = get(r.port, "/metrics").body.decode()
    assert 'llmroute_provider_cooldown_seconds{provider="cheap"} ' in text
    assert 'llmroute_provider_cooldown_seconds{provider="cheap"} 0' \
        not in text

    time.sleep(2.2)
    resp = post_json(r.port, CHAT, chat_body("c"), SIMPLE)
    assert resp.header("X-LLMRoute-Provider") == "cheap"


def test_remaining_tokens_zero_with_minutes_reset(routed):
    r = routed()
    r.cheap.script([{"mode": "ok", "headers": {
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s"}}])
    post_json(r.port, CHAT, chat_body("a"), SIMPLE)
    resp = post_json(r.port, CHAT, chat_body("b"), SIMPLE)
    assert resp.header("X-LLMRoute-Provider") == "premium"


def test_remaining_nonzero_keeps_provider(routed):
    r = routed()
    r.cheap.default = {"mode": "ok", "headers": {
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "1s"}}
    for i in range(3):
        resp = post_json(r.port, CHAT, chat_body("a%d" % i), SIMPLE)
        assert resp.header("X-LLMRoute-Provider") == "cheap"


def test_header_names_any_case_both_counts(routed):
    """The names match in any case, and a zero for requests and one for
    tokens in the same answer both count (read in one pass)."""
    r = routed()
    r.cheap.script([{"mode": "ok", "headers": {
        "X-RateLimit-Remaining-Tokens": "0",
        "X-RateLimit-Reset-Tokens": "6m0s",
        "X-RateLimit-Remaining-Requests": "0"}}])
    post_json(r.port, CHAT, chat_body("a"), SIMPLE)
    resp = post_json(r.port, CHAT, chat_body("b"), SIMPLE)
    assert resp.header("X-LLMRoute-Provider") == "premium"
    assert len(r.cheap.requests) == 1
    log = r.ngx.error_log()
    assert 'provider "cheap" reports no requests left' in log
    assert 'provider "cheap" reports no tokens left, cooling down 360000' \
        in log
