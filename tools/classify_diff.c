
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * classify_diff: the classifier of another commit (its
 * ngx_http_llmroute_classify.c and ngx_http_llmroute_ask.c, built with
 * their functions renamed) against the current one.  For every request
 * body of the JSON lines given ({"body": {...}}, sessions' turns too): the
 * feature vectors, the tier and the explanation must be the same bytes;
 * for every message, and for random mutations of it (escapes, marks,
 * fences, CJK, "base64,", keywords, random bytes, random windows), the
 * counts of the scan (prose words, items, questions, code bytes, keyword
 * hits) must be the same; so must they for every word of one to three
 * letters in pair contexts.  A change meant to make the classifier
 * cheaper, not different, is checked so:
 *
 *   make classify-diff [OLD=main] [FUZZ=20]
 *
 * This file is built three times: -DCLASSIFY_DIFF_OLD (the old sources
 * from build/classify-diff/old/), -DCLASSIFY_DIFF_NEW (the current
 * classifier) and the driver.  Both sides are compiled against the
 * current ngx_http_llmroute_core.h: OLD must share its structures.
 * Exits 1 on any difference, 2 on bad input.
 */


#if (CLASSIFY_DIFF_OLD)

#define ngx_http_llmroute_classifier_init     old_classifier_init
#define ngx_http_llmroute_classifier_set      old_classifier_set
#define ngx_http_llmroute_classify            old_classify
#define ngx_http_llmroute_classify_explained  old_classify_explained
#define ngx_http_llmroute_classify_explain    old_classify_explain
#define ngx_http_llmroute_classify_features   old_classify_features
#define ngx_http_llmroute_classifier_names    old_classifier_names
#define ngx_http_llmroute_ask_prev            old_ask_prev
#define ngx_http_llmroute_ask_is_parts        old_ask_is_parts
#define ngx_http_llmroute_ask_has_text        old_ask_has_text
#define ngx_http_llmroute_ask_part            old_ask_part
#define ngx_http_llmroute_ask_block           old_ask_block
#define ngx_http_llmroute_ask_utility         old_ask_utility

#include <old/ngx_http_llmroute_ask.c>
#include <old/ngx_http_llmroute_classify.c>
#define classify_diff_scan  old_scan

#elif (CLASSIFY_DIFF_NEW)

#include <ngx_http_llmroute_classify.c>
#define classify_diff_scan  new_scan

#else

#include <ngx_http_llmroute_core.h>
#include <stdlib.h>
#include <stdio.h>

#define JSMN_STATIC
#include <jsmn.h>

#endif


/* what one scan counted */
typedef struct {
    size_t      words;
    size_t      items;
    size_t      questions;
    size_t      code;
    ngx_uint_t  hits[4];
    uint64_t    seen[8];
    ngx_uint_t  in_code;
} classify_diff_counts_t;


#if (CLASSIFY_DIFF_OLD || CLASSIFY_DIFF_NEW)

void classify_diff_scan(u_char *p, u_char *last, ngx_uint_t parts,
    size_t head, size_t tail, classify_diff_counts_t *out);


/* one message as the classifier reads it, counted from a fresh state */

void
classify_diff_scan(u_char *p, u_char *last, ngx_uint_t parts, size_t head,
    size_t tail, classify_diff_counts_t *out)
{
    ngx_http_llmroute_scan_t  sc;

    if (!ngx_http_llmroute_kw_ready) {
        ngx_http_llmroute_classify_build();
    }

    ngx_memzero(&sc, sizeof(ngx_http_llmroute_scan_t));
    sc.count = 1;

    ngx_http_llmroute_classify_message(&sc, p, last, parts, head, tail);

    ngx_memzero(out, sizeof(classify_diff_counts_t));
    out->words = sc.words;
    out->items = sc.items;
    out->questions = sc.questions;
    out->code = sc.code;
    ngx_memcpy(out->hits, sc.hits, sizeof(out->hits));
    ngx_memcpy(out->seen, sc.seen, sizeof(out->seen));
    out->in_code = sc.in_code;
}

#else


#define CLASSIFY_DIFF_SHOWN  20

void old_scan(u_char *p, u_char *last, ngx_uint_t parts, size_t head,
    size_t tail, classify_diff_counts_t *out);
void new_scan(u_char *p, u_char *last, ngx_uint_t parts, size_t head,
    size_t tail, classify_diff_counts_t *out);
void old_classifier_init(ngx_http_llmroute_classifier_t *cl);
ngx_uint_t old_classify_features(ngx_http_llmroute_req_t *req, double *f,
    ngx_uint_t n);
ngx_uint_t ngx_http_llmroute_classify_features(ngx_http_llmroute_req_t *req,
    double *f, ngx_uint_t n);
ngx_uint_t old_classify_explained(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_req_t *req, ngx_http_llmroute_explain_t *ex);
size_t old_classify_explain(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_explain_t *ex, u_char *reason, size_t size);
ngx_uint_t old_ask_is_parts(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_msg_t *m);

static void classify_diff_body(u_char *body, size_t len, ngx_uint_t fuzz);
static void classify_diff_compare(u_char *p, size_t len, ngx_uint_t parts,
    size_t head, size_t tail, const char *what);
static void classify_diff_mutate(u_char *p, size_t len);
static void classify_diff_short(void);
static uint64_t classify_diff_random(void);
static void *classify_diff_alloc(void *data, size_t size);


static ngx_http_llmroute_classifier_t  classify_diff_old, classify_diff_new;
static unsigned long                   classify_diff_bodies;
static unsigned long                   classify_diff_scans;
static unsigned long                   classify_diff_failed;
static uint64_t                        classify_diff_seed
                                           = 88172645463325252ULL;
static void                           *classify_diff_allocs[4096];
static ngx_uint_t                      classify_diff_nallocs;

/* inserted at random into texts: what the scan treats specially */
static const char  *classify_diff_tokens[] = {
    "\\n", "\\n", "\\n\\n", "\\t", "\\r", "\\u2019", "'", "`", "```",
    "```c\\n", "\\\"", "(1)", "(2) ", "- ", "* ", "1. ", "12) ", "  ",
    "    ", ";", "{", "}", "base64,", "base64", "\\u4e00",
    "\xe4\xb8\x80", "\xed\x9f\xbf", "?", ",", ",,,", "=", "<", ">", "|",
    "[", "]", "+", "@", "\\\\", "\\", "-", "_", "/", " ",
    "race condition", "partitioned", "debugging", "lock-free", "don't",
    "don\\u2019t", "Race", "RACES", "raced", "summarization",
    "optimization", "globally", "fixes", "design", "system design",
    "what is", "as is", "p99", "threat model", "memory_order",
    "tightly coupled", "idempotency", "a", "ab", "abc", "abcd", "xyzzy",
    "the", "this", "port this", "<system-reminder>x</system-reminder>",
    "\\n<system-reminder>hi</system-reminder>\\n", "<file>", "</file>",
    "\\u00e9", "\\u0041", "\xc3\xa9", "\x80", "0", "42", "bugs", "bugged",
    "running", "stopped", "lly", "ization", "ation", "ings", "sses", "eed",
    "fixing", "filled", "buzzed",
    NULL
};


int
main(int argc, char **argv)
{
    int          i, n, k;
    FILE        *f;
    char        *line, *e;
    size_t       size;
    ssize_t      len;
    jsmntok_t   *tok;
    ngx_uint_t   fuzz;
    jsmn_parser  parser;

    if (argc < 3) {
        fprintf(stderr, "usage: classify_diff FUZZ file.jsonl...\n");
        return 2;
    }

    fuzz = strtoul(argv[1], &e, 10);

    if (*e != '\0') {
        fprintf(stderr, "classify_diff: invalid FUZZ \"%s\"\n", argv[1]);
        return 2;
    }

    old_classifier_init(&classify_diff_old);
    ngx_http_llmroute_classifier_init(&classify_diff_new);

    classify_diff_short();

    line = NULL;
    size = 0;

    for (i = 2; i < argc; i++) {
        f = fopen(argv[i], "r");
        if (f == NULL) {
            perror(argv[i]);
            return 2;
        }

        while ((len = getline(&line, &size, f)) > 0) {
            jsmn_init(&parser);
            n = jsmn_parse(&parser, line, len, NULL, 0);
            if (n < 1) {
                continue;
            }

            tok = malloc(n * sizeof(jsmntok_t));
            if (tok == NULL) {
                return 2;
            }

            jsmn_init(&parser);
            n = jsmn_parse(&parser, line, len, tok, n);

            /* every "body": {...}, at any depth (sessions' turns) */

            for (k = 0; k + 1 < n; k++) {
                if (tok[k].type == JSMN_STRING && tok[k].size == 1
                    && tok[k].end - tok[k].start == 4
                    && ngx_memcmp(line + tok[k].start, "body", 4) == 0
                    && tok[k + 1].type == JSMN_OBJECT)
                {
                    classify_diff_body((u_char *) line + tok[k + 1].start,
                                       tok[k + 1].end - tok[k + 1].start,
                                       fuzz);
                }
            }

            free(tok);
        }

        fclose(f);
    }

    free(line);

    printf("classify_diff: %lu bodies, %lu scans, %lu differences\n",
           classify_diff_bodies, classify_diff_scans, classify_diff_failed);

    return classify_diff_failed ? 1 : 0;
}


/* one body: features, tier and explanation; then each message's scans */

static void
classify_diff_body(u_char *body, size_t len, ngx_uint_t fuzz)
{
    size_t                        la, lb;
    u_char                        ra[NGX_HTTP_LLMROUTE_REASON_LEN];
    u_char                        rb[NGX_HTTP_LLMROUTE_REASON_LEN];
    double                        fa[NGX_HTTP_LLMROUTE_MAX_FEATURES];
    double                        fb[NGX_HTTP_LLMROUTE_MAX_FEATURES];
    ngx_uint_t                    i, w, ta, tb, na, nb;
    ngx_http_llmroute_req_t       req;
    ngx_http_llmroute_msg_t      *m;
    ngx_http_llmroute_explain_t   exa, exb;

    static const size_t  windows[][2] = {
        { 2048, 1024 }, { 100, 50 }, { 37, 0 }, { (size_t) 1 << 30, 0 },
        { 5000, 3000 }, { 1, 1 }
    };

    classify_diff_bodies++;

    if (ngx_http_llmroute_parse(&req, body, len, classify_diff_alloc, NULL)
        != NGX_OK)
    {
        goto done;
    }

    ngx_memzero(fa, sizeof(fa));
    ngx_memzero(fb, sizeof(fb));
    na = old_classify_features(&req, fa, NGX_HTTP_LLMROUTE_MAX_FEATURES);
    nb = ngx_http_llmroute_classify_features(&req, fb,
                                             NGX_HTTP_LLMROUTE_MAX_FEATURES);

    ngx_memzero(&exa, sizeof(exa));
    ngx_memzero(&exb, sizeof(exb));
    ta = old_classify_explained(&classify_diff_old, &req, &exa);
    tb = ngx_http_llmroute_classify_explained(&classify_diff_new, &req, &exb);
    la = old_classify_explain(&classify_diff_old, &exa, ra, sizeof(ra));
    lb = ngx_http_llmroute_classify_explain(&classify_diff_new, &exb, rb,
                                            sizeof(rb));

    if (na != nb || ngx_memcmp(fa, fb, sizeof(fa)) != 0 || ta != tb
        || ngx_memcmp(&exa, &exb, sizeof(exa)) != 0 || la != lb
        || ngx_memcmp(ra, rb, la) != 0)
    {
        if (classify_diff_failed++ < CLASSIFY_DIFF_SHOWN) {
            fprintf(stderr, "body %lu: %.*s | %.*s\n", classify_diff_bodies,
                    (int) la, ra, (int) lb, rb);
        }
    }

    for (i = 0; i < req.nmsgs; i++) {
        m = &req.msgs[i];

        if (m->end <= m->start) {
            continue;
        }

        for (w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
            classify_diff_compare(body + m->start, m->end - m->start,
                                  old_ask_is_parts(&req, m), windows[w][0],
                                  windows[w][1], "message");
        }

        for (w = 0; w < fuzz; w++) {
            classify_diff_mutate(body + m->start, m->end - m->start);
        }
    }

done:

    while (classify_diff_nallocs) {
        free(classify_diff_allocs[--classify_diff_nallocs]);
    }
}


/* a copy of exactly len bytes, so AddressSanitizer sees any overread */

static void
classify_diff_compare(u_char *p, size_t len, ngx_uint_t parts, size_t head,
    size_t tail, const char *what)
{
    u_char                  *copy;
    classify_diff_counts_t   a, b;

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        exit(2);
    }

    ngx_memcpy(copy, p, len);

    old_scan(copy, copy + len, parts, head, tail, &a);
    new_scan(copy, copy + len, parts, head, tail, &b);

    classify_diff_scans++;

    if (ngx_memcmp(&a, &b, sizeof(classify_diff_counts_t)) != 0
        && classify_diff_failed++ < CLASSIFY_DIFF_SHOWN)
    {
        fprintf(stderr, "%s (parts %lu, head %lu, tail %lu): words %lu/%lu "
                "items %lu/%lu questions %lu/%lu code %lu/%lu hits "
                "%lu,%lu,%lu,%lu/%lu,%lu,%lu,%lu: \"%.*s\"\n", what,
                (unsigned long) parts, (unsigned long) head,
                (unsigned long) tail, (unsigned long) a.words,
                (unsigned long) b.words, (unsigned long) a.items,
                (unsigned long) b.items, (unsigned long) a.questions,
                (unsigned long) b.questions, (unsigned long) a.code,
                (unsigned long) b.code, (unsigned long) a.hits[0],
                (unsigned long) a.hits[1], (unsigned long) a.hits[2],
                (unsigned long) a.hits[3], (unsigned long) b.hits[0],
                (unsigned long) b.hits[1], (unsigned long) b.hits[2],
                (unsigned long) b.hits[3], (int) ngx_min(len, 300), copy);
    }

    free(copy);
}


