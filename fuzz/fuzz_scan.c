
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Differential libFuzzer target of the request body's tokenizer
 * (ngx_http_llmroute_scan.c) against two references:
 *
 *   - yajl, the strict oracle (no comments, no trailing garbage, one value,
 *     strings not checked for UTF-8, as the module): the scan accepts
 *     exactly what yajl accepts, but for values nested deeper than
 *     NGX_HTTP_LLMROUTE_SCAN_DEPTH, which it refuses;
 *   - jsmn (JSMN_STRICT, JSMN_PARENT_LINKS), the tokenizer it replaces: on
 *     every accepted body that starts like an object, an array or a string,
 *     the same token count and the same tokens, field for field; the count
 *     without tokens and the NOMEM answer of a short token array agree;
 *   - itself with shallow values (ngx_http_llmroute_scan_shallow(), two
 *     choices of members): the same answer, the same full count, and the
 *     tokens of the full scan but the contents of the shallow values, the
 *     others' indexes and parents renumbered;
 *   - ngx_http_llmroute_parse() and _parse_anthropic() with the scan and
 *     with the jsmn path alone (ngx_http_llmroute_scan_off): the same
 *     result, error code, message and parameter included, and the same
 *     spans of the members the module reads and splices.
 *
 * Built twice by fuzz/Makefile: with the vector code of the machine and
 * with -DNGX_HTTP_LLMROUTE_SCAN_SWAR (fuzz_scan_swar).  Each input is
 * checked on every walk of the build the CPU has: on x86-64 with AVX2,
 * the AVX2 walk of long strings and the SSE2 one.
 */


#include <ngx_http_llmroute_core.h>

#include <stdlib.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include <ngx_http_llmroute_scan.h>

#include <yajl/yajl_parse.h>


#define fuzz_assert(cond)                                                     \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_scan (%s): check failed at %s:%d: %s\n",       \
                ngx_http_llmroute_scan_kind, __FILE__, __LINE__, #cond);     \
        abort();                                                              \
    }


typedef struct fuzz_block_s  fuzz_block_t;

struct fuzz_block_s {
    fuzz_block_t               *next;
};


static fuzz_block_t  *fuzz_blocks;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_one(const uint8_t *data, size_t size);
static void fuzz_shallow(u_char *body, size_t size, jsmntok_t *tok, int n,
    ngx_http_llmroute_scan_shallow_pt shallow);


static void *
fuzz_alloc(void *data, size_t size)
{
    fuzz_block_t  *b;

    b = malloc(sizeof(fuzz_block_t) + size + 1);
    if (b == NULL) {
        abort();
    }

    b->next = fuzz_blocks;
    fuzz_blocks = b;

    return (u_char *) b + sizeof(fuzz_block_t);
}


static void
fuzz_free_all(void)
{
    fuzz_block_t  *b;

    while (fuzz_blocks) {
        b = fuzz_blocks;
        fuzz_blocks = b->next;
        free(b);
    }
}


/*
 * yajl's callbacks only track where the top-level value ends: yajl takes
 * an unterminated string after a complete value for a token still to come
 * ("{} \"x" passes yajl_complete_parse()), so the input is fed a byte at a
 * time and what follows the value's last byte must be whitespace.  A
 * top-level number ends when yajl reads the byte after it ("2\"" too).
 */

typedef struct {
    int                         depth;
    int                         done;
    int                         number;
} fuzz_yajl_t;


static int
fuzz_yajl_value(void *ctx)
{
    fuzz_yajl_t  *y = ctx;

    if (y->depth == 0) {
        y->done = 1;
    }

    return 1;
}


static int
fuzz_yajl_null(void *ctx)
{
    return fuzz_yajl_value(ctx);
}


static int
fuzz_yajl_boolean(void *ctx, int v)
{
    return fuzz_yajl_value(ctx);
}


static int
fuzz_yajl_number(void *ctx, const char *s, size_t len)
{
    fuzz_yajl_t  *y = ctx;

    y->number = (y->depth == 0);

    return fuzz_yajl_value(ctx);
}


static int
fuzz_yajl_string(void *ctx, const unsigned char *s, size_t len)
{
    return fuzz_yajl_value(ctx);
}


