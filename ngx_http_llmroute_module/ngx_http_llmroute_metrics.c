
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * llmroute_metrics: the zone's counters in Prometheus text format
 * (version 0.0.4), or JSON with ?format=json.  Counters are read with
 * plain loads of atomics; the series list is walked under the mutex only
 * to take a snapshot of its pointers.
 */


#include <ngx_http_llmroute_module.h>


/*
 * Upper bound of the text of one series, all lines included: at most
 * tiers x codes request lines plus 20 others (tokens, cost; a provider's
 * 30 histogram and failure lines carry no model id), each under 160
 * bytes of its own besides the provider name and model id.
 */
#define NGX_HTTP_LLMROUTE_SERIES_TEXT                                         \
    ((NGX_HTTP_LLMROUTE_NTIERS * NGX_HTTP_LLMROUTE_NCODES + 32)               \
     * (160 + NGX_HTTP_LLMROUTE_NAME_MAX + NGX_HTTP_LLMROUTE_MODEL_ID_MAX))


static ngx_int_t ngx_http_llmroute_metrics_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_llmroute_series_configured(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_series_t *s);
static u_char *ngx_http_llmroute_metrics_prometheus(u_char *p,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_series_t **all,
    ngx_uint_t n);
static u_char *ngx_http_llmroute_metrics_json(u_char *p,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_series_t **all,
    ngx_uint_t n);


static const char  *ngx_http_llmroute_fail_names[] = {
    "connect", "timeout", "429", "5xx", "reset"
};



char *
ngx_http_llmroute_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_llmroute_metrics_handler;

    /* not a chat endpoint, even under "llmroute on" at server level */
    lcf->enable = 0;

    return NGX_CONF_OK;
}


/*
 * The start of every read-only endpoint (metrics, models, status): GET or
 * HEAD only, the body discarded, and whether ?format=json asked for JSON.
 * NGX_OK, or what the handler returns at once.
 */

