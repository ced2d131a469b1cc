"""Small test harness for ngx_http_llmroute_module, in the spirit of
nginx-tests' Test::Nginx: a private nginx prefix per test, the module loaded
with load_module, plain HTTP helpers built on http.client / sockets.

Environment:
    NGINX_BINARY      nginx to run (default /usr/sbin/nginx)
    LLMROUTE_MODULE   module .so (default build/ngx_http_llmroute_module.so,
                      relative paths are taken from the repository root)
Prefix dirs live under pytest's tmp_path (pytest keeps the last 3 runs).
"""

import http.client
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NGINX_BINARY = os.environ.get("NGINX_BINARY", "/usr/sbin/nginx")
MODULE_PATH = (REPO_ROOT / os.environ.get(
    "LLMROUTE_MODULE", "build/ngx_http_llmroute_module.so")).resolve()

ALERT_RE = re.compile(r"^.*\[(alert|crit|emerg)\].*$", re.M)

# ports handed out in this process; never hand out the same one twice
_ports_lock = threading.Lock()
_ports_used = set()


def free_port():
    """A TCP port on 127.0.0.1 that is free now and not handed out before."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_used:
                _ports_used.add(port)
                return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def expand(template, values):
    """Replace %%NAME%% placeholders; fail on any left over."""
    def sub(m):
        if m.group(1) not in values:
            raise KeyError("config placeholder %%%%%s%%%% has no value"
                           % m.group(1))
        return str(values[m.group(1)])
    return re.sub(r"%%([A-Za-z0-9_]+)%%", sub, template)


class Nginx:
    """One nginx instance with a private prefix.

    http_config is the body of the http{} block; %%PORT%% is the port this
    instance listens on (self.port), other %%NAME%% come from `vars`.
    env_vars {NAME: value} become `env NAME;` lines and are set in the
    environment of every nginx process started (check/start/reload).
    module=None leaves out load_module (plain nginx, for harness tests).
    """

    def __init__(self, prefix, http_config, *, vars=None, env_vars=None,
                 worker_processes=2, main_config="", module=MODULE_PATH):
        self.prefix = Path(prefix).resolve()
        self.port = free_port()
        self.env_vars = dict(env_vars or {})
        self.worker_processes = worker_processes
        self.proc = None
        self.module = module            # None: plain nginx (harness tests)
        self.allow_alerts = False
        for d in ("logs", "tmp"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        self.conf_path = self.prefix / "nginx.conf"
        self.error_log_path = self.prefix / "logs" / "error.log"
        self.access_log_path = self.prefix / "logs" / "access.log"
        self.main_config = main_config
        self.write_config(http_config, vars)

    def write_config(self, http_config, values=None):
        """(Re)write nginx.conf, e.g. before reload()."""
        values = dict(values or {}, PORT=self.port)
        main_config = self.main_config
        envs = "".join("env %s;\n" % n for n in self.env_vars)
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = (
            ("load_module %s;\n" % self.module if self.module else "")
            + user
            + "daemon off;\nmaster_process on;\n"
            + "worker_processes %d;\n" % self.worker_processes
            + "worker_shutdown_timeout 5s;\n"
            + "pid logs/nginx.pid;\nerror_log logs/error.log info;\n"
            + envs + expand(main_config, values) + "\n"
            + "events { worker_connections 1024; }\n\n"
            + "http {\n"
            + "    client_body_temp_path tmp/client_body;\n"
            + "    proxy_temp_path tmp/proxy;\n"
            + "    fastcgi_temp_path tmp/fastcgi;\n"
            + "    uwsgi_temp_path tmp/uwsgi;\n"
            + "    scgi_temp_path tmp/scgi;\n"
            + "    access_log logs/access.log;\n\n"
            + expand(http_config, values) + "\n}\n")
        self.conf_path.write_text(conf)
        self.conf_text = conf

    def conf_line_of(self, needle):
        """1-based line number of the first nginx.conf line containing
        needle (used to check `file:line` in error messages)."""
        for no, line in enumerate(self.conf_text.splitlines(), 1):
            if needle in line:
                return no
        raise ValueError("%r not in nginx.conf" % needle)

    def _env(self):
        env = dict(os.environ)
        env.update(self.env_vars)
        return env

    def _cmd(self, *extra, errlog=None):
        return [NGINX_BINARY, "-p", str(self.prefix) + "/",
                "-c", str(self.conf_path),
                "-e", errlog or str(self.error_log_path), *extra]

    def check(self):
        """`nginx -t`: returns (returncode, stderr text).  Startup errors go
        to stderr only, so the instance's error.log stays clean."""
        p = subprocess.run(self._cmd("-t", errlog="stderr"), env=self._env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        return p.returncode, p.stderr.decode(errors="replace")

    def start(self, timeout=10.0):
        assert self.proc is None, "already started"
        self.proc = subprocess.Popen(
            self._cmd(), env=self._env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not wait_port(self.port, timeout, self.proc):
            out = b""
            if self.proc.poll() is None:
                self.proc.kill()
            out = self.proc.communicate()[0]
            self.proc = None
            raise RuntimeError("nginx did not start:\n%s\n%s" % (
                out.decode(errors="replace"), self.error_log()))
        self.wait_workers(set(), timeout)
        return self

    def worker_pids(self):
        """pids of the master's children that are worker processes."""
        if self.proc is None:
            return set()
        pids = set()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = open("/proc/%s/stat" % d).read()
                cmd = open("/proc/%s/cmdline" % d, "rb").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"worker process" in cmd:
                pids.add(int(d))
        return pids

    def wait_workers(self, old, timeout=10.0):
        """Wait until worker_processes workers not in `old` run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids() - old) >= self.worker_processes:
                return True
            time.sleep(0.05)
        return False

    def reload(self, timeout=10.0, sighup=False):
        """`nginx -s reload` (or, with sighup=True, SIGHUP straight to the
        master, skipping the signaller's own config parse).  True once new
        workers are up and the old ones have exited; False if no new
        workers came (bad config)."""
        old = self.worker_pids()
        if sighup:
            self.proc.send_signal(signal.SIGHUP)
        else:
            p = subprocess.run(self._cmd("-s", "reload", errlog="stderr"),
                               env=self._env(),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            if p.returncode != 0:
                return False
        if not self.wait_workers(old, timeout):
            return False
        deadline = time.monotonic() + timeout
        while self.worker_pids() & old and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5),
                          (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        self.output = self.proc.communicate()[0].decode(errors="replace")
        self.proc = None

    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        try:
            return self.access_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def json_log(self, name, n=1, timeout=5.0):
        """The JSON lines of logs/NAME (an access_log with escape=json),
        once there are n of them: nginx writes a line just after the
        response, so a test waits for it."""
        path = self.prefix / "logs" / name
        deadline = time.time() + timeout
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= n or time.time() > deadline:
                return [json.loads(x) for x in lines]
            time.sleep(0.05)

    def alerts(self):
        """[alert]/[crit]/[emerg] lines in error.log."""
        return [m.group(0) for m in ALERT_RE.finditer(self.error_log())]


# ---------------------------------------------------------------- HTTP client

class Headers:
    """Lookups over self.headers (a list of (name, value)) and self.body,
    shared by what clients receive and what mock providers record."""

    def header(self, name):
        """First value of header `name` (case-insensitive) or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


class Response(Headers):
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value), wire order
        self.body = body

    def text(self):
        """Status line, headers and body as one string (for leak checks)."""
        return "%d %s\n%s\n\n%s" % (
            self.status, self.reason,
            "\n".join("%s: %s" % h for h in self.headers),
            self.body.decode("utf-8", "replace"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers,
                                         self.body[:300])


def _from_httpresponse(r, body=None):
    if body is None:
        body = r.read()
    return Response(r.status, r.reason, list(r.getheaders()), body)


def _encode_body(body):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def request(port, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection; body may be bytes, str or an
    object (JSON-encoded).  Returns a Response."""
    body = _encode_body(body)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=dict(headers or {}))
        return _from_httpresponse(c.getresponse())
    finally:
        c.close()


def get(port, path, headers=None, timeout=30):
    return request(port, "GET", path, None, headers, timeout)


def post_json(port, path, obj_or_bytes, headers=None, timeout=30):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return request(port, "POST", path, obj_or_bytes, h, timeout)


def raw_request(port, data, *, pieces=1, delay=0.0, timeout=30,
                method="POST"):
    """Send raw bytes (e.g. a malformed request) in TCP writes `delay`
    seconds apart: `data` split into `pieces` equal parts, or `data` given
    as a list of parts.  The response is parsed with http.client."""
    if isinstance(data, bytes):
        step = max(1, -(-len(data) // pieces))
        data = [data[i:i + step] for i in range(0, len(data), step)]
    s = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for part in data:
                s.sendall(part)
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass            # nginx answered early (e.g. 413); read it
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        return _from_httpresponse(r)
    finally:
        s.close()


def raw_exchange(port, data, timeout=10):
    """Send raw bytes, return everything received until the peer closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def request_head(path, headers=None, method="POST", length=None):
    """Request line and headers of an HTTP/1.1 request: Content-Length
    when `length` is given, else Transfer-Encoding: chunked."""
    h = [("Host", "localhost"), ("Content-Type", "application/json"),
         ("Connection", "close")]
    h += list((headers or {}).items())
    if length is None:
        h.append(("Transfer-Encoding", "chunked"))
    else:
        h.append(("Content-Length", str(length)))
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    return (head + "".join("%s: %s\r\n" % kv for kv in h) + "\r\n").encode()


def stream_then_leave(port, path, body, headers, events):
    """POST a streamed request over a raw socket, read until `events` SSE
    "data: " lines arrived, then close: a client that goes away mid-stream.
    Returns the bytes read."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    try:
        s.sendall(request_head(path, headers, length=len(body)) + body)
        got = b""
        while got.count(b"data: ") < events:
            data = s.recv(4096)
            assert data, got
            got += data
        return got
    finally:
        s.close()


def chunk(data):
    """One HTTP/1.1 chunk (b"" gives the last-chunk marker)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"


def build_request(path, body, headers=None, method="POST"):
    """Bytes of an HTTP/1.1 request with Content-Length."""
    return request_head(path, headers, method, len(body)) + body


def post_chunked(port, path, chunks, headers=None, delay=0.05, timeout=30):
    """POST with Transfer-Encoding: chunked, one TCP write (and one HTTP
    chunk) per element of `chunks`, `delay` seconds apart."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.sendall(request_head(path, headers))
            for c in chunks:
                time.sleep(delay)
                s.sendall(chunk(c))
            s.sendall(chunk(b""))
        except (BrokenPipeError, ConnectionResetError):
            pass            # nginx answered early (e.g. 413); read it
        r = http.client.HTTPResponse(s, method="POST")
        r.begin()
        return _from_httpresponse(r)
    finally:
        s.close()


class StreamResult:
    def __init__(self):
        self.status = None
        self.headers = []
        self.t_headers = None
        self.incomplete = False   # connection ended mid-body
        self.chunks = []      # (seconds since request sent, bytes) as read
        self.events = []      # (seconds, event text) per complete SSE event

    header = Response.header

    @property
    def body(self):
        return b"".join(c for _, c in self.chunks)

    def data_events(self):
        """`data:` payloads of the SSE events, in order."""
        out = []
        for _, ev in self.events:
            for line in ev.splitlines():
                if line.startswith("data:"):
                    out.append(line[5:].strip())
        return out


def stream_post(port, path, obj_or_bytes, headers=None, timeout=30):
    """POST and read the response as it arrives, recording when each piece
    and each complete SSE event arrived (seconds after the request)."""
    body = _encode_body(obj_or_bytes)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    res = StreamResult()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        t0 = time.monotonic()
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        res.t_headers = time.monotonic() - t0
        res.status, res.headers = r.status, list(r.getheaders())
        buf = b""
        while True:
            try:
                data = r.read1(65536)
            except (http.client.IncompleteRead, ConnectionError):
                res.incomplete = True
                break
            if not data:
                break
            t = time.monotonic() - t0
            res.chunks.append((t, data))
            buf += data.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                res.events.append((t, ev.decode("utf-8", "replace")))
        return res
    finally:
        c.close()


# ---------------------------------------------------------- JSON body helpers

def top_level_spans(body):
    """{key: (value_start, value_end)} byte offsets of the top-level members
    of a JSON object given as bytes (UTF-8), found with the stdlib decoder
    so the offsets are exact."""
    text = body.decode("utf-8")
    dec = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    assert text[i] == "{", "not a JSON object"
    i = ws.match(text, i + 1).end()
    spans = {}
    if text[i] == "}":
        return spans
    while True:
        key, i = dec.raw_decode(text, i)
        i = ws.match(text, i).end()
        assert text[i] == ":"
        i = ws.match(text, i + 1).end()
        _, end = dec.raw_decode(text, i)
        # char offsets -> byte offsets
        spans[key] = (len(text[:i].encode()), len(text[:end].encode()))
        i = ws.match(text, end).end()
        if text[i] == "}":
            return spans
        assert text[i] == ","
        i = ws.match(text, i + 1).end()


def with_model(body, model):
    """The client body with only the top-level "model" value replaced by
    the JSON string `model` -- what the provider must receive."""
    start, end = top_level_spans(body)["model"]
    return body[:start] + json.dumps(model).encode() + body[end:]


# ------------------------------------------------------------- test helpers

KEY_A = "sk-test-a-3f9c2e71d0b84a56"
KEY_B = "sk-test-b-8e1d4c07a9f2b335"
# the secret client keys are hashed with (llmroute_client_hash): in
# nginx's environment like the provider keys, and never in a log either
CLIENT_SECRET = "test-client-hash-secret-5d1f0b9e"
KEYS = {"TEST_KEY_A": KEY_A, "TEST_KEY_B": KEY_B,
        "TEST_CLIENT_SECRET": CLIENT_SECRET}
CHAT = "/v1/chat/completions"

# The catalog of the brief; %%CHEAP_URL%% / %%PREMIUM_URL%% are the mocks.
CATALOG = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A regions=us,eu;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   small-1  tier=simple   input=0.10 output=0.40 cached_input=0.01 context=16k json;
    llmroute_model premium mid-1    tier=moderate input=1.00 output=4.00 context=128k tools json vision;
    llmroute_model premium big-1    tier=complex  input=3.00 output=15.00 context=200k tools json vision;
"""

SERVER = """
    server {
        listen 127.0.0.1:%%PORT%%;
        %%SERVER_EXTRA%%
        location /v1/chat/completions {
            llmroute on;
            llmroute_region $http_x_region;
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
            proxy_buffering off;
            %%LOCATION_EXTRA%%
        }
        location = /v1/models { llmroute_models; }
    }
"""


def client_id(value, secret=CLIENT_SECRET):
    """The name a client key has in the zone and in Redis: hex of the
    first 16 bytes of HMAC-SHA256(secret, key)."""
    return hmac.new(secret.encode(), value.encode(),
                    hashlib.sha256).hexdigest()[:32]


def chat_body(content="what is 2+2?", model="auto", **extra):
    """A chat.completions request body (bytes); model=None leaves the
    "model" member out."""
    obj = {"model": model,
           "messages": [{"role": "user", "content": content}]}
    if model is None:
        del obj["model"]
    obj.update(extra)
    return json.dumps(obj).encode()


def assert_no_keys(resp):
    """Provider keys must never reach a client."""
    text = resp.text() if isinstance(resp, Response) else str(resp)
    assert KEY_A not in text and KEY_B not in text, text[:2000]
    assert "sk-test-" not in text, text[:2000]


def assert_error(resp, status, code):
    """An OpenAI-style error from the module:
    {"error":{"message","type","param","code"}}, application/json.
    `code` may be a tuple of acceptable codes."""
    assert resp.status == status, resp
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
    assert ctype == "application/json", resp
    doc = resp.json()
    assert list(doc) == ["error"], doc
    err = doc["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    codes = code if isinstance(code, tuple) else (code,)
    assert err["code"] in codes, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert_no_keys(resp)
    return err


def assert_routed(resp, provider, model, tier=None, attempts="1"):
    """200 from the provider with the module's X-LLMRoute-* headers."""
    assert resp.status == 200, resp
    assert resp.header("X-LLMRoute-Provider") == provider, resp.headers
    assert resp.header("X-LLMRoute-Model") == model, resp.headers
    if tier is not None:
        assert resp.header("X-LLMRoute-Tier") == tier, resp.headers
    if attempts is not None:
        assert resp.header("X-LLMRoute-Attempts") == attempts, resp.headers
    assert_no_keys(resp)
