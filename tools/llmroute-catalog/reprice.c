/*
 * llmroute-catalog reprice: replays a JSON access log (conf.d/log-json.conf)
 * under another catalog with the module's own selection code
 * (ngx_http_llmroute_select() from ngx_http_llmroute_route.c, linked as
 * is) and prints the cost before and after, by tier, model, provider and
 * client, and the requests whose choice changed.  --max-increase makes it
 * a CI gate.
 *
 * Each logged request carries $llmroute_route_facts: the selection input
 * of the attempt that answered (tier floor, prompt estimate, max_tokens,
 * capabilities, pin, region, providers skipped, wire format) and the
 * answer's prompt-cache writes.  "Before" is the logged model priced by
 * --old; "after" is the model select() picks from --new for the same facts
 * (so only among providers of the request's format, as the module does),
 * priced by --new.  Both use the logged token counts, cache reads at
 * cached_input= and cache writes at cache_write=.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <catalog_conf.h>

#define JSMN_STATIC
#include <jsmn.h>

#include "llmroute_catalog.h"


#define LC_RP_MAX_TOKENS   512     /* a log line: ~25 fields today */
#define LC_RP_FIELDS       9

/* the log fields read, by index */
enum {
    LC_RP_ID = 0, LC_RP_CLIENT, LC_RP_PROVIDER, LC_RP_MODEL, LC_RP_PROMPT,
    LC_RP_COMPLETION, LC_RP_CACHED, LC_RP_COST, LC_RP_FACTS
};

static const char  *lc_rp_field_names[LC_RP_FIELDS] = {
    "request_id", "client", "provider", "model", "prompt_tokens",
    "completion_tokens", "cached_tokens", "cost_usd", "route_facts"
};


/* one row of a "by ..." table: before and after for one key */
typedef struct {
    char          *key;
    uint64_t       req_before;
    uint64_t       req_after;
    uint64_t       before;          /* nano-USD */
    uint64_t       after;
} lc_rp_row_t;


typedef struct {
    const char    *title;
    lc_rp_row_t   *rows;
    size_t         n;
    size_t         cap;
} lc_rp_table_t;


typedef struct {
    char          *id;
    char          *client;
    char          *tier;
    char          *from;
    char          *to;              /* NULL: no eligible model */
    uint64_t       before;
    uint64_t       after;
} lc_rp_change_t;


typedef struct {
    const char    *old_path;
    const char    *new_path;
    const char    *log_path;
    int            json;
    int            gate;
    uint64_t       max_milli;       /* --max-increase, 1/1000 percent */
    size_t         list;            /* changed requests printed as text */

    ngx_http_llmroute_catalog_t  old;
    ngx_http_llmroute_catalog_t  new;

    uint64_t       requests;        /* replayed */
    uint64_t       skipped;         /* not routed: refused, no decision */
    uint64_t       before;
    uint64_t       after;
    uint64_t       logged;          /* the log's own cost_usd sum */
    uint64_t       mismatched;      /* logged cost != --old price */
    double         ratio_sum;       /* per-request (after-before)/before */
    uint64_t       ratio_n;

    lc_rp_table_t  by[4];           /* tier, model, provider, client */
    lc_rp_table_t  moves;

    lc_rp_change_t *changes;
    size_t         nchanges;
    size_t         cchanges;
    uint64_t       unroutable;
} lc_rp_t;


static int lc_rp_args(int argc, char **argv, lc_rp_t *rp);
static int lc_rp_line(lc_rp_t *rp, char *line, size_t len, size_t lineno);
static int lc_rp_facts(lc_rp_t *rp, char *facts, ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_want_t *want, uint64_t *prior, uint64_t *written,
    ngx_uint_t *tier);
static ngx_int_t lc_rp_find_model(ngx_http_llmroute_catalog_t *cat,
    const char *provider, const char *id);
static ngx_int_t lc_rp_find_provider(ngx_http_llmroute_catalog_t *cat,
    const char *name, size_t len);
static void lc_rp_add(lc_rp_table_t *t, const char *key, size_t len,
    int after, uint64_t cost);
