"""pytest fixtures: nginx instances with the module, mock providers, and
the standard two-provider catalog used by most tests.

Every nginx a test started is stopped after the test body; if its
error.log then has [alert], [crit] or [emerg] lines the test fails (like
Test::Nginx's todo_alerts).  Opt out with @pytest.mark.allow_alerts or
`ngx.allow_alerts = True`.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from llmroute_harness import (  # noqa: E402
    CATALOG, KEYS, MODULE_PATH, SERVER, Nginx)
from mock_provider import MockProvider  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After the test body: stop its nginx instances and fail the test on
    alerts in their error.log, or on a provider key in any log.  A failed
    test gets the error.log attached to its report."""
    outcome = yield
    instances = getattr(item, "_nginx_instances", [])
    for ngx in instances:
        ngx.stop()
    if outcome.excinfo is not None:
        for i, ngx in enumerate(instances):
            item.add_report_section("call", "nginx error.log #%d" % i,
                                    ngx.error_log()[-20000:])
        return
    allow = item.get_closest_marker("allow_alerts") is not None
    bad = []
    for ngx in instances:
        if not (allow or ngx.allow_alerts):
            bad += ["%s: %s" % (ngx.error_log_path, line)
                    for line in ngx.alerts()]
        logs = ngx.error_log() + ngx.access_log()
        bad += ["%s: provider key %s in a log" % (ngx.prefix, name)
                for name, key in KEYS.items() if key in logs]
    if bad:
        pytest.fail("nginx logs:\n" + "\n".join(bad), pytrace=False)


@pytest.fixture
def nginx(request, tmp_path):
    """Factory: nginx(http_config, vars=..., env_vars=..., start=True)."""
    instances = request.node._nginx_instances = []

    def make(http_config, *, start=True, env_vars=None, **kw):
        module = kw.get("module", MODULE_PATH)
        if module and not os.path.exists(module):
            pytest.fail("module not built: %s (run ./build.sh, or set "
                        "LLMROUTE_MODULE)" % module, pytrace=False)
        env = dict(KEYS)
        env.update(env_vars or {})
        ngx = Nginx(tmp_path / ("servroot%d" % len(instances)), http_config,
                    env_vars=env, **kw)
        instances.append(ngx)
        if start:
            ngx.start()
        return ngx

    yield make
    for ngx in instances:
        ngx.stop()


@pytest.fixture
def mocks():
    """Factory: mocks(name) -> a running MockProvider, closed afterwards."""
    made = []

    def make(name="mock"):
        m = MockProvider(name)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


class Routed:
    """nginx with the standard catalog and its two mock providers."""

    def __init__(self, ngx, cheap, premium):
        self.ngx, self.cheap, self.premium = ngx, cheap, premium
        self.port = ngx.port

    def write_config(self, catalog=CATALOG, http_extra="", server_extra="",
                     location_extra=""):
        """Rewrite nginx.conf (same mocks and port), e.g. before reload()."""
        self.ngx.write_config(catalog + http_extra + SERVER, {
            "CHEAP_URL": self.cheap.url, "PREMIUM_URL": self.premium.url,
            "SERVER_EXTRA": server_extra, "LOCATION_EXTRA": location_extra})

    def provider_requests(self):
        return self.cheap.requests + self.premium.requests


@pytest.fixture
def routed(nginx, mocks):
    """Factory: routed(catalog=CATALOG, http_extra="", server_extra="",
    location_extra="", start=True) -> Routed."""

    def make(catalog=CATALOG, http_extra="", server_extra="",
             location_extra="", start=True, **kw):
        r = Routed(nginx("", start=False, **kw), mocks("cheap"),
                   mocks("premium"))
        r.write_config(catalog, http_extra, server_extra, location_extra)
        if start:
            r.ngx.start()
        return r

    return make
