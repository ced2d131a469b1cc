
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * libFuzzer target for the request path of the routing core: the input is
 * a request body, run through parse -> resolve_model -> classify -> select
 * with a small catalog, as ngx_http_llmroute_decide() does.  When the parse
 * succeeds, the splice of ngx_http_llmroute_set_body() is re-implemented
 * here and the new body is checked:
 *
 *   - offsets are inside the body and ordered, the braces and quotes they
 *     point at are there;
 *   - the module's parser reads the new body back: same request, "model" is
 *     the catalog id, stream_options added when the module would add it;
 *   - an independent strict RFC 8259 checker (below, no jsmn) agrees with
 *     the module: a valid object is never refused as invalid_json, what the
 *     module accepts is valid JSON, and valid stays valid after the splice
 *     with the same top-level members, byte for byte, but "model";
 *   - "model" spelled with \u escapes (value or key) resolves exactly like
 *     the plain spelling; the module's unescape agrees with ours;
 *   - select() returns an eligible model that is the cheapest one.
 *
 * Each check has a name; FUZZ_REQUEST_SKIP="name,name" in the environment
 * turns checks off (for long runs while a known bug is open).  Names:
 * strict_accept, strict_reject, reparse, splice_strict, escape, unescape,
 * select, strict_ctrl (raw control characters in strings accepted),
 * dup_stream_options (a second "stream_options" spliced in), strict_chain
 * (colon chains "a":"b":"c" / ["a":"b"] accepted), strict_empty
 * (separators inside an empty container, {,} [,] {:}, accepted),
 * case_fold (a top-level name that equals a routed member but for ASCII
 * case, {"model":..,"Model":..}, must be refused as invalid_request: the
 * body as given, and every accepted body with one routed name re-cased).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -DNGX_HTTP_LLMROUTE_STANDALONE -I ngx_http_llmroute_module \
 *       fuzz/fuzz_request.c \
 *       ngx_http_llmroute_module/ngx_http_llmroute_json.c \
 *       ngx_http_llmroute_module/ngx_http_llmroute_classify.c \
 *       ngx_http_llmroute_module/ngx_http_llmroute_ask.c \
 *       ngx_http_llmroute_module/ngx_http_llmroute_route.c
 */


#include <ngx_http_llmroute_core.h>

#include <stdlib.h>

/* our own jsmn instance (static), to classify what the module let through */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>


#define FUZZ_MAX_MEMBERS   64
#define FUZZ_MAX_DEPTH     4096
#define FUZZ_USAGE_OPTION  ",\"stream_options\":{\"include_usage\":true}"


typedef struct fuzz_block_s  fuzz_block_t;

struct fuzz_block_s {
    fuzz_block_t               *next;
    size_t                      size;
};


typedef struct {
    size_t                      key_start;  /* quotes included */
    size_t                      key_end;
    size_t                      val_start;
    size_t                      val_end;
} fuzz_member_t;


typedef struct {
    fuzz_member_t               m[FUZZ_MAX_MEMBERS];
    int                         n;
    int                         overflow;
} fuzz_members_t;


typedef struct {
    const u_char               *start;
    const u_char               *p;
    const u_char               *end;
    int                         depth;
    int                         too_deep;
    int                         allow_ctrl;
    fuzz_members_t             *members;
} fuzz_sj_t;


static int fuzz_sj_value(fuzz_sj_t *s);


static fuzz_block_t  *fuzz_blocks;
static unsigned       fuzz_skip;

static const char  *fuzz_check_names[] = {
    "strict_accept", "strict_reject", "reparse", "splice_strict", "escape",
    "unescape", "select", "strict_ctrl", "dup_stream_options",
    "strict_chain", "strict_empty", "case_fold", NULL
};

enum {
    FUZZ_STRICT_ACCEPT = 0,
    FUZZ_STRICT_REJECT,
    FUZZ_REPARSE,
    FUZZ_SPLICE_STRICT,
    FUZZ_ESCAPE,
    FUZZ_UNESCAPE,
    FUZZ_SELECT,
    FUZZ_STRICT_CTRL,
    FUZZ_DUP_STREAM_OPTIONS,
    FUZZ_STRICT_CHAIN,
    FUZZ_STRICT_EMPTY,
    FUZZ_CASE_FOLD
};


#define fuzz_check(name, cond)                                                \
    if (!(fuzz_skip & (1u << (name))) && !(cond)) {                           \
        fprintf(stderr, "fuzz_request: check \"%s\" failed at %s:%d: %s\n",  \
                fuzz_check_names[name], __FILE__, __LINE__, #cond);          \
        abort();                                                              \
    }

#define fuzz_assert(cond)                                                     \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_request: %s:%d: %s\n", __FILE__, __LINE__,     \
                #cond);                                                       \
        abort();                                                              \
    }


/* ------------------------------------------------------------ the catalog */

static ngx_str_t  fuzz_regions[] = { ngx_string("us"), ngx_string("eu") };

static ngx_http_llmroute_provider_t  fuzz_providers[] = {
    { ngx_string("cheap"), ngx_string("http://127.0.0.1:1/v1"),
      ngx_string("127.0.0.1:1"), ngx_null_string, ngx_null_string,
      3, 0, 0, 0, 0,
      NGX_HTTP_LLMROUTE_FORMAT_OPENAI, 0, ngx_null_string },
    { ngx_string("premium"), ngx_string("http://127.0.0.1:2/v1"),
      ngx_string("127.0.0.1:2"), ngx_null_string, ngx_null_string,
      0, 0, 0, 0, 1,
      NGX_HTTP_LLMROUTE_FORMAT_OPENAI, 0, ngx_null_string },
};

