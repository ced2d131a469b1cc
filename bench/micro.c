
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Microbenchmark of the routing decision: the module's own pure-C core
 * (ngx_http_llmroute_json.c, _classify.c, _route.c built with
 * -DNGX_HTTP_LLMROUTE_STANDALONE), on generated chat bodies of 2 KB, 64 KB
 * and 1 MB (bodies.h).  One decision is what the handler does per request:
 *
 *     parse (scan + walk) -> resolve "model" -> classify (with the
 *     $llmroute_reason text) -> select
 *
 * with a bump allocator reset per iteration (the handler uses r->pool).
 * Each measurement is a batch of iterations sized to about -t ms; the
 * median (and the minimum) of -r batches is reported, in ns per decision
 * and in MB/s of body (MB = 10^6 bytes).
 *
 *   micro [-r RUNS] [-t MS] [-q] [-j] [-p PHASE] [SIZE...]
 *
 * SIZE: 2k 64k 1m (default all three); -p PHASE runs only that phase
 * (decision, parse, jsmn, scan, classify, classify-noreason, select), for
 * perf.  -j: parse takes the jsmn path (prescan, jsmn, checks), as before
 * the scan (ngx_http_llmroute_scan.c), for before/after in one binary.
 * Time is the thread's CPU time (BENCH_WALL=1: wall clock).
 */


#include <ngx_http_llmroute_core.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include <ngx_http_llmroute_scan.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bodies.h"
#include "size.h"


/* the bump allocator: what r->pool is to the module */

typedef struct {
    u_char     *start;
    u_char     *pos;
    u_char     *end;
    size_t      calls;
    size_t      bytes;
} arena_t;


static void *
arena_alloc(void *data, size_t size)
{
    u_char   *p;
    arena_t  *a = data;

    p = (u_char *) (((uintptr_t) a->pos + 15) & ~(uintptr_t) 15);

    if (p + size > a->end) {
        return NULL;
    }

    a->pos = p + size;
    a->calls++;
    a->bytes += size;

    return p;
}


static void
arena_reset(arena_t *a)
{
    a->pos = a->start;
    a->calls = 0;
    a->bytes = 0;
}


/* the catalog: 2 providers, 3 models, as the module builds it from config */

static ngx_http_llmroute_provider_t  providers[2] = {
    { ngx_string("p1"), ngx_string("http://mockup/v1/chat/completions"),
      ngx_string("mockup"), ngx_string("Bearer sk-p1"), ngx_null_string,
      0, 0, 0, 0, 0,
      NGX_HTTP_LLMROUTE_FORMAT_OPENAI, 0, ngx_null_string },
    { ngx_string("p2"), ngx_string("http://mockup2/v1/chat/completions"),
      ngx_string("mockup2"), ngx_string("Bearer sk-p2"), ngx_null_string,
      0, 0, 0, 0, 1,
      NGX_HTTP_LLMROUTE_FORMAT_OPENAI, 0, ngx_null_string },
};

/* prices: nano-USD per token = USD per 1M tokens x 1000 */
static ngx_http_llmroute_model_t  models[3] = {
    { ngx_string("small-1"), ngx_string("p1/small-1"), 0,
      NGX_HTTP_LLMROUTE_TIER_SIMPLE, 100, 400, 10, 128 * 1024, 1, 1, 0, 0,
      125, 0, 0 },
    { ngx_string("mid-1"), ngx_string("p2/mid-1"), 1,
      NGX_HTTP_LLMROUTE_TIER_MODERATE, 800, 4000, 80, 200 * 1024, 1, 1, 1, 0,
      1000, 0, 0 },
    { ngx_string("big-1"), ngx_string("p1/big-1"), 0,
      NGX_HTTP_LLMROUTE_TIER_COMPLEX, 3000, 15000, 300, 1000 * 1024, 1, 1, 1,
      0, 3750, 0, 0 },
};

static ngx_http_llmroute_catalog_t  cat;


typedef struct {
    u_char                      *body;
    size_t                       len;
    arena_t                      arena;
    ngx_http_llmroute_req_t      req;      /* parsed once, for classify */
    jsmntok_t                   *tok;
    unsigned int                 ntok;
    u_char                       reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    size_t                       reason_len;
    ngx_http_llmroute_choice_t   choice;
    ngx_uint_t                   tier;
} bench_t;


