
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Log variables for replaying a routing decision offline
 * (llmroute-catalog reprice): $llmroute_route_facts is the final
 * selection input (what ngx_http_llmroute_select() saw for the attempt
 * that answered), $llmroute_client the label of the llmroute_client key
 * (also the status page's).  Read only at log time, from the request's own
 * context: nothing on the request path.
 */


#include <ngx_http_llmroute_module.h>


#define NGX_HTTP_LLMROUTE_FACTS_FACTS   0
#define NGX_HTTP_LLMROUTE_FACTS_CLIENT  1


static ngx_int_t ngx_http_llmroute_facts_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static u_char *ngx_http_llmroute_facts_write(u_char *p,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx);


/* registered by ngx_http_llmroute_add_variables() */
ngx_http_variable_t  ngx_http_llmroute_facts_vars[] = {

    { ngx_string("llmroute_route_facts"), NULL,
      ngx_http_llmroute_facts_variable, NGX_HTTP_LLMROUTE_FACTS_FACTS,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("llmroute_client"), NULL,
      ngx_http_llmroute_facts_variable, NGX_HTTP_LLMROUTE_FACTS_CLIENT,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_llmroute_facts_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    size_t                          len, rlen;
    u_char                         *p;
    ngx_str_t                       s;
    ngx_uint_t                      i;
    ngx_http_llmroute_ctx_t        *ctx;
    ngx_http_llmroute_loc_conf_t   *lcf;
    ngx_http_llmroute_main_conf_t  *lmcf;

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx == NULL || !ctx->decided) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_LLMROUTE_FACTS_CLIENT) {
        lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

        s.data = ngx_pnalloc(r->pool, NGX_HTTP_LLMROUTE_KEY_LEN);
        if (s.data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_llmroute_client_label(r, lcf, s.data, &s.len)
            != NGX_OK)
        {
            v->not_found = 1;
            return NGX_OK;
        }

    } else {
        lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

        /* fixed part, then every name at its longest */

        len = sizeof("tier=moderate est= max= caps=tools,images,json pin="
                     " via= region= excl= prior= format= cache_write=") - 1
              + 4 * NGX_INT64_LEN + NGX_INT_T_LEN
              + ctx->want.pin_id.len;

        for (i = 0; i < lmcf->cat.nproviders; i++) {
            len += lmcf->cat.providers[i].name.len + 1;
        }

        rlen = 1;

        for (i = 0; i < lmcf->cat.nregions; i++) {
            rlen = ngx_max(rlen, lmcf->cat.regions[i].len);
        }

        len += rlen;

        for (i = 0, rlen = 0; i < NGX_HTTP_LLMROUTE_NFORMATS; i++) {
            rlen = ngx_max(rlen, ngx_http_llmroute_formats[i].name.len);
        }

        len += rlen;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;
        s.len = ngx_http_llmroute_facts_write(p, lmcf, ctx) - p;
    }

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * tier=T est=N max=N caps=a,b|- pin=ID|- [via=PROVIDER] region=NAME|-|?
 * excl=P,Q|- prior=NANO format=F cache_write=N: the tier floor after
 * classification, header, budget degrade and escalation; the prompt
 * estimate; max_tokens (-1: not given); what the body needs; the client's
 * pin; the region; the providers skipped (tried, cooling down, at a
 * limit); the cost of an escalated first answer (nano-USD, paid whatever
 * the catalog); the request's wire format (only its providers are
 * eligible); the answer's prompt-cache writes (priced at cache_write=, no
 * log field of their own)
 */

