"""Deterministic agent sessions for bench/sessions when the corpus's
build/corpus/sessions.jsonl is not there: the same line format.

A session is one agent task: an agent scaffold (system prompt and tool
schemas shared by every session of that agent), a user ask, then tool-loop
turns (an assistant tool call and its result, the history growing every
turn), and in about 40 % of the sessions, once, an answer and a new ask of
another tier.  Every turn is the full request body.
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
    "name": name, "description": desc * 6,
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
                     "APIs." % i for i in range(1, 60))
    return AGENTS[agent] + rules


def tool_output(rng, n):
    lines = []
    for i in range(n):
        lines.append("%4d    %s" % (i + 1, " ".join(
            rng.choice(WORDS) for _ in range(rng.randint(3, 12)))))
    return "\n".join(lines)


def make_session(k, rng):
    agent = rng.choice(sorted(AGENTS))
    sid = "ses-%06d-%08x" % (k, rng.getrandbits(32))
    nturns = rng.randint(10, 60)
    tier = rng.choices(("simple", "moderate", "complex"), (35, 35, 30))[0]
    switch_at = rng.randint(4, nturns - 4) if rng.random() < 0.4 else None
    msgs = [{"role": "system", "content": system_prompt(agent)},
            {"role": "user", "content": rng.choice(ASKS[tier])}]
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
            msgs.append({"role": "assistant", "content": None,
                         "tool_calls": [{"id": call, "type": "function",
                                         "function": {
                                             "name": rng.choice(TOOLS)[
                                                 "function"]["name"],
                                             "arguments": json.dumps({
                                                 "path": "src/m%d.py" % n})}}]})
            msgs.append({"role": "tool", "tool_call_id": call,
                         "content": tool_output(rng, rng.randint(5, 40))})
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
