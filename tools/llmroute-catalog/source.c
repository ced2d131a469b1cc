/*
 * llmroute-catalog: the price list (HTTP or file), the map file, and the
 * llmroute_model include file rendered from both.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <yajl/yajl_tree.h>

#include "llmroute_catalog.h"


#define LC_MAX_BODY  (64u << 20)


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      too_large;
} lc_buf_t;


static size_t lc_write_cb(char *ptr, size_t size, size_t nmemb, void *ud);
static int lc_is_url(const char *s);
static char *lc_strdup(const char *s);
static int lc_map_option(lc_entry_t *e, const char *opt, const char *path);
static const char *lc_json_price(yajl_val pricing, const char *name,
    uint64_t *out, int *present);
static unsigned lc_json_caps(yajl_val model);


static size_t
lc_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    char      *nd;
    size_t     n, cap;
    lc_buf_t  *b = ud;

    n = size * nmemb;

    if (b->len + n + 1 > LC_MAX_BODY) {
        b->too_large = 1;
        return 0;
    }

    if (b->len + n + 1 > b->cap) {
        cap = b->cap ? b->cap : 65536;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }

        nd = realloc(b->data, cap);
        if (nd == NULL) {
            return 0;
        }

        b->data = nd;
        b->cap = cap;
    }

    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';

    return n;
}


static int
lc_is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}


static char *
lc_strdup(const char *s)
{
    char  *p;

    p = strdup(s);
    if (p == NULL) {
        lc_err("out of memory");
        exit(LC_EMAP);
    }

    return p;
}


/* a libcurl failure -> message and exit code */

int
lc_curl_code(int code, const char *what, const char *url, const char *detail)
{
    const char  *d;

    d = (detail && *detail) ? detail : curl_easy_strerror((CURLcode) code);

    switch (code) {

    case CURLE_OPERATION_TIMEDOUT:
        lc_err("%s %s: timed out (%s)", what, url, d);
        return LC_ETIMEOUT;

    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        lc_err("%s %s: TLS failure, certificate not verified or handshake "
               "failed (%s); check --cacert", what, url, d);
        return LC_ETLS;

    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        lc_err("%s %s: cannot resolve the host name (%s)", what, url, d);
        return LC_ESOURCE;

    case CURLE_COULDNT_CONNECT:
        lc_err("%s %s: cannot connect (%s)", what, url, d);
        return LC_ESOURCE;

    default:
        lc_err("%s %s: %s", what, url, d);
        return LC_ESOURCE;
    }
}


/* the price list: an http(s) URL through libcurl, anything else a file */

int
lc_fetch_source(const char *source, const lc_http_opts_t *opts, char **data,
    size_t *len)
{
    int        rc;
    long       status;
    CURL      *h;
    CURLcode   cc;
    lc_buf_t   b;
    char       errbuf[CURL_ERROR_SIZE];

    if (!lc_is_url(source)) {
        if (lc_read_file(source, data, len) != 0) {
            lc_err("cannot read source file \"%s\": %s", source,
                   strerror(errno));
            return LC_ESOURCE;
        }

        return LC_OK;
    }

    h = curl_easy_init();
    if (h == NULL) {
        lc_err("curl_easy_init() failed");
        return LC_ESOURCE;
    }

    memset(&b, 0, sizeof(b));
    errbuf[0] = '\0';

    curl_easy_setopt(h, CURLOPT_URL, source);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llmroute-catalog/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lc_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, opts->insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, opts->insecure ? 0L : 2L);

    if (opts->cacert) {
        curl_easy_setopt(h, CURLOPT_CAINFO, opts->cacert);
    }

    cc = curl_easy_perform(h);
    status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);

    if (cc == CURLE_WRITE_ERROR && b.too_large) {
        lc_err("fetch %s: response larger than %u MB", source,
               LC_MAX_BODY >> 20);
        rc = LC_ESOURCE;
        goto failed;
    }

    if (cc != CURLE_OK) {
        rc = lc_curl_code(cc, "fetch", source, errbuf);
        goto failed;
    }

    if (status < 200 || status > 299) {
        lc_err("fetch %s: HTTP status %ld", source, status);
        rc = LC_EHTTP;
        goto failed;
    }

    if (b.data == NULL) {
        lc_err("malformed JSON in the price list: empty response from %s",
               source);
        rc = LC_EJSON;
        goto failed;
    }

    *data = b.data;
    *len = b.len;

    return LC_OK;