static int
fuzz_yajl_key(void *ctx, const unsigned char *s, size_t len)
{
    return 1;
}


static int
fuzz_yajl_open(void *ctx)
{
    ((fuzz_yajl_t *) ctx)->depth++;
    return 1;
}


static int
fuzz_yajl_close(void *ctx)
{
    ((fuzz_yajl_t *) ctx)->depth--;
    return fuzz_yajl_value(ctx);
}


static const yajl_callbacks  fuzz_yajl_callbacks = {
    fuzz_yajl_null, fuzz_yajl_boolean, NULL, NULL, fuzz_yajl_number,
    fuzz_yajl_string, fuzz_yajl_open, fuzz_yajl_key, fuzz_yajl_close,
    fuzz_yajl_open, fuzz_yajl_close
};


static int
fuzz_yajl(const u_char *p, size_t len)
{
    int            ok;
    size_t         i, last;
    yajl_handle    h;
    yajl_status    st;
    fuzz_yajl_t    y;

    y.depth = 0;
    y.done = 0;
    y.number = 0;
    last = len;

    h = yajl_alloc(&fuzz_yajl_callbacks, NULL, &y);
    if (h == NULL) {
        abort();
    }

    yajl_config(h, yajl_dont_validate_strings, 1);

    st = yajl_status_ok;

    for (i = 0; i < len && st == yajl_status_ok; i++) {
        st = yajl_parse(h, p + i, 1);

        if (y.done && last == len) {
            last = i;
        }
    }

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    ok = (st == yajl_status_ok);

    yajl_free(h);

    for (i = y.number ? last : last + 1; ok && i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') {
            ok = 0;
        }
    }

    return ok;
}


/*
 * The nesting depth of valid JSON: brackets outside strings.  Also -1 for
 * a \v or \f outside strings, which yajl takes for whitespace: JSON does
 * not.
 */

static int
fuzz_depth(const u_char *p, size_t len)
{
    int     d, max, in;
    size_t  i;

    d = 0;
    max = 0;
    in = 0;

    for (i = 0; i < len; i++) {
        if (in) {
            if (p[i] == '\\') {
                i++;

            } else if (p[i] == '"') {
                in = 0;
            }

            continue;
        }

        switch (p[i]) {
        case '\v': case '\f':
            return -1;
        case '"':
            in = 1;
            break;
        case '{': case '[':
            if (++d > max) {
                max = d;
            }
            break;
        case '}': case ']':
            d--;
            break;
        }
    }

    return max;
}


static void
fuzz_same_req(ngx_http_llmroute_req_t *a, ngx_http_llmroute_req_t *b)
{
    ngx_uint_t  i;

    fuzz_assert(a->error == b->error);
    fuzz_assert((a->error_msg == NULL) == (b->error_msg == NULL));
    fuzz_assert(a->error_msg == NULL
                || strcmp(a->error_msg, b->error_msg) == 0);
    fuzz_assert((a->error_param == NULL) == (b->error_param == NULL));
    fuzz_assert(a->error_param == NULL
                || strcmp(a->error_param, b->error_param) == 0);

    if (a->error) {
        return;
    }

    fuzz_assert(a->model_start == b->model_start);
    fuzz_assert(a->model_end == b->model_end);
    fuzz_assert(a->model.len == b->model.len);
    fuzz_assert(a->model.len == 0
                || memcmp(a->model.data, b->model.data, a->model.len) == 0);
    fuzz_assert(a->obj_open == b->obj_open);
    fuzz_assert(a->obj_close == b->obj_close);
    fuzz_assert(a->max_tokens == b->max_tokens);
    fuzz_assert(a->ntools == b->ntools);
    fuzz_assert(a->tools_bytes == b->tools_bytes);
    fuzz_assert(a->images == b->images);
    fuzz_assert(a->text_bytes == b->text_bytes);
    fuzz_assert(a->prompt_tokens == b->prompt_tokens);
    fuzz_assert(a->has_model == b->has_model);
    fuzz_assert(a->model_escaped == b->model_escaped);
    fuzz_assert(a->stream == b->stream);
    fuzz_assert(a->stream_options == b->stream_options);
    fuzz_assert(a->include_usage == b->include_usage);
    fuzz_assert(a->json_mode == b->json_mode);
    fuzz_assert(a->json_schema == b->json_schema);
    fuzz_assert(a->nmsgs == b->nmsgs);

    for (i = 0; i < a->nmsgs; i++) {
        fuzz_assert(a->msgs[i].role == b->msgs[i].role);
        fuzz_assert(a->msgs[i].start == b->msgs[i].start);
        fuzz_assert(a->msgs[i].end == b->msgs[i].end);
        fuzz_assert(a->msgs[i].text == b->msgs[i].text);
        fuzz_assert(a->msgs[i].images == b->msgs[i].images);
        fuzz_assert(a->msgs[i].tool_calls == b->msgs[i].tool_calls);
    }
}


