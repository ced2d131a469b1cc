#!/usr/bin/env python3
"""Replays agent sessions through nginx to caching mock providers and
compares session affinity on, off (per-request routing), everything on the
complex model and everything on the cheapest model.  See run.sh.

Phases (the sessions are split into four groups, replayed one group after
the other; half of a group starts at once, half when the phase's event
happens, the turns of active sessions interleaved; a round of turns
stands for an agent's turn time, about 8 s, so LIMIT_TICKS rounds are
about a minute of agent time):
  steady    nothing happens
  limit     the cheaper provider (alpha) reaches a real rpm limit and is at
            it for LIMIT_TICKS rounds: a reload gives it rpm= what it
            served in this run's last minute plus one round of the active
            sessions' turns, so the sessions compete for those last slots
            and then find it full; a reload takes the limit back
  cooldown  alpha answers 429 with Retry-After: COOL (as a provider at its
            own rate limit does): the module cools it down for COOL s and
            fails the turn over to beta
  price     a live price update through Redis makes beta 10 % cheaper
            than alpha, for the rest of the run
"""

import argparse
import http.client
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "t"))
sys.path.insert(0, str(HERE))

from caching_mock import CachingProvider  # noqa: E402
from llmroute_harness import Nginx, free_port  # noqa: E402
from redis_server import RedisServer  # noqa: E402
import sessions_gen  # noqa: E402

# USD per 1M tokens: input, output, cached input.  Alpha's are Anthropic's
# list prices for Haiku 4.5, Sonnet 4.5 and Opus 4.1 (input 1 : 3 : 15,
# output 5 x input, cache reads 0.1 x input); beta 3 % dearer
PRICES = {
    ("alpha", "small"): (1.000, 5.000, 0.100),
    ("beta", "small"): (1.030, 5.150, 0.103),
    ("alpha", "mid"): (3.000, 15.000, 0.300),
    ("beta", "mid"): (3.090, 15.450, 0.309),
    ("alpha", "big"): (15.000, 75.000, 1.500),
    ("beta", "big"): (15.450, 77.250, 1.545),
}
TIERS = {"small": "simple", "mid": "moderate", "big": "complex"}
# the live update: beta 10 % under alpha
BETA_UPDATE = {m: tuple(round(p * 0.9, 3) for p in PRICES[("alpha", m)])
               for m in TIERS}

PHASES = ("steady", "limit", "cooldown", "price")
EVENT_TICK = 5          # the event after this many rounds of turns
LIMIT_TICKS = 8         # rounds alpha stays at its limit
COOL = 2                # seconds alpha cools down (Retry-After)
TICK = 0.2              # seconds a round takes at least while it cools
COMPLETION = 200        # tokens an answer has (and the router assumes)

HTTP = """
    llmroute_zone llmroute:16m;
    llmroute_output_budget simple=%(out)d moderate=%(out)d complex=%(out)d;
    llmroute_redis %(redis)s sync=100ms;
    llmroute_provider alpha %(alpha)s key_env=BENCH_KEY_A %(alpha_limit)s;
    llmroute_provider beta %(beta)s key_env=BENCH_KEY_B;
%(models)s
    server {
        listen 127.0.0.1:%%%%PORT%%%%;
        location /v1/chat/completions {
            llmroute on;
            llmroute_retries 1;
            %(session)s
            proxy_pass $llmroute_url;
            proxy_set_header Host $llmroute_host;
            proxy_set_header Authorization $llmroute_authorization;
            proxy_http_version 1.1;
        }
        location = /metrics { llmroute_metrics; }
    }
"""

MODES = {
    # name: (llmroute_session line, the body's "model")
    "on": ("", None),
    "off": ("llmroute_session off;", None),
    "all-complex": ("", "big"),
    "all-cheapest": ("", "small"),
}


def models_conf():
    return "".join(
        "    llmroute_model %s %s tier=%s input=%.3f output=%.3f "
        "cached_input=%.3f context=400k tools json;\n"
        % (p, m, TIERS[m], *PRICES[(p, m)]) for (p, m) in PRICES)


