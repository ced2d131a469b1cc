"""Self-tests of the harness and the mock provider (no module needed):
they run plain nginx as a proxy in front of the mock, so a failure here is
a harness problem, not a module bug."""

import http.client
import json

import pytest

from llmroute_harness import (
    CHAT, build_request, chat_body, post_chunked, post_json,
    raw_request, stream_post, top_level_spans, with_model)

PROXY = """
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            proxy_pass http://127.0.0.1:%%MOCK%%;
            proxy_http_version 1.1;
            proxy_buffering off;
        }
    }
"""


def plain(nginx, mock, **kw):
    return nginx(PROXY, module=None, vars={"MOCK": mock.port}, **kw)


def test_with_model():
    body = b'{ "a" : {"model":"x"}, "model" :\t"auto" ,"z":"\xc3\xa9"}'
    assert with_model(body, "m-1") == \
        b'{ "a" : {"model":"x"}, "model" :\t"m-1" ,"z":"\xc3\xa9"}'
    spans = top_level_spans(b'{"k":"\xe6\x9d\xb1","model":"auto"}')
    assert spans["model"] == (len(b'{"k":"\xe6\x9d\xb1","model":'),
                              len(b'{"k":"\xe6\x9d\xb1","model":"auto"'))


def test_mock_json_answer(mocks):
    m = mocks("p1")
    m.default = {"mode": "ok", "usage": {"prompt_tokens": 100,
                                         "completion_tokens": 20,
                                         "cached_tokens": 40},
                 "headers": {"x-ratelimit-remaining-requests": "42"}}
    body = chat_body(model="m-1")
    resp = post_json(m.port, CHAT, body, {"Authorization": "Bearer k"})
    assert resp.status == 200
    assert resp.header("x-ratelimit-remaining-requests") == "42"
    doc = resp.json()
    assert doc["object"] == "chat.completion" and doc["model"] == "m-1"
    assert doc["choices"][0]["message"]["content"].startswith("Hello from p1")
    assert doc["usage"] == {
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 0}}
    assert m.last.body == body and m.last.header("authorization") == "Bearer k"
    assert ("Authorization", "Bearer k") in m.last.headers
    assert resp.body == m.responses[-1]


def test_mock_keepalive_and_script(mocks):
    m = mocks()
    m.script([{"mode": "status", "status": 429, "retry_after": 3}, "ok"])
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=5)
    c.request("POST", CHAT, chat_body())
    r1 = c.getresponse()
    e = json.loads(r1.read())
    assert r1.status == 429 and r1.getheader("Retry-After") == "3"
    assert e["error"]["code"] == "rate_limit_exceeded"
    c.request("POST", CHAT, chat_body())           # same connection
    r2 = c.getresponse()
    assert r2.status == 200 and json.loads(r2.read())["model"] == "auto"
    c.close()
    assert len(m.requests) == 2


def test_mock_sse(mocks):
    m = mocks()
    m.default = {"mode": "ok", "chunk_delay": 0.1, "pieces": ["a", "b", "c"],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    res = stream_post(m.port, CHAT, chat_body(
        stream=True, stream_options={"include_usage": True}))
    assert res.header("Content-Type") == "text/event-stream"
    data = res.data_events()
    assert data[-1] == "[DONE]"
    objs = [json.loads(d) for d in data[:-1]]
    assert [o["choices"][0]["delta"].get("content") for o in objs[1:4]] \
        == ["a", "b", "c"]
    assert objs[-1]["choices"] == [] and \
        objs[-1]["usage"]["total_tokens"] == 8
    assert res.events[-1][0] - res.events[0][0] >= 0.4
    res = stream_post(m.port, CHAT, chat_body(stream=True))
    assert all(json.loads(d)["choices"] for d in res.data_events()[:-1])


@pytest.mark.parametrize("mode", ["reset", "close", "garbage"])
def test_mock_broken_answers(mocks, mode):
    m = mocks()
    m.default = mode
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        post_json(m.port, CHAT, chat_body(), timeout=5)
    assert m.wait_requests(1)


def test_mock_reset_mid_stream(mocks):
    m = mocks()
    m.default = {"mode": "reset_mid_stream", "reset_after": 2}
    res = stream_post(m.port, CHAT, chat_body(stream=True))
    assert res.incomplete and len(res.data_events()) == 2


def test_mock_records_chunked_body(mocks):
    m = mocks()
    body = chat_body("x" * 5000)
    resp = post_chunked(m.port, CHAT, [body[:1000], body[1000:]], delay=0)
    assert resp.status == 200
    assert m.last.body == body and m.last.chunked


def test_plain_proxy_body_and_headers(nginx, mocks):
    m = mocks()
    ngx = plain(nginx, m)
    body = chat_body("y" * 50000)
    resp = raw_request(ngx.port, build_request(CHAT, body), pieces=20,
                       delay=0.002)
    assert resp.status == 200 and resp.body == m.responses[-1]
    assert m.last.body == body
    assert m.last.header("Content-Length") == str(len(body))
    resp = post_chunked(ngx.port, CHAT, [body[:7], body[7:]])
    assert resp.status == 200 and m.last.body == body


def test_plain_proxy_streams_progressively(nginx, mocks):
    m = mocks()
    m.default = {"mode": "ok", "chunk_delay": 0.3, "pieces": list("abcde")}
    ngx = plain(nginx, m)
    res = stream_post(ngx.port, CHAT, chat_body(stream=True))
    assert res.status == 200
    assert res.events[-1][0] - res.events[0][0] >= 1.2


def test_check_reload_and_alerts(nginx, mocks):
    m = mocks()
    ngx = plain(nginx, m, start=False)
    rc, err = ngx.check()
    assert rc == 0 and "syntax is ok" in err, err
    ngx.start()
    assert len(ngx.worker_pids()) == 2
    assert ngx.reload()
    assert post_json(ngx.port, CHAT, chat_body()).status == 200
    ngx.stop()
    assert ngx.alerts() == []
    ngx.error_log_path.write_text("2024/01/01 00:00:00 [alert] 1#1: x\n")
    assert ngx.alerts() == ["2024/01/01 00:00:00 [alert] 1#1: x"]
    ngx.error_log_path.write_text("")


def test_check_reports_file_and_line(nginx):
    ngx = nginx("    bogus_directive on;\n", module=None, start=False)
    rc, err = ngx.check()
    assert rc != 0
    assert "%s:%d" % (ngx.conf_path, ngx.conf_line_of("bogus_directive")) \
        in err, err


def test_plain_413_chunked_leaves_no_alert(nginx, mocks):
    # control for test_errors.py::test_too_large_chunked: stock nginx
    # refuses the chunked body without leaking the connection
    m = mocks()
    ngx = nginx(PROXY.replace("listen", "client_max_body_size 1k; listen"),
                module=None, vars={"MOCK": m.port})
    body = chat_body("x" * 4000)
    resp = post_chunked(ngx.port, CHAT, [body[i:i + 500]
                                         for i in range(0, len(body), 500)])
    assert resp.status == 413
    ngx.stop()
    assert ngx.alerts() == []