failed:

    free(b.data);
    return rc;
}


/*
 * Map file: one model a line,
 *     PROVIDER MODEL SOURCE-ID TIER CAPS [OPTION...]
 * SOURCE-ID "-": a static entry whose prices are given as options;
 * CAPS: tools,json,vision | - | auto;
 * OPTION: input=USD output=USD cached_input=USD|input context=N
 *         stream_usage=on|off   (prices in USD per 1M tokens).
 * '#' starts a comment.
 */

int
lc_map_load(const char *path, lc_map_t *map)
{
    int          ln, rc;
    char        *text, *line, *next, *tok[32], *c, *save, *cap;
    size_t       len, n, i, j;
    lc_entry_t  *e, *ne;

    memset(map, 0, sizeof(*map));

    if (lc_read_file(path, &text, &len) != 0) {
        lc_err("cannot read map file \"%s\": %s", path, strerror(errno));
        return LC_EMAP;
    }

    rc = LC_EMAP;
    ln = 0;

    for (line = text; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next) {
            *next++ = '\0';
        }

        ln++;

        c = strchr(line, '#');
        if (c) {
            *c = '\0';
        }

        n = 0;

        for (c = strtok_r(line, " \t\r", &save); c != NULL;
             c = strtok_r(NULL, " \t\r", &save))
        {
            if (n == 32) {
                lc_err("%s:%d: too many fields", path, ln);
                goto failed;
            }

            tok[n++] = c;
        }

        if (n == 0) {
            continue;
        }

        if (n < 5) {
            lc_err("%s:%d: expected PROVIDER MODEL SOURCE-ID TIER CAPS "
                   "[OPTION...]", path, ln);
            goto failed;
        }

        ne = realloc(map->entries, (map->n + 1) * sizeof(lc_entry_t));
        if (ne == NULL) {
            lc_err("out of memory");
            goto failed;
        }

        map->entries = ne;
        e = &map->entries[map->n++];
        memset(e, 0, sizeof(*e));

        e->line = ln;
        e->map_input = LC_PRICE_UNSET;
        e->map_output = LC_PRICE_UNSET;
        e->map_cached = LC_PRICE_UNSET;

        if (!lc_valid_name(tok[0])) {
            lc_err("%s:%d: invalid provider name \"%s\"", path, ln, tok[0]);
            goto failed;
        }

        if (!lc_valid_model_id(tok[1])) {
            lc_err("%s:%d: invalid model id \"%s\" (no spaces, quotes or "
                   "config syntax, must not start with \"auto\")",
                   path, ln, tok[1]);
            goto failed;
        }

        if (strcmp(tok[3], "simple") != 0 && strcmp(tok[3], "moderate") != 0
            && strcmp(tok[3], "complex") != 0)
        {
            lc_err("%s:%d: invalid tier \"%s\", expected simple, moderate "
                   "or complex", path, ln, tok[3]);
            goto failed;
        }

        e->provider = lc_strdup(tok[0]);
        e->model = lc_strdup(tok[1]);
        e->source_id = strcmp(tok[2], "-") ? lc_strdup(tok[2]) : NULL;
        e->tier = lc_strdup(tok[3]);

        if (strcmp(tok[4], "auto") == 0) {
            e->caps_auto = 1;

        } else if (strcmp(tok[4], "-") != 0) {
            for (cap = strtok_r(tok[4], ",", &save); cap != NULL;
                 cap = strtok_r(NULL, ",", &save))
            {
                if (strcmp(cap, "tools") == 0) {
                    e->caps |= LC_TOOLS;

                } else if (strcmp(cap, "json") == 0) {
                    e->caps |= LC_JSON;

                } else if (strcmp(cap, "vision") == 0) {
                    e->caps |= LC_VISION;

                } else {
                    lc_err("%s:%d: unknown capability \"%s\" (tools, json, "
                           "vision, \"-\" or \"auto\")", path, ln, cap);
                    goto failed;
                }
            }
        }

        for (i = 5; i < n; i++) {
            if (lc_map_option(e, tok[i], path) != 0) {
                goto failed;
            }
        }

        if (e->source_id == NULL
            && (e->map_input == LC_PRICE_UNSET
                || e->map_output == LC_PRICE_UNSET || e->caps_auto))
        {
            lc_err("%s:%d: a static entry (source id \"-\") needs input= "
                   "and output= and explicit capabilities", path, ln);
            goto failed;
        }

        for (j = 0; j + 1 < map->n; j++) {
            if (strcmp(map->entries[j].provider, e->provider) == 0
                && strcmp(map->entries[j].model, e->model) == 0)
            {
                lc_err("%s:%d: duplicate model \"%s\" of provider \"%s\" "
                       "(first on line %d)", path, ln, e->model,
                       e->provider, map->entries[j].line);
                goto failed;
            }
        }
    }

    if (map->n == 0) {
        lc_err("%s: no models", path);
        goto failed;
    }

    rc = LC_OK;

