#!/usr/bin/env python3
"""Expand corpus/asks.jsonl into labeled request bodies.

Writes build/corpus/tiers.jsonl in the dev-set format ({"id", "tier", "why",
"body"} plus "group", "shape", "turn", "lang"): every ask bare, and every ask
once more wrapped in a captured agent's scaffolding (Claude Code or
opencode, chosen by a fixed seed), so half the lines are agent-shaped.
Writes build/corpus/tiers-anthropic.jsonl: the same requests in native
Anthropic Messages shape.  Deterministic.
"""

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scaffold  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
PROJECTS = ("shop-api", "billing", "webapp", "infra", "ml-pipeline",
            "mobile-app", "firmware", "data-platform", "gateway", "cli-tool")
SHORT = {"claude-code": "cc", "opencode": "oc"}


def project_for(key):
    return "/home/dev/" + random.Random("proj:" + key).choice(PROJECTS)


def agent_for(ask, agents):
    names = sorted(agents)
    if len(names) == 1:
        return names[0]
    # Claude Code a bit more often: it is the larger share of agent traffic
    r = random.Random("agent:" + ask["id"]).random()
    return "claude-code" if r < 0.55 else "opencode"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scaffold.add_io_args(ap, ROOT)
    a = ap.parse_args()
    agents = scaffold.load(a.scaffold)
    asks = [json.loads(l) for l in open(a.asks, encoding="utf-8")]
    chat = open(os.path.join(a.out, "tiers.jsonl"), "w", encoding="utf-8")
    anth = open(os.path.join(a.out, "tiers-anthropic.jsonl"), "w",
                encoding="utf-8")
    # the title call opencode sends about each conversation's first ask:
    # a utility call, simple whatever the ask's own tier
    titles = open(os.path.join(a.out, "titles.jsonl"), "w",
                  encoding="utf-8")
    counts = {}
    ntitles = 0
    for ask in asks:
        meta = {k: ask[k] for k in ("tier", "why", "group", "turn", "lang")}
        rows = [("bare", ask["id"], scaffold.bare_chat(ask["messages"]),
                 scaffold.bare_anthropic(ask["messages"]))]
        name = agent_for(ask, agents)
        ag = agents[name]
        proj = project_for(ask["group"])
        rows.append((name, ask["id"] + "~" + SHORT[name],
                     ag.chat(ask["messages"], proj),
                     ag.anthropic_body(ask["messages"], proj)))
        first = next(m["content"] for m in ask["messages"]
                     if m["role"] == "user")
        tb = ag.utility_chat(first) if ask["turn"] == "single" else None
        if tb is not None:
            rec = dict({"id": ask["id"] + "~title"}, **meta)
            rec.update(tier="simple", shape=name + "-title", body=tb)
            titles.write(json.dumps(rec, ensure_ascii=False) + "\n")
            ntitles += 1
        for shape, rid, cb, ab in rows:
            rec = dict({"id": rid}, **meta)
            rec["shape"] = shape
            chat.write(json.dumps(dict(rec, body=cb), ensure_ascii=False)
                       + "\n")
            anth.write(json.dumps(dict(rec, body=ab), ensure_ascii=False)
                       + "\n")
            counts[shape] = counts.get(shape, 0) + 1
    chat.close()
    anth.close()
    titles.close()
    print("expand: %d requests (%s) -> %s" % (
        sum(counts.values()), ", ".join("%s %d" % kv for kv in
                                        sorted(counts.items())),
        os.path.relpath(os.path.join(a.out, "tiers.jsonl"), ROOT)),
        file=sys.stderr)
    print("expand: %d title calls -> %s" % (ntitles, os.path.relpath(
        os.path.join(a.out, "titles.jsonl"), ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
