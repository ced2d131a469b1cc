"""Realistic tool traffic for the corpus: the files an agent reads, the test
logs and grep output it sees, and the short answers it gives between turns.

Everything is generated from a random.Random the caller seeds, so the corpus,
its expansion and the sessions are reproducible.  Tool calls are written in a
neutral vocabulary (read_file, bash, grep, edit_file, list_dir); expand.py
maps them onto each agent CLI's own tool names and parameters.
"""

import json

EXT = {"python": "py", "go": "go", "rust": "rs", "c": "c", "cpp": "cpp",
       "java": "java", "kotlin": "kt", "javascript": "js", "node": "js",
       "typescript": "ts", "react": "tsx", "vue": "vue", "ruby": "rb",
       "php": "php", "csharp": "cs", "swift": "swift", "ios": "swift",
       "android": "kt", "mobile": "dart", "sql": "sql", "shell": "sh",
       "data": "py", "ml": "py", "scala": "scala", "elixir": "ex",
       "haskell": "hs", "lua": "lua", "r": "R", "embedded": "c",
       "jvm": "java", "terraform": "tf", "kubernetes": "yaml",
       "docker": "Dockerfile", "nginx": "conf", "infra": "yaml",
       "ci": "yml", "security": "py", "databases": "sql", "sre": "log",
       "systems": "go", "compilers": "ml", "runtime": "c"}