failed:

    free(text);
    return rc;
}


static int
lc_map_option(lc_entry_t *e, const char *opt, const char *path)
{
    int          rounded;
    uint64_t    *dst, v;
    const char  *val;

    val = strchr(opt, '=');
    if (val == NULL) {
        goto invalid;
    }

    val++;

    if (strncmp(opt, "context=", 8) == 0) {
        if (lc_parse_count(val, &e->map_context) != 0 || e->map_context == 0)
        {
            goto invalid;
        }

        return 0;
    }

    if (strncmp(opt, "stream_usage=", 13) == 0) {
        if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
            goto invalid;
        }

        e->stream_usage = lc_strdup(val);
        return 0;
    }

    if (strcmp(opt, "cached_input=input") == 0) {
        e->cached_as_input = 1;
        return 0;
    }

    if (strncmp(opt, "input=", 6) == 0) {
        dst = &e->map_input;

    } else if (strncmp(opt, "output=", 7) == 0) {
        dst = &e->map_output;

    } else if (strncmp(opt, "cached_input=", 13) == 0) {
        dst = &e->map_cached;

    } else {
        goto invalid;
    }

    /* USD per 1M with at most 3 decimals: milli-USD, exactly */
    if (lc_parse_decimal_e9(val, &v, &rounded) != 0 || v % 1000000 != 0
        || v / 1000000 > 1000000000ULL)
    {
        lc_err("%s:%d: invalid price \"%s\", expected USD per 1M tokens "
               "with at most 3 decimals", path, e->line, opt);
        return -1;
    }

    *dst = v / 1000000;

    return 0;

invalid:

    lc_err("%s:%d: invalid option \"%s\"", path, e->line, opt);
    return -1;
}


void
lc_map_free(lc_map_t *map)
{
    size_t  i;

    for (i = 0; i < map->n; i++) {
        free(map->entries[i].provider);
        free(map->entries[i].model);
        free(map->entries[i].source_id);
        free(map->entries[i].tier);
        free(map->entries[i].stream_usage);
    }

    free(map->entries);
    memset(map, 0, sizeof(*map));
}


/*
 * pricing.NAME: a string or number, USD per token -> milli-USD per 1M.
 * Returns NULL or what is wrong with it.
 */

static const char *
lc_json_price(yajl_val pricing, const char *name, uint64_t *out,
    int *present)
{
    int           rounded;
    yajl_val      v;
    const char   *path[2], *s;

    path[0] = name;
    path[1] = NULL;
    *present = 0;

    v = yajl_tree_get(pricing, path, yajl_t_any);
    if (v == NULL || YAJL_IS_NULL(v)) {
        return NULL;
    }

    *present = 1;

    if (YAJL_IS_STRING(v)) {
        s = v->u.string;

    } else if (YAJL_IS_NUMBER(v)) {
        s = v->u.number.r;

    } else {
        s = NULL;
    }

    if (s == NULL) {
        return "not a string or number";
    }

    if (lc_parse_decimal_e9(s, out, &rounded) != 0) {
        return "not a non-negative decimal";
    }

    if (rounded) {
        /* the module takes 3 decimals per 1M tokens: 10^-9 USD a token */
        lc_warn("price %s=\"%s\" rounded to 3 decimals per 1M tokens",
                name, s);
    }

    return NULL;
}