static volatile uintptr_t  sink;


static void
fail(const char *what, bench_t *b)
{
    fprintf(stderr, "micro: %s failed (error %lu: %s)\n", what,
            (unsigned long) b->req.error,
            b->req.error_msg ? b->req.error_msg : "-");
    exit(1);
}


/* one whole decision, as ngx_http_llmroute_decide() does it */

static void
op_decision(bench_t *b)
{
    ngx_uint_t                 tier;
    ngx_http_llmroute_req_t    req;
    ngx_http_llmroute_want_t   want;

    arena_reset(&b->arena);

    if (ngx_http_llmroute_parse(&req, b->body, b->len, arena_alloc, &b->arena)
        != NGX_OK || req.error)
    {
        b->req = req;
        fail("parse", b);
    }

    ngx_memzero(&want, sizeof(want));
    want.tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
    want.format = NGX_HTTP_LLMROUTE_FORMAT_OPENAI;
    want.region = NGX_HTTP_LLMROUTE_REGION_ANY;

    if (ngx_http_llmroute_resolve_model(&cat, &req.model, &want) != NGX_OK) {
        fail("resolve_model", b);
    }

    tier = ngx_http_llmroute_classify(&cat.classifier, &req, b->reason,
                                      sizeof(b->reason), &b->reason_len);
    if (want.tier > tier) {
        tier = want.tier;
    }

    want.tier = tier;

    ngx_http_llmroute_select(&cat, &req, &want, &b->choice);

    b->tier = tier;
    sink += b->choice.model + req.prompt_tokens;
}


static void
op_parse(bench_t *b)
{
    ngx_http_llmroute_req_t  req;

    arena_reset(&b->arena);

    if (ngx_http_llmroute_parse(&req, b->body, b->len, arena_alloc, &b->arena)
        != NGX_OK)
    {
        fail("parse", b);
    }

    sink += req.nmsgs;
}


static void
op_jsmn(bench_t *b)
{
    int          n;
    jsmn_parser  p;

    jsmn_init(&p);
    n = jsmn_parse(&p, (char *) b->body, b->len, b->tok, b->ntok);

    sink += n;
}


static void
op_scan(bench_t *b)
{
    sink += ngx_http_llmroute_scan(b->body, b->len, b->tok, b->ntok);
}


static void
op_classify(bench_t *b)
{
    size_t  len;

    sink += ngx_http_llmroute_classify(&cat.classifier, &b->req, b->reason,
                                       sizeof(b->reason), &len);
}


static void
op_classify_noreason(bench_t *b)
{
    size_t  len;

    sink += ngx_http_llmroute_classify(&cat.classifier, &b->req, NULL, 0,
                                       &len);
}


static void
op_select(bench_t *b)
{
    ngx_http_llmroute_want_t    want;
    ngx_http_llmroute_choice_t  choice;

    ngx_memzero(&want, sizeof(want));
    want.tier = b->tier;
    want.region = NGX_HTTP_LLMROUTE_REGION_ANY;

    (void) ngx_http_llmroute_resolve_model(&cat, &b->req.model, &want);
    want.tier = b->tier;

    ngx_http_llmroute_select(&cat, &b->req, &want, &choice);

    sink += choice.model;
}


typedef void (*op_pt)(bench_t *b);

typedef struct {
    const char  *name;
    op_pt        op;
    uint64_t     iters;
    double       v[101];
    double       med;
    double       min;
} phase_t;

enum { PH_DECISION = 0, PH_PARSE, PH_JSMN, PH_SCAN, PH_CLASSIFY,
       PH_CLASSIFY_NR, PH_SELECT, PH_N };

static phase_t  phases[PH_N] = {
    { "decision", op_decision, 0, { 0 }, 0, 0 },
    { "parse", op_parse, 0, { 0 }, 0, 0 },
    { "jsmn", op_jsmn, 0, { 0 }, 0, 0 },
    { "scan", op_scan, 0, { 0 }, 0, 0 },
    { "classify", op_classify, 0, { 0 }, 0, 0 },
    { "classify-noreason", op_classify_noreason, 0, { 0 }, 0, 0 },
    { "select", op_select, 0, { 0 }, 0, 0 },
};

