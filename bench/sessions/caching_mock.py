"""An OpenAI-compatible provider that caches prompts like the real ones.

Cached tokens of a request = the longest common prefix (in tokens, 4 bytes
a token) with a prompt the same provider and model saw within its TTL,
rounded down to 128-token blocks, and only from 1024 tokens up (OpenAI's
rule; Anthropic's is the same at these sizes).  The prompt is what a
provider renders: the tools, then the messages; the "model" member and
the routing hint "prompt_cache_key" are not part of it.  Usage reports it
as prompt_tokens_details.cached_tokens.  throttle(n, seconds) makes the
next n requests get what a provider at its rate limit answers: 429 with
Retry-After.  Standard library only.
"""

import hashlib
import http.server
import json
import threading
import time

TOKEN_BYTES = 4
BLOCK = 128
MIN_CACHED = 1024


def prompt_bytes(body):
    return json.dumps([body.get("tools"), body.get("messages")],
                      separators=(",", ":"), sort_keys=True).encode()


class PromptCache:
    """Per model, the prompts seen: a digest of every 128-token prefix of
    each, with when it was last seen.  The cached part of a new prompt is
    its longest block-aligned prefix seen within the TTL: the longest
    common prefix with some earlier prompt, in whole 128-token blocks."""

    def __init__(self, ttl):
        self.ttl = ttl
        self.lock = threading.Lock()
        self.seen = {}

    def lookup_and_store(self, model, prompt, now):
        step = BLOCK * TOKEN_BYTES
        h = hashlib.blake2b(model.encode(), digest_size=8)
        keys = []
        for off in range(0, len(prompt) - step + 1, step):
            h.update(prompt[off:off + step])
            keys.append(h.digest())
        blocks = 0
        with self.lock:
            for k in keys:
                t = self.seen.get(k)
                if t is None or now - t > self.ttl:
                    break
                blocks += 1
            for k in keys:
                self.seen[k] = now
        tokens = blocks * BLOCK
        return tokens if tokens >= MIN_CACHED else 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        mock = self.server.mock
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n))
        with mock.lock:
            throttled = mock.throttled > 0
            mock.throttled -= throttled
        if throttled:
            out = json.dumps({"error": {
                "message": "Rate limit reached", "type": "requests",
                "code": "rate_limit_exceeded"}}).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "%d" % mock.retry_after)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        prompt = prompt_bytes(body)
        model = body.get("model")
        cached = mock.cache.lookup_and_store(model, prompt, time.time())
        usage = {"prompt_tokens": len(prompt) // TOKEN_BYTES,
                 "completion_tokens": mock.completion_tokens,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        usage["total_tokens"] = (usage["prompt_tokens"]
                                 + usage["completion_tokens"])
        out = json.dumps({
            "id": "chatcmpl-%s" % mock.name, "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": "done"}}],
            "usage": usage}).encode()
        with mock.lock:
            mock.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class CachingProvider:
    def __init__(self, name, port, ttl=300.0, completion_tokens=200):
        self.name = name
        self.cache = PromptCache(ttl)
        self.completion_tokens = completion_tokens
        self.lock = threading.Lock()
        self.served = 0
        self.throttled = 0
        self.retry_after = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                                      _Handler)
        self.server.daemon_threads = True
        self.server.mock = self
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/v1/chat/completions" % self.port
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def reset(self):
        self.cache = PromptCache(self.cache.ttl)
        with self.lock:
            self.served = 0
            self.throttled = 0

    def throttle(self, n, seconds):
        """The next n requests: 429 with Retry-After: seconds."""
        with self.lock:
            self.throttled = n
            self.retry_after = seconds

    def close(self):
        self.server.shutdown()
        self.server.server_close()
