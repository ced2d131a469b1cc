"""Accounting: tokens and cost from the provider's usage (JSON and SSE),
estimates when usage is missing, the usage chunk the module asks for and
strips, savings against the baseline, the access log variables and the
Prometheus metrics, across workers and reloads."""

import json
import shutil
import subprocess

import pytest

from llmroute_harness import (CATALOG, chat_body, get, post_json,
                              stream_then_leave,
                              stream_post)

CHAT = "/v1/chat/completions"

LOG = r"""
    log_format acct escape=json '{"provider":"$llmroute_provider",'
        '"model":"$llmroute_model","status":"$status",'
        '"prompt":"$llmroute_prompt_tokens",'
        '"completion":"$llmroute_completion_tokens",'
        '"cached":"$llmroute_cached_tokens","cost":"$llmroute_cost",'
        '"savings":"$llmroute_savings","source":"$llmroute_usage_source"}';
    llmroute_baseline_model big-1;
"""

LOCATION = "access_log logs/acct.log acct;"
METRICS = "location = /metrics { llmroute_metrics; }"


def nano(usd):
    return round(float(usd) * 1e9)


def cost(prompt, completion, cached, inp, out, cin):
    """Expected nano-USD: prices in USD per 1M tokens."""
    return round((prompt - cached) * inp * 1000 + cached * cin * 1000
                 + completion * out * 1000)


def acct_lines(r, n, timeout=5.0):
    return r.ngx.json_log("acct.log", n, timeout)


def metrics(r):
    resp = get(r.port, "/metrics")
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/plain")
    return resp.body.decode()


def series(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            lab, val = line[len(name) + 1:].rsplit("} ", 1)
            got = ",".join(sorted(lab.split(",")))
            if got == want:
                return float(val)
    return None


@pytest.fixture
def acct(routed):
    def make(**kw):
        return routed(http_extra=LOG, location_extra=LOCATION,
                      server_extra=METRICS, **kw)
    return make


def test_json_usage_with_cached_tokens(acct):
    r = acct()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 1000, "completion_tokens": 500,
        "cached_tokens": 200}}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 200
    (line,) = acct_lines(r, 1)
    assert line["provider"] == "cheap" and line["source"] == "provider"
    assert (line["prompt"], line["completion"], line["cached"]) == \
        ("1000", "500", "200")
    want = cost(1000, 500, 200, 0.10, 0.40, 0.01)
    assert nano(line["cost"]) == want == 282000
    # savings against big-1 (3.00/15.00, cached at input price)
    base = cost(1000, 500, 200, 3.00, 15.00, 3.00)
    assert nano(line["savings"]) == base - want


def test_deepseek_cache_hit_tokens(acct):
    r = acct()
    body = json.dumps({
        "id": "x", "object": "chat.completion", "model": "small-1",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 10,
                  "total_tokens": 310, "prompt_cache_hit_tokens": 100,
                  "prompt_cache_miss_tokens": 200}}).encode()
    r.cheap.default = {"mode": "ok", "body": body}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 200
    (line,) = acct_lines(r, 1)
    assert line["cached"] == "100"
    assert nano(line["cost"]) == cost(300, 10, 100, 0.10, 0.40, 0.01)


# An answer that arrives whole is read from its last top-level "usage" on
# (the choices are skipped); one in two buffers goes through yajl.  Both
# must bill the same, decoys in the text and members after usage included.
ANSWER = json.dumps({
    "id": "x", "object": "chat.completion", "model": "small-1",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant",
        "content": 'try {"usage":{"prompt_tokens":9}} "usage": 7',
        "usage": {"prompt_tokens": 999, "completion_tokens": 999}}}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
              "prompt_tokens_details": {"cached_tokens": 200}},
    "system_fingerprint": "fp_after_usage"}).encode()


@pytest.mark.parametrize("split_at", [None, 20, len(ANSWER) - 3])
def test_json_usage_whole_or_split(acct, split_at):
    r = acct()
    r.cheap.default = {"mode": "ok", "body": ANSWER, "split_at": split_at}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 200 and resp.body == ANSWER
    (line,) = acct_lines(r, 1)
    assert line["source"] == "provider"
    assert (line["prompt"], line["completion"], line["cached"]) == \
        ("1000", "500", "200")
    assert nano(line["cost"]) == 282000


# The usage reader keeps the shape of the last usage object it read (its
# bytes around the numbers) and reads the next one of that shape by
# comparing spans: each answer must still bill its own numbers, and one
# that only looks like the shape (a number written otherwise) must be read
# by the general path, as before (the figures are those of b116b8c, which
# had no shape).  One worker: each answer meets the last one's shape.
SHAPE = (b'{"id":"x","object":"chat.completion","model":"small-1",'
         b'"choices":[{"index":0,"finish_reason":"stop","message":'
         b'{"role":"assistant","content":"ok"}}],"usage":'
         b'{"prompt_tokens":%s,"completion_tokens":%s,"total_tokens":1,'
         b'"prompt_tokens_details":{"cached_tokens":%s}}}')


