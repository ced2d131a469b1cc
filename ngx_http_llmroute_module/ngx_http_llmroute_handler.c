
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The precontent phase handler: read the body without blocking, decide
 * where the request goes, splice the new "model" into the body.  proxy_pass
 * then carries it with $llmroute_url.
 */


#include <ngx_http_llmroute_module.h>


/* how often a request waiting for a client's first sync looks again (ms) */
#define NGX_HTTP_LLMROUTE_SYNC_POLL  10


/*
 * nginx's lower-case copy of the name where it made one (HTTP/1, 2 and 3
 * always do: its letters folded as equal_lc() folds them), compared at a
 * constant length
 */

#define ngx_http_llmroute_header_is(h, lc)                                   \
    ((h)->lowcase_key                                                         \
     ? ngx_memcmp((h)->lowcase_key, lc, sizeof(lc) - 1) == 0                  \
     : ngx_http_llmroute_equal_lc((h)->key.data, lc, sizeof(lc) - 1))


static void ngx_http_llmroute_ctx_cleanup(void *data);
static void ngx_http_llmroute_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llmroute_decide(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_commit(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static void ngx_http_llmroute_sync_wake(ngx_http_request_t *r);
static ngx_int_t ngx_http_llmroute_read_body(ngx_http_request_t *r,
    u_char **body, size_t *len);
static ngx_int_t ngx_http_llmroute_body_in_place(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static void ngx_http_llmroute_header_in_restore(ngx_http_llmroute_ctx_t *ctx);
static void ngx_http_llmroute_read_headers(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_tier_header(ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t *tier);
static ngx_int_t ngx_http_llmroute_region(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_loc_conf_t *lcf,
    ngx_int_t *region);
static ngx_int_t ngx_http_llmroute_set_body(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_set_credentials(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_uint_t ngx_http_llmroute_hidden_header(ngx_table_elt_t *h);
static ngx_int_t ngx_http_llmroute_retry(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_refuse(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_http_llmroute_escalate(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_use_choice(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static void ngx_http_llmroute_reason_tier(ngx_http_llmroute_ctx_t *ctx,
    const char *why, ngx_uint_t tier);
static size_t ngx_http_llmroute_utf8_prefix(ngx_str_t *s, size_t max);
static ngx_int_t ngx_http_llmroute_count_tokens(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static void *ngx_http_llmroute_palloc(void *data, size_t size);


/*
 * The ctx lives in a pool cleanup so that it survives internal redirects
 * (error_page to a named location zeroes r->ctx), as the realip module does.
 */

ngx_http_llmroute_ctx_t *
ngx_http_llmroute_find_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_llmroute_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llmroute_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_llmroute_ctx_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_llmroute_module);
                break;
            }
        }
    }

    if (ctx != NULL || !create) {
        return ctx;
    }

    /* zeroed by nginx's memset: gcc's inline one costs ~4x at this size */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_llmroute_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->data = ctx;
    cln->handler = ngx_http_llmroute_ctx_cleanup;
    ctx->admitted = -1;
    ctx->lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    ngx_http_set_ctx(r, ctx, ngx_http_llmroute_module);

    return ctx;
}


/*
 * The request pool goes: the session entry unpinned, the header buffer's
 * memory back, what admission holds given back (one cleanup for the three,
 * in the order of the three cleanups they once were)
 */

static void
ngx_http_llmroute_ctx_cleanup(void *data)
{
    ngx_http_llmroute_ctx_t  *ctx = data;

    ngx_http_llmroute_session_unpin(ctx);

    if (ctx->lent) {
        ngx_http_llmroute_header_in_restore(ctx);
    }

    ngx_http_llmroute_request_done(ctx);
}


ngx_int_t
ngx_http_llmroute_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_llmroute_ctx_t       *ctx;
    ngx_http_llmroute_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    if (!lcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx == NULL) {

        if (!(r->method & NGX_HTTP_POST)) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_llmroute_send_error(r, NGX_HTTP_NOT_ALLOWED,
                       "method_not_allowed",
                       "only POST is allowed on this endpoint", NULL);
        }

        ctx = ngx_http_llmroute_get_ctx(r, 1);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->uri_changes = r->uri_changes;
        ctx->http_version = r->http_version;

        /* one buffer when it fits client_body_buffer_size: no gathering */
        r->request_body_in_single_buf = 1;

        if (ngx_http_llmroute_body_in_place(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_read_client_request_body(r,
                                               ngx_http_llmroute_body_handler);

        if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        /*
         * drop the reference the read took now, as the mirror module does:
         * if reading fails later, nginx finalizes the request itself
         */

        ngx_http_finalize_request(r, NGX_DONE);

        if (!ctx->body_done) {
            ctx->waiting_body = 1;
            return NGX_DONE;
        }
    }

    if (!ctx->body_done) {
        return NGX_DONE;
    }

    if (ctx->uri_changes == r->uri_changes) {
        return ctx->decided ? NGX_DECLINED
               : ctx->sync_wait ? ngx_http_llmroute_commit(r, ctx)
               : ngx_http_llmroute_decide(r, ctx);
    }

    /* back through error_page: the attempt failed before any byte left */

    ngx_http_llmroute_client_headers(r, ctx);

    if (!ctx->decided) {
        return ngx_http_llmroute_send_error(r,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR,
                                            "internal_error",
                                            "the gateway failed to route "
                                            "the request", NULL);
    }

    if (ctx->escalating) {
        return ngx_http_llmroute_escalate(r, ctx);
    }

    return ngx_http_llmroute_retry(r, ctx);
}


/*
 * The answer failed the quality checks (finish_reason "length", empty,
 * not JSON in JSON mode): it was withheld, billed, and the same request
 * goes once to the next tier up.
 */

static ngx_int_t
ngx_http_llmroute_escalate(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->escalating = 0;
    ctx->escalated = 1;
    ctx->uri_changes = r->uri_changes;

    /* the withheld answer's headers go with it */
    ngx_http_clean_header(r);

    ctx->want.pin = NGX_HTTP_LLMROUTE_PIN_NONE;
    ctx->want.tier = ctx->model->tier + 1;
    ctx->want.exclude = 0;
    ctx->tier = ctx->want.tier;

    rc = ngx_http_llmroute_admit(r, ctx);

    if (rc != NGX_OK) {
        /* the previous upstream's 200 is not an answer of this attempt */
        ctx->no_answer = 1;
        return ngx_http_llmroute_refuse(r, ctx, rc);
    }

    if (ngx_http_llmroute_use_choice(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llmroute: escalated to %V/%V",
                  &ctx->provider->name, &ctx->model->id);

    return NGX_DECLINED;
}


/*
 * The previous attempt failed (429, 5xx, connect error, timeout, reset):
 * count it, honour Retry-After, and send the same body to the next
 * cheapest eligible provider, or answer 502 when none is left.
 */

static ngx_int_t
ngx_http_llmroute_retry(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    u_char                        *p;
    ngx_str_t                      msg;
    ngx_http_llmroute_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    ngx_http_llmroute_note_failure(r, ctx);

    ngx_http_llmroute_release(r, ctx, 0);

    ctx->uri_changes = r->uri_changes;
    ctx->want.exclude = ctx->tried;
    ctx->choice.model = -1;

    if (ctx->attempts <= lcf->retries
        && ngx_http_llmroute_admit(r, ctx) != NGX_OK)
    {
        ctx->choice.model = -1;
    }

    if (ctx->choice.model < 0) {
        p = ngx_pnalloc(r->pool, 64 + ctx->failures.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        msg.data = p;
        msg.len = ngx_sprintf(p, "all providers failed after %ui attempts: "
                                 "%V", ctx->attempts, &ctx->failures)
                  - p;

        if (ngx_http_llmroute_error_json(r, NGX_HTTP_BAD_GATEWAY,
                                         "all_providers_failed", &msg, NULL,
                                         &ctx->error)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llmroute: %V", &msg);

        return ngx_http_llmroute_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                            "all_providers_failed", NULL,
                                            NULL);
    }

    if (ngx_http_llmroute_use_choice(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llmroute: attempt %ui goes to %V/%V",
                  ctx->attempts, &ctx->provider->name, &ctx->model->id);

    return NGX_DECLINED;
}


/* records why the current attempt failed, once per attempt */

void
ngx_http_llmroute_note_failure(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    u_char                              *p;
    time_t                               delay;
    ngx_uint_t                           reason, status;
    ngx_table_elt_t                     *h;
    ngx_http_upstream_t                 *u;
    ngx_http_upstream_state_t           *state;
    ngx_http_llmroute_main_conf_t       *lmcf;
    ngx_http_llmroute_provider_stats_t  *ps;

    static const char  *names[] = {
        "connect error", "timeout", "429", "5xx", "reset"
    };

    if (ctx->failure_noted == ctx->attempts || ctx->provider == NULL) {
        return;
    }

    ctx->failure_noted = ctx->attempts;
    ctx->tried |= (uint64_t) 1 << ctx->provider->index;

    u = r->upstream;
    status = u ? u->headers_in.status_n : 0;
    state = NULL;

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state = &state[r->upstream_states->nelts - 1];
    }

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        reason = NGX_HTTP_LLMROUTE_FAIL_429;

    } else if (status >= 500) {
        reason = NGX_HTTP_LLMROUTE_FAIL_5XX;

    } else if (state && state->status == NGX_HTTP_GATEWAY_TIME_OUT) {
        reason = NGX_HTTP_LLMROUTE_FAIL_TIMEOUT;

    } else if (state == NULL || state->connect_time == (ngx_msec_t) -1) {
        reason = NGX_HTTP_LLMROUTE_FAIL_CONNECT;

    } else {
        reason = NGX_HTTP_LLMROUTE_FAIL_RESET;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    ps = ngx_http_llmroute_provider_stats(lmcf, ctx->provider->index);

    ngx_http_llmroute_provider_result(lmcf, ctx->provider->index, 0);

    if (ps) {
        ngx_http_llmroute_count(&ps->failures[reason], 1);

        /*
         * Retry-After on 429/503 (and Anthropic's 529 overloaded) cools
         * the provider down for every worker
         */

        h = (u && (status == 429 || status == 503 || status == 529))
            ? ngx_http_llmroute_find_header(&u->headers_in.headers,
                                            "Retry-After")
            : NULL;

        if (h) {
            delay = ngx_atotm(h->value.data, h->value.len);

            if (delay == NGX_ERROR) {
                delay = ngx_parse_http_time(h->value.data, h->value.len);
                delay = delay == NGX_ERROR ? 1 : delay - ngx_time();
            }

            delay = ngx_max(1, ngx_min(delay, 3600));

            ngx_http_llmroute_cool_down(lmcf, ctx->provider->index,
                                        (uint64_t) (ngx_time() + delay)
                                        * 1000);
        }
    }

    /* "cheap: 429; premium: timeout" for the final error message */

    p = ngx_pnalloc(r->pool, ctx->failures.len + ctx->provider->name.len + 32);
    if (p == NULL) {
        return;
    }

    ctx->failures.len = ngx_sprintf(p, "%V%s%V: %s", &ctx->failures,
                                    ctx->failures.len ? "; " : "",
                                    &ctx->provider->name, names[reason])
                        - p;
    ctx->failures.data = p;
}


ngx_table_elt_t *
ngx_http_llmroute_find_header(ngx_list_t *headers, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &headers->part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


static void
ngx_http_llmroute_body_handler(ngx_http_request_t *r)
{
    ngx_http_llmroute_ctx_t  *ctx;

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    ctx->body_done = 1;

    if (ctx->waiting_body) {
        ctx->waiting_body = 0;
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
    }
}


static ngx_int_t
ngx_http_llmroute_decide(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    u_char                         *body;
    size_t                          len;
    ngx_int_t                       rc;
    ngx_msec_t                      wait;
    ngx_str_t                      *model;
    ngx_uint_t                      tier, classified, use_header, format;
    ngx_http_llmroute_req_t        *req;
    ngx_http_llmroute_want_t       *want;
    ngx_http_llmroute_loc_conf_t   *lcf;
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    req = &ctx->req;
    want = &ctx->want;

    if (ngx_http_llmroute_read_body(r, &body, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    format = ngx_http_llmroute_request_format(r);

    ngx_http_llmroute_read_headers(r, ctx);

    rc = ngx_http_llmroute_formats[format].parse(req, body, len,
                                                 ngx_http_llmroute_palloc,
                                                 r->pool);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (req->error) {

    case NGX_HTTP_LLMROUTE_OK:
        break;

    case NGX_HTTP_LLMROUTE_INVALID_JSON:
        return ngx_http_llmroute_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_json", req->error_msg,
                                            req->error_param);

    case NGX_HTTP_LLMROUTE_TOO_COMPLEX:
        return ngx_http_llmroute_send_error(r,
                                            NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                            "request_too_large",
                                            req->error_msg, NULL);

    default:
        return ngx_http_llmroute_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request", req->error_msg,
                                            req->error_param);
    }

    want->tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
    want->format = format;

    /* a model name the client insists on may be mapped (llmroute_alias) */

    model = NULL;

    if (req->has_model) {
        model = ngx_http_llmroute_find_alias(lmcf, &req->model);

        if (model == NULL) {
            model = &req->model;
        }
    }

    if (model && ngx_http_llmroute_resolve_model(&lmcf->cat, model, want)
                 != NGX_OK)
    {
        ngx_str_t  msg;
        u_char     buf[256];

        msg.data = buf;
        msg.len = ngx_snprintf(buf, sizeof(buf),
                               "The model `%*s` does not exist or is not "
                               "served by this gateway",
                               ngx_http_llmroute_utf8_prefix(&req->model,
                                                             128),
                               req->model.data)
                  - buf;

        rc = ngx_http_llmroute_error_json(r, NGX_HTTP_NOT_FOUND,
                                          "model_not_found", &msg, "model",
                                          &ctx->error);
        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_llmroute_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "model_not_found", NULL, NULL);
    }

    /* llmroute_client tiers=, models=, choose=off */

    use_header = 1;
    rc = ngx_http_llmroute_client_policy(r, ctx, &use_header);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_llmroute_send_error(r, NGX_HTTP_FORBIDDEN,
                   "model_not_allowed",
                   "this API key may not use the model it asked for",
                   "model");
    }

    /* count_tokens: answered here unless the provider has the endpoint */

    if (ngx_http_llmroute_is_count_tokens(r, format)) {
        ctx->count_tokens = 1;

        ngx_http_llmroute_select(&lmcf->cat, req, want, &ctx->choice);

        if (ctx->choice.model < 0
            || !lmcf->cat.providers[lmcf->cat.models[ctx->choice.model]
                                    .provider].count_tokens)
        {
            return ngx_http_llmroute_count_tokens(r, ctx);
        }
    }

    /* the tier: header override, else the classifier; auto:T is a floor */

    rc = use_header ? ngx_http_llmroute_tier_header(ctx, &tier)
                    : NGX_DECLINED;

    if (rc == NGX_ERROR) {
        return ngx_http_llmroute_send_error(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_request",
                   "X-LLMRoute-Tier must be simple, moderate or complex",
                   NULL);
    }

    ctx->reason_pending = 1;
    ctx->reason_suffixes = 0;

    if (rc == NGX_OK) {
        ctx->reason_explain = 0;
        ctx->reason_len = ngx_snprintf(ctx->reason, sizeof(ctx->reason),
                                       "header X-LLMRoute-Tier=%V",
                                       &ngx_http_llmroute_tier_names[tier])
                          - ctx->reason;

    } else {
        ctx->reason_explain = 1;
        classified = ngx_http_llmroute_classify_explained(
                         &lmcf->cat.classifier, req, &ctx->explain);
        tier = classified;
    }

    if (want->tier > tier) {
        tier = want->tier;

        ngx_http_llmroute_reason_tier(ctx, "floor", tier);
    }

    /* the session: a tool-loop turn keeps the tier of the session's ask */

    if (ngx_http_llmroute_session_begin(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK            /* no header override */
        && ctx->session_seen && tier < ctx->session_tier
        && req->nmsgs
        && req->msgs[req->nmsgs - 1].role != NGX_HTTP_LLMROUTE_ROLE_USER)
    {
        tier = ctx->session_tier;

        ngx_http_llmroute_reason_tier(ctx, "session", tier);
    }

    tier = ngx_http_llmroute_client_tier(want, tier);
    want->tier = tier;
    ctx->tier = tier;

    if (ngx_http_llmroute_region(r, lmcf, lcf, &want->region) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* live prices published in Redis reach this worker's catalog */

    if (lmcf->sh && lmcf->sh->prices != lmcf->prices) {
        ngx_http_llmroute_prices_refresh(lmcf);
    }

    /* a client new to this node may wait for its cluster counts */

    if (lcf->client) {
        wait = ngx_http_llmroute_redis_first_sync(lmcf);
        ctx->sync_until = wait ? ngx_current_msec + wait : 0;
    }

    return ngx_http_llmroute_commit(r, ctx);
}


/*
 * Admission, then the choice becomes the attempt.  NGX_AGAIN from the
 * admission: the client's counts are not here yet; the request sleeps a
 * few milliseconds (as limit_req's delay does) and comes back here.
 */

static ngx_int_t
ngx_http_llmroute_commit(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_llmroute_admit(r, ctx);

    if (rc == NGX_AGAIN) {
        ctx->sync_wait = 1;
        r->read_event_handler = ngx_http_test_reading;
        r->write_event_handler = ngx_http_llmroute_sync_wake;
        r->connection->write->delayed = 1;
        ngx_add_timer(r->connection->write, NGX_HTTP_LLMROUTE_SYNC_POLL);
        return NGX_AGAIN;
    }

    ctx->sync_wait = 0;

    if (rc != NGX_OK) {
        return ngx_http_llmroute_refuse(r, ctx, rc);
    }

    if (ngx_http_llmroute_use_choice(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->decided = 1;

#if (NGX_DEBUG)
    if (r->connection->log->log_level & NGX_LOG_DEBUG_HTTP) {
        ngx_http_llmroute_reason(r, ctx);
    }
#endif

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llmroute: %V/%V tier %ui est %uL (%*s)",
                   &ctx->provider->name, &ctx->model->id, ctx->tier,
                   ctx->choice.est_cost, ctx->reason_len, ctx->reason);

    return NGX_DECLINED;
}


static void
ngx_http_llmroute_sync_wake(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    wev = r->connection->write;

    if (wev->delayed) {             /* a write event, not our timer */
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/*
 * The admitted choice becomes this attempt: its model in the body, its
 * URL, Host and key in the variables.  A failover or an escalation comes
 * back through error_page, which turned the request into a GET.
 */

static ngx_int_t
ngx_http_llmroute_use_choice(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_want_t        want;
    ngx_http_llmroute_choice_t      next;
    ngx_http_llmroute_loc_conf_t   *lcf;
    ngx_http_llmroute_main_conf_t  *lmcf;

    static ngx_str_t  post = ngx_string("POST");

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    ctx->model = &lmcf->cat.models[ctx->choice.model];
    ctx->provider = &lmcf->cat.providers[ctx->model->provider];
    ctx->attempts++;
    ctx->encoded = 0;

    /*
     * Anthropic clients (Claude Code's recovery) match on the provider's
     * own errors: the attempt after which none is left to fail over to
     * lets its error through (ngx_http_llmroute_pass_errors())
     */

    ctx->pass_errors = 0;

    if (ngx_http_llmroute_formats[ctx->req.format].pass_errors) {
        want = ctx->want;
        want.exclude = ctx->tried | ((uint64_t) 1 << ctx->provider->index);
        ngx_http_llmroute_select(&lmcf->cat, &ctx->req, &want, &next);

        ctx->pass_errors = ctx->attempts > lcf->retries || next.model < 0;
    }

    r->method = NGX_HTTP_POST;
    r->method_name = post;

    if (ngx_http_llmroute_set_body(r, ctx) != NGX_OK
        || ngx_http_llmroute_set_credentials(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * POST .../messages/count_tokens with no provider that has the endpoint:
 * the gateway's own estimate, in Anthropic's answer shape.
 */

static ngx_int_t
ngx_http_llmroute_count_tokens(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, sizeof("{\"input_tokens\":}\n")
                                     + NGX_SIZE_T_LEN);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->pos, "{\"input_tokens\":%uz}\n",
                          ctx->req.prompt_tokens);
    b->last_buf = 1;
    b->last_in_chain = 1;

    ctx->error_sent = 1;    /* no provider: nothing to account */

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


/* admission said no: the error for it, in the request's format */

static ngx_int_t
ngx_http_llmroute_refuse(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_int_t rc)
{
    switch (rc) {

    case NGX_HTTP_UNAUTHORIZED:
        return ngx_http_llmroute_send_error(r, NGX_HTTP_UNAUTHORIZED,
                   "invalid_api_key",
                   "missing or unknown API key for this gateway", NULL);

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return ngx_http_llmroute_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                   "rate_limit_exceeded",
                   "rate limit reached for this API key, retry after the "
                   "time in Retry-After", NULL);

    case 402:
        return ngx_http_llmroute_send_error(r, 402, "budget_exceeded",
                   "the budget of this API key for the current period is "
                   "spent", NULL);

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llmroute: no provider available: %s",
                      ctx->choice.why_none);

        return ngx_http_llmroute_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "no_provider_available",
                                            ctx->choice.why_none, NULL);

    default:
        return rc;
    }
}


/*
 * HTTP/1.x: when the header buffer holds the start of the body and the rest
 * does not fit behind it, nginx reads the rest into a buffer of its own and
 * the body comes in two pieces, which read_body() would copy into one (a
 * copy of the whole body per request).  Instead the header buffer is lent
 * a block the size of the body (nginx would allocate as much), the part
 * already read is copied to its start, and nginx reads the rest in behind
 * it ("the whole request body may be placed in r->header_in").  nginx
 * reads no more than the body into it, so no pipelined request lands
 * there; the buffer gets its own memory back when the request's pool goes
 * (the ctx's cleanup), before nginx looks at it for a pipelined request.
 *
 * A body up to 256 KB is lent a block from the worker's lists (blocks of
 * 8, 16, ... 256 KB), not one from the request's pool: the pool of a 2 KB
 * request would grow by a block for it (posix_memalign and free, ~500
 * instructions), a larger body is malloc()ed and freed, and a block used
 * again is still in the cache.  At most BODY_KEEP bytes of blocks wait on
 * the lists (per process: workers share nothing here).
 */

#define NGX_HTTP_LLMROUTE_BODY_BLOCK    8192        /* the smallest */
#define NGX_HTTP_LLMROUTE_BODY_CLASSES  6           /* 8 KB << 0..5 */
#define NGX_HTTP_LLMROUTE_BODY_KEEP     (512 * 1024)

/* a block's first word: the next one of its size */
static void    *ngx_http_llmroute_body_blocks[NGX_HTTP_LLMROUTE_BODY_CLASSES];
static size_t   ngx_http_llmroute_body_kept;


static ngx_int_t
ngx_http_llmroute_body_in_place(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    off_t        len;
    u_char      *p;
    size_t       preread, size;
    ngx_buf_t   *b;
    ngx_uint_t   c;

    b = r->header_in;
    len = r->headers_in.content_length_n;
    preread = b->last - b->pos;

    if (r->http_version >= NGX_HTTP_VERSION_20 || r->headers_in.chunked
        || preread == 0 || len <= (off_t) preread
        || len - (off_t) preread <= b->end - b->last)
    {
        return NGX_OK;
    }

    size = NGX_HTTP_LLMROUTE_BODY_BLOCK;

    for (c = 0; (off_t) size < len && c < NGX_HTTP_LLMROUTE_BODY_CLASSES; c++)
    {
        size <<= 1;
    }

    if (c < NGX_HTTP_LLMROUTE_BODY_CLASSES) {
        p = ngx_http_llmroute_body_blocks[c];

        if (p != NULL) {
            ngx_http_llmroute_body_blocks[c] = *(void **) p;
            ngx_http_llmroute_body_kept -= size;

        } else {
            p = ngx_alloc(size, r->connection->log);
            if (p == NULL) {
                return NGX_ERROR;
            }
        }

        ctx->lent_block = p;
        ctx->lent_class = c;

    } else {
        /* client_body_buffer_size >= client_max_body_size >= len (merge) */

        p = ngx_pnalloc(r->pool, (size_t) len);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->lent = b;
    ctx->lent_start = b->start;
    ctx->lent_last = b->last;
    ctx->lent_end = b->end;

    b->start = p;
    b->pos = p;
    b->last = ngx_cpymem(p, ctx->lent_last - preread, preread);
    b->end = p + len;

    return NGX_OK;
}


/* the header buffer's own memory back, all of it read */

static void
ngx_http_llmroute_header_in_restore(ngx_http_llmroute_ctx_t *ctx)
{
    u_char      *block;
    size_t       size;
    ngx_uint_t   c;

    ctx->lent->start = ctx->lent_start;
    ctx->lent->pos = ctx->lent_last;
    ctx->lent->last = ctx->lent_last;
    ctx->lent->end = ctx->lent_end;
    ctx->lent = NULL;

    block = ctx->lent_block;

    if (block == NULL) {
        return;         /* the pool's */
    }

    ctx->lent_block = NULL;
    c = ctx->lent_class;
    size = (size_t) NGX_HTTP_LLMROUTE_BODY_BLOCK << c;

    if (ngx_http_llmroute_body_kept + size <= NGX_HTTP_LLMROUTE_BODY_KEEP) {
        *(void **) block = ngx_http_llmroute_body_blocks[c];
        ngx_http_llmroute_body_blocks[c] = block;
        ngx_http_llmroute_body_kept += size;

    } else {
        ngx_free(block);
    }
}


/*
 * The body as one contiguous span: used in place when nginx kept it in
 * memory buffers that follow each other (the usual case), else gathered
 * from its memory buffers.
 */

static ngx_int_t
ngx_http_llmroute_read_body(ngx_http_request_t *r, u_char **body, size_t *len)
{
    u_char       *p;
    off_t         size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *body = (u_char *) "";
    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    /* memory buffers that follow each other (see body_in_place) */

    p = r->request_body->bufs->buf->pos;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file || cl->buf->pos != p) {
            break;
        }

        p = cl->buf->last;
    }

    if (cl == NULL) {
        *body = r->request_body->bufs->buf->pos;
        *len = p - *body;
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *body = p;
    *len = size;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        /*
         * never: llmroute locations keep the body in memory (see the
         * merge of client_body_buffer_size); reading a file back would
         * block the worker
         */

        if (b->in_file) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "llmroute: the request body is in a temp file");
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *p = '\0';

    return NGX_OK;
}


/*
 * The client's headers the decision reads, each the first of its name as
 * ngx_http_llmroute_find_header() finds it, in one walk of the list: the
 * names are told apart by length and compared inline.
 */

static void
ngx_http_llmroute_read_headers(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ctx->tier_header = NULL;
    ctx->session_header[0] = NULL;
    ctx->session_header[1] = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (h[i].hash == 0) {
                continue;
            }

            switch (h[i].key.len) {

            case sizeof("x-llmroute-tier") - 1:
                if (ctx->tier_header == NULL
                    && ngx_http_llmroute_header_is(&h[i], "x-llmroute-tier"))
                {
                    ctx->tier_header = &h[i];
                }

                break;

            case sizeof("x-claude-code-session-id") - 1:
                if (ctx->session_header[0] == NULL
                    && ngx_http_llmroute_header_is(&h[i],
                                                   "x-claude-code-session-id"))
                {
                    ctx->session_header[0] = &h[i];
                }

                break;

            case sizeof("x-session-id") - 1:
                if (ctx->session_header[1] == NULL
                    && ngx_http_llmroute_header_is(&h[i], "x-session-id"))
                {
                    ctx->session_header[1] = &h[i];
                }

                break;
            }
        }
    }
}


static ngx_int_t
ngx_http_llmroute_tier_header(ngx_http_llmroute_ctx_t *ctx, ngx_uint_t *tier)
{
    ngx_int_t         t;
    ngx_table_elt_t  *h;

    h = ctx->tier_header;
    if (h == NULL) {
        return NGX_DECLINED;
    }

    t = ngx_http_llmroute_tier_by_name(h->value.data, h->value.len);
    if (t == NGX_ERROR) {
        return NGX_ERROR;
    }

    *tier = t;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_region(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_loc_conf_t *lcf,
    ngx_int_t *region)
{
    ngx_str_t   v;
    ngx_uint_t  i;

    *region = NGX_HTTP_LLMROUTE_REGION_ANY;

    if (lcf->region == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, lcf->region, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v.len == 0) {
        return NGX_OK;
    }

    for (i = 0; i < lmcf->cat.nregions; i++) {
        if (lmcf->cat.regions[i].len == v.len
            && ngx_strncasecmp(lmcf->cat.regions[i].data, v.data, v.len) == 0)
        {
            *region = i;
            return NGX_OK;
        }
    }

    /* a region no provider lists: only region-less providers serve it */
    *region = NGX_HTTP_LLMROUTE_REGION_UNKNOWN;

    return NGX_OK;
}


/*
 * The new body: the client's bytes with only the "model" value replaced
 * (or a "model" member added after the opening brace) and, for a stream
 * whose client did not ask for usage, "stream_options" added before the
 * closing brace so that the provider reports usage (the filter strips that
 * chunk again); with llmroute_cache_key on, "prompt_cache_key" (the
 * session's hash) added after the opening brace when the client sent none.
 * Buffers point into the original body; nothing else is re-serialized.
 */

#define NGX_HTTP_LLMROUTE_USAGE_OPTION                                        \
    ",\"stream_options\":{\"include_usage\":true}"

#define NGX_HTTP_LLMROUTE_CACHE_KEY  "\"prompt_cache_key\":"

static ngx_int_t
ngx_http_llmroute_set_body(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    u_char                        *p, *q, *cl_value;
    size_t                         total, pos, start[3], end[3], t;
    ngx_buf_t                     *b, *bufs;
    ngx_str_t                     *id, part[7], fix[3], f;
    ngx_uint_t                     i, k, n, ne, hint;
    ngx_chain_t                   *cl, **ll, *links;
    ngx_table_elt_t               *h;
    ngx_http_request_body_t       *rb;
    ngx_http_llmroute_req_t       *req;
    ngx_http_llmroute_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    req = &ctx->req;
    id = &ctx->model->id;

    /* the session as the provider's cache routing hint, unless given */
    hint = lcf->cache_key && ctx->has_session && req->cache_key.data == NULL
           && ngx_http_llmroute_formats[req->format].cache_key;

    /*
     * model ids are checked at configuration time: nothing to escape;
     * the new Content-Length's digits go first
     */

    cl_value = ngx_pnalloc(r->pool,
                           NGX_OFF_T_LEN + id->len
                           + sizeof("\"model\":\"\",")
                           + sizeof(NGX_HTTP_LLMROUTE_CACHE_KEY "\"\",")
                           + 2 * NGX_HTTP_LLMROUTE_SESSION_LEN);
    if (cl_value == NULL) {
        return NGX_ERROR;
    }

    p = cl_value + NGX_OFF_T_LEN;

    /* at most three edits of the client's bytes, sorted below */

    q = p;
    fix[0].data = q;

    if (req->has_model) {
        start[0] = req->model_start;
        end[0] = req->model_end;
        *q++ = '"';
        q = ngx_cpymem(q, id->data, id->len);
        *q++ = '"';

    } else {
        start[0] = req->obj_open;
        end[0] = req->obj_open;
        q = ngx_cpymem(q, "\"model\":\"", sizeof("\"model\":\"") - 1);
        q = ngx_cpymem(q, id->data, id->len);
        q = ngx_cpymem(q, "\",", 2);
    }

    fix[0].len = q - fix[0].data;
    ne = 1;

    if (hint) {
        start[ne] = req->obj_open;
        end[ne] = req->obj_open;
        fix[ne].data = q;
        q = ngx_cpymem(q, NGX_HTTP_LLMROUTE_CACHE_KEY "\"",
                       sizeof(NGX_HTTP_LLMROUTE_CACHE_KEY "\"") - 1);
        q = ngx_http_llmroute_session_hex(q, ctx);
        q = ngx_cpymem(q, "\",", 2);
        fix[ne].len = q - fix[ne].data;
        ne++;
    }

    ctx->strip_usage = ngx_http_llmroute_formats[req->format].ask_usage
                       && req->stream && !req->include_usage
                       && ctx->model->stream_usage;

    if (ctx->strip_usage) {
        if (req->usage_fix) {
            start[ne] = req->usage_start;
            end[ne] = req->usage_end;
            fix[ne].data = (u_char *) req->usage_fix;
            fix[ne].len = ngx_strlen(req->usage_fix);

        } else {
            start[ne] = req->obj_close;
            end[ne] = req->obj_close;
            ngx_str_set(&fix[ne], NGX_HTTP_LLMROUTE_USAGE_OPTION);
        }

        ne++;
    }

    /* in body order; an insertion keeps its place before an equal start */

    for (i = 1; i < ne; i++) {
        for (k = i; k > 0 && start[k] < start[k - 1]; k--) {
            t = start[k];
            start[k] = start[k - 1];
            start[k - 1] = t;

            t = end[k];
            end[k] = end[k - 1];
            end[k - 1] = t;

            f = fix[k];
            fix[k] = fix[k - 1];
            fix[k - 1] = f;
        }
    }

    n = 0;
    pos = 0;

    for (i = 0; i < ne; i++) {
        part[n].data = req->body + pos;
        part[n++].len = start[i] - pos;
        part[n++] = fix[i];
        pos = end[i];
    }

    part[n].data = req->body + pos;
    part[n++].len = req->len - pos;

    /* the buffers and their links in one allocation, not one per part */

    bufs = ngx_pcalloc(r->pool, n * (sizeof(ngx_buf_t) + sizeof(ngx_chain_t)));
    if (bufs == NULL) {
        return NGX_ERROR;
    }

    links = (ngx_chain_t *) &bufs[n];

    rb = r->request_body;
    ll = &rb->bufs;
    total = 0;
    b = NULL;

    for (i = 0; i < n; i++) {
        if (part[i].len == 0) {
            continue;
        }

        b = bufs++;
        b->pos = part[i].data;
        b->last = part[i].data + part[i].len;
        b->memory = 1;
        total += part[i].len;

        cl = links++;
        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    /* a fix is never empty: there is a last buffer */
    b->last_buf = 1;
    b->last_in_chain = 1;
    rb->buf = b;

    r->headers_in.content_length_n = total;

    h = r->headers_in.content_length;

    if (h != NULL) {
        h->value.data = cl_value;
        h->value.len = ngx_http_llmroute_decimal(h->value.data, total)
                       - h->value.data;
    }

    return NGX_OK;
}


/*
 * The client's credentials never reach a provider, and no provider key is
 * ever put into r->headers_in (where $http_*, mirror subrequests and an
 * error_page fallback would see it): keys go out only through
 * $llmroute_authorization and the like.  proxy_pass copies every element
 * of r->headers_in.headers, so while an attempt runs that list is a copy
 * without the client's credential headers; the client's own list, whose
 * elements nginx's typed pointers (host, content_length ...) point to, is
 * kept untouched in the ctx and put back for the log phase and for the
 * next decision.  Nothing is shifted, nothing is written into a header.
 */

static ngx_int_t
ngx_http_llmroute_set_credentials(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    ngx_http_llmroute_client_headers(r, ctx);

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    ctx->client_headers = r->headers_in.headers;

    if (ngx_list_init(&r->headers_in.headers, r->pool, n ? n : 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        r->headers_in.headers = ctx->client_headers;
        return NGX_ERROR;
    }

    ctx->headers_hidden = 1;

    /* the new list's one part holds them all: no ngx_list_push() */

    copy = r->headers_in.headers.part.elts;

    for (part = &ctx->client_headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (ngx_http_llmroute_hidden_header(&h[i])) {
                continue;
            }

            *copy++ = h[i];
        }
    }

    r->headers_in.headers.part.nelts =
        copy - (ngx_table_elt_t *) r->headers_in.headers.part.elts;

    return NGX_OK;
}


/* puts the client's own header list back (log phase, next decision) */

void
ngx_http_llmroute_client_headers(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    if (ctx->headers_hidden) {
        r->headers_in.headers = ctx->client_headers;
        ctx->headers_hidden = 0;
    }
}


/*
 * Headers of the client never sent to a provider: credentials,
 * Accept-Encoding (a compressed answer could not be read for its usage:
 * the client would switch billing off) and Content-Encoding.  Every
 * header of every request is looked up here: the names are told apart by
 * length first and compared inline.
 */

static ngx_uint_t
ngx_http_llmroute_hidden_header(ngx_table_elt_t *h)
{
    /* no two of the names have the same length */

    switch (h->key.len) {
    case 13: return ngx_http_llmroute_header_is(h, "authorization");
    case 19: return ngx_http_llmroute_header_is(h, "proxy-authorization");
    case 9:  return ngx_http_llmroute_header_is(h, "x-api-key");
    case 7:  return ngx_http_llmroute_header_is(h, "api-key");
    case 14: return ngx_http_llmroute_header_is(h, "x-goog-api-key");
    case 15: return ngx_http_llmroute_header_is(h, "accept-encoding");
    case 16: return ngx_http_llmroute_header_is(h, "content-encoding");
                                            /* we send the plain body */
    default: return 0;
    }
}


/* "; floor complex": why the tier is above what the classifier said */

static void
ngx_http_llmroute_reason_tier(ngx_http_llmroute_ctx_t *ctx, const char *why,
    ngx_uint_t tier)
{
    if (ctx->reason_suffixes < 2) {
        ctx->reason_why[ctx->reason_suffixes] = why;
        ctx->reason_tiers[ctx->reason_suffixes] = tier;
        ctx->reason_suffixes++;
    }
}


/*
 * ctx->reason and reason_len printed from what the decision kept: only
 * when $llmroute_reason (or the debug log) reads them, not per request
 */

void
ngx_http_llmroute_reason(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    ngx_uint_t                      i;
    ngx_http_llmroute_main_conf_t  *lmcf;

    if (!ctx->reason_pending) {
        return;
    }

    ctx->reason_pending = 0;

    if (ctx->reason_explain) {
        lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

        ctx->reason_len = ngx_http_llmroute_classify_explain(
                              &lmcf->cat.classifier, &ctx->explain,
                              ctx->reason, sizeof(ctx->reason));
    }

    for (i = 0; i < ctx->reason_suffixes; i++) {
        if (ctx->reason_len + 24 < sizeof(ctx->reason)) {
            ctx->reason_len = ngx_snprintf(ctx->reason + ctx->reason_len,
                                           sizeof(ctx->reason)
                                           - ctx->reason_len,
                                           "; %s %V", ctx->reason_why[i],
                                           &ngx_http_llmroute_tier_names[
                                               ctx->reason_tiers[i]])
                              - ctx->reason;
        }
    }
}


/*
 * The longest prefix of s, at most max bytes, that is valid UTF-8: a
 * client's model name echoed in an error must not break the JSON's UTF-8.
 */

static size_t
ngx_http_llmroute_utf8_prefix(ngx_str_t *s, size_t max)
{
    u_char    *p, *last, *start;
    uint32_t   cp;

    p = s->data;
    last = s->data + ngx_min(s->len, max);

    while (p < last) {
        start = p;

        if (*p < 0x80) {
            p++;
            continue;
        }

        cp = ngx_utf8_decode(&p, last - p);

        if (cp > 0x10ffff) {
            return start - s->data;
        }
    }

    return p - s->data;
}


static void *
ngx_http_llmroute_palloc(void *data, size_t size)
{
    return ngx_palloc(data, size);
}
