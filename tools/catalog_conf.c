
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The catalog as the module reads it, for the standalone tools
 * (classify_report, llmroute-catalog reprice): llmroute_provider (name,
 * URL, regions=), llmroute_model, llmroute_output_budget and
 * llmroute_classifier from an nginx include file; everything else is
 * ignored.  Prices become nano-USD per token exactly as the module's own
 * parser makes them.
 */


#include <catalog_conf.h>

#include <errno.h>


const char  *llmroute_conf_prog = "llmroute";


static ngx_int_t llmroute_conf_model(ngx_http_llmroute_catalog_t *cat,
    ngx_str_t *arg, ngx_uint_t nargs);
static ngx_int_t llmroute_conf_provider(ngx_http_llmroute_catalog_t *cat,
    ngx_str_t *arg, ngx_uint_t nargs);
static ngx_uint_t llmroute_conf_strip(ngx_str_t *v, const char *name,
    size_t len);
static ngx_int_t llmroute_conf_price(ngx_str_t *v, uint64_t *nano);

#define llmroute_conf_param(v, name)                                         \
    llmroute_conf_strip(v, name, sizeof(name) - 1)
static ngx_int_t llmroute_conf_size(ngx_str_t *v, size_t *n);
static ngx_int_t llmroute_conf_budget(ngx_http_llmroute_catalog_t *cat,
    ngx_str_t *arg);


/*
 * the catalog: nginx directives split on whitespace, ";" ends one, "#"
 * starts a comment; quoting is not needed by any value we read
 */

ngx_int_t
llmroute_conf_catalog(ngx_http_llmroute_catalog_t *cat, const char *name)
{
    u_char     *data, *p, *last, *s;
    size_t      len;
    ngx_str_t   arg[LLMROUTE_CONF_MAX_ARGS];
    ngx_uint_t  nargs, i, line, end;

    data = llmroute_conf_read_file(name, &len);
    if (data == NULL) {
        return NGX_ERROR;
    }

    cat->providers = calloc(NGX_HTTP_LLMROUTE_MAX_PROVIDERS,
                            sizeof(ngx_http_llmroute_provider_t));
    cat->models = calloc(LLMROUTE_CONF_MAX_MODELS,
                         sizeof(ngx_http_llmroute_model_t));
    cat->regions = calloc(64, sizeof(ngx_str_t));
    if (cat->providers == NULL || cat->models == NULL || cat->regions == NULL)
    {
        return NGX_ERROR;
    }

    /* the module's defaults, then llmroute_output_budget */
    cat->output_budget[NGX_HTTP_LLMROUTE_TIER_SIMPLE] = 512;
    cat->output_budget[NGX_HTTP_LLMROUTE_TIER_MODERATE] = 1024;
    cat->output_budget[NGX_HTTP_LLMROUTE_TIER_COMPLEX] = 4096;

    nargs = 0;
    line = 1;
    p = data;
    last = data + len;

    while (p < last) {

        if (*p == '\n') {
            line++;
        }

        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
            continue;
        }

        if (*p == '#') {
            while (p < last && *p != '\n') {
                p++;
            }

            continue;
        }

        s = p;

        while (p < last && *p != ' ' && *p != '\t' && *p != '\r'
               && *p != '\n' && *p != ';' && *p != '#')
        {
            p++;
        }

        end = (p < last && *p == ';');

        if (p > s) {
            if (nargs == LLMROUTE_CONF_MAX_ARGS) {
                fprintf(stderr, "%s: %s:%lu: too many arguments\n",
                        llmroute_conf_prog, name, (unsigned long) line);
                return NGX_ERROR;
            }

            arg[nargs].data = s;
            arg[nargs].len = p - s;
            nargs++;
        }

        if (!end) {
            continue;
        }

        p++;

        if (nargs == 0) {
            continue;
        }

        if (arg[0].len == 17
            && ngx_memcmp(arg[0].data, "llmroute_provider", 17) == 0)
        {
            if (llmroute_conf_provider(cat, arg, nargs) != NGX_OK) {
                goto invalid;
            }

        } else if (arg[0].len == 14
                   && ngx_memcmp(arg[0].data, "llmroute_model", 14) == 0)
        {
            if (llmroute_conf_model(cat, arg, nargs) != NGX_OK) {
                goto invalid;
            }

        } else if (arg[0].len == 22
                   && ngx_memcmp(arg[0].data, "llmroute_output_budget", 22)
                      == 0)
        {
            for (i = 1; i < nargs; i++) {
                if (llmroute_conf_budget(cat, &arg[i]) != NGX_OK) {
                    goto invalid;
                }
            }

        } else if (arg[0].len == 19
                   && ngx_memcmp(arg[0].data, "llmroute_classifier", 19) == 0)
        {
            for (i = 1; i < nargs; i++) {
                if (llmroute_conf_setting(&cat->classifier, arg[i].data,
                                     arg[i].len)
                    != NGX_OK)
                {
                    goto invalid;
                }
            }
        }

        nargs = 0;
    }

    if (nargs) {
        fprintf(stderr, "%s: %s: unexpected end of file, "
                "expecting \";\"\n", llmroute_conf_prog, name);
        return NGX_ERROR;
    }

    if (cat->nmodels == 0) {
        fprintf(stderr, "%s: %s: no llmroute_model\n", llmroute_conf_prog,
                name);
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    fprintf(stderr, "%s: %s:%lu: invalid \"%.*s\" directive\n",
            llmroute_conf_prog, name, (unsigned long) line, (int) arg[0].len,
            arg[0].data);

    return NGX_ERROR;
}


