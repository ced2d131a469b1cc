
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * llmroute_status: a self-contained HTML dashboard, and the same data as
 * JSON with ?format=json: the last hour from the per-minute buckets
 * (ngx_http_llmroute_minutes.c) per provider, model and client, the tier
 * mix, the cache-hit share, the savings, budgets, provider health and
 * Redis.  Read only here; nothing is added to the request path.  Names
 * shown are catalog names and client labels (never a key).
 */


#include <ngx_http_llmroute_minutes.h>
#include <ngx_http_llmroute_status_page.h>


static ngx_int_t ngx_http_llmroute_status_handler(ngx_http_request_t *r);
static u_char *ngx_http_llmroute_status_json(u_char *p,
    ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_minutes_view_t *v);
static u_char *ngx_http_llmroute_status_row(u_char *p,
    ngx_http_llmroute_minute_row_t *row);


static const char  *ngx_http_llmroute_status_fails[] = {
    "connect", "timeout", "429", "5xx", "reset"
};

static const char  *ngx_http_llmroute_status_periods[] = {
    "hour", "day", "month"
};


char *
ngx_http_llmroute_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llmroute_module);

    /* the minutes are kept (in the zone) only when a page shows them */
    lmcf->status = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_llmroute_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llmroute_status_handler(ngx_http_request_t *r)
{
    size_t                             size;
    ngx_int_t                          rc;
    ngx_buf_t                         *b;
    ngx_uint_t                         json;
    ngx_table_elt_t                   *h;
    ngx_http_llmroute_main_conf_t     *lmcf;
    ngx_http_llmroute_minutes_view_t  *v;

    rc = ngx_http_llmroute_read_only(r, &json);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    if (lmcf->sh == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (json) {
        v = ngx_palloc(r->pool, sizeof(ngx_http_llmroute_minutes_view_t));
        if (v == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_llmroute_minutes_sum(lmcf, v);

        size = 4096 + (NGX_HTTP_LLMROUTE_KEYS + 2) * 512
               + lmcf->cat.nproviders
                 * (1024 + NGX_HTTP_LLMROUTE_MINUTES * 24)
               + NGX_HTTP_LLMROUTE_MINUTES * 160;

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->last = ngx_http_llmroute_status_json(b->pos, lmcf, v);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->pos = (u_char *) ngx_http_llmroute_status_page;
        b->last = b->pos + sizeof(ngx_http_llmroute_status_page) - 1;
        b->memory = 1;
        ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");

        /* the browser may load nothing but this page and its JSON */

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Content-Security-Policy");
        ngx_str_set(&h->value, "default-src 'none'; "
                               "script-src 'unsafe-inline'; "
                               "style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src data:");
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    return ngx_http_llmroute_send_buf(r, b);
}


static u_char *
ngx_http_llmroute_status_json(u_char *p, ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_minutes_view_t *v)
{
    u_char                              *slash;
    uint64_t                             now_ms, until, left, prompt;
    uint64_t                             used;
    ngx_str_t                            name;
    uint64_t                             cost[NGX_HTTP_LLMROUTE_MINUTES];
    ngx_uint_t                           i, k, m, first;
    ngx_http_llmroute_key_t             *key;
    ngx_http_llmroute_minute_row_t      *row, total, prov;
    ngx_http_llmroute_provider_stats_t  *ps;

    ngx_memzero(&total, sizeof(ngx_http_llmroute_minute_row_t));

    for (k = 0; k < NGX_HTTP_LLMROUTE_MINUTES; k++) {
        row = &v->minute[k];
        total.requests += row->requests;
        total.prompt += row->prompt;
        total.completion += row->completion;
        total.cached += row->cached;
        total.cost += row->cost;
    }

    prompt = total.prompt;

    p = ngx_sprintf(p, "{\"generated\":%T,\"window_minutes\":%d,"
                       "\"totals\":{", ngx_time(), NGX_HTTP_LLMROUTE_MINUTES);
    p = ngx_http_llmroute_status_row(p, &total);
    p = ngx_cpymem(p, ",\"savings_usd\":\"", 16);

    if (v->savings < 0) {
        *p++ = '-';
        p = ngx_http_llmroute_usd(p, (uint64_t) -v->savings);

    } else {
        p = ngx_http_llmroute_usd(p, (uint64_t) v->savings);
    }

    /* cached tokens are part of the prompt tokens */

    p = ngx_sprintf(p, "\"},\"cache_hit_share\":%uL.%06uL,\"tiers\":{",
                    prompt ? total.cached / prompt : 0,
                    prompt ? total.cached % prompt * 1000000 / prompt : 0);

    for (k = 0; k < NGX_HTTP_LLMROUTE_NTIERS; k++) {
        p = ngx_sprintf(p, "%s\"%V\":%uL", k ? "," : "",
                        &ngx_http_llmroute_tier_names[k], v->tiers[k]);
    }

    p = ngx_cpymem(p, "},\"models\":[", 12);
    first = 1;

    for (k = 0; v->minutes && k < NGX_HTTP_LLMROUTE_KEYS + 1; k++) {
        key = k < NGX_HTTP_LLMROUTE_KEYS ? &v->minutes->keys[k] : NULL;
        row = &v->rows[k];

        if (key ? key->kind != NGX_HTTP_LLMROUTE_KEY_MODEL
                : row->requests == 0)
        {
            continue;
        }

        name.data = key ? key->name : (u_char *) "other/other";
        name.len = key ? key->len : 11;
        slash = ngx_strlchr(name.data, name.data + name.len, '/');

        if (slash == NULL) {
            continue;
        }

        p = ngx_sprintf(p, "%s{\"provider\":\"%*s\",\"model\":\"%*s\",",
                        first ? "" : ",", slash - name.data, name.data,
                        name.data + name.len - slash - 1, slash + 1);
        p = ngx_http_llmroute_status_row(p, row);
        *p++ = '}';
        first = 0;
    }

    /* providers: the hour summed from their models, health from the zone */

    p = ngx_cpymem(p, "],\"providers\":[", 15);
    now_ms = (uint64_t) ngx_time() * 1000;

    for (i = 0; i < lmcf->cat.nproviders; i++) {
        name = lmcf->cat.providers[i].name;
        ngx_memzero(&prov, sizeof(ngx_http_llmroute_minute_row_t));

        ngx_memzero(cost, sizeof(cost));

        for (k = 0; v->minutes && k < NGX_HTTP_LLMROUTE_KEYS; k++) {
            key = &v->minutes->keys[k];

            if (key->kind == NGX_HTTP_LLMROUTE_KEY_MODEL
                && key->len > name.len && key->name[name.len] == '/'
                && ngx_memcmp(key->name, name.data, name.len) == 0)
            {
                prov.requests += v->rows[k].requests;
                prov.prompt += v->rows[k].prompt;
                prov.completion += v->rows[k].completion;
                prov.cost += v->rows[k].cost;

                for (m = 0; m < NGX_HTTP_LLMROUTE_MINUTES; m++) {
                    cost[m] += v->cost[k][m];
                }
            }
        }

        ps = ngx_http_llmroute_provider_stats(lmcf, i);

        until = 0;

        if (ps) {
            ngx_shmtx_lock(&lmcf->shpool->mutex);   /* health: one rule */
            until = ps->cooldown_until;
            ngx_shmtx_unlock(&lmcf->shpool->mutex);
        }

        left = until > now_ms ? (until - now_ms + 999) / 1000 : 0;

        p = ngx_sprintf(p, "%s{\"provider\":\"%V\",\"requests\":%uA,"
                           "\"tokens\":%uA,\"cost_usd\":\"",
                        i ? "," : "", &name, prov.requests,
                        prov.prompt + prov.completion);
        p = ngx_http_llmroute_usd(p, prov.cost);
        p = ngx_sprintf(p, "\",\"cooldown_seconds\":%uL,\"circuit\":\"%s\","
                           "\"disabled\":%s,\"inflight\":%ui,"
                           "\"failures\":{",
                        left,
                        ps == NULL
                        || ps->fails < NGX_HTTP_LLMROUTE_CIRCUIT_FAILS
                        ? "closed"
                        : ps->probing ? "half-open" : "open",
                        ps && ps->disabled ? "true" : "false",
                        ps ? ps->inflight : 0);

        for (k = 0; k < NGX_HTTP_LLMROUTE_NFAILS; k++) {
            p = ngx_sprintf(p, "%s\"%s\":%uL", k ? "," : "",
                            ngx_http_llmroute_status_fails[k],
                            ps ? ps->failures[k] : 0);
        }

        /* spend per minute, oldest first, as in "minutes" */

        p = ngx_cpymem(p, "},\"cost_per_minute_usd\":[", 25);

        for (m = 0; m < NGX_HTTP_LLMROUTE_MINUTES; m++) {
            p = ngx_sprintf(p, "%s\"", m ? "," : "");
            p = ngx_http_llmroute_usd(p, cost[m]);
            *p++ = '"';
        }

        p = ngx_cpymem(p, "]}", 2);
    }

    p = ngx_cpymem(p, "],\"clients\":[", 13);
    first = 1;

    for (k = 0; v->minutes && k < NGX_HTTP_LLMROUTE_KEYS + 2; k++) {
        key = k < NGX_HTTP_LLMROUTE_KEYS ? &v->minutes->keys[k] : NULL;
        row = &v->rows[k];

        if (key ? key->kind != NGX_HTTP_LLMROUTE_KEY_CLIENT
                : (k != NGX_HTTP_LLMROUTE_OTHER_CLIENT || row->requests == 0))
        {
            continue;
        }

        p = ngx_sprintf(p, "%s{\"client\":\"", first ? "" : ",");
        p = key ? ngx_cpymem(p, key->name, key->len)
                : ngx_cpymem(p, "(other)", 7);
        p = ngx_cpymem(p, "\",", 2);
        p = ngx_http_llmroute_status_row(p, row);

        if (key && key->budget) {
            /* spend of an older period is spent no more */
            used = key->period == ngx_http_llmroute_period(key->period_kind,
                                                           ngx_time())
                   ? key->used : 0;

            p = ngx_cpymem(p, ",\"budget_usd\":\"", 15);
            p = ngx_http_llmroute_usd(p, key->budget);
            p = ngx_cpymem(p, "\",\"budget_used_usd\":\"", 21);
            p = ngx_http_llmroute_usd(p, used);
            p = ngx_sprintf(p, "\",\"budget_period\":\"%s\"}",
                         ngx_http_llmroute_status_periods[key->period_kind]);

        } else {
            p = ngx_cpymem(p, ",\"budget_usd\":null}", 19);
        }

        first = 0;
    }

    p = ngx_cpymem(p, "],\"minutes\":[", 13);

    for (k = 0; k < NGX_HTTP_LLMROUTE_MINUTES; k++) {
        p = ngx_sprintf(p, "%s{\"minute\":%uL,", k ? "," : "",
                        (uint64_t) (v->now - NGX_HTTP_LLMROUTE_MINUTES + 1
                                    + k) * 60);
        p = ngx_http_llmroute_status_row(p, &v->minute[k]);
        *p++ = '}';
    }

    p = ngx_cpymem(p, "],\"baseline_model\":", 19);

    if (lmcf->baseline_model >= 0) {
        p = ngx_sprintf(p, "\"%V\"",
                        &lmcf->cat.models[lmcf->baseline_model].full);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"savings_usd_total\":\"", 22);
    p = ngx_http_llmroute_usd(p, lmcf->sh->savings);
    p = ngx_sprintf(p, "\",\"redis\":{\"configured\":%s,\"up\":%s},"
                       "\"rejected\":{",
                    lmcf->redis ? "true" : "false",
                    lmcf->redis && lmcf->sh->redis_up ? "true" : "false");

    for (k = 0; k < NGX_HTTP_LLMROUTE_NREJECTS; k++) {
        p = ngx_sprintf(p, "%s\"%s\":%uL", k ? "," : "",
                        ngx_http_llmroute_reject_codes[k],
                        lmcf->sh->rejected[k]);
    }

    return ngx_cpymem(p, "}}\n", 3);
}


static u_char *
ngx_http_llmroute_status_row(u_char *p, ngx_http_llmroute_minute_row_t *row)
{
    p = ngx_sprintf(p, "\"requests\":%uA,\"prompt_tokens\":%uA,"
                       "\"completion_tokens\":%uA,\"cached_tokens\":%uA,"
                       "\"tokens\":%uA,\"cost_usd\":\"",
                    row->requests, row->prompt, row->completion, row->cached,
                    row->prompt + row->completion);
    p = ngx_http_llmroute_usd(p, row->cost);
    *p++ = '"';

    return p;
}

