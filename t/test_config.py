"""Configuration checks (SPEC: "Every llmroute directive is checked at
nginx -t with a message that names the file, line and the bad value") and
reloads."""

import os
import subprocess

import pytest

from llmroute_harness import (
    CATALOG, CHAT, KEYS, SERVER, assert_routed, chat_body, post_json)

SIMPLE = {"X-LLMRoute-Tier": "simple"}
URLS = {"CHEAP_URL": "http://127.0.0.1:9/v1/chat/completions",
        "PREMIUM_URL": "http://127.0.0.1:10/v1/chat/completions",
        "SERVER_EXTRA": "", "LOCATION_EXTRA": ""}


def checked(nginx, http_config, **kw):
    ngx = nginx(http_config + SERVER, start=False, vars=URLS, **kw)
    rc, err = ngx.check()
    return ngx, rc, err


def assert_rejected(ngx, rc, err, line_text, value):
    """nginx -t failed with an [emerg] naming file:line and the value."""
    assert rc != 0, err
    assert "[emerg]" in err, err
    where = "%s:%d" % (ngx.conf_path, ngx.conf_line_of(line_text))
    assert where in err, "expected %s in:\n%s" % (where, err)
    assert value in err, "expected %r in:\n%s" % (value, err)


def test_valid_config_passes(nginx):
    ngx, rc, err = checked(nginx, CATALOG)
    assert rc == 0, err
    assert "syntax is ok" in err and "test is successful" in err, err
    assert "[emerg]" not in err and "[warn]" not in err, err


BAD_LINES = [
    # (id, line to add to the standard catalog, value named in the error)
    ("model_id_too_long",      # a metrics series has a bounded text
     "llmroute_model cheap %s tier=simple input=0.10 output=0.40 "
     "context=16k;" % ("m" * 257), "m" * 257),
    ("unknown_provider",
     "llmroute_model nosuch x-1 tier=simple input=0.10 output=0.40 "
     "context=16k;", "nosuch"),
    ("bad_tier",
     "llmroute_model cheap x-1 tier=genius input=0.10 output=0.40 "
     "context=16k;", "genius"),
    ("price_not_a_number",
     "llmroute_model cheap x-1 tier=simple input=abc output=0.40 "
     "context=16k;", "abc"),
    ("negative_price",
     "llmroute_model cheap x-1 tier=simple input=-1 output=0.40 "
     "context=16k;", "-1"),
    ("bad_output_price",
     "llmroute_model cheap x-1 tier=simple input=0.10 output=1.2.3 "
     "context=16k;", "1.2.3"),
    ("bad_cached_price",
     "llmroute_model cheap x-1 tier=simple input=0.10 output=0.40 "
     "cached_input=cheap context=16k;", "cheap"),
    ("bad_context",
     "llmroute_model cheap x-1 tier=simple input=0.10 output=0.40 "
     "context=lots;", "lots"),
    ("unknown_model_option",
     "llmroute_model cheap x-1 tier=simple input=0.10 output=0.40 "
     "context=16k speed=fast;", "speed=fast"),
    ("duplicate_model",
     "llmroute_model cheap small-1 tier=simple input=0.20 output=0.80 "
     "context=16k;", "small-1"),
    ("duplicate_provider",
     "llmroute_provider cheap http://127.0.0.1:11/v1/chat/completions "
     "key_env=TEST_KEY_A;", "cheap"),
    ("ftp_url",
     "llmroute_provider other ftp://x key_env=TEST_KEY_A;", "ftp://x"),
    ("not_a_url",
     "llmroute_provider other 127.0.0.1:11 key_env=TEST_KEY_A;",
     "127.0.0.1:11"),
    ("unset_key_env",
     "llmroute_provider other http://127.0.0.1:11/v1/chat/completions "
     "key_env=LLMROUTE_TEST_UNSET_VAR;", "LLMROUTE_TEST_UNSET_VAR"),
    ("unknown_provider_option",
     "llmroute_provider other http://127.0.0.1:11/v1/chat/completions "
     "key_env=TEST_KEY_A colour=blue;", "colour=blue"),
]


@pytest.mark.parametrize("line,value", [b[1:] for b in BAD_LINES],
                         ids=[b[0] for b in BAD_LINES])
