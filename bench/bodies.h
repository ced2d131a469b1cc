
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Deterministic generator of realistic chat-completion request bodies for
 * the benchmarks (micro.c, json_compare.c, genbody.c): a system prompt, a
 * coding-assistant conversation of user/assistant turns with prose, fenced
 * code (so \n, \t, \" and \\ escapes), some UTF-8, one tool definition, and
 * a final user question.  Message sizes grow with the target size, as in
 * agent traffic (pasted files, long tool results), so a 1 MB body is tens
 * of large messages rather than thousands of tiny ones.
 *
 * bench_body(target, &len) returns a malloc()ed, NUL-terminated body of
 * about target bytes (a little more, never less).
 */


#ifndef _BENCH_BODIES_H_INCLUDED_
#define _BENCH_BODIES_H_INCLUDED_


#include <stdint.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    char      *data;
    size_t     len;
    size_t     cap;
} bench_buf_t;


static uint64_t  bench_rng = 0x9e3779b97f4a7c15ULL;


static uint64_t
bench_rand(void)
{
    /* xorshift64* */
    bench_rng ^= bench_rng >> 12;
    bench_rng ^= bench_rng << 25;
    bench_rng ^= bench_rng >> 27;
    return bench_rng * 0x2545f4914f6cdd1dULL;
}


static void
bench_put(bench_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL) {
            abort();
        }
    }

    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}


static void
bench_puts(bench_buf_t *b, const char *s)
{
    bench_put(b, s, strlen(s));
}


/* raw text as a JSON string body (no quotes) */

static void
bench_escape(bench_buf_t *b, const char *s, size_t n)
{
    size_t  i;
    char    esc[8];

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        switch (c) {
        case '"':  bench_put(b, "\\\"", 2); break;
        case '\\': bench_put(b, "\\\\", 2); break;
        case '\n': bench_put(b, "\\n", 2); break;
        case '\t': bench_put(b, "\\t", 2); break;
        case '\r': bench_put(b, "\\r", 2); break;
        default:
            if (c < 0x20) {
                static const char  hex[] = "0123456789abcdef";
                esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                bench_put(b, esc, 6);

            } else {
                bench_put(b, (const char *) &c, 1);
            }
        }
    }
}


static const char  *bench_prose[] = {
    "I'm seeing intermittent failures in our payment service after the last "
    "deploy, and I suspect a race between the retry loop and the connection "
    "pool shutdown. ",
    "Can you refactor this so the parsing and the validation are separate "
    "functions, and add a unit test for the edge case where the input is "
    "empty? ",
    "The function below works, but it is slow on large inputs (about 2 s for "
    "100k rows); I'd like to get it under 200 ms without changing the "
    "public API. ",
    "Here is the stack trace we get in production \u2014 it only happens "
    "under load, never locally: ",
    "We use PostgreSQL 15 with pgbouncer in transaction mode, so prepared "
    "statements are off; the ORM is SQLAlchemy 2.0. ",
    "Please keep the \"legacy\" code path for now, some customers still "
    "send the old payload format (see the comment in handlers.py). ",
    "Explain why the deadlock only appears when two workers process the "
    "same tenant, and propose a fix that keeps the ordering guarantee. ",
    "Summarize the changes in a short commit message, caf\u00e9-style: one "
    "line, imperative mood, then a blank line and the details. ",
    "The test suite takes 14 minutes on CI; most of it is the integration "
    "tests that spin up Redis and Kafka for every test case. ",
    "Sure! The problem is that `close()` is called while a request is still "
    "in flight, so the callback sees a freed buffer. Here's a version that "
    "waits for in-flight requests first: ",
    "Good question. There are three options, each with a trade-off between "
    "latency and consistency; I'd go with the second one because it keeps "
    "the write path idempotent. ",
    "Note that `memory_order_relaxed` is not enough here: the consumer must "
    "see the payload written before the flag, so use release/acquire. ",
};