# (path, content) per language family: small, plausible project files
FILES = {
    "py": [
        ("app/config.py", '''import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    port: int = 8000
    debug: bool = False
    max_retries: int = 3


def load() -> Settings:
    return Settings(
        database_url=os.environ["DATABASE_URL"],
        redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        port=int(os.environ.get("PORT", "8000")),
        debug=os.environ.get("DEBUG") == "1",
    )
'''),
        ("app/models.py", '''from sqlalchemy import Column, DateTime, ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()


class Order(Base):
    __tablename__ = "orders"
    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False)
    status = Column(String(20), default="new", nullable=False)
    payment_ref = Column(String(64))
    created_at = Column(DateTime(timezone=True))
    lines = relationship("OrderLine", back_populates="order")


class OrderLine(Base):
    __tablename__ = "order_lines"
    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("orders.id"), nullable=False)
    sku = Column(String(32), nullable=False)
    qty = Column(Integer, nullable=False)
    unit_price = Column(Numeric(12, 2), nullable=False)
    order = relationship("Order", back_populates="lines")
'''),
        ("app/services/orders.py", '''import logging
from decimal import Decimal

from app.db import session_scope
from app.models import Order, OrderLine

log = logging.getLogger(__name__)


def order_total(order_id: int) -> Decimal:
    with session_scope() as s:
        lines = s.query(OrderLine).filter_by(order_id=order_id).all()
        total = sum((l.unit_price * l.qty for l in lines), Decimal(0))
        log.debug("order %s total %s", order_id, total)
        return total


def mark_paid(order_id: int, ref: str) -> None:
    with session_scope() as s:
        o = s.get(Order, order_id)
        if o is None:
            raise LookupError(order_id)
        o.status = "paid"
        o.payment_ref = ref
'''),
        ("src/utils/retry.py", '''import random
import time


def backoff(attempt, base=0.2, cap=10.0):
    return min(cap, base * 2 ** attempt) * random.uniform(0.5, 1.0)


def call_with_retry(fn, attempts=5, retry_on=(ConnectionError,)):
    for i in range(attempts):
        try:
            return fn()
        except retry_on:
            if i == attempts - 1:
                raise
            time.sleep(backoff(i))
'''),
        ("tests/test_api.py", '''import pytest

from app.main import create_app


@pytest.fixture
def client():
    app = create_app({"TESTING": True})
    with app.test_client() as c:
        yield c


def test_health(client):
    assert client.get("/healthz").status_code == 200


def test_create_item(client):
    r = client.post("/items", json={"name": "lamp", "price": 12.5})
    assert r.status_code == 201
    assert r.get_json()["name"] == "lamp"
'''),
    ],
    "go": [
        ("internal/api/handlers.go", '''package api

import (
\t"encoding/json"
\t"net/http"
\t"strconv"
)

type itemStore interface {
\tGet(id int) (Item, error)
\tList(limit, offset int) ([]Item, error)
}

func listItems(s itemStore) http.HandlerFunc {
\treturn func(w http.ResponseWriter, r *http.Request) {
\t\tlimit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
\t\tif limit <= 0 || limit > 100 {
\t\t\tlimit = 20
\t\t}
\t\titems, err := s.List(limit, 0)
\t\tif err != nil {
\t\t\thttp.Error(w, err.Error(), http.StatusInternalServerError)
\t\t\treturn
\t\t}
\t\tw.Header().Set("Content-Type", "application/json")
\t\tjson.NewEncoder(w).Encode(items)
\t}
}
'''),
        ("internal/store/store.go", '''package store

import (
\t"context"
\t"sync"
\t"time"
)

type Item struct {
\tKey     string
\tValue   []byte
\tExpires time.Time
}

type Store struct {
\tmu    sync.RWMutex
\titems map[string]Item
}

func New() *Store { return &Store{items: make(map[string]Item)} }

func (s *Store) Get(ctx context.Context, k string) ([]byte, bool) {
\ts.mu.RLock()
\tdefer s.mu.RUnlock()
\tit, ok := s.items[k]
\tif !ok || (!it.Expires.IsZero() && time.Now().After(it.Expires)) {
\t\treturn nil, false
\t}
\treturn it.Value, true
}
'''),
        ("cmd/server/main.go", '''package main

import (
\t"log"
\t"net/http"
\t"os"

\t"example.com/svc/internal/api"
)

func main() {
\taddr := os.Getenv("ADDR")
\tif addr == "" {
\t\taddr = ":8080"
\t}
\tmux := http.NewServeMux()
\tapi.Register(mux)
\tlog.Printf("listening on %s", addr)
\tlog.Fatal(http.ListenAndServe(addr, mux))
}
'''),
    ],
    "js": [
        ("src/routes/users.js", '''const express = require('express');
const db = require('../db');

const router = express.Router();

router.get('/:id', async (req, res, next) => {
  try {
    const user = await db.users.findById(req.params.id);
    if (!user) return res.status(404).json({ error: 'not found' });
    res.json(user);
  } catch (err) {
    next(err);
  }
});

module.exports = router;
'''),
        ("src/lib/cache.js", '''const cache = new Map();

function memo(key, ttlMs, fn) {
  const hit = cache.get(key);
  if (hit && hit.until > Date.now()) return hit.value;
  const value = fn();
  cache.set(key, { value, until: Date.now() + ttlMs });
  return value;
}

module.exports = { memo };
'''),
    ],
    "ts": [
        ("src/store/cart.ts", '''export interface CartItem {
  sku: string;
  qty: number;
  price: number;
}

export function addItem(items: CartItem[], item: CartItem): CartItem[] {
  const existing = items.find(i => i.sku === item.sku);
  if (existing) {
    return items.map(i => (i.sku === item.sku ? { ...i, qty: i.qty + item.qty } : i));
  }
  return [...items, item];
}

export function total(items: CartItem[]): number {
  return items.reduce((sum, i) => sum + i.qty * i.price, 0);
}
'''),
        ("src/api/client.ts", '''export interface Page<T> {
  items: T[];
  next?: string;
}

export async function getPage<T>(url: string, cursor?: string): Promise<Page<T>> {
  const u = new URL(url);
  if (cursor) u.searchParams.set('cursor', cursor);
  const res = await fetch(u);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return (await res.json()) as Page<T>;
}
'''),
        ("src/components/OrderList.tsx", '''import { useEffect, useState } from 'react';
import { getPage } from '../api/client';
import type { Order } from '../types';

export function OrderList({ status }: { status: string }) {
  const [orders, setOrders] = useState<Order[]>([]);
  useEffect(() => {
    getPage<Order>(`/api/orders?status=${status}`).then(p => setOrders(p.items));
  }, [status]);
  return <ul>{orders.map(o => <li key={o.id}>{o.number}</li>)}</ul>;
}
'''),
    ],
    "rs": [
        ("src/config.rs", '''use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
pub struct Config {
    pub listen: String,
    pub workers: usize,
    #[serde(default)]
    pub verbose: bool,
}

impl Config {
    pub fn load(p: &Path) -> anyhow::Result<Self> {
        let s = std::fs::read_to_string(p)?;
        Ok(toml::from_str(&s)?)
    }
}
'''),
    ],
    "c": [
        ("src/ring.h", '''#ifndef RING_H
#define RING_H

#include <stddef.h>
#include <stdint.h>

/* single-producer single-consumer byte ring; size is a power of two */
struct ring {
    uint8_t *buf;
    size_t size;
    size_t head;   /* written by the producer */
    size_t tail;   /* written by the consumer */
};

int ring_put(struct ring *r, const uint8_t *p, size_t n);
size_t ring_get(struct ring *r, uint8_t *p, size_t n);

#endif
'''),
        ("src/ring.c", '''#include <stdint.h>
#include <string.h>
#include "ring.h"

int ring_put(struct ring *r, const uint8_t *p, size_t n)
{
    size_t free = r->size - (r->head - r->tail);
    if (n > free)
        return -1;
    for (size_t i = 0; i < n; i++)
        r->buf[(r->head + i) & (r->size - 1)] = p[i];
    r->head += n;
    return 0;
}
'''),
    ],
    "java": [
        ("src/test/java/com/acme/orders/OrderServiceTest.java", '''package com.acme.orders;

import static org.junit.jupiter.api.Assertions.*;
import static org.mockito.Mockito.*;

import org.junit.jupiter.api.Test;

class OrderServiceTest {
    private final OrderRepository repo = mock(OrderRepository.class);
    private final PaymentClient payments = mock(PaymentClient.class);
    private final OrderService svc = new OrderService(repo, payments);

    @Test
    void placeChargesTheCustomer() {
        Cart cart = Cart.of(42L, Line.of("SKU-1", 2, "9.99"));
        Order o = svc.place(cart);
        verify(payments).charge(42L, o.getTotal());
    }

    @Test
    void placeRejectsEmptyCart() {
        assertThrows(IllegalArgumentException.class, () -> svc.place(Cart.of(42L)));
    }
}
'''),
        ("src/main/java/com/acme/orders/OrderService.java", '''package com.acme.orders;

import java.util.List;
import java.util.Optional;

public class OrderService {
    private final OrderRepository repo;
    private final PaymentClient payments;

    public OrderService(OrderRepository repo, PaymentClient payments) {
        this.repo = repo;
        this.payments = payments;
    }

    public Optional<Order> find(long id) {
        return repo.findById(id);
    }

    public Order place(Cart cart) {
        Order o = Order.from(cart);
        repo.save(o);
        payments.charge(o.getCustomerId(), o.getTotal());
        return o;
    }
}
'''),
    ],
    "sql": [
        ("db/migrations/0042_orders.sql", '''CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status      text NOT NULL DEFAULT 'new',
    total       numeric(12,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
'''),
    ],
    "yaml": [
        ("deploy/api.yaml", '''apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: ghcr.io/acme/api:2.3.1
          ports: [{containerPort: 8080}]
'''),
    ],
    "sh": [
        ("scripts/deploy.sh", '''#!/usr/bin/env bash
set -euo pipefail
ENV=${1:?usage: deploy.sh env}
docker build -t "app:$GIT_SHA" .
docker push "registry.local/app:$GIT_SHA"
kubectl -n "$ENV" set image deploy/app app="registry.local/app:$GIT_SHA"
kubectl -n "$ENV" rollout status deploy/app --timeout=300s
'''),
    ],
}
FAMILY = {"py": "py", "go": "go", "js": "js", "ts": "ts", "tsx": "ts",
          "vue": "ts", "rs": "rs", "c": "c", "cpp": "c", "java": "java",
          "kt": "java", "cs": "java", "scala": "java", "sql": "sql",
          "yaml": "yaml", "yml": "yaml", "tf": "yaml", "sh": "sh",
          "conf": "sh", "Dockerfile": "sh"}

