"""llmroute-catalog (tools/llmroute-catalog/): fetch, publish and probe
against in-process HTTP(S) servers, a real redis-server and Debian's nginx.

Built with `make -f tools/catalog.mk catalog-tool` (done by the session
fixture).  The Redis tests skip when redis-server is not installed, the
TLS tests when openssl is not.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmroute_harness import (
    MODULE_PATH, NGINX_BINARY, REPO_ROOT, free_port, wait_port)

TOOL = REPO_ROOT / "build" / "tools" / "llmroute-catalog"
MAP = REPO_ROOT / "tools" / "llmroute-catalog" / "catalog.map"
EXAMPLES = REPO_ROOT / "conf.d" / "examples"

# exit codes (tools/llmroute-catalog/README.md)
OK, EUSAGE, EMAP, ESOURCE, ETIMEOUT, ETLS, EHTTP, EJSON, EMISSING, \
    EWRITE, ENGINX_TEST, ERELOAD, EREDIS, EPROBE = range(14)


def per_token(usd_per_million):
    """OpenRouter's shape: USD per token as a decimal string."""
    return "%.12f" % (usd_per_million / 1e6)


# OpenRouter-shaped entries for every source id in catalog.map
LIST = {
    "openai/gpt-5-nano": (0.05, 0.40, 0.005, 400000, True),
    "openai/gpt-4.1-mini": (0.40, 1.60, 0.10, 1047576, True),
    "openai/gpt-5-mini": (0.25, 2.00, 0.025, 400000, True),
    "openai/gpt-5": (1.25, 10.00, 0.125, 400000, True),
    "anthropic/claude-haiku-4.5": (1.00, 5.00, 0.10, 200000, True),
    "anthropic/claude-sonnet-4.5": (3.00, 15.00, 0.30, 1000000, True),
    "google/gemini-2.5-flash-lite": (0.10, 0.40, 0.025, 1048576, True),
    "google/gemini-2.5-flash": (0.30, 2.50, 0.075, 1048576, True),
    "google/gemini-2.5-pro": (1.25, 10.00, 0.31, 1048576, True),
    "qwen/qwen-plus": (0.40, 1.20, None, 131072, False),
    "qwen/qwen-max": (1.60, 6.40, None, 32768, False),
    "mistralai/mistral-medium-3.1": (0.40, 2.00, None, 131072, True),
}


def price_list(entries=LIST, extra=()):
    data = []
    for mid, (inp, out, cached, ctx, vision) in entries.items():
        pricing = {"prompt": per_token(inp), "completion": per_token(out),
                   "request": "0", "image": "0"}
        if cached is not None:
            pricing["input_cache_read"] = per_token(cached)
        data.append({
            "id": mid, "name": mid, "context_length": ctx,
            "pricing": pricing,
            "architecture": {"input_modalities":
                             ["text", "image"] if vision else ["text"]},
            "supported_parameters": ["tools", "response_format",
                                     "max_tokens"]})
    data.extend(extra)
    data.append({"id": "openrouter/auto", "pricing": {"prompt": "-1",
                                                      "completion": "-1"}})
    return json.dumps({"data": data}).encode()


GOOD = price_list()


