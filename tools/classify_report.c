
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * classify_report: runs labelled requests (JSON lines {"id", "tier",
 * "body"}) through the module's own parse -> classify -> select code with a
 * catalog read from an nginx include file, and prints accuracy, the
 * confusion matrix, complex recall, the misrouted requests and the
 * estimated cost against routing every request at its label and against
 * sending everything to the complex tier.  Exits 1 when a target is missed
 * (accuracy, complex recall, routed cost within 10 % of the labels'), 2 on
 * bad input.  Lines may also be replayed sessions {"id", "group", "turns":
 * [{"tier", "body"}, ...]}.
 *
 *   classify_report [-c catalog.conf] [-b simple,moderate,complex]
 *                   [-w name=value]... [-f | -x] [-t] tiers.jsonl
 *
 *   -c  catalog (default conf.d/catalog-example.conf): llmroute_provider,
 *       llmroute_model, llmroute_output_budget and llmroute_classifier are
 *       read, everything else is ignored
 *   -b  output budgets per tier when max_tokens is absent (the module's
 *       default is 512,1024,4096)
 *   -w  override a classifier weight or threshold, as the directive does
 *   -f  print labels, per-tier model prices and the feature vector of
 *       every request (tab-separated), for tools/train_classifier.py
 *   -x  print the classified tier, the reason and the feature vector of
 *       every request exactly (hex floats): two builds of the classifier
 *       compute the same features when their outputs are the same bytes
 *   -t  time parse + classify + select per request
 */


#include <catalog_conf.h>

#include <stdlib.h>
#include <errno.h>
#include <time.h>

#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#include <jsmn.h>


#define CLASSIFY_MIN_ACCURACY   0.85
#define CLASSIFY_MIN_RECALL     0.95
#define CLASSIFY_MAX_COST       0.10    /* routed vs by label, either way */

#define CLASSIFY_MAX_ALLOCS     64
#define CLASSIFY_MAX_TURNS      512


typedef struct {
    void                          *ptr[CLASSIFY_MAX_ALLOCS];
    ngx_uint_t                     n;
} classify_pool_t;


typedef struct {
    ngx_str_t                      id;
    ngx_str_t                      group;  /* paraphrase family: one fold */
    ngx_str_t                      shape;  /* bare, claude-code, ... */
    ngx_str_t                      turn;   /* single, followup, toolloop */
    ngx_str_t                      ask;    /* a session turn: its ask's id */
    ngx_int_t                      tier;
    u_char                        *body;
    size_t                         len;
    u_char                        *turns;  /* a session: its turns array */
    size_t                         turns_len;
} classify_item_t;


ngx_uint_t ngx_http_llmroute_classify_features(ngx_http_llmroute_req_t *req,
    double *f, ngx_uint_t n);
extern ngx_str_t  ngx_http_llmroute_classifier_names[];

static ngx_int_t classify_item(u_char *line, size_t len,
    classify_item_t *item);
static void classify_label(classify_item_t *item, u_char *key, size_t klen,
    u_char *value, size_t len);
static ngx_int_t classify_turns(classify_item_t *session,
    classify_item_t *items, ngx_uint_t *n);
static ngx_int_t classify_vector(ngx_http_llmroute_catalog_t *cat,
    classify_item_t *item, ngx_uint_t got, u_char *reason, size_t rlen);
static void *classify_alloc(void *data, size_t size);
static void classify_pool_free(classify_pool_t *pool);
static ngx_int_t classify_run(ngx_http_llmroute_catalog_t *cat,
    classify_item_t *item, ngx_uint_t pin, ngx_uint_t *tier,
    uint64_t *cost, ngx_int_t *model, u_char *reason, size_t *reason_len);
static double classify_now(void);


int
main(int argc, char **argv)
{
    int                           i, opt_f, opt_t, opt_x;
    char                         *catalog, *budgets, *tiers, *e;
    u_char                       *data, *p, *last, *nl;
    u_char                        reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    size_t                        len, rlen;
    double                        accuracy, recall, ratio, t0, t1;
    uint64_t                      cost, base, total_cost, total_base;
    uint64_t                      oracle, total_oracle;
    ngx_int_t                     model, base_model;
    ngx_uint_t                    n, k, got, base_tier, correct, ok, line;
    ngx_uint_t                    confusion[NGX_HTTP_LLMROUTE_NTIERS]
                                           [NGX_HTTP_LLMROUTE_NTIERS];
    ngx_uint_t                    under, over, nreq, t, nitems;
    classify_item_t               item;
    ngx_http_llmroute_catalog_t   cat;

    static classify_item_t        items[CLASSIFY_MAX_TURNS];

    llmroute_conf_prog = "classify_report";
    catalog = "conf.d/catalog-example.conf";
    budgets = NULL;
    tiers = NULL;
    opt_f = 0;
    opt_t = 0;
    opt_x = 0;

    ngx_memzero(&cat, sizeof(ngx_http_llmroute_catalog_t));
    ngx_http_llmroute_classifier_init(&cat.classifier);

    /* the module's output budgets (llmroute_conf_catalog()), then -b */

    /* -w options apply after the catalog's llmroute_classifier lines */

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            catalog = argv[++i];

        } else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc) {
            budgets = argv[++i];

        } else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
            i++;

        } else if (strcmp(argv[i], "-f") == 0) {
            opt_f = 1;

        } else if (strcmp(argv[i], "-t") == 0) {
            opt_t = 1;

        } else if (strcmp(argv[i], "-x") == 0) {
            opt_x = 1;

        } else if (argv[i][0] != '-' && tiers == NULL) {
            tiers = argv[i];

        } else {
            tiers = NULL;
            break;
        }
    }

    if (tiers == NULL) {
        fprintf(stderr, "usage: classify_report [-c catalog.conf] "
                "[-b simple,moderate,complex] [-w name=value]... [-f | -x] [-t] "
                "tiers.jsonl\n");
        return 2;
    }

    if (llmroute_conf_catalog(&cat, catalog) != NGX_OK) {
        return 2;
    }

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
            i++;
            if (llmroute_conf_setting(&cat.classifier, (u_char *) argv[i],
                                 strlen(argv[i]))
                != NGX_OK)
            {
                fprintf(stderr, "classify_report: invalid -w \"%s\"\n",
                        argv[i]);
                return 2;
            }

        } else if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-b") == 0) {
            i++;
        }
    }

    for (k = 0, e = budgets; e && k < NGX_HTTP_LLMROUTE_NTIERS; k++) {
        errno = 0;
        cat.output_budget[k] = strtoul(e, &e, 10);

        if (errno || cat.output_budget[k] == 0
            || (*e != (k + 1 < NGX_HTTP_LLMROUTE_NTIERS ? ',' : '\0')))
        {
            fprintf(stderr, "classify_report: invalid -b \"%s\"\n", budgets);
            return 2;
        }

        e++;
    }

    data = llmroute_conf_read_file(tiers, &len);
    if (data == NULL) {
        return 2;
    }

    ngx_memzero(confusion, sizeof(confusion));
    total_cost = 0;
    total_base = 0;
    total_oracle = 0;
    correct = 0;
    under = 0;
    over = 0;
    nreq = 0;
    line = 0;

    if (opt_f) {

        /* per tier: the model select() picks, its prices, output budget */

        printf("id\ttier\tgroup\tshape\tturn\task\tgot\tprompt"
               "\tsimple\tmoderate\tcomplex");

        for (k = 0; ngx_http_llmroute_classifier_names[k].len; k++) {
            printf("\t%s", ngx_http_llmroute_classifier_names[k].data);
        }

        printf("\n");
    }

    if (!opt_f && !opt_x) {
        printf("misrouted (expected -> got: reason):\n");
    }

    for (p = data, last = data + len; p < last; p = nl + 1) {
        nl = memchr(p, '\n', last - p);
        if (nl == NULL) {
            nl = last;
        }

        line++;

        if (nl - p == 0 || (nl - p == 1 && *p == '\r')) {
            continue;
        }

        nitems = 1;

        if (classify_item(p, nl - p, &items[0]) != NGX_OK
            || (items[0].turns
                && classify_turns(&items[0], items, &nitems) != NGX_OK))
        {
            fprintf(stderr, "classify_report: %s:%lu: expected "
                    "{\"id\", \"tier\": simple|moderate|complex, "
                    "\"body\": {...}} or {\"id\", \"turns\": [...]}\n",
                    tiers, (unsigned long) line);
            return 2;
        }

        for (t = 0; t < nitems; t++) {
            item = items[t];

            if (classify_run(&cat, &item, 0, &got, &cost, &model, reason, &rlen)
                != NGX_OK
                || classify_run(&cat, &item, NGX_HTTP_LLMROUTE_TIER_COMPLEX + 1,
                                &base_tier, &base, &base_model, NULL, NULL)
                   != NGX_OK)
            {
                fprintf(stderr, "classify_report: %s:%lu: %.*s: the body was "
                        "refused or no catalog model is eligible\n", tiers,
                        (unsigned long) line, (int) item.id.len, item.id.data);
                return 2;
            }

            /* the same request routed at its label: the catalog's own floor */

            if (classify_run(&cat, &item, item.tier + 1, &base_tier, &oracle,
                             &base_model, NULL, NULL)
                != NGX_OK)
            {
                return 2;
            }

            nreq++;
            total_oracle += oracle;
            confusion[item.tier][got]++;
            total_cost += cost;
            total_base += base;

            if (got == (ngx_uint_t) item.tier) {
                correct++;

            } else if (got < (ngx_uint_t) item.tier) {
                under++;

            } else {
                over++;
            }

            if (opt_f || opt_x) {
                if (classify_vector(&cat, &item, got, opt_x ? reason : NULL,
                                    rlen)
                    != NGX_OK)
                {
                    return 2;
                }

                continue;
            }

            if (got != (ngx_uint_t) item.tier) {
                printf("  %-40.*s %-8s -> %-8s %.*s\n",
                       (int) item.id.len, item.id.data,
                       ngx_http_llmroute_tier_names[item.tier].data,
                       ngx_http_llmroute_tier_names[got].data,
                       (int) rlen, reason);
            }
        }
    }

    if (opt_f || opt_x) {
        return 0;
    }

    if (nreq == 0) {
        fprintf(stderr, "classify_report: %s: no requests\n", tiers);
        return 2;
    }

    accuracy = (double) correct / nreq;
    n = confusion[NGX_HTTP_LLMROUTE_TIER_COMPLEX][0]
        + confusion[NGX_HTTP_LLMROUTE_TIER_COMPLEX][1]
        + confusion[NGX_HTTP_LLMROUTE_TIER_COMPLEX][2];
    recall = n ? (double) confusion[NGX_HTTP_LLMROUTE_TIER_COMPLEX]
                                   [NGX_HTTP_LLMROUTE_TIER_COMPLEX] / n
               : 1;
    ratio = total_oracle ? (double) total_cost / total_oracle : 1;

    printf("\nconfusion (rows: expected, columns: classified):\n");
    printf("  %-10s %9s %9s %9s\n", "", "simple", "moderate", "complex");

    for (k = 0; k < NGX_HTTP_LLMROUTE_NTIERS; k++) {
        printf("  %-10s %9lu %9lu %9lu\n",
               ngx_http_llmroute_tier_names[k].data,
               (unsigned long) confusion[k][0],
               (unsigned long) confusion[k][1],
               (unsigned long) confusion[k][2]);
    }

    printf("\nrequests:        %lu (%lu under-routed, %lu over-routed)\n",
           (unsigned long) nreq, (unsigned long) under, (unsigned long) over);
    printf("exact accuracy:  %.3f (%lu/%lu, target >= %.2f)\n", accuracy,
           (unsigned long) correct, (unsigned long) nreq,
           CLASSIFY_MIN_ACCURACY);
    printf("complex recall:  %.3f (%lu/%lu, target >= %.2f)\n", recall,
           (unsigned long) confusion[NGX_HTTP_LLMROUTE_TIER_COMPLEX]
                                    [NGX_HTTP_LLMROUTE_TIER_COMPLEX],
           (unsigned long) n, CLASSIFY_MIN_RECALL);
    printf("estimated cost:  routed $%.6f, all complex tier $%.6f, "
           "routed by label $%.6f\n",
           total_cost / 1e9, total_base / 1e9, total_oracle / 1e9);
    printf("routed / label:  %.3f (target within %.0f %%; routed / all "
           "complex %.3f, by label %.3f; output budgets %lu/%lu/%lu "
           "without max_tokens)\n", ratio, CLASSIFY_MAX_COST * 100,
           total_base ? (double) total_cost / total_base : 0,
           total_base ? (double) total_oracle / total_base : 0,
           (unsigned long) cat.output_budget[0],
           (unsigned long) cat.output_budget[1],
           (unsigned long) cat.output_budget[2]);

    if (opt_t) {
        n = 0;
        t0 = classify_now();

        for (k = 0; k < 200; k++) {
            for (p = data; p < last; p = nl + 1) {
                nl = memchr(p, '\n', last - p);
                if (nl == NULL) {
                    nl = last;
                }

                if (nl - p > 1 && classify_item(p, nl - p, &item) == NGX_OK
                    && classify_run(&cat, &item, 0, &got, &cost, &model,
                                    reason, &rlen)
                       == NGX_OK)
                {
                    n++;
                }
            }
        }

        t1 = classify_now();

        printf("time:            %.2f us per request (parse + classify + "
               "select, including this tool's line parse)\n",
               (t1 - t0) * 1e6 / (n ? n : 1));
    }

    ok = accuracy >= CLASSIFY_MIN_ACCURACY && recall >= CLASSIFY_MIN_RECALL
         && ratio <= 1 + CLASSIFY_MAX_COST && ratio >= 1 - CLASSIFY_MAX_COST;

    printf("result:          %s\n", ok ? "PASS" : "FAIL");

    return ok ? 0 : 1;
}


