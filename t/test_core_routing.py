"""Routing and request rewriting (SPEC: "Routing rules", "Variables",
response headers), plus SSE pass-through.

Standard catalog (llmroute_harness.CATALOG):
    cheap   (regions=us,eu)  small-1 simple   0.10/0.40 ctx 16k  json
    premium (all regions)    mid-1   moderate 1.00/4.00 ctx 128k tools json vision
    premium                  big-1   complex  3.00/15.0 ctx 200k tools json vision
Tiers are forced with X-LLMRoute-Tier where the classifier's choice is not
the point of the test.
"""

import json

import pytest

from llmroute_harness import (
    CHAT, KEY_A, KEY_B, assert_error, assert_no_keys, assert_routed,
    chat_body, post_json, stream_post, with_model)

SIMPLE = {"X-LLMRoute-Tier": "simple"}
IMAGE = {"role": "user", "content": [
    {"type": "text", "text": "what is in this picture?"},
    {"type": "image_url",
     "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def words(n_chars):
    """Plain prose of about n_chars characters (no code, no reasoning
    words) to make prompts of a known size."""
    base = ("the quick brown fox jumps over the lazy dog while seven "
            "small birds sing in the old green garden near the river ")
    return (base * (n_chars // len(base) + 1))[:n_chars]


# ------------------------------------------------------------ happy path

def test_simple_prompt_goes_to_cheapest_model(routed):
    r = routed()
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, "cheap", "small-1", "simple")
    assert len(r.cheap.requests) == 1 and r.premium.requests == []
    got = r.cheap.last
    assert (got.method, got.path) == ("POST", "/v1/chat/completions")
    assert got.body == with_model(body, "small-1")
    # the client gets the provider's answer unchanged
    assert resp.body == r.cheap.responses[-1]
    assert resp.json()["model"] == "small-1"


def test_debug_log_names_the_decision(routed):
    # Debian's nginx is built --with-debug: the decision's debug line must
    # format (it once passed the reason without its length)
    r = routed(http_extra="error_log logs/debug.log debug;")
    resp = post_json(r.port, CHAT, chat_body("what is 2+2?"))
    assert_routed(resp, "cheap", "small-1", "simple")
    log = (r.ngx.prefix / "logs" / "debug.log").read_text(errors="replace")
    line = [x for x in log.splitlines() if "llmroute: cheap/small-1 tier" in x]
    assert line, "no decision line in the debug log"
    assert "tier 0 est " in line[0] and "simple" in line[0].split("(", 1)[1]


HARD = ("Design a multi-region, strongly consistent rate limiter for our API "
        "gateway. Compare token bucket and sliding window approaches, "
        "analyze the trade-offs between latency and accuracy under network "
        "partitions, and propose a migration plan from the current "
        "single-node implementation with failure modes and rollback.")


@pytest.mark.parametrize("prefix", ["", "(my ` key is broken) "])
def test_hard_task_goes_to_complex_tier(routed, prefix):
    # a stray backtick is a literal one: it must not hide the rest of the
    # line from the classifier as if it were inline code
    r = routed()
    resp = post_json(r.port, CHAT, chat_body(prefix + HARD))
    assert_routed(resp, "premium", "big-1", "complex")
    assert r.premium.last.body == with_model(chat_body(prefix + HARD),
                                             "big-1")


def test_provider_request_headers(routed):
    r = routed()
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, {
        "Authorization": "Bearer client-secret-7781",
        "x-api-key": "client-secret-7781", "api-key": "client-secret-7781",
        **SIMPLE})
    assert_routed(resp, "cheap", "small-1")
    got = r.cheap.last
    assert got.header_all("Authorization") == ["Bearer " + KEY_A]
    assert got.header_all("Host") == [r.cheap.host]
    assert got.header_all("Content-Length") == [str(len(got.body))]
    assert got.header("Transfer-Encoding") is None
    assert got.body == with_model(body, "small-1")
    for name, value in got.headers:
        assert "client-secret-7781" not in value, (name, value)


def test_premium_provider_gets_its_own_key_and_host(routed):
    r = routed()
    body = chat_body("what is 2+2?", model="auto:complex")
    resp = post_json(r.port, CHAT, body,
                     {"Authorization": "Bearer client-secret-7781"})
    assert_routed(resp, "premium", "big-1", "complex")
    got = r.premium.last
    assert got.header_all("Authorization") == ["Bearer " + KEY_B]
    assert got.header_all("Host") == [r.premium.host]
    assert got.header_all("Content-Length") == [str(len(got.body))]
    assert got.body == with_model(body, "big-1")
    assert r.cheap.requests == []


def test_absent_model_is_inserted(routed):
    r = routed()
    orig = {"messages": [{"role": "user", "content": "what is 2+2?"}],
            "temperature": 0.25, "user": "u-1"}
    body = json.dumps(orig).encode()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")
    got = r.cheap.last
    sent = got.json()
    assert sent == dict(orig, model="small-1")
    # the rest of the body is passed through byte for byte
    assert body[1:-1] in got.body
    assert len(got.body) - len(body) < 30, got.body
    assert got.header("Content-Length") == str(len(got.body))


def test_llmroute_headers_off(routed):
    r = routed(location_extra="llmroute_headers off;")
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.status == 200, resp
    for h in ("X-LLMRoute-Provider", "X-LLMRoute-Model", "X-LLMRoute-Tier",
              "X-LLMRoute-Attempts"):
        assert resp.header(h) is None, resp.headers
    assert r.cheap.last.body == with_model(body, "small-1")
    assert resp.body == r.cheap.responses[-1]


# ------------------------------------------------------------ tiers

@pytest.mark.parametrize("model,tier,provider,chosen", [
    ("auto:simple", "simple", "cheap", "small-1"),
    ("auto:moderate", "moderate", "premium", "mid-1"),
    ("auto:complex", "complex", "premium", "big-1"),
])
def test_auto_tier_floor(routed, model, tier, provider, chosen):
    r = routed()
    body = chat_body("what is 2+2?", model=model)
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, provider, chosen, tier)
    mock = r.cheap if provider == "cheap" else r.premium
    assert mock.last.body == with_model(body, chosen)
    assert len(r.provider_requests()) == 1


@pytest.mark.parametrize("tier,provider,chosen", [
    ("simple", "cheap", "small-1"),
    ("moderate", "premium", "mid-1"),
    ("complex", "premium", "big-1"),
])
def test_tier_header_overrides_classifier(routed, tier, provider, chosen):
    r = routed()
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, {"X-LLMRoute-Tier": tier})
    assert_routed(resp, provider, chosen, tier)


def test_tier_header_overrides_downwards(routed):
    r = routed()
    hard = ("Design a lock-free concurrent hash map in C11 with proofs of "
            "linearizability, analyze its memory reclamation trade-offs "
            "step by step, then write the full implementation and tests.\n"
            "```c\nstruct node { _Atomic(struct node *) next; };\n```")
    body = chat_body(hard)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")


CHEAP_MID = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A regions=us,eu;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   small-1 tier=simple   input=0.10 output=0.40 context=16k;
    llmroute_model premium mid-1   tier=moderate input=0.05 output=0.20 context=128k tools json vision;
    llmroute_model premium big-1   tier=complex  input=3.00 output=15.00 context=200k tools json vision;
"""


def test_higher_tier_model_serves_lower_tier_when_cheaper(routed):
    r = routed(catalog=CHEAP_MID)
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, SIMPLE)
    # the response tier is the request's tier, not the model's
    assert_routed(resp, "premium", "mid-1", "simple")
    assert r.premium.last.body == with_model(body, "mid-1")
    resp = post_json(r.port, CHAT, body, {"X-LLMRoute-Tier": "complex"})
    assert_routed(resp, "premium", "big-1", "complex")
    assert r.cheap.requests == []


# Cost = prompt tokens x input + output budget x output: the winner
# depends on which side dominates.
IN_OUT = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   in-cheap-1  tier=simple input=0.10 output=10.00 context=128k;
    llmroute_model premium out-cheap-1 tier=simple input=5.00 output=0.10  context=128k;
"""


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_cost_ranking_uses_output_budget(routed, field):
    r = routed(catalog=IN_OUT)
    body = chat_body("what is 2+2?", **{field: 4000})
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "out-cheap-1")
    assert r.premium.last.body == with_model(body, "out-cheap-1")


