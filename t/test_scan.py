"""The request body's validating scan (ngx_http_llmroute_scan.c, issue 16)
through nginx: bodies it reads a block at a time are routed and spliced
byte for byte, a body with more values than the per-process token scratch
goes through its count-then-allocate path, and every refusal keeps the
error code and message of the former jsmn path (which now names them).
"""

import json

import pytest

from llmroute_harness import CHAT, assert_error, post_json

SIMPLE = {"X-LLMRoute-Tier": "simple"}


def test_pretty_printed_body_with_escapes_is_spliced(routed):
    # whitespace runs and escapes on both sides of 16-byte block edges
    r = routed()
    text = "".join("line %d \"quoted\" \\ tab\t é\n" % i for i in range(40))
    body = json.dumps({"model": "auto",
                       "messages": [{"role": "system", "content": text},
                                    {"role": "user", "content": "hi\u0001"}],
                       "temperature": 0.5},
                      indent=" " * 24).encode()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Model") == "small-1", resp
    assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)


def test_more_values_than_the_scratch_are_routed(routed):
    # 20 000 values: the scan counts them, then tokenizes into request memory
    r = routed()
    many = b"[" + b",".join(b"%d" % i for i in range(20000)) + b"]"
    body = (b'{"metadata":' + many + b',"model":"auto",'
            b'"messages":[{"role":"user","content":"hi"}]}')
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Model") == "small-1", resp
    assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)


MSG = b'"messages":[{"role":"user","content":"hi"}]'


@pytest.mark.parametrize("body,code,message", [
    (b'{"model":"auto",' + MSG, "invalid_json",
     "unexpected end of input"),
    (b'{"model":"auto",' + MSG + b'} {}', "invalid_json",
     "unexpected data after the top-level value"),
    (b'{"model":"auto",' + MSG + b',}', "invalid_json",
     "misplaced separator"),
    (b'{"model":"auto","x":[1,,2],' + MSG + b'}', "invalid_json",
     "misplaced separator"),
    (b'{"model":"auto","x":"a\x01b",' + MSG + b'}', "invalid_json",
     "control character"),
    (b'{"model":"auto","x":01,' + MSG + b'}', "invalid_json",
     "misplaced separator, invalid literal"),
    (b'{"model":"auto","x":"\\q",' + MSG + b'}', "invalid_json",
     "not valid JSON"),
    (b'[{"model":"auto",' + MSG + b'}]', "invalid_request",
     "must be a JSON object"),
    (b'{"x":' + b"[" * 64 + b"]" * 64 + b',' + MSG + b'}', "invalid_request",
     "nested too deeply"),
], ids=["part", "trailing", "trailing-comma", "double-comma", "ctl",
        "leading-zero", "bad-escape", "array", "deep"])
def test_refusals_keep_their_error(routed, body, code, message):
    r = routed()
    err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 400, code)
    assert message in err["message"], err
    assert r.provider_requests() == []


# a long string read 64 bytes at a step (AVX2 on a CPU that has it, else the
# build's vector code): escapes, runs of backslashes and \uXXXX put at every
# offset of a chunk's edge, then one bad byte after them
LONG_PIECES = ['\\n', '\\"', '\\\\', '\\/', '\\u00e9', '\\\\' * 20 + '\\"',
               '\\b\\f\\r\\t']


def long_content(shift, piece):
    return "x" * shift + (piece + "y" * 37) * 12


def test_long_strings_with_escapes_at_chunk_edges_are_spliced(routed):
    r = routed()
    for shift in range(0, 64, 7):
        for piece in LONG_PIECES:
            content = long_content(shift, piece)
            body = ('{"model":"auto","messages":[{"role":"user",'
                    '"content":"%s"}],"temperature":0.5}' % content).encode()
            resp = post_json(r.port, CHAT, body, SIMPLE)
            assert resp.status == 200, (shift, piece, resp)
            assert r.cheap.last.body == body.replace(b'"auto"',
                                                     b'"small-1"', 1)
            # what the provider got is the same JSON string
            assert json.loads(r.cheap.last.body)["messages"][0]["content"] \
                == json.loads('"%s"' % content)


@pytest.mark.parametrize("bad,message", [
    ('\\q', "not valid JSON"), ('\\u12g4', "not valid JSON"),
    ('\\\x01', "not valid JSON"), ('\x1f', "control character"),
    ('\\\\\\\\\\', "not valid JSON"),
], ids=["bad-escape", "bad-unicode", "escaped-ctl", "ctl", "odd-run"])
def test_long_strings_refuse_a_bad_byte_after_many_escapes(routed, bad,
                                                           message):
    r = routed()
    for shift in (0, 13, 61):
        content = long_content(shift, '\\n') + bad + "z" * 80
        body = ('{"model":"auto","messages":[{"role":"user",'
                '"content":"%s"}]}' % content).encode()
        err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 400,
                           "invalid_json")
        assert message in err["message"], (shift, bad, err)
    assert r.provider_requests() == []


def _expected_walk():
    """The walk the scan picks on this CPU: AVX2 (with BMI1) on x86-64
    where the CPU has it, else the architecture's baseline."""
    import platform
    arch = platform.machine()
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    if arch == "x86_64":
        return "avx2" if {"avx2", "bmi1"} <= flags else "sse2"
    return "neon" if arch == "aarch64" else "swar"


def test_the_first_worker_names_the_scan_walk(routed):
    # as nginx names its event method: once per start, by the first worker
    import re
    import time
    r = routed()
    resp = post_json(r.port, CHAT, {"model": "auto", "messages": [
        {"role": "user", "content": "hi"}]}, SIMPLE)
    assert resp.status == 200, resp
    pattern = r"\[notice\].*llmroute: request bodies are scanned with (\w+)"
    deadline = time.time() + 5
    while not re.findall(pattern, r.ngx.error_log()) and time.time() < deadline:
        time.sleep(0.05)
    assert re.findall(pattern, r.ngx.error_log()) == [_expected_walk()]