/*
 * one request through the module's code, as the handler would run it;
 * pin: 0 classifies, tier + 1 sets the tier as X-LLMRoute-Tier would
 */

static ngx_int_t
classify_run(ngx_http_llmroute_catalog_t *cat, classify_item_t *item,
    ngx_uint_t pin, ngx_uint_t *tier, uint64_t *cost,
    ngx_int_t *model, u_char *reason, size_t *reason_len)
{
    ngx_int_t                    rc;
    classify_pool_t              pool;
    ngx_http_llmroute_req_t      req;
    ngx_http_llmroute_want_t     want;
    ngx_http_llmroute_choice_t   choice;

    pool.n = 0;
    rc = NGX_ERROR;

    if (ngx_http_llmroute_parse(&req, item->body, item->len, classify_alloc,
                                &pool)
        != NGX_OK
        || req.error)
    {
        goto failed;
    }

    ngx_memzero(&want, sizeof(ngx_http_llmroute_want_t));
    want.tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
    want.format = NGX_HTTP_LLMROUTE_FORMAT_OPENAI;
    want.region = NGX_HTTP_LLMROUTE_REGION_ANY;

    if (ngx_http_llmroute_resolve_model(cat, &req.model, &want) != NGX_OK
        || want.pin != NGX_HTTP_LLMROUTE_PIN_NONE)
    {
        goto failed;
    }

    if (pin) {
        want.tier = pin - 1;
        *tier = want.tier;

    } else {
        *tier = ngx_http_llmroute_classify(&cat->classifier, &req, reason,
                                           NGX_HTTP_LLMROUTE_REASON_LEN,
                                           reason_len);
        want.tier = ngx_max(want.tier, *tier);
    }

    ngx_http_llmroute_select(cat, &req, &want, &choice);

    if (choice.model < 0) {
        goto failed;
    }

    *model = choice.model;
    *cost = choice.est_cost;
    rc = NGX_OK;

failed:

    classify_pool_free(&pool);

    return rc;
}