COMMENT = {"py": "#", "sh": "#", "yaml": "#", "sql": "--", "go": "//",
           "js": "//", "ts": "//", "rs": "//", "c": "/*", "java": "//"}

TEST_LOGS = {
    "py": ['''============================= test session starts ==============================
platform linux -- Python 3.12.3, pytest-8.2.1, pluggy-1.5.0
rootdir: /home/dev/proj
collected 47 items

tests/test_api.py ........F......                                        [ 31%]
tests/test_orders.py ................                                    [ 65%]
tests/test_retry.py ................                                     [100%]

=================================== FAILURES ===================================
_____________________________ test_create_item _________________________________
    def test_create_item(client):
        r = client.post("/items", json={"name": "lamp", "price": 12.5})
>       assert r.status_code == 201
E       assert 500 == 201
E        +  where 500 = <WrapperTestResponse streamed [500 INTERNAL SERVER ERROR]>.status_code

tests/test_api.py:19: AssertionError
=========================== short test summary info ============================
FAILED tests/test_api.py::test_create_item - assert 500 == 201
========================= 1 failed, 46 passed in 3.21s =========================''',
           '''============================= test session starts ==============================
collected 12 items

tests/test_parser.py ............                                        [100%]

============================== 12 passed in 0.34s =============================='''],
    "go": ['''--- FAIL: TestStoreExpiry (0.00s)
    store_test.go:41: Get("k") = "v", true; want miss after expiry
FAIL
FAIL\texample.com/svc/internal/store\t0.012s
ok  \texample.com/svc/internal/api\t0.041s
FAIL''', '''ok  \texample.com/svc/internal/store\t0.015s
ok  \texample.com/svc/internal/api\t0.044s'''],
    "js": [''' FAIL  src/routes/users.test.js
  GET /users/:id
    ✓ returns the user (23 ms)
    ✕ returns 404 for a missing user (7 ms)

  ● GET /users/:id › returns 404 for a missing user

    expect(received).toBe(expected) // Object.is equality

    Expected: 404
    Received: 500

Tests:       1 failed, 11 passed, 12 total
Time:        1.84 s'''],
    "rs": ['''running 9 tests
test config::tests::loads_defaults ... ok
test config::tests::rejects_zero_workers ... FAILED

failures:

---- config::tests::rejects_zero_workers stdout ----
thread 'config::tests::rejects_zero_workers' panicked at src/config.rs:41:9:
expected an error for workers = 0

test result: FAILED. 8 passed; 1 failed; 0 ignored; 0 measured'''],
    "java": ['''[INFO] Running com.acme.orders.OrderServiceTest
[ERROR] Tests run: 6, Failures: 1, Errors: 0, Skipped: 0, Time elapsed: 0.412 s
[ERROR] placeRejectsEmptyCart  Time elapsed: 0.01 s  <<< FAILURE!
org.opentest4j.AssertionFailedError: Expected IllegalArgumentException to be thrown, but nothing was thrown.
[INFO] BUILD FAILURE'''],
}

