#!/usr/bin/env python3
"""Capture the real request bodies that coding-agent CLIs send.

Starts a local mock of the Anthropic Messages API and of an OpenAI-compatible
chat-completions API (stdlib http.server on 127.0.0.1, a free port), runs the
pinned CLIs from t/node against it with a throwaway HOME and cwd, and saves
every request (method, path, headers, body verbatim) under the output
directory (default build/corpus/scaffold/<cli>/NNN.json, the body byte for
byte in NNN.body).

The mock answers the first agent request that carries tools with one call of
a harmless read-only tool (Glob / list / glob), so the CLI runs the tool and
sends the tool-result turn; that turn is captured too.  Every other request
gets a short text answer so the CLI completes.

The captured text is the CLI vendor's prompt: it stays in build/, never in
the repository.  Exits non-zero, loudly, when a CLI could not be captured.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "t", "node", "node_modules", ".bin")

# read-only tools the mock may call, by preference, per CLI naming
SAFE_TOOLS = ("Glob", "glob", "LS", "list", "Read", "read")


class Store:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.n = 0
        self.tool_called = False
        os.makedirs(out, exist_ok=True)

    def save(self, method, path, headers, raw):
        with self.lock:
            self.n += 1
            n = self.n
        try:
            body = json.loads(raw) if raw else None
            kind = "json"
        except ValueError:
            body = raw.decode("utf-8", "replace")
            kind = "text"
        rec = {"method": method, "path": path, "headers": dict(headers),
               "body_kind": kind, "body_bytes": len(raw), "body": body}
        with open(os.path.join(self.out, "%03d.json" % n), "w") as f:
            json.dump(rec, f, ensure_ascii=False, indent=1)
        # and the body byte for byte, as the CLI sent it
        with open(os.path.join(self.out, "%03d.body" % n), "wb") as f:
            f.write(raw)
        return body


def pick_tool(names):
    for t in SAFE_TOOLS:
        if t in names:
            return t
    return None


# a value for each parameter name these read-only tools use; only the names
# the tool's own schema declares are sent
ARG_VALUES = {"pattern": "**/*.py", "file_path": "hello.py",
              "filePath": "hello.py", "path": "."}


def tool_input(name, schema):
    props = (schema or {}).get("properties") or {}
    req = (schema or {}).get("required") or []
    args = {k: v for k, v in ARG_VALUES.items() if k in props}
    if name in ("Glob", "glob") and "path" in args and "path" not in req:
        del args["path"]
    return args


def has_tool_result_anthropic(msgs):
    for m in msgs or []:
        c = m.get("content")
        if isinstance(c, list):
            for b in c:
                if isinstance(b, dict) and b.get("type") == "tool_result":
                    return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, ctype, data, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, obj, code=200):
        self._send(code, "application/json", json.dumps(obj).encode())

    def _sse(self, events):
        data = "".join(events).encode()
        self._send(200, "text/event-stream", data,
                   {"Cache-Control": "no-cache"})

    def do_GET(self):
        self.store.save("GET", self.path, self.headers, b"")
        p = self.path.split("?")[0]
        if p.endswith("/models"):
            self._json({"object": "list", "data": [
                {"id": "mock-model", "object": "model", "type": "model",
                 "display_name": "mock-model", "created_at":
                 "2025-01-01T00:00:00Z", "owned_by": "mock"}],
                "has_more": False, "first_id": "mock-model",
                "last_id": "mock-model"})
        else:
            self._json({"error": {"type": "not_found_error",
                                  "message": "not found"}}, 404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        body = self.store.save("POST", self.path, self.headers, raw)
        p = self.path.split("?")[0]
        if not isinstance(body, dict):
            body = {}
        if p.endswith("/messages/count_tokens"):
            self._json({"input_tokens": max(1, len(raw) // 4)})
        elif p.endswith("/messages"):
            self.anthropic(body)
        elif p.endswith("/chat/completions"):
            self.openai(body)
        else:
            self._json({"error": {"type": "not_found_error",
                                  "message": "not found"}}, 404)

    # one tool call per CLI run, on the first request that offers a safe tool
    def want_tool(self, names, already):
        if already:
            return None
        st = self.store
        with st.lock:
            if st.tool_called:
                return None
            t = pick_tool(names)
            if t:
                st.tool_called = True
            return t

    def anthropic(self, body):
        schemas = {t.get("name"): t.get("input_schema")
                   for t in body.get("tools") or []}
        tool = self.want_tool(list(schemas), has_tool_result_anthropic(
            body.get("messages")))
        model = body.get("model", "mock-model")
        usage = {"input_tokens": 12, "output_tokens": 1,
                 "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        if tool:
            block = {"type": "tool_use", "id": "toolu_mock_0001",
                     "name": tool,
                     "input": tool_input(tool, schemas[tool])}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": "Hello! How can I help?"}
            stop = "end_turn"
        msg = {"id": "msg_mock_0001", "type": "message", "role": "assistant",
               "model": model, "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            msg["content"] = [block]
            msg["stop_reason"] = stop
            self._json(msg)
            return

        def ev(name, obj):
            return "event: %s\ndata: %s\n\n" % (name, json.dumps(obj))
        out = [ev("message_start", {"type": "message_start", "message": msg})]
        if tool:
            start = dict(block, input={})
            out.append(ev("content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": start}))
            out.append(ev("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta",
                          "partial_json": json.dumps(block["input"])}}))
        else:
            out.append(ev("content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}))
            out.append(ev("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": block["text"]}}))
        out.append(ev("content_block_stop",
                      {"type": "content_block_stop", "index": 0}))
        out.append(ev("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 8}}))
        out.append(ev("message_stop", {"type": "message_stop"}))
        self._sse(out)

    def openai(self, body):
        schemas = {(t.get("function") or {}).get("name"):
                   (t.get("function") or {}).get("parameters")
                   for t in body.get("tools") or []}
        done = any(m.get("role") == "tool" for m in body.get("messages") or [])
        tool = self.want_tool(list(schemas), done)
        model = body.get("model", "mock-model")
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}
        usage = {"prompt_tokens": 12, "completion_tokens": 8,
                 "total_tokens": 20}
        if tool:
            call = {"index": 0, "id": "call_mock_0001", "type": "function",
                    "function": {"name": tool,
                                 "arguments": json.dumps(
                                     tool_input(tool, schemas[tool]))}}
            finish = "tool_calls"
        else:
            text = "Hello! How can I help?"
            finish = "stop"
        if not body.get("stream"):
            m = {"role": "assistant", "content": None if tool else text}
            if tool:
                c = dict(call)
                del c["index"]
                m["tool_calls"] = [c]
            self._json(dict(base, object="chat.completion", choices=[
                {"index": 0, "message": m, "finish_reason": finish}],
                usage=usage))
            return
        out = []

        def chunk(delta, fin=None, **extra):
            c = dict(base, choices=[{"index": 0, "delta": delta,
                                     "finish_reason": fin}], **extra)
            out.append("data: %s\n\n" % json.dumps(c))
        chunk({"role": "assistant", "content": ""})
        if tool:
            chunk({"tool_calls": [call]})
        else:
            chunk({"content": text})
        chunk({}, finish)
        out.append("data: %s\n\n" % json.dumps(dict(base, choices=[],
                                                     usage=usage)))
        out.append("data: [DONE]\n\n")
        self._sse(out)


def serve(out):
    store = Store(out)
    handler = type("H", (Handler,), {"store": store})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, store


def run_cli(name, argv, env, cwd, timeout):
    print("capture: %s: %s" % (name, " ".join(argv)), file=sys.stderr)
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, timeout=timeout,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True)
    except subprocess.TimeoutExpired as e:
        return None, "timeout after %ss; stderr: %s" % (
            timeout, (e.stderr or b"")[-2000:])
    return p.returncode, (p.stdout[-1500:] + "\n" + p.stderr[-3000:])


def base_env(home):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1",
           "XDG_CONFIG_HOME": os.path.join(home, ".config"),
           "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
           "XDG_CACHE_HOME": os.path.join(home, ".cache"),
           "XDG_STATE_HOME": os.path.join(home, ".local", "state")}
    return env


def make_project(d):
    """A tiny project for the agent's cwd, so the tool call finds files."""
    with open(os.path.join(d, "hello.py"), "w") as f:
        f.write("def greet(name):\n    return 'hello ' + name\n")
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write("# demo\n")


