
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Unit tests of the usage scanner (ngx_http_llmroute_usage.c), built
 * standalone with ASan/UBSan.  Every stream is fed whole, split at every
 * byte position, one byte at a time and in random pieces; the results must
 * not depend on the split.  Each piece is a separate exact-size allocation
 * so that ASan sees any read past a buffer.  SSE streams also go through a
 * model of the stripping body filter (the loop in the header comment).
 *
 * The last line printed is "N passed, N failed"; exit status 1 on failure.
 * "--bench" only runs the throughput measurement.
 */


#include <ngx_http_llmroute_usage.h>

#include <stdlib.h>
#include <time.h>


#define CARRY  65536
#define MAXSPANS  16


typedef struct {
    int64_t      prompt;
    int64_t      completion;
    int64_t      cached;
    int64_t      written;
    size_t       content_bytes;
    ngx_uint_t   finish;
    ngx_uint_t   events;
    ngx_uint_t   bad_events;
    unsigned     have_usage;
    unsigned     done;
    unsigned     error;
    unsigned     malformed;
    unsigned     tool_calls;
    unsigned     empty;
    unsigned     is_json;
    off_t        span[MAXSPANS][2];
    int          nspans;
    u_char      *out;
    size_t       out_len;
    int          bad;           /* filter contract broken */
    const char  *why;
} result_t;


static int     passed, failed;
static int     length_known;    /* run_json tells the scanner the length */
static size_t  live_allocs;
static ngx_uint_t  sse_flags;   /* run_sse: flags beside USAGE_SSE */


#define check(cond, name)                                                     \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            printf("FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, name, #cond); \
        }                                                                     \
    } while (0)


static int
cmp_size(const void *a, const void *b)
{
    size_t  x, y;

    x = *(const size_t *) a;
    y = *(const size_t *) b;

    return (x > y) - (x < y);
}


static void
result_free(result_t *r)
{
    free(r->out);
    r->out = NULL;
}


static void
snapshot(ngx_http_llmroute_usage_t *u, result_t *r)
{
    r->prompt = u->prompt_tokens;
    r->completion = u->completion_tokens;
    r->cached = u->cached_tokens;
    r->written = u->cache_write_tokens;
    r->content_bytes = u->content_bytes;
    r->finish = u->finish_reason;
    r->events = u->events;
    r->bad_events = u->bad_events;
    r->have_usage = u->have_usage;
    r->done = u->done;
    r->error = u->error;
    r->malformed = u->malformed;
    r->tool_calls = u->tool_calls;
    r->empty = u->empty_content;
    r->is_json = u->content_is_json;
}


static int
same(result_t *a, result_t *b)
{
    return a->prompt == b->prompt && a->completion == b->completion
           && a->cached == b->cached && a->content_bytes == b->content_bytes
           && a->finish == b->finish && a->events == b->events
           && a->bad_events == b->bad_events
           && a->have_usage == b->have_usage && a->done == b->done
           && a->error == b->error && a->malformed == b->malformed
           && a->tool_calls == b->tool_calls && a->empty == b->empty
           && a->is_json == b->is_json && a->nspans == b->nspans
           && memcmp(a->span, b->span, sizeof(a->span)) == 0
           && a->out_len == b->out_len
           && (a->out_len == 0 || memcmp(a->out, b->out, a->out_len) == 0)
           && !a->bad && !b->bad;
}


static void
emit_out(result_t *r, const u_char *data, off_t from, off_t to)
{
    if (to < from) {
        r->bad = 1;
        r->why = "send range reversed";
        return;
    }

    memcpy(r->out + r->out_len, data + from, to - from);
    r->out_len += to - from;
}


/*
 * cuts: ascending split positions; ncuts < 0: one byte at a time.
 * strip: drive feed_sse() as a stripping body filter would, else feed().
 */

static void
run_sse(const char *text, size_t len, const size_t *cuts, int ncuts,
    size_t carry_size, int strip, result_t *r)
{
    int                              k;
    u_char                          *carry, *piece;
    off_t                            sent, limit;
    size_t                           a, b, pos, n;
    const u_char                    *data;
    ngx_http_llmroute_usage_t        u;
    ngx_http_llmroute_usage_span_t   span;

    data = (const u_char *) text;
    memset(r, 0, sizeof(result_t));
    r->out = malloc(len + 1);

    carry = malloc(carry_size ? carry_size : 1);
    (void) ngx_http_llmroute_usage_init(&u,
                                        NGX_HTTP_LLMROUTE_USAGE_SSE | sse_flags,
                                        carry_size ? carry : NULL, carry_size,
                                        NULL, NULL, NULL);
    sent = 0;
    limit = 2 * (off_t) carry_size + 1;
    if (length_known) {
        u.length = len;
    }

    a = 0;
    k = 0;

    while (a < len) {
        if (ncuts < 0) {
            b = a + 1;

        } else {
            b = (k < ncuts) ? cuts[k++] : len;
            if (b <= a) {
                continue;
            }
        }

        piece = malloc(b - a);
        memcpy(piece, data + a, b - a);

        if (!strip) {
            (void) ngx_http_llmroute_usage_feed(&u, piece, b - a);
            free(piece);
            a = b;
            continue;
        }

        for (pos = a; pos < b; pos += n) {
            n = ngx_http_llmroute_usage_feed_sse(&u, piece + (pos - a),
                                                 b - pos, &span);

            if (n > b - pos || (n == 0 && span.end == 0)) {
                r->bad = 1;
                r->why = "no progress";
                break;
            }

            if (span.end) {
                if (span.start < sent || span.end <= span.start
                    || span.end > u.offset || r->nspans == MAXSPANS)
                {
                    r->bad = 1;
                    r->why = "bad span";
                    break;
                }

                r->span[r->nspans][0] = span.start;
                r->span[r->nspans][1] = span.end;
                r->nspans++;
                emit_out(r, data, sent, span.start);
                sent = span.end;
            }
        }

        free(piece);

        if (r->bad) {
            break;
        }

        if (u.offset != (off_t) b || u.hold > u.offset
            || u.offset - u.hold > limit)
        {
            r->bad = 1;
            r->why = "hold out of bounds";
            break;
        }

        emit_out(r, data, sent, u.hold);
        sent = u.hold;
        a = b;
    }

    ngx_http_llmroute_usage_finish(&u, &span);

    if (strip && !r->bad) {
        if (span.end) {
            if (span.start < sent || span.end <= span.start
                || span.end > u.offset || r->nspans == MAXSPANS)
            {
                r->bad = 1;
                r->why = "bad final span";

            } else {
                r->span[r->nspans][0] = span.start;
                r->span[r->nspans][1] = span.end;
                r->nspans++;
                emit_out(r, data, sent, span.start);
                sent = span.end;
            }
        }

        if (u.hold != u.offset) {
            r->bad = 1;
            r->why = "hold after finish";
        }

        emit_out(r, data, sent, len);
    }

    snapshot(&u, r);
    free(carry);
}


static void *
test_malloc(void *data, size_t size)
{
    live_allocs++;
    return malloc(size);
}


static void
test_free(void *data, void *p)
{
    live_allocs--;
    free(p);
}


/* a pool: allocations listed, freed all at once; free callback NULL */

typedef struct pool_block_s  pool_block_t;

struct pool_block_s {
    pool_block_t  *next;
    size_t         size;
};

static pool_block_t  *pool;
static size_t         pool_bytes;


static void *
pool_alloc(void *data, size_t size)
{
    pool_block_t  *b;

    b = malloc(sizeof(pool_block_t) + 16 + size);
    b->next = pool;
    b->size = size;
    pool = b;
    pool_bytes += size;

    return (u_char *) b + sizeof(pool_block_t) + 16;
}