static int          runs = 11;
static double       run_ms = 20;
static const char  *only;       /* -p PHASE: run just that one (perf) */


static double
batch(op_pt op, bench_t *b, uint64_t iters)
{
    uint64_t  t0, i;

    t0 = bench_now();

    for (i = 0; i < iters; i++) {
        op(b);
    }

    return (double) (bench_now() - t0) / iters;
}


/*
 * The phases are measured interleaved, a batch of each per round, so that
 * a noisy neighbour slows them all alike; median and min per phase.
 */

static void
measure(bench_t *b)
{
    int        r, k;
    double     ns;
    phase_t   *ph;

    for (k = 0; k < PH_N; k++) {
        ph = &phases[k];

        if (only && strcmp(only, ph->name) != 0) {
            continue;
        }

        /* warm up and calibrate: about a quarter of a batch */
        ph->iters = 1;

        for ( ;; ) {
            ns = batch(ph->op, b, ph->iters) * ph->iters;

            if (ns > run_ms * 1e6 / 4 || ph->iters > (1ULL << 30)) {
                break;
            }

            ph->iters *= 2;
        }

        ph->iters = (uint64_t) (run_ms * 1e6 / (ns / ph->iters)) + 1;
    }

    for (r = 0; r < runs; r++) {
        for (k = 0; k < PH_N; k++) {
            ph = &phases[k];

            if (only && strcmp(only, ph->name) != 0) {
                continue;
            }

            ph->v[r] = batch(ph->op, b, ph->iters);
        }
    }

    for (k = 0; k < PH_N; k++) {
        ph = &phases[k];

        if (only && strcmp(only, ph->name) != 0) {
            continue;
        }

        ph->min = ph->v[0];

        for (r = 1; r < runs; r++) {
            if (ph->v[r] < ph->min) {
                ph->min = ph->v[r];
            }
        }

        ph->med = bench_median(ph->v, runs);
    }
}


static void
bench_size(size_t target, int quiet)
{
    int                       n;
    char                      label[16];
    u_char                   *arena;
    size_t                    hint;
    jsmn_parser               p;
    bench_t                   b;

    memset(&b, 0, sizeof(b));

    b.body = (u_char *) bench_body(target, &b.len);

    /* 64 MB of arena: the token array even when the hint is short */
    arena = malloc(64 << 20);
    if (arena == NULL) {
        abort();
    }

    b.arena.start = arena;
    b.arena.pos = arena;
    b.arena.end = arena + (64 << 20);

    jsmn_init(&p);
    n = jsmn_parse(&p, (char *) b.body, b.len, NULL, 0);
    if (n < 1) {
        fprintf(stderr, "micro: generated body is not valid JSON (%d)\n", n);
        exit(1);
    }

    b.ntok = n;
    b.tok = malloc(n * sizeof(jsmntok_t));

    /* one decision for the report, then the parsed request for classify */

    op_decision(&b);

    if (target >= 1024 * 1024) {
        snprintf(label, sizeof(label), "%zuM", target >> 20);
    } else {
        snprintf(label, sizeof(label), "%zuK", target >> 10);
    }

    /* the first token-array guess of ngx_http_llmroute_parse() (json.c) */
    hint = b.len / 32 + 64;

    if (!quiet) {
        printf("[%s] body %zu bytes, %d JSON tokens (module's hint %zu: %s), "
               "%zu allocs %zu bytes per decision\n",
               label, b.len, n, hint,
               (size_t) n <= hint ? "one jsmn pass" : "SHORT: 3 jsmn passes",
               b.arena.calls, b.arena.bytes);
        printf("[%s] -> tier %s, model %s, est %llu nano-USD; reason: %.*s\n",
               label, ngx_http_llmroute_tier_names[b.tier].data,
               b.choice.model >= 0 ? models[b.choice.model].id.data
                                   : (u_char *) "NONE",
               (unsigned long long) b.choice.est_cost,
               (int) b.reason_len, b.reason);
    }

    arena_reset(&b.arena);
    if (ngx_http_llmroute_parse(&b.req, b.body, b.len, arena_alloc, &b.arena)
        != NGX_OK || b.req.error)
    {
        fail("parse", &b);
    }

    /* the parsed request must outlive the arena resets of op_parse */
    b.arena.start = b.arena.pos;

    measure(&b);

    if (only) {
        goto done;
    }

    printf("%-5s %8zu %9.0f %9.0f %7.0f | %8.0f %8.0f %8.0f %8.0f %8.0f"
           " %6.0f | %8.0f %8.0f %8.0f\n",
           label, b.len,
           phases[PH_DECISION].med, phases[PH_DECISION].min,
           b.len / phases[PH_DECISION].med * 1000,
           phases[PH_PARSE].med, phases[PH_JSMN].med, phases[PH_SCAN].med,
           phases[PH_CLASSIFY].med, phases[PH_CLASSIFY_NR].med,
           phases[PH_SELECT].med,
           phases[PH_PARSE].min, phases[PH_CLASSIFY].min,
           phases[PH_SELECT].min);
    fflush(stdout);

done:

    free(arena);
    free(b.tok);
    free(b.body);
}