static int lc_rp_change(lc_rp_t *rp, lc_rp_change_t *c);
static uint64_t lc_rp_cost(ngx_http_llmroute_model_t *m, uint64_t *tok,
    uint64_t written);
static char *lc_rp_usd(uint64_t nano, char *buf);
static char *lc_rp_signed_usd(uint64_t before, uint64_t after, char *buf);
static double lc_rp_pct(uint64_t before, uint64_t after);
static int lc_rp_exceeded(lc_rp_t *rp, int *total, int *mean);
static void lc_rp_print_text(lc_rp_t *rp);
static void lc_rp_print_json(lc_rp_t *rp);
static void lc_rp_json_str(const char *s);


static void
lc_rp_usage(FILE *f)
{
    fputs(
"usage: llmroute-catalog reprice --old CATALOG --new CATALOG --log FILE\n"
"                                [--max-increase PCT%] [--json] [--list N]\n"
"exit codes: 0 ok, 1 usage or --max-increase exceeded (or a request no\n"
"        longer routable), 2 catalog invalid, 3 log unreadable,\n"
"        7 log line malformed or without route_facts\n", f);
}


int
lc_reprice(int argc, char **argv)
{
    int       rc, total, mean;
    char     *data, *p, *nl;
    size_t    len, lineno;
    lc_rp_t   rp;

    memset(&rp, 0, sizeof(lc_rp_t));

    rc = lc_rp_args(argc, argv, &rp);
    if (rc != LC_OK) {
        return rc;
    }

    llmroute_conf_prog = "llmroute-catalog reprice";

    if (llmroute_conf_catalog(&rp.old, rp.old_path) != NGX_OK
        || llmroute_conf_catalog(&rp.new, rp.new_path) != NGX_OK)
    {
        return LC_EMAP;
    }

    if (lc_read_file(rp.log_path, &data, &len) != 0) {
        lc_err("%s: %s", rp.log_path, strerror(errno));
        return LC_ESOURCE;
    }

    rp.by[0].title = "tier";
    rp.by[1].title = "model";
    rp.by[2].title = "provider";
    rp.by[3].title = "client";
    rp.moves.title = "choice";

    lineno = 0;

    for (p = data; p < data + len; p = nl + 1) {
        nl = memchr(p, '\n', data + len - p);
        if (nl == NULL) {
            nl = data + len;
        }

        lineno++;
        *nl = '\0';

        if (nl > p && lc_rp_line(&rp, p, nl - p, lineno) != LC_OK) {
            free(data);
            return LC_EJSON;
        }
    }

    free(data);

    if (rp.mismatched) {
        lc_warn("%llu logged costs differ from --old's prices (live prices "
                "from Redis, or another catalog wrote this log)",
                (unsigned long long) rp.mismatched);
    }

    if (rp.json) {
        lc_rp_print_json(&rp);

    } else {
        lc_rp_print_text(&rp);
    }

    if (rp.gate && lc_rp_exceeded(&rp, &total, &mean)) {
        return LC_EUSAGE;
    }

    return LC_OK;
}


static int
lc_rp_args(int argc, char **argv, lc_rp_t *rp)
{
    int         i, rounded;
    char        buf[32];
    size_t      n;
    uint64_t    e9;
    const char  *v;

    rp->list = 20;

    for (i = 0; i < argc; i++) {
        v = (i + 1 < argc) ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--json") == 0) {
            rp->json = 1;
            continue;
        }

        if (v == NULL) {
            lc_err("option \"%s\" needs a value, or is unknown", argv[i]);
            lc_rp_usage(stderr);
            return LC_EUSAGE;
        }

        i++;

        if (strcmp(argv[i - 1], "--old") == 0) {
            rp->old_path = v;

        } else if (strcmp(argv[i - 1], "--new") == 0) {
            rp->new_path = v;

        } else if (strcmp(argv[i - 1], "--log") == 0) {
            rp->log_path = v;

        } else if (strcmp(argv[i - 1], "--list") == 0) {
            rp->list = strtoul(v, NULL, 10);

        } else if (strcmp(argv[i - 1], "--max-increase") == 0) {
            /* "10%", "2.5%" or "10": percent, exact to 1/1000 */
            n = strlen(v);
            if (n > 0 && v[n - 1] == '%') {
                n--;
            }

            if (n == 0 || n >= sizeof(buf)) {
                goto bad_pct;
            }

            memcpy(buf, v, n);
            buf[n] = '\0';

            if (strspn(buf, "0123456789.") != n
                || lc_parse_decimal_e9(buf, &e9, &rounded) != 0
                || e9 % 1000000 != 0 || e9 > 1000000000000ULL)
            {
                goto bad_pct;
            }

            rp->max_milli = e9 / 1000000;
            rp->gate = 1;

        } else {
            lc_err("unknown option \"%s\"", argv[i - 1]);
            lc_rp_usage(stderr);
            return LC_EUSAGE;
        }
    }

    if (rp->old_path == NULL || rp->new_path == NULL || rp->log_path == NULL)
    {
        lc_err("reprice needs --old CATALOG --new CATALOG --log FILE");
        lc_rp_usage(stderr);
        return LC_EUSAGE;
    }

    return LC_OK;