def test_cost_ranking_uses_prompt_size(routed):
    r = routed(catalog=IN_OUT, server_extra="client_body_buffer_size 1m;")
    body = chat_body(words(80000), max_tokens=1)      # ~20k prompt tokens
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "in-cheap-1")
    assert r.cheap.last.body == with_model(body, "in-cheap-1")


# ------------------------------------------------------------ pinning

@pytest.mark.parametrize("model,provider", [
    ("small-1", "cheap"), ("mid-1", "premium"), ("big-1", "premium")])
def test_catalog_model_id_pins_model(routed, model, provider):
    r = routed()
    body = chat_body("what is 2+2?", model=model)
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, provider, model)
    mock = r.cheap if provider == "cheap" else r.premium
    assert mock.last.body == body          # model value already the id
    assert len(r.provider_requests()) == 1


@pytest.mark.parametrize("model,provider,chosen", [
    ("premium/mid-1", "premium", "mid-1"),
    ("cheap/small-1", "cheap", "small-1"),
])
def test_provider_slash_model_pins_both(routed, model, provider, chosen):
    r = routed()
    body = chat_body("what is 2+2?", model=model)
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, provider, chosen)
    mock = r.cheap if provider == "cheap" else r.premium
    # the provider sees its own model id, not "provider/model"
    assert mock.last.body == with_model(body, chosen)