/* the members whose values are shallow: all, or those of odd length */

/* the same n tokens, field by field */

static void
fuzz_same_tokens(jsmntok_t *a, jsmntok_t *b, int n)
{
    int  j;

    for (j = 0; j < n; j++) {
        fuzz_assert(a[j].type == b[j].type);
        fuzz_assert(a[j].start == b[j].start);
        fuzz_assert(a[j].end == b[j].end);
        fuzz_assert(a[j].size == b[j].size);
        fuzz_assert(a[j].parent == b[j].parent);
    }
}


static ngx_uint_t
fuzz_shallow_all(u_char *name, size_t len, void *data)
{
    return 1;
}


static ngx_uint_t
fuzz_shallow_odd(u_char *name, size_t len, void *data)
{
    return len & 1;
}


/* every walk this build and CPU have (the AVX2 one and the build's own) */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int  i, runs;

    runs = 0;

    for (i = 0; i < 2; i++) {
        if (ngx_http_llmroute_scan_use(i == 0) == NGX_OK) {
            fuzz_one(data, size);
            runs++;
        }
    }

    fuzz_assert(runs > 0);

    return 0;
}


static void
fuzz_one(const uint8_t *data, size_t size)
{
    int                       n, c, j, yes, deep;
    u_char                   *body;
    size_t                    i, cap;
    jsmntok_t                *tok, *jt;
    jsmn_parser               parser;
    ngx_http_llmroute_req_t   a, b;

    /* an exact-size copy, so ASan sees any read past the body */

    body = malloc(size ? size : 1);
    if (body == NULL) {
        abort();
    }

    ngx_memcpy(body, data, size);

    cap = size + 1;
    tok = malloc(cap * sizeof(jsmntok_t));
    jt = malloc(cap * sizeof(jsmntok_t));

    if (tok == NULL || jt == NULL) {
        abort();
    }

    /* yajl's verdict: the scan's, within the depth limit */

    n = ngx_http_llmroute_scan(body, size, tok, cap);
    yes = fuzz_yajl(body, size);
    j = fuzz_depth(body, size);
    yes = yes && j >= 0;
    deep = yes && j > NGX_HTTP_LLMROUTE_SCAN_DEPTH;

    fuzz_assert(n != NGX_HTTP_LLMROUTE_SCAN_NOMEM);

    if (deep) {
        fuzz_assert(n == NGX_HTTP_LLMROUTE_SCAN_DEEP);

    } else {
        fuzz_assert((n > 0) == yes);
    }

    /* counting only: the same answer */

    c = ngx_http_llmroute_scan(body, size, NULL, 0);
    fuzz_assert(c == n);

    if (n > 0) {
        fuzz_assert(ngx_http_llmroute_scan(body, size, tok, n - 1)
                    == NGX_HTTP_LLMROUTE_SCAN_NOMEM);
        fuzz_assert(ngx_http_llmroute_scan(body, size, tok, n) == n);
    }

    /* jsmn's tokens, where jsmn can read the value (not a bare literal) */

    for (i = 0; i < size && (body[i] == ' ' || body[i] == '\t'
                             || body[i] == '\n' || body[i] == '\r'); i++)
    {
        /* void */
    }

    if (n > 0 && (body[i] == '{' || body[i] == '[' || body[i] == '"')) {
        jsmn_init(&parser);
        c = jsmn_parse(&parser, (const char *) body, size, jt, cap);
        fuzz_assert(c == n);

        fuzz_same_tokens(tok, jt, n);
    }

    /* shallow values: the full scan's tokens less their contents */

    fuzz_shallow(body, size, tok, n, fuzz_shallow_all);
    fuzz_shallow(body, size, tok, n, fuzz_shallow_odd);

    /* the module's parse: the scan and the jsmn path alone agree */

    ngx_http_llmroute_scan_off = 0;
    fuzz_assert(ngx_http_llmroute_parse(&a, body, size, fuzz_alloc, NULL)
                == NGX_OK);

    ngx_http_llmroute_scan_off = 1;
    fuzz_assert(ngx_http_llmroute_parse(&b, body, size, fuzz_alloc, NULL)
                == NGX_OK);
    ngx_http_llmroute_scan_off = 0;

    fuzz_same_req(&a, &b);

    ngx_http_llmroute_scan_off = 0;
    fuzz_assert(ngx_http_llmroute_parse_anthropic(&a, body, size, fuzz_alloc,
                                                  NULL)
                == NGX_OK);

    ngx_http_llmroute_scan_off = 1;
    fuzz_assert(ngx_http_llmroute_parse_anthropic(&b, body, size, fuzz_alloc,
                                                  NULL)
                == NGX_OK);
    ngx_http_llmroute_scan_off = 0;

    fuzz_same_req(&a, &b);

    fuzz_free_all();
    free(jt);
    free(tok);
    free(body);
}


