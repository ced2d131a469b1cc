"""An Anthropic Messages API provider for tests (stdlib only).

    mock = MockAnthropic("claude-cheap")     # POST /v1/messages
    mock.script([{"mode": "status", "status": 529}])

It is MockProvider (same modes, options and byte-exact recording) speaking
Anthropic's format: a JSON message, or with "stream": true the SSE events
message_start, content_block_start, ping, content_block_delta...,
content_block_stop, message_delta, message_stop, each with its "event:"
line; errors as {"type":"error","error":{"type":...,"message":...}} with
Anthropic's types (429 rate_limit_error, 529 overloaded_error ...);
POST /v1/messages/count_tokens answers {"input_tokens": N}.

usage option: {input_tokens, output_tokens, cache_read_input_tokens,
cache_creation_input_tokens}; finish_reason is the stop_reason
("end_turn" unless told); tool_use={"name":..., "input":{...}} answers with
a tool_use block.
"""

import json
import re

from mock_provider import MockProvider

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error",
    403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    529: "overloaded_error",
}


def anthropic_error(status, message=None):
    t = ERROR_TYPES.get(status, "api_error")
    return json.dumps({"type": "error", "error": {
        "type": t, "message": message or ("mock %s" % t)}}).encode()


class MockAnthropic(MockProvider):

    @property
    def url(self):
        return "http://%s/v1/messages" % self.host

    def error_body(self, status, kind):
        return anthropic_error(status)

    def special(self, rec, req):
        if rec.path.split("?")[0].endswith("/count_tokens"):
            return json.dumps({"input_tokens": 4242}).encode()
        return None

    def _stop(self, b):
        f = b["finish_reason"]
        return "end_turn" if f in (None, "stop") else f

    def _ausage(self, b):
        u = dict(b["usage"] or {})
        return {"input_tokens": u.get("input_tokens", 12),
                "cache_creation_input_tokens":
                    u.get("cache_creation_input_tokens", 0),
                "cache_read_input_tokens":
                    u.get("cache_read_input_tokens", 0),
                "output_tokens": u.get("output_tokens", 7)}

    def _blocks(self, b):
        out = []
        text = self._content(b)
        if text:
            out.append({"type": "text", "text": text})
        if b.get("tool_use"):
            out.append({"type": "tool_use", "id": "toolu_mock1",
                        "name": b["tool_use"]["name"],
                        "input": b["tool_use"]["input"]})
        return out

    def completion(self, req, b):
        with self.lock:
            n = self._seq
        return {"id": "msg_%s_%d" % (self.name, n), "type": "message",
                "role": "assistant", "model": req.get("model"),
                "content": self._blocks(b),
                "stop_reason": "tool_use" if b.get("tool_use")
                else self._stop(b),
                "stop_sequence": None, "usage": self._ausage(b)}

    def sse_events(self, req, b):
        with self.lock:
            n = self._seq
        usage = self._ausage(b)

        def ev(name, data):
            return ("event: %s\ndata: %s\n\n"
                    % (name, json.dumps(data))).encode()

        start_usage = dict(usage, output_tokens=1)
        out = [ev("message_start", {"type": "message_start", "message": {
            "id": "msg_%s_%d" % (self.name, n), "type": "message",
            "role": "assistant", "model": req.get("model"), "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": start_usage}})]
        idx = 0
        pieces = b["pieces"]
        if pieces is None:
            pieces = re.findall(r"\S+\s*", self._content(b))
        if pieces:
            out.append(ev("content_block_start", {
                "type": "content_block_start", "index": idx,
                "content_block": {"type": "text", "text": ""}}))
            out.append(ev("ping", {"type": "ping"}))
            for p in pieces:
                out.append(ev("content_block_delta", {
                    "type": "content_block_delta", "index": idx,
                    "delta": {"type": "text_delta", "text": p}}))
            out.append(ev("content_block_stop", {
                "type": "content_block_stop", "index": idx}))
            idx += 1
        stop = self._stop(b)
        if b.get("tool_use"):
            stop = "tool_use"
            out.append(ev("content_block_start", {
                "type": "content_block_start", "index": idx,
                "content_block": {"type": "tool_use", "id": "toolu_mock1",
                                  "name": b["tool_use"]["name"],
                                  "input": {}}}))
            out.append(ev("content_block_delta", {
                "type": "content_block_delta", "index": idx,
                "delta": {"type": "input_json_delta",
                          "partial_json": json.dumps(b["tool_use"]["input"])}}))
            out.append(ev("content_block_stop", {
                "type": "content_block_stop", "index": idx}))
        out.append(ev("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}}))
        out.append(ev("message_stop", {"type": "message_stop"}))
        return out
