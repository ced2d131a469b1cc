"""An OpenAI-compatible chat-completions provider for tests (stdlib only).

    mock = MockProvider("cheap")            # listens on its own free port
    mock.url                                # http://127.0.0.1:PORT/v1/chat/completions
    mock.script(["ok", {"mode": "status", "status": 429, "retry_after": "2"}])
    mock.default = {"mode": "ok", "content": "hi"}
    mock.requests, mock.last                # what nginx sent, byte-exact
    mock.responses                          # bodies the mock sent
    mock.close()

A behaviour is a mode name or a dict with "mode" and options:

    ok                 chat.completion JSON, or SSE when the body has
                       "stream": true (usage-only chunk when
                       stream_options.include_usage is true, then [DONE])
    status             status=N (429, 500, 503...) with an OpenAI error JSON;
                       retry_after="2" adds Retry-After
    delay              sleep `delay` seconds (default 5) before the headers,
                       then answer as ok
    reset              read the request, then close with RST (SO_LINGER 0)
    close              read the request, then close cleanly without answering
    reset_mid_stream   send headers and `reset_after` SSE events, then RST
    garbage            answer bytes that are not HTTP, then close

Options for every mode: delay (seconds before answering), content, usage
({prompt_tokens, completion_tokens, cached_tokens}), headers (extra response
headers), finish_reason, chunk_delay (seconds between SSE events), pieces
(list of content pieces for SSE), body (raw response body bytes), status,
gzip (a JSON answer is gzip-compressed when the request's Accept-Encoding
allows it, as real providers do),
split_at (a JSON answer's body goes out in two writes, 50 ms apart, cut
after this many bytes: nginx sees it in two buffers), ctype (Content-Type of
a raw body, e.g. text/event-stream for a hand-written stream).
"""

import gzip
import http.server
import json
import re
import socket
import struct
import threading
import time

from llmroute_harness import Headers, free_port

DEFAULTS = {
    "mode": "ok", "status": None, "delay": 0.0, "chunk_delay": 0.0,
    "content": None, "usage": None, "headers": None, "finish_reason": "stop",
    "retry_after": None, "pieces": None, "body": None, "reset_after": 2,
    "split_at": None, "ctype": "application/json", "gzip": False,
}


