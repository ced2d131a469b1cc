"""Second hardening pass, secrets and billing (issue 14, items 6-11):
provider keys never in r->headers_in, client credentials never forwarded,
client secrets hashed in the zone and in Redis, usage a client cannot
switch off, case-folded duplicate members refused.
"""

import json

import pytest

from llmroute_harness import (
    CHAT, KEY_A, KEY_B, assert_error, assert_routed, build_request,
    chat_body, post_json, raw_request, with_model)

SIMPLE = {"X-LLMRoute-Tier": "simple"}
RETRY = "llmroute_retries 2; proxy_connect_timeout 2s; proxy_read_timeout 2s;"
CLIENT = {"Authorization": "Bearer client-secret-7781",
          "x-api-key": "client-x-7781", "api-key": "client-a-7781"}


def no_credentials(rec, *secrets):
    """Nothing a provider (or mirror) received carries a client secret."""
    for name, value in rec.headers:
        for s in ("client-secret-7781", "client-x-7781", "client-a-7781")\
                + secrets:
            assert s not in value, (name, value)
        assert name.lower() not in ("x-api-key", "api-key"), (name, value)


# ------------------------------------------------------- 6: provider keys

CREDS_LOG = """
    log_format creds '$http_authorization|$http_x_api_key|$http_api_key';
"""


@pytest.mark.parametrize("fail_first", [False, True])
def test_access_log_sees_client_credentials_not_provider_keys(routed,
                                                              fail_first):
    r = routed(http_extra=CREDS_LOG,
               location_extra=RETRY + " access_log logs/creds.log creds;")
    if fail_first:
        r.cheap.script([{"mode": "status", "status": 500}])
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert resp.status == 200, resp
    got = r.provider_requests()[-1]
    assert got.header_all("Authorization") == [
        "Bearer " + (KEY_B if fail_first else KEY_A)]
    no_credentials(got)
    lines = (r.ngx.prefix / "logs" / "creds.log").read_text().splitlines()
    assert lines == ["Bearer client-secret-7781|client-x-7781|client-a-7781"]


def test_mirror_never_sees_a_provider_key(routed, mocks):
    mirror = mocks("mirror")
    r = routed(location_extra="mirror /mirror;",
               server_extra="""
        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:%d/v1/chat/completions;
        }""" % mirror.port)
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert_routed(resp, "cheap", "small-1")
    for _ in range(100):
        if mirror.requests:
            break
        import time
        time.sleep(0.05)
    assert mirror.requests, "the mirror got nothing"
    for name, value in mirror.last.headers:
        assert KEY_A not in value and KEY_B not in value, (name, value)


def test_error_page_fallback_gets_no_key(routed, mocks):
    """All providers fail; an error_page proxies elsewhere: that upstream
    sees neither a provider key nor the client's credentials."""
    other = mocks("other")
    r = routed(location_extra="llmroute_retries 0; proxy_intercept_errors on;"
               " error_page 502 = @fallback;",
               server_extra="""
        location @fallback {
            proxy_pass http://127.0.0.1:%d;
        }""" % other.port)
    r.cheap.script([{"mode": "status", "status": 502}])
    resp = post_json(r.port, CHAT, chat_body(), dict(CLIENT, **SIMPLE))
    assert resp.status == 200, resp
    assert other.requests, "the fallback got nothing"
    for name, value in other.last.headers:
        assert KEY_A not in value and KEY_B not in value, (name, value)


def test_retry_keeps_headers_after_removed_credentials(routed):
    """Credential headers before Content-Length and another header: the
    retry rewrites Content-Length, and must not write it into the header
    that a shifted list would have put in its place."""
    r = routed(location_extra=RETRY)
    r.cheap.script([{"mode": "status", "status": 500}])
    body = chat_body()
    head = ("POST %s HTTP/1.1\r\nHost: localhost\r\nx-api-key: c1\r\n"
            "api-key: c2\r\nX-LLMRoute-Tier: simple\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            "Content-Length: %d\r\nX-Trace: abc\r\nX-Other: def\r\n\r\n"
            % (CHAT, len(body))).encode()
    resp = raw_request(r.port, head + body)
    assert_routed(resp, "premium", "mid-1", attempts="2")
    for got in (r.cheap.last, r.premium.last):
        assert got.header_all("X-Trace") == ["abc"], (got.provider, got.headers)
        assert got.header_all("X-Other") == ["def"], got.headers
        assert got.header_all("Content-Length") == [str(len(got.body))]
        assert got.header("x-api-key") is None
        assert got.header("api-key") is None
    assert r.premium.last.body == with_model(body, "mid-1")
    assert r.premium.last.header_all("Host") == [r.premium.host]


def test_client_credentials_not_forwarded_without_proxy_set_header(
        nginx, mocks):
    """An operator who forgets proxy_set_header Authorization (and any
    x-api-key line): the client's credentials still stay home."""
    cheap = mocks("cheap")
    ngx = nginx("""
    llmroute_zone llmroute:1m;
    llmroute_provider cheap CHEAP_URL key_env=TEST_KEY_A;
    llmroute_model cheap small-1 tier=simple input=0.1 output=0.4;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/chat/completions {
            llmroute on;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
        }
    }""".replace("CHEAP_URL", cheap.url))
    resp = post_json(ngx.port, CHAT, chat_body(), CLIENT)
    assert resp.status == 200, resp
    no_credentials(cheap.last)
    assert cheap.last.header("Authorization") is None