bad_pct:

    lc_err("invalid --max-increase \"%s\" (a percentage such as 10%% or "
           "2.5%%, at most 3 decimals)", v);
    return LC_EUSAGE;
}


/* one access log line: a JSON object of strings and numbers */

static int
lc_rp_line(lc_rp_t *rp, char *line, size_t len, size_t lineno)
{
    int                          n, i, f;
    char                        *val[LC_RP_FIELDS], *e, *from, *to;
    size_t                       klen;
    uint64_t                     tok[3], logged, before, after, prior,
                                 written;
    ngx_int_t                    om;
    ngx_uint_t                   tier;
    jsmn_parser                  parser;
    jsmntok_t                    t[LC_RP_MAX_TOKENS];
    lc_rp_change_t               c;
    ngx_http_llmroute_req_t      req;
    ngx_http_llmroute_want_t     want;
    ngx_http_llmroute_choice_t   choice;
    ngx_http_llmroute_model_t   *m;
    int                          rounded;
    static char                  none[] = "(none eligible)";

    jsmn_init(&parser);
    n = jsmn_parse(&parser, line, len, t, LC_RP_MAX_TOKENS);

    if (n < 1 || t[0].type != JSMN_OBJECT) {
        lc_err("%s:%zu: not a JSON object", rp->log_path, lineno);
        return LC_EJSON;
    }

    memset(val, 0, sizeof(val));

    for (i = 1; i + 1 < n; i += 2) {
        if (t[i].type != JSMN_STRING || t[i + 1].size != 0) {
            lc_err("%s:%zu: not a flat JSON object", rp->log_path, lineno);
            return LC_EJSON;
        }

        klen = t[i].end - t[i].start;

        for (f = 0; f < LC_RP_FIELDS; f++) {
            if (strlen(lc_rp_field_names[f]) == klen
                && memcmp(lc_rp_field_names[f], line + t[i].start, klen) == 0)
            {
                /* values are cut in place: the line is ours */
                line[t[i + 1].end] = '\0';
                val[f] = line + t[i + 1].start;
            }
        }
    }

    /* refused by the module, or never routed: nothing to reprice */

    if (val[LC_RP_PROVIDER] == NULL || val[LC_RP_PROVIDER][0] == '\0'
        || val[LC_RP_MODEL] == NULL)
    {
        rp->skipped++;
        return LC_OK;
    }

    if (val[LC_RP_FACTS] == NULL || val[LC_RP_FACTS][0] == '\0') {
        lc_err("%s:%zu: no \"route_facts\": log $llmroute_route_facts "
               "(see conf.d/log-json.conf)", rp->log_path, lineno);
        return LC_EJSON;
    }

    for (f = LC_RP_PROMPT; f <= LC_RP_CACHED; f++) {
        errno = 0;
        tok[f - LC_RP_PROMPT] = val[f] ? strtoull(val[f], &e, 10) : 0;

        if (val[f] && (errno || *e != '\0' || e == val[f])) {
            lc_err("%s:%zu: invalid \"%s\"", rp->log_path, lineno,
                   lc_rp_field_names[f]);
            return LC_EJSON;
        }
    }

    logged = 0;

    if (val[LC_RP_COST]
        && lc_parse_decimal_e9(val[LC_RP_COST], &logged, &rounded) != 0)
    {
        lc_err("%s:%zu: invalid \"cost_usd\"", rp->log_path, lineno);
        return LC_EJSON;
    }

    memset(&req, 0, sizeof(req));
    memset(&want, 0, sizeof(want));
    tier = 0;

    if (lc_rp_facts(rp, val[LC_RP_FACTS], &req, &want, &prior, &written,
                    &tier)
        != LC_OK)
    {
        lc_err("%s:%zu: invalid \"route_facts\"", rp->log_path, lineno);
        return LC_EJSON;
    }

    /* before: the logged model at --old's prices */

    om = lc_rp_find_model(&rp->old, val[LC_RP_PROVIDER], val[LC_RP_MODEL]);
    if (om < 0) {
        lc_err("%s:%zu: %s/%s is not in %s", rp->log_path, lineno,
               val[LC_RP_PROVIDER], val[LC_RP_MODEL], rp->old_path);
        return LC_EJSON;
    }

    m = &rp->old.models[om];
    from = (char *) m->full.data;
    before = lc_rp_cost(m, tok, written) + prior;

    if (before != logged) {
        rp->mismatched++;
    }

    /* after: the module's choice from --new for the same facts */

    ngx_http_llmroute_select(&rp->new, &req, &want, &choice);

    to = NULL;
    after = before;

    if (choice.model >= 0) {
        m = &rp->new.models[choice.model];
        to = (char *) m->full.data;
        after = lc_rp_cost(m, tok, written) + prior;

    } else {
        rp->unroutable++;
    }

    rp->requests++;
    rp->before += before;
    rp->after += after;
    rp->logged += logged;

    if (before) {
        rp->ratio_sum += ((double) after - (double) before) / before;
        rp->ratio_n++;
    }

    c.client = (val[LC_RP_CLIENT] && val[LC_RP_CLIENT][0])
               ? val[LC_RP_CLIENT] : "-";
    c.tier = (char *) ngx_http_llmroute_tier_names[tier].data;

    lc_rp_add(&rp->by[0], c.tier, strlen(c.tier), 0, before);
    lc_rp_add(&rp->by[0], c.tier, strlen(c.tier), 1, after);
    lc_rp_add(&rp->by[1], from, strlen(from), 0, before);
    lc_rp_add(&rp->by[1], to ? to : none, strlen(to ? to : none), 1, after);
    lc_rp_add(&rp->by[2], val[LC_RP_PROVIDER], strlen(val[LC_RP_PROVIDER]),
              0, before);
    lc_rp_add(&rp->by[2], to ? to : none,
              to ? (size_t) (strchr(to, '/') - to) : strlen(none), 1, after);
    lc_rp_add(&rp->by[3], c.client, strlen(c.client), 0, before);
    lc_rp_add(&rp->by[3], c.client, strlen(c.client), 1, after);

    if (to && strcmp(from, to) == 0) {
        return LC_OK;
    }

    c.id = val[LC_RP_ID] ? val[LC_RP_ID] : "-";
    c.from = from;
    c.to = to;
    c.before = before;
    c.after = after;

    return lc_rp_change(rp, &c);
}