class Recorded(Headers):
    """One request as the provider received it."""

    def __init__(self, mock, method, path, version, headers, body, chunked):
        self.provider = mock.name
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers        # list of (name, value), original case
        self.body = body              # raw bytes (de-chunked if chunked)
        self.chunked = chunked
        self.time = time.monotonic()

    def __repr__(self):
        return "<Recorded %s %s %s %r>" % (self.provider, self.method,
                                            self.path, self.body[:200])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-provider/1"

    def log_message(self, fmt, *args):      # keep pytest output quiet
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body, True
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b"", False

    def _any(self):
        mock = self.server.mock
        body, chunked = self._read_body()
        rec = Recorded(mock, self.command, self.path, self.request_version,
                       list(self.headers.items()), body, chunked)
        b = mock._next_behaviour()
        with mock.lock:
            mock.requests.append(rec)
            mock.behaviours.append(b)
        if b["delay"] or b["mode"] == "delay":
            mock._sleep(b["delay"] or 5.0)
        getattr(self, "_mode_" + b["mode"])(b, rec)

    do_POST = do_GET = do_PUT = do_DELETE = _any

    # ------------------------------------------------------------ answers

    def _send(self, status, body, ctype="application/json", headers=None,
              split_at=None):
        self.server.mock._record_response(body)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if split_at:
            self.wfile.write(body[:split_at])
            self.wfile.flush()
            time.sleep(0.05)
            body = body[split_at:]
        self.wfile.write(body)

    def _reset(self):
        """Abort the connection: RST instead of FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.connection.close()
        self.rfile.close()
        self.close_connection = True

    def _mode_ok(self, b, rec):
        mock = self.server.mock
        try:
            req = json.loads(rec.body)
            assert isinstance(req, dict)
        except Exception:
            return self._send(400, error_json(
                "We could not parse the JSON body of your request.",
                "invalid_request_error", None))
        if rec.path.rstrip("/").endswith("/models") and rec.method == "GET":
            return self._send(200, b'{"object":"list","data":[]}')
        special = mock.special(rec, req)
        if special is not None:
            return self._send(200, special)
        if req.get("stream") is True and b["body"] is None:
            return self._stream(b, req)
        body = b["body"]
        if body is None:
            body = json.dumps(mock.completion(req, b)).encode()
        headers = dict(b["headers"] or {})
        if b["gzip"] and "gzip" in (rec.header("Accept-Encoding") or ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._send(b["status"] or 200, body, ctype=b["ctype"],
                   headers=headers, split_at=b["split_at"])

    _mode_delay = _mode_ok

    def _mode_status(self, b, rec):
        status = b["status"] or 500
        headers = dict(b["headers"] or {})
        if b["retry_after"] is not None:
            headers["Retry-After"] = str(b["retry_after"])
        body = b["body"]
        if body is None:
            kind = {429: ("Rate limit reached for requests", "requests",
                          "rate_limit_exceeded"),
                    401: ("Incorrect API key provided",
                          "invalid_request_error", "invalid_api_key")}.get(
                status, ("The server had an error while processing your "
                         "request.", "server_error", None))
            body = self.server.mock.error_body(status, kind)
        self._send(status, body, headers=headers)

    def _mode_reset(self, b, rec):
        self._reset()

    def _mode_close(self, b, rec):
        self.wfile.flush()
        self.close_connection = True

    def _mode_garbage(self, b, rec):
        self.wfile.write(b["body"] or b"\x00\x01 this is not HTTP at all\r\n\r\n")
        self.close_connection = True

    def _mode_reset_mid_stream(self, b, rec):
        try:
            req = json.loads(rec.body)
        except Exception:
            req = {}
        if req.get("stream") is True:
            return self._stream(b, req, reset_after=b["reset_after"])
        body = json.dumps(self.server.mock.completion(req, b)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2])
        self.wfile.flush()
        time.sleep(0.05)
        self._reset()

    def _stream(self, b, req, reset_after=None):
        mock = self.server.mock
        self.send_response(b["status"] or 200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (b["headers"] or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        sent = []
        for i, ev in enumerate(mock.sse_events(req, b)):
            if reset_after is not None and i >= reset_after:
                mock._record_response(b"".join(sent))
                return self._reset()
            if i and b["chunk_delay"]:
                mock._sleep(b["chunk_delay"])
            # an event with its "event:" line comes whole
            data = ev if ev.startswith(b"event:") else b"data: " + ev + b"\n\n"
            sent.append(data)
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                mock._record_response(b"".join(sent))
                return
        # record before the last chunk: the client may look right after it
        mock._record_response(b"".join(sent))
        self.wfile.write(b"0\r\n\r\n")


def error_json(message, type_, code, param=None):
    return json.dumps({"error": {"message": message, "type": type_,
                                 "param": param, "code": code}}).encode()


class _Server(http.server.ThreadingHTTPServer):
    # a gateway opens many connections at once: socketserver's backlog of 5
    # overflows and the kernel resets some of them
    request_queue_size = 128
    daemon_threads = True


class MockProvider:
    def __init__(self, name="mock", port=None):
        self.name = name
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.requests = []
        self.responses = []
        self.behaviours = []
        self.default = {"mode": "ok"}
        self._queue = []
        self._seq = 0
        self._closed = threading.Event()
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.mock = self
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="mock-" + name, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "http://%s/v1/chat/completions" % self.host

    @property
    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def script(self, behaviours):
        """Queue behaviours for the next requests; then `default`."""
        with self.lock:
            self._queue.extend(behaviours)

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.responses.clear()
            self.behaviours.clear()
            self._queue.clear()

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return True
            time.sleep(0.02)
        return False

    def close(self):
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ formats

    def error_body(self, status, kind):
        return error_json(*kind)

    def special(self, rec, req):
        """A body for a request that is not a completion, else None."""
        return None

    # ------------------------------------------------------------ internals

    def _next_behaviour(self):
        with self.lock:
            b = self._queue.pop(0) if self._queue else self.default
            self._seq += 1
        if isinstance(b, str):
            b = {"mode": b}
        out = dict(DEFAULTS)
        out.update(b)
        return out

    def _record_response(self, body):
        with self.lock:
            self.responses.append(body)

    def _sleep(self, seconds):
        self._closed.wait(seconds)

    def _usage(self, b):
        u = dict(b["usage"] or {})
        prompt = u.get("prompt_tokens", 12)
        completion = u.get("completion_tokens", 7)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": u.get("total_tokens", prompt + completion),
                "prompt_tokens_details": {
                    "cached_tokens": u.get("cached_tokens", 0)},
                "completion_tokens_details": {"reasoning_tokens": 0}}

    def _content(self, b):
        if b["content"] is not None:
            return b["content"]
        return "Hello from %s. This is a mock answer." % self.name

    def completion(self, req, b):
        """OpenAI chat.completion object for request `req`."""
        with self.lock:
            n = self._seq
        return {
            "id": "chatcmpl-%s-%d" % (self.name, n),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model"),
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self._content(b),
                            "refusal": None},
                "logprobs": None,
                "finish_reason": b["finish_reason"],
            }],
            "usage": self._usage(b),
        }

    def sse_events(self, req, b):
        """data: payloads (bytes) of a streamed answer, in order."""
        with self.lock:
            n = self._seq
        so = req.get("stream_options")
        usage = isinstance(so, dict) and so.get("include_usage") is True
        base = {"id": "chatcmpl-%s-%d" % (self.name, n),
                "object": "chat.completion.chunk",
                "created": int(time.time()), "model": req.get("model"),
                "system_fingerprint": "fp_mock"}

        def chunk(delta, finish=None, choices=True):
            c = dict(base)
            c["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}] if choices else []
            if usage:
                c["usage"] = None
            return json.dumps(c).encode()

        pieces = b["pieces"]
        if pieces is None:
            pieces = re.findall(r"\S+\s*", self._content(b))
        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": p}) for p in pieces]
        out.append(chunk({}, b["finish_reason"]))
        if usage:
            last = dict(base, choices=[], usage=self._usage(b))
            out.append(json.dumps(last).encode())
        out.append(b"[DONE]")
        return out


def close_all(mocks):
    """Close mock providers at once.  A mock's serve_forever() looks for
    shutdown every 0.5 s, so closing them one by one costs about a second a
    test; here they close in parallel, woken by a connection, and a later
    close() of the same mock returns at once."""
    threads = [threading.Thread(target=m.close) for m in mocks]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        for m in mocks:
            try:
                socket.create_connection(("127.0.0.1", m.port), 0.2).close()
            except OSError:
                pass
        time.sleep(0.02)
    for t in threads:
        t.join()