/* a random span of a text with random insertions, in a random window */

static void
classify_diff_mutate(u_char *p, size_t len)
{
    u_char      *buf, *parts;
    size_t       a, b, n, cap, at, tl, head, tail;
    ngx_uint_t   i, k, ntokens;
    const char  *t;

    for (ntokens = 0; classify_diff_tokens[ntokens]; ntokens++) {
        /* void */
    }

    a = classify_diff_random() % (len + 1);
    b = a + classify_diff_random() % (len - a + 1);
    b = ngx_min(b, a + 6000);

    cap = (b - a) + 64 * 40 + 32;
    buf = malloc(cap);
    if (buf == NULL) {
        exit(2);
    }

    ngx_memcpy(buf, p + a, b - a);
    n = b - a;
    k = classify_diff_random() % 24;

    for (i = 0; i < k; i++) {
        if (classify_diff_random() % 4 == 0) {
            if (n) {
                buf[classify_diff_random() % n] =
                                             (u_char) classify_diff_random();
            }

            continue;
        }

        t = classify_diff_tokens[classify_diff_random() % ntokens];
        tl = ngx_strlen(t);

        if (n + tl > cap) {
            break;
        }

        at = classify_diff_random() % (n + 1);
        memmove(buf + at + tl, buf + at, n - at);
        ngx_memcpy(buf + at, t, tl);
        n += tl;
    }

    switch (classify_diff_random() % 5) {
    case 0:
        head = 2048;
        tail = 1024;
        break;
    case 1:
        head = classify_diff_random() % 200;
        tail = classify_diff_random() % 100;
        break;
    case 2:
        head = classify_diff_random() % 3000;
        tail = 0;
        break;
    case 3:
        head = (size_t) 1 << 30;
        tail = 0;
        break;
    default:
        head = classify_diff_random() % 4000;
        tail = classify_diff_random() % 2000;
    }

    classify_diff_compare(buf, n, 0, head, tail, "mutated");

    if (classify_diff_random() % 4 == 0) {

        /* the same text as an array of content parts */

        parts = malloc(n + 32);
        if (parts == NULL) {
            exit(2);
        }

        ngx_memcpy(parts, "[{\"type\":\"text\",\"text\":\"", 25);
        ngx_memcpy(parts + 25, buf, n);
        ngx_memcpy(parts + 25 + n, "\"}]", 3);

        classify_diff_compare(parts, n + 28, 1, head, tail, "mutated parts");

        free(parts);
    }

    free(buf);
}