ngx_int_t
ngx_http_llmroute_read_only(ngx_http_request_t *r, ngx_uint_t *json)
{
    ngx_int_t   rc;
    ngx_str_t   format;

    *json = 0;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
        && format.len == 4 && ngx_strncmp(format.data, "json", 4) == 0)
    {
        *json = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_metrics_handler(ngx_http_request_t *r)
{
    u_char                          *p;
    size_t                           size;
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_uint_t                       n, json;
    ngx_queue_t                     *q;
    ngx_http_llmroute_series_t     **all;
    ngx_http_llmroute_main_conf_t   *lmcf;

    rc = ngx_http_llmroute_read_only(r, &json);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    if (lmcf->sh == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* snapshot the series list: it only ever grows */

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    n = 0;

    for (q = ngx_queue_head(&lmcf->sh->series);
         q != ngx_queue_sentinel(&lmcf->sh->series);
         q = ngx_queue_next(q))
    {
        n++;
    }

    all = ngx_palloc(r->pool, (n + 1) * sizeof(ngx_http_llmroute_series_t *));

    if (all != NULL) {
        n = 0;

        for (q = ngx_queue_head(&lmcf->sh->series);
             q != ngx_queue_sentinel(&lmcf->sh->series);
             q = ngx_queue_next(q))
        {
            all[n] = ngx_queue_data(q, ngx_http_llmroute_series_t, queue);

            /* a model or provider a reload removed is not shown */

            if (ngx_http_llmroute_series_configured(lmcf, all[n])) {
                n++;
            }
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    if (all == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = 8192 + n * NGX_HTTP_LLMROUTE_SERIES_TEXT;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json) {
        p = ngx_http_llmroute_metrics_json(b->pos, lmcf, all, n);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        p = ngx_http_llmroute_metrics_prometheus(b->pos, lmcf, all, n);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");
    }

    b->last = p;

    return ngx_http_llmroute_send_buf(r, b);
}


/* a 200 with one buffer as the body (content type set by the caller) */

ngx_int_t
ngx_http_llmroute_send_buf(ngx_http_request_t *r, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * Series stay in the zone when a reload removes their model (a model that
 * comes back resumes its counters); the metrics show the catalog's only.
 */

static ngx_uint_t
ngx_http_llmroute_series_configured(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_series_t *s)
{
    ngx_uint_t                     i;
    ngx_http_llmroute_model_t     *m;
    ngx_http_llmroute_provider_t  *p;

    if (s->provider.len == 0) {
        return 1;               /* requests no model was chosen for */
    }

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        m = &lmcf->cat.models[i];
        p = &lmcf->cat.providers[m->provider];

        if (p->name.len == s->provider.len
            && ngx_strncmp(p->name.data, s->provider.data, p->name.len) == 0
            && (s->model.len == 0
                || (m->id.len == s->model.len
                    && ngx_strncmp(m->id.data, s->model.data, m->id.len)
                       == 0)))
        {
            return 1;
        }
    }

    return 0;
}


#define ngx_http_llmroute_metric_header(p, name, type, help)                  \
    ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " type "\n")


static u_char *
ngx_http_llmroute_metrics_prometheus(u_char *p,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_series_t **all,
    ngx_uint_t n)
{
    uint64_t                             v, cum, until;
    ngx_time_t                          *tp;
    ngx_uint_t                           i, t, c, k;
    ngx_http_llmroute_counter_t         *hist;
    ngx_http_llmroute_series_t          *s;
    ngx_http_llmroute_model_stats_t     *ms;
    ngx_http_llmroute_provider_stats_t  *ps;

    /* provider/model names are checked at configuration time: they hold
     * no quote, backslash or control character, so labels need no escape */

    p = ngx_http_llmroute_metric_header(p, "llmroute_requests_total",
            "counter", "Requests by provider, model, tier and status code.");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len == 0 && s->provider.len) {
            continue;
        }

        ms = &s->s.model;

        for (t = 0; t < NGX_HTTP_LLMROUTE_NTIERS; t++) {
            for (c = 0; c < NGX_HTTP_LLMROUTE_NCODES; c++) {
                v = ms->requests[t][c];

                if (v == 0) {
                    continue;
                }

                p = ngx_sprintf(p, "llmroute_requests_total{provider=\"%V\","
                                   "model=\"%V\",tier=\"%V\",code=\"",
                                &s->provider, &s->model,
                                &ngx_http_llmroute_tier_names[t]);

                if (ngx_http_llmroute_codes[c]) {
                    p = ngx_sprintf(p, "%ui", ngx_http_llmroute_codes[c]);

                } else {
                    p = ngx_cpymem(p, "other", 5);
                }

                p = ngx_sprintf(p, "\"} %uL\n", v);
            }
        }
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_tokens_total", "counter",
            "Tokens billed by providers (prompt includes cached and "
            "cache_write).");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len == 0) {
            continue;
        }

        ms = &s->s.model;

        p = ngx_sprintf(p, "llmroute_tokens_total{provider=\"%V\",model=\"%V\","
                           "kind=\"prompt\"} %uL\n"
                           "llmroute_tokens_total{provider=\"%V\",model=\"%V\","
                           "kind=\"completion\"} %uL\n"
                           "llmroute_tokens_total{provider=\"%V\",model=\"%V\","
                           "kind=\"cached\"} %uL\n"
                           "llmroute_tokens_total{provider=\"%V\",model=\"%V\","
                           "kind=\"cache_write\"} %uL\n",
                        &s->provider, &s->model, ms->prompt_tokens,
                        &s->provider, &s->model, ms->completion_tokens,
                        &s->provider, &s->model, ms->cached_tokens,
                        &s->provider, &s->model, ms->cache_write_tokens);
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_cache_read_ratio",
            "gauge", "Share of prompt tokens the provider billed as cached "
            "reads.");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len == 0) {
            continue;
        }

        ms = &s->s.model;
        v = ms->prompt_tokens
            ? ngx_min(ms->cached_tokens, ms->prompt_tokens) * 1000000
              / ms->prompt_tokens
            : 0;

        p = ngx_sprintf(p, "llmroute_cache_read_ratio{provider=\"%V\","
                           "model=\"%V\"} %uL.%06uL\n",
                        &s->provider, &s->model, v / 1000000, v % 1000000);
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_session_moves_total",
            "counter", "Sessions that left the provider and model holding "
            "their prompt cache, by reason.");

    for (k = 0; k < NGX_HTTP_LLMROUTE_NMOVES; k++) {
        p = ngx_sprintf(p, "llmroute_session_moves_total{reason=\"%s\"} "
                           "%uA\n",
                        ngx_http_llmroute_move_names[k], lmcf->sh->moves[k]);
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_cost_usd_total",
            "counter", "Cost in USD from the providers' usage and catalog "
            "prices.");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len == 0) {
            continue;
        }

        p = ngx_sprintf(p, "llmroute_cost_usd_total{provider=\"%V\","
                           "model=\"%V\"} ", &s->provider, &s->model);
        p = ngx_http_llmroute_usd(p, s->s.model.cost);
        *p++ = '\n';
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_savings_usd_total",
            "counter", "USD saved against llmroute_baseline_model.");
    p = ngx_cpymem(p, "llmroute_savings_usd_total ",
                   sizeof("llmroute_savings_usd_total ") - 1);
    p = ngx_http_llmroute_usd(p, lmcf->sh->savings);
    *p++ = '\n';

    p = ngx_http_llmroute_metric_header(p,
            "llmroute_upstream_failures_total", "counter",
            "Failed provider attempts by reason.");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len || s->provider.len == 0) {
            continue;
        }

        for (k = 0; k < NGX_HTTP_LLMROUTE_NFAILS; k++) {
            p = ngx_sprintf(p, "llmroute_upstream_failures_total{provider="
                               "\"%V\",reason=\"%s\"} %uL\n",
                            &s->provider, ngx_http_llmroute_fail_names[k],
                            s->s.provider.failures[k]);
        }
    }

    p = ngx_http_llmroute_metric_header(p,
            "llmroute_provider_cooldown_seconds", "gauge",
            "Seconds until a cooling provider is used again, 0 when "
            "available.");

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len || s->provider.len == 0) {
            continue;
        }

        ngx_shmtx_lock(&lmcf->shpool->mutex);
        until = s->s.provider.cooldown_until;
        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        tp = ngx_timeofday();
        v = (uint64_t) tp->sec * 1000 + tp->msec;
        v = until > v ? (until - v + 999) / 1000 : 0;

        p = ngx_sprintf(p, "llmroute_provider_cooldown_seconds{provider="
                           "\"%V\"} %uL\n", &s->provider, v);
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_rejected_total",
            "counter", "Requests the gateway refused itself, by reason.");

    for (k = 0; k < NGX_HTTP_LLMROUTE_NREJECTS; k++) {
        p = ngx_sprintf(p, "llmroute_rejected_total{reason=\"%s\"} %uL\n",
                        ngx_http_llmroute_reject_codes[k],
                        lmcf->sh->rejected[k]);
    }

    p = ngx_http_llmroute_metric_header(p, "llmroute_redis_up", "gauge",
            "1 when this node's Redis sync connection is up (0 without "
            "llmroute_redis).");
    p = ngx_sprintf(p, "llmroute_redis_up %uA\n", lmcf->sh->redis_up);

    for (k = 0; k < 2; k++) {

        if (k == 0) {
            p = ngx_http_llmroute_metric_header(p,
                    "llmroute_upstream_ttfb_seconds", "histogram",
                    "Time to the provider's response header.");

        } else {
            p = ngx_http_llmroute_metric_header(p,
                    "llmroute_upstream_duration_seconds", "histogram",
                    "Time to the provider's last response byte.");
        }

        for (i = 0; i < n; i++) {
            s = all[i];

            if (s->model.len || s->provider.len == 0) {
                continue;
            }

            ps = &s->s.provider;
            hist = k == 0 ? ps->ttfb : ps->total;
            cum = 0;

            for (c = 0; c < NGX_HTTP_LLMROUTE_NBUCKETS; c++) {
                cum += hist[c];

                p = ngx_sprintf(p, "%s_bucket{provider=\"%V\",le=\"",
                                k == 0 ? "llmroute_upstream_ttfb_seconds"
                                       : "llmroute_upstream_duration_seconds",
                                &s->provider);

                if (c == NGX_HTTP_LLMROUTE_NBUCKETS - 1) {
                    p = ngx_cpymem(p, "+Inf", 4);

                } else {
                    p = ngx_sprintf(p, "%M.%03M",
                                    ngx_http_llmroute_buckets[c] / 1000,
                                    ngx_http_llmroute_buckets[c] % 1000);
                }

                p = ngx_sprintf(p, "\"} %uL\n", cum);
            }

            v = k == 0 ? ps->ttfb_ms : ps->total_ms;

            p = ngx_sprintf(p, "%s_sum{provider=\"%V\"} %uL.%03uL\n"
                               "%s_count{provider=\"%V\"} %uL\n",
                            k == 0 ? "llmroute_upstream_ttfb_seconds"
                                   : "llmroute_upstream_duration_seconds",
                            &s->provider, v / 1000, v % 1000,
                            k == 0 ? "llmroute_upstream_ttfb_seconds"
                                   : "llmroute_upstream_duration_seconds",
                            &s->provider, cum);
        }
    }

    return p;
}


