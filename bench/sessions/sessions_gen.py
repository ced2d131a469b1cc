"""Deterministic agent sessions for bench/sessions when the corpus's
build/corpus/sessions.jsonl is not there: the same line format.

A session is one agent task: an agent scaffold (system prompt and tool
schemas shared by every session of that agent), a user ask, then tool-loop
turns (an assistant tool call and its result, the history growing every
turn), and in about 40 % of the sessions, once, an answer and a new ask of
another tier.  Every turn is the full request body.

Tool results are sized like a coding agent's (Claude Code's Read, Grep and
Bash, opencode's read/grep/bash): a file read is 40-400 numbered lines
(2-20 KB), a grep 3-60 matches, a test or build log 20-200 lines, a
directory listing 10-60 entries, an edit a short confirmation with the
edited lines.  About 4 KB a turn on average, so after a few turns the
session's own history, not the shared scaffold, is most of the prompt
(the scaffold is ~25 KB; a 30-turn session ends near 150 KB).
"""

import json
import random

ASKS = {
    "simple": [
        "What does the --force flag of git push do?",
        "Rename the variable tmp to total in utils.py.",
        "Fix the typo in the README heading.",
        "What is the default port of PostgreSQL?",
        "Add a docstring to the parse_args function.",
        "Show me the current git branch name.",
    ],
    "moderate": [
        "Write unit tests for the InvoiceService class covering discounts, "
        "taxes and rounding, and make them pass.",
        "Refactor the config loader to read YAML and environment variables "
        "with validation and clear error messages.",
        "Add pagination to the /orders endpoint with cursor tokens and "
        "update the client and its tests.",
        "Implement retry with exponential backoff and jitter for the HTTP "
        "client and add tests for it.",
        "Convert the callback-based file uploader to async/await and keep "
        "the public API compatible.",
    ],
    "complex": [
        "Design and implement a distributed rate limiter across our "
        "services with Redis, handling clock skew, failover and race "
        "conditions; analyze the consistency trade-offs and prove the "
        "algorithm correct under concurrent updates.",
        "Find the root cause of the intermittent deadlock in the scheduler "
        "under high concurrency, explain the lock ordering problem, design "
        "a lock-free alternative and migrate the code base to it with a "
        "benchmark and a formal argument of correctness.",
        "Architect a multi-tenant event-sourcing system with snapshots, "
        "schema evolution and exactly-once delivery; evaluate trade-offs "
        "between consistency and availability and write the migration plan "
        "with a security threat model.",
        "Optimize the query planner's join ordering for 20-way joins using "
        "dynamic programming with pruning, prove the complexity bound, and "
        "refactor the cost model across the optimizer modules.",
    ],
}

AGENTS = {
    "coder": "You are an autonomous coding agent working in the user's "
             "repository. ",
    "cli": "You are a command-line software engineering assistant. ",
}

TOOLS = [{"type": "function", "function": {
    "name": name, "description": desc * 24,
    "parameters": {"type": "object", "properties": {
        "path": {"type": "string", "description": "file or directory"},
        "query": {"type": "string", "description": "what to look for"}},
        "required": ["path"]}}}
    for name, desc in [
        ("read_file", "Read a file of the repository and return it. "),
        ("write_file", "Write a whole file of the repository. "),
        ("edit_file", "Replace a unique string in a file. "),
        ("grep", "Search the repository with a regular expression. "),
        ("run_shell", "Run a shell command in the project directory. "),
        ("list_dir", "List a directory of the repository. ")]]

WORDS = ("def class return import self value config request response error "
         "test assert client server cache token user order invoice async "
         "await queue lock thread buffer parse render query index").split()


def system_prompt(agent):
    rules = " ".join("Rule %d: keep changes minimal, explain what you do, "
                     "run the tests after every edit and never invent "
                     "APIs." % i for i in range(1, 150))
    return AGENTS[agent] + rules


def code_line(rng):
    return "    " * rng.randint(0, 3) + " ".join(
        rng.choice(WORDS) for _ in range(rng.randint(2, 10)))


def tool_output(rng, tool, n):
    """What tool `tool` returns at turn n."""
    if tool == "read_file":
        return "\n".join("%6d\t%s" % (i + 1, code_line(rng))
                         for i in range(rng.randint(40, 400)))
    if tool == "grep":
        return "\n".join("src/m%d.py:%d:%s" % (rng.randint(1, 60),
                                               rng.randint(1, 900),
                                               code_line(rng))
                         for _ in range(rng.randint(3, 60)))
    if tool == "run_shell":
        out = ["============ test session starts ============"]
        out += ["tests/test_m%d.py::test_%s_%d %s" % (
            rng.randint(1, 60), rng.choice(WORDS), i,
            rng.choice(("PASSED", "PASSED", "PASSED", "FAILED")))
            for i in range(rng.randint(20, 200))]
        return "\n".join(out)
    if tool == "list_dir":
        return "\n".join("%s/m%d.py" % (rng.choice(("src", "tests", "lib")),
                                        i) for i in range(rng.randint(10, 60)))
    return ("The file src/m%d.py has been updated. Here's the result:\n" % n
            + "\n".join("%6d\t%s" % (i + 1, code_line(rng))
                        for i in range(rng.randint(4, 12))))


def make_session(k, rng):
    agent = rng.choice(sorted(AGENTS))
    sid = "ses-%06d-%08x" % (k, rng.getrandbits(32))
    nturns = rng.randint(10, 60)
    tier = rng.choices(("simple", "moderate", "complex"), (35, 35, 30))[0]
    switch_at = rng.randint(4, nturns - 4) if rng.random() < 0.4 else None
    # an ask names its own project: two sessions never share a prefix
    # (and so a session key) by chance of the generator
    msgs = [{"role": "system", "content": system_prompt(agent)},
            {"role": "user", "content": rng.choice(ASKS[tier])
             + " The code is in services/svc%03d." % k}]
    turns = []
    for n in range(nturns):
        kind = "ask" if n == 0 else "toolloop"
        if n and n == switch_at:
            msgs.append({"role": "assistant", "content": "Done: " + " ".join(
                rng.choice(WORDS) for _ in range(40))})
            tier = rng.choice([t for t in ASKS if t != tier])
            msgs.append({"role": "user", "content": rng.choice(ASKS[tier])})
            kind = "ask"
        elif n:
            call = "call_%d_%d" % (k, n)
            tool = rng.choice(TOOLS)["function"]["name"]
            msgs.append({"role": "assistant", "content": None,
                         "tool_calls": [{"id": call, "type": "function",
                                         "function": {
                                             "name": tool,
                                             "arguments": json.dumps({
                                                 "path": "src/m%d.py" % n})}}]})
            msgs.append({"role": "tool", "tool_call_id": call,
                         "content": tool_output(rng, tool, n)})
        turns.append({"n": n, "tier": tier, "kind": kind,
                      "body": {"model": "auto", "messages": list(msgs),
                               "tools": TOOLS}})
    # a third each: Claude Code's header, x-session-id, no key (prefix)
    header = ("X-Claude-Code-Session-Id", "x-session-id", None)[k % 3]
    return {"id": "bench-%03d" % k, "agent": agent, "session_id": sid,
            "headers": {header: sid} if header else {}, "turns": turns}


def sessions(count=52, seed=7):
    rng = random.Random(seed)
    return [make_session(k, rng) for k in range(count)]