/* llmroute_provider NAME URL [regions=a,b] [...] */

static ngx_int_t
llmroute_conf_provider(ngx_http_llmroute_catalog_t *cat, ngx_str_t *arg,
    ngx_uint_t nargs)
{
    u_char                        *p, *last, *s;
    ngx_uint_t                     i, r;
    ngx_http_llmroute_provider_t  *pr;

    if (nargs < 3 || cat->nproviders == NGX_HTTP_LLMROUTE_MAX_PROVIDERS) {
        return NGX_ERROR;
    }

    pr = &cat->providers[cat->nproviders];
    pr->name = arg[1];
    pr->url = arg[2];
    pr->index = cat->nproviders;

    for (i = 3; i < nargs; i++) {
        if (arg[i].len == 16
            && ngx_memcmp(arg[i].data, "format=anthropic", 16) == 0)
        {
            pr->format = NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC;
            continue;
        }

        if (arg[i].len <= 8 || ngx_memcmp(arg[i].data, "regions=", 8) != 0) {
            continue;
        }

        /* region indexes in order of first mention, as the module has them */

        last = arg[i].data + arg[i].len;

        for (p = arg[i].data + 8; p < last; p++) {
            s = p;

            while (p < last && *p != ',') {
                p++;
            }

            if (p == s) {
                return NGX_ERROR;
            }

            for (r = 0; r < cat->nregions; r++) {
                if (cat->regions[r].len == (size_t) (p - s)
                    && ngx_strncasecmp(cat->regions[r].data, s, p - s) == 0)
                {
                    break;
                }
            }

            if (r == cat->nregions) {
                if (r == 64) {
                    return NGX_ERROR;
                }

                cat->regions[r].data = s;
                cat->regions[r].len = p - s;
                cat->nregions++;
            }

            pr->regions |= (uint64_t) 1 << r;
        }
    }

    cat->nproviders++;

    return NGX_OK;
}


/* llmroute_model PROVIDER ID tier=T input=P output=P [...] [tools] ... */

