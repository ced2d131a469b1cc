#!/usr/bin/env python3
"""Replayable agent sessions built from the corpus asks.

Writes build/corpus/sessions.jsonl (chat-completions bodies) and
build/corpus/sessions-anthropic.jsonl (the same sessions, native Anthropic
Messages bodies).  A session is what one agent CLI sends during one task: a
user ask, then tool-loop turns (assistant tool_calls + tool results, the
history growing every turn), now and then an answer followed by a short
follow-up or by a new, harder or easier ask.  Every turn is a full request
body labeled with the tier of the latest real ask in it.  The format is in
tools/corpus/README.md.  Deterministic for a given --seed.
"""

import argparse
import json
import os
import random
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scaffold  # noqa: E402
import toolio  # noqa: E402
from make_asks import FOLLOWUPS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
PROJECTS = ("shop-api", "billing", "webapp", "infra", "ml-pipeline",
            "mobile-app", "firmware", "data-platform", "gateway", "cli-tool")


def session_headers(agent, sid):
    h = dict(agent.headers)
    for k in list(h):
        kl = k.lower()
        if kl in ("x-claude-code-session-id", "x-session-affinity",
                  "x-session-id"):
            h[k] = sid
    return h


def with_session_id(body, sid):
    md = body.get("metadata")
    if isinstance(md, dict) and isinstance(md.get("user_id"), str):
        try:
            u = json.loads(md["user_id"])
            u["session_id"] = sid
            md["user_id"] = json.dumps(u, separators=(",", ":"))
        except ValueError:
            pass
    return body


def build_session(k, rng, agent, asks_by_tier):
    sid = (str(uuid.UUID(int=rng.getrandbits(128))) if agent.anthropic
           else "ses_%024x" % rng.getrandbits(96))
    project = "/home/dev/" + rng.choice(PROJECTS)
    nturns = rng.randint(10, 60)
    tier = rng.choices(("simple", "moderate", "complex"), (35, 35, 30))[0]
    ask = rng.choice(asks_by_tier[tier])
    # at most one tier change per session, in about 40 % of them
    switch_at = rng.randint(4, nturns - 4) if rng.random() < 0.4 else None
    hist = [{"role": "user", "content": ask["messages"][0]["content"]}]
    cur = {"tier": ask["tier"], "why": ask["why"], "ask_id": ask["id"],
           "kind": "ask"}
    asks = [ask["id"]]
    turns = []
    since_ask = 0
    for n in range(nturns):
        if n > 0:
            since_ask += 1
            if switch_at is not None and n >= switch_at:
                # the agent answers; the user moves on to another task
                hist.append({"role": "assistant",
                             "content": toolio.reply(ask["stack"], rng)})
                t2 = rng.choice([t for t in asks_by_tier if t != cur["tier"]])
                ask = rng.choice(asks_by_tier[t2])
                hist.append({"role": "user",
                             "content": ask["messages"][0]["content"]})
                cur = {"tier": ask["tier"], "why": ask["why"],
                       "ask_id": ask["id"], "kind": "ask"}
                asks.append(ask["id"])
                switch_at = None
                since_ask = 0
            elif since_ask > 5 and rng.random() < 0.12:
                hist.append({"role": "assistant",
                             "content": toolio.reply(ask["stack"], rng)})
                lang, fu = rng.choice(FOLLOWUPS)
                hist.append({"role": "user", "content": fu})
                cur = dict(cur, kind="followup",
                           why="follow-up %r inherits: %s" % (fu, ask["why"]))
                since_ask = 0
            else:
                am, tms = toolio.tool_round(ask["stack"],
                                            ask["messages"][0]["content"],
                                            rng)
                hist += [am] + tms
                cur = dict(cur, kind="toolloop")
        turns.append((dict(cur, n=n), [dict(m) for m in hist]))
    meta = {"id": "sess-%03d" % k, "agent": agent.name, "project": project,
            "session_id": sid, "headers": session_headers(agent, sid),
            "asks": asks}
    chat, anth = [], []
    for lab, h in turns:
        chat.append(dict(lab, body=agent.chat(h, project)))
        anth.append(dict(lab, body=with_session_id(
            agent.anthropic_body(h, project), sid)))
    return dict(meta, turns=chat), dict(meta, turns=anth)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scaffold.add_io_args(ap, ROOT)
    # 120: the cost ratio of a sample is dominated by its few longest
    # sessions; with 60, the labels' own ratio moved from 0.433 to 0.473
    # when 76 asks were added (same seed, other draws)
    ap.add_argument("-n", "--sessions", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    agents = scaffold.load(a.scaffold)
    names = sorted(agents)
    asks = [json.loads(l) for l in open(a.asks, encoding="utf-8")]
    by_tier = {}
    for x in asks:
        if x["turn"] == "single":
            by_tier.setdefault(x["tier"], []).append(x)
    rng = random.Random(a.seed)
    nt = 0
    with open(os.path.join(a.out, "sessions.jsonl"), "w",
              encoding="utf-8") as fc, \
            open(os.path.join(a.out, "sessions-anthropic.jsonl"), "w",
                 encoding="utf-8") as fa:
        for k in range(a.sessions):
            agent = agents[names[k % len(names)]]
            c, an = build_session(k, rng, agent, by_tier)
            fc.write(json.dumps(c, ensure_ascii=False) + "\n")
            fa.write(json.dumps(an, ensure_ascii=False) + "\n")
            nt += len(c["turns"])
    print("sessions: %d sessions, %d turns -> %s" % (
        a.sessions, nt, os.path.relpath(os.path.join(
            a.out, "sessions.jsonl"), ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