static void
pool_destroy(void)
{
    pool_block_t  *b;

    while (pool) {
        b = pool->next;
        free(pool);
        pool = b;
    }

    pool_bytes = 0;
}


static void
run_json(const char *text, size_t len, const size_t *cuts, int ncuts,
    ngx_uint_t flags, int use_pool, result_t *r)
{
    int                         k;
    u_char                     *piece;
    size_t                      a, b;
    ngx_int_t                   rc;
    ngx_http_llmroute_usage_t   u;

    memset(r, 0, sizeof(result_t));

    rc = ngx_http_llmroute_usage_init(&u, NGX_HTTP_LLMROUTE_USAGE_JSON | flags,
                                      NULL, 0,
                                      use_pool ? pool_alloc : test_malloc,
                                      use_pool ? NULL : test_free, NULL);
    if (rc != NGX_OK) {
        r->bad = 1;
        r->why = "init";
        return;
    }

    a = 0;
    k = 0;

    while (a < len) {
        if (ncuts < 0) {
            b = a + 1;

        } else {
            b = (k < ncuts) ? cuts[k++] : len;
            if (b <= a) {
                continue;
            }
        }

        piece = malloc(b - a);
        memcpy(piece, text + a, b - a);
        (void) ngx_http_llmroute_usage_feed(&u, piece, b - a);
        free(piece);
        a = b;
    }

    ngx_http_llmroute_usage_finish(&u, NULL);
    snapshot(&u, r);

    if (use_pool) {
        pool_destroy();

    } else if (live_allocs != 0) {
        r->bad = 1;
        r->why = "yajl memory leaked";
        live_allocs = 0;
    }
}


/*
 * Feeds text whole, split once at every position, one byte at a time and
 * in 200 random partitions; all must give "whole"'s result.
 */

static void
splits(const char *name, const char *text, size_t len, int json,
    ngx_uint_t flags, size_t carry_size, int strip, result_t *whole)
{
    int       i, j, n, ok;
    size_t    cut, cuts[8];
    result_t  r;

    if (json) {
        run_json(text, len, NULL, 0, flags, 0, whole);

    } else {
        run_sse(text, len, NULL, 0, carry_size, strip, whole);
    }

    if (whole->bad) {
        printf("FAIL %s: whole: %s\n", name, whole->why);
    }

    ok = !whole->bad;

    for (cut = 0; cut <= len && ok; cut++) {
        if (json) {
            run_json(text, len, &cut, 1, flags, cut & 1, &r);

        } else {
            run_sse(text, len, &cut, 1, carry_size, strip, &r);
        }

        if (!same(whole, &r)) {
            printf("FAIL %s: split at %zu differs%s%s\n", name, cut,
                   r.bad ? ": " : "", r.bad ? r.why : "");
            ok = 0;
        }

        result_free(&r);
    }

    if (ok) {
        if (json) {
            run_json(text, len, NULL, -1, flags, 0, &r);

        } else {
            run_sse(text, len, NULL, -1, carry_size, strip, &r);
        }

        if (!same(whole, &r)) {
            printf("FAIL %s: byte at a time differs%s%s\n", name,
                   r.bad ? ": " : "", r.bad ? r.why : "");
            ok = 0;
        }

        result_free(&r);
    }

    for (i = 0; i < 200 && ok && len > 1; i++) {
        n = 1 + rand() % 8;

        for (j = 0; j < n; j++) {
            cuts[j] = rand() % len;
        }

        qsort(cuts, n, sizeof(size_t), cmp_size);

        if (json) {
            run_json(text, len, cuts, n, flags, i & 1, &r);

        } else {
            run_sse(text, len, cuts, n, carry_size, strip, &r);
        }

        if (!same(whole, &r)) {
            printf("FAIL %s: random split %d differs\n", name, i);
            ok = 0;
        }

        result_free(&r);
    }

    check(ok, name);
}


/* an OpenAI-style chunk event; returns its length */

static size_t
oai(char *p, const char *choices, const char *usage)
{
    return sprintf(p, "data: {\"id\":\"chatcmpl-AbC123\",\"object\":"
                   "\"chat.completion.chunk\",\"created\":1730000000,"
                   "\"model\":\"gpt-4o-mini-2024-07-18\","
                   "\"system_fingerprint\":\"fp_0ba0d124f1\","
                   "\"choices\":%s,\"usage\":%s}\n\n", choices, usage);
}


static size_t
delta(char *p, const char *content, const char *finish, const char *usage)
{
    char  choices[512];

    if (content != NULL) {
        sprintf(choices, "[{\"index\":0,\"delta\":{\"content\":\"%s\"},"
                "\"logprobs\":null,\"finish_reason\":%s}]", content, finish);

    } else {
        sprintf(choices, "[{\"index\":0,\"delta\":{},"
                "\"logprobs\":null,\"finish_reason\":%s}]", finish);
    }

    return oai(p, choices, usage);
}


#define OAI_USAGE                                                             \
    "{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,"       \
    "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"     \
    "\"completion_tokens_details\":{\"reasoning_tokens\":0,"                  \
    "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"                    \
    "\"rejected_prediction_tokens\":0}}"


/* OpenAI stream_options.include_usage: [us, ue) is the usage-only event */

static size_t
openai_stream(char *s, size_t *us, size_t *ue)
{
    size_t  n;

    n = oai(s, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
            "\"\",\"refusal\":null},\"logprobs\":null,"
            "\"finish_reason\":null}]", "null");
    n += delta(s + n, "Hello", "null", "null");
    n += delta(s + n, " world", "null", "null");
    n += delta(s + n, NULL, "\"stop\"", "null");
    *us = n;
    n += oai(s + n, "[]", OAI_USAGE);
    *ue = n;
    n += sprintf(s + n, "data: [DONE]\n\n");

    return n;
}


static int
out_is(result_t *r, const char *s, size_t len, size_t cut_start,
    size_t cut_end)
{
    return r->out_len == len - (cut_end - cut_start)
           && memcmp(r->out, s, cut_start) == 0
           && memcmp(r->out + cut_start, s + cut_end, len - cut_end) == 0;
}


static void
test_openai_stream(void)
{
    char      s[8192];
    size_t    n, us, ue;
    result_t  r, o;

    n = openai_stream(s, &us, &ue);

    splits("openai include_usage stream", s, n, 0, 0, CARRY, 1, &r);

    check(r.have_usage && r.prompt == 9 && r.completion == 2
          && r.cached == 0, "openai: usage");
    check(r.content_bytes == 11, "openai: content bytes");
    check(r.finish == NGX_HTTP_LLMROUTE_FINISH_STOP, "openai: finish stop");
    check(r.done && !r.error && r.events == 5 && r.bad_events == 0,
          "openai: done, events");
    check(r.nspans == 1 && r.span[0][0] == (off_t) us
          && r.span[0][1] == (off_t) ue, "openai: usage-only span exact");
    check(out_is(&r, s, n, us, ue), "openai: usage event stripped");
    check(!r.empty && !r.tool_calls, "openai: not empty");

    /* observe-only feed() gives the same numbers, strips nothing */

    run_sse(s, n, NULL, -1, CARRY, 0, &o);
    check(o.prompt == 9 && o.completion == 2 && o.content_bytes == 11
          && o.nspans == 0 && !o.bad, "openai: feed() observe only");

    result_free(&o);
    result_free(&r);
}


static size_t
crlf(char *dst, const char *src, size_t len)
{
    size_t  i, n;

    for (i = 0, n = 0; i < len; i++) {
        if (src[i] == '\n') {
            dst[n++] = '\r';
        }

        dst[n++] = src[i];
    }

    return n;
}