/* {"id": "...", "tier": "...", "body": {...}}: the raw body object span */

static ngx_int_t
classify_item(u_char *line, size_t len, classify_item_t *item)
{
    int          n, i, v;
    size_t       klen;
    u_char      *key;
    jsmn_parser  parser;
    jsmntok_t   *tok;

    jsmn_init(&parser);
    n = jsmn_parse(&parser, (char *) line, len, NULL, 0);
    if (n < 1) {
        return NGX_ERROR;
    }

    tok = malloc(n * sizeof(jsmntok_t));
    if (tok == NULL) {
        return NGX_ERROR;
    }

    jsmn_init(&parser);
    n = jsmn_parse(&parser, (char *) line, len, tok, n);

    ngx_memzero(item, sizeof(classify_item_t));
    item->tier = NGX_ERROR;

    if (n < 1 || tok[0].type != JSMN_OBJECT) {
        free(tok);
        return NGX_ERROR;
    }

    for (i = 1; i + 1 < n; i++) {
        if (tok[i].parent != 0 || tok[i].type != JSMN_STRING) {
            continue;
        }

        key = line + tok[i].start;
        klen = tok[i].end - tok[i].start;
        v = i + 1;

        if (klen == 2 && ngx_memcmp(key, "id", 2) == 0
            && tok[v].type == JSMN_STRING)
        {
            item->id.data = line + tok[v].start;
            item->id.len = tok[v].end - tok[v].start;

        } else if (klen == 4 && ngx_memcmp(key, "tier", 4) == 0
                   && tok[v].type == JSMN_STRING)
        {
            item->tier = ngx_http_llmroute_tier_by_name(line + tok[v].start,
                                                 tok[v].end - tok[v].start);

        } else if (klen == 4 && ngx_memcmp(key, "body", 4) == 0
                   && tok[v].type == JSMN_OBJECT)
        {
            item->body = line + tok[v].start;
            item->len = tok[v].end - tok[v].start;

        } else if (klen == 5 && ngx_memcmp(key, "turns", 5) == 0
                   && tok[v].type == JSMN_ARRAY)
        {
            item->turns = line + tok[v].start;
            item->turns_len = tok[v].end - tok[v].start;

        } else if (tok[v].type == JSMN_STRING) {
            classify_label(item, key, klen, line + tok[v].start,
                           tok[v].end - tok[v].start);
        }
    }

    free(tok);

    if (item->turns) {
        return NGX_OK;
    }

    if (item->tier == NGX_ERROR || item->body == NULL) {
        return NGX_ERROR;
    }

    if (item->id.len == 0) {
        item->id.data = (u_char *) "-";
        item->id.len = 1;
    }

    return NGX_OK;
}