/* ids: plain, with a slash (escaped "\/" in a body), a "provider/" prefix */
static ngx_http_llmroute_model_t  fuzz_models[] = {
    { ngx_string("small-1"), ngx_string("cheap/small-1"), 0,
      NGX_HTTP_LLMROUTE_TIER_SIMPLE, 100, 400, 10, 16384, 0, 1, 0, 1, 125,
      0, 0 },
    { ngx_string("mid-1"), ngx_string("premium/mid-1"), 1,
      NGX_HTTP_LLMROUTE_TIER_MODERATE, 1000, 4000, 100, 131072, 1, 1, 1, 1,
      1250, 0, 0 },
    { ngx_string("big-1"), ngx_string("premium/big-1"), 1,
      NGX_HTTP_LLMROUTE_TIER_COMPLEX, 3000, 15000, 300, 204800, 1, 1, 1, 1,
      3750, 0, 0 },
    { ngx_string("o/m"), ngx_string("cheap/o/m"), 0,
      NGX_HTTP_LLMROUTE_TIER_MODERATE, 500, 1500, 0, 32768, 1, 0, 0, 0, 625,
      0, 0 },
};

#define FUZZ_NMODELS  (sizeof(fuzz_models) / sizeof(fuzz_models[0]))

static ngx_http_llmroute_catalog_t  fuzz_cat;


/* ------------------------------------------------------------ allocation */

static void *
fuzz_alloc(void *data, size_t size)
{
    fuzz_block_t  *b;

    fuzz_assert(size > 0 && size < ((size_t) 1 << 32));

    b = malloc(sizeof(fuzz_block_t) + size);
    fuzz_assert(b != NULL);

    b->next = fuzz_blocks;
    b->size = size;
    fuzz_blocks = b;

    return b + 1;
}


static void
fuzz_free_all(void)
{
    fuzz_block_t  *b, *next;

    for (b = fuzz_blocks; b; b = next) {
        next = b->next;
        free(b);
    }

    fuzz_blocks = NULL;
}


/* a copy in its own exact-size allocation, so ASan sees a read past it */

static u_char *
fuzz_dup(const u_char *p, size_t len)
{
    u_char  *d;

    d = malloc(len ? len : 1);
    fuzz_assert(d != NULL);

    if (len) {
        memcpy(d, p, len);
    }

    return d;
}


/* ------------------------------------------- strict RFC 8259 checker */

static void
fuzz_sj_ws(fuzz_sj_t *s)
{
    while (s->p < s->end
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}


static int
fuzz_hex(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}


static int
fuzz_sj_string(fuzz_sj_t *s)
{
    int     i;
    u_char  c;

    s->p++;

    while (s->p < s->end) {
        c = *s->p++;

        if (c == '"') {
            return 1;
        }

        if (c < 0x20 && !s->allow_ctrl) {
            return 0;
        }

        if (c != '\\') {
            continue;
        }

        if (s->p >= s->end) {
            return 0;
        }

        c = *s->p++;

        switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            break;

        case 'u':
            for (i = 0; i < 4; i++) {
                if (s->p >= s->end || !fuzz_hex(*s->p)) {
                    return 0;
                }

                s->p++;
            }

            break;

        default:
            return 0;
        }
    }

    return 0;
}


static int
fuzz_sj_digits(fuzz_sj_t *s)
{
    const u_char  *p;

    p = s->p;

    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        s->p++;
    }

    return s->p > p;
}


static int
fuzz_sj_number(fuzz_sj_t *s)
{
    if (s->p < s->end && *s->p == '-') {
        s->p++;
    }

    if (s->p >= s->end) {
        return 0;
    }

    if (*s->p == '0') {
        s->p++;

    } else if (!fuzz_sj_digits(s)) {
        return 0;
    }

    if (s->p < s->end && *s->p == '.') {
        s->p++;

        if (!fuzz_sj_digits(s)) {
            return 0;
        }
    }

    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;

        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
            s->p++;
        }

        if (!fuzz_sj_digits(s)) {
            return 0;
        }
    }

    return 1;
}


static int
fuzz_sj_word(fuzz_sj_t *s, const char *w)
{
    size_t  n;

    n = strlen(w);

    if ((size_t) (s->end - s->p) < n || memcmp(s->p, w, n) != 0) {
        return 0;
    }

    s->p += n;

    return 1;
}


static int
fuzz_sj_container(fuzz_sj_t *s)
{
    int             object;
    size_t          ks, ke, vs;
    fuzz_member_t  *m;

    object = (*s->p == '{');

    if (++s->depth > FUZZ_MAX_DEPTH) {
        s->too_deep = 1;
        return 0;
    }

    s->p++;
    fuzz_sj_ws(s);

    if (s->p < s->end && *s->p == (object ? '}' : ']')) {
        s->p++;
        s->depth--;
        return 1;
    }

    for ( ;; ) {
        ks = ke = 0;

        if (object) {
            fuzz_sj_ws(s);

            if (s->p >= s->end || *s->p != '"') {
                return 0;
            }

            ks = s->p - s->start;

            if (!fuzz_sj_string(s)) {
                return 0;
            }

            ke = s->p - s->start;
            fuzz_sj_ws(s);

            if (s->p >= s->end || *s->p != ':') {
                return 0;
            }

            s->p++;
        }

        fuzz_sj_ws(s);
        vs = s->p - s->start;

        if (!fuzz_sj_value(s)) {
            return 0;
        }

        if (object && s->depth == 1 && s->members) {
            if (s->members->n < FUZZ_MAX_MEMBERS) {
                m = &s->members->m[s->members->n++];
                m->key_start = ks;
                m->key_end = ke;
                m->val_start = vs;
                m->val_end = s->p - s->start;

            } else {
                s->members->overflow = 1;
            }
        }

        fuzz_sj_ws(s);

        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }

        if (s->p < s->end && *s->p == (object ? '}' : ']')) {
            s->p++;
            s->depth--;
            return 1;
        }

        return 0;
    }
}


