#!/usr/bin/env python3
"""Build corpus/asks.jsonl from the authored sources in corpus/src/.

corpus/src/{simple,moderate,complex}.txt hold the asks, one block per task
family; corpus/src/pastes.txt holds the longer pasted evidence (code, logs,
dumps) that asks reference as {{name}}; mechanical pastes (a 260-line JSON
to reformat, a CSV to convert) are generated here from a fixed seed.  The
format is described in tools/corpus/README.md.  Deterministic: the same
sources always give the same file.
"""

import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import toolio  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(ROOT, "corpus", "src")
OUT = os.path.join(ROOT, "corpus", "asks.jsonl")
TIERS = ("simple", "moderate", "complex")
LANGS = {"en", "es", "de", "fr", "zh", "ja", "pt", "ru", "it", "ko"}

# ---- generated mechanical pastes -------------------------------------------

WORDS = ("amber basil cedar delta ember fjord garnet harbor indigo juniper "
         "kestrel lagoon maple nectar onyx pepper quartz raven sierra "
         "tundra umber violet willow xenon yarrow zephyr").split()
FIRST = ("Ana Ben Chloe Dmitri Elif Farah Goran Hana Ivan Jonas Kenji Lena "
         "Mateo Nadia Omar Priya Quinn Rosa Sven Tomas Uma Viktor Wen "
         "Ximena Yusuf Zoe").split()
LAST = ("Alvarez Brandt Chen Dubois Eriksen Fischer Garcia Haddad Ito "
        "Jensen Kowalski Lopez Moreau Novak Okafor Petrov Rossi Silva "
        "Tanaka Unger Varga Weber Yilmaz Zhang").split()


def gen_json_inventory(rng, n):
    items = []
    lines = 0
    i = 0
    while lines < n:
        i += 1
        it = {"sku": "SKU-%05d" % rng.randrange(100000),
              "name": "%s %s" % (rng.choice(WORDS).title(),
                                 rng.choice(["lamp", "chair", "mug", "desk",
                                             "shelf", "rug", "vase"])),
              "price": round(rng.uniform(3, 400), 2),
              "stock": {"warehouse": rng.choice(["ber", "lis", "ams"]),
                        "qty": rng.randrange(0, 500)},
              "tags": rng.sample(WORDS, rng.randint(1, 3)),
              "active": rng.random() < 0.8}
        items.append(it)
        lines += 14
    return json.dumps({"generated": "2025-03-14T09:00:00Z", "items": items},
                      separators=(",", ":"))


def gen_csv_employees(rng, n):
    out = ["id,first_name,last_name,department,start_date,salary"]
    for i in range(n):
        out.append("%d,%s,%s,%s,20%02d-%02d-%02d,%d" % (
            1000 + i, rng.choice(FIRST), rng.choice(LAST),
            rng.choice(["Eng", "Sales", "Ops", "Finance", "Support"]),
            rng.randint(12, 24), rng.randint(1, 12), rng.randint(1, 28),
            rng.randrange(42000, 160000, 500)))
    return "\n".join(out)


def gen_py_module(rng, n):
    out = ['"""Helpers for the reporting jobs."""', "", "import csv",
           "import datetime as dt", "from collections import defaultdict",
           ""]
    k = 0
    while len(out) < n:
        k += 1
        name = "%s_%s" % (rng.choice(["load", "sum", "group", "filter",
                                      "format", "merge"]), rng.choice(WORDS))
        out += ["", "def %s_%d(rows, key=%r):" % (name, k, rng.choice(WORDS)),
                "    acc = defaultdict(float)",
                "    for r in rows:",
                "        if r.get(key) is None:",
                "            continue",
                "        acc[r[key]] += float(r.get('amount', 0))",
                "    return dict(sorted(acc.items()))", ""]
    return "\n".join(out[:n])


def gen_py_prints(rng, n):
    out = ["import logging", "import sys", ""]
    k = 0
    while len(out) < n:
        k += 1
        out += ["def step_%d(ctx):" % k,
                "    print('step %d: start', ctx.run_id)" % k,
                "    items = ctx.fetch(%r)" % rng.choice(WORDS),
                "    if not items:",
                "        print('step %d: nothing to do')" % k,
                "        return 0",
                "    print(f'step %d: {len(items)} items')" % k,
                "    return len(items)", ""]
    return "\n".join(out[:n])


def gen_contact_dump(rng, n):
    out = []
    for i in range(n):
        f, l = rng.choice(FIRST), rng.choice(LAST)
        kind = rng.random()
        if kind < 0.6:
            out.append("%s %s <%s.%s@%s.example>" % (
                f, l, f.lower(), l.lower(), rng.choice(WORDS)))
        elif kind < 0.8:
            out.append("call %s on +49 30 %07d" % (f, rng.randrange(10**7)))
        else:
            out.append("%s from %s said to ping %s@%s.io" % (
                f, rng.choice(WORDS).title(), l.lower(), rng.choice(WORDS)))
    return "\n".join(out)