/* $llmroute_route_facts, as ngx_http_llmroute_facts.c writes it */

static int
lc_rp_facts(lc_rp_t *rp, char *facts, ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_want_t *want, uint64_t *prior, uint64_t *written,
    ngx_uint_t *tier)
{
    int         have;
    char       *p, *k, *v, *e, *via, *pin;
    size_t      n;
    ngx_int_t   t, i;
    ngx_uint_t  r;

    have = 0;
    via = NULL;
    pin = NULL;
    *prior = 0;
    *written = 0;
    req->max_tokens = -1;

    /* a log from before format= was logged: OpenAI's was the only one */
    want->format = NGX_HTTP_LLMROUTE_FORMAT_OPENAI;
    want->region = NGX_HTTP_LLMROUTE_REGION_ANY;

    for (p = facts; *p; /* void */ ) {
        k = p;
        p += strcspn(p, " ");
        if (*p) {
            *p++ = '\0';
        }

        v = strchr(k, '=');
        if (v == NULL) {
            return LC_EJSON;
        }

        *v++ = '\0';
        errno = 0;

        if (strcmp(k, "tier") == 0) {
            t = ngx_http_llmroute_tier_by_name((u_char *) v, strlen(v));
            if (t == NGX_ERROR) {
                return LC_EJSON;
            }

            want->tier = t;
            *tier = t;
            have |= 1;

        } else if (strcmp(k, "est") == 0) {
            req->prompt_tokens = strtoull(v, &e, 10);
            if (errno || *e || e == v) {
                return LC_EJSON;
            }

            have |= 2;

        } else if (strcmp(k, "max") == 0) {
            req->max_tokens = strtoll(v, &e, 10);
            if (errno || *e || e == v) {
                return LC_EJSON;
            }

        } else if (strcmp(k, "caps") == 0) {
            req->ntools = strstr(v, "tools") != NULL;
            req->images = strstr(v, "images") != NULL;
            req->json_mode = strstr(v, "json") != NULL;

        } else if (strcmp(k, "pin") == 0) {
            pin = strcmp(v, "-") ? v : NULL;

        } else if (strcmp(k, "via") == 0) {
            via = v;

        } else if (strcmp(k, "region") == 0) {
            if (strcmp(v, "?") == 0) {
                want->region = NGX_HTTP_LLMROUTE_REGION_UNKNOWN;

            } else if (strcmp(v, "-") != 0) {
                /* a region --new does not name is served by nobody */
                want->region = NGX_HTTP_LLMROUTE_REGION_UNKNOWN;

                for (r = 0; r < rp->new.nregions; r++) {
                    if (rp->new.regions[r].len == strlen(v)
                        && strncasecmp((char *) rp->new.regions[r].data, v,
                                       strlen(v)) == 0)
                    {
                        want->region = r;
                    }
                }
            }

        } else if (strcmp(k, "excl") == 0 && strcmp(v, "-") != 0) {
            /* providers skipped then are skipped now, when --new has them */
            for (e = v; *e; e += n + (e[n] == ',')) {
                n = strcspn(e, ",");
                i = lc_rp_find_provider(&rp->new, e, n);
                if (i >= 0) {
                    want->exclude |= (uint64_t) 1 << i;
                }
            }

        } else if (strcmp(k, "prior") == 0) {
            *prior = strtoull(v, &e, 10);
            if (errno || *e || e == v) {
                return LC_EJSON;
            }

        } else if (strcmp(k, "format") == 0) {
            /* select() then considers only providers of this format */
            if (strcmp(v, "openai") == 0) {
                want->format = NGX_HTTP_LLMROUTE_FORMAT_OPENAI;

            } else if (strcmp(v, "anthropic") == 0) {
                want->format = NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC;

            } else {
                return LC_EJSON;
            }

            req->format = want->format;

        } else if (strcmp(k, "cache_write") == 0) {
            *written = strtoull(v, &e, 10);
            if (errno || *e || e == v || *v == '-') {
                return LC_EJSON;
            }
        }

        /* unknown keys: facts a later module logs that do not matter here */
    }

    if (have != 3) {
        return LC_EJSON;
    }

    if (pin) {
        want->pin = NGX_HTTP_LLMROUTE_PIN_MODEL;
        want->pin_id.data = (u_char *) pin;
        want->pin_id.len = strlen(pin);

        if (via) {
            i = lc_rp_find_provider(&rp->new, via, strlen(via));

            /* pinned to a provider --new lacks: nothing is eligible */
            want->pin = NGX_HTTP_LLMROUTE_PIN_PROVIDER;
            want->pin_provider = i >= 0 ? (ngx_uint_t) i
                                        : NGX_HTTP_LLMROUTE_MAX_PROVIDERS;
        }
    }

    return LC_OK;
}