static int
fuzz_sj_value(fuzz_sj_t *s)
{
    fuzz_sj_ws(s);

    if (s->p >= s->end) {
        return 0;
    }

    switch (*s->p) {
    case '{':
    case '[':
        return fuzz_sj_container(s);
    case '"':
        return fuzz_sj_string(s);
    case 't':
        return fuzz_sj_word(s, "true");
    case 'f':
        return fuzz_sj_word(s, "false");
    case 'n':
        return fuzz_sj_word(s, "null");
    default:
        return fuzz_sj_number(s);
    }
}


/* 1: valid, 0: invalid, -1: too deep to say */

static int
fuzz_strict_json2(const u_char *p, size_t len, fuzz_members_t *members,
    int allow_ctrl)
{
    int        ok;
    fuzz_sj_t  s;

    s.allow_ctrl = allow_ctrl;
    s.start = p;
    s.p = p;
    s.end = p + len;
    s.depth = 0;
    s.too_deep = 0;
    s.members = members;

    if (members) {
        members->n = 0;
        members->overflow = 0;
    }

    ok = fuzz_sj_value(&s);

    if (s.too_deep) {
        return -1;
    }

    if (!ok) {
        return 0;
    }

    fuzz_sj_ws(&s);

    return s.p == s.end;
}


static int
fuzz_strict_json(const u_char *p, size_t len, fuzz_members_t *members)
{
    return fuzz_strict_json2(p, len, members, 0);
}


/*
 * Known ways past the module's check of jsmn's tokens: 1 when jsmn took
 * "a":"b":"c" for nested keys (a token whose parent is a string that is
 * not an object key), 2 when an empty container holds separators ({,}).
 */

static int
fuzz_jsmn_chain(const u_char *p, size_t len)
{
    int           n, i, found;
    jsmntok_t    *tok;
    jsmn_parser   parser;

    jsmn_init(&parser);
    n = jsmn_parse(&parser, (const char *) p, len, NULL, 0);

    if (n <= 0) {
        return 0;
    }

    tok = malloc(n * sizeof(jsmntok_t));
    fuzz_assert(tok != NULL);

    jsmn_init(&parser);
    n = jsmn_parse(&parser, (const char *) p, len, tok, n);
    found = 0;

    for (i = 0; i < n && !found; i++) {
        if (tok[i].parent >= 0 && tok[tok[i].parent].type == JSMN_STRING
            && (tok[tok[i].parent].parent < 0
                || tok[tok[tok[i].parent].parent].type != JSMN_OBJECT))
        {
            found = 1;
        }
    }

    for (i = 0; i < n && !found; i++) {
        int  k;

        if ((tok[i].type == JSMN_OBJECT || tok[i].type == JSMN_ARRAY)
            && tok[i].size == 0 && tok[i].end > tok[i].start)
        {
            for (k = tok[i].start + 1; k < tok[i].end - 1; k++) {
                if (p[k] != ' ' && p[k] != '\t' && p[k] != '\n'
                    && p[k] != '\r')
                {
                    found = 2;
                }
            }
        }
    }

    free(tok);

    return found;
}


/* the first non-blank byte is '{' */

static int
fuzz_is_object(const u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') {
            return p[i] == '{';
        }
    }

    return 0;
}


/* ------------------------------------------- independent unescape */

static unsigned
fuzz_hex4(const u_char *p)
{
    unsigned  v, i, c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }

    return v;
}


/* decoded length, or -1 (bad escape, lone surrogate); dst >= len bytes */

static ssize_t
fuzz_unescape(const u_char *p, size_t len, u_char *dst)
{
    u_char        *d;
    unsigned       cp, lo;
    const u_char  *end;

    d = dst;
    end = p + len;

    while (p < end) {
        if (*p != '\\') {
            *d++ = *p++;
            continue;
        }

        if (end - p < 2) {
            return -1;
        }

        switch (p[1]) {
        case '"': case '\\': case '/':
            cp = p[1]; p += 2; break;
        case 'b': cp = '\b'; p += 2; break;
        case 'f': cp = '\f'; p += 2; break;
        case 'n': cp = '\n'; p += 2; break;
        case 'r': cp = '\r'; p += 2; break;
        case 't': cp = '\t'; p += 2; break;
        case 'u':
            if (end - p < 6) {
                return -1;
            }

            cp = fuzz_hex4(p + 2);
            p += 6;

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1;
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
                    return -1;
                }

                lo = fuzz_hex4(p + 2);

                if (lo < 0xdc00 || lo > 0xdfff) {
                    return -1;
                }

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }

            break;
        default:
            return -1;
        }

        if (cp < 0x80) {
            *d++ = cp;

        } else if (cp < 0x800) {
            *d++ = 0xc0 | (cp >> 6);
            *d++ = 0x80 | (cp & 0x3f);

        } else if (cp < 0x10000) {
            *d++ = 0xe0 | (cp >> 12);
            *d++ = 0x80 | ((cp >> 6) & 0x3f);
            *d++ = 0x80 | (cp & 0x3f);

        } else {
            *d++ = 0xf0 | (cp >> 18);
            *d++ = 0x80 | ((cp >> 12) & 0x3f);
            *d++ = 0x80 | ((cp >> 6) & 0x3f);
            *d++ = 0x80 | (cp & 0x3f);
        }
    }

    return d - dst;
}