/*
 * The scan with the values shallow() names one token: tok holds the full
 * scan's n tokens (or its error).  Expected: those tokens in order, less
 * the ones inside a shallow value (a container that is the value of a key
 * of a top-level object shallow() names), parents renumbered.
 */

static void
fuzz_shallow(u_char *body, size_t size, jsmntok_t *tok, int n,
    ngx_http_llmroute_scan_shallow_pt shallow)
{
    int         j, k, m, c, all, skip, *map;
    jsmntok_t  *want, *got;

    want = malloc((size + 1) * sizeof(jsmntok_t));
    got = malloc((size + 1) * sizeof(jsmntok_t));
    map = malloc((size + 1) * sizeof(int));

    if (want == NULL || got == NULL || map == NULL) {
        abort();
    }

    all = -1;
    m = ngx_http_llmroute_scan_shallow(body, size, got, size + 1, shallow,
                                       NULL, &all);

    if (n <= 0) {
        fuzz_assert(m == n);

        c = ngx_http_llmroute_scan_shallow(body, size, NULL, 0, shallow, NULL,
                                           &all);
        fuzz_assert(c == n);
        goto done;
    }

    k = 0;
    skip = -1;      /* the end of the shallow value being left out */

    for (j = 0; j < n; j++) {

        if (skip >= 0 && tok[j].start < skip) {
            map[j] = -1;
            continue;
        }

        skip = -1;

        map[j] = k;
        want[k] = tok[j];
        want[k].parent = tok[j].parent < 0 ? -1 : map[tok[j].parent];
        fuzz_assert(tok[j].parent < 0 || want[k].parent >= 0);
        k++;

        if (j > 0 && tok[0].type == JSMN_OBJECT && tok[j].parent == 0
            && (tok[j + 1].type == JSMN_OBJECT
                || tok[j + 1].type == JSMN_ARRAY)
            && shallow(body + tok[j].start, tok[j].end - tok[j].start, NULL))
        {
            /* the key's value stays, its contents go */

            j++;
            map[j] = k;
            want[k] = tok[j];
            want[k].parent = map[tok[j].parent];
            k++;
            skip = tok[j].end;
        }
    }

    fuzz_assert(m == k);
    fuzz_assert(all == n);

    fuzz_same_tokens(got, want, k);

    /* counting only, and a short array */

    all = -1;
    c = ngx_http_llmroute_scan_shallow(body, size, NULL, 0, shallow, NULL,
                                       &all);
    fuzz_assert(c == k);
    fuzz_assert(all == n);

    fuzz_assert(ngx_http_llmroute_scan_shallow(body, size, got, k - 1, shallow,
                                               NULL, &all)
                == NGX_HTTP_LLMROUTE_SCAN_NOMEM);
    fuzz_assert(ngx_http_llmroute_scan_shallow(body, size, got, k, shallow,
                                               NULL, &all)
                == k);

done:

    free(map);
    free(got);
    free(want);
}