static ngx_int_t
lc_rp_find_provider(ngx_http_llmroute_catalog_t *cat, const char *name,
    size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < cat->nproviders; i++) {
        if (cat->providers[i].name.len == len
            && memcmp(cat->providers[i].name.data, name, len) == 0)
        {
            return i;
        }
    }

    return -1;
}


static ngx_int_t
lc_rp_find_model(ngx_http_llmroute_catalog_t *cat, const char *provider,
    const char *id)
{
    ngx_int_t   p;
    ngx_uint_t  i;

    p = lc_rp_find_provider(cat, provider, strlen(provider));

    for (i = 0; p >= 0 && i < cat->nmodels; i++) {
        if (cat->models[i].provider == (ngx_uint_t) p
            && cat->models[i].id.len == strlen(id)
            && memcmp(cat->models[i].id.data, id, strlen(id)) == 0)
        {
            return i;
        }
    }

    return -1;
}


/* a few dozen keys per table: a linear scan is enough */

static void
lc_rp_add(lc_rp_table_t *t, const char *key, size_t len, int after,
    uint64_t cost)
{
    size_t        i;
    lc_rp_row_t  *row;

    for (i = 0; i < t->n; i++) {
        if (strlen(t->rows[i].key) == len
            && memcmp(t->rows[i].key, key, len) == 0)
        {
            break;
        }
    }

    if (i == t->n) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 16;
            row = realloc(t->rows, t->cap * sizeof(lc_rp_row_t));
            if (row == NULL) {
                lc_err("out of memory");
                exit(LC_EUSAGE);
            }

            t->rows = row;
        }

        row = &t->rows[t->n++];
        memset(row, 0, sizeof(lc_rp_row_t));
        row->key = strndup(key, len);
        if (row->key == NULL) {
            lc_err("out of memory");
            exit(LC_EUSAGE);
        }
    }

    row = &t->rows[i];

    if (after) {
        row->req_after++;
        row->after += cost;

    } else {
        row->req_before++;
        row->before += cost;
    }
}