def test_usage_shape_bills_each_answers_numbers(acct):
    r = acct(worker_processes=1)
    answers = [
        ((b"1000", b"500", b"200"), ("1000", "500", "200")),
        ((b"7", b"123456", b"0"), ("7", "123456", "0")),
        ((b"1000000", b"1", b"999999"), ("1000000", "1", "999999")),
        ((b"0100", b"5", b"0"), ("100", "5", "0")),
        ((b"12", b"5.5", b"0"), ("12", "5", "0")),
        ((b"30", b"-4", b"0"), ("30", "0", "0")),
        ((b"1000", b"500", b"200"), ("1000", "500", "200")),
    ]
    for nums, _ in answers:
        r.cheap.default = {"mode": "ok", "body": SHAPE % nums}
        resp = post_json(r.port, CHAT, chat_body("hi"),
                         {"X-LLMRoute-Tier": "simple"})
        assert resp.status == 200 and resp.body == SHAPE % nums
    lines = acct_lines(r, len(answers))
    for (_, want), line in zip(answers, lines):
        assert line["source"] == "provider", line
        assert (line["prompt"], line["completion"], line["cached"]) == \
            want, line


def test_stream_usage_injected_and_stripped(acct):
    r = acct()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 40, "completion_tokens": 9, "cached_tokens": 0},
        "chunk_delay": 0.01}
    res = stream_post(r.port, CHAT, chat_body("hi", stream=True),
                      {"X-LLMRoute-Tier": "simple"})
    sent = r.cheap.last.json()
    assert sent["stream_options"] == {"include_usage": True}
    events = res.data_events()
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        assert json.loads(e)["choices"], "usage-only chunk reached client"
    # the client got every other byte the provider sent, unchanged
    upstream = r.cheap.responses[-1]
    usage_event = [e for e in upstream.split(b"\n\n")
                   if b'"choices": []' in e]
    assert len(usage_event) == 1
    assert res.body == upstream.replace(usage_event[0] + b"\n\n", b"")
    (line,) = acct_lines(r, 1)
    assert (line["prompt"], line["completion"], line["source"]) == \
        ("40", "9", "provider")
    assert nano(line["cost"]) == cost(40, 9, 0, 0.10, 0.40, 0.01)


def test_stream_usage_kept_when_client_asked(acct):
    r = acct()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 41, "completion_tokens": 8}}
    body = chat_body("hi", stream=True,
                     stream_options={"include_usage": True})
    res = stream_post(r.port, CHAT, body, {"X-LLMRoute-Tier": "simple"})
    assert r.cheap.last.body == body.replace(b'"model": "auto"',
                                             b'"model": "small-1"') \
        or b'"small-1"' in r.cheap.last.body
    assert res.body == r.cheap.responses[-1]
    last = json.loads(res.data_events()[-2])
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 41
    (line,) = acct_lines(r, 1)
    assert (line["prompt"], line["completion"]) == ("41", "8")