REPLIES = [
    "Here is the change:\n\n```{lang}\n{code}```\n\nIt keeps the existing "
    "behaviour for the other cases.",
    "Done. The updated version:\n\n```{lang}\n{code}```",
    "I made the change below; run the tests to confirm.\n\n```{lang}\n{code}```",
    "Sure — here's a first version:\n\n```{lang}\n{code}```\n\nLet me know "
    "if you want it split up differently.",
]


def family(stack):
    ext = EXT.get(stack.split("->")[-1], "py")
    return FAMILY.get(ext, "py")


def project_file(stack, rng):
    return rng.choice(FILES[family(stack)])


def big_file(stack, rng, lines):
    """A long source file of the stack's language (a generated module the
    agent reads whole): the project's files repeated with fresh names."""
    fam = family(stack)
    out = []
    k = 0
    while len(out) < lines:
        path, content = rng.choice(FILES[fam])
        k += 1
        for l in content.split("\n"):
            for w in ("order", "item", "user", "cart", "config", "store"):
                l = l.replace(w, "%s%d" % (w, k))
            out.append(l)
    name = rng.choice(["legacy", "generated", "bundle", "all"])
    path = path.rsplit("/", 1)[0] + "/%s_%d.%s" % (
        name, rng.randrange(100), path.rsplit(".", 1)[-1])
    return path, "\n".join(out[:lines]) + "\n"


def test_log(stack, rng):
    fam = family(stack)
    return rng.choice(TEST_LOGS.get(fam, TEST_LOGS["py"]))


def numbered(content):
    """File contents the way agents' read tools return them: numbered."""
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join("%6d\t%s" % (i + 1, l) for i, l in enumerate(lines))