/* the labels the cross-validation reads: group, shape, turn */

static void
classify_label(classify_item_t *item, u_char *key, size_t klen,
    u_char *value, size_t len)
{
    ngx_str_t  *s;

    if (klen == 5 && ngx_memcmp(key, "group", 5) == 0) {
        s = &item->group;

    } else if (klen == 5 && ngx_memcmp(key, "shape", 5) == 0) {
        s = &item->shape;

    } else if (klen == 4 && ngx_memcmp(key, "turn", 4) == 0) {
        s = &item->turn;

    } else if (klen == 6 && ngx_memcmp(key, "ask_id", 6) == 0) {
        s = &item->ask;

    } else {
        return;
    }

    s->data = value;
    s->len = len;
}


/*
 * a replayed session {"id", "group", "turns": [{"tier", "body"}, ...]}:
 * every turn is an item with the session's id and group, in order
 */

static ngx_int_t
classify_turns(classify_item_t *session, classify_item_t *items,
    ngx_uint_t *n)
{
    int               depth;
    u_char           *p, *last, *start, *q;
    classify_item_t   s;

    s = *session;
    p = s.turns + 1;
    last = s.turns + s.turns_len - 1;
    *n = 0;
    depth = 0;
    start = NULL;

    /* the array was checked by jsmn: find its top-level objects */

    for ( /* void */ ; p < last; p++) {
        if (*p == '"') {
            for (q = p + 1; q < last && *q != '"'; q++) {
                q += (*q == '\\');
            }

            p = q;
            continue;
        }

        if (*p == '{' && depth++ == 0) {
            start = p;

        } else if (*p == '}' && --depth == 0) {
            if (*n == CLASSIFY_MAX_TURNS
                || classify_item(start, p + 1 - start, &items[*n]) != NGX_OK
                || items[*n].turns)
            {
                return NGX_ERROR;
            }

            items[*n].group = s.group.len ? s.group : s.id;
            items[*n].shape = s.shape;
            items[*n].turn = items[*n].turn.len ? items[*n].turn : s.turn;

            items[*n].id = s.id;

            (*n)++;
        }
    }

    return *n ? NGX_OK : NGX_ERROR;
}