/* ------------------------------------------- the routing core */

static ngx_int_t
fuzz_parse(ngx_http_llmroute_req_t *req, u_char *body, size_t len)
{
    ngx_int_t  rc;

    rc = ngx_http_llmroute_parse(req, body, len, fuzz_alloc, NULL);

    /* NGX_ERROR is an allocation failure only: ours never fail */
    fuzz_assert(rc == NGX_OK);
    fuzz_assert(req->error <= NGX_HTTP_LLMROUTE_TOO_COMPLEX);
    fuzz_assert(req->error == 0 || req->error_msg != NULL);

    return req->error;
}


static void
fuzz_check_offsets(ngx_http_llmroute_req_t *req, u_char *body, size_t len)
{
    ngx_uint_t                i;
    ngx_http_llmroute_msg_t  *msg;

    fuzz_assert(req->body == body && req->len == len);
    fuzz_assert(req->obj_open >= 1 && req->obj_open <= req->obj_close);
    fuzz_assert(req->obj_close < len);
    fuzz_assert(body[req->obj_open - 1] == '{');
    fuzz_assert(body[req->obj_close] == '}');

    if (req->has_model) {
        fuzz_assert(req->obj_open <= req->model_start);
        fuzz_assert(req->model_start + 2 <= req->model_end);
        fuzz_assert(req->model_end <= req->obj_close);
        fuzz_assert(body[req->model_start] == '"');
        fuzz_assert(body[req->model_end - 1] == '"');

        if (!req->model_escaped) {
            fuzz_assert(req->model.data == body + req->model_start + 1);
            fuzz_assert(req->model.len
                        == req->model_end - req->model_start - 2);

        } else {
            fuzz_assert(req->model.len
                        <= req->model_end - req->model_start - 2);
        }
    }

    fuzz_assert(req->nmsgs >= 1 && req->msgs != NULL);

    for (i = 0; i < req->nmsgs; i++) {
        msg = &req->msgs[i];
        fuzz_assert(msg->start <= msg->end && msg->end <= len);
        fuzz_assert(msg->role <= NGX_HTTP_LLMROUTE_ROLE_TOOL);

        if (msg->start < msg->end) {
            fuzz_assert(msg->start > req->obj_open);
            fuzz_assert(msg->end <= req->obj_close);
        }
    }

    fuzz_assert(req->max_tokens >= -1);
    fuzz_assert(req->tools_bytes <= len && req->text_bytes <= len * 2);
}


/* select() must return the cheapest eligible model: recomputed here */

static void
fuzz_check_select(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_want_t *want, ngx_http_llmroute_choice_t *choice)
{
    size_t                         budget;
    uint64_t                       cost, best;
    ngx_int_t                      expect;
    ngx_uint_t                     i;
    ngx_http_llmroute_model_t     *m;
    ngx_http_llmroute_provider_t  *p;

    fuzz_assert(choice->model >= -1
                && choice->model < (ngx_int_t) FUZZ_NMODELS);
    fuzz_assert(choice->model >= 0 || choice->why_none != NULL);

    budget = req->max_tokens >= 0 ? (size_t) req->max_tokens
             : fuzz_cat.output_budget[ngx_min(want->tier, 2)];

    expect = -1;
    best = 0;

    for (i = 0; i < FUZZ_NMODELS; i++) {
        m = &fuzz_models[i];
        p = &fuzz_providers[m->provider];

        if (want->pin != NGX_HTTP_LLMROUTE_PIN_NONE
            && !(m->id.len == want->pin_id.len
                 && memcmp(m->id.data, want->pin_id.data, m->id.len) == 0))
        {
            continue;
        }

        if (want->pin == NGX_HTTP_LLMROUTE_PIN_PROVIDER
            && m->provider != want->pin_provider)
        {
            continue;
        }

        if (want->pin == NGX_HTTP_LLMROUTE_PIN_NONE && m->tier < want->tier) {
            continue;
        }

        if (p->regions && want->region != NGX_HTTP_LLMROUTE_REGION_ANY
            && (want->region < 0 || !(p->regions & (1u << want->region))))
        {
            continue;
        }

        if ((req->ntools && !m->tools) || (req->images && !m->vision)
            || (req->json_mode && !m->json))
        {
            continue;
        }

        if (m->context && req->prompt_tokens + budget > m->context) {
            continue;
        }

        if (want->exclude & ((uint64_t) 1 << m->provider)) {
            continue;
        }

        cost = (uint64_t) req->prompt_tokens * m->input
               + (uint64_t) budget * m->output;

        if (expect == -1 || cost < best) {
            expect = i;
            best = cost;
        }
    }

    fuzz_check(FUZZ_SELECT, choice->model == expect);
    fuzz_check(FUZZ_SELECT, expect == -1 || choice->est_cost == best);
}


/* ------------------------------------------- case-folded names */

static const char  *fuzz_routed[] = {
    "model", "messages", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "tools", "functions", "response_format", NULL
};


/* 1: a top-level name equal to a routed one but for ASCII case */

