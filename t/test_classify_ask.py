"""The classifier reads the ask, not the scaffolding (docs/classifier.md,
issue 11): the latest user message with words of its own decides the tier;
system prompts, tool schemas, tool results, earlier answers and the blocks
agents inject into the user turn do not.  Read through nginx: the tier from
X-LLMRoute-Tier, the explanation from $llmroute_reason in a header.
"""

import json

import pytest

from llmroute_harness import CATALOG, CHAT, SERVER, post_json
from test_anthropic import gateway  # noqa: F401 (fixture)

REASON = "add_header X-Reason $llmroute_reason always;"

HARD = ("Design a multi-region, strongly consistent rate limiter for our API "
        "gateway. Compare token bucket and sliding window approaches, "
        "analyze the trade-offs between latency and accuracy under network "
        "partitions, and propose a migration plan from the current "
        "single-node implementation with failure modes and rollback.")
TRIVIAL = "rename the variable cnt to count in utils.py"

# what a coding agent sends around every ask: its vocabulary is the hard
# one (architecture, race conditions, security, debugging), on purpose
AGENT_SYSTEM = (
    "You are an interactive CLI agent that helps users with software "
    "engineering tasks. Assist with defensive security only. When you "
    "debug, find the root cause: consider race conditions, deadlocks, "
    "concurrency, distributed consistency, architecture and design "
    "trade-offs, invariants and security vulnerabilities. Always run the "
    "tests, refactor carefully, fix bugs, review code, handle edge cases, "
    "migrations, timeouts and retries.\n") * 100
AGENT_TOOLS = [{"type": "function", "function": {
    "name": name,
    "description": ("Use this tool to debug, refactor, design, test and "
                    "fix code in a scalable, fault-tolerant architecture. ")
    * 8,
    "parameters": {"type": "object",
                   "properties": {"path": {"type": "string"}}}}}
    for name in ("Bash", "Read", "Edit", "Write", "Glob", "Grep", "Task",
                 "TodoWrite", "WebFetch", "WebSearch", "NotebookEdit",
                 "ExitPlanMode")]
REMINDER = ("<system-reminder>\nThe codebase is a distributed microservice "
            "architecture with a consensus layer; audit every change for "
            "race conditions and security invariants.\n</system-reminder>")
HARD_LOG = ("src/limiter.py:41: race condition: two replicas partition the "
            "quorum, consensus lost, deadlock in the lock ordering\n") * 40


def agent_body(messages, **extra):
    body = {"model": "auto", "tools": AGENT_TOOLS,
            "messages": [{"role": "system", "content": AGENT_SYSTEM}]
            + messages}
    body.update(extra)
    return json.dumps(body).encode()


def user(text):
    return {"role": "user",
            "content": [{"type": "text", "text": REMINDER},
                        {"type": "text", "text": text}]}


def tool_call(n):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_%d" % n, "type": "function", "function": {
            "name": "Grep", "arguments": json.dumps({"pattern": "limit"})}}]}


def tool_result(n, text=HARD_LOG):
    return {"role": "tool", "tool_call_id": "call_%d" % n, "content": text}


def classify(r, body):
    resp = post_json(r.port, CHAT, body)
    assert resp.status == 200, resp
    return resp.header("X-LLMRoute-Tier"), resp.header("X-Reason")


@pytest.fixture
def gw(routed):
    return routed(location_extra=REASON)


def test_huge_agent_prompt_with_trivial_ask_is_simple(gw):
    body = agent_body([user(TRIVIAL)])
    assert len(body) >= 40 * 1024
    tier, reason = classify(gw, body)
    assert tier == "simple", reason
    assert reason.startswith("ask=msg[1] score="), reason
    assert reason.endswith("-> simple"), reason


