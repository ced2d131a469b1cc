"""Wrap a conversation in a real agent's scaffolding, captured by capture.py.

Conversations come in a neutral chat-completions form (user/assistant
strings, assistant tool_calls with read_file/bash/grep/list_dir/edit_file,
tool results).  An Agent turns one into the request body the agent CLI would
send: in chat-completions shape (what the module classifies today) and in
native Anthropic Messages shape.  The captured system prompt, tool schemas
and injected blocks are used verbatim; only the throwaway working directory
of the capture is replaced by a project path.
"""

import copy
import json
import os
import re

SCAFFOLD_DIRS = ("claude-code", "opencode")

# neutral tool -> candidate agent tool names, in order of preference
TOOL_NAMES = {"read_file": ("Read", "read"), "bash": ("Bash", "bash"),
              "grep": ("Grep", "grep"), "list_dir": ("LS", "list", "Glob",
                                                     "glob"),
              "edit_file": ("Edit", "edit")}
# neutral argument -> agent parameter names
ARG_NAMES = {"path": ("file_path", "filePath", "path"),
             "old_string": ("old_string", "oldString"),
             "new_string": ("new_string", "newString"),
             "command": ("command",), "pattern": ("pattern",)}
TMPDIR = re.compile(r"/[^\s\"'\\]*/corpus-(claude|opencode)-[A-Za-z0-9_]+/proj")


def _records(d):
    out = []
    for fn in sorted(f for f in os.listdir(d) if f.endswith(".json")):
        with open(os.path.join(d, fn)) as f:
            out.append(json.load(f))
    return out


def _text(content):
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content
                   if isinstance(p, dict) and p.get("type") == "text")