static int
lc_rp_change(lc_rp_t *rp, lc_rp_change_t *c)
{
    char            key[512];
    lc_rp_change_t  *n;

    snprintf(key, sizeof(key), "%s -> %s", c->from,
             c->to ? c->to : "(none eligible)");
    lc_rp_add(&rp->moves, key, strlen(key), 0, c->before);
    lc_rp_add(&rp->moves, key, strlen(key), 1, c->after);

    if (rp->nchanges == rp->cchanges) {
        rp->cchanges = rp->cchanges ? rp->cchanges * 2 : 64;
        n = realloc(rp->changes, rp->cchanges * sizeof(lc_rp_change_t));
        if (n == NULL) {
            lc_err("out of memory");
            return LC_EUSAGE;
        }

        rp->changes = n;
    }

    n = &rp->changes[rp->nchanges++];
    *n = *c;

    /* the strings point into the log buffer, which is freed: copy */
    n->id = strdup(c->id);
    n->client = strdup(c->client);

    if (n->id == NULL || n->client == NULL) {
        lc_err("out of memory");
        return LC_EUSAGE;
    }

    return LC_OK;
}


/*
 * tok[]: prompt, completion, cached, in the order of the log fields;
 * written: the cache writes from route_facts (0 in a log from before they
 * were logged).  prompt_tokens counts every input token, reads and writes
 * included, as the module counts them for both formats.
 */

static uint64_t
lc_rp_cost(ngx_http_llmroute_model_t *m, uint64_t *tok, uint64_t written)
{
    return ngx_http_llmroute_cost(m, tok[0], tok[2], written, tok[1]);
}


static char *
lc_rp_usd(uint64_t nano, char *buf)
{
    snprintf(buf, 32, "%llu.%09llu", (unsigned long long) (nano / 1000000000),
             (unsigned long long) (nano % 1000000000));
    return buf;
}


static char *
lc_rp_signed_usd(uint64_t before, uint64_t after, char *buf)
{
    if (after >= before) {
        return lc_rp_usd(after - before, buf);
    }

    buf[0] = '-';
    lc_rp_usd(before - after, buf + 1);

    return buf;
}


static double
lc_rp_pct(uint64_t before, uint64_t after)
{
    if (before == 0) {
        return after ? 100.0 : 0.0;
    }

    return ((double) after - (double) before) * 100.0 / before;
}


/*
 * The gate: total after > total before x (1 + max), exactly in integers;
 * the mean of the per-request increases > max (a cheap request that
 * doubled counts as much as an expensive one); any request left without
 * an eligible model.
 */