def claude_setup(port, cwd, env):
    env.update({
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % port,
        "ANTHROPIC_API_KEY": "sk-client-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "CI": "1"})
    return [os.path.join(BIN, "claude"), "-p", "hello"]


def opencode_setup(port, cwd, env):
    """opencode takes a custom OpenAI-compatible provider from its config
    file (OPENCODE_CONFIG); the model is named provider/model."""
    cfg = {
        "$schema": "https://opencode.ai/config.json",
        "model": "mock/mock-model", "small_model": "mock/mock-model",
        "autoupdate": False, "share": "disabled",
        "provider": {"mock": {
            "npm": "@ai-sdk/openai-compatible", "name": "mock",
            "options": {"baseURL": "http://127.0.0.1:%d/v1" % port,
                        "apiKey": "sk-client-test"},
            "models": {"mock-model": {"name": "mock-model",
                                      "tool_call": True}}}}}
    cfgpath = os.path.join(cwd, "opencode.json")
    with open(cfgpath, "w") as f:
        json.dump(cfg, f)
    env.update({"OPENCODE_CONFIG": cfgpath,
                "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_MODELS_FETCH": "1",
                "OPENCODE_DISABLE_SHARE": "1"})
    return [os.path.join(BIN, "opencode"), "run", "hello"]


CLIS = {"claude-code": claude_setup, "opencode": opencode_setup}


def capture(name, out, timeout):
    """Run one CLI against a fresh mock in a throwaway HOME and project."""
    srv, store = serve(out)
    tmp = tempfile.mkdtemp(prefix="corpus-%s-" % name.split("-")[0])
    try:
        home = os.path.join(tmp, "home")
        cwd = os.path.join(tmp, "proj")
        os.makedirs(home)
        os.makedirs(cwd)
        make_project(cwd)
        env = base_env(home)
        argv = CLIS[name](srv.server_address[1], cwd, env)
        if not os.access(argv[0], os.X_OK):
            return None, "no executable %s (run scripts/deps.sh)" % argv[0], \
                store
        rc, log = run_cli(name, argv, env, cwd, timeout)
    finally:
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc, log, store


def agent_requests(out):
    """(file, body) of captured requests that carry a system prompt."""
    res = []
    for fn in sorted(f for f in os.listdir(out) if f.endswith(".json")):
        with open(os.path.join(out, fn)) as f:
            rec = json.load(f)
        b = rec.get("body")
        if isinstance(b, dict) and b.get("tools"):
            res.append((fn, rec))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default=os.path.join(
        ROOT, "build", "corpus", "scaffold"))
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--only", choices=("claude-code", "opencode"))
    a = ap.parse_args()
    failed = []
    for name in CLIS:
        if a.only and a.only != name:
            continue
        d = os.path.join(a.out, name)
        shutil.rmtree(d, ignore_errors=True)
        rc, log, store = capture(name, d, a.timeout)
        reqs = agent_requests(d)
        loop = any("tool_result" in json.dumps(r["body"]["messages"])
                   or '"role": "tool"' in json.dumps(r["body"]["messages"])
                   for _, r in reqs)
        print("capture: %s: exit %s, %d requests, %d with tools, tool loop %s"
              % (name, rc, store.n, len(reqs), "yes" if loop else "no"),
              file=sys.stderr)
        if not reqs:
            print("capture: %s FAILED, no agent request reached the mock; "
                  "CLI output:\n%s" % (name, log), file=sys.stderr)
            failed.append(name)
    if failed:
        sys.exit("capture: failed for %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