static u_char *
ngx_http_llmroute_facts_write(u_char *p, ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_ctx_t *ctx)
{
    u_char                     *c, caps[sizeof("tools,images,json,")];
    ngx_uint_t                  i, first;
    ngx_http_llmroute_req_t    *req;
    ngx_http_llmroute_want_t   *want;

    req = &ctx->req;
    want = &ctx->want;

    c = caps;

    if (req->ntools) {
        c = ngx_cpymem(c, "tools,", 6);
    }

    if (req->images) {
        c = ngx_cpymem(c, "images,", 7);
    }

    if (req->json_mode) {
        c = ngx_cpymem(c, "json,", 5);
    }

    if (c == caps) {
        *c++ = '-';

    } else {
        c--;                            /* the last comma */
    }

    p = ngx_sprintf(p, "tier=%V est=%uz max=%L caps=%*s",
                    &ngx_http_llmroute_tier_names[want->tier],
                    req->prompt_tokens, req->max_tokens, c - caps, caps);

    if (want->pin == NGX_HTTP_LLMROUTE_PIN_NONE) {
        p = ngx_cpymem(p, " pin=-", 6);

    } else {
        p = ngx_sprintf(p, " pin=%V", &want->pin_id);

        if (want->pin == NGX_HTTP_LLMROUTE_PIN_PROVIDER) {
            p = ngx_sprintf(p, " via=%V",
                            &lmcf->cat.providers[want->pin_provider].name);
        }
    }

    if (want->region >= 0) {
        p = ngx_sprintf(p, " region=%V", &lmcf->cat.regions[want->region]);

    } else {
        p = ngx_cpymem(p, want->region == NGX_HTTP_LLMROUTE_REGION_ANY
                          ? " region=-" : " region=?", 9);
    }

    p = ngx_cpymem(p, " excl=", 6);
    first = 1;

    for (i = 0; i < lmcf->cat.nproviders; i++) {
        if (want->exclude & ((uint64_t) 1 << i)) {
            if (!first) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, lmcf->cat.providers[i].name.data,
                           lmcf->cat.providers[i].name.len);
            first = 0;
        }
    }

    if (first) {
        *p++ = '-';
    }

    return ngx_sprintf(p, " prior=%uL format=%V cache_write=%L",
                       ctx->prior_cost,
                       &ngx_http_llmroute_formats[want->format].name,
                       ctx->cache_write_tokens);
}


/*
 * The llmroute_client key as a label: the key itself when it is a name the
 * configuration made (a map of $http_authorization to team names); a key
 * taken straight from the request ($http_*, $cookie_*, $arg_*, ...) or
 * that looks like a credential (long, spaces or quotes, "sk-", "Bearer")
 * becomes "#" and the first 8 hex digits of its keyed id (_client_id.c),
 * so no key reaches a log or a page.
 */

ngx_int_t
ngx_http_llmroute_client_label(ngx_http_request_t *r,
    ngx_http_llmroute_loc_conf_t *lcf, u_char *label, size_t *len)
{
    u_char                         *p, *last;
    u_char                          hex[NGX_HTTP_LLMROUTE_CLIENT_ID_LEN];
    ngx_str_t                       key, id, *src;
    ngx_uint_t                      i, hashed;
    ngx_http_llmroute_main_conf_t  *lmcf;

    static const char  *raw[] = {
        "$http_", "${http_", "$cookie_", "${cookie_", "$arg_", "${arg_",
        "$args", "$query_string", "$request", "$remote_user", NULL
    };

    if (lcf->client == NULL
        || ngx_http_complex_value(r, &lcf->client->key, &key) != NGX_OK
        || key.len == 0)
    {
        return NGX_DECLINED;
    }

    src = &lcf->client->key.value;
    hashed = 0;

    for (i = 0; raw[i] && !hashed; i++) {
        hashed = ngx_strlcasestrn(src->data, src->data + src->len,
                                  (u_char *) raw[i], ngx_strlen(raw[i]) - 1)
                 != NULL;
    }

    last = key.data + key.len;

    for (p = key.data; p < last && !hashed; p++) {
        hashed = (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\\'
                  || *p == '<' || *p == '>' || *p == '&');
    }

    if (hashed || key.len > 32
        || (key.len >= 3 && ngx_strncasecmp(key.data, (u_char *) "sk-", 3)
                            == 0)
        || (key.len >= 6
            && ngx_strncasecmp(key.data, (u_char *) "bearer", 6) == 0))
    {
        lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
        id.data = hex;

        if ((lmcf->client_secret.len == 0 && lmcf->sh == NULL)
            || ngx_http_llmroute_client_id(lmcf, &key, &id) != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* the client's keyed id, as in the zone and Redis, shortened */

        label[0] = '#';
        *len = ngx_cpymem(label + 1, id.data, 8) - label;
        return NGX_OK;
    }

    *len = ngx_cpymem(label, key.data, key.len) - label;

    return NGX_OK;
}