static ngx_int_t
llmroute_conf_model(ngx_http_llmroute_catalog_t *cat, ngx_str_t *arg,
    ngx_uint_t nargs)
{
    u_char                     *full;
    ngx_int_t                   tier;
    ngx_int_t                   rc;
    ngx_uint_t                  i, have_tier, have_cached, have_write,
                                have_prices;
    ngx_str_t                   v;
    ngx_http_llmroute_model_t  *m;

    if (nargs < 3 || cat->nmodels == LLMROUTE_CONF_MAX_MODELS) {
        return NGX_ERROR;
    }

    m = &cat->models[cat->nmodels];
    m->id = arg[2];

    for (i = 0; i < cat->nproviders; i++) {
        if (cat->providers[i].name.len == arg[1].len
            && ngx_memcmp(cat->providers[i].name.data, arg[1].data,
                          arg[1].len)
               == 0)
        {
            break;
        }
    }

    if (i == cat->nproviders) {
        return NGX_ERROR;
    }

    m->provider = i;

    /* NUL-terminated: the tools print it */
    full = calloc(1, arg[1].len + 1 + arg[2].len + 1);
    if (full == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(full, arg[1].data, arg[1].len);
    full[arg[1].len] = '/';
    ngx_memcpy(full + arg[1].len + 1, arg[2].data, arg[2].len);
    m->full.data = full;
    m->full.len = arg[1].len + 1 + arg[2].len;

    have_tier = 0;
    have_cached = 0;
    have_write = 0;
    have_prices = 0;
    rc = NGX_OK;

    for (i = 3; i < nargs; i++) {
        v = arg[i];

        if (llmroute_conf_param(&v, "tier=")) {
            tier = ngx_http_llmroute_tier_by_name(v.data, v.len);
            if (tier == NGX_ERROR) {
                return NGX_ERROR;
            }

            m->tier = tier;
            have_tier = 1;

        } else if (llmroute_conf_param(&v, "input=")) {
            rc = llmroute_conf_price(&v, &m->input);
            have_prices |= 1;

        } else if (llmroute_conf_param(&v, "output=")) {
            rc = llmroute_conf_price(&v, &m->output);
            have_prices |= 2;

        } else if (llmroute_conf_param(&v, "cached_input=")) {
            rc = llmroute_conf_price(&v, &m->cached_input);
            have_cached = 1;

        } else if (llmroute_conf_param(&v, "cache_write=")) {
            rc = llmroute_conf_price(&v, &m->cache_write);
            have_write = 1;

        } else if (llmroute_conf_param(&v, "context=")) {
            rc = llmroute_conf_size(&v, &m->context);

        } else if (v.len == 5 && ngx_memcmp(v.data, "tools", 5) == 0) {
            m->tools = 1;

        } else if (v.len == 4 && ngx_memcmp(v.data, "json", 4) == 0) {
            m->json = 1;

        } else if (v.len == 6 && ngx_memcmp(v.data, "vision", 6) == 0) {
            m->vision = 1;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        /* other parameters do not affect the choice made here */
    }

    /* as the module: tier, input and output are required */

    if (!have_tier || have_prices != 3) {
        return NGX_ERROR;
    }

    if (!have_cached) {
        m->cached_input = m->input;
    }

    if (!have_write) {
        m->cache_write = m->input + m->input / 4;   /* as the module */
    }

    cat->nmodels++;

    return NGX_OK;
}


/* "name=value": 1 and v is the value, or 0 and v is untouched */

static ngx_uint_t
llmroute_conf_strip(ngx_str_t *v, const char *name, size_t len)
{
    if (v->len <= len || ngx_memcmp(v->data, name, len) != 0) {
        return 0;
    }

    v->data += len;
    v->len -= len;

    return 1;
}


/* USD per 1M tokens, up to 3 decimals, to nano-USD per token (x 1000) */

static ngx_int_t
llmroute_conf_price(ngx_str_t *v, uint64_t *nano)
{
    u_char      *p, *last;
    uint64_t     n;
    ngx_uint_t   frac, dot;

    n = 0;
    frac = 0;
    dot = 0;

    for (p = v->data, last = v->data + v->len; p < last; p++) {
        if (*p == '.' && !dot) {
            dot = 1;
            continue;
        }

        if (*p < '0' || *p > '9' || frac == 3 || n > 1000000000) {
            return NGX_ERROR;
        }

        n = n * 10 + (*p - '0');
        frac += dot;
    }

    if (v->len == 0 || (dot && frac == 0)) {
        return NGX_ERROR;
    }

    for ( /* void */ ; frac < 3; frac++) {
        n *= 10;
    }

    *nano = n;

    return NGX_OK;
}


/* 128000, 128k, 1m */

static ngx_int_t
llmroute_conf_size(ngx_str_t *v, size_t *n)
{
    u_char  *p, *last;
    size_t   s, mul;

    if (v->len == 0) {
        return NGX_ERROR;
    }

    last = v->data + v->len;
    mul = 1;

    if (last[-1] == 'k' || last[-1] == 'K') {
        mul = 1000;
        last--;

    } else if (last[-1] == 'm' || last[-1] == 'M') {
        mul = 1000000;
        last--;
    }

    s = 0;

    for (p = v->data; p < last; p++) {
        if (*p < '0' || *p > '9' || s > 100000000) {
            return NGX_ERROR;
        }

        s = s * 10 + (*p - '0');
    }

    if (p == v->data) {
        return NGX_ERROR;
    }

    *n = s * mul;

    return NGX_OK;
}


/* "tier=N", as an llmroute_output_budget argument */

static ngx_int_t
llmroute_conf_budget(ngx_http_llmroute_catalog_t *cat, ngx_str_t *arg)
{
    u_char     *eq;
    size_t      n;
    ngx_int_t   tier;
    ngx_str_t   v;

    eq = memchr(arg->data, '=', arg->len);
    if (eq == NULL) {
        return NGX_ERROR;
    }

    tier = ngx_http_llmroute_tier_by_name(arg->data, eq - arg->data);

    v.data = eq + 1;
    v.len = arg->data + arg->len - v.data;

    if (tier == NGX_ERROR || llmroute_conf_size(&v, &n) != NGX_OK || n == 0) {
        return NGX_ERROR;
    }

    cat->output_budget[tier] = n;

    return NGX_OK;
}


/* "name=value", as an llmroute_classifier argument */

ngx_int_t
llmroute_conf_setting(ngx_http_llmroute_classifier_t *cl, u_char *p,
    size_t len)
{
    char       buf[32], *end;
    u_char    *eq;
    double     value;
    ngx_str_t  name;

    eq = memchr(p, '=', len);
    if (eq == NULL || eq == p || (size_t) (p + len - eq - 1) >= sizeof(buf)
        || p + len - eq - 1 == 0)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, eq + 1, p + len - eq - 1);
    buf[p + len - eq - 1] = '\0';

    errno = 0;
    value = strtod(buf, &end);
    if (errno || *end != '\0') {
        return NGX_ERROR;
    }

    name.data = p;
    name.len = eq - p;

    return ngx_http_llmroute_classifier_set(cl, &name, value) == NGX_OK
           ? NGX_OK : NGX_ERROR;
}


u_char *
llmroute_conf_read_file(const char *name, size_t *len)
{
    long     size;
    FILE    *f;
    u_char  *data;

    f = fopen(name, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s: %s\n", llmroute_conf_prog, name,
                strerror(errno));
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fprintf(stderr, "%s: %s: cannot seek\n", llmroute_conf_prog, name);
        fclose(f);
        return NULL;
    }

    data = malloc(size + 1);
    if (data == NULL) {
        fclose(f);
        return NULL;
    }

    if (fread(data, 1, size, f) != (size_t) size) {
        fprintf(stderr, "%s: %s: read error\n", llmroute_conf_prog, name);
        fclose(f);
        free(data);
        return NULL;
    }

    fclose(f);
    data[size] = '\0';
    *len = size;

    return data;
}