static void
test_crlf(void)
{
    char      s[8192], c[9000];
    size_t    n, us, ue, cs, ce;
    result_t  r;

    n = openai_stream(s, &us, &ue);
    n = crlf(c, s, n);
    cs = strstr(c, "\"choices\":[]") - c;

    while (cs > 0 && c[cs - 1] != '\n') {
        cs--;
    }

    ce = strstr(c + cs, "\r\n\r\n") - c + 4;

    splits("CRLF stream", c, n, 0, 0, CARRY, 1, &r);

    check(r.prompt == 9 && r.completion == 2 && r.content_bytes == 11
          && r.done && r.bad_events == 0, "crlf: same numbers");
    check(r.nspans == 1 && r.span[0][0] == (off_t) cs
          && r.span[0][1] == (off_t) ce, "crlf: span covers CRLF lines");
    check(out_is(&r, c, n, cs, ce), "crlf: stripped");

    result_free(&r);
}


static void
test_comments(void)
{
    char                             s[8192];
    u_char                           carry[256];
    size_t                           n, us, ue, k;
    result_t                         r;
    ngx_http_llmroute_usage_t        u;
    ngx_http_llmroute_usage_span_t   span;

    n = sprintf(s, ": keep-alive\n\n"
                "event: message\nid: 1\n"
                "data:{\"choices\":[{\"delta\":{\"content\":\"A\"}}]}\n\n"
                ":\n\n\n"
                "retry: 3000\n\n"
                "data: {\"choices\":[{\"delta\":{\"content\":\"BC\"},"
                "\"finish_reason\":\"length\"}]}\n"
                ": inside an event\n\n"
                ": keep-alive\n\n");
    us = n;
    n += sprintf(s + n, "event: message\n: note\n"
                 "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                 "\"completion_tokens\":3}}\n\n");
    ue = n;
    n += sprintf(s + n, ": keep-alive\n\ndata: [DONE]\n\n");

    splits("comments and keep-alives", s, n, 0, 0, CARRY, 1, &r);

    check(r.prompt == 4 && r.completion == 3 && r.cached == -1
          && r.content_bytes == 3 && r.done && r.events == 3
          && r.bad_events == 0, "comments: numbers");
    check(r.finish == NGX_HTTP_LLMROUTE_FINISH_LENGTH, "comments: length");
    check(r.nspans == 1 && r.span[0][0] == (off_t) us
          && r.span[0][1] == (off_t) ue, "comments: event: line in span");
    check(out_is(&r, s, n, us, ue), "comments: stripped");

    result_free(&r);

    /* a lone keep-alive comment is never held back */

    (void) ngx_http_llmroute_usage_init(&u, NGX_HTTP_LLMROUTE_USAGE_SSE,
                                        carry, sizeof(carry), NULL, NULL,
                                        NULL);
    k = ngx_http_llmroute_usage_feed_sse(&u, (u_char *) ": keep-alive\n", 13,
                                         &span);
    check(k == 13 && span.end == 0 && u.hold == 13, "keep-alive not held");

    k = ngx_http_llmroute_usage_feed_sse(&u, (u_char *) "data: {\"cho", 11,
                                         &span);
    check(k == 11 && u.hold == 13 && u.offset == 24, "partial event held");

    ngx_http_llmroute_usage_finish(&u, &span);
    check(span.end == 0 && u.hold == 24 && u.bad_events == 1,
          "finish releases a cut event");
}


static void
test_gemini(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    n = sprintf(s, "data: {\"choices\":[{\"delta\":{\"content\":\"One\","
                "\"role\":\"assistant\"},\"index\":0}],\"created\":1,"
                "\"model\":\"gemini-2.0-flash\",\"object\":"
                "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":1,"
                "\"prompt_tokens\":10,\"total_tokens\":11}}\n\n");
    n += sprintf(s + n, "data: {\"choices\":[{\"delta\":{\"content\":\" two\","
                 "\"role\":\"assistant\"},\"index\":0}],\"created\":1,"
                 "\"model\":\"gemini-2.0-flash\",\"object\":"
                 "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\""
                 ":3,\"prompt_tokens\":10,\"total_tokens\":13}}\n\n");
    n += sprintf(s + n, "data: {\"choices\":[{\"delta\":{\"content\":\" three"
                 "\",\"role\":\"assistant\"},\"finish_reason\":\"stop\","
                 "\"index\":0}],\"created\":1,\"model\":\"gemini-2.0-flash\","
                 "\"object\":\"chat.completion.chunk\",\"usage\":"
                 "{\"completion_tokens\":7,\"prompt_tokens\":10,"
                 "\"total_tokens\":17}}\n\ndata: [DONE]\n\n");

    splits("gemini cumulative usage", s, n, 0, 0, CARRY, 1, &r);

    check(r.have_usage && r.prompt == 10 && r.completion == 7,
          "gemini: last usage wins, not summed");
    check(r.content_bytes == 13 && r.nspans == 0 && r.out_len == n,
          "gemini: nothing stripped");

    result_free(&r);
}


static void
test_deepseek(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    n = sprintf(s, "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\","
                "\"created\":1,\"model\":\"deepseek-reasoner\","
                "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"role\":\"assistant\",\"content\":null,"
                "\"reasoning_content\":\"Think\"},\"logprobs\":null,"
                "\"finish_reason\":null}]}\n\n"
                ": keep-alive\n\n\n"
                "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\","
                "\"created\":1,\"model\":\"deepseek-reasoner\","
                "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"OK\","
                "\"reasoning_content\":null},\"logprobs\":null,"
                "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":"
                "100,\"completion_tokens\":20,\"total_tokens\":120,"
                "\"prompt_cache_hit_tokens\":64,\"prompt_cache_miss_tokens\":"
                "36,\"completion_tokens_details\":{\"reasoning_tokens\":5}}}"
                "\n\ndata: [DONE]\n\n");

    splits("deepseek cache hit tokens", s, n, 0, 0, CARRY, 1, &r);

    check(r.prompt == 100 && r.completion == 20 && r.cached == 64,
          "deepseek: prompt_cache_hit_tokens is cached");
    check(r.content_bytes == 7 && r.nspans == 0 && !r.empty,
          "deepseek: reasoning counted, final chunk kept");

    result_free(&r);
}


static void
test_cached_details(void)
{
    char      s[8192];
    size_t    n, us, ue;
    result_t  r;

    n = delta(s, "Hi", "\"stop\"", "null");
    us = n;
    n += oai(s + n, "[]", "{\"prompt_tokens\":2006,\"completion_tokens\":300,"
             "\"total_tokens\":2306,\"prompt_tokens_details\":"
             "{\"cached_tokens\":1920}}");
    ue = n;
    n += sprintf(s + n, "data: [DONE]\n\n");

    splits("cached_tokens in prompt_tokens_details", s, n, 0, 0, CARRY, 1,
           &r);

    check(r.prompt == 2006 && r.completion == 300 && r.cached == 1920,
          "details: cached_tokens");
    check(r.nspans == 1 && r.span[0][0] == (off_t) us
          && r.span[0][1] == (off_t) ue, "details: span");

    result_free(&r);
}


static void
test_no_usage(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    /* H i \n " x " space U+00E9 (2) space U+1F600 (4): 14 bytes */

    n = delta(s, "Hi\\n\\\"x\\\" \\u00e9 \\ud83d\\ude00", "null", "null");
    n += delta(s + n, NULL, "\"stop\"", "null");
    n += sprintf(s + n, "data: [DONE]\n\n");

    splits("stream without usage", s, n, 0, 0, CARRY, 1, &r);

    check(!r.have_usage && r.prompt == -1 && r.completion == -1
          && r.cached == -1, "no usage: -1");
    check(r.content_bytes == 14, "no usage: decoded content bytes");
    check(r.done && r.nspans == 0 && r.out_len == n, "no usage: passed");

    result_free(&r);
}