class Agent:
    """The scaffolding of one CLI, from its captured first agent turn."""

    def __init__(self, name, d):
        self.name = name
        recs = [r for r in _records(d) if isinstance(r.get("body"), dict)
                and r["body"].get("tools")]
        if not recs:
            raise SystemExit("scaffold: no agent request captured in %s" % d)
        first = recs[0]
        # a utility call without tools (opencode's title request), if any
        self.utility = next((r["body"] for r in _records(d)
                             if isinstance(r.get("body"), dict)
                             and not r["body"].get("tools")
                             and r["body"].get("messages")), None)
        self.headers = {k: v for k, v in first["headers"].items()
                        if k.lower() not in ("x-api-key", "authorization",
                                             "host", "content-length")}
        b = first["body"]
        self.body = b
        self.anthropic = "system" in b and not any(
            m.get("role") == "system" for m in b["messages"][:1]) \
            and "input_schema" in json.dumps(b["tools"][:1])
        self.has_loop = any(
            "tool_result" in json.dumps(r["body"]["messages"]) or
            any(m.get("role") == "tool" for m in r["body"]["messages"])
            for r in recs)
        if self.anthropic:
            self.system_blocks = b["system"]
            self.tools_anth = b["tools"]
            self.tools_chat = [{"type": "function", "function": {
                "name": t["name"], "description": t.get("description", ""),
                "parameters": t.get("input_schema", {})}} for t in b["tools"]]
            first_user = b["messages"][0]
            parts = first_user["content"]
            # the parts the CLI put before the user's own text
            self.injected = [p for p in parts[:-1]]
            self.mid_system = [m for m in b["messages"]
                               if m.get("role") == "system"]
            self.extra = {k: v for k, v in b.items()
                          if k not in ("model", "messages", "system",
                                       "tools")}
        else:
            sysmsgs = [m for m in b["messages"] if m["role"] == "system"]
            self.system_text = "\n\n".join(_text(m["content"])
                                           for m in sysmsgs)
            self.tools_chat = b["tools"]
            self.tools_anth = [{"name": t["function"]["name"],
                                "description": t["function"].get(
                                    "description", ""),
                                "input_schema": t["function"].get(
                                    "parameters", {})}
                               for t in b["tools"]]
            self.system_blocks = [{"type": "text", "text": self.system_text,
                                   "cache_control": {"type": "ephemeral"}}]
            self.injected = []
            self.mid_system = []
            self.extra = {k: v for k, v in b.items()
                          if k not in ("model", "messages", "tools")}
        self.schemas = {t["function"]["name"]: t["function"].get(
            "parameters") or {} for t in self.tools_chat}

    def utility_chat(self, text):
        """The captured tool-less utility request (a title call) about the
        user's text: its own messages, the last user message replaced"""
        if self.utility is None:
            return None
        body = copy.deepcopy(self.utility)
        body["model"] = "auto"
        last = max(i for i, m in enumerate(body["messages"])
                   if m.get("role") == "user")
        body["messages"][last]["content"] = text
        return body

    # -- tools ---------------------------------------------------------------

    def map_call(self, name, args, project):
        """A neutral tool call as this agent's (name, arguments)."""
        for cand in TOOL_NAMES.get(name, ()):
            if cand in self.schemas:
                props = self.schemas[cand].get("properties") or {}
                out = {}
                for k, v in args.items():
                    for an in ARG_NAMES.get(k, (k,)):
                        if an in props:
                            if k == "path" and an != "path":
                                v = project + "/" + v
                            out[an] = v
                            break
                if cand in ("Glob", "glob"):
                    out = {"pattern": "**/*"}
                if "description" in props and "command" in out:
                    out["description"] = "Run " + out["command"].split()[0]
                return cand, out
        # no such tool: the agent would use its shell
        if name == "grep":
            cmd = "grep -rn %r %s" % (args.get("pattern", ""),
                                      args.get("path", "."))
        elif name == "list_dir":
            cmd = "ls -la %s" % args.get("path", ".")
        else:
            cmd = "cat %s" % args.get("path", ".")
        return self.map_call("bash", {"command": cmd}, project)

    # -- bodies --------------------------------------------------------------

    def _fix(self, obj, project):
        s = json.dumps(obj, ensure_ascii=False)
        return json.loads(TMPDIR.sub(project, s))

    def chat(self, messages, project):
        """Chat-completions body for a neutral conversation."""
        out = [{"role": "system", "content": self.system_text_all()}]
        first_user = True
        for m in messages:
            r = m["role"]
            if r == "user":
                if first_user and self.injected:
                    parts = [{"type": "text", "text": p["text"]}
                             for p in self.injected if p.get("type") == "text"]
                    parts.append({"type": "text", "text": m["content"]})
                    out.append({"role": "user", "content": parts})
                    for sm in self.mid_system:
                        out.append({"role": "system",
                                    "content": _text(sm["content"])})
                else:
                    out.append({"role": "user", "content": m["content"]})
                first_user = False
            elif r == "assistant":
                am = {"role": "assistant", "content": m.get("content") or ""}
                if m.get("tool_calls"):
                    am["tool_calls"] = []
                    for c in m["tool_calls"]:
                        n, a = self.map_call(
                            c["function"]["name"],
                            json.loads(c["function"]["arguments"]), project)
                        am["tool_calls"].append({
                            "id": c["id"], "type": "function",
                            "function": {"name": n,
                                         "arguments": json.dumps(a)}})
                out.append(am)
            elif r == "tool":
                out.append({"role": "tool", "tool_call_id": m["tool_call_id"],
                            "content": m["content"]})
        body = {"model": "auto", "messages": out, "tools": self.tools_chat}
        if not self.anthropic:
            for k in ("tool_choice", "max_tokens", "stream",
                      "stream_options"):
                if k in self.extra:
                    body[k] = self.extra[k]
        else:
            body["max_tokens"] = self.extra.get("max_tokens", 32000)
            body["stream"] = True
        return self._fix(body, project)

    def system_text_all(self):
        if self.anthropic:
            return "\n".join(b.get("text", "") for b in self.system_blocks)
        return self.system_text

    def anthropic_body(self, messages, project):
        """Native Anthropic Messages body for a neutral conversation."""
        out = anthropic_messages(
            messages, lambda n, a: self.map_call(n, a, project),
            self.injected, self.mid_system)
        body = {"model": "auto", "system": copy.deepcopy(self.system_blocks),
                "tools": copy.deepcopy(self.tools_anth), "messages": out}
        if self.anthropic:
            for k, v in self.extra.items():
                body[k] = copy.deepcopy(v)
        else:
            body["max_tokens"] = self.extra.get("max_tokens", 32000)
            body["stream"] = True
        return self._fix(body, project)


