#!/usr/bin/env python3
"""Self-check of the corpus and its expansion; exits non-zero on a problem.

corpus/asks.jsonl: unique ids, valid tiers/turns, at least 450 asks, every
tier between 25 % and 42 %, families (groups) never mixing tiers across their
single-turn paraphrases, a tool-loop ask's last message a tool result, a
follow-up's last message a user turn after an assistant one.
build/corpus/tiers.jsonl (when present): same ids, at least a third of the
requests agent-shaped, every agent shape present in the Anthropic file too.
build/corpus/sessions.jsonl (when present): >= 50 sessions of 10-60 turns.
With --dev FILE (a held-out labeled set): no ask shares a run of 8 words with
it, so the held-out set stays unseen.
"""

import argparse
import collections
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIERS = ("simple", "moderate", "complex")
TURNS = ("single", "followup", "toolloop")
errors = []


def err(msg):
    errors.append(msg)


def check_asks(path):
    asks = [json.loads(l) for l in open(path, encoding="utf-8")]
    ids = collections.Counter(a["id"] for a in asks)
    for i, n in ids.items():
        if n > 1:
            err("duplicate id %s" % i)
    if len(asks) < 450:
        err("only %d asks, need >= 450" % len(asks))
    fam = collections.defaultdict(set)
    for a in asks:
        for k in ("id", "tier", "why", "group", "lang", "turn", "messages"):
            if k not in a:
                err("%s: missing %s" % (a.get("id"), k))
        if a["tier"] not in TIERS:
            err("%s: bad tier %r" % (a["id"], a["tier"]))
        if a["turn"] not in TURNS:
            err("%s: bad turn %r" % (a["id"], a["turn"]))
        m = a["messages"]
        if not m or m[0]["role"] != "user":
            err("%s: must start with a user turn" % a["id"])
        if a["turn"] == "single" and len(m) != 1:
            err("%s: single ask with %d messages" % (a["id"], len(m)))
        if a["turn"] == "toolloop" and m[-1]["role"] != "tool":
            err("%s: tool loop must end in a tool result" % a["id"])
        if a["turn"] == "followup" and (m[-1]["role"] != "user" or
                                        len(m) < 3):
            err("%s: follow-up must end in a later user turn" % a["id"])
        for x in m:
            if x["role"] == "tool" and not x.get("tool_call_id"):
                err("%s: tool message without tool_call_id" % a["id"])
        if a["turn"] == "single":
            fam[a["group"]].add(a["tier"])
    for g, ts in fam.items():
        if len(ts) > 1:
            err("group %s mixes tiers %s" % (g, sorted(ts)))
    c = collections.Counter(a["tier"] for a in asks)
    for t in TIERS:
        share = c[t] / max(1, len(asks))
        if not 0.25 <= share <= 0.42:
            err("tier %s is %.0f%% of the corpus" % (t, 100 * share))
    groups = len({a["group"] for a in asks})
    if groups < 250:
        err("only %d task families, want >= 250" % groups)
    return asks


def check_tiers(path, ids):
    rows = [json.loads(l) for l in open(path, encoding="utf-8")]
    seen = collections.Counter(r["id"] for r in rows)
    for i, n in seen.items():
        if n > 1:
            err("tiers: duplicate id %s" % i)
    base = {r["id"].split("~")[0] for r in rows}
    if base != ids:
        err("tiers: asks and expansion disagree (%d vs %d ids)"
            % (len(ids), len(base)))
    agent = sum(1 for r in rows if r["shape"] != "bare")
    if agent * 3 < len(rows):
        err("tiers: only %d of %d requests agent-shaped" % (agent, len(rows)))
    for r in rows:
        if r["tier"] not in TIERS or "messages" not in r["body"]:
            err("tiers: bad row %s" % r["id"])
    return rows


def check_sessions(path):
    ss = [json.loads(l) for l in open(path, encoding="utf-8")]
    if len(ss) < 50:
        err("sessions: only %d, need >= 50" % len(ss))
    for s in ss:
        n = len(s["turns"])
        if not 10 <= n <= 60:
            err("sessions: %s has %d turns" % (s["id"], n))
        for t in s["turns"]:
            if t["tier"] not in TIERS:
                err("sessions: %s bad tier" % s["id"])
    return ss


def words8(text):
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + 8]) for i in range(len(w) - 7)}


def user_text(messages):
    return " ".join(m["content"] if isinstance(m["content"], str)
                    else json.dumps(m["content"], ensure_ascii=False)
                    for m in messages if m["role"] == "user")


def check_unseen(asks, dev_path):
    dev = []
    for l in open(dev_path, encoding="utf-8"):
        d = json.loads(l)
        dev.append((d["id"], words8(user_text(d["body"]["messages"]))))
    hits = 0
    for a in asks:
        g = words8(user_text(a["messages"]))
        for did, dg in dev:
            if g & dg:
                hits += 1
                err("%s shares %d 8-word runs with %s" % (a["id"],
                                                          len(g & dg), did))
    print("unseen: %d asks against %d held-out requests, %d overlaps"
          % (len(asks), len(dev), hits))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", help="a held-out labeled set that must stay "
                    "unseen (jsonl with body.messages)")
    opts = ap.parse_args()
    asks = check_asks(os.path.join(ROOT, "corpus", "asks.jsonl"))
    if opts.dev:
        check_unseen(asks, opts.dev)
    ids = {a["id"] for a in asks}
    c = collections.Counter
    print("corpus: %d asks, %d families; tier %s; turn %s; lang %s" % (
        len(asks), len({a["group"] for a in asks}),
        dict(c(a["tier"] for a in asks)), dict(c(a["turn"] for a in asks)),
        dict(c(a["lang"] for a in asks).most_common())))
    tp = os.path.join(ROOT, "build", "corpus", "tiers.jsonl")
    if os.path.exists(tp):
        rows = check_tiers(tp, ids)
        print("tiers.jsonl: %d requests; shape %s; tier %s" % (
            len(rows), dict(c(r["shape"] for r in rows)),
            dict(c(r["tier"] for r in rows))))
        ap = os.path.join(ROOT, "build", "corpus", "tiers-anthropic.jsonl")
        if sum(1 for _ in open(ap, encoding="utf-8")) != len(rows):
            err("tiers-anthropic.jsonl and tiers.jsonl differ in length")
    sp = os.path.join(ROOT, "build", "corpus", "sessions.jsonl")
    if os.path.exists(sp):
        ss = check_sessions(sp)
        nt = sum(len(s["turns"]) for s in ss)
        print("sessions.jsonl: %d sessions, %d turns; agent %s" % (
            len(ss), nt, dict(c(s["agent"] for s in ss))))
    if errors:
        for e in errors[:50]:
            print("check: " + e, file=sys.stderr)
        sys.exit("check: %d problem(s)" % len(errors))


if __name__ == "__main__":
    main()
