#!/usr/bin/env python3
"""A local OpenAI-compatible chat-completions endpoint for demos.

It answers like a real provider (JSON, or SSE when "stream": true, with
`usage`, and the usage-only chunk when stream_options.include_usage is set),
so the gateway can be tried without any API key.  Stdlib only.

    demo_provider.py --port 9101 --name demo-cheap
"""
import argparse
import http.server
import json
import time
import uuid


def answer_text(name, model, messages):
    last = ""
    for m in messages or []:
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            last = c if isinstance(c, str) else json.dumps(c)
    words = len(last.split())
    return (f"[{name}/{model}] This is a demo answer to a {words}-word "
            f"prompt. Set real API keys to reach real providers.")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmroute-demo/1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {
                "message": "invalid JSON", "type": "invalid_request_error",
                "param": None, "code": None}})
        model = body.get("model", "demo")
        text = answer_text(self.server.name, model, body.get("messages"))
        prompt = max(1, len(raw) // 4)
        words = text.split(" ")
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words),
                 "total_tokens": prompt + len(words),
                 "prompt_tokens_details": {"cached_tokens": 0}}
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        now = int(time.time())
        if not body.get("stream"):
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": now,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant",
                                         "content": text}}],
                "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj):
            data = b"data: " + (obj if isinstance(obj, bytes)
                                else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        base = {"id": cid, "object": "chat.completion.chunk",
                "created": now, "model": model}
        for i, w in enumerate(words):
            delta = {"content": (w if i == 0 else " " + w)}
            if i == 0:
                delta["role"] = "assistant"
            event(dict(base, choices=[{"index": 0, "delta": delta,
                                       "finish_reason": None}]))
            time.sleep(self.server.delay)
        event(dict(base, choices=[{"index": 0, "delta": {},
                                   "finish_reason": "stop"}]))
        opts = body.get("stream_options") or {}
        if opts.get("include_usage"):
            event(dict(base, choices=[], usage=usage))
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="demo")
    ap.add_argument("--delay", type=float, default=0.02)
    args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.name = args.name
    srv.delay = args.delay
    srv.serve_forever()


if __name__ == "__main__":
    main()