/* capabilities from supported_parameters and architecture.input_modalities */

static unsigned
lc_json_caps(yajl_val model)
{
    size_t        i;
    unsigned      caps;
    yajl_val      a, v;
    const char   *s;
    const char   *params[] = { "supported_parameters", NULL };
    const char   *modal[] = { "architecture", "input_modalities", NULL };

    caps = 0;

    a = yajl_tree_get(model, params, yajl_t_array);

    for (i = 0; a && i < YAJL_GET_ARRAY(a)->len; i++) {
        v = YAJL_GET_ARRAY(a)->values[i];
        s = YAJL_IS_STRING(v) ? v->u.string : NULL;

        if (s == NULL) {
            continue;
        }

        if (strcmp(s, "tools") == 0) {
            caps |= LC_TOOLS;

        } else if (strcmp(s, "response_format") == 0
                   || strcmp(s, "structured_outputs") == 0)
        {
            caps |= LC_JSON;
        }
    }

    a = yajl_tree_get(model, modal, yajl_t_array);

    for (i = 0; a && i < YAJL_GET_ARRAY(a)->len; i++) {
        v = YAJL_GET_ARRAY(a)->values[i];

        s = YAJL_IS_STRING(v) ? v->u.string : NULL;

        if (s && strcmp(s, "image") == 0) {
            caps |= LC_VISION;
        }
    }

    return caps;
}


/* find every mapped id in {"data":[{"id":..., "pricing":{...}}, ...]} */

int
lc_map_resolve(lc_map_t *map, const char *json, int allow_missing)
{
    int           rc, present;
    char          errbuf[512], *nl;
    size_t        i, k;
    yajl_val      root, data, m, id, pricing, ctx;
    lc_entry_t   *e;
    const char   *err;
    const char   *pdata[] = { "data", NULL };
    const char   *pid[] = { "id", NULL };
    const char   *ppricing[] = { "pricing", NULL };
    const char   *pctx[] = { "context_length", NULL };

    errbuf[0] = '\0';
    root = yajl_tree_parse(json, errbuf, sizeof(errbuf));

    if (root == NULL) {
        /* yajl's message spans lines: keep the first */
        nl = strchr(errbuf, '\n');
        if (nl) {
            *nl = '\0';
        }

        lc_err("malformed JSON in the price list: %s",
               errbuf[0] ? errbuf : "parse error");
        return LC_EJSON;
    }

    data = yajl_tree_get(root, pdata, yajl_t_array);

    if (!YAJL_IS_OBJECT(root) || data == NULL) {
        lc_err("unexpected JSON in the price list: no top-level "
               "\"data\" array (OpenRouter /api/v1/models shape expected)");
        yajl_tree_free(root);
        return LC_EJSON;
    }

    rc = LC_OK;
    m = NULL;

    for (i = 0; i < map->n; i++) {
        e = &map->entries[i];
        e->found = 0;
        e->context = e->map_context;
        e->cached = LC_PRICE_UNSET;

        if (e->source_id == NULL) {
            e->input = e->map_input;
            e->output = e->map_output;
            e->cached = e->map_cached;
            e->found = 1;
            continue;
        }

        for (k = 0; k < YAJL_GET_ARRAY(data)->len; k++) {
            m = YAJL_GET_ARRAY(data)->values[k];
            id = yajl_tree_get(m, pid, yajl_t_string);

            if (id && id->u.string
                && strcmp(id->u.string, e->source_id) == 0)
            {
                break;
            }
        }

        if (k == YAJL_GET_ARRAY(data)->len) {
            if (allow_missing) {
                lc_warn("\"%s\" (%s/%s) is not in the price list, left out",
                        e->source_id, e->provider, e->model);
                continue;
            }

            lc_err("\"%s\" (%s/%s, map line %d) is not in the price list",
                   e->source_id, e->provider, e->model, e->line);
            rc = LC_EMISSING;
            continue;
        }

        pricing = yajl_tree_get(m, ppricing, yajl_t_object);
        if (pricing == NULL) {
            lc_err("\"%s\": no \"pricing\" object", e->source_id);
            rc = LC_EMISSING;
            continue;
        }

        err = lc_json_price(pricing, "prompt", &e->input, &present);
        if (err == NULL && !present) {
            err = "missing";
        }

        if (err) {
            lc_err("\"%s\": pricing.prompt %s", e->source_id, err);
            rc = LC_EMISSING;
            continue;
        }

        err = lc_json_price(pricing, "completion", &e->output, &present);
        if (err == NULL && !present) {
            err = "missing";
        }

        if (err) {
            lc_err("\"%s\": pricing.completion %s", e->source_id, err);
            rc = LC_EMISSING;
            continue;
        }

        err = lc_json_price(pricing, "input_cache_read", &e->cached,
                            &present);
        if (err) {
            lc_err("\"%s\": pricing.input_cache_read %s", e->source_id, err);
            rc = LC_EMISSING;
            continue;
        }

        if (!present) {
            e->cached = LC_PRICE_UNSET;
        }

        /* map options override the list: prices, cached=input, context cap */
        if (e->map_input != LC_PRICE_UNSET) {
            e->input = e->map_input;
        }

        if (e->map_output != LC_PRICE_UNSET) {
            e->output = e->map_output;
        }

        if (e->map_cached != LC_PRICE_UNSET) {
            e->cached = e->map_cached;
        }

        ctx = yajl_tree_get(m, pctx, yajl_t_number);

        if (ctx && YAJL_IS_INTEGER(ctx) && YAJL_GET_INTEGER(ctx) > 0
            && (e->map_context == 0
                || (uint64_t) YAJL_GET_INTEGER(ctx) < e->map_context))
        {
            e->context = (uint64_t) YAJL_GET_INTEGER(ctx);
        }

        if (e->caps_auto) {
            e->caps = lc_json_caps(m);
        }

        e->found = 1;
    }

    for (i = 0; i < map->n; i++) {
        if (map->entries[i].cached_as_input) {
            map->entries[i].cached = LC_PRICE_UNSET;
        }
    }

    yajl_tree_free(root);

    return rc;
}