static int
lc_rp_exceeded(lc_rp_t *rp, int *total, int *mean)
{
    unsigned __int128  lhs, rhs;

    lhs = (unsigned __int128) rp->after * 100000;
    rhs = (unsigned __int128) rp->before * (100000 + rp->max_milli);

    *total = lhs > rhs;
    *mean = rp->ratio_n
            && rp->ratio_sum / rp->ratio_n * 100000.0 > (double) rp->max_milli;

    return *total || *mean || rp->unroutable;
}


static void
lc_rp_print_table(lc_rp_table_t *t)
{
    char    b[40], a[40], d[40];
    size_t  i;

    printf("\nby %s:\n  %-40s %9s %9s %16s %16s %16s\n", t->title, t->title,
           "req", "req new", "before USD", "after USD", "difference");

    for (i = 0; i < t->n; i++) {
        printf("  %-40s %9llu %9llu %16s %16s %16s\n", t->rows[i].key,
               (unsigned long long) t->rows[i].req_before,
               (unsigned long long) t->rows[i].req_after,
               lc_rp_usd(t->rows[i].before, b),
               lc_rp_usd(t->rows[i].after, a),
               lc_rp_signed_usd(t->rows[i].before, t->rows[i].after, d));
    }
}


static int
lc_rp_by_increase(const void *a, const void *b)
{
    int64_t                d1, d2;
    const lc_rp_change_t  *c1, *c2;

    c1 = a;
    c2 = b;
    d1 = (int64_t) c1->after - (int64_t) c1->before;
    d2 = (int64_t) c2->after - (int64_t) c2->before;

    return (d1 < d2) - (d1 > d2);
}


static void
lc_rp_print_text(lc_rp_t *rp)
{
    int             total, mean;
    char            b[40], a[40], d[40], l[40];
    size_t          i;
    lc_rp_change_t  *c;

    printf("replayed %llu requests (%llu not routed, skipped)\n"
           "old catalog %s, new catalog %s\n"
           "before:     $%s (the log's own cost_usd: $%s)\n"
           "after:      $%s\n"
           "difference: $%s (%+.3f%%; mean per request %+.3f%%)\n"
           "changed:    %zu requests, %llu without an eligible model\n",
           (unsigned long long) rp->requests,
           (unsigned long long) rp->skipped, rp->old_path, rp->new_path,
           lc_rp_usd(rp->before, b), lc_rp_usd(rp->logged, l),
           lc_rp_usd(rp->after, a),
           lc_rp_signed_usd(rp->before, rp->after, d),
           lc_rp_pct(rp->before, rp->after),
           rp->ratio_n ? rp->ratio_sum / rp->ratio_n * 100.0 : 0.0,
           rp->nchanges, (unsigned long long) rp->unroutable);

    for (i = 0; i < 4; i++) {
        lc_rp_print_table(&rp->by[i]);
    }

    if (rp->moves.n) {
        lc_rp_print_table(&rp->moves);
    }

    /* the largest increases first (the JSON keeps the log's order) */
    qsort(rp->changes, rp->nchanges, sizeof(lc_rp_change_t),
          lc_rp_by_increase);

    if (rp->nchanges) {
        printf("\nchanged requests, largest increase first (%zu of %zu; "
               "--list N for more):\n",
               rp->nchanges < rp->list ? rp->nchanges : rp->list,
               rp->nchanges);
    }

    for (i = 0; i < rp->nchanges && i < rp->list; i++) {
        c = &rp->changes[i];
        printf("  %s client=%s tier=%s %s -> %s $%s -> $%s\n", c->id,
               c->client, c->tier, c->from, c->to ? c->to : "(none eligible)",
               lc_rp_usd(c->before, b), lc_rp_usd(c->after, a));
    }

    if (rp->gate) {
        if (lc_rp_exceeded(rp, &total, &mean)) {
            printf("\nFAIL: --max-increase %llu.%03llu%% exceeded:%s%s%s\n",
                   (unsigned long long) (rp->max_milli / 1000),
                   (unsigned long long) (rp->max_milli % 1000),
                   total ? " total" : "", mean ? " per-request mean" : "",
                   rp->unroutable ? " requests without an eligible model"
                                  : "");

        } else {
            printf("\nOK: within --max-increase %llu.%03llu%%\n",
                   (unsigned long long) (rp->max_milli / 1000),
                   (unsigned long long) (rp->max_milli % 1000));
        }
    }
}