def grep_output(stack, rng, word):
    path, content = project_file(stack, rng)
    out = []
    for i, l in enumerate(content.split("\n")):
        if word.lower() in l.lower():
            out.append("%s:%d:%s" % (path, i + 1, l))
    if not out:
        lines = [l for l in content.split("\n") if l.strip()]
        k = rng.randrange(len(lines))
        out.append("%s:%d:%s" % (path, k + 1, lines[k]))
    return "\n".join(out[:12])


def ls_output(stack, rng):
    fam = family(stack)
    paths = sorted({p for p, _ in FILES[fam]} |
                   {"README.md", ".gitignore", "Makefile"})
    return "\n".join(paths)


def git_output(rng):
    return rng.choice([
        "On branch feature/retry\nChanges not staged for commit:\n"
        "  modified:   src/utils/retry.py\n  modified:   tests/test_retry.py\n",
        "a41c9e2 fix: handle empty cart\n77d0b1f feat: cursor pagination\n"
        "0c3f5aa chore: bump deps\n9e12d04 refactor: split order service",
        " src/api/client.ts | 14 +++++++++-----\n 1 file changed, 9 "
        "insertions(+), 5 deletions(-)"])


def reply(stack, rng):
    path, content = project_file(stack, rng)
    lang = path.rsplit(".", 1)[-1]
    lines = content.split("\n")
    start = rng.randrange(max(1, len(lines) - 10))
    code = "\n".join(lines[start:start + rng.randint(6, 12)]) + "\n"
    return rng.choice(REPLIES).format(lang=lang, code=code)


def keyword(text, rng):
    words = [w.strip("`'\".,:;()[]{}") for w in text.split()]
    words = [w for w in words if len(w) > 4 and w.isidentifier()]
    return rng.choice(words) if words else "TODO"


def call_id(rng):
    return "call_%024x" % rng.getrandbits(96)


def tool_round(stack, text, rng, kind=None):
    """One assistant tool-call turn and its results, neutral vocabulary:
    returns (assistant message, [tool messages])."""
    kind = kind or rng.choice(["read", "read", "grep", "test", "ls", "git",
                               "edit", "bigread"])
    calls = []
    if kind == "bigread":
        path, content = big_file(stack, rng, rng.randint(250, 1200))
        calls.append(("read_file", {"path": path}, numbered(content)))
    elif kind == "read":
        path, content = project_file(stack, rng)
        calls.append(("read_file", {"path": path}, numbered(content)))
        if rng.random() < 0.3:
            path2, content2 = project_file(stack, rng)
            if path2 != path:
                calls.append(("read_file", {"path": path2},
                              numbered(content2)))
    elif kind == "grep":
        w = keyword(text, rng)
        calls.append(("grep", {"pattern": w, "path": "."},
                      grep_output(stack, rng, w)))
    elif kind == "test":
        cmd = {"py": "python -m pytest -q", "go": "go test ./...",
               "js": "npm test", "ts": "npm test", "rs": "cargo test",
               "java": "mvn -q test"}.get(family(stack), "make test")
        calls.append(("bash", {"command": cmd}, test_log(stack, rng)))
    elif kind == "ls":
        calls.append(("list_dir", {"path": "."}, ls_output(stack, rng)))
    elif kind == "git":
        cmd = rng.choice(["git status", "git log --oneline -4",
                          "git diff --stat"])
        calls.append(("bash", {"command": cmd}, git_output(rng)))
    else:
        path, content = project_file(stack, rng)
        lines = [l for l in content.split("\n") if l.strip()]
        old = rng.choice(lines)
        note = COMMENT.get(family(stack), "#") + " checked: keep in sync"
        calls.append(("edit_file", {"path": path, "old_string": old,
                                    "new_string": old + "  " + note},
                      "The file %s has been updated." % path))
    amsg = {"role": "assistant", "content": None, "tool_calls": []}
    tmsgs = []
    for name, args, result in calls:
        cid = call_id(rng)
        amsg["tool_calls"].append({"id": cid, "type": "function", "function":
                                   {"name": name,
                                    "arguments": json.dumps(args)}})
        tmsgs.append({"role": "tool", "tool_call_id": cid,
                      "content": result})
    return amsg, tmsgs
