
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Accounting at the log phase: tokens from the provider's usage (or an
 * estimate when it sent none), cost from catalog prices in integer
 * nano-USD, and the shared counters every worker adds to.  This is the one
 * place spend and tokens are settled.
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_http_llmroute_usage.h>


static void ngx_http_llmroute_account_usage(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx);
static void ngx_http_llmroute_account_latency(ngx_http_request_t *r,
    ngx_http_llmroute_provider_stats_t *ps);
static void ngx_http_llmroute_observe(ngx_http_llmroute_counter_t *hist, ngx_msec_t ms);
static void ngx_http_llmroute_account_stats(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t code);


/* by NGX_HTTP_LLMROUTE_REJECT_*: error codes and metric labels */
const char  *ngx_http_llmroute_reject_codes[] = {
    "invalid_json", "invalid_request", "model_not_found",
    "method_not_allowed", "request_too_large", "no_provider_available",
    "other", "rate_limit_exceeded", "budget_exceeded", "invalid_api_key",
    NULL
};


ngx_uint_t
ngx_http_llmroute_reject_index(const char *code)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_llmroute_reject_codes[i]; i++) {
        if (ngx_strcmp(code, ngx_http_llmroute_reject_codes[i]) == 0) {
            return i;
        }
    }

    return NGX_HTTP_LLMROUTE_REJECT_OTHER;
}