# ------------------------------------------------ shallow tools (issue 16)
# The values no reader descends into ("tools", "functions", members of the
# other format and unknown ones) are validated without tokens: one token
# for the whole value, its element count and span.

SYSTEM = ("You are a coding agent working in the user's repository. " * 40
          + "Quote \"paths\" and use \\ escapes.\n")


def tool(i):
    """A tool schema like an agent's: nested parameters, enums, arrays."""
    return {"type": "function", "function": {
        "name": "tool_%d" % i,
        "description": ("Does thing %d to the workspace. " % i) * 12
        + "Errors come back as {\"error\": ...} \u00e9\t.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "a path"},
                "lines": {"type": "array", "items": {
                    "type": "integer", "minimum": 1, "maximum": 1e6}},
                "mode": {"type": "string", "enum": ["r", "w", "a"]},
                "options": {"type": "object", "properties": {
                    "deep": {"type": ["boolean", "null"],
                             "default": None}},
                    "additionalProperties": False},
            },
            "required": ["path"], "additionalProperties": False}}}


def agent_body(tools, key="tools", **extra):
    doc = {"model": "auto",
           "messages": [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": "rename foo to bar"}],
           key: tools, "tool_choice": "auto", "temperature": 0.2}
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.mark.parametrize("key", ["tools", "functions"])
def test_an_agent_body_with_big_tools_is_routed_and_spliced(routed, key):
    # its tools need a model that has tools: mid-1, not the simple small-1
    r = routed(location_extra="add_header X-Facts $llmroute_route_facts;")
    body = agent_body([tool(i) for i in range(12)], key)
    assert len(body) > 12000
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.status == 200, resp
    assert resp.header("X-LLMRoute-Model") == "mid-1", resp
    assert "caps=tools" in resp.header("X-Facts"), resp.headers
    assert r.premium.last.body == body.replace(b'"auto"', b'"mid-1"', 1)

    # no tools (an empty array or null): small-1 again, byte for byte too
    for empty in ([], None):
        body = agent_body(empty, key)
        resp = post_json(r.port, CHAT, body, SIMPLE)
        assert resp.header("X-LLMRoute-Model") == "small-1", resp
        assert r.cheap.last.body == body.replace(b'"auto"', b'"small-1"', 1)


def test_tools_before_the_model_and_an_unknown_member_are_spliced(routed):
    # the model after the tools and a big unknown object: the spans of the
    # members read are still right
    r = routed()
    doc = json.loads(agent_body([tool(i) for i in range(3)]))
    del doc["model"]
    body = json.dumps({"tools": doc.pop("tools"),
                       "x_vendor": {"a": [tool(9)] * 4},
                       **doc, "model": "auto"},
                      separators=(",", ":")).encode()
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Model") == "mid-1", resp
    assert r.premium.last.body == body.replace(b'"model":"auto"',
                                               b'"model":"mid-1"', 1)


def test_tools_with_more_values_than_the_scratch_are_routed(routed):
    # 30 000 values in the tools: a few tokens, the limit still counts them
    r = routed()
    many = [{"type": "function", "function": {
        "name": "t", "parameters": {"enum": list(range(3000))}}}] * 10
    body = agent_body(many)
    resp = post_json(r.port, CHAT, body, SIMPLE)
    assert resp.header("X-LLMRoute-Model") == "mid-1", resp
    assert r.premium.last.body == body.replace(b'"auto"', b'"mid-1"', 1)


def test_tools_with_too_many_values_are_refused(routed):
    # the limit (2^18 values) counts the values of the tools it skips
    r = routed(server_extra="client_max_body_size 4m;")
    body = agent_body([{"enum": [0] * (1 << 18)}])
    err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 413,
                       "request_too_large")
    assert "too many values" in err["message"], err
    assert r.provider_requests() == []


def bad_tools(old, new):
    body = agent_body([tool(i) for i in range(12)])
    at = body.index(b'"tool_11"')
    i = body.index(old, at)
    return body[:i] + new + body[i + len(old):]


@pytest.mark.parametrize("body,code,message", [
    (bad_tools(b'\\u00e9', b'\\u00g9'), "invalid_json", "not valid JSON"),
    (bad_tools(b'\\"error', b'\\qerror'), "invalid_json", "not valid JSON"),
    (bad_tools(b'a path', b'a\x01path'), "invalid_json",
     "control character"),
    (bad_tools(b'"a"]', b'"a",]'), "invalid_json", "misplaced separator"),
    (bad_tools(b'"path"]', b'"path",]'), "invalid_json",
     "misplaced separator"),
    (bad_tools(b'"minimum":1', b'"minimum":01'), "invalid_json",
     "misplaced separator, invalid literal"),
    (bad_tools(b'"default":null', b'"default":nul'), "invalid_json",
     "not valid JSON"),
    (bad_tools(b'"default":null',
               b'"default":' + b"[" * 60 + b"]" * 60), "invalid_request",
     "nested too deeply"),
    (agent_body([tool(1)])[:-200], "invalid_json", "unexpected end of input"),
], ids=["bad-unicode", "bad-escape", "ctl", "trailing-comma-enum",
        "trailing-comma-required", "leading-zero", "literal", "deep", "part"])
def test_errors_deep_in_the_tools_keep_their_error(routed, body, code,
                                                   message):
    r = routed()
    err = assert_error(post_json(r.port, CHAT, body, SIMPLE), 400, code)
    assert message in err["message"], err
    assert r.provider_requests() == []