static const char  *bench_code[] = {
    "```python\n"
    "def parse_rows(lines):\n"
    "    out = []\n"
    "    for i, line in enumerate(lines):\n"
    "        if not line.strip():\n"
    "            continue\n"
    "        cols = line.rstrip(\"\\n\").split(\"\\t\")\n"
    "        if len(cols) != 4:\n"
    "            raise ValueError(f\"line {i}: expected 4 columns, got "
    "{len(cols)}\")\n"
    "        out.append({\"id\": int(cols[0]), \"name\": cols[1],\n"
    "                    \"price\": float(cols[2]), \"tags\": cols[3]"
    ".split(\",\")})\n"
    "    return out\n"
    "```\n",

    "```c\n"
    "static int\n"
    "conn_close(conn_t *c)\n"
    "{\n"
    "    if (c->inflight > 0) {\n"
    "        c->closing = 1;\n"
    "        return EAGAIN;\n"
    "    }\n"
    "\n"
    "    fprintf(stderr, \"closing fd %d (%s)\\n\", c->fd, c->name);\n"
    "    free(c->buf);\n"
    "    return close(c->fd);\n"
    "}\n"
    "```\n",

    "```go\n"
    "func (p *Pool) Get(ctx context.Context) (*Conn, error) {\n"
    "\tp.mu.Lock()\n"
    "\tdefer p.mu.Unlock()\n"
    "\tfor len(p.idle) == 0 {\n"
    "\t\tif err := p.cond.Wait(ctx); err != nil {\n"
    "\t\t\treturn nil, fmt.Errorf(\"pool: %w\", err)\n"
    "\t\t}\n"
    "\t}\n"
    "\tc := p.idle[len(p.idle)-1]\n"
    "\tp.idle = p.idle[:len(p.idle)-1]\n"
    "\treturn c, nil\n"
    "}\n"
    "```\n",

    "```\n"
    "Traceback (most recent call last):\n"
    "  File \"/app/worker.py\", line 212, in run\n"
    "    self.process(batch)\n"
    "  File \"/app/worker.py\", line 187, in process\n"
    "    raise RuntimeError(\"lock \\\"tenant:42\\\" held for 30s\")\n"
    "RuntimeError: lock \"tenant:42\" held for 30s\n"
    "```\n",

    "```ts\n"
    "export async function retry<T>(fn: () => Promise<T>, n = 3): "
    "Promise<T> {\n"
    "  let last: unknown;\n"
    "  for (let i = 0; i < n; i++) {\n"
    "    try { return await fn(); }\n"
    "    catch (e) { last = e; await sleep(2 ** i * 100); }\n"
    "  }\n"
    "  throw new Error(`retry: ${String(last)}`);\n"
    "}\n"
    "```\n",
};


#define BENCH_NELTS(a)  (sizeof(a) / sizeof((a)[0]))


/* one message's raw text of about n bytes: prose with code blocks */

static void
bench_text(bench_buf_t *t, size_t n, int code)
{
    const char  *s;

    t->len = 0;

    while (t->len < n) {
        s = bench_prose[bench_rand() % BENCH_NELTS(bench_prose)];
        bench_puts(t, s);

        if (code && bench_rand() % 3 == 0) {
            bench_puts(t, "\n\n");
            s = bench_code[bench_rand() % BENCH_NELTS(bench_code)];
            bench_puts(t, s);
            bench_puts(t, "\n");
        }
    }
}


static void
bench_message(bench_buf_t *b, bench_buf_t *t, const char *role)
{
    bench_puts(b, "{\"role\":\"");
    bench_puts(b, role);
    bench_puts(b, "\",\"content\":\"");
    bench_escape(b, t->data, t->len);
    bench_puts(b, "\"}");
}


static char *
bench_body_once(size_t target, size_t *len)
{
    size_t       msg, final;
    unsigned     turn;
    bench_buf_t  b, t;

    memset(&b, 0, sizeof(b));
    memset(&t, 0, sizeof(t));

    bench_rng = 0x9e3779b97f4a7c15ULL;

    /* average message size: grows with the body, within sane bounds */
    msg = target / 16;
    msg = msg < 150 ? 150 : msg > 48 * 1024 ? 48 * 1024 : msg;
    final = target / 8;
    final = final < 120 ? 120 : final > 4096 ? 4096 : final;

    bench_puts(&b, "{\"model\":\"auto\",\"messages\":[");

    bench_puts(&t, "You are a senior software engineer helping with a "
               "production codebase. Answer precisely, show code in fenced "
               "blocks, and say \"I don't know\" when unsure.");
    bench_message(&b, &t, "system");

    /* 400 bytes for the tail: tools, options, the closing brackets */

    for (turn = 0; b.len + final + 400 < target; turn++) {
        bench_puts(&b, ",");
        bench_text(&t, msg / 2 + bench_rand() % msg, 1);
        bench_message(&b, &t, turn % 2 ? "assistant" : "user");
    }

    if (turn % 2 == 1) {
        bench_puts(&b, ",");
        bench_text(&t, 80, 0);
        bench_message(&b, &t, "assistant");
    }

    bench_puts(&b, ",");
    bench_text(&t, final, 1);
    bench_message(&b, &t, "user");

    bench_puts(&b, "],\"tools\":[{\"type\":\"function\",\"function\":{"
               "\"name\":\"read_file\",\"description\":\"Read a file of the "
               "repository\",\"parameters\":{\"type\":\"object\","
               "\"properties\":{\"path\":{\"type\":\"string\"},"
               "\"start_line\":{\"type\":\"integer\"}},"
               "\"required\":[\"path\"]}}}],"
               "\"temperature\":0.2,\"stream\":false,\"user\":\"bench\"}");

    free(t.data);

    *len = b.len;
    return b.data;
}


/* the body of the smallest generation size that reaches target bytes */

static char *
bench_body(size_t target, size_t *len)
{
    char    *body;
    size_t   lo, hi, mid, l;

    /* sizes are monotonic enough in the generation size: bisect */
    lo = 0;
    hi = target;

    body = bench_body_once(hi, &l);

    while (l < target) {
        free(body);
        lo = hi;
        hi *= 2;
        body = bench_body_once(hi, &l);
    }

    while (hi - lo > 16) {
        mid = lo + (hi - lo) / 2;
        free(body);
        body = bench_body_once(mid, &l);

        if (l >= target) {
            hi = mid;

        } else {
            lo = mid;
        }
    }

    free(body);
    body = bench_body_once(hi, len);

    return body;
}


#endif /* _BENCH_BODIES_H_INCLUDED_ */