static void
test_tool_calls(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    n = sprintf(s, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                "\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,"
                "\"id\":\"call_1\",\"type\":\"function\",\"function\":"
                "{\"name\":\"get_weather\",\"arguments\":\"\"}}]},"
                "\"finish_reason\":null}]}\n\n"
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
                "[{\"index\":0,\"function\":{\"arguments\":"
                "\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n"
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
                "[{\"index\":0,\"function\":{\"arguments\":"
                "\"\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
                "data: {\"choices\":[{\"index\":0,\"delta\":{},"
                "\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");

    splits("tool call stream", s, n, 0, 0, CARRY, 1, &r);

    check(r.tool_calls && !r.empty && r.content_bytes == 16
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS,
          "tool calls: arguments counted, finish");

    result_free(&r);
}


static void
test_cut(void)
{
    int       ok;
    char      s[8192];
    size_t    n, us, ue, l1, len;
    result_t  r, b;

    n = openai_stream(s, &us, &ue);
    l1 = ue - 1;               /* just after the usage data line's "\n" */

    /* every prefix: nothing breaks, byte at a time agrees with whole */

    ok = 1;

    for (len = 0; len <= n && ok; len++) {
        run_sse(s, len, NULL, 0, CARRY, 1, &r);
        run_sse(s, len, NULL, -1, CARRY, 1, &b);

        if (!same(&r, &b) || r.bad) {
            printf("FAIL cut at %zu: %s\n", len, r.bad ? r.why : "differs");
            ok = 0;
        }

        result_free(&r);
        result_free(&b);
    }

    check(ok, "stream cut at every byte");

    run_sse(s, us + 40, NULL, 0, CARRY, 1, &r);
    check(!r.have_usage && r.nspans == 0 && r.bad_events == 1
          && r.out_len == us + 40, "cut inside the usage chunk: no usage");
    result_free(&r);

    run_sse(s, l1, NULL, 0, CARRY, 1, &r);
    check(r.have_usage && r.nspans == 1 && r.span[0][0] == (off_t) us
          && r.span[0][1] == (off_t) l1 && r.out_len == us,
          "cut before the blank line: usage, stripped");
    result_free(&r);

    run_sse(s, l1 - 1, NULL, 0, CARRY, 1, &r);
    check(r.have_usage && r.nspans == 0 && r.out_len == l1 - 1,
          "cut before the newline: usage counted, line passed");
    result_free(&r);
}


static void
test_overlong(void)
{
    char      s[8192], big[1100];
    size_t    n, us, ue, lo, l1;
    result_t  r;

    memset(big, 'x', 1000);
    big[1000] = '\0';

    n = sprintf(s, "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}"
                "\n\n");
    lo = n;
    n += sprintf(s + n, "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}"
                 "\n\n", big);
    lo = n - 2 - lo;
    us = n;
    n += sprintf(s + n, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                 "\"completion_tokens\":4}}\n\n");
    ue = n;
    n += sprintf(s + n, ": %s\n\ndata: [DONE]\n\n", big);

    splits("overlong data line", s, n, 0, 0, 256, 1, &r);

    check(r.bad_events == 1 && r.events == 3 && r.content_bytes == 5 + lo,
          "overlong: skipped, bytes estimated");
    check(r.prompt == 3 && r.completion == 4 && r.done,
          "overlong: later usage still read");
    check(r.nspans == 1 && r.span[0][0] == (off_t) us
          && r.span[0][1] == (off_t) ue && out_is(&r, s, n, us, ue),
          "overlong: later usage event stripped");
    result_free(&r);

    /* an overlong line right after the usage data line ends the span */

    us = 0;
    n = sprintf(s, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                "\"completion_tokens\":4}}\n");
    l1 = n;
    n += sprintf(s + n, "data: %s\n\ndata: [DONE]\n\n", big);

    splits("overlong line inside the usage event", s, n, 0, 0, 256, 1, &r);
    check(r.nspans == 1 && r.span[0][0] == 0 && r.span[0][1] == (off_t) l1
          && out_is(&r, s, n, 0, l1) && r.prompt == 3,
          "overlong in usage event: data line cut only");
    result_free(&r);

    /* an event whose lines exceed what a filter may hold is kept */

    n = 0;

    for (us = 0; us < 40; us++) {
        n += sprintf(s + n, "event: x\n");
    }

    n += sprintf(s + n, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                 "\"completion_tokens\":4}}\n\n");

    splits("long usage event kept", s, n, 0, 0, 256, 1, &r);
    check(r.nspans == 0 && r.have_usage && r.out_len == n,
          "long usage event: kept");
    result_free(&r);
}


static void
test_bad_chunks(void)
{
    int       i;
    char      s[16384];
    size_t    n;
    result_t  r;

    n = sprintf(s, "data: {bad json}\n\n"
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]} x\n\n"
                "data: {\"x\":[1,[2]],\"choices\":[{\"delta\":"
                "{\"content\":\"ab\"},\"logprobs\":[");

    for (i = 0; i < 600; i++) {
        n += sprintf(s + n, "%d,", i);
    }

    n += sprintf(s + n, "0]}]}\n\n"
                 "data: {\"error\":{\"message\":\"overloaded\",\"type\":"
                 "\"server_error\"}}\n\n"
                 "data: [1,2]\n\n"
                 "data:\n\n"
                 "data: {\"choices\":[{\"delta\":{\"content\":\"abc\"}}],"
                 "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}"
                 "\n\n");

    splits("unparsable chunks", s, n, 0, 0, CARRY, 1, &r);

    check(r.bad_events == 4 && r.events == 6, "bad chunks counted");
    check(r.error && r.content_bytes == 3 && r.prompt == 1
          && r.completion == 2 && !r.done, "bad chunks: stream goes on");

    result_free(&r);
}


/* the top-level walk skips members it does not read without jsmn */

static void
test_skipped_members(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    n = sprintf(s, "data: { \"a\\\"choices\":[],\"s\":\"\\\\\",\"t\":"
                "\"x\\\\\\\"y\",\"o\":{\"k\":\"}]{[\",\"n\":[1,{\"choices\":"
                "[]}]},\"f\":-1.5e3,\"b\":true , \"choices\" : [ {\"delta\":"
                "{\"content\":\"A\"}} ] ,\"usage\" : {\"prompt_tokens\":1,"
                "\"completion_tokens\":1}\t}\n\n"
                "data: {\"choices\":[],\"usage\":\"none\"}\n\n");

    splits("skipped members", s, n, 0, 0, CARRY, 1, &r);
    check(r.events == 2 && r.bad_events == 0 && r.content_bytes == 1
          && r.prompt == 1 && r.nspans == 0, "skipped members: delimited");
    result_free(&r);

    n = sprintf(s, "data: {\"choices\":[{\"delta\":{\"content\":\"A\"}}]\n\n"
                "data: {\"choices\" [1]}\n\n"
                "data: {\"choices\":[1],}\n\n"
                "data: {\"a\":1 \"b\":2}\n\n"
                "data: {\"a\":\"x}\n\n"
                "data: {\"a\":@}\n\n"
                "data: {\"choices\":[1}]}\n\n"
                "data: {}\n\n");

    splits("broken objects", s, n, 0, 0, CARRY, 1, &r);
    check(r.events == 8 && r.bad_events == 7 && r.content_bytes == 0,
          "broken objects: unparsable");
    result_free(&r);
}


#define OAI_JSON                                                              \
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,"    \
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"message\":{\"role\":"   \
    "\"assistant\",\"content\":\"Hello \\\"world\\\"\",\"refusal\":null},"    \
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":"               \
    "{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"     \
    "\"prompt_tokens_details\":{\"cached_tokens\":5,\"audio_tokens\":0},"     \
    "\"completion_tokens_details\":{\"reasoning_tokens\":0}},"                \
    "\"system_fingerprint\":\"fp_1\"}\n"