ngx_int_t
ngx_http_llmroute_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                        status, code, upstream_status;
    ngx_http_llmroute_ctx_t          *ctx;
    ngx_http_llmroute_model_stats_t  *ms;
    ngx_http_llmroute_main_conf_t    *lmcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx == NULL || ctx->logged) {
        return NGX_DECLINED;
    }

    /* access_log's $http_authorization is the client's, as it came */
    ngx_http_llmroute_client_headers(r, ctx);

    ctx->logged = 1;

    if (ctx->count_tokens && !ctx->decided) {
        return NGX_DECLINED;            /* answered here, free */
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    status = r->headers_out.status;

    if (r->connection->error && !r->header_sent) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    if (r->upstream && r->upstream->state
        && r->upstream->state->status == NGX_HTTP_CLIENT_CLOSED_REQUEST)
    {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    code = ngx_http_llmroute_code_index(status);

    if (!ctx->decided) {
        ngx_http_llmroute_session_settle(r, ctx);

        ms = ngx_http_llmroute_model_stats(lmcf, -1);
        if (ms == NULL) {
            return NGX_DECLINED;
        }

        ngx_http_llmroute_count(&ms->requests[ctx->tier][code], 1);

        /* refused by the gateway, not a client that left during the body */

        if (ctx->error_sent || ctx->replace_body) {
            ngx_http_llmroute_count(&lmcf->sh->rejected[ctx->reject], 1);
        }

        return NGX_DECLINED;
    }

    /*
     * the last attempt's outcome for the circuit breaker; a client that
     * hung up before any answer (499) says nothing about the provider
     */

    upstream_status = r->upstream ? r->upstream->headers_in.status_n : 0;

    if (r->upstream
        && (upstream_status == NGX_HTTP_TOO_MANY_REQUESTS
            || upstream_status >= 500
            || (upstream_status == 0
                && status != NGX_HTTP_CLIENT_CLOSED_REQUEST)))
    {
        ngx_http_llmroute_note_failure(r, ctx);
    }

    ngx_http_llmroute_account_usage(r, lmcf, ctx);

    /* the circuit, limits, spend and session: one critical section */

    ngx_http_llmroute_settle(r, ctx,
                             ctx->failure_noted != ctx->attempts
                             && upstream_status != 0, 1);

    ngx_http_llmroute_account_stats(r, lmcf, ctx, code);

    return NGX_DECLINED;
}


/*
 * An answer withheld for escalation was billed by its provider: settle it
 * now, and start the next attempt's accounting from zero.
 */

void
ngx_http_llmroute_account_attempt(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    ngx_http_llmroute_account_usage(r, lmcf, ctx);
    ngx_http_llmroute_settle(r, ctx, 1, 0);
    ngx_http_llmroute_account_stats(r, lmcf, ctx,
        ngx_http_llmroute_code_index(r->upstream->headers_in.status_n));

    ctx->prior_cost += ctx->cost;
    ctx->reserved = 0;
    ctx->client_est = 0;
    ctx->usage = NULL;
    ctx->have_usage = 0;
    ctx->prompt_tokens = 0;
    ctx->completion_tokens = 0;
    ctx->cached_tokens = 0;
    ctx->cache_write_tokens = 0;
    ctx->content_bytes = 0;
    ctx->cost = 0;
}


static void
ngx_http_llmroute_account_stats(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t code)
{
    ngx_http_llmroute_model_stats_t     *ms;
    ngx_http_llmroute_provider_stats_t  *ps;

    ms = ngx_http_llmroute_model_stats(lmcf, ctx->choice.model);
    ps = ngx_http_llmroute_provider_stats(lmcf, ctx->provider->index);

    if (ms == NULL || ps == NULL) {
        return;
    }

    ngx_http_llmroute_count(&ms->requests[ctx->tier][code], 1);
    ngx_http_llmroute_count(&ms->prompt_tokens, ctx->prompt_tokens);
    ngx_http_llmroute_count(&ms->completion_tokens,
                                ctx->completion_tokens);
    ngx_http_llmroute_count(&ms->cached_tokens, ctx->cached_tokens);
    ngx_http_llmroute_count(&ms->cache_write_tokens, ctx->cache_write_tokens);
    ngx_http_llmroute_money_counter_add(&ms->cost, ctx->cost);

    ngx_http_llmroute_count(&ps->tokens,
                                ctx->prompt_tokens + ctx->completion_tokens);

    if (ctx->savings > 0) {
        ngx_http_llmroute_money_counter_add(&lmcf->sh->savings,
                                           ctx->savings);
    }

    ngx_http_llmroute_account_latency(r, ps);

    /* the status page's last hour, from the values settled above */
    ngx_http_llmroute_minutes_add(r, lmcf, ctx);
}


/*
 * Tokens: the provider's usage when it sent one; else, for a successful
 * answer, the prompt estimate and the generated bytes / 4 (a stream cut
 * short, a provider without usage, a client that went away).
 */

static void
ngx_http_llmroute_account_usage(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx)
{
    uint64_t                    base;
    ngx_uint_t                  upstream_status;
    ngx_http_llmroute_model_t  *bm;

    ngx_http_llmroute_usage_t  *u;

    upstream_status = r->upstream ? r->upstream->headers_in.status_n : 0;

    u = ctx->usage;

    if (u) {
        /* a stream cut short or a client gone: what was seen so far */
        if (!u->finished) {
            ngx_http_llmroute_usage_finish(u, NULL);
        }

        ctx->content_bytes = u->content_bytes;

        if (u->have_usage) {
            ctx->have_usage = 1;
            ctx->prompt_tokens = ngx_max(u->prompt_tokens, 0);
            ctx->completion_tokens = ngx_max(u->completion_tokens, 0);
            ctx->cached_tokens = ngx_max(u->cached_tokens, 0);
            ctx->cache_write_tokens = ngx_max(u->cache_write_tokens, 0);

            /*
             * Anthropic's input_tokens leaves the cache reads and writes
             * out; OpenAI's prompt_tokens has them in.  Prompt tokens are
             * every input token here, as OpenAI counts them.
             */

            if (ngx_http_llmroute_formats[ctx->req.format]
                .input_excludes_cache)
            {
                ctx->prompt_tokens += ctx->cached_tokens
                                      + ctx->cache_write_tokens;

                /*
                 * a stream cut before message_delta: message_start's
                 * output_tokens (1) is no count of what was generated
                 */

                if (u->sse && !u->done) {
                    ctx->completion_tokens = ngx_max(ctx->completion_tokens,
                                     (int64_t) (ctx->content_bytes + 3) / 4);
                }
            }
        }
    }

    if (ctx->count_tokens) {
        ctx->have_usage = 0;            /* counting tokens is free */
        upstream_status = 0;
    }

    if (ctx->have_usage) {
        ctx->usage_source = NGX_HTTP_LLMROUTE_USAGE_PROVIDER;

    } else if (upstream_status >= 200 && upstream_status < 300
               && !ctx->no_answer)
    {
        ctx->usage_source = NGX_HTTP_LLMROUTE_USAGE_ESTIMATE;
        ctx->prompt_tokens = ctx->req.prompt_tokens;
        ctx->completion_tokens = ctx->encoded
                                 ? (int64_t) ctx->choice.output_budget
                                 : (int64_t) (ctx->content_bytes + 3) / 4;
        ctx->cached_tokens = 0;
        ctx->cache_write_tokens = 0;

    } else {
        ctx->usage_source = NGX_HTTP_LLMROUTE_USAGE_NONE;
        ctx->prompt_tokens = 0;
        ctx->completion_tokens = 0;
        ctx->cached_tokens = 0;
        ctx->cache_write_tokens = 0;
    }

    ctx->cost = ngx_http_llmroute_cost(ctx->model, ctx->prompt_tokens,
                                       ctx->cached_tokens,
                                       ctx->cache_write_tokens,
                                       ctx->completion_tokens);

    if (lmcf->baseline_model >= 0) {
        bm = &lmcf->cat.models[lmcf->baseline_model];
        base = ngx_http_llmroute_cost(bm, ctx->prompt_tokens,
                                      ctx->cached_tokens,
                                      ctx->cache_write_tokens,
                                      ctx->completion_tokens);
        ctx->savings = (int64_t) base - (int64_t) ctx->cost;
    }
}


static void
ngx_http_llmroute_account_latency(ngx_http_request_t *r,
    ngx_http_llmroute_provider_stats_t *ps)
{
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return;
    }

    state = r->upstream_states->elts;
    state = &state[r->upstream_states->nelts - 1];

    if (state->header_time == (ngx_msec_t) -1) {
        return;
    }

    ngx_http_llmroute_observe(ps->ttfb, state->header_time);
    ngx_http_llmroute_observe(ps->total, state->response_time);

    ngx_http_llmroute_count(&ps->ttfb_ms, state->header_time);
    ngx_http_llmroute_count(&ps->total_ms, state->response_time);
    ngx_http_llmroute_count(&ps->count, 1);
}


static void
ngx_http_llmroute_observe(ngx_http_llmroute_counter_t *hist, ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_LLMROUTE_NBUCKETS - 1; i++) {
        if (ms <= ngx_http_llmroute_buckets[i]) {
            break;
        }
    }

    ngx_http_llmroute_count(&hist[i], 1);
}