int
main(int argc, char **argv)
{
    int     c, quiet;
    size_t  sizes[16], nsizes, s;

    quiet = 0;

    while ((c = getopt(argc, argv, "r:t:qjp:")) != -1) {
        switch (c) {
        case 'r':
            runs = atoi(optarg);
            runs = runs < 1 ? 1 : runs > 101 ? 101 : runs;
            break;
        case 't':
            run_ms = atof(optarg);
            break;
        case 'q':
            quiet = 1;
            break;
        case 'j':
            ngx_http_llmroute_scan_off = 1;
            break;
        case 'p':
            only = optarg;
            quiet = 1;
            break;
        default:
            fprintf(stderr, "usage: micro [-r RUNS] [-t MS] [-q] [-j] "
                    "[-p PHASE] [SIZE...]\n");
            return 2;
        }
    }

    nsizes = bench_parse_sizes("micro", argc, argv, optind, sizes, 16);
    if (nsizes == 0) {
        return 2;
    }

    cat.providers = providers;
    cat.nproviders = 2;
    cat.models = models;
    cat.nmodels = 3;
    cat.output_budget[NGX_HTTP_LLMROUTE_TIER_SIMPLE] = 512;
    cat.output_budget[NGX_HTTP_LLMROUTE_TIER_MODERATE] = 1024;
    cat.output_budget[NGX_HTTP_LLMROUTE_TIER_COMPLEX] = 4096;
    ngx_http_llmroute_classifier_init(&cat.classifier);

    bench_clock_init();

    printf("routing decision: ns per call (%s), median of %d interleaved "
           "batches of ~%.0f ms (MB/s = 10^6 B/s)\n", bench_clock_name(),
           runs, run_ms);

    for (s = 0; s < nsizes; s++) {
        if (s == 0 || !quiet) {
            printf("\n%-5s %8s %9s %9s %7s | %8s %8s %8s %8s %8s %6s"
                   " | %8s %8s %8s\n",
                   "body", "bytes", "decision", "(min)", "MB/s",
                   "parse", "(jsmn)", "(scan)", "classify", "(no rsn)",
                   "select", "parse", "classify", "select");
            printf("%-5s %8s %9s %9s %7s | %8s %8s %8s %8s %8s %6s"
                   " | %8s %8s %8s\n",
                   "", "", "median", "", "", "median", "", "", "", "", "",
                   "min", "min", "min");
        }

        fflush(stdout);

        bench_size(sizes[s], quiet);
    }

    printf("\ndecision = parse + resolve_model + classify (with reason text) "
           "+ select; parse includes the %s;\n"
           "(jsmn) = jsmn_parse alone into a preallocated token array; "
           "(scan) = ngx_http_llmroute_scan alone (%s), same array;\n"
           "(no rsn) = classify without the reason text\n",
           ngx_http_llmroute_scan_off ? "jsmn path (-j)" : "scan",
           ngx_http_llmroute_scan_kind);

    return 0;
}
