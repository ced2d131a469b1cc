
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * libFuzzer target for the usage scanner.  Input: byte 0 chooses the body
 * kind and carry size, byte 1 how the rest is split into buffers.  The
 * body is fed whole and then split; both runs must agree on every result
 * and every strip span, and the stripping filter's contract (spans in
 * order, hold never behind what was sent, at most 2 * carry + 1 bytes
 * undecided) must hold at each step.  Each buffer is its own allocation so
 * that ASan sees a read past it.
 *
 *   byte 0: bit 0 JSON (else SSE), bit 1 JSON_CHECK, bits 2-4 carry size
 *   byte 1: 0 one byte at a time, else seed of random buffer sizes
 *
 * Each run is made twice, with usage objects read by the one-pass reader
 * and by the general path only: every result must be the same.
 */


#include <ngx_http_llmroute_usage.h>

#include <stdlib.h>


#define MAXSPANS  64


typedef struct {
    int64_t     prompt;
    int64_t     completion;
    int64_t     cached;
    int64_t     cache_write;
    size_t      content_bytes;
    ngx_uint_t  finish;
    ngx_uint_t  events;
    ngx_uint_t  bad_events;
    unsigned    flags;
    off_t       span[MAXSPANS][2];
    int         nspans;
} fuzz_result_t;


static const size_t  carry_sizes[8] = {
    65536, 1, 5, 16, 64, 256, 1024, 4096
};

static size_t  live;


#define fuzz_assert(cond)                                                     \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_usage: %s:%d: %s\n", __FILE__, __LINE__,        \
                #cond);                                                       \
        abort();                                                              \
    }


static void *
fuzz_alloc(void *data, size_t size)
{
    live++;
    return malloc(size);
}


static void
fuzz_free(void *data, void *p)
{
    live--;
    free(p);
}


static size_t
next_piece(uint32_t *seed, size_t left)
{
    size_t  n;

    if (*seed == 0) {
        return 1;
    }

    *seed = *seed * 1103515245 + 12345;
    n = 1 + (*seed >> 16) % ((*seed & 0x100) ? 7 : 300);

    return ngx_min(n, left);
}


static void
add_span(fuzz_result_t *r, ngx_http_llmroute_usage_t *u,
    ngx_http_llmroute_usage_span_t *span, off_t *sent)
{
    fuzz_assert(span->start >= *sent);
    fuzz_assert(span->end > span->start);
    fuzz_assert(span->end <= u->offset);
    fuzz_assert(r->nspans < MAXSPANS);

    r->span[r->nspans][0] = span->start;
    r->span[r->nspans][1] = span->end;
    r->nspans++;
    *sent = span->end;
}


static void
run(const uint8_t *data, size_t size, ngx_uint_t flags, size_t carry_size,
    uint32_t seed, int whole, fuzz_result_t *r)
{
    u_char                          *carry, *piece;
    off_t                            sent;
    size_t                           a, len, pos, n;
    ngx_http_llmroute_usage_t        u;
    ngx_http_llmroute_usage_span_t   span;

    memset(r, 0, sizeof(fuzz_result_t));

    carry = malloc(carry_size);
    fuzz_assert(ngx_http_llmroute_usage_init(&u, flags, carry, carry_size,
                                             fuzz_alloc, fuzz_free, NULL)
                == NGX_OK);
    sent = 0;

    if (whole) {
        u.length = size;    /* lets JSON_LAZY read a whole answer's tail */
    }

    for (a = 0; a < size; a += len) {
        len = whole ? size : next_piece(&seed, size - a);

        piece = malloc(len);
        memcpy(piece, data + a, len);

        for (pos = 0; pos < len; pos += n) {
            n = ngx_http_llmroute_usage_feed_sse(&u, piece + pos, len - pos,
                                                 &span);

            fuzz_assert(n <= len - pos);
            fuzz_assert(n > 0 || span.end != 0);

            if (span.end) {
                add_span(r, &u, &span, &sent);
            }
        }

        free(piece);

        fuzz_assert(u.offset == (off_t) (a + len));

        if (flags & NGX_HTTP_LLMROUTE_USAGE_SSE) {
            fuzz_assert(u.hold >= sent && u.hold <= u.offset);
            fuzz_assert(u.offset - u.hold <= 2 * (off_t) carry_size + 1);
            sent = u.hold;
        }
    }

    ngx_http_llmroute_usage_finish(&u, &span);

    if (span.end) {
        add_span(r, &u, &span, &sent);
    }

    fuzz_assert(live == 0);
    fuzz_assert(!(flags & NGX_HTTP_LLMROUTE_USAGE_SSE)
                || u.hold == u.offset);

    r->prompt = u.prompt_tokens;
    r->completion = u.completion_tokens;
    r->cached = u.cached_tokens;
    r->cache_write = u.cache_write_tokens;
    r->content_bytes = u.content_bytes;
    r->finish = u.finish_reason;
    r->events = u.events;
    r->bad_events = u.bad_events;
    r->flags = u.have_usage | u.done << 1 | u.error << 2 | u.malformed << 3
               | u.tool_calls << 4 | u.empty_content << 5
               | u.content_is_json << 6;

    fuzz_assert(!u.have_usage
                || u.prompt_tokens >= 0 || u.completion_tokens >= 0);
    fuzz_assert(u.bad_events <= u.events);

    free(carry);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         carry_size;
    uint32_t       seed;
    ngx_uint_t     flags, reads;
    fuzz_result_t  a, b, c, d, e;

    if (size < 2) {
        return 0;
    }

    flags = (data[0] & 1) ? NGX_HTTP_LLMROUTE_USAGE_JSON
                          : NGX_HTTP_LLMROUTE_USAGE_SSE;

    if (data[0] & 2) {
        flags |= NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK;

    } else if ((data[0] & 0x21) == 0x21) {
        flags |= NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY;
    }

    if (data[0] & 0x40) {
        flags |= NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC;
    }

    carry_size = carry_sizes[(data[0] >> 2) & 7];
    seed = data[1];

    /* a usage object read in one pass: as the general path reads it */

    ngx_http_llmroute_usage_no_direct = 1;
    run(data + 2, size - 2, flags, carry_size, 0, 1, &a);
    run(data + 2, size - 2, flags, carry_size, seed, 0, &b);
    ngx_http_llmroute_usage_no_direct = 0;
    run(data + 2, size - 2, flags, carry_size, 0, 1, &c);
    run(data + 2, size - 2, flags, carry_size, seed, 0, &d);

    fuzz_assert(memcmp(&a, &c, sizeof(fuzz_result_t)) == 0);
    fuzz_assert(memcmp(&b, &d, sizeof(fuzz_result_t)) == 0);

    /* a whole answer JSON_LAZY did not take reads as without it */

    if (flags & NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY) {
        reads = ngx_http_llmroute_usage_whole_reads;
        run(data + 2, size - 2, flags, carry_size, 0, 1, &c);

        if (ngx_http_llmroute_usage_whole_reads == reads) {
            run(data + 2, size - 2, flags & ~NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY,
                carry_size, 0, 1, &e);
            fuzz_assert(memcmp(&c, &e, sizeof(fuzz_result_t)) == 0);
        }
    }

    /*
     * JSON_LAZY reads a whole answer's usage only, and without validating
     * what it skips: a split one goes through yajl.  Only the invariants
     * checked in run() hold for both (t/unit compares real answers).
     */

    if (!(flags & NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY)) {
        fuzz_assert(memcmp(&a, &b, sizeof(fuzz_result_t)) == 0);
    }

    return 0;
}