def test_bad_catalog_line(nginx, line, value):
    ngx, rc, err = checked(nginx, CATALOG + "    " + line + "\n")
    assert_rejected(ngx, rc, err, line, value)


def test_provider_without_zone(nginx):
    catalog = CATALOG.replace("llmroute_zone llmroute:1m;", "")
    ngx, rc, err = checked(nginx, catalog)
    assert rc != 0, err
    assert "[emerg]" in err and "llmroute_zone" in err, err
    assert "%s:" % ngx.conf_path in err, err


def test_bad_zone_size(nginx):
    catalog = CATALOG.replace("llmroute:1m", "llmroute:lots")
    ngx, rc, err = checked(nginx, catalog)
    assert_rejected(ngx, rc, err, "llmroute_zone", "lots")


@pytest.mark.parametrize("line,value", [
    ("llmroute_retries many;", "many"),
    ("llmroute_retries -1;", "-1"),
    ("llmroute_headers maybe;", "maybe"),
    ("llmroute_region;", "llmroute_region"),
])
def test_bad_location_directive(nginx, line, value):
    ngx = nginx(CATALOG + SERVER, start=False,
                vars=dict(URLS, LOCATION_EXTRA=line))
    rc, err = ngx.check()
    assert_rejected(ngx, rc, err, line, value)


def test_bad_llmroute_flag(nginx):
    server = SERVER.replace("llmroute on;", "llmroute sometimes;")
    ngx = nginx(CATALOG + server, start=False, vars=URLS)
    rc, err = ngx.check()
    assert_rejected(ngx, rc, err, "llmroute sometimes;", "sometimes")


def test_key_env_unset_even_if_declared(nginx):
    # `env NAME;` without a value in the environment: nothing to send
    catalog = CATALOG.replace("TEST_KEY_B", "LLMROUTE_TEST_EMPTY")
    ngx = nginx(catalog + SERVER, start=False, vars=URLS,
                main_config="env LLMROUTE_TEST_EMPTY;")
    rc, err = ngx.check()
    assert_rejected(ngx, rc, err, "key_env=LLMROUTE_TEST_EMPTY",
                    "LLMROUTE_TEST_EMPTY")


# ------------------------------------------------------------ reload

def test_reload_changes_prices(routed):
    r = routed()
    assert_routed(post_json(r.port, CHAT, chat_body(), SIMPLE),
                  "cheap", "small-1")
    # mid-1 becomes cheaper than small-1 and serves simple requests
    r.write_config(CATALOG.replace("input=1.00 output=4.00",
                                   "input=0.01 output=0.02"))
    assert r.ngx.reload(), r.ngx.error_log()
    for _ in range(4):
        resp = post_json(r.port, CHAT, chat_body(), SIMPLE)
        assert_routed(resp, "premium", "mid-1", "simple")


def test_reload_with_bad_config_is_refused_by_signaller(routed):
    r = routed()
    r.write_config(CATALOG.replace("tier=simple", "tier=bogus"))
    assert not r.ngx.reload(timeout=3)
    assert_routed(post_json(r.port, CHAT, chat_body(), SIMPLE),
                  "cheap", "small-1")


@pytest.mark.allow_alerts          # the rejected reload logs an [emerg]
def test_bad_reload_keeps_old_config(routed):
    r = routed()
    r.write_config(CATALOG.replace("tier=simple", "tier=bogus"))
    assert not r.ngx.reload(timeout=3, sighup=True)
    assert "bogus" in r.ngx.error_log()
    assert_routed(post_json(r.port, CHAT, chat_body(), SIMPLE),
                  "cheap", "small-1")


def test_reload_signal_needs_no_provider_keys(routed):
    # "nginx -s reload" parses the configuration in the operator's shell,
    # which need not hold the provider keys: the signal still goes out
    r = routed()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TEST_KEY")}
    old = r.ngx.worker_pids()
    p = subprocess.run(r.ngx._cmd("-s", "reload"), env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r.ngx.wait_workers(old)
    # and the reloaded workers still have the keys (the master's env)
    resp = post_json(r.port, CHAT, chat_body("hi"), SIMPLE)
    assert resp.status == 200
    assert r.cheap.last.header("Authorization") == \
        "Bearer " + KEYS["TEST_KEY_A"]