def test_short_system_prompt_with_hard_ask_is_complex(gw):
    body = json.dumps({"model": "auto", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": HARD}]}).encode()
    tier, reason = classify(gw, body)
    assert tier == "complex", reason
    assert reason.startswith("ask=msg[1] ") and "reasoning=" in reason


def test_same_ask_bare_and_wrapped_gets_the_same_tier(gw):
    for ask in (TRIVIAL, HARD):
        bare = json.dumps({"model": "auto", "messages": [
            {"role": "user", "content": ask}]}).encode()
        assert classify(gw, bare)[0] == classify(
            gw, agent_body([user(ask)]))[0], ask


@pytest.mark.parametrize("ask,tier", [(HARD, "complex"), (TRIVIAL, "simple")])
def test_tool_loop_turn_inherits_the_ask_tier(gw, ask, tier):
    # last message a tool result, then an assistant tool call: the ask is
    # found in the history; tool results full of hard words do not count
    loop = [user(ask), tool_call(1), tool_result(1), tool_call(2),
            tool_result(2)]
    got, reason = classify(gw, agent_body(loop))
    assert got == tier, reason
    assert reason.startswith("ask=msg[1] "), reason
    got, reason = classify(gw, agent_body(loop + [tool_call(3)]))
    assert got == tier and reason.startswith("ask=msg[1] "), reason


def test_tool_result_blocks_are_not_an_ask(gw):
    # a user turn made only of tool results (Anthropic content blocks in
    # the user role) is scaffolding: the ask is the turn before
    results = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "ok, renamed"}]}]}
    got, reason = classify(gw, agent_body([
        user(HARD), {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read",
             "input": {"path": "a.py"}}]}, results]))
    assert got == "complex" and reason.startswith("ask=msg[1] "), reason


@pytest.mark.parametrize("first,tier", [(HARD, "complex"),
                                        (TRIVIAL, "simple")])
def test_short_follow_up_inherits(gw, first, tier):
    msgs = [user(first), {"role": "assistant",
                          "content": "Here is a plan. Shall I go ahead?"},
            user("yes, do it")]
    got, reason = classify(gw, agent_body(msgs))
    assert got == tier, reason
    assert reason.startswith("ask=msg[3]+msg[1] "), reason


def test_new_ask_after_hard_history_is_its_own(gw):
    # a new, self-contained ask is not a follow-up of the one before
    msgs = [user(HARD), {"role": "assistant", "content": "Done: ..."},
            user(TRIVIAL)]
    got, reason = classify(gw, agent_body(msgs))
    assert got == "simple" and reason.startswith("ask=msg[3] "), reason


def test_blocks_injected_into_a_string_turn_are_skipped(gw):
    text = ("<environment_details>\n# Current files\nsrc/raft.py: "
            "consensus, quorum, partition, linearizable, deadlock, race "
            "condition, security audit\n</environment_details>\n" + TRIVIAL)
    body = json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": text}]}).encode()
    got, reason = classify(gw, body)
    assert got == "simple", reason


def test_system_role_among_the_turns_is_scaffolding(gw):
    msgs = [user(TRIVIAL), {"role": "system", "content": HARD}]
    got, reason = classify(gw, agent_body(msgs))
    assert got == "simple" and reason.startswith("ask=msg[1] "), reason


def test_no_ask_at_all(gw):
    body = json.dumps({"model": "auto", "messages": [
        {"role": "system", "content": HARD}]}).encode()
    got, reason = classify(gw, body)
    assert reason.startswith("ask=none score="), reason