static u_char *
ngx_http_llmroute_metrics_json(u_char *p, ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_series_t **all, ngx_uint_t n)
{
    uint64_t                          req;
    ngx_uint_t                        i, t, c, k, first;
    ngx_http_llmroute_series_t       *s;
    ngx_http_llmroute_model_stats_t  *ms;

    p = ngx_cpymem(p, "{\"models\":[", sizeof("{\"models\":[") - 1);
    first = 1;

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len == 0) {
            continue;
        }

        ms = &s->s.model;
        req = 0;

        for (t = 0; t < NGX_HTTP_LLMROUTE_NTIERS; t++) {
            for (c = 0; c < NGX_HTTP_LLMROUTE_NCODES; c++) {
                req += ms->requests[t][c];
            }
        }

        p = ngx_sprintf(p, "%s{\"provider\":\"%V\",\"model\":\"%V\","
                           "\"requests\":%uL,\"prompt_tokens\":%uL,"
                           "\"completion_tokens\":%uL,\"cached_tokens\":%uL,"
                           "\"cache_write_tokens\":%uL,\"cost_usd\":",
                        first ? "" : ",", &s->provider, &s->model, req,
                        ms->prompt_tokens, ms->completion_tokens,
                        ms->cached_tokens, ms->cache_write_tokens);
        p = ngx_http_llmroute_usd(p, ms->cost);
        *p++ = '}';
        first = 0;
    }

    p = ngx_cpymem(p, "],\"providers\":[", sizeof("],\"providers\":[") - 1);
    first = 1;

    for (i = 0; i < n; i++) {
        s = all[i];

        if (s->model.len || s->provider.len == 0) {
            continue;
        }

        p = ngx_sprintf(p, "%s{\"provider\":\"%V\",\"requests\":%uL,"
                           "\"failures\":{",
                        first ? "" : ",", &s->provider, s->s.provider.count);

        for (k = 0; k < NGX_HTTP_LLMROUTE_NFAILS; k++) {
            p = ngx_sprintf(p, "%s\"%s\":%uL", k ? "," : "",
                            ngx_http_llmroute_fail_names[k],
                            s->s.provider.failures[k]);
        }

        p = ngx_cpymem(p, "}}", 2);
        first = 0;
    }

    p = ngx_cpymem(p, "],\"rejected\":{", sizeof("],\"rejected\":{") - 1);

    for (k = 0; k < NGX_HTTP_LLMROUTE_NREJECTS; k++) {
        p = ngx_sprintf(p, "%s\"%s\":%uL", k ? "," : "",
                        ngx_http_llmroute_reject_codes[k],
                        lmcf->sh->rejected[k]);
    }

    p = ngx_cpymem(p, "},\"session_moves\":{",
                   sizeof("},\"session_moves\":{") - 1);

    for (k = 0; k < NGX_HTTP_LLMROUTE_NMOVES; k++) {
        p = ngx_sprintf(p, "%s\"%s\":%uA", k ? "," : "",
                        ngx_http_llmroute_move_names[k], lmcf->sh->moves[k]);
    }

    p = ngx_cpymem(p, "},\"savings_usd\":", sizeof("},\"savings_usd\":") - 1);
    p = ngx_http_llmroute_usd(p, lmcf->sh->savings);
    p = ngx_cpymem(p, "}\n", 2);

    return p;
}


/* nano-USD as USD with 9 decimals (the status page prints them too) */

u_char *
ngx_http_llmroute_usd(u_char *p, uint64_t nano)
{
    return ngx_sprintf(p, "%uL.%09uL", nano / 1000000000, nano % 1000000000);
}