def anthropic_messages(messages, map_call, injected=(), mid_system=(),
                       agent=True):
    """Neutral chat messages as Anthropic content blocks: the injected
    blocks go before the first user text, the mid-conversation system
    messages right after it; consecutive tool results share one user turn;
    an agent marks the newest block for prompt caching, as Claude Code does;
    a bare client sends its user text as a plain string."""
    out = []
    first_user = True
    for m in messages:
        r = m["role"]
        if r == "user":
            parts = copy.deepcopy(list(injected)) if first_user else []
            parts.append({"type": "text", "text": m["content"]})
            out.append({"role": "user",
                        "content": parts if agent else m["content"]})
            if first_user:
                out.extend(copy.deepcopy(list(mid_system)))
            first_user = False
        elif r == "assistant":
            blocks = []
            if m.get("content"):
                blocks.append({"type": "text", "text": m["content"]})
            for c in m.get("tool_calls") or []:
                n, a = map_call(c["function"]["name"],
                                json.loads(c["function"]["arguments"]))
                blocks.append({"type": "tool_use",
                               "id": "toolu_" + c["id"][5:],
                               "name": n, "input": a})
            out.append({"role": "assistant", "content": blocks})
        elif r == "tool":
            block = {"type": "tool_result",
                     "tool_use_id": "toolu_" + m["tool_call_id"][5:],
                     "content": m["content"]}
            prev = out[-1] if out else None
            if prev and prev["role"] == "user" and all(
                    b.get("type") == "tool_result" for b in prev["content"]):
                prev["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
    last = out[-1]["content"] if out else None
    if agent and isinstance(last, list) and last:
        for b in last:
            b.pop("cache_control", None)
        last[-1]["cache_control"] = {"type": "ephemeral"}
    return out


def load(root):
    agents = {}
    for name in SCAFFOLD_DIRS:
        d = os.path.join(root, name)
        if os.path.isdir(d):
            agents[name] = Agent(name, d)
    if "claude-code" not in agents:
        raise SystemExit("scaffold: no Claude Code capture in %s (run "
                         "tools/corpus/capture.py)" % root)
    return agents


# neutral tool definitions for bare requests that carry tool turns
NEUTRAL_TOOLS = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "bash", "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {
            "command": {"type": "string"}}, "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "grep", "description": "Search files for a pattern.",
        "parameters": {"type": "object", "properties": {
            "pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"]}}},
    {"type": "function", "function": {
        "name": "list_dir", "description": "List a directory.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "edit_file", "description": "Replace text in a file.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "old_string": {"type": "string"},
            "new_string": {"type": "string"}},
            "required": ["path", "old_string", "new_string"]}}}]


def bare_chat(messages):
    body = {"model": "auto", "messages": copy.deepcopy(messages)}
    if any(m.get("tool_calls") for m in messages):
        body["tools"] = NEUTRAL_TOOLS
    return body


def bare_anthropic(messages):
    """A bare conversation in Anthropic shape (no system, neutral tools)."""
    body = {"model": "auto", "max_tokens": 4096,
            "messages": anthropic_messages(messages, lambda n, a: (n, a),
                                           agent=False)}
    if any(m.get("tool_calls") for m in messages):
        body["tools"] = [{"name": t["function"]["name"],
                          "description": t["function"]["description"],
                          "input_schema": t["function"]["parameters"]}
                         for t in NEUTRAL_TOOLS]
    return body


def add_io_args(ap, root):
    """The input/output options expand.py and sessions.py share."""
    ap.add_argument("--asks", default=os.path.join(root, "corpus",
                                                   "asks.jsonl"))
    ap.add_argument("--scaffold", default=os.path.join(
        root, "build", "corpus", "scaffold"))
    ap.add_argument("--out", default=os.path.join(root, "build", "corpus"))