def test_bias_knob_trades_cost_for_recall(routed):
    # bias moves the complex cut: a large one sends a trivial ask up, a
    # negative one keeps a hard ask below complex
    r = routed(http_extra="llmroute_classifier bias=20;",
               location_extra=REASON)
    got, reason = classify(r, agent_body([user(TRIVIAL)]))
    assert got == "complex", reason
    r = routed(http_extra="llmroute_classifier bias=-20;",
               location_extra=REASON)
    got, reason = classify(r, json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": HARD}]}).encode())
    assert got == "moderate", reason


@pytest.mark.parametrize("setting,tier", [
    ("moderate.mechanical=50", "moderate"),   # the moderate decision only
    ("complex.mechanical=50", "complex"),     # the complex decision only
    ("mechanical=50", "complex")])            # both
def test_weights_of_one_decision_or_both(routed, setting, tier):
    # two decisions, each its own weights: "complex or not", then
    # "moderate or simple"; a plain name sets the feature in both
    r = routed(http_extra="llmroute_classifier %s;" % setting,
               location_extra=REASON)
    got, reason = classify(r, agent_body([user(TRIVIAL)]))
    assert got == tier, reason
    assert "mechanical=" in reason, reason


def rejected(nginx, line):
    """nginx -t fails on line, naming the file and line; the error text"""
    ngx = nginx(CATALOG + line + SERVER, start=False, vars={
        "CHEAP_URL": "http://127.0.0.1:9/v1/chat/completions",
        "PREMIUM_URL": "http://127.0.0.1:10/v1/chat/completions",
        "SERVER_EXTRA": "", "LOCATION_EXTRA": ""})
    rc, err = ngx.check()
    assert rc != 0 and "[emerg]" in err, err
    assert "%s:%d" % (ngx.conf_path, ngx.conf_line_of(line)) in err, err
    return err


@pytest.mark.parametrize("line", ["llmroute_classifier complex.nosuch=1;",
                                  "llmroute_classifier moderate.=1;"])
def test_unknown_classifier_weight_is_rejected(nginx, line):
    err = rejected(nginx, line)
    assert '"%s"' % line.split()[1].split("=")[0] in err, err


def test_bad_bias_is_rejected(nginx):
    err = rejected(nginx, "llmroute_classifier bias=high;")
    assert "bias=high" in err, err


def test_string_content_starting_with_a_bracket_is_text(gw):
    # a string is not an array of parts because it starts with "["; a stray
    # "}" in it once stopped the parts walk from advancing (fuzz timeout)
    body = json.dumps({"model": "auto", "messages": [
        {"role": "user",
         "content": "[x} please rename cnt to count in utils.py"}]}).encode()
    got, reason = classify(gw, body)
    assert got == "simple" and reason.startswith("ask=msg[0] "), reason
    assert "mechanical=" in reason, reason


def test_anthropic_tool_loop_reads_the_ask(gateway):
    # Messages API: top-level system, tool_use / tool_result blocks; the
    # user turn of tool results is not an ask
    from test_anthropic import HDRS
    g = gateway(location_extra=REASON)
    hdrs = {k: v for k, v in HDRS.items() if k != "X-LLMRoute-Tier"}
    for ask, tier in ((HARD, "complex"), (TRIVIAL, "simple")):
        body = json.dumps({"model": "auto", "max_tokens": 1024,
                           "system": AGENT_SYSTEM, "messages": [
            {"role": "user", "content": [{"type": "text", "text": REMINDER},
                                         {"type": "text", "text": ask}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "Grep",
                 "input": {"pattern": "limit"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": HARD_LOG}]}]}).encode()
        resp = post_json(g.port, "/v1/messages", body, hdrs)
        assert resp.status == 200, resp
        reason = resp.header("X-Reason")
        assert resp.header("X-LLMRoute-Tier") == tier, reason
        assert reason.startswith("ask=msg[") and "]+" not in reason, reason


# an agent's title call (opencode sends one beside the turn itself): its
# own system prompt asking for a short title, no tools, the user's message
# embedded; writing a title is simple work whatever the message says
TITLE_SYSTEM = ("You write titles. Reply with nothing but a title for the "
                "thread.\n\n<task>\nGenerate a brief title (at most 50 "
                "characters, one line) that helps the user find this "
                "conversation again.\n</task>\n")


def test_title_call_of_an_agent_is_simple(gw):
    body = json.dumps({"model": "auto", "max_tokens": 32000,
                       "messages": [
        {"role": "system", "content": TITLE_SYSTEM},
        {"role": "user", "content": "Generate a title for this "
                                    "conversation:\n"},
        {"role": "user", "content": HARD}]}).encode()
    tier, reason = classify(gw, body)
    assert tier == "simple", reason
    assert reason.startswith("utility=title ask=msg[2] score="), reason
    assert reason.endswith("-> simple"), reason


@pytest.mark.parametrize("system,tools", [
    # the agent's own turn: tools, whatever its prompt says about titles
    (TITLE_SYSTEM, True),
    # a system prompt that mentions a title but asks for none
    ("You are the staff engineer; your title is Principal. Review and "
     "design carefully.", False),
    # a title asked for after the user's turn, not in the app's prompt
    (None, False)])
def test_not_a_title_call_is_classified(gw, system, tools):
    msgs = [{"role": "user", "content": HARD}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    else:
        msgs.append({"role": "system", "content": TITLE_SYSTEM})
    body = {"model": "auto", "messages": msgs}
    if tools:
        body["tools"] = AGENT_TOOLS
    tier, reason = classify(gw, json.dumps(body).encode())
    assert tier == "complex", reason
    assert reason.startswith("ask="), reason


def test_anthropic_title_call_is_simple(gateway):
    # system text blocks, the title prompt after a billing line
    from test_anthropic import HDRS
    g = gateway(location_extra=REASON)
    hdrs = {k: v for k, v in HDRS.items() if k != "X-LLMRoute-Tier"}
    body = json.dumps({"model": "auto", "max_tokens": 512, "system": [
        {"type": "text", "text": "x-billing-header: v=1;"},
        {"type": "text", "text": TITLE_SYSTEM}],
        "messages": [{"role": "user", "content": HARD}]}).encode()
    resp = post_json(g.port, "/v1/messages", body, hdrs)
    assert resp.status == 200, resp
    reason = resp.header("X-Reason")
    assert resp.header("X-LLMRoute-Tier") == "simple", reason
    assert reason.startswith("utility=title ask=msg["), reason


def contribution(reason, name):
    for part in reason.split():
        if part.startswith(name + "="):
            return float(part.split("=")[1])
    return 0.0


def test_huge_ask_is_read_in_bounded_windows(gw):
    # only the first 2 KB and the last 1 KB of an ask are read word by word:
    # hard words 7 KB into a 60 KB ask do not count, the ask's own words
    # at both ends do
    head = "please rename cnt to count in the notes below\n"
    filler = "the quick brown fox jumps over the lazy dog. "
    middle = "deadlock consensus linearizable race condition quorum. " * 20
    text = head + filler * 150 + middle + filler * 1200
    for tail, seen in (("", False), ("\nfind the root cause", True)):
        body = json.dumps({"model": "auto", "messages": [
            {"role": "user", "content": text + tail}]}).encode()
        assert len(body) > 60 * 1024
        reason = classify(gw, body)[1]
        assert "mechanical=" in reason, reason
        assert ("reasoning=" in reason) == seen, reason


def test_code_between_the_windows_is_measured(gw):
    # unfenced code in the unread middle counts as code in the proportion
    # the head had; so a 40 KB paste weighs more than a 3 KB one
    code = "".join("static int f%d(int x) { return x * %d + g(x); }\n"
                   % (i, i) for i in range(900))
    got = []
    for size in (3 * 1024, 40 * 1024):
        body = json.dumps({"model": "auto", "messages": [
            {"role": "user", "content": "why does this return the wrong "
                                        "value?\n" + code[:size]}]}).encode()
        got.append(contribution(classify(gw, body)[1], "code"))
    assert 0 < got[0] < got[1], got


def test_reason_of_a_header_and_of_a_floor(gw):
    # $llmroute_reason is printed only when read: the header's text, and
    # the classifier's explanation with the floor that raised its tier
    resp = post_json(gw.port, CHAT, json.dumps({"model": "auto", "messages": [
        {"role": "user", "content": TRIVIAL}]}).encode(),
        {"X-LLMRoute-Tier": "moderate"})
    assert resp.status == 200, resp
    assert resp.header("X-LLMRoute-Tier") == "moderate"
    assert resp.header("X-Reason") == "header X-LLMRoute-Tier=moderate"

    got, reason = classify(gw, json.dumps({"model": "auto:complex",
        "messages": [{"role": "user", "content": TRIVIAL}]}).encode())
    assert got == "complex", reason
    assert reason.startswith("ask=msg[0] score="), reason
    assert reason.endswith(" -> simple; floor complex"), reason