static void
json_answer(const char *name, const char *choice, const char *usage,
    ngx_uint_t flags, result_t *r)
{
    char  s[4096];

    sprintf(s, "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[%s],"
            "\"usage\":%s}", choice, usage);

    splits(name, s, strlen(s), 1, flags, 0, 0, r);
}


/*
 * JSON_LAZY: a whole answer in one buffer is only walked for its usage
 * (content_bytes stays 0: choices were not read); split answers, and
 * whole ones where the walk finds no usage, go through yajl.  Usage
 * numbers must be the same either way.
 */

static void
lazy_case(const char *name, const char *body, int fast, int64_t prompt,
    int64_t completion, int64_t cached, unsigned malformed)
{
    size_t    len, cut;
    result_t  whole, r;
    int       ok;

    len = strlen(body);

    /* the tail walk needs the length; without it the full walk runs */

    length_known = 0;
    run_json(body, len, NULL, 0, NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY, 0, &r);
    check(r.prompt == prompt && r.completion == completion
          && r.cached == cached, name);
    result_free(&r);

    length_known = 1;
    run_json(body, len, NULL, 0, NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY, 0,
             &whole);

    check(!whole.bad && whole.prompt == prompt
          && whole.completion == completion && whole.cached == cached
          && whole.malformed == malformed
          && (fast ? whole.content_bytes == 0 && whole.finish == 0
                   : 1),
          name);

    ok = 1;

    for (cut = 1; cut < len; cut++) {
        run_json(body, len, &cut, 1, NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY,
                 cut & 1, &r);

        if (r.bad || r.prompt != prompt || r.completion != completion
            || r.cached != cached || r.have_usage != whole.have_usage)
        {
            printf("FAIL %s: split at %zu differs (%lld %lld %u)\n", name, cut, (long long) r.prompt, (long long) r.completion, r.have_usage);
            ok = 0;
        }

        result_free(&r);
    }

    length_known = 0;
    check(ok, name);
    result_free(&whole);
}


static void
test_json_lazy(void)
{
    lazy_case("lazy: openai, system_fingerprint after usage",
        "{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\""
        ":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":19,"
        "\"completion_tokens\":10,\"total_tokens\":29,"
        "\"prompt_tokens_details\":{\"cached_tokens\":5}},"
        "\"system_fingerprint\":\"fp_1\"}\n", 1, 19, 10, 5, 0);

    lazy_case("lazy: usage last, blanks around",
        "  {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":2}}\r\n", 1, 3, 2, -1, 0);

    /* the text mentions usage; the last unescaped "usage" key is real */

    lazy_case("lazy: usage in content is escaped",
        "{\"choices\":[{\"message\":{\"content\":\"{\\\"usage\\\":{"
        "\\\"prompt_tokens\\\":999}}\"}}],\"usage\":{\"prompt_tokens\":7,"
        "\"completion_tokens\":1}}", 1, 7, 1, -1, 0);

    /* the last usage key is nested: the tail walk fails, the full walk
     * takes the top-level one */

    lazy_case("lazy: nested usage after the top-level one",
        "{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2},"
        "\"choices\":[{\"message\":{\"content\":\"ok\",\"usage\":"
        "{\"prompt_tokens\":999,\"completion_tokens\":999}}}]}",
        1, 4, 2, -1, 0);

    /* the key at the first place the search from the end may find it */

    lazy_case("lazy: usage the only member",
        "{\"usage\":{\"prompt_tokens\":1}}", 1, 1, -1, -1, 0);

    lazy_case("lazy: deepseek cache hits",
        "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{"
        "\"prompt_tokens\":12,\"completion_tokens\":3,"
        "\"prompt_cache_hit_tokens\":8,\"prompt_cache_miss_tokens\":4}}",
        1, 12, 3, 8, 0);

    /* no usage: yajl reads it all and counts the content */

    lazy_case("lazy: no usage falls back to yajl",
        "{\"choices\":[{\"message\":{\"content\":\"four\"},"
        "\"finish_reason\":\"stop\"}]}", 0, -1, -1, -1, 0);

    /* not a whole object in the first buffer: yajl, garbage noticed */

    lazy_case("lazy: trailing garbage",
        "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}} }",
        0, 5, 3, -1, 1);
}


static void
test_json(void)
{
    size_t    n;
    result_t  r;

    n = sizeof(OAI_JSON) - 1;

    splits("json usage split at every byte", OAI_JSON, n, 1, 0, 0, 0, &r);
    check(r.have_usage && r.prompt == 19 && r.completion == 10
          && r.cached == 5, "json: usage");
    check(r.content_bytes == 13 && r.finish == NGX_HTTP_LLMROUTE_FINISH_STOP
          && r.done && !r.malformed && !r.empty && !r.error,
          "json: content, finish");
    result_free(&r);

    json_answer("json length", "{\"index\":0,\"message\":{\"role\":"
                "\"assistant\",\"content\":\"Once upon a time\"},"
                "\"finish_reason\":\"length\"}",
                "{\"prompt_tokens\":5,\"completion_tokens\":4}", 0, &r);
    check(r.finish == NGX_HTTP_LLMROUTE_FINISH_LENGTH && !r.empty
          && r.content_bytes == 16, "json: finish_reason length");
    result_free(&r);

    json_answer("json empty", "{\"index\":0,\"message\":{\"role\":"
                "\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}",
                "{\"prompt_tokens\":5,\"completion_tokens\":0}", 0, &r);
    check(r.empty && r.completion == 0, "json: empty content");
    result_free(&r);

    json_answer("json null", "{\"index\":0,\"message\":{\"role\":"
                "\"assistant\",\"content\":null},\"finish_reason\":\"stop\"}",
                "null", 0, &r);
    check(r.empty && !r.have_usage, "json: null content, null usage");
    result_free(&r);

    json_answer("json blank", "{\"message\":{\"content\":\" \\n\\t \"},"
                "\"finish_reason\":\"stop\"}", "null", 0, &r);
    check(r.empty && r.content_bytes == 4, "json: blank content is empty");
    result_free(&r);

    json_answer("json tool calls", "{\"index\":0,\"message\":{\"role\":"
                "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                "\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
                "\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
                "\"finish_reason\":\"tool_calls\"}",
                "{\"prompt_tokens\":5,\"completion_tokens\":9}", 0, &r);
    check(!r.empty && r.tool_calls && r.content_bytes == 7
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS,
          "json: tool calls are not empty");
    result_free(&r);

    json_answer("json n=2", "{\"index\":0,\"message\":{\"content\":\"A\"},"
                "\"finish_reason\":\"stop\"},{\"index\":1,\"message\":"
                "{\"content\":\"\"},\"finish_reason\":\"length\"}",
                "null", 0, &r);
    check(r.finish == NGX_HTTP_LLMROUTE_FINISH_STOP && !r.empty
          && r.content_bytes == 1, "json: choices[0] decides");
    result_free(&r);

    json_answer("json deepseek", "{\"message\":{\"content\":\"x\","
                "\"reasoning_content\":\"why\"},\"finish_reason\":"
                "\"content_filter\"}", "{\"prompt_tokens\":12.0,"
                "\"completion_tokens\":3,\"prompt_cache_hit_tokens\":8,"
                "\"prompt_cache_miss_tokens\":4}", 0, &r);
    check(r.prompt == 12 && r.completion == 3 && r.cached == 8
          && r.content_bytes == 4
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_FILTER,
          "json: deepseek cache hits, reasoning");
    result_free(&r);

    /* escapes at every buffer boundary: the held-string scanner */

    json_answer("json escapes", "{\"message\":{\"content\":"
                "\"\\\\\\\"\\\\\",\"reasoning\":\"\\\\\"},"
                "\"finish_reason\":\"len\\u0067th\"}",
                "{\"prompt_tokens\":1,\"completion_tokens\":2}", 0, &r);
    check(r.content_bytes == 4 && r.completion == 2 && !r.malformed
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_LENGTH,
          "json: escaped quotes and backslashes");
    result_free(&r);

    json_answer("json odd numbers", "{\"message\":{\"content\":\"x\"}}",
                "{\"prompt_tokens\":-3,\"completion_tokens\":1e3}", 0, &r);
    check(!r.have_usage && r.prompt == -1, "json: odd numbers ignored");
    result_free(&r);
}


