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