class Server:
    """In-process HTTP(S) server; routes: path -> (status, body, delay)."""

    def __init__(self, routes, tls=None):
        self.routes = routes
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                status, body, delay = server.routes.get(
                    self.path, (404, b'{"error":"no route"}', 0))
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket,
                                                server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def url(self, path, host="127.0.0.1", scheme="http"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def tool():
    p = subprocess.run(["make", "-s", "-f", "tools/catalog.mk",
                        "catalog-tool"], cwd=REPO_ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()
    return TOOL


@pytest.fixture
def server():
    servers = []

    def make(routes, tls=None):
        s = Server(routes, tls)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def run(tool, *args, env=None, timeout=60):
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([str(tool), *map(str, args)], env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    p.elapsed = time.monotonic() - t0
    p.out = p.stdout.decode()
    p.err = p.stderr.decode()
    return p


def models_of(text):
    """{provider/model: {param: value or True}} from a generated file."""
    res = {}
    for line in text.splitlines():
        if not line.startswith("llmroute_model "):
            continue
        body = line.split(";")[0].split()
        params = {}
        for w in body[3:]:
            k, _, v = w.partition("=")
            params[k] = v if v else True
        res["%s/%s" % (body[1], body[2])] = params
    return res


# ------------------------------------------------------------------- fetch

def test_fetch_file_writes_the_catalog(tool, tmp_path):
    src = tmp_path / "models.json"
    src.write_bytes(GOOD)
    out = tmp_path / "models.conf"
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", out)
    assert p.returncode == OK, p.err
    assert "written" in p.out
    m = models_of(out.read_text())
    assert len(m) == 31
    g = m["openai/gpt-4.1-mini"]
    assert (g["input"], g["output"], g["cached_input"]) == \
        ("0.40", "1.60", "0.10")
    assert g["context"] == "1047576"
    assert g["tier"] == "moderate" and g["tools"] and g["vision"]
    assert m["openai/gpt-5-nano"]["cached_input"] == "0.005"
    # cached_input=input: left out, the module defaults it to input
    assert "cached_input" not in m["anthropic/claude-haiku-4-5"]
    assert "json" not in m["anthropic/claude-haiku-4-5"]
    # context capped by the map (price tier), not raised
    assert m["gemini/gemini-2.5-pro"]["context"] == "200000"
    assert m["qwen/qwen-max"]["context"] == "32768"
    assert m["openrouter/anthropic/claude-sonnet-4.5"]["context"] == "200000"
    # static entries
    assert m["groq/llama-3.1-8b-instant"]["input"] == "0.05"
    assert m["deepseek/deepseek-chat"]["cached_input"] == "0.028"
    # no cached price in the list: none written
    assert "cached_input" not in m["qwen/qwen-plus"]
    # second run: identical output, no write
    mtime = out.stat().st_mtime_ns
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", out)
    assert p.returncode == OK and "unchanged" in p.out, p.err
    assert out.stat().st_mtime_ns == mtime
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_price_conversion_is_exact_and_rounds_to_3_decimals(tool, tmp_path):
    entries = {"openai/gpt-5": (1.25, 10.0, 0.125, 400000, True)}
    doc = json.loads(price_list(entries))
    pr = doc["data"][0]["pricing"]
    pr["prompt"] = "1.25e-6"                 # exponent form
    pr["completion"] = 0.00001               # a JSON number
    pr["input_cache_read"] = "0.00000003125"   # 0.03125 per 1M: rounded
    src = tmp_path / "l.json"
    src.write_text(json.dumps(doc))
    mp = tmp_path / "m.map"
    mp.write_text("openai gpt-5 openai/gpt-5 complex auto\n")
    out = tmp_path / "o.conf"
    p = run(tool, "fetch", "--source", src, "--map", mp, "--out", out)
    assert p.returncode == OK, p.err
    g = models_of(out.read_text())["openai/gpt-5"]
    assert (g["input"], g["output"], g["cached_input"]) == \
        ("1.25", "10.00", "0.031")
    assert "rounded" in p.err
    assert g["tools"] and g["json"] and g["vision"]      # caps "auto"


def test_fetch_http_then_nginx_t_and_reload(tool, tmp_path, server):
    if not MODULE_PATH.exists():
        pytest.skip("module not built (./build.sh)")
    s = server({"/api/v1/models": (200, GOOD, 0)})
    prefix = tmp_path / "prefix"
    (prefix / "llmroute").mkdir(parents=True)
    (prefix / "logs").mkdir()
    port = free_port()
    providers = (EXAMPLES / "providers.conf").read_text()
    import re
    providers = re.sub(r"(?m)^(\s*server\s+)[A-Za-z0-9.-]+:443\b",
                       r"\g<1>127.0.0.1:%d" % port, providers)
    (prefix / "llmroute" / "providers.conf").write_text(providers)
    out = prefix / "llmroute" / "models.conf"
    conf = prefix / "nginx.conf"
    conf.write_text(
        "load_module %s;\n" % MODULE_PATH
        + "".join("env %s;\n" % k for k in KEY_ENV)
        + "pid logs/nginx.pid;\nevents {}\nhttp {\n"
        "  llmroute_zone llmroute:1m;\n"
        "  include llmroute/providers.conf;\n"
        "  include llmroute/models.conf;\n}\n")
    marker = tmp_path / "reloaded"
    nginx_test = "%s -t -q -p %s/ -c %s -e stderr" % (NGINX_BINARY, prefix,
                                                      conf)
    p = run(tool, "fetch", "--source", s.url("/api/v1/models"), "--map", MAP,
            "--out", out, "--nginx-test", nginx_test,
            "--reload", "touch %s" % marker, env=KEY_ENV)
    assert p.returncode == OK, p.err
    assert marker.exists()
    assert "# Generated by llmroute-catalog from http://127.0.0.1" in \
        out.read_text()


KEY_ENV = {k: "sk-dummy" for k in [
    "OPENAI_API_KEY", "OPENAI_EU_API_KEY", "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "DASHSCOPE_API_KEY",
    "MISTRAL_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY", "OPENROUTER_API_KEY"]}

OLD = "# the previous catalog\n"


@pytest.fixture
def old_out(tmp_path):
    out = tmp_path / "models.conf"
    out.write_text(OLD)
    return out


def assert_kept(p, out, code, *words):
    assert p.returncode == code, (p.returncode, p.err)
    assert out.read_text() == OLD
    assert "left unchanged" in p.err or code in (ENGINX_TEST, EWRITE), p.err
    for w in words:
        assert w in p.err, p.err
    assert not [f for f in os.listdir(out.parent) if f.startswith(".")]


@pytest.mark.parametrize("body,words", [
    (b'{"data":[{"id":"openai/gpt-5",', ["malformed JSON"]),
    (b"<html>rate limited</html>", ["malformed JSON"]),
    (GOOD + b" trailing", ["malformed JSON"]),
    (b'{"models":[]}', ['no top-level "data" array']),
    (b"", ["malformed JSON"]),
])
def test_malformed_json(tool, server, old_out, body, words):
    s = server({"/m": (200, body, 0)})
    p = run(tool, "fetch", "--source", s.url("/m"), "--map", MAP,
            "--out", old_out)
    assert_kept(p, old_out, EJSON, *words)


def test_http_500(tool, server, old_out):
    s = server({"/m": (500, b'{"error":"boom"}', 0)})
    p = run(tool, "fetch", "--source", s.url("/m"), "--map", MAP,
            "--out", old_out)
    assert_kept(p, old_out, EHTTP, "HTTP status 500")


def test_timeout(tool, server, old_out):
    s = server({"/m": (200, GOOD, 5)})
    p = run(tool, "fetch", "--source", s.url("/m"), "--map", MAP,
            "--out", old_out, "--timeout", "0.5")
    assert_kept(p, old_out, ETIMEOUT, "timed out")
    assert p.elapsed < 3


def test_connection_refused(tool, old_out):
    p = run(tool, "fetch", "--source",
            "http://127.0.0.1:%d/m" % free_port(), "--map", MAP,
            "--out", old_out)
    assert_kept(p, old_out, ESOURCE, "cannot connect")


def test_missing_file_source(tool, tmp_path, old_out):
    p = run(tool, "fetch", "--source", tmp_path / "nope.json", "--map", MAP,
            "--out", old_out)
    assert_kept(p, old_out, ESOURCE, "cannot read source file")


def test_missing_model(tool, tmp_path, old_out):
    entries = dict(LIST)
    del entries["google/gemini-2.5-pro"]
    src = tmp_path / "l.json"
    src.write_bytes(price_list(entries))
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", old_out)
    assert_kept(p, old_out, EMISSING, '"google/gemini-2.5-pro"',
                "not in the price list")
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", old_out,
            "--allow-missing")
    assert p.returncode == OK, p.err
    m = models_of(old_out.read_text())
    assert "gemini/gemini-2.5-pro" not in m and len(m) == 30


def test_bad_price_in_list(tool, tmp_path, old_out):
    mp = tmp_path / "m.map"
    mp.write_text("openrouter auto-router openrouter/auto simple -\n"
                  .replace("auto-router", "router"))
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "fetch", "--source", src, "--map", mp, "--out", old_out)
    assert_kept(p, old_out, EMISSING, "not a non-negative decimal")


@pytest.mark.parametrize("line,words", [
    ("openai gpt-5 openai/gpt-5 genius tools", "invalid tier"),
    ("openai auto-x openai/gpt-5 simple tools", "invalid model id"),
    ("openai gpt-5 openai/gpt-5 simple teleport", "unknown capability"),
    ("openai gpt-5 - simple tools input=0.1234 output=1", "invalid price"),
    ("openai gpt-5 - simple tools input=0.1", "needs input= and output="),
    ("open ai", "expected PROVIDER MODEL"),
    ("openai gpt-5 openai/gpt-5 simple tools\n"
     "openai gpt-5 openai/gpt-5 complex tools", "duplicate model"),
])
def test_bad_map(tool, tmp_path, old_out, line, words):
    mp = tmp_path / "m.map"
    mp.write_text(line + "\n")
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "fetch", "--source", src, "--map", mp, "--out", old_out)
    assert_kept(p, old_out, EMAP, words, "m.map:")