static void
test_json_check(void)
{
    result_t  r;

    json_answer("json mode valid", "{\"message\":{\"content\":"
                "\" {\\\"a\\\": [1, 2, {\\\"b\\\": null}]}\\n\"}}", "null",
                NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK, &r);
    check(r.is_json, "json check: object");
    result_free(&r);

    json_answer("json mode fenced", "{\"message\":{\"content\":"
                "\"```json\\n{}\\n```\"}}", "null",
                NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK, &r);
    check(!r.is_json, "json check: fenced is not JSON");
    result_free(&r);

    json_answer("json mode array", "{\"message\":{\"content\":\"[1]\"}}",
                "null", NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK, &r);
    check(!r.is_json, "json check: array is not an object");
    result_free(&r);

    json_answer("json mode cut", "{\"message\":{\"content\":"
                "\"{\\\"a\\\":\"}}", "null",
                NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK, &r);
    check(!r.is_json, "json check: truncated");
    result_free(&r);

    json_answer("json mode off", "{\"message\":{\"content\":\"{}\"}}",
                "null", 0, &r);
    check(!r.is_json, "json check: only when asked");
    result_free(&r);
}


static void
jsplits(const char *name, const char *s, result_t *r)
{
    splits(name, s, strlen(s), 1, 0, 0, 0, r);
}


static void
test_json_bad(void)
{
    int        i;
    char      *s;
    size_t     n;
    result_t   r;

    jsplits("json truncated in usage",
            "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":"
            "{\"prompt_tokens\":5,\"completion_tokens\":3", &r);
    check(!r.have_usage && r.prompt == -1 && r.malformed && !r.done
          && !r.empty, "json: truncated, no usage");
    result_free(&r);

    jsplits("json html", "<html><body>502 Bad Gateway</body></html>", &r);
    check(!r.have_usage && r.malformed && !r.done, "json: html body");
    result_free(&r);

    run_json("", 0, NULL, 0, 0, 0, &r);
    check(!r.have_usage && !r.done && !r.bad, "json: empty body");
    result_free(&r);

    jsplits("json garbage after",
            "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}} }",
            &r);
    check(r.have_usage && r.prompt == 5 && r.malformed,
          "json: complete usage kept before trailing garbage");
    result_free(&r);

    jsplits("json error body", "{\"error\":{\"message\":\"Rate limit "
            "reached\",\"type\":\"rate_limit_exceeded\",\"param\":null,"
            "\"code\":\"rate_limit_exceeded\"}}", &r);
    check(r.error && !r.have_usage && r.done && !r.malformed && !r.empty,
          "json: error body");
    result_free(&r);

    /* deep nesting: yajl's stack grows, ours stays fixed */

    n = 200000;
    s = malloc(n + 64);
    n = sprintf(s, "{\"choices\":[{\"message\":{\"x\":");

    for (i = 0; i < 100000; i++) {
        s[n++] = '[';
    }

    run_json(s, n, NULL, 0, 0, 1, &r);
    check(!r.have_usage && r.malformed && !r.bad, "json: deep nesting");
    result_free(&r);
    free(s);
}


/* feeds text in pieces of size bytes, in place: no per-piece copies */

static void
json_pieces(const char *text, size_t len, size_t size, result_t *r)
{
    size_t                      pos;
    ngx_http_llmroute_usage_t   u;

    memset(r, 0, sizeof(result_t));

    (void) ngx_http_llmroute_usage_init(&u, NGX_HTTP_LLMROUTE_USAGE_JSON,
                                        NULL, 0, test_malloc, test_free,
                                        NULL);

    for (pos = 0; pos < len; pos += size) {
        (void) ngx_http_llmroute_usage_feed(&u, (u_char *) text + pos,
                                            ngx_min(size, len - pos));
    }

    ngx_http_llmroute_usage_finish(&u, NULL);
    snapshot(&u, r);

    if (live_allocs != 0) {
        r->bad = 1;
        live_allocs = 0;
    }
}


static void
test_json_large(void)
{
    int               p;
    char             *s;
    size_t            n, big, cuts[1024];
    result_t          r;
    struct timespec   t0, t1;

    /* 2 MB of content in 16 KB buffers, with a pool and with free() */

    big = 2 * 1024 * 1024;
    s = malloc(big + 4096);
    n = sprintf(s, "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":"
                "{\"role\":\"assistant\",\"content\":\"");
    memset(s + n, 'y', big);
    n += big;
    n += sprintf(s + n, "\"},\"finish_reason\":\"length\"}],\"usage\":"
                 "{\"prompt_tokens\":7,\"completion_tokens\":500000}}");

    for (p = 0; p < 1024 && (size_t) (p + 1) * 16384 < n; p++) {
        cuts[p] = (p + 1) * 16384;
    }

    run_json(s, n, cuts, p, NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK, 0, &r);
    check(!r.bad && r.content_bytes == big && r.completion == 500000
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_LENGTH && !r.is_json
          && !r.empty, "json: 2 MB content, malloc/free");
    result_free(&r);

    run_json(s, n, cuts, p, 0, 1, &r);
    check(!r.bad && r.content_bytes == big && r.prompt == 7,
          "json: 2 MB content, pool");
    result_free(&r);

    free(s);

    /*
     * 16 MB in 4 KB buffers: yajl alone would lex the open string again
     * at each of the 4096 buffers (quadratic, minutes); held back, linear
     */

    big = 16 * 1024 * 1024;
    s = malloc(big + 4096);
    n = sprintf(s, "{\"choices\":[{\"message\":{\"content\":\"");
    memset(s + n, 'z', big);
    n += big;
    n += sprintf(s + n, "\"}}],\"usage\":{\"prompt_tokens\":1,"
                 "\"completion_tokens\":2}}");

    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_pieces(s, n, 4096, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    check(!r.bad && !r.malformed && r.content_bytes == big
          && r.completion == 2, "json: 16 MB string in 4 KB buffers");
    printf("json: 16 MB content in 4 KB buffers: %.2f s\n",
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    result_free(&r);

    free(s);
}


/* throughput of the SSE path as a stripping filter drives it */

static void
bench(void)
{
    int                              rep;
    char                            *s;
    u_char                           carry[CARRY];
    size_t                           n, size, pos, chunk, k, events;
    double                           t, best;
    struct timespec                  t0, t1;
    ngx_http_llmroute_usage_t        u;
    ngx_http_llmroute_usage_span_t   span;
    static const char               *words[] = {
        "The", " quick", " brown", " fox", " jumps", " over", " the",
        " lazy", " dog", ".", "\\n", " It", "'s", " a", " \\\"test\\\"",
        " of", " stream", "ing", " throughput", ","
    };

    size = 64 * 1024 * 1024;
    s = malloc(size + 4096);
    n = 0;
    events = 0;

    while (n < size) {
        n += delta(s + n, words[events % 20], "null", "null");
        events++;
    }

    n += delta(s + n, NULL, "\"stop\"", "null");
    n += oai(s + n, "[]", OAI_USAGE);
    n += sprintf(s + n, "data: [DONE]\n\n");

    chunk = 16384;
    best = 0;

    for (rep = 0; rep < 7; rep++) {
        (void) ngx_http_llmroute_usage_init(&u, NGX_HTTP_LLMROUTE_USAGE_SSE,
                                            carry, sizeof(carry), NULL, NULL,
                                            NULL);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);

        for (pos = 0; pos < n; pos += k) {
            k = ngx_http_llmroute_usage_feed_sse(&u, (u_char *) s + pos,
                                                 ngx_min(chunk, n - pos),
                                                 &span);
        }

        ngx_http_llmroute_usage_finish(&u, &span);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);

        t = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (best == 0 || t < best) {
            best = t;
        }

        check(u.have_usage && u.events == events + 2 && u.bad_events == 0,
              "bench stream read");
    }

    printf("sse throughput: %.0f MB/s (%.0f MB, %zu events of ~%zu bytes, "
           "16 KB buffers, best of 7 by CPU time%s)\n", n / best / 1e6, n / 1e6,
           events + 2, n / (events + 2),
#if defined(__SANITIZE_ADDRESS__)
           ", ASan+UBSan build"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
           ", ASan+UBSan build"
#else
           ""
#endif
#else
           ""
#endif
           );

    free(s);
}


