"""Request bodies: whatever way a body arrives (one write, many writes,
chunked, past client_body_buffer_size, megabytes), the provider receives
exactly the client's bytes with only the top-level "model" value replaced,
and a Content-Length matching them."""

import http.client
import json
import random
import socket
import threading
import time

import pytest

from llmroute_harness import (
    CHAT, assert_error, assert_routed, build_request, chat_body,
    post_chunked, post_json, raw_request, request_head, with_model)

# One model that can take anything, so only the body handling is tested.
BULK = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap %%CHEAP_URL%% key_env=TEST_KEY_A;
    llmroute_model cheap bulk-1 tier=complex input=0.10 output=0.40 context=10000k tools json vision;
"""


def assert_forwarded(r, resp, body):
    assert_routed(resp, "cheap", "bulk-1")
    got = r.cheap.last
    expected = with_model(body, "bulk-1")
    assert len(got.body) == len(expected)
    assert got.body == expected, first_difference(got.body, expected)
    assert got.header_all("Content-Length") == [str(len(expected))]
    assert got.header("Transfer-Encoding") is None
    assert resp.body == r.cheap.responses[-1]


def first_difference(a, b):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
             min(len(a), len(b)))
    return "differ at byte %d: got %r, expected %r" % (
        i, a[max(0, i - 40):i + 40], b[max(0, i - 40):i + 40])


def prose(n_bytes, seed=1):
    """Deterministic text with multi-byte UTF-8 and JSON escapes, about
    n_bytes long once encoded."""
    rnd = random.Random(seed)
    vocab = ["model", "auto", "données", "наука", "東京", "😀", "tab\t",
             'quote"d', "back\\slash", "line\nbreak", "the", "and", "of",
             "request", "{", "}", "[", "]", ":", ","]
    out, size = [], 0
    while size < n_bytes:
        w = rnd.choice(vocab)
        out.append(w)
        size += len(json.dumps(w, ensure_ascii=False)) - 1
    return " ".join(out)


def big_body(n_bytes, model_first=True, seed=1):
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": prose(n_bytes, seed)}]
    if model_first:
        obj = {"model": "auto", "messages": msgs, "temperature": 0}
    else:
        obj = {"messages": msgs, "temperature": 0, "model": "auto"}
    return json.dumps(obj, ensure_ascii=False).encode()


# ------------------------------------------------------------ small bodies

def test_one_byte_body(routed):
    r = routed(catalog=BULK)
    assert_error(post_json(r.port, CHAT, b"{"), 400, "invalid_json")
    assert r.cheap.requests == []


def test_small_body(routed):
    r = routed(catalog=BULK)
    body = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
    assert_forwarded(r, post_json(r.port, CHAT, body), body)


PRETTY = json.dumps({"model": "auto", "messages": [
    {"role": "user", "content": "hi"}], "n": 1}, indent=2).encode()

ODD_BODIES = {
    "pretty": PRETTY,
    "crlf_tabs": PRETTY.replace(b"\n", b"\r\n").replace(b"  ", b"\t"),
    "spaces": b'{ "model" : "auto" , "messages" : [ { "role" : "user" ,'
              b' "content" : "hi" } ] }',
    "model_last": b'{"messages":[{"role":"user","content":"hi"}],'
                  b'"temperature":0.7,"model":"auto"}',
    "model_middle": b'{"messages":[{"role":"user","content":"hi"}],'
                    b'"model":"auto","stop":["\\n"]}',
    "nested_model_keys":
        b'{"metadata":{"model":"auto"},"messages":[{"role":"user",'
        b'"content":"reply with {\\"model\\": \\"auto\\"}","name":"model"}],'
        b'"model":"auto","user":"model"}',
    "utf8": json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": "héllo wörld — 日本語 😀"}]},
        ensure_ascii=False).encode(),
    "escaped_unicode": b'{"model":"auto","messages":[{"role":"user",'
                       b'"content":"caf\\u00e9 \\ud83d\\ude00 \\/ \\\\ \\""}]}',
    "pinned_model": b'{"model":"bulk-1","messages":[{"role":"user",'
                    b'"content":"hi"}]}',
    "explicit_stream_false": b'{"model":"auto","stream":false,"messages":'
                             b'[{"role":"user","content":"hi"}]}',
    "numbers_and_literals": b'{"model":"auto","messages":[{"role":"user",'
                            b'"content":"hi"}],"temperature":1.5e-1,'
                            b'"top_p":1,"logprobs":false,"seed":null,'
                            b'"logit_bias":{"50256":-100}}',
}


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
def test_only_top_level_model_value_changes(routed, name):
    r = routed(catalog=BULK)
    body = ODD_BODIES[name]
    assert_forwarded(r, post_json(r.port, CHAT, body), body)


def test_absent_model_inserted_in_big_body(routed):
    r = routed(catalog=BULK, server_extra="client_body_buffer_size 1k;")
    obj = {"messages": [{"role": "user", "content": prose(100000)}]}
    body = json.dumps(obj, ensure_ascii=False).encode()
    resp = post_json(r.port, CHAT, body)
    assert_routed(resp, "cheap", "bulk-1")
    got = r.cheap.last
    assert got.json() == dict(obj, model="bulk-1")
    assert body[1:-1] in got.body
    assert got.header("Content-Length") == str(len(got.body))


# ------------------------------------------------------------ how it arrives

def test_body_in_many_tcp_writes(routed):
    r = routed(catalog=BULK)
    body = big_body(6000)
    req = build_request(CHAT, body)
    resp = raw_request(r.port, req, pieces=80, delay=0.005)
    assert_forwarded(r, resp, body)


def test_model_split_across_tcp_writes(routed):
    r = routed(catalog=BULK)
    body = big_body(3000)
    head = request_head(CHAT, length=len(body))
    # one byte at a time through `{"model": "auto", ` then the rest
    parts = [head] + [body[i:i + 1] for i in range(20)] + [body[20:]]
    assert_forwarded(r, raw_request(r.port, parts, delay=0.005), body)


def test_chunked_body(routed):
    r = routed(catalog=BULK)
    body = big_body(20000)
    chunks = [body[i:i + 3000] for i in range(0, len(body), 3000)]
    assert len(chunks) >= 6
    assert_forwarded(r, post_chunked(r.port, CHAT, chunks), body)


def test_chunked_body_split_inside_model(routed):
    r = routed(catalog=BULK)
    body = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
    chunks = [body[:4], body[4:12], body[12:14], body[14:]]
    assert_forwarded(r, post_chunked(r.port, CHAT, chunks), body)


@pytest.mark.parametrize("model_first", [True, False],
                         ids=["model_first", "model_last"])
def test_body_never_in_temp_file(routed, model_first):
    """client_body_buffer_size 1k would put a 100 KB body in a temp file;
    an llmroute location keeps it in memory instead (the buffer is raised
    to client_max_body_size), so it is never read back with blocking
    reads."""
    r = routed(catalog=BULK, server_extra="client_body_buffer_size 1k;")
    body = big_body(100 * 1024, model_first)
    assert_forwarded(r, post_json(r.port, CHAT, body), body)
    assert "client request body is buffered to a temporary file" \
        not in r.ngx.error_log()


def test_keepalive_requests_do_not_mix_bodies(routed):
    r = routed(catalog=BULK)
    bodies = [chat_body("first " * 300), chat_body("second"),
              big_body(30000)]
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
    try:
        for body in bodies:
            c.request("POST", CHAT, body,
                      {"Content-Type": "application/json"})
            resp = c.getresponse()
            data = resp.read()
            assert resp.status == 200, data
            assert r.cheap.last.body == with_model(body, "bulk-1")
    finally:
        c.close()
    assert len(r.cheap.requests) == 3


def read_to_close(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize("size", [3000, 20000, 300000],
                         ids=["block_8k", "block_32k", "pool"])
@pytest.mark.parametrize("big_headers", [False, True],
                         ids=["header_buffer", "large_header_buffer"])
def test_pipelined_request_after_split_body(routed, big_headers, size):
    """The start of a body in the header buffer, the rest in a later write,
    then a pipelined request in the same write: the gateway reads the body
    in place behind its start (the header buffer is lent a block: the
    worker's own up to 256 KB, else one the size of the body from the pool)
    and gives the buffer back intact, so the pipelined request and a third
    one on the same connection are read right."""
    r = routed(catalog=BULK)
    extra = {"X-Pad": "p" * 3000} if big_headers else {}
    first, second, third = (big_body(size, seed=seed) for seed in (1, 2, 3))
    head = request_head(CHAT, extra, length=len(first))
    head = head.replace(b"Connection: close", b"Connection: keep-alive")
    req2 = build_request(CHAT, second).replace(b"Connection: close",
                                               b"Connection: keep-alive")
    s = socket.create_connection(("127.0.0.1", r.port), 30)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head + first[:300])
        time.sleep(0.2)
        s.sendall(first[300:] + req2)
        time.sleep(0.2)
        s.sendall(build_request(CHAT, third))
        out = read_to_close(s)
    finally:
        s.close()
    assert out.count(b"HTTP/1.1 200 ") == 3, out[:300]
    assert [q.body for q in r.cheap.requests] == \
        [with_model(b, "bulk-1") for b in (first, second, third)]


def send_split(port, body, out, i):
    """One request whose body starts with the headers and ends in a later
    write (so the header buffer is lent a block for it); the answer into
    out[i]."""
    head = request_head(CHAT, None, length=len(body))
    s = socket.create_connection(("127.0.0.1", port), 30)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head + body[:200])
        time.sleep(0.3)
        s.sendall(body[200:])
        out[i] = read_to_close(s)
    finally:
        s.close()


def test_small_split_bodies_in_flight_together(routed):
    """Bodies of 2 KB to 60 KB read in place at once, in blocks of 8 to 64
    KB, more than the 512 KB of blocks a worker keeps (the rest are freed
    when their requests end), then as many others that take the kept
    blocks again: every provider gets its own body, byte for byte."""
    r = routed(catalog=BULK, worker_processes=1)   # one worker's lists
    r.cheap.default = {"mode": "ok", "delay": 0.5}
    sizes = [2000, 3000, 5000, 7000, 12000, 20000, 30000] + [60000] * 9
    for round_ in range(2):
        bodies = [big_body(size, seed=100 * round_ + i)
                  for i, size in enumerate(sizes)]
        out = [None] * len(bodies)
        threads = [threading.Thread(target=send_split,
                                    args=(r.port, b, out, i))
                   for i, b in enumerate(bodies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(o and o.startswith(b"HTTP/1.1 200 ") for o in out), \
            [o[:100] if o else o for o in out]
        got = sorted(q.body for q in r.cheap.requests[len(sizes) * round_:])
        assert got == sorted(with_model(b, "bulk-1") for b in bodies)


# ------------------------------------------------------------ big bodies

@pytest.mark.parametrize("size,buffer,chunked", [
    (1 << 20, "8k", False),
    (1 << 20, "2m", False),        # whole body in memory
    (8 << 20, "8k", False),
    (8 << 20, "8k", True),
], ids=["1m_file", "1m_memory", "8m_file", "8m_chunked"])
def test_big_body(routed, size, buffer, chunked):
    r = routed(catalog=BULK, server_extra="client_max_body_size 16m; "
               "client_body_buffer_size %s;" % buffer)
    body = big_body(size)
    assert len(body) >= size
    if chunked:
        chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        resp = post_chunked(r.port, CHAT, chunks, delay=0)
    else:
        resp = post_json(r.port, CHAT, body, timeout=60)
    assert_forwarded(r, resp, body)