/* the llmroute_model include file, deterministic (no timestamps) */

int
lc_render(const lc_map_t *map, const char *source, char **out, size_t *len)
{
    FILE              *f;
    char               in[32], o[32], c[32];
    size_t             i, n;
    const lc_entry_t  *e;

    *out = NULL;
    f = open_memstream(out, len);
    if (f == NULL) {
        lc_err("open_memstream: %s", strerror(errno));
        return LC_EWRITE;
    }

    fprintf(f, "# Generated by llmroute-catalog from %s.\n"
               "# USD per 1M tokens; regenerate rather than edit.\n\n",
            source);

    for (i = 0, n = 0; i < map->n; i++) {
        e = &map->entries[i];

        if (!e->found) {
            continue;
        }

        n++;
        lc_format_price(e->input, in, sizeof(in));
        lc_format_price(e->output, o, sizeof(o));

        fprintf(f, "llmroute_model %s %s tier=%s input=%s output=%s",
                e->provider, e->model, e->tier, in, o);

        if (e->cached != LC_PRICE_UNSET) {
            lc_format_price(e->cached, c, sizeof(c));
            fprintf(f, " cached_input=%s", c);
        }

        if (e->context) {
            fprintf(f, " context=%llu", (unsigned long long) e->context);
        }

        fprintf(f, "%s%s%s", (e->caps & LC_TOOLS) ? " tools" : "",
                (e->caps & LC_JSON) ? " json" : "",
                (e->caps & LC_VISION) ? " vision" : "");

        if (e->stream_usage) {
            fprintf(f, " stream_usage=%s", e->stream_usage);
        }

        fprintf(f, ";  # %s\n", e->source_id ? e->source_id : "static");
    }

    if (fclose(f) != 0) {
        lc_err("render: %s", strerror(errno));
        return LC_EWRITE;
    }

    if (n == 0) {
        lc_err("no model resolved: refusing to write an empty catalog");
        return LC_EMISSING;
    }

    return LC_OK;
}