static void
lc_rp_json_str(const char *s)
{
    /*
     * keys come from the catalogs (no quotes: the module refuses them) or
     * from the log, where escape=json already escaped them
     */

    putchar('"');

    for ( /* void */ ; *s; s++) {
        if ((unsigned char) *s < 0x20) {
            printf("\\u%04x", (unsigned char) *s);

        } else {
            putchar(*s);
        }
    }

    putchar('"');
}


static void
lc_rp_json_table(lc_rp_table_t *t, const char *name)
{
    char    b[40], a[40];
    size_t  i;

    printf(",\"%s\":[", name);

    for (i = 0; i < t->n; i++) {
        printf("%s{\"key\":", i ? "," : "");
        lc_rp_json_str(t->rows[i].key);
        printf(",\"requests_before\":%llu,\"requests_after\":%llu,"
               "\"before_usd\":\"%s\",\"after_usd\":\"%s\"}",
               (unsigned long long) t->rows[i].req_before,
               (unsigned long long) t->rows[i].req_after,
               lc_rp_usd(t->rows[i].before, b),
               lc_rp_usd(t->rows[i].after, a));
    }

    putchar(']');
}


static void
lc_rp_print_json(lc_rp_t *rp)
{
    int             total, mean, over;
    char            b[40], a[40], d[40], l[40];
    size_t          i;
    lc_rp_change_t  *c;

    printf("{\"requests\":%llu,\"skipped\":%llu,\"before_usd\":\"%s\","
           "\"after_usd\":\"%s\",\"difference_usd\":\"%s\","
           "\"logged_usd\":\"%s\",\"logged_mismatches\":%llu,"
           "\"increase_pct\":%.6f,\"mean_increase_pct\":%.6f,"
           "\"changed\":%zu,\"unroutable\":%llu",
           (unsigned long long) rp->requests,
           (unsigned long long) rp->skipped,
           lc_rp_usd(rp->before, b), lc_rp_usd(rp->after, a),
           lc_rp_signed_usd(rp->before, rp->after, d),
           lc_rp_usd(rp->logged, l),
           (unsigned long long) rp->mismatched,
           lc_rp_pct(rp->before, rp->after),
           rp->ratio_n ? rp->ratio_sum / rp->ratio_n * 100.0 : 0.0,
           rp->nchanges, (unsigned long long) rp->unroutable);

    lc_rp_json_table(&rp->by[0], "by_tier");
    lc_rp_json_table(&rp->by[1], "by_model");
    lc_rp_json_table(&rp->by[2], "by_provider");
    lc_rp_json_table(&rp->by[3], "by_client");
    lc_rp_json_table(&rp->moves, "moves");

    fputs(",\"changed_requests\":[", stdout);

    for (i = 0; i < rp->nchanges; i++) {
        c = &rp->changes[i];
        printf("%s{\"request_id\":", i ? "," : "");
        lc_rp_json_str(c->id);
        fputs(",\"client\":", stdout);
        lc_rp_json_str(c->client);
        printf(",\"tier\":\"%s\",\"from\":", c->tier);
        lc_rp_json_str(c->from);
        fputs(",\"to\":", stdout);
        if (c->to) {
            lc_rp_json_str(c->to);
        } else {
            fputs("null", stdout);
        }
        printf(",\"before_usd\":\"%s\",\"after_usd\":\"%s\"}",
               lc_rp_usd(c->before, b), lc_rp_usd(c->after, a));
    }

    putchar(']');

    if (rp->gate) {
        over = lc_rp_exceeded(rp, &total, &mean);
        printf(",\"gate\":{\"max_increase_pct\":%llu.%03llu,"
               "\"exceeded\":%s,\"total\":%s,\"mean\":%s}",
               (unsigned long long) (rp->max_milli / 1000),
               (unsigned long long) (rp->max_milli % 1000),
               over ? "true" : "false", total ? "true" : "false",
               mean ? "true" : "false");
    }

    puts("}");
}
