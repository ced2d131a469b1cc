
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Parse speed of C JSON libraries on the benchmark chat bodies (bodies.h):
 * the data behind the choice of jsmn for the module.  Each parser does what
 * it needs to give us "model"/"messages"; DOM parsers include freeing the
 * tree.  Median of -r runs of about -t ms each, in MB/s (10^6 bytes).
 *
 *   json_compare [-r RUNS] [-t MS] [SIZE...]     (default 2k 64k 1m)
 */


#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#ifdef HAVE_YAJL
#include <yajl/yajl_parse.h>
#endif

#ifdef HAVE_JANSSON
#include <jansson.h>
#endif

#ifdef HAVE_CJSON
#include <cjson/cJSON.h>
#endif

#include <stdio.h>
#include <unistd.h>

#include "bodies.h"
#include "size.h"


typedef struct {
    const char     *body;
    size_t          len;
    jsmntok_t      *tok;
    unsigned int    ntok;
    size_t          keys;
} bench_t;


typedef int (*parse_pt)(bench_t *b);

static volatile size_t  sink;


static int
p_memchr(bench_t *b)
{
    /* a byte that is not there: one pass over the body, memory speed */
    sink += memchr(b->body, 0x01, b->len) == NULL;
    return 0;
}


static int
p_jsmn_count(bench_t *b)
{
    int          n;
    jsmn_parser  p;

    jsmn_init(&p);
    n = jsmn_parse(&p, b->body, b->len, NULL, 0);
    sink += n;

    return n < 1;
}


static int
p_jsmn(bench_t *b)
{
    int          n;
    jsmn_parser  p;

    jsmn_init(&p);
    n = jsmn_parse(&p, b->body, b->len, b->tok, b->ntok);
    sink += n;

    return n < 1;
}


/*
 * Not a library: what a jsmn-like tokenizer could cost if it skipped the
 * inside of strings 16 bytes at a time (SSE2 compare for '"' and '\\')
 * instead of jsmn's byte loop.  It counts values and checks nesting, with
 * no validation of numbers or literals: a bound for the "why" note, not a
 * parser to ship.
 */

#include <emmintrin.h>