SHARED = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   shared-1 tier=moderate input=2.00 output=8.00 context=128k;
    llmroute_model premium shared-1 tier=moderate input=0.50 output=2.00 context=128k;
"""


def test_pinned_model_goes_to_cheapest_provider_serving_it(routed):
    r = routed(catalog=SHARED)
    body = chat_body("what is 2+2?", model="shared-1")
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, "premium", "shared-1")
    assert r.premium.last.body == body
    resp = post_json(r.port, CHAT, chat_body(model="cheap/shared-1"))
    assert_routed(resp, "cheap", "shared-1")
    assert r.cheap.last.json()["model"] == "shared-1"


@pytest.mark.parametrize("model", [
    "gpt-4o", "cheap/mid-1", "nosuch/small-1", "premium/", "/mid-1",
    "http://127.0.0.1:1/v1/chat/completions", "SMALL-1", "auto:genius", ""])
def test_unknown_model_is_404(routed, model):
    r = routed()
    resp = post_json(r.port, CHAT, chat_body(model=model))
    assert_error(resp, 404, "model_not_found")
    assert r.provider_requests() == []


# ------------------------------------------------------------ capabilities

def test_tools_need_tools_capability(routed):
    r = routed()
    body = chat_body("weather in Paris?", tools=TOOLS, tool_choice="auto")
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")
    assert r.premium.last.body == with_model(body, "mid-1")
    assert r.cheap.requests == []


def test_legacy_functions_need_tools_capability(routed):
    r = routed()
    body = chat_body("weather in Paris?",
                     functions=[TOOLS[0]["function"]])
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")


def test_image_part_needs_vision(routed):
    r = routed()
    body = json.dumps({"model": "auto", "messages": [
        {"role": "system", "content": "be brief"}, IMAGE]}).encode()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")
    assert r.premium.last.body == with_model(body, "mid-1")


def test_text_parts_do_not_need_vision(routed):
    r = routed()
    body = json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "what is 2+2?"}]}]}).encode()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")


NO_JSON = CHEAP_MID.replace("input=0.05 output=0.20", "input=1.00 output=4.00")


@pytest.mark.parametrize("fmt", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {
            "n": {"type": "integer"}}}}},
])
def test_json_mode_needs_json(routed, fmt):
    r = routed(catalog=NO_JSON)        # small-1 here has no `json`
    body = chat_body("what is 2+2? answer in json", response_format=fmt)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")
    assert r.premium.last.body == with_model(body, "mid-1")


def test_text_response_format_does_not_need_json(routed):
    r = routed(catalog=NO_JSON)
    body = chat_body("what is 2+2?", response_format={"type": "text"})
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")


def test_json_mode_allowed_on_json_model(routed):
    r = routed()
    body = chat_body("what is 2+2?", response_format={"type": "json_object"})
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")


# ------------------------------------------------------------ context size

def test_prompt_larger_than_context_skips_model(routed):
    r = routed(server_extra="client_body_buffer_size 1m;")
    body = chat_body(words(100000))        # ~20k+ tokens > small-1's 16k
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")
    assert r.premium.last.body == with_model(body, "mid-1")
    assert r.cheap.requests == []


def test_prompt_that_fits_context_stays_on_small_model(routed):
    r = routed(server_extra="client_body_buffer_size 1m;")
    body = chat_body(words(12000), max_tokens=100)     # ~3k tokens
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "cheap", "small-1", "simple")
    assert r.cheap.last.body == with_model(body, "small-1")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_output_budget_counts_against_context(routed, field):
    r = routed()
    body = chat_body("what is 2+2?", **{field: 20000})  # > 16k context
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert_routed(resp, "premium", "mid-1", "simple")


# ------------------------------------------------------------ regions

@pytest.mark.parametrize("region,provider,chosen", [
    (None, "cheap", "small-1"),
    ("us", "cheap", "small-1"),
    ("eu", "cheap", "small-1"),
    ("ap", "premium", "mid-1"),     # cheap has regions=us,eu
])
def test_region(routed, region, provider, chosen):
    r = routed()
    headers = dict(SIMPLE)
    if region:
        headers["X-Region"] = region
    body = chat_body("what is 2+2?")
    resp = post_json(r.port, CHAT, body, headers)
    assert_routed(resp, provider, chosen, "simple")
    mock = r.cheap if provider == "cheap" else r.premium
    assert mock.last.body == with_model(body, chosen)
    assert len(r.provider_requests()) == 1


# ------------------------------------------------------------ streaming

def sse_objects(res):
    return [json.loads(d) for d in res.data_events() if d != "[DONE]"]


def test_stream_arrives_progressively(routed):
    r = routed()
    pieces = ["one ", "two ", "three ", "four ", "five"]
    r.cheap.default = {"mode": "ok", "chunk_delay": 0.3, "pieces": pieces}
    body = chat_body("count to five", stream=True)
    res = stream_post(r.port, CHAT, body, SIMPLE)
    assert res.status == 200, res.body
    assert res.header("Content-Type").startswith("text/event-stream")
    assert res.header("X-LLMRoute-Provider") == "cheap"
    assert res.header("X-LLMRoute-Model") == "small-1"
    assert res.header("X-LLMRoute-Tier") == "simple"
    assert_no_keys(res.body.decode())
    data = res.data_events()
    assert data[-1] == "[DONE]", data
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in sse_objects(res) if c["choices"])
    assert text == "".join(pieces)
    # 7+ events 0.3 s apart: the first must arrive long before the last
    first, last = res.events[0][0], res.events[-1][0]
    assert last - first >= 1.2, res.events
    assert res.t_headers < 1.0, res.t_headers


def test_stream_usage_requested_by_module_and_stripped(routed):
    r = routed()
    orig = {"model": "auto", "stream": True,
            "messages": [{"role": "user", "content": "what is 2+2?"}]}
    res = stream_post(r.port, CHAT, json.dumps(orig).encode(), SIMPLE)
    assert res.status == 200, res.body
    sent = r.cheap.last.json()
    assert sent.pop("stream_options") == {"include_usage": True}
    assert sent == dict(orig, model="small-1")
    objs = sse_objects(res)
    assert objs and all(o["choices"] for o in objs), objs
    assert all(o.get("usage") is None for o in objs), objs
    assert res.data_events()[-1] == "[DONE]"


def test_stream_usage_kept_when_client_asked(routed):
    r = routed()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 31, "completion_tokens": 9, "cached_tokens": 5}}
    body = chat_body("what is 2+2?", stream=True,
                     stream_options={"include_usage": True})
    res = stream_post(r.port, CHAT, body, SIMPLE)
    assert res.status == 200, res.body
    assert r.cheap.last.body == with_model(body, "small-1")
    objs = sse_objects(res)
    assert objs[-1]["choices"] == []
    assert objs[-1]["usage"]["prompt_tokens"] == 31
    assert objs[-1]["usage"]["completion_tokens"] == 9
    assert objs[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
    # byte-exact pass-through when nothing had to be stripped
    assert res.body == r.cheap.responses[-1]