def test_nginx_test_failure_restores_old_file(tool, tmp_path, old_out):
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", old_out,
            "--nginx-test", "false", "--reload", "touch %s/r" % tmp_path)
    assert_kept(p, old_out, ENGINX_TEST, "restored")
    assert not (tmp_path / "r").exists()
    # no previous file: the new one is removed again
    fresh = tmp_path / "fresh.conf"
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", fresh,
            "--nginx-test", "false")
    assert p.returncode == ENGINX_TEST and not fresh.exists()


def test_reload_failure(tool, tmp_path, old_out):
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", old_out,
            "--nginx-test", "true", "--reload", "exit 3")
    assert p.returncode == ERELOAD, p.err
    assert "llmroute_model" in old_out.read_text()   # new file kept


def test_unwritable_directory(tool, tmp_path):
    if os.geteuid() == 0:
        out = "/proc/llmroute-catalog-test/models.conf"
    else:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        out = d / "models.conf"
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "fetch", "--source", src, "--map", MAP, "--out", out)
    assert p.returncode == EWRITE, p.err
    assert "cannot create a temporary file" in p.err


def test_usage_errors(tool):
    assert run(tool).returncode == EUSAGE
    assert run(tool, "frobnicate").returncode == EUSAGE
    assert run(tool, "fetch", "--source", "x").returncode == EUSAGE
    p = run(tool, "fetch", "--timeout", "soon")
    assert p.returncode == EUSAGE and "invalid value" in p.err


