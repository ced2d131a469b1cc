"""llmroute_escalate: a non-streamed answer that fails cheap quality checks
(finish_reason "length", empty content, not JSON in JSON mode) is billed,
withheld, and the request goes once to the next tier up."""

import json

import pytest

from llmroute_harness import chat_body, post_json

CHAT = "/v1/chat/completions"
SIMPLE = {"X-LLMRoute-Tier": "simple"}

LOG = r"""
    log_format esc escape=json '{"model":"$llmroute_model",'
        '"attempts":"$llmroute_attempts","cost":"$llmroute_cost",'
        '"status":"$status"}';
"""
LOCATION = "llmroute_escalate on; access_log logs/esc.log esc;"


def log_lines(r, n=1, timeout=5.0):
    return r.ngx.json_log("esc.log", n, timeout)


@pytest.fixture
def esc(routed):
    def make(**kw):
        return routed(http_extra=LOG, location_extra=LOCATION,
                      server_extra="location = /metrics "
                                   "{ llmroute_metrics; }", **kw)
    return make


@pytest.mark.parametrize("bad", [
    {"finish_reason": "length", "content": "cut sho"},
    {"content": ""},
    {"content": "   "},
], ids=["length", "empty", "blank"])
def test_bad_answer_escalates_to_next_tier(esc, bad):
    r = esc()
    r.cheap.default = dict({"mode": "ok", "usage": {
        "prompt_tokens": 100, "completion_tokens": 50}}, **bad)
    r.premium.default = {"mode": "ok", "content": "a full answer",
                         "usage": {"prompt_tokens": 100,
                                   "completion_tokens": 10}}
    resp = post_json(r.port, CHAT, chat_body("hi"), SIMPLE)
    assert resp.status == 200
    assert resp.header("X-LLMRoute-Escalated") == "1"
    assert resp.header("X-LLMRoute-Model") == "mid-1"
    assert resp.header("X-LLMRoute-Attempts") == "2"
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "a full answer"
    # same client body to both, only "model" differs
    assert json.loads(r.cheap.last.body)["model"] == "small-1"
    assert json.loads(r.premium.last.body)["model"] == "mid-1"
    assert resp.header("Content-Length") == str(len(resp.body))
    # both answers billed: small-1 100*0.10+50*0.40, mid-1 100*1+10*4 (µ$)
    (line,) = log_lines(r)
    want = (100 * 100 + 50 * 400) + (100 * 1000 + 10 * 4000)
    assert round(float(line["cost"]) * 1e9) == want
    assert line["attempts"] == "2"


def test_not_json_in_json_mode_escalates(esc):
    r = esc()
    r.cheap.default = {"mode": "ok", "content": "sure! {\"a\": 1"}
    r.premium.default = {"mode": "ok", "content": "{\"a\": 1}"}
    body = chat_body("give json", response_format={"type": "json_object"})
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Escalated") == "1"
    assert resp.json()["choices"][0]["message"]["content"] == '{"a": 1}'


def test_good_json_answer_is_not_escalated(esc):
    r = esc()
    r.cheap.default = {"mode": "ok", "content": "{\"a\": [1, 2]}"}
    body = chat_body("give json", response_format={"type": "json_object"})
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Escalated") is None
    assert resp.header("X-LLMRoute-Model") == "small-1"
    assert r.premium.requests == []


def test_good_answer_passes_unchanged(esc):
    r = esc()
    resp = post_json(r.port, CHAT, chat_body("hi"), SIMPLE)
    assert resp.status == 200
    assert resp.header("X-LLMRoute-Escalated") is None
    assert resp.body == r.cheap.responses[-1]
    assert r.premium.requests == []


def test_escalates_only_once(esc):
    r = esc()
    r.cheap.default = {"mode": "ok", "finish_reason": "length"}
    r.premium.default = {"mode": "ok", "finish_reason": "length"}
    resp = post_json(r.port, CHAT, chat_body("hi"), SIMPLE)
    assert resp.status == 200
    assert resp.header("X-LLMRoute-Escalated") == "1"
    assert resp.json()["choices"][0]["finish_reason"] == "length"
    assert len(r.cheap.requests) == 1 and len(r.premium.requests) == 1


def test_streams_and_pinned_models_are_not_escalated(esc):
    r = esc()
    r.cheap.default = {"mode": "ok", "finish_reason": "length"}
    resp = post_json(r.port, CHAT, chat_body("hi", model="small-1"))
    assert resp.header("X-LLMRoute-Escalated") is None
    resp = post_json(r.port, CHAT, chat_body("hi", stream=True), SIMPLE)
    assert resp.header("X-LLMRoute-Escalated") is None
    assert r.premium.requests == []


def test_without_escalate_bad_answer_passes(routed):
    r = routed()
    r.cheap.default = {"mode": "ok", "finish_reason": "length"}
    resp = post_json(r.port, CHAT, chat_body("hi"), SIMPLE)
    assert resp.header("X-LLMRoute-Escalated") is None
    assert r.premium.requests == []