/*
 * -f: the labels, the classified tier, the prompt tokens, per tier the
 * model select() picks with its prices (nano-USD per token) and output
 * budget, then the feature vector; tools/train_classifier.py reads this.
 * -x (reason set): the id, the classified tier, the reason, then the
 * feature vector as hex floats, every bit shown
 */

static ngx_int_t
classify_vector(ngx_http_llmroute_catalog_t *cat, classify_item_t *item,
    ngx_uint_t got, u_char *reason, size_t rlen)
{
    double                        f[NGX_HTTP_LLMROUTE_MAX_FEATURES];
    ngx_uint_t                    k, nf;
    classify_pool_t               pool;
    ngx_http_llmroute_req_t       req;
    ngx_http_llmroute_want_t      want;
    ngx_http_llmroute_choice_t    choice;
    ngx_http_llmroute_model_t    *m;

    pool.n = 0;

    if (ngx_http_llmroute_parse(&req, item->body, item->len, classify_alloc,
                                &pool)
        != NGX_OK)
    {
        classify_pool_free(&pool);
        return NGX_ERROR;
    }

    if (reason) {
        printf("%.*s\t%s\t%.*s", (int) item->id.len, item->id.data,
               ngx_http_llmroute_tier_names[got].data, (int) rlen, reason);
        goto features;
    }

    printf("%.*s\t%s\t%.*s\t%.*s\t%.*s\t%.*s\t%s\t%lu",
           (int) item->id.len, item->id.data,
           ngx_http_llmroute_tier_names[item->tier].data,
           (int) (item->group.len ? item->group.len : item->id.len),
           item->group.len ? item->group.data : item->id.data,
           (int) (item->shape.len ? item->shape.len : 4),
           item->shape.len ? item->shape.data : (u_char *) "bare",
           (int) (item->turn.len ? item->turn.len : 6),
           item->turn.len ? item->turn.data : (u_char *) "single",
           (int) (item->ask.len ? item->ask.len : item->id.len),
           item->ask.len ? item->ask.data : item->id.data,
           ngx_http_llmroute_tier_names[got].data,
           (unsigned long) req.prompt_tokens);

    for (k = 0; k < NGX_HTTP_LLMROUTE_NTIERS; k++) {
        ngx_memzero(&want, sizeof(ngx_http_llmroute_want_t));
        want.tier = k;
        want.region = NGX_HTTP_LLMROUTE_REGION_ANY;

        ngx_http_llmroute_select(cat, &req, &want, &choice);

        if (choice.model < 0) {
            classify_pool_free(&pool);
            return NGX_ERROR;
        }

        m = &cat->models[choice.model];
        printf("\t%ld/%lu/%lu/%lu/%lu", (long) choice.model,
               (unsigned long) m->input, (unsigned long) m->cached_input,
               (unsigned long) m->output,
               (unsigned long) choice.output_budget);
    }

features:

    nf = ngx_http_llmroute_classify_features(&req, f,
                                             NGX_HTTP_LLMROUTE_MAX_FEATURES);

    for (k = 0; k < nf; k++) {
        printf(reason ? "\t%a" : "\t%.4f", f[k]);
    }

    printf("\n");
    classify_pool_free(&pool);

    return NGX_OK;
}


/* the parser's allocations live until the request is done, like r->pool */

static void *
classify_alloc(void *data, size_t size)
{
    void             *p;
    classify_pool_t  *pool;

    pool = data;

    if (pool->n == CLASSIFY_MAX_ALLOCS) {
        return NULL;
    }

    p = malloc(size ? size : 1);
    if (p == NULL) {
        return NULL;
    }

    pool->ptr[pool->n++] = p;

    return p;
}


static void
classify_pool_free(classify_pool_t *pool)
{
    ngx_uint_t  i;

    for (i = 0; i < pool->n; i++) {
        free(pool->ptr[i]);
    }

    pool->n = 0;
}


static double
classify_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}