def gen_json_camel(rng, n):
    def key():
        a, b = rng.sample(WORDS, 2)
        return a + b.title()
    objs = []
    for i in range(max(1, n // 7)):
        objs.append({key(): rng.randrange(1000), key(): rng.choice(WORDS),
                     key(): {key(): rng.random() < 0.5,
                             key(): [rng.randrange(9) for _ in range(3)]},
                     key(): None})
    return json.dumps(objs, indent=2)


def gen_app_log(rng, n):
    out = []
    t = 8 * 3600
    for i in range(n):
        t += rng.randint(0, 9)
        lvl = rng.choices(["INFO", "DEBUG", "WARN", "ERROR"],
                          [60, 25, 10, 5])[0]
        msg = {"INFO": "request handled path=/api/%s status=200 ms=%d" % (
                   rng.choice(WORDS), rng.randint(2, 300)),
               "DEBUG": "cache %s key=%s" % (rng.choice(["hit", "miss"]),
                                             rng.choice(WORDS)),
               "WARN": "slow query ms=%d table=%s" % (
                   rng.randint(500, 4000), rng.choice(WORDS)),
               "ERROR": "upstream %s failed: %s" % (
                   rng.choice(WORDS), rng.choice(
                       ["connection reset", "timeout after 5s",
                        "502 bad gateway"]))}[lvl]
        out.append("2025-03-14T%02d:%02d:%02dZ %-5s [%s] %s" % (
            t // 3600 % 24, t // 60 % 60, t % 60, lvl,
            rng.choice(["api", "worker", "sched"]), msg))
    return "\n".join(out)


GENERATORS = {k[4:]: v for k, v in globals().items() if k.startswith("gen_")}


def load_pastes():
    pastes = {}
    name = None
    buf = []
    with open(os.path.join(SRC, "pastes.txt")) as f:
        for line in f:
            m = re.match(r"^=== (\w+)\s*$", line)
            if m:
                if name:
                    pastes[name] = "".join(buf).strip("\n")
                name, buf = m.group(1), []
            elif name:
                buf.append(line)
    if name:
        pastes[name] = "".join(buf).strip("\n")
    return pastes


def expand(text, rng, pastes):
    def sub(m):
        name, n = m.group(1), int(m.group(2) or 1)
        if name in pastes:
            return pastes[name]
        if name in GENERATORS:
            return GENERATORS[name](rng, n)
        sys.exit("make_asks: unknown paste {{%s}}" % name)
    return re.sub(r"\{\{(\w+)(?: (\d+))?\}\}", sub, text)

# ---- typos ------------------------------------------------------------------


def typo(text, rng):
    """Lowercase the prose, swap or drop letters in a few words; code after
    the first blank line is left alone."""
    head, sep, rest = text.partition("\n\n")
    words = head.lower().split(" ")
    cand = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    for i in rng.sample(cand, min(len(cand), max(1, len(cand) // 5))):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        if rng.random() < 0.5:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        else:
            w = w[:j] + w[j + 1:]
        words[i] = w
    head = " ".join(words).rstrip("?.!")
    return head + sep + rest

# ---- parsing ----------------------------------------------------------------


DIRECTIVE = re.compile(r"^@(typo|terse|para|follow|loop|then|%s)(:.*)?$"
                       % "|".join(sorted(LANGS)))


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:40]


def parse(path):
    blocks = []
    cur = None
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.startswith("## "):
            f = [x.strip() for x in line[3:].split("|")]
            tier, why, stack = f[:3]
            lang = f[3] if len(f) > 3 else "en"
            assert tier in TIERS and lang in LANGS, line
            cur = {"tier": tier, "why": why, "stack": stack, "lang": lang,
                   "body": [], "dirs": []}
            blocks.append(cur)
        elif cur is None:
            continue
        elif DIRECTIVE.match(line):
            cur["dirs"].append(line[1:])
        elif cur["dirs"]:
            if line.strip():
                sys.exit("make_asks: text after a directive in %s: %r"
                         % (path, line))
        else:
            cur["body"].append(line)
    for b in blocks:
        b["text"] = "\n".join(b["body"]).strip("\n")
    return blocks


def unescape(s):
    return s.replace("\\n", "\n")


# short follow-ups whose tier is the earlier ask's (lang, text)
FOLLOWUPS = [("en", "do it"), ("en", "try again"), ("en", "now the tests"),
             ("en", "same for the other file"), ("en", "ok go ahead"),
             ("en", "continue"), ("en", "yes please"),
             ("en", "that didn't work, same error"),
             ("en", "can you make it shorter"), ("en", "looks good, apply it"),
             ("en", "now add error handling"), ("en", "go on"),
             ("en", "fix the lint errors too"), ("en", "use the other approach"),
             ("en", "ok"), ("en", "hmm, still failing"),
             ("en", "now update the docs"), ("en", "do the same in the tests"),
             ("es", "hazlo"), ("de", "nochmal bitte"), ("fr", "vas-y"),
             ("zh", "再试一次"), ("ja", "テストも書いて"), ("pt", "agora os testes"),
             ("ru", "давай, делай"), ("it", "continua")]
AUTO_FOLLOW = 0.30      # share of families that get a generated follow-up
AUTO_LOOP = 0.15        # share of families without @loop that get one


def user(text):
    return {"role": "user", "content": text}


def build():
    pastes = load_pastes()
    asks = []
    n = {t: 0 for t in TIERS}
    for tier in TIERS:
        for b in parse(os.path.join(SRC, tier + ".txt")):
            n[tier] += 1
            group = "%s%03d-%s" % (tier[0], n[tier], slug(b["why"]))
            rng = random.Random(group)
            text = expand(b["text"], rng, pastes)
            base = {"tier": tier, "why": b["why"], "group": group,
                    "stack": b["stack"]}

            def add(suffix, lang, turn, messages, **kw):
                a = dict(base, id=group + "-" + suffix, lang=lang, turn=turn,
                         messages=messages)
                a.update(kw)
                asks.append(a)
            add(b["lang"], b["lang"], "single", [user(text)])
            k = 0
            for d in b["dirs"]:
                k += 1
                key, _, arg = d.partition(":")
                arg = expand(unescape(arg.strip()), rng, pastes)
                if key == "typo":
                    add("typo", b["lang"], "single", [user(typo(text, rng))],
                        why=b["why"] + " (typo'd)")
                elif key == "terse":
                    add("terse%d" % k, "en", "single", [user(arg)],
                        why=b["why"] + " (terse)")
                elif key == "para":
                    add("para%d" % k, "en", "single", [user(arg)],
                        why=b["why"] + " (paraphrase)")
                elif key in LANGS:
                    add(key, key, "single", [user(arg)],
                        why=b["why"] + " (%s)" % key)
                elif key == "follow":
                    add("fu%d" % k, "en", "followup",
                        [user(text), {"role": "assistant",
                                      "content": toolio.reply(b["stack"],
                                                              rng)},
                         user(arg)],
                        why="follow-up %r inherits: %s" % (arg, b["why"]))
                elif key == "loop":
                    msgs = [user(text)]
                    for r in range(rng.randint(1, 3)):
                        am, tms = toolio.tool_round(b["stack"], text, rng)
                        msgs.append(am)
                        msgs.extend(tms)
                    add("loop", b["lang"], "toolloop", msgs,
                        why="tool loop inherits the ask: " + b["why"])
                elif key == "then":
                    t2, why2, txt2 = [x.strip() for x in arg.split("|", 2)]
                    assert t2 in TIERS, d
                    a = dict(base, id=group + "-then%d" % k, lang="en",
                             turn="followup", tier=t2,
                             group=group + "-then%d" % k,
                             why="new ask after a %s one: %s" % (tier, why2),
                             messages=[user(text), {
                                 "role": "assistant",
                                 "content": toolio.reply(b["stack"], rng)},
                                 user(txt2)])
                    asks.append(a)
                else:
                    sys.exit("make_asks: unknown directive @%s in %s"
                             % (key, group))
            keys = {d.partition(":")[0] for d in b["dirs"]}
            if rng.random() < AUTO_FOLLOW:
                lang, fu = rng.choice(FOLLOWUPS)
                msgs = [user(text), {"role": "assistant",
                                     "content": toolio.reply(b["stack"],
                                                             rng)},
                        user(fu)]
                turn = "followup"
                if rng.random() < 0.35:
                    am, tms = toolio.tool_round(b["stack"], text, rng)
                    msgs += [am] + tms
                    turn = "toolloop"
                add("autofu", lang, turn, msgs,
                    why="follow-up %r inherits: %s" % (fu, b["why"]))
            if "loop" not in keys and rng.random() < AUTO_LOOP:
                msgs = [user(text)]
                for r in range(rng.randint(1, 2)):
                    am, tms = toolio.tool_round(b["stack"], text, rng)
                    msgs += [am] + tms
                add("autoloop", b["lang"], "toolloop", msgs,
                    why="tool loop inherits the ask: " + b["why"])
    return asks


def main():
    asks = build()
    ids = [a["id"] for a in asks]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        sys.exit("make_asks: duplicate ids %s" % sorted(dup))
    keys = ("id", "tier", "why", "group", "lang", "turn", "stack", "messages")
    with open(OUT, "w", encoding="utf-8") as f:
        for a in asks:
            f.write(json.dumps({k: a[k] for k in keys}, ensure_ascii=False)
                    + "\n")
    print("make_asks: %d asks -> %s" % (len(asks), os.path.relpath(OUT)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