# --------------------------------------------------------------------- TLS

@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out",
                    str(d / "cert.pem")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_verification_failure(tool, server, cert, old_out):
    s = server({"/m": (200, GOOD, 0)}, tls=cert)
    url = s.url("/m", host="localhost", scheme="https")
    p = run(tool, "fetch", "--source", url, "--map", MAP, "--out", old_out)
    assert_kept(p, old_out, ETLS, "TLS failure")
    # the same server, trusted with --cacert
    p = run(tool, "fetch", "--source", url, "--map", MAP, "--out", old_out,
            "--cacert", cert[0])
    assert p.returncode == OK, p.err


# ------------------------------------------------------------------- Redis

class Redis:
    def __init__(self, tmp_path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port(self.port, 10, self.proc), "redis did not start"
        self.addr = "127.0.0.1:%d" % self.port

    def cmd(self, *args):
        """One command over RESP; returns the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            req = b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode() if isinstance(a, str) else a
                req += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(req)
            f = s.makefile("rb")
            return self._read(f)

    def _read(self, f):
        line = f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode()
        if t == b"*":
            return [self._read(f) for _ in range(int(rest))]
        raise ValueError(line)

    def hgetall(self, key):
        r = self.cmd("HGETALL", key)
        return dict(zip(r[::2], r[1::2]))

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path)
    yield r
    r.close()


def test_publish_prices(tool, tmp_path, redis):
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "publish", "--source", src, "--map", MAP,
            "--redis", redis.addr)
    assert p.returncode == OK, p.err
    assert "published 31 prices" in p.out
    h = redis.hgetall("{llmroute}:price:openai/gpt-4.1-mini")
    assert (h["input"], h["output"], h["cached_input"]) == \
        ("0.40", "1.60", "0.10")
    assert h["context"] == "1047576" and h["tier"] == "moderate"
    assert h["source"] == "openai/gpt-4.1-mini"
    # without a cached price the hash carries the input price
    h = redis.hgetall("{llmroute}:price:anthropic/claude-haiku-4-5")
    assert h["cached_input"] == h["input"] == "1.00"
    members = redis.cmd("SMEMBERS", "{llmroute}:prices")
    assert len(members) == 31 and "gemini/gemini-2.5-pro" in members
    assert redis.cmd("GET", "{llmroute}:prices:version") == "1"
    # republish with a smaller map: stale hashes go, the version moves
    mp = tmp_path / "small.map"
    mp.write_text("openai gpt-5 openai/gpt-5 complex tools,json,vision\n")
    p = run(tool, "publish", "--source", src, "--map", mp,
            "--redis", redis.addr)
    assert p.returncode == OK, p.err
    assert redis.cmd("SMEMBERS", "{llmroute}:prices") == ["openai/gpt-5"]
    assert redis.cmd("EXISTS", "{llmroute}:price:openai/gpt-4.1-mini") == 0
    assert redis.cmd("GET", "{llmroute}:prices:version") == "2"
    # one hash tag: every key in one Redis Cluster slot
    keys = redis.cmd("KEYS", "*")
    assert keys and all(k.startswith("{llmroute}:") for k in keys), keys


def test_publish_custom_prefix_and_redis_down(tool, tmp_path, redis):
    src = tmp_path / "l.json"
    src.write_bytes(GOOD)
    p = run(tool, "publish", "--source", src, "--map", MAP,
            "--redis", redis.addr, "--prefix", "{gw-eu}:")
    assert p.returncode == OK, p.err
    assert redis.hgetall("{gw-eu}:price:openai/gpt-5")["output"] == "10.00"
    p = run(tool, "publish", "--source", src, "--map", MAP,
            "--redis", redis.addr, "--prefix", "plain:")
    assert p.returncode == OK and "no {hash tag}" in p.err
    p = run(tool, "publish", "--source", src, "--map", MAP,
            "--redis", "127.0.0.1:%d" % free_port())
    assert p.returncode == EREDIS and "cannot connect" in p.err


# ------------------------------------------------------------------- probe

def probe_config(tmp_path, s):
    conf = tmp_path / "providers.conf"
    conf.write_text("""
# probe reads llmroute_provider lines and upstream{} blocks of this file
upstream pool.example {
    server 127.0.0.1:%(port)d;     # the URL below names this upstream
    keepalive 4;
}
llmroute_provider up   http://127.0.0.1:%(port)d/up/v1/chat/completions
                  key_env=PROBE_KEY regions=us;
llmroute_provider pooled http://pool.example/pooled/v1/chat/completions;
llmroute_provider err  http://127.0.0.1:%(port)d/err/v1/chat/completions;
llmroute_provider slow http://127.0.0.1:%(port)d/slow/v1/chat/completions;
llmroute_provider slow2 http://127.0.0.1:%(port)d/slow2/v1/chat/completions;
llmroute_provider auth http://127.0.0.1:%(port)d/auth/v1/chat/completions;
llmroute_provider gone http://127.0.0.1:%(dead)d/v1/chat/completions;
""" % {"port": s.port, "dead": free_port()})
    return conf


PROBE_ROUTES = {
    "/up/v1/models": (200, b'{"data":[]}', 0),
    "/pooled/v1/models": (200, b'{"data":[]}', 0),
    "/err/v1/models": (503, b"{}", 0),
    "/slow/v1/models": (200, b"{}", 4),
    "/slow2/v1/models": (200, b"{}", 4),
    "/auth/v1/models": (401, b"{}", 0),
}


def probe_states(out):
    rows = {}
    for line in out.splitlines()[1:]:
        f = line.split(None, 4)
        rows[f[0]] = (f[1], int(f[2]), int(f[3]), f[4] if len(f) > 4 else "")
    return rows


def test_probe_parallel_with_timeouts(tool, tmp_path, server):
    s = server(PROBE_ROUTES)
    conf = probe_config(tmp_path, s)
    p = run(tool, "probe", "--config", conf, "--timeout", "1",
            env={"PROBE_KEY": "sk-probe-123"})
    assert p.returncode == EPROBE, p.err
    rows = probe_states(p.out)
    assert rows["up"][:2] == ("up", 200)
    assert rows["pooled"][:2] == ("up", 200)         # via upstream{}
    assert rows["err"][:2] == ("down", 503)
    assert rows["slow"][0] == "down" and "timeout" in rows["slow"][3]
    assert rows["slow2"][0] == "down"
    assert rows["auth"][:2] == ("auth", 401)
    assert rows["gone"][0] == "down" and "connect" in rows["gone"][3]
    # two 1 s timeouts in parallel, not one after the other
    assert p.elapsed < 1.9, p.elapsed
    auth = [h for path, h in s.requests if path == "/up/v1/models"][0]
    assert auth.get("Authorization") == "Bearer sk-probe-123"


def test_probe_all_up(tool, tmp_path, server):
    s = server(PROBE_ROUTES)
    conf = tmp_path / "p.conf"
    conf.write_text("llmroute_provider up http://127.0.0.1:%d/up/v1/chat/"
                    "completions;\n" % s.port)
    p = run(tool, "probe", "--config", conf)
    assert p.returncode == OK, p.out + p.err
    assert probe_states(p.out)["up"][0] == "up"


def test_probe_publishes_health(tool, tmp_path, server, redis):
    s = server(PROBE_ROUTES)
    conf = probe_config(tmp_path, s)
    p = run(tool, "probe", "--config", conf, "--timeout", "1",
            "--redis", redis.addr, "--ttl", "60")
    assert p.returncode == EPROBE, p.err
    h = redis.hgetall("{llmroute}:health:up")
    assert h["state"] == "up" and h["http_code"] == "200"
    assert int(h["latency_ms"]) >= 0 and int(h["checked_at"]) > 0
    h = redis.hgetall("{llmroute}:health:slow")
    assert h["state"] == "down" and "timeout" in h["error"]
    assert 0 < redis.cmd("TTL", "{llmroute}:health:err") <= 60