class Run:
    """One mode: a fresh nginx, fresh mock caches, a flushed Redis."""

    def __init__(self, mode, redis, mocks, workdir):
        self.mode = mode
        self.redis = redis
        self.mocks = mocks
        self.prices = dict(PRICES)
        self.session_line, self.pin = MODES[mode]
        redis.call("FLUSHALL")
        for m in mocks.values():
            m.reset()
        self.ngx = Nginx(Path(workdir) / mode, self.http(""),
                         env_vars={"BENCH_KEY_A": "bench-key-a",
                                   "BENCH_KEY_B": "bench-key-b"},
                         worker_processes=1)
        self.ngx.start()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.ngx.port,
                                               timeout=60)
        self.turns = []
        self.moves = {}
        self.t0 = time.time()

    def http(self, alpha_limit):
        return HTTP % {"redis": self.redis.addr,
                       "alpha": self.mocks["alpha"].url,
                       "beta": self.mocks["beta"].url,
                       "alpha_limit": alpha_limit, "models": models_conf(),
                       "session": self.session_line, "out": COMPLETION}

    def close(self):
        self.conn.close()
        self.ngx.stop()

    # ------------------------------------------------------------ events

    def event(self, phase, start, active):
        if phase == "limit":
            # the module counts alpha's requests of the last minute: all
            # of this run's (a mode replays in well under a minute)
            assert time.time() - self.t0 < 55, "the run outlasts the window"
            rpm = self.mocks["alpha"].served + active
            self.ngx.write_config(self.http("rpm=%d" % rpm if start else ""))
            self.ngx.reload()
            self.conn.close()
        elif phase == "cooldown" and start:
            self.mocks["alpha"].throttle(1, COOL)
            self.cool_until = time.time() + COOL
        elif phase == "price" and start:
            for m, (i, o, c) in BETA_UPDATE.items():
                self.redis.call("HSET", "{llmroute}:price:beta/" + m,
                                "input", "%.3f" % i, "output", "%.3f" % o,
                                "cached_input", "%.3f" % c)
                self.prices[("beta", m)] = (i, o, c)
            self.redis.call("INCR", "{llmroute}:prices:version")
            time.sleep(0.35)

    # ------------------------------------------------------------ turns

    def send(self, session, turn, phase, late):
        body = dict(turn["body"])
        body["model"] = self.pin or "auto"
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = dict(session.get("headers") or {})
        headers["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                self.conn.request("POST", "/v1/chat/completions", data,
                                  headers)
                resp = self.conn.getresponse()
                out = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                time.sleep(0.05)
        else:
            raise RuntimeError("nginx does not answer")
        if resp.status != 200:
            raise RuntimeError("%s: HTTP %d %s" % (self.mode, resp.status,
                                                   out[:300]))
        usage = json.loads(out)["usage"]
        prov = resp.getheader("X-LLMRoute-Provider")
        model = resp.getheader("X-LLMRoute-Model")
        prompt = usage["prompt_tokens"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        comp = usage["completion_tokens"]
        i, o, c = self.prices[(prov, model)]
        cost = ((prompt - cached) * i + cached * c + comp * o) / 1e6
        self.turns.append({"phase": phase, "session": session["id"],
                           "n": turn["n"], "late": late,
                           "where": (prov, model), "prompt": prompt,
                           "cached": cached, "cost": cost})

    def module_moves(self):
        self.conn.request("GET", "/metrics")
        text = self.conn.getresponse().read().decode()
        return {m.group(1): int(m.group(2)) for m in re.finditer(
            r'^llmroute_session_moves_total\{reason="(\w+)"\} (\d+)$', text,
            re.M)}

    def phase(self, phase, group):
        half = (len(group) + 1) // 2
        early, late = group[:half], group[half:]
        active = [[s, 0, False] for s in early]
        tick = 0
        before = self.module_moves()
        self.cool_until = 0
        while active or late:
            if tick == EVENT_TICK:
                active += [[s, 0, True] for s in late]
                late = []
                self.event(phase, True, len(active))
            if tick == EVENT_TICK + LIMIT_TICKS and phase == "limit":
                self.event(phase, False, 0)
            t0 = time.time()
            for a in active:
                s, n, is_late = a
                self.send(s, s["turns"][n], phase, is_late)
                a[1] += 1
            active = [a for a in active if a[1] < len(a[0]["turns"])]
            tick += 1
            if time.time() < self.cool_until:
                time.sleep(max(0.0, TICK - (time.time() - t0)))
        if self.cool_until:
            time.sleep(max(0.0, self.cool_until - time.time()) + 0.2)
        after = self.module_moves()
        self.moves[phase] = {k: after.get(k, 0) - before.get(k, 0)
                             for k in after}


def summarize(turns, phases=None):
    sel = [t for t in turns if phases is None or t["phase"] in phases]
    cost = sum(t["cost"] for t in sel)
    prompt = sum(t["prompt"] for t in sel)
    cached = sum(t["cached"] for t in sel)
    moves = 0
    last = {}
    for t in sel:
        if t["session"] in last and last[t["session"]] != t["where"]:
            moves += 1
        last[t["session"]] = t["where"]
    return {"cost": cost, "share": cached / prompt if prompt else 0.0,
            "moves": moves, "turns": len(sel)}


def count_models(turns):
    out = {}
    for t in turns:
        out[t["where"]] = out.get(t["where"], 0) + 1
    return out


def load_sessions(path, count):
    if path and os.path.exists(path):
        out = []
        with open(path) as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
        return out[:count] if count else out, path
    return sessions_gen.sessions(count or 52), "bench/sessions/sessions_gen.py"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", default=str(
        ROOT / "build" / "corpus" / "sessions.jsonl"),
        help="corpus sessions (JSON lines); generated when absent")
    ap.add_argument("--count", type=int, default=0,
                    help="sessions to replay (default all, 52 generated)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args()

    sessions, source = load_sessions(args.sessions, args.count)
    groups = {p: sessions[i::len(PHASES)] for i, p in enumerate(PHASES)}
    nturns = sum(len(s["turns"]) for s in sessions)
    print("%d sessions, %d turns, from %s" % (len(sessions), nturns, source))

    work = tempfile.mkdtemp(prefix="llmroute-sessions-")
    redis = RedisServer(Path(work) / "redis")
    redis.start()
    mocks = {p: CachingProvider(p, free_port(), completion_tokens=COMPLETION)
             for p in ("alpha", "beta")}
    results = {}
    try:
        for mode in args.modes.split(","):
            t0 = time.time()
            run = Run(mode, redis, mocks, work)
            try:
                for p in PHASES:
                    run.phase(p, groups[p])
            finally:
                run.close()
            results[mode] = run
            print("  %-12s replayed in %.0f s" % (mode, time.time() - t0))
    finally:
        for m in mocks.values():
            m.close()
        redis.kill()

    report(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({m: {"turns": r.turns, "moves": r.moves}
                       for m, r in results.items()}, f)
    return 0 if check(results) else 1


def report(results):
    print()
    print("turns per model: " + "; ".join(
        "%s %s" % (mode, " ".join("%s/%s=%d" % (k[0], k[1], v) for k, v in
                                  sorted(count_models(run.turns).items())))
        for mode, run in results.items()))
    print()
    print("%-12s %12s %8s %7s   %s" % ("mode", "cost USD", "cached", "moves",
                                       "moves by reason (module)"))
    for mode, run in results.items():
        s = summarize(run.turns)
        reasons = {}
        for ph in run.moves.values():
            for k, v in ph.items():
                reasons[k] = reasons.get(k, 0) + v
        print("%-12s %12.4f %8.3f %7d   %s" % (
            mode, s["cost"], s["share"], s["moves"],
            " ".join("%s=%d" % kv for kv in sorted(reasons.items()) if kv[1])
            or "-"))
    print()
    print("per phase: cost USD (cached share, moves)")
    print("%-12s" % "mode" + "".join("%26s" % p for p in PHASES))
    for mode, run in results.items():
        cells = []
        for p in PHASES:
            s = summarize(run.turns, {p})
            cells.append("%26s" % ("%.4f (%.3f, %d)" % (s["cost"], s["share"],
                                                        s["moves"])))
        print("%-12s" % mode + "".join(cells))


def check(results):
    ok = True

    def goal(name, passed, detail):
        nonlocal ok
        ok = ok and passed
        print("%s  %s: %s" % ("PASS" if passed else "FAIL", name, detail))

    print()
    on = results.get("on")
    if on is None:
        return True
    s_on = summarize(on.turns)
    goal("cached share with affinity >= 0.85", s_on["share"] >= 0.85,
         "%.3f" % s_on["share"])
    if "all-complex" in results:
        cx = summarize(results["all-complex"].turns)["cost"]
        goal("cost with affinity <= 0.5 x all-complex",
             s_on["cost"] <= 0.5 * cx,
             "%.4f vs %.4f (%.2f)" % (s_on["cost"], cx, s_on["cost"] / cx))
    if "off" in results:
        off = results["off"]
        worse = [p for p in PHASES
                 if summarize(on.turns, {p})["cost"]
                 > summarize(off.turns, {p})["cost"]]
        goal("affinity on never costs more than off in a phase", not worse,
             "worse in: %s" % (", ".join(worse) or "none"))
        ev = {"price", "limit", "cooldown"}
        a = summarize(on.turns, ev)["cost"]
        b = summarize(off.turns, ev)["cost"]
        goal("on >= 15 % cheaper than off over price, limit, cooldown",
             a <= 0.85 * b, "%.4f vs %.4f (%.1f %% less)"
             % (a, b, 100 * (1 - a / b) if b else 0))
    first = [t for t in on.turns
             if t["phase"] == "price" and t["late"] and t["n"] == 0]
    on_beta = [t for t in first if t["where"][0] == "beta"]
    goal("new sessions go to the new cheapest provider after the update",
         bool(first) and len(on_beta) == len(first),
         "%d of %d first turns on beta" % (len(on_beta), len(first)))
    return ok


if __name__ == "__main__":
    sys.exit(main())