/* Anthropic's Messages API: the SSE events and a JSON message */

static void
test_anthropic(void)
{
    char      s[8192];
    size_t    n;
    result_t  r;

    n = sprintf(s, "event: message_start\ndata: {\"type\":\"message_start\","
                "\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
                "\"role\":\"assistant\",\"content\":[],\"model\":\"m\","
                "\"stop_reason\":null,\"usage\":{\"input_tokens\":25,"
                "\"cache_creation_input_tokens\":300,"
                "\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\n\n"
                "event: content_block_start\ndata: {\"type\":"
                "\"content_block_start\",\"index\":0,\"content_block\":"
                "{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
                "event: ping\ndata: {\"type\": \"ping\"}\n\n"
                "event: content_block_delta\ndata: {\"type\":"
                "\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                "\"thinking_delta\",\"thinking\":\"Hmm\"}}\n\n"
                "event: content_block_delta\ndata: {\"type\":"
                "\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                "\"text_delta\",\"text\":\"Hello \\u00e9\"}}\n\n"
                "event: content_block_delta\ndata: {\"type\":"
                "\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
                "\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}"
                "\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\","
                "\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":"
                "null},\"usage\":{\"output_tokens\":42}}\n\n"
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");

    sse_flags = NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC;
    splits("anthropic stream", s, n, 0, 0, CARRY, 0, &r);
    sse_flags = 0;

    check(r.have_usage && r.prompt == 25 && r.completion == 42
          && r.cached == 4000 && r.written == 300,
          "anthropic stream: message_start usage, cumulative output_tokens");
    check(r.done, "anthropic stream: message_stop ends it");
    check(r.content_bytes == 3 + 8 + 7 && r.finish
          == NGX_HTTP_LLMROUTE_FINISH_LENGTH && !r.empty,
          "anthropic stream: thinking, text and tool input counted");

    result_free(&r);

    n = sprintf(s, "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
                "\"assistant\",\"model\":\"m\",\"content\":[{\"type\":"
                "\"text\",\"text\":\"Let me look.\"},{\"type\":\"tool_use\","
                "\"id\":\"t1\",\"name\":\"ls\",\"input\":{\"d\":\".\"}}],"
                "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
                "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\""
                ":0,\"cache_read_input_tokens\":7,\"output_tokens\":5}}");

    splits("anthropic json", s, n, 1,
           NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC|NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK,
           0, 0, &r);

    check(r.have_usage && r.prompt == 10 && r.completion == 5
          && r.cached == 7 && r.written == 0,
          "anthropic json: usage");
    check(r.content_bytes == 12 && r.tool_calls
          && r.finish == NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS && !r.empty,
          "anthropic json: text, tool_use, stop_reason");

    result_free(&r);

    n = sprintf(s, "{\"type\":\"message\",\"content\":[{\"type\":"
                "\"text\",\"text\":\"  \"}],\"stop_reason\":\"end_turn\","
                "\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}");

    splits("anthropic empty", s, n, 1,
           NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC|NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK,
           0, 0, &r);

    check(r.empty && r.finish == NGX_HTTP_LLMROUTE_FINISH_STOP,
          "anthropic json: blank text is empty content");

    result_free(&r);
}


/*
 * usage in an answer of case k: 0-3 JSON, length known or not, OpenAI or
 * Anthropic; 4 SSE
 */

static void
run_usage(int k, const char *usage, result_t *r)
{
    char        body[2048];
    ngx_uint_t  flags;

    flags = (k & 1) ? NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC : 0;
    length_known = (k < 2);

    if (k < 4) {
        snprintf(body, sizeof(body), "{\"id\":\"c\",\"choices\":[{\"index\""
                 ":0,\"message\":{\"content\":\"Hi\"}}],\"usage\":%s}\n",
                 usage);
        run_json(body, strlen(body), NULL, 0,
                 NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY | flags, 0, r);

    } else {
        snprintf(body, sizeof(body), "data: {\"choices\":[],\"usage\":%s}"
                 "\n\ndata: [DONE]\n\n", usage);
        run_sse(body, strlen(body), NULL, 0, 65536, 1, r);
    }

    length_known = 0;
}


/*
 * The one-pass usage reader against the general path (value_end(), the
 * tokenizer, walk()): the same results for the usual shapes and for every
 * odd one it hands back, in a whole JSON answer (JSON_LAZY, length known:
 * the tail walk), in one without its length (the full walk) and in an SSE
 * chunk, OpenAI and Anthropic alike.  The usual shapes must take it.
 */

static void
direct_case(const char *usage, int taken)
{
    int         k;
    char        name[2200];
    result_t    a, b;
    ngx_uint_t  reads;

    for (k = 0; k < 5; k++) {
        snprintf(name, sizeof(name), "direct %d: %s", k, usage);

        ngx_http_llmroute_usage_no_direct = 1;
        run_usage(k, usage, &a);
        ngx_http_llmroute_usage_no_direct = 0;

        reads = ngx_http_llmroute_usage_direct_reads;
        run_usage(k, usage, &b);

        check(same(&a, &b), name);
        check(!taken || ngx_http_llmroute_usage_direct_reads > reads, name);

        result_free(&a);
        result_free(&b);
    }
}


static void
test_usage_direct(void)
{
    /* the usual shapes */

    direct_case("{\"prompt_tokens\":512,\"completion_tokens\":64,"
                "\"total_tokens\":576,\"prompt_tokens_details\":"
                "{\"cached_tokens\":0},\"completion_tokens_details\":"
                "{\"reasoning_tokens\":0}}", 1);
    direct_case("{\"input_tokens\":12,\"cache_creation_input_tokens\":3,"
                "\"cache_read_input_tokens\":40,\"output_tokens\":7,"
                "\"service_tier\":\"standard\",\"server_tool_use\":"
                "{\"web_search_requests\":0}}", 1);
    direct_case(" { \"prompt_tokens\" : 5 ,\t\"completion_tokens\":3 } ", 1);
    direct_case("{\"prompt_tokens\":12,\"completion_tokens\":3,"
                "\"prompt_cache_hit_tokens\":8,"
                "\"prompt_cache_miss_tokens\":4}", 1);
    direct_case("{}", 1);
    direct_case("{\"prompt_tokens\":null,\"completion_tokens\":true,"
                "\"total_tokens\":false,\"x\":\"\"}", 1);
    direct_case("{\"prompt_tokens\":1,\"prompt_tokens\":\"2\","
                "\"completion_tokens\":0}", 1);

    /* names and strings across the 8 and 16 byte steps of the search */

    direct_case("{\"abcdefghijklmnop\":\"0123456789abcdef\","
                "\"abcdefg\":\"01234567\",\"prompt_tokens\":1}", 1);
    direct_case("{\"prompt_tokens\":5,\"a_member_name_longer_than_32_bytes_"
                "xx\":1,\"completion_tokens\":3}", 1);

    /* handed back: the general path decides */

    direct_case("{\"prompt_tokens\":5,\"a_member_name_longer_than_16_\\u0041"
                "\":1,\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"a_member_name_longer_than_16_\x1f\""
                ":1,\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"s\":\"0123456789abcdef0123\\\"\"}",
                0);

    direct_case("{\"prompt_tokens\":5.0,\"completion_tokens\":1e2}", 0);
    direct_case("{\"prompt_tokens\":-5,\"completion_tokens\":007}", 0);
    direct_case("{\"prompt\\u005ftokens\":5,\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"x\":\"a\\\"b\","
                "\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"d\":[1,2],\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"completion_tokens\":3,}", 0);
    direct_case("{\"prompt_tokens\":5,\"a\":{\"b\":{\"c\":{\"d\":1}}},"
                "\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5 \"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5x,\"completion_tokens\":3}", 0);
    direct_case("{\"prompt_tokens\":5,\"completion_tokens\":3,\"t\":\"\x01\"}",
                0);
    direct_case("{\"prompt_tokens\":5,\"completion_tokens\":nul}", 0);
    direct_case("{\"prompt_tokens\":99999999999999999999,"
                "\"completion_tokens\":3}", 1);
    direct_case("{\"prompt_tokens\":5,\"completion_tokens\":3", 0);
    direct_case("{\"prompt_tokens\":5,\"completion_tokens\":3}}", 0);
    direct_case("[1]", 0);
}


/*
 * The shape of the last usage read (ngx_http_llmroute_usage_shaped()):
 * first leaves its shape, second is read by it when taken, and every
 * result is the general path's either way.
 */

static void
shape_case(const char *first, const char *second, int taken)
{
    int         k;
    char        name[4400];
    result_t    a, b;
    ngx_uint_t  reads;

    for (k = 0; k < 5; k++) {
        snprintf(name, sizeof(name), "shape %d: %s then %s", k, first, second);

        ngx_http_llmroute_usage_forget();
        run_usage(k, first, &a);        /* its shape is kept */
        result_free(&a);

        reads = ngx_http_llmroute_usage_shape_reads;
        run_usage(k, second, &b);
        check((ngx_http_llmroute_usage_shape_reads > reads) == taken, name);

        ngx_http_llmroute_usage_no_direct = 1;
        run_usage(k, second, &a);
        ngx_http_llmroute_usage_no_direct = 0;

        check(same(&a, &b), name);

        result_free(&a);
        result_free(&b);
    }
}


static void
shape_pair(void)
{
    int          i;
    result_t     a, b;
    ngx_uint_t   reads;
    const char  *usage[] = {
        "{\"input_tokens\":472,\"cache_creation_input_tokens\":0,"
        "\"cache_read_input_tokens\":0,\"output_tokens\":2}",
        "{\"output_tokens\":15}",
        "{\"input_tokens\":9,\"cache_creation_input_tokens\":100,"
        "\"cache_read_input_tokens\":7,\"output_tokens\":1}",
        "{\"output_tokens\":3000}",
    };

    ngx_http_llmroute_usage_forget();

    for (i = 0; i < 4; i++) {
        reads = ngx_http_llmroute_usage_shape_reads;
        run_usage(4, usage[i], &b);
        check((ngx_http_llmroute_usage_shape_reads > reads) == (i >= 2),
              usage[i]);

        ngx_http_llmroute_usage_no_direct = 1;
        run_usage(4, usage[i], &a);
        ngx_http_llmroute_usage_no_direct = 0;

        check(same(&a, &b), usage[i]);

        result_free(&a);
        result_free(&b);
    }
}


static void
test_usage_shape(void)
{
    const char  *openai, *anthropic;

    openai = "{\"prompt_tokens\":512,\"completion_tokens\":64,"
             "\"total_tokens\":576,\"prompt_tokens_details\":"
             "{\"cached_tokens\":0},\"completion_tokens_details\":"
             "{\"reasoning_tokens\":0}}";
    anthropic = "{\"input_tokens\":12,\"cache_creation_input_tokens\":3,"
                "\"cache_read_input_tokens\":40,\"output_tokens\":7,"
                "\"service_tier\":\"standard\",\"server_tool_use\":"
                "{\"web_search_requests\":0}}";

    /* the same members, other numbers: longer, shorter, zero */

    shape_case(openai, openai, 1);
    shape_case(openai, "{\"prompt_tokens\":7,\"completion_tokens\":123456,"
               "\"total_tokens\":123463,\"prompt_tokens_details\":"
               "{\"cached_tokens\":1024},\"completion_tokens_details\":"
               "{\"reasoning_tokens\":99}}", 1);
    shape_case(anthropic, "{\"input_tokens\":0,"
               "\"cache_creation_input_tokens\":30000,"
               "\"cache_read_input_tokens\":4,\"output_tokens\":70,"
               "\"service_tier\":\"standard\",\"server_tool_use\":"
               "{\"web_search_requests\":2}}", 1);
    shape_case(" { \"prompt_tokens\" : 5 ,\t\"completion_tokens\":3 } ",
               " { \"prompt_tokens\" : 50 ,\t\"completion_tokens\":0 } ", 1);

    /* up to 16 digits by the shape; more reach direct()'s cap */

    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":9999999999999999,"
               "\"completion_tokens\":2}", 1);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":99999999999999999,"
               "\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":99999999999999999999,"
               "\"completion_tokens\":2}", 0);

    /* where a number was, something else: direct() or the general path */

    shape_case(openai, "{\"prompt_tokens\":012,\"completion_tokens\":64,"
               "\"total_tokens\":576,\"prompt_tokens_details\":"
               "{\"cached_tokens\":0},\"completion_tokens_details\":"
               "{\"reasoning_tokens\":0}}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":1.5,\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":-1,\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":1e3,\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":null,\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":\"1\",\"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":,\"completion_tokens\":2}", 0);

    /* other members, or the same ones otherwise */

    shape_case(openai, "{\"completion_tokens\":64,\"prompt_tokens\":512}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":1, \"completion_tokens\":2}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":1,\"completion_tokens\":2,\"x\":3}", 0);
    shape_case("{\"prompt_tokens\":1,\"completion_tokens\":2}",
               "{\"prompt_tokens\":1}", 0);

    /* two shapes of a kind are kept, as an Anthropic stream has */

    shape_pair();

    /* a shape of strings and literals keeps them: they must match too */

    shape_case("{\"prompt_tokens\":1,\"x\":\"ab\",\"completion_tokens\":2}",
               "{\"prompt_tokens\":8,\"x\":\"ab\",\"completion_tokens\":9}",
               1);
    shape_case("{\"prompt_tokens\":1,\"x\":\"ab\",\"completion_tokens\":2}",
               "{\"prompt_tokens\":8,\"x\":\"ac\",\"completion_tokens\":9}",
               0);
}


int
main(int argc, char **argv)
{
    srand(1);

    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench();

    } else {
        test_openai_stream();
        test_crlf();
        test_comments();
        test_gemini();
        test_deepseek();
        test_anthropic();
        test_cached_details();
        test_no_usage();
        test_tool_calls();
        test_cut();
        test_overlong();
        test_bad_chunks();
        test_skipped_members();
        test_json();
        test_json_check();
        test_json_lazy();
        test_usage_direct();
        test_usage_shape();
        test_json_bad();
        test_json_large();
        bench();
    }

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