def test_stream_cumulative_usage_takes_the_last(acct):
    # Gemini's OpenAI endpoint repeats a growing usage in several chunks:
    # the last one is the bill, never their sum
    r = acct()

    def event(content, completion, finish=None):
        return "data: " + json.dumps({
            "id": "g", "object": "chat.completion.chunk", "model": "small-1",
            "choices": [{"index": 0, "delta": {"content": content},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": completion,
                      "total_tokens": 50 + completion}}) + "\n\n"

    sse = (event("one ", 1) + event("two ", 2) + event("three", 3, "stop")
           + "data: [DONE]\n\n").encode()
    r.cheap.default = {"mode": "ok", "body": sse,
                       "ctype": "text/event-stream"}
    res = stream_post(r.port, CHAT, chat_body("hi", stream=True),
                      {"X-LLMRoute-Tier": "simple"})
    assert res.status == 200
    (line,) = acct_lines(r, 1)
    assert (line["prompt"], line["completion"], line["source"]) == \
        ("50", "3", "provider")
    assert nano(line["cost"]) == cost(50, 3, 0, 0.10, 0.40, 0.01)
    assert series(metrics(r), "llmroute_tokens_total", kind="completion",
                  provider="cheap", model="small-1") == 3


def test_stream_cut_short_is_estimated(acct):
    r = acct()
    r.cheap.default = {"mode": "reset_mid_stream", "reset_after": 3,
                       "pieces": ["abcd" * 10, "efgh" * 10, "ijkl" * 10,
                                  "mnop" * 10]}
    res = stream_post(r.port, CHAT, chat_body("hi", stream=True),
                      {"X-LLMRoute-Tier": "simple"})
    assert res.status == 200
    (line,) = acct_lines(r, 1)
    assert line["source"] == "estimate"
    # 3 events reached nginx: the role chunk and 2 pieces of 40 bytes
    assert line["completion"] == "20"
    prompt = int(line["prompt"])
    assert prompt > 0
    assert nano(line["cost"]) == cost(prompt, 20, 0, 0.10, 0.40, 0.01)


def test_client_disconnect_mid_stream_is_estimated(acct):
    # the client reads a few events and leaves: what the provider generated
    # until nginx cut it off is billed as an estimate (no usage came), the
    # log line and the metrics agree, and the cost follows the tokens
    r = acct()
    pieces = ["tok "] * 3000
    r.cheap.script([{"mode": "ok", "pieces": pieces, "chunk_delay": 0.01}])
    stream_then_leave(r.port, CHAT, chat_body("go on forever", stream=True),
                      {"X-LLMRoute-Tier": "simple"}, 6)
    (line,) = acct_lines(r, 1, timeout=10)
    assert line["status"] == "200" and line["source"] == "estimate"
    completion, prompt = int(line["completion"]), int(line["prompt"])
    # at least the 5 pieces the client saw, far less than the 3000 asked
    assert 5 <= completion < 3000, line
    assert nano(line["cost"]) == cost(prompt, completion, 0, 0.10, 0.40, 0.01)
    text = metrics(r)
    assert series(text, "llmroute_tokens_total", kind="completion",
                  provider="cheap", model="small-1") == completion


def test_no_usage_from_provider_is_estimated(acct):
    r = acct()
    content = "x" * 400
    body = json.dumps({
        "id": "x", "object": "chat.completion", "model": "small-1",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant",
                                 "content": content}}]}).encode()
    r.cheap.default = {"mode": "ok", "body": body}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 200
    (line,) = acct_lines(r, 1)
    assert line["source"] == "estimate"
    assert line["completion"] == "100"       # 400 bytes / 4


def test_provider_error_costs_nothing(acct):
    r = acct()
    r.cheap.default = {"mode": "status", "status": 400}
    resp = post_json(r.port, CHAT, chat_body("hi"),
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.status == 400
    (line,) = acct_lines(r, 1)
    assert line["source"] == "none" and nano(line["cost"]) == 0


def test_metrics_sum_across_workers_and_reload(acct):
    r = acct()
    r.cheap.default = {"mode": "ok", "usage": {
        "prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 10}}
    n = 24
    for i in range(n):
        resp = post_json(r.port, CHAT, chat_body("hi %d" % i),
                         {"X-LLMRoute-Tier": "simple"})
        assert resp.status == 200
    post_json(r.port, CHAT, chat_body("x", model="nope"))
    acct_lines(r, n + 1)
    text = metrics(r)
    lab = {"provider": "cheap", "model": "small-1"}
    assert series(text, "llmroute_requests_total", tier="simple",
                  code="200", **lab) == n
    assert series(text, "llmroute_tokens_total", kind="prompt",
                  **lab) == 100 * n
    assert series(text, "llmroute_tokens_total", kind="cached",
                  **lab) == 10 * n
    one = cost(100, 20, 10, 0.10, 0.40, 0.01)
    assert nano(series(text, "llmroute_cost_usd_total", **lab)) == one * n
    assert series(text, "llmroute_rejected_total",
                  reason="model_not_found") == 1
    pids = set(r.ngx.worker_pids())
    assert len(pids) >= 2

    r.ngx.reload()
    for i in range(3):
        post_json(r.port, CHAT, chat_body("again"),
                  {"X-LLMRoute-Tier": "simple"})
    acct_lines(r, n + 4)
    text = metrics(r)
    assert series(text, "llmroute_requests_total", tier="simple",
                  code="200", **lab) == n + 3
    assert nano(series(text, "llmroute_cost_usd_total", **lab)) == \
        one * (n + 3)

    resp = get(r.port, "/metrics?format=json")
    doc = resp.json()
    (m,) = [x for x in doc["models"] if x["model"] == "small-1"]
    assert m["requests"] == n + 3 and m["prompt_tokens"] == 100 * (n + 3)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian prometheus) not installed")
def test_metrics_pass_promtool(acct, tmp_path):
    r = acct()
    post_json(r.port, CHAT, chat_body("hi"), {"X-LLMRoute-Tier": "simple"})
    post_json(r.port, CHAT, b"{bad")
    acct_lines(r, 2)
    text = metrics(r)
    (tmp_path / "metrics.txt").write_text(text)
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