static int
p_sse2_skip(bench_t *b)
{
    int            depth, n;
    unsigned       mask;
    const char    *p, *end;
    __m128i        q, bs, v;

    p = b->body;
    end = p + b->len;
    depth = 0;
    n = 0;
    q = _mm_set1_epi8('"');
    bs = _mm_set1_epi8('\\');

    while (p < end) {
        switch (*p) {

        case '{': case '[':
            depth++; n++; p++;
            break;

        case '}': case ']':
            if (--depth < 0) {
                return 1;
            }
            p++;
            break;

        case '"':
            n++;
            p++;

            for ( ;; ) {
                if (end - p >= 16) {
                    v = _mm_loadu_si128((const __m128i *) p);
                    mask = _mm_movemask_epi8(_mm_or_si128(
                               _mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
                    if (mask == 0) {
                        p += 16;
                        continue;
                    }
                    p += __builtin_ctz(mask);

                } else {
                    while (p < end && *p != '"' && *p != '\\') {
                        p++;
                    }
                    if (p == end) {
                        return 1;
                    }
                }

                if (*p == '"') {
                    p++;
                    break;
                }

                p += 2;     /* an escape: skip the escaped byte */

                if (p > end) {
                    return 1;
                }
            }

            break;

        case ',': case ':': case ' ': case '\n': case '\r': case '\t':
            p++;
            break;

        default:            /* number or literal: to the next delimiter */
            n++;
            while (p < end && *p != ',' && *p != '}' && *p != ']'
                   && *p != ' ' && *p != '\n')
            {
                p++;
            }
        }
    }

    sink += n;
    b->keys = n;

    return depth != 0;
}


#ifdef HAVE_YAJL

static yajl_callbacks  yajl_null_cb;


static int
p_yajl_null(bench_t *b)
{
    int          rc;
    yajl_handle  h;

    h = yajl_alloc(&yajl_null_cb, NULL, NULL);
    rc = yajl_parse(h, (const unsigned char *) b->body, b->len) != yajl_status_ok
         || yajl_complete_parse(h) != yajl_status_ok;
    yajl_free(h);

    return rc;
}


static int
yajl_key(void *ctx, const unsigned char *key, size_t len)
{
    bench_t  *b = ctx;

    b->keys += len == 5 && memcmp(key, "model", 5) == 0;

    return 1;
}


static int
yajl_string(void *ctx, const unsigned char *s, size_t len)
{
    bench_t  *b = ctx;

    b->keys += len;

    return 1;
}


static yajl_callbacks  yajl_key_cb = {
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, yajl_key, NULL, NULL, NULL
};

static yajl_callbacks  yajl_str_cb = {
    NULL, NULL, NULL, NULL, NULL, yajl_string, NULL, yajl_key, NULL, NULL,
    NULL
};


static int
p_yajl_keys(bench_t *b)
{
    int          rc;
    yajl_handle  h;

    h = yajl_alloc(&yajl_key_cb, NULL, b);
    rc = yajl_parse(h, (const unsigned char *) b->body, b->len) != yajl_status_ok
         || yajl_complete_parse(h) != yajl_status_ok;
    yajl_free(h);

    return rc;
}


static int
p_yajl_strings(bench_t *b)
{
    int          rc;
    yajl_handle  h;

    /* a string callback makes yajl unescape every string value */
    h = yajl_alloc(&yajl_str_cb, NULL, b);
    rc = yajl_parse(h, (const unsigned char *) b->body, b->len) != yajl_status_ok
         || yajl_complete_parse(h) != yajl_status_ok;
    yajl_free(h);

    return rc;
}


static int
p_yajl_noval(bench_t *b)
{
    int          rc;
    yajl_handle  h;

    h = yajl_alloc(&yajl_key_cb, NULL, b);
    yajl_config(h, yajl_dont_validate_strings, 1);
    rc = yajl_parse(h, (const unsigned char *) b->body, b->len) != yajl_status_ok
         || yajl_complete_parse(h) != yajl_status_ok;
    yajl_free(h);

    return rc;
}


#endif


#ifdef HAVE_JANSSON

static int
p_jansson(bench_t *b)
{
    json_t        *j;
    json_error_t   err;

    j = json_loadb(b->body, b->len, 0, &err);
    if (j == NULL) {
        return 1;
    }

    sink += json_object_size(j);
    json_decref(j);

    return 0;
}

#endif


#ifdef HAVE_CJSON

static int
p_cjson(bench_t *b)
{
    cJSON  *j;

    j = cJSON_ParseWithLength(b->body, b->len);
    if (j == NULL) {
        return 1;
    }

    sink += j->type;
    cJSON_Delete(j);

    return 0;
}

#endif


typedef struct {
    const char  *name;
    parse_pt     parse;
    const char  *note;
} parser_t;


static parser_t  parsers[] = {
    { "memchr (reference)", p_memchr,
      "one pass at memory speed, no parsing" },
    { "jsmn count-only", p_jsmn_count,
      "jsmn_parse(NULL tokens): the module's 2nd pass when its hint is short" },
    { "jsmn tokens", p_jsmn,
      "STRICT+PARENT_LINKS as in the module: offsets, no allocation" },
    { "(sketch) SSE2 string skip", p_sse2_skip,
      "not a library: jsmn-like scan, strings skipped 16 B at a time" },
#ifdef HAVE_YAJL
    { "yajl null callbacks", p_yajl_null,
      "validates UTF-8 (default)" },
    { "yajl key callback", p_yajl_keys,
      "map_key callback; string values are skipped, not unescaped" },
    { "yajl key, no UTF-8 check", p_yajl_noval,
      "yajl_dont_validate_strings" },
    { "yajl key+string cb", p_yajl_strings,
      "string callback: every value unescaped into a buffer" },
#endif
#ifdef HAVE_JANSSON
    { "jansson json_loadb", p_jansson,
      "DOM: copies and unescapes every string, hashes keys; incl. decref" },
#endif
#ifdef HAVE_CJSON
    { "cJSON ParseWithLength", p_cjson,
      "DOM: malloc per value, unescaped copies; incl. cJSON_Delete" },
#endif
    { NULL, NULL, NULL }
};


static int     runs = 7;
static double  run_ms = 60;


static double
measure(parse_pt parse, bench_t *b)
{
    int       r;
    double    v[101], ns;
    uint64_t  t0, t1, iters, i;

    iters = 1;

    for ( ;; ) {
        t0 = bench_now();
        for (i = 0; i < iters; i++) {
            (void) parse(b);
        }
        t1 = bench_now();

        if ((double) (t1 - t0) > run_ms * 1e6 / 4 || iters > (1ULL << 30)) {
            break;
        }

        iters *= 2;
    }

    ns = (double) (t1 - t0) / iters;
    iters = (uint64_t) (run_ms * 1e6 / ns) + 1;

    for (r = 0; r < runs; r++) {
        t0 = bench_now();
        for (i = 0; i < iters; i++) {
            (void) parse(b);
        }
        t1 = bench_now();

        v[r] = (double) (t1 - t0) / iters;
    }

    return bench_median(v, runs);
}


int
main(int argc, char **argv)
{
    int          c, n;
    char        *bodies[16];
    size_t       sizes[16], lens[16], nsizes, s;
    double       ns;
    bench_t      b[16];
    parser_t    *p;
    jsmn_parser  jp;

    while ((c = getopt(argc, argv, "r:t:")) != -1) {
        switch (c) {
        case 'r':
            runs = atoi(optarg);
            runs = runs < 1 ? 1 : runs > 101 ? 101 : runs;
            break;
        case 't':
            run_ms = atof(optarg);
            break;
        default:
            fprintf(stderr, "usage: json_compare [-r RUNS] [-t MS] [SIZE...]\n");
            return 2;
        }
    }

    nsizes = bench_parse_sizes("json_compare", argc, argv, optind, sizes, 16);
    if (nsizes == 0) {
        return 2;
    }

    bench_clock_init();

    printf("JSON parse speed, MB/s (10^6 B/s), %s, median of %d runs of "
           "~%.0f ms\n\n%-26s", bench_clock_name(), runs, run_ms,
           "parser \\ body bytes");

    for (s = 0; s < nsizes; s++) {
        bodies[s] = bench_body(sizes[s], &lens[s]);

        memset(&b[s], 0, sizeof(bench_t));
        b[s].body = bodies[s];
        b[s].len = lens[s];

        jsmn_init(&jp);
        n = jsmn_parse(&jp, bodies[s], lens[s], NULL, 0);
        if (n < 1) {
            fprintf(stderr, "json_compare: body is not valid JSON\n");
            return 1;
        }

        b[s].ntok = n;
        b[s].tok = malloc(n * sizeof(jsmntok_t));

        printf(" %10zu", lens[s]);
    }

    printf("\n");

    for (p = parsers; p->name; p++) {
        printf("%-26s", p->name);
        fflush(stdout);

        for (s = 0; s < nsizes; s++) {
            if (p->parse(&b[s]) != 0
                || (p->parse == p_sse2_skip && b[s].keys != b[s].ntok))
            {
                printf(" %10s", "FAILED");
                continue;
            }

            ns = measure(p->parse, &b[s]);
            printf(" %10.0f", lens[s] / ns * 1000);
            fflush(stdout);
        }

        printf("   %s\n", p->note);
    }

    for (s = 0; s < nsizes; s++) {
        free(b[s].tok);
        free(bodies[s]);
    }

    return 0;
}