static int
fuzz_has_folded(const u_char *body, fuzz_members_t *mem)
{
    int      i, k;
    u_char   buf[64];
    size_t   klen, j, l;
    ssize_t  n;

    for (i = 0; i < mem->n; i++) {
        klen = mem->m[i].key_end - mem->m[i].key_start - 2;

        if (klen > sizeof(buf)) {
            continue;
        }

        n = fuzz_unescape(body + mem->m[i].key_start + 1, klen, buf);

        for (k = 0; n > 0 && fuzz_routed[k]; k++) {
            l = strlen(fuzz_routed[k]);

            if ((size_t) n != l || memcmp(buf, fuzz_routed[k], l) == 0) {
                continue;
            }

            for (j = 0; j < l; j++) {
                if (ngx_tolower(buf[j]) != (u_char) fuzz_routed[k][j]) {
                    break;
                }
            }

            if (j == l) {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * The body as given: a folded name is refused.  An accepted body: the
 * first routed name spelled plainly gets its first letter upper-cased in
 * place, and that body is refused as invalid_request.
 */

static void
fuzz_check_case_fold(ngx_http_llmroute_req_t *req, const u_char *body,
    size_t size)
{
    int                      i, k;
    u_char                  *copy;
    size_t                   klen;
    ngx_http_llmroute_req_t  r2;
    static fuzz_members_t    mem;

    if (fuzz_strict_json(body, size, &mem) != 1 || mem.overflow) {
        return;
    }

    if (fuzz_has_folded(body, &mem)) {
        fuzz_check(FUZZ_CASE_FOLD, req->error != NGX_HTTP_LLMROUTE_OK);
        return;
    }

    if (req->error != NGX_HTTP_LLMROUTE_OK) {
        return;
    }

    for (i = 0; i < mem.n; i++) {
        klen = mem.m[i].key_end - mem.m[i].key_start - 2;

        for (k = 0; fuzz_routed[k]; k++) {
            if (klen == strlen(fuzz_routed[k])
                && memcmp(body + mem.m[i].key_start + 1, fuzz_routed[k],
                          klen) == 0)
            {
                goto found;
            }
        }
    }

    return;

found:

    copy = fuzz_dup(body, size);
    copy[mem.m[i].key_start + 1] -= 'a' - 'A';

    fuzz_parse(&r2, copy, size);
    fuzz_check(FUZZ_CASE_FOLD, r2.error == NGX_HTTP_LLMROUTE_INVALID_REQUEST);

    free(copy);
}


/* ------------------------------------------- the splice */

static u_char *
fuzz_splice(ngx_http_llmroute_req_t *req, ngx_http_llmroute_model_t *m,
    size_t *len, ngx_uint_t *strip)
{
    u_char       *out, *p, *body, idq[128];
    size_t        n, pos, start[2], end[2], flen[2];
    const u_char *fix[2];
    ngx_uint_t    i, e, ne;

    body = req->body;
    n = req->len + m->id.len + sizeof("\"model\":\"\",")
        + sizeof(FUZZ_USAGE_OPTION);

    out = malloc(n);
    fuzz_assert(out != NULL);
    fuzz_assert(m->id.len + sizeof("\"model\":\"\",") <= sizeof(idq));

    /* the same two edits as ngx_http_llmroute_set_body(), in body order */

    if (req->has_model) {
        start[0] = req->model_start;
        end[0] = req->model_end;
        p = ngx_cpymem(idq, "\"", 1);
        p = ngx_cpymem(p, m->id.data, m->id.len);
        p = ngx_cpymem(p, "\"", 1);

    } else {
        start[0] = end[0] = req->obj_open;
        p = ngx_cpymem(idq, "\"model\":\"", 9);
        p = ngx_cpymem(p, m->id.data, m->id.len);
        p = ngx_cpymem(p, "\",", 2);
    }

    flen[0] = p - idq;

    fix[0] = idq;
    ne = 1;

    *strip = req->stream && !req->include_usage && m->stream_usage;

    if (*strip) {
        if (req->usage_fix) {
            start[1] = req->usage_start;
            end[1] = req->usage_end;
            fix[1] = (const u_char *) req->usage_fix;

        } else {
            start[1] = end[1] = req->obj_close;
            fix[1] = (const u_char *) FUZZ_USAGE_OPTION;
        }

        flen[1] = strlen((const char *) fix[1]);
        ne = 2;
    }

    p = out;
    pos = 0;

    for (i = 0; i < ne; i++) {
        e = (ne == 2 && start[1] < start[0]) ? 1 - i : i;

        fuzz_assert(start[e] >= pos && end[e] >= start[e]
                    && end[e] <= req->len);
        p = ngx_cpymem(p, body + pos, start[e] - pos);
        p = ngx_cpymem(p, fix[e], flen[e]);
        pos = end[e];
    }

    p = ngx_cpymem(p, body + pos, req->len - pos);

    *len = p - out;
    fuzz_assert(*len <= n);

    return out;
}


static int
fuzz_member_is(const u_char *body, fuzz_member_t *m, const char *name)
{
    u_char   buf[64];
    size_t   klen;
    ssize_t  n;

    klen = m->key_end - m->key_start - 2;

    if (klen > sizeof(buf)) {
        return 0;
    }

    n = fuzz_unescape(body + m->key_start + 1, klen, buf);

    return n == (ssize_t) strlen(name) && memcmp(buf, name, n) == 0;
}


static int
fuzz_member_eq(const u_char *a, fuzz_member_t *ma, const u_char *b,
    fuzz_member_t *mb)
{
    return ma->key_end - ma->key_start == mb->key_end - mb->key_start
           && ma->val_end - ma->val_start == mb->val_end - mb->val_start
           && memcmp(a + ma->key_start, b + mb->key_start,
                     ma->key_end - ma->key_start) == 0
           && memcmp(a + ma->val_start, b + mb->val_start,
                     ma->val_end - ma->val_start) == 0;
}


/* the new body, checked by the strict checker: members as before */

static void
fuzz_check_splice_strict(ngx_http_llmroute_req_t *req, u_char *out,
    size_t out_len, ngx_http_llmroute_model_t *m, ngx_uint_t strip)
{
    int                    rc, i, j;
    u_char                *body;
    fuzz_member_t         *mo;
    static fuzz_members_t  before, after;

    body = req->body;

    if (fuzz_strict_json(body, req->len, &before) != 1 || before.overflow) {
        return;
    }

    rc = fuzz_strict_json(out, out_len, &after);

    fuzz_check(FUZZ_SPLICE_STRICT, rc == 1);

    if (rc != 1 || after.overflow) {
        return;
    }

    fuzz_check(FUZZ_SPLICE_STRICT,
               after.n == before.n + !req->has_model
                          + (int) (strip && !req->stream_options));

    j = 0;

    if (!req->has_model) {
        mo = &after.m[j++];
        fuzz_check(FUZZ_SPLICE_STRICT, fuzz_member_is(out, mo, "model"));
    }

    for (i = 0; i < before.n; i++, j++) {
        mo = &after.m[j];

        if (fuzz_member_is(body, &before.m[i], "model")) {
            fuzz_check(FUZZ_SPLICE_STRICT,
                       before.m[i].val_start == req->model_start
                       && before.m[i].val_end == req->model_end);
            fuzz_check(FUZZ_SPLICE_STRICT,
                       mo->val_end - mo->val_start == m->id.len + 2
                       && memcmp(out + mo->val_start + 1, m->id.data,
                                 m->id.len) == 0);
            continue;
        }

        /* rewritten to ask for usage: fuzz_check_reparse() reads it */

        if (strip && fuzz_member_is(body, &before.m[i], "stream_options")) {
            fuzz_check(FUZZ_SPLICE_STRICT,
                       fuzz_member_is(out, mo, "stream_options"));
            continue;
        }

        fuzz_check(FUZZ_SPLICE_STRICT,
                   fuzz_member_eq(body, &before.m[i], out, mo));
    }

    if (strip && !req->stream_options) {
        mo = &after.m[j];
        fuzz_check(FUZZ_SPLICE_STRICT,
                   fuzz_member_is(out, mo, "stream_options"));
    }
}


/* the module reads the new body back as the same request */

static void
fuzz_check_reparse(ngx_http_llmroute_req_t *req, u_char *out, size_t out_len,
    ngx_http_llmroute_model_t *m, ngx_uint_t strip, ngx_uint_t tier)
{
    u_char                   reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    size_t                   rlen;
    ngx_uint_t               i, t2;
    ngx_http_llmroute_req_t  r2;

    fuzz_parse(&r2, out, out_len);

    /*
     * "stream_options" that is not an object ("null"): the module once
     * added a second one for usage, and refused such a body itself
     */

    if (strip && r2.error == NGX_HTTP_LLMROUTE_INVALID_REQUEST
        && r2.error_param != NULL
        && strcmp(r2.error_param, "stream_options") == 0)
    {
        fuzz_check(FUZZ_DUP_STREAM_OPTIONS, 0);
        return;
    }

    fuzz_check(FUZZ_REPARSE, r2.error == NGX_HTTP_LLMROUTE_OK);

    if (r2.error != NGX_HTTP_LLMROUTE_OK) {
        return;
    }

    fuzz_check_offsets(&r2, out, out_len);

    fuzz_check(FUZZ_REPARSE, r2.has_model && !r2.model_escaped);
    fuzz_check(FUZZ_REPARSE, r2.model.len == m->id.len
               && memcmp(r2.model.data, m->id.data, m->id.len) == 0);
    fuzz_check(FUZZ_REPARSE, r2.stream == req->stream);
    fuzz_check(FUZZ_REPARSE,
               r2.stream_options == (req->stream_options || strip));
    fuzz_check(FUZZ_REPARSE,
               r2.include_usage == (req->include_usage || strip));
    fuzz_check(FUZZ_REPARSE, r2.max_tokens == req->max_tokens);
    fuzz_check(FUZZ_REPARSE, r2.ntools == req->ntools
               && r2.tools_bytes == req->tools_bytes);
    fuzz_check(FUZZ_REPARSE, r2.images == req->images);
    fuzz_check(FUZZ_REPARSE, r2.json_mode == req->json_mode
               && r2.json_schema == req->json_schema);
    fuzz_check(FUZZ_REPARSE, r2.text_bytes == req->text_bytes
               && r2.prompt_tokens == req->prompt_tokens);
    fuzz_check(FUZZ_REPARSE, r2.nmsgs == req->nmsgs);

    for (i = 0; i < req->nmsgs && i < r2.nmsgs; i++) {
        fuzz_check(FUZZ_REPARSE, r2.msgs[i].role == req->msgs[i].role);
        fuzz_check(FUZZ_REPARSE, r2.msgs[i].text == req->msgs[i].text);
        fuzz_check(FUZZ_REPARSE, r2.msgs[i].images == req->msgs[i].images);
        fuzz_check(FUZZ_REPARSE,
                   r2.msgs[i].tool_calls == req->msgs[i].tool_calls);
        fuzz_check(FUZZ_REPARSE,
                   r2.msgs[i].end - r2.msgs[i].start
                   == req->msgs[i].end - req->msgs[i].start
                   && memcmp(out + r2.msgs[i].start,
                             req->body + req->msgs[i].start,
                             req->msgs[i].end - req->msgs[i].start) == 0);
    }

    /* the provider is asked what was classified */
    t2 = ngx_http_llmroute_classify(&fuzz_cat.classifier, &r2, reason,
                                    sizeof(reason), &rlen);
    fuzz_check(FUZZ_REPARSE, t2 == tier);
}


/*
 * "model" written with \u escapes, in the value and in the key, reads and
 * resolves exactly like the plain spelling
 */

static void
fuzz_check_escapes(ngx_http_llmroute_req_t *req, uint32_t h)
{
    u_char                    *v, *p, *q, *key;
    size_t                     i, vlen, n;
    ngx_int_t                  rc1, rc2;
    ngx_http_llmroute_req_t    r2;
    ngx_http_llmroute_want_t   w1, w2;
    static const char          hexd[] = "0123456789abcdef0123456789ABCDEF";

    if (!req->has_model || req->model_escaped || req->model.len == 0
        || req->model.len > 64)
    {
        return;
    }

    for (i = 0; i < req->model.len; i++) {
        if (req->model.data[i] < 0x20 || req->model.data[i] >= 0x7f) {
            return;
        }
    }

    /* the value: every byte as \u00XX, or every other one (by h) */

    vlen = req->model.len * 6 + 2;
    n = req->len - (req->model_end - req->model_start) + vlen;
    v = malloc(n);
    fuzz_assert(v != NULL);

    p = ngx_cpymem(v, req->body, req->model_start);
    *p++ = '"';

    for (i = 0; i < req->model.len; i++) {
        if ((h & 1) && (i & 1)) {
            *p++ = req->model.data[i];
            continue;
        }

        *p++ = '\\';
        *p++ = 'u';
        *p++ = '0';
        *p++ = '0';
        *p++ = hexd[(req->model.data[i] >> 4) + ((h & 2) ? 16 : 0)];
        *p++ = hexd[(req->model.data[i] & 15) + ((h & 2) ? 16 : 0)];
    }

    *p++ = '"';
    p = ngx_cpymem(p, req->body + req->model_end, req->len - req->model_end);
    n = p - v;

    fuzz_parse(&r2, v, n);

    fuzz_check(FUZZ_ESCAPE, r2.error == NGX_HTTP_LLMROUTE_OK);
    fuzz_check(FUZZ_ESCAPE, r2.has_model
               && r2.model.len == req->model.len
               && memcmp(r2.model.data, req->model.data, req->model.len)
                  == 0);

    if (r2.error == NGX_HTTP_LLMROUTE_OK) {
        ngx_memzero(&w1, sizeof(w1));
        ngx_memzero(&w2, sizeof(w2));
        rc1 = ngx_http_llmroute_resolve_model(&fuzz_cat, &req->model, &w1);
        rc2 = ngx_http_llmroute_resolve_model(&fuzz_cat, &r2.model, &w2);
        fuzz_check(FUZZ_ESCAPE, rc1 == rc2 && w1.pin == w2.pin
                   && w1.tier == w2.tier
                   && w1.pin_provider == w2.pin_provider
                   && w1.pin_id.data == w2.pin_id.data);
    }

    free(v);

    /* the key: "mod\u0065l" when it was written "model" */

    p = req->body + req->model_start;

    while (p > req->body && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n'
                             || p[-1] == '\r'))
    {
        p--;
    }

    if (p == req->body || p[-1] != ':') {
        return;
    }

    p--;

    while (p > req->body && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n'
                             || p[-1] == '\r'))
    {
        p--;
    }

    if (p - req->body < 7 || memcmp(p - 7, "\"model\"", 7) != 0) {
        return;
    }

    key = p - 7;
    n = req->len + 5;
    v = malloc(n);
    fuzz_assert(v != NULL);

    q = ngx_cpymem(v, req->body, key - req->body);
    q = ngx_cpymem(q, (h & 4) ? "\"mod\\u0065l\"" : "\"\\u006Dodel\"", 12);
    q = ngx_cpymem(q, p, req->body + req->len - p);
    fuzz_assert((size_t) (q - v) == n);

    fuzz_parse(&r2, v, n);

    fuzz_check(FUZZ_ESCAPE, r2.error == NGX_HTTP_LLMROUTE_OK);
    fuzz_check(FUZZ_ESCAPE, r2.has_model
               && r2.model.len == req->model.len
               && memcmp(r2.model.data, req->model.data, req->model.len)
                  == 0
               && r2.model_start == req->model_start + 5);

    free(v);
}


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char        *e;
    ngx_uint_t   i;

    e = getenv("FUZZ_REQUEST_SKIP");

    for (i = 0; e && fuzz_check_names[i]; i++) {
        if (strstr(e, fuzz_check_names[i]) != NULL) {
            fuzz_skip |= 1u << i;
        }
    }

    fuzz_cat.providers = fuzz_providers;
    fuzz_cat.nproviders = 2;
    fuzz_cat.models = fuzz_models;
    fuzz_cat.nmodels = FUZZ_NMODELS;
    fuzz_cat.regions = fuzz_regions;
    fuzz_cat.nregions = 2;
    fuzz_cat.output_budget[0] = 512;
    fuzz_cat.output_budget[1] = 1024;
    fuzz_cat.output_budget[2] = 4096;
    ngx_http_llmroute_classifier_init(&fuzz_cat.classifier);

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          strict;
    u_char                      *body, *out;
    u_char                       reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    u_char                       dec[256];
    size_t                       rlen, out_len, raw;
    ssize_t                      dl;
    uint32_t                     h;
    ngx_int_t                    rc;
    ngx_uint_t                   i, tier, strip;
    ngx_http_llmroute_req_t      req;
    ngx_http_llmroute_want_t     want;
    ngx_http_llmroute_choice_t   choice;
    ngx_http_llmroute_model_t   *m;

    body = fuzz_dup(data, size);

    /* a hash of the input picks the region and the excluded providers */
    h = 2166136261u;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }

    fuzz_parse(&req, body, size);

    /* the Anthropic reading of the same bytes keeps the same promises */

    {
        ngx_http_llmroute_req_t  areq;

        rc = ngx_http_llmroute_parse_anthropic(&areq, body, size, fuzz_alloc,
                                               NULL);
        fuzz_assert(rc == NGX_OK);
        fuzz_assert(areq.error <= NGX_HTTP_LLMROUTE_TOO_COMPLEX);
        fuzz_assert(areq.error == 0 || areq.error_msg != NULL);

        if (areq.error == NGX_HTTP_LLMROUTE_OK) {
            fuzz_check_offsets(&areq, body, size);
        }
    }

    /* the independent checker and the module agree on what is JSON */

    strict = fuzz_strict_json(body, size, NULL);

    if (strict == 1 && fuzz_is_object(body, size)) {
        fuzz_check(FUZZ_STRICT_REJECT,
                   req.error != NGX_HTTP_LLMROUTE_INVALID_JSON);
    }

    /*
     * what the module accepts is JSON; raw control characters in strings
     * (jsmn lets them through) are a check of their own
     */

    if (req.error == NGX_HTTP_LLMROUTE_OK && strict == 0) {
        if (fuzz_strict_json2(body, size, NULL, 1) == 1) {
            fuzz_check(FUZZ_STRICT_CTRL, 0);

        } else if (fuzz_jsmn_chain(body, size) == 1) {
            fuzz_check(FUZZ_STRICT_CHAIN, 0);

        } else if (fuzz_jsmn_chain(body, size) == 2) {
            fuzz_check(FUZZ_STRICT_EMPTY, 0);

        } else {
            fuzz_check(FUZZ_STRICT_ACCEPT, 0);
        }
    }

    /* a "model" the module could not unescape: nor can we */

    if (req.error == NGX_HTTP_LLMROUTE_INVALID_REQUEST
        && req.error_param != NULL && strcmp(req.error_param, "model") == 0
        && strstr(req.error_msg, "not a valid string") != NULL)
    {
        raw = req.model_end - req.model_start - 2;

        if (raw <= sizeof(dec)) {
            dl = fuzz_unescape(body + req.model_start + 1, raw, dec);
            fuzz_check(FUZZ_UNESCAPE, dl < 0);
        }
    }

    fuzz_check_case_fold(&req, body, size);

    if (req.error != NGX_HTTP_LLMROUTE_OK) {
        goto done;
    }

    fuzz_check_offsets(&req, body, size);

    if (req.has_model && req.model_escaped
        && req.model_end - req.model_start - 2 <= sizeof(dec))
    {
        dl = fuzz_unescape(body + req.model_start + 1,
                           req.model_end - req.model_start - 2, dec);
        fuzz_check(FUZZ_UNESCAPE, dl == (ssize_t) req.model.len
                   && memcmp(dec, req.model.data, dl) == 0);
    }

    /* as ngx_http_llmroute_decide(): resolve, classify, floor, select */

    ngx_memzero(&want, sizeof(want));
    want.tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
    want.format = req.format;

    rc = NGX_OK;

    if (req.has_model) {
        rc = ngx_http_llmroute_resolve_model(&fuzz_cat, &req.model, &want);
        fuzz_assert(rc == NGX_OK || rc == NGX_DECLINED);

        if (rc == NGX_OK && want.pin != NGX_HTTP_LLMROUTE_PIN_NONE) {
            fuzz_assert(want.pin_id.len == req.model.len
                        || want.pin == NGX_HTTP_LLMROUTE_PIN_PROVIDER);
        }
    }

    rlen = 0;
    tier = ngx_http_llmroute_classify(&fuzz_cat.classifier, &req, reason,
                                      sizeof(reason), &rlen);
    fuzz_assert(tier < NGX_HTTP_LLMROUTE_NTIERS);
    fuzz_assert(rlen <= sizeof(reason));

    want.tier = ngx_max(want.tier, tier);

    switch (h % 4) {
    case 0: want.region = NGX_HTTP_LLMROUTE_REGION_ANY; break;
    case 1: want.region = NGX_HTTP_LLMROUTE_REGION_UNKNOWN; break;
    default: want.region = h % 4 - 2;
    }

    want.exclude = (h >> 8) % 4 == 0 ? (h >> 10) & 3 : 0;

    if (rc == NGX_OK) {
        ngx_http_llmroute_select(&fuzz_cat, &req, &want, &choice);
        fuzz_check_select(&req, &want, &choice);

    } else {
        choice.model = -1;
    }

    /* the splice, for the chosen model, or a catalog model picked by h */

    m = &fuzz_models[choice.model >= 0 ? (ngx_uint_t) choice.model
                                       : (h >> 16) % FUZZ_NMODELS];

    out = fuzz_splice(&req, m, &out_len, &strip);

    fuzz_check_reparse(&req, out, out_len, m, strip, tier);
    fuzz_check_splice_strict(&req, out, out_len, m, strip);

    free(out);

    fuzz_check_escapes(&req, h);

done:

    fuzz_free_all();
    free(body);

    return 0;
}