/* every word of 1 to 3 letters and digits (some upper case), in pairs */

static void
classify_diff_short(void)
{
    int          len;
    char         buf[64], w[4];
    size_t       a, b, c, n, x, nl;

    static const char  letters[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static const char *around[][2] = {
        { "", "" }, { "what ", " is" }, { "as ", " np" },
        { "the ", " complete" }, { "fix ", " bug" }, { "x y ", ", z" },
        { "two ", " phase" }, { "doc ", " comment" }, { "a\\n", "\\tb" }
    };

    nl = sizeof(letters) - 1;

    for (n = 1; n <= 3; n++) {
        for (a = 0; a < nl; a++) {
            for (b = 0; b < (n > 1 ? nl : 1); b++) {
                for (c = 0; c < (n > 2 ? nl : 1); c++) {

                    /* upper case in a sample of the second and third */

                    if ((n > 1 && b >= 36 && (b + a) % 7)
                        || (n > 2 && c >= 36 && (c + b) % 11))
                    {
                        continue;
                    }

                    w[0] = letters[a];
                    w[1] = letters[b];
                    w[2] = letters[c];
                    w[n] = '\0';

                    for (x = 0; x < sizeof(around) / sizeof(around[0]); x++)
                    {
                        len = snprintf(buf, sizeof(buf), "%s%s%s",
                                       around[x][0], w, around[x][1]);
                        classify_diff_compare((u_char *) buf, len, 0, 2048,
                                              1024, "short word");
                    }
                }
            }
        }
    }
}


static uint64_t
classify_diff_random(void)
{
    classify_diff_seed ^= classify_diff_seed << 13;
    classify_diff_seed ^= classify_diff_seed >> 7;
    classify_diff_seed ^= classify_diff_seed << 17;

    return classify_diff_seed;
}


static void *
classify_diff_alloc(void *data, size_t size)
{
    void  *p;

    (void) data;

    if (classify_diff_nallocs == sizeof(classify_diff_allocs)
                                 / sizeof(classify_diff_allocs[0]))
    {
        return NULL;
    }

    p = malloc(size ? size : 1);
    if (p != NULL) {
        classify_diff_allocs[classify_diff_nallocs++] = p;
    }

    return p;
}

#endif
