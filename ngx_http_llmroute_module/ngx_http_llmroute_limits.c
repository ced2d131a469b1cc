
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Admission: provider and client rate limits, client budgets, cooldowns
 * and the circuit breaker, decided in one pass under the zone mutex so
 * that no two workers admit the same last slot.
 *
 * Rolling minute: one-second buckets, the window being the current second
 * and the 59 before it.  So at most N requests (or tokens) are admitted in
 * any 59 s; a 60 s span that starts in the middle of a second may also see
 * what was admitted in that second's beginning, at most one second's worth
 * more.  Tokens count the estimate (prompt + output budget) at admission
 * and are corrected by the provider's usage when the request ends; budgets
 * reserve the estimated cost and settle the actual one the same way.
 *
 * One locking rule: provider health (cooldown, circuit, limits) and client
 * nodes are read and written only here, only under the zone mutex, and no
 * function called with the mutex held takes it again (those are named
 * *_locked).  A request takes the mutex once to be admitted and once to be
 * settled (ngx_http_llmroute_settle(): circuit, limits, spend and its
 * session entry in one critical section); a failed attempt takes it again
 * to record its failure.
 *
 * Client nodes: a request that was admitted pins its client's node
 * (count, as limit_req does) until its pool goes; a pinned node is never
 * evicted, so ctx->client stays valid.  Unpinned nodes go when the zone
 * is full (least recently used first), or after two idle minutes when
 * they hold nothing (no spend this period, nothing unsynced).
 */


#include <ngx_http_llmroute_module.h>


/* how long an open circuit lasts (the failures: module.h) */

/* idle seconds after which an empty client node is expired */
#define NGX_HTTP_LLMROUTE_CLIENT_IDLE    120

#define NGX_HTTP_LLMROUTE_CIRCUIT_MS     30000


static void ngx_http_llmroute_window_roll(ngx_http_llmroute_window_t *w,
    time_t now);
static void ngx_http_llmroute_window_sum(ngx_http_llmroute_window_t *w,
    time_t now, int64_t *req, int64_t *tok);
static time_t ngx_http_llmroute_window_wait(ngx_http_llmroute_window_t *w,
    time_t now, int64_t limit, int64_t need, ngx_uint_t tokens);
static uint64_t ngx_http_llmroute_unavailable_locked(
    ngx_http_llmroute_main_conf_t *lmcf, int64_t tokens, uint64_t now,
    uint64_t *cooling);
static ngx_uint_t ngx_http_llmroute_client_unsynced(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_client_node_t *cn);
static void ngx_http_llmroute_client_free_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_client_node_t *cn);
static void ngx_http_llmroute_clients_expire_locked(
    ngx_http_llmroute_main_conf_t *lmcf, time_t now);
static ngx_http_llmroute_client_node_t *ngx_http_llmroute_client_lookup(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *key, time_t now);
static void ngx_http_llmroute_spend_add(int64_t *spend, int64_t delta);
static void ngx_http_llmroute_release_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t settle, time_t now);
static void ngx_http_llmroute_provider_result_locked(
    ngx_http_llmroute_provider_stats_t *ps, ngx_uint_t ok, time_t now);


static ngx_int_t ngx_http_llmroute_client_list(ngx_conf_t *cf, ngx_str_t *s,
    size_t skip, ngx_http_llmroute_client_conf_t *cc);
static ngx_int_t ngx_http_llmroute_client_model(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *name, u_char *allowed);

static ngx_uint_t  ngx_http_llmroute_shm_nomem;


/*
 * Chooses and admits the provider for this attempt (ctx->want is set).
 * Returns NGX_OK, or the HTTP status to refuse with (ctx->retry_after and
 * the ctx->rl_* values say more).
 */

ngx_int_t
ngx_http_llmroute_admit(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    time_t                               now;
    int64_t                              req, tok, est, spent;
    uint64_t                             cost, now_ms, cooling;
    u_char                               id[NGX_HTTP_LLMROUTE_CLIENT_ID_LEN];
    ngx_int_t                            rc;
    ngx_str_t                            key, value;
    ngx_uint_t                           period, later;
    ngx_http_llmroute_model_t           *m;
    ngx_http_llmroute_loc_conf_t        *lcf;
    ngx_http_llmroute_main_conf_t       *lmcf;
    ngx_http_llmroute_client_conf_t     *cc;
    ngx_http_llmroute_client_node_t     *cn;
    ngx_http_llmroute_provider_stats_t  *ps;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    cc = lcf->client;
    now = ngx_time();
    now_ms = (uint64_t) now * 1000;
    cn = NULL;
    cooling = 0;
    req = 0;
    tok = 0;

    if (cc && ctx->client == NULL) {
        if (ngx_http_complex_value(r, &cc->key, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            return NGX_HTTP_UNAUTHORIZED;
        }

        /* the zone and Redis know the client only by its keyed hash */

        value = key;
        key.data = id;

        if (ngx_http_llmroute_client_id(lmcf, &value, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (cc && ctx->client == NULL) {
        cn = ngx_http_llmroute_client_lookup(lmcf, &key, now);

        /*
         * pinned at once: finding a provider's counters below may evict
         * idle clients to make room, never this one
         */

        if (cn) {
            cn->count++;
        }

        /*
         * a client this node has not synced yet: its spend and rate in
         * the cluster are in Redis, so the request waits for the next
         * sync (the node is now in the batch) rather than being admitted
         * on this node's count alone; not past sync_until, nor once
         * Redis is known down
         */

        if (cn && !cn->remote.synced && ctx->sync_until
            && (ngx_msec_int_t) (ngx_current_msec - ctx->sync_until) < 0
            && lmcf->sh->redis_up)
        {
            /* the sync reads the spend of the node's budget period */

            period = ngx_http_llmroute_period(cc->period, now);

            if (cn->period != period) {
                cn->period = period;
                cn->spend = 0;
            }

            cn->remote.last = now;
            rc = NGX_AGAIN;
            goto done;
        }

        if (cn) {
            ngx_http_llmroute_window_sum(&cn->window, now, &req, &tok);

            /* the other nodes' share, as of the last Redis sync */
            req += cn->remote.req;
            tok += cn->remote.tok;
            cn->remote.last = now;

            ctx->rl_limit = cc->rpm;

            if (cc->rpm && req + 1 > (int64_t) cc->rpm) {
                ctx->rl_remaining = 0;
                ctx->retry_after = ngx_http_llmroute_window_wait(&cn->window,
                                       now, cc->rpm, 1, 0);
                goto too_many;
            }

            ctx->rl_remaining = cc->rpm ? cc->rpm - req - 1 : 0;
        }
    }

    /*
     * a failover or an escalation passes the budget like any attempt, with
     * its own estimate; a failed attempt's reservation is given back (an
     * escalated one was settled already); rates count the request once
     */

    later = (cc && ctx->client != NULL);

    if (later) {
        cn = ctx->client;
        ngx_http_llmroute_spend_add(&cn->spend, -ctx->reserved);
        ngx_http_llmroute_spend_add(&cn->remote.ud_spend, -ctx->reserved);
        ctx->reserved = 0;
    }

    for ( ;; ) {
        ngx_http_llmroute_select(&lmcf->cat, &ctx->req, &ctx->want,
                                 &ctx->choice);

        if (ctx->choice.model < 0) {
            break;
        }

        est = ctx->req.prompt_tokens + ctx->choice.output_budget;

        ctx->want.exclude |= ngx_http_llmroute_unavailable_locked(lmcf, est,
                                                                  now_ms,
                                                                  &cooling);

        m = &lmcf->cat.models[ctx->choice.model];

        if (ctx->want.exclude & ((uint64_t) 1 << m->provider)) {
            continue;           /* at a limit: the next cheapest */
        }

        if (cn == NULL || cc->budget == 0) {
            break;
        }

        period = ngx_http_llmroute_period(cc->period, now);

        if (cn->period != period) {
            cn->period = period;
            cn->spend = 0;
        }

        spent = cn->remote.period == period ? cn->remote.spend : 0;

        if (!__builtin_add_overflow(spent, cn->spend, &spent)
            && !__builtin_add_overflow(spent, (int64_t) ctx->choice.est_cost,
                                       &spent)
            && spent <= (int64_t) cc->budget)
        {
            break;
        }

        /* near the budget: a cheaper tier, or refuse */

        if (!cc->degrade || ctx->want.pin != NGX_HTTP_LLMROUTE_PIN_NONE
            || ctx->want.tier == NGX_HTTP_LLMROUTE_TIER_SIMPLE)
        {
            rc = 402;
            goto done;
        }

        ctx->want.tier--;
        ctx->tier = ctx->want.tier;
        ctx->degraded = 1;
    }

    if (ctx->choice.model < 0) {
        ctx->retry_after = 1;
        rc = NGX_HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }

    /* the client's token limit, now that the output budget is known */

    est = ctx->req.prompt_tokens + ctx->choice.output_budget;

    if (cn && cc->tpm && tok > 0 && tok + est > (int64_t) cc->tpm) {
        ctx->retry_after = ngx_http_llmroute_window_wait(&cn->window, now,
                                                         cc->tpm, est, 1);
        goto too_many;
    }

    /* admitted: count the attempt on the provider (and the client) */

    ngx_http_llmroute_session_admitted(lmcf, ctx, cooling);

    m = &lmcf->cat.models[ctx->choice.model];
    ps = ngx_http_llmroute_provider_stats_locked(lmcf, m->provider);
    est = ctx->req.prompt_tokens + ctx->choice.output_budget;
    cost = ctx->choice.est_cost;

    if (ps) {
        ngx_http_llmroute_window_roll(&ps->window, now);
        ps->window.req[0]++;
        ps->window.tok[0] += est;
        ps->remote.ud_req++;
        ps->remote.ud_tok += est;
        ps->inflight++;

        if (ps->fails >= NGX_HTTP_LLMROUTE_CIRCUIT_FAILS) {
            ps->probing = 1;
            ctx->probe = 1;
        }

        ctx->admitted = m->provider;
        ctx->est_tokens = est;
    }

    if (cn && !later) {
        ngx_http_llmroute_window_roll(&cn->window, now);
        cn->window.req[0]++;
        cn->window.tok[0] += est;
        cn->remote.ud_req++;
        cn->remote.ud_tok += est;
        ctx->client_est = est;
    }

    if (cn) {
        ngx_http_llmroute_spend_add(&cn->spend, cost);
        ngx_http_llmroute_spend_add(&cn->remote.ud_spend, cost);
        cn->remote.period = cn->period;
        ctx->reserved = cost;
        ctx->client = cn;       /* keeps the pin taken above */
    }

    rc = NGX_OK;
    goto done;

too_many:

    rc = NGX_HTTP_TOO_MANY_REQUESTS;

done:

    if (cn && ctx->client != cn) {
        cn->count--;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return rc;
}


/*
 * The attempt is over: free its concurrency slot; settle == 1 (the request
 * ends) corrects tokens and spend by the actual usage, settle == 0 (a
 * failover) takes the failed attempt's token estimate back.
 */

void
ngx_http_llmroute_release(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t settle)
{
    ngx_http_llmroute_main_conf_t  *lmcf;

    if (ctx->admitted < 0 && (ctx->client == NULL || !settle)) {
        return;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    ngx_http_llmroute_release_locked(lmcf, ctx, settle, ngx_time());
    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/*
 * An attempt's answer is settled (the log phase, or an answer withheld for
 * escalation): its provider's success told to the circuit breaker (ok),
 * the attempt released with its actual usage, and, when the request ends
 * (end), its session entry unpinned; one critical section for all three.
 */

void
ngx_http_llmroute_settle(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t ok, ngx_uint_t end)
{
    time_t                               now;
    ngx_uint_t                           release;
    ngx_http_llmroute_main_conf_t       *lmcf;
    ngx_http_llmroute_provider_stats_t  *ps;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    ok = ok && lmcf->sh != NULL;
    release = (ctx->admitted >= 0 || ctx->client != NULL);
    end = end && ctx->session_node != NULL;

    if (!ok && !release && !end) {
        return;
    }

    now = ngx_time();

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (end) {
        ngx_http_llmroute_session_settle_locked(lmcf, ctx);
    }

    if (ok) {
        ps = ngx_http_llmroute_provider_stats_locked(lmcf,
                                                     ctx->provider->index);
        if (ps) {
            ngx_http_llmroute_provider_result_locked(ps, 1, now);
        }
    }

    if (release) {
        ngx_http_llmroute_release_locked(lmcf, ctx, 1, now);
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/* release()'s work, the zone mutex held */

static void
ngx_http_llmroute_release_locked(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t settle, time_t now)
{
    int64_t                              actual;
    ngx_http_llmroute_provider_stats_t  *ps;

    actual = settle ? ctx->prompt_tokens + ctx->completion_tokens : 0;

    ps = ctx->admitted >= 0
         ? ngx_http_llmroute_provider_stats_locked(lmcf, ctx->admitted)
         : NULL;

    if (ps) {
        ngx_http_llmroute_window_roll(&ps->window, now);
        ps->window.tok[0] += actual - ctx->est_tokens;
        ps->remote.ud_tok += actual - ctx->est_tokens;

        if (ps->inflight) {
            ps->inflight--;
        }

        /* whatever ended the attempt, a probe is over */

        if (ctx->probe) {
            ps->probing = 0;
            ctx->probe = 0;
        }
    }

    if (ctx->client && settle) {
        ngx_http_llmroute_window_roll(&ctx->client->window, now);
        ctx->client->window.tok[0] += actual - ctx->client_est;
        ngx_http_llmroute_spend_add(&ctx->client->spend,
                                    (int64_t) ctx->cost - ctx->reserved);
        ctx->client->remote.ud_tok += actual - ctx->client_est;
        ngx_http_llmroute_spend_add(&ctx->client->remote.ud_spend,
                                    (int64_t) ctx->cost - ctx->reserved);
        ctx->client_est = actual;
        ctx->reserved = ctx->cost;
    }

    ctx->admitted = -1;
    ctx->est_tokens = 0;
}


/*
 * The request pool goes (every terminal state: answered, failed, client
 * gone, worker exiting): whatever admission still holds is given back,
 * and the client's node is unpinned.  The log phase has settled the
 * request before, when it ran.
 */

void
ngx_http_llmroute_request_done(ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_main_conf_t       *lmcf;
    ngx_http_llmroute_provider_stats_t  *ps;

    lmcf = ctx->lmcf;

    if (lmcf == NULL || lmcf->sh == NULL
        || (ctx->admitted < 0 && !ctx->probe && ctx->client == NULL))
    {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (ctx->admitted >= 0) {
        ps = ngx_http_llmroute_provider_stats_locked(lmcf, ctx->admitted);

        if (ps) {
            if (ps->inflight) {
                ps->inflight--;
            }

            if (ctx->probe) {
                ps->probing = 0;
            }
        }
    }

    if (ctx->client && ctx->client->count) {
        ctx->client->count--;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    ctx->admitted = -1;
    ctx->probe = 0;
    ctx->client = NULL;
}


/* a provider's rate-limit answer or Retry-After cools it for every worker */

void
ngx_http_llmroute_cool_down(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider, uint64_t until)
{
    ngx_http_llmroute_provider_stats_t  *ps;

    if (lmcf->sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    ps = ngx_http_llmroute_provider_stats_locked(lmcf, provider);

    if (ps && until > ps->cooldown_until) {
        ps->cooldown_until = until;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/* circuit breaker: consecutive failures open it, a success closes it */

void
ngx_http_llmroute_provider_result(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider, ngx_uint_t ok)
{
    ngx_http_llmroute_provider_stats_t  *ps;

    if (lmcf->sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    ps = ngx_http_llmroute_provider_stats_locked(lmcf, provider);
    if (ps) {
        ngx_http_llmroute_provider_result_locked(ps, ok, ngx_time());
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


static void
ngx_http_llmroute_provider_result_locked(
    ngx_http_llmroute_provider_stats_t *ps, ngx_uint_t ok, time_t now)
{
    uint64_t  until;

    ps->probing = 0;

    if (ok) {
        ps->fails = 0;

    } else if (++ps->fails >= NGX_HTTP_LLMROUTE_CIRCUIT_FAILS) {
        until = (uint64_t) now * 1000 + NGX_HTTP_LLMROUTE_CIRCUIT_MS;

        if (until > ps->cooldown_until) {
            ps->cooldown_until = until;
        }
    }
}


static uint64_t
ngx_http_llmroute_unavailable_locked(ngx_http_llmroute_main_conf_t *lmcf,
    int64_t tokens, uint64_t now, uint64_t *cooling)
{
    time_t                               sec;
    int64_t                              req, tok;
    uint64_t                             mask;
    ngx_uint_t                           i;
    ngx_http_llmroute_provider_t        *p;
    ngx_http_llmroute_provider_stats_t  *ps;

    mask = 0;
    sec = now / 1000;

    for (i = 0; i < lmcf->cat.nproviders; i++) {
        p = &lmcf->cat.providers[i];
        ps = ngx_http_llmroute_provider_stats_locked(lmcf, i);

        if (ps == NULL) {
            /* no counters (zone full): its limits cannot be kept */
            if (p->rpm || p->tpm || p->concurrency) {
                mask |= (uint64_t) 1 << i;
            }

            continue;
        }

        /* cooling down; after an open circuit, one probe at a time */

        if (ps->cooldown_until > now || ps->disabled
            || (ps->fails >= NGX_HTTP_LLMROUTE_CIRCUIT_FAILS && ps->probing))
        {
            mask |= (uint64_t) 1 << i;
            *cooling |= (uint64_t) 1 << i;
            continue;
        }

        if (p->concurrency && ps->inflight >= p->concurrency) {
            mask |= (uint64_t) 1 << i;
            continue;
        }

        if (p->rpm || p->tpm) {
            ngx_http_llmroute_window_sum(&ps->window, sec, &req, &tok);

            req += ps->remote.req;
            tok += ps->remote.tok;

            if ((p->rpm && req + 1 > (int64_t) p->rpm)
                || (p->tpm && tok > 0 && tok + tokens > (int64_t) p->tpm))
            {
                mask |= (uint64_t) 1 << i;
            }
        }
    }

    return mask;
}


/* spend never wraps: a saturated cost keeps the client over budget */

static void
ngx_http_llmroute_spend_add(int64_t *spend, int64_t delta)
{
    if (__builtin_add_overflow(*spend, delta, spend)) {
        *spend = delta > 0 ? NGX_HTTP_LLMROUTE_COST_MAX : 0;
    }
}


static void
ngx_http_llmroute_window_roll(ngx_http_llmroute_window_t *w, time_t now)
{
    time_t  shift;

    shift = now - w->sec;

    if (shift <= 0) {
        return;
    }

    if (shift >= NGX_HTTP_LLMROUTE_WINDOW) {
        ngx_memzero(w->req, sizeof(w->req));
        ngx_memzero(w->tok, sizeof(w->tok));

    } else {
        ngx_memmove(&w->req[shift], &w->req[0],
                    (NGX_HTTP_LLMROUTE_WINDOW - shift) * sizeof(w->req[0]));
        ngx_memmove(&w->tok[shift], &w->tok[0],
                    (NGX_HTTP_LLMROUTE_WINDOW - shift) * sizeof(w->tok[0]));
        ngx_memzero(&w->req[0], shift * sizeof(w->req[0]));
        ngx_memzero(&w->tok[0], shift * sizeof(w->tok[0]));
    }

    w->sec = now;
}


static void
ngx_http_llmroute_window_sum(ngx_http_llmroute_window_t *w, time_t now,
    int64_t *req, int64_t *tok)
{
    ngx_uint_t  i;

    ngx_http_llmroute_window_roll(w, now);

    *req = 0;
    *tok = 0;

    for (i = 0; i < NGX_HTTP_LLMROUTE_WINDOW; i++) {
        *req += w->req[i];
        *tok += w->tok[i];
    }
}


/* seconds until enough of the window has rolled out to admit `need` */

static time_t
ngx_http_llmroute_window_wait(ngx_http_llmroute_window_t *w, time_t now,
    int64_t limit, int64_t need, ngx_uint_t tokens)
{
    int64_t     sum;
    ngx_uint_t  i, k;

    sum = 0;

    for (i = 0; i < NGX_HTTP_LLMROUTE_WINDOW; i++) {
        sum += tokens ? w->tok[i] : w->req[i];
    }

    /* the oldest bucket leaves first */

    for (k = NGX_HTTP_LLMROUTE_WINDOW; k > 0; k--) {
        if (sum + need <= limit) {
            break;
        }

        sum -= tokens ? w->tok[k - 1] : w->req[k - 1];
    }

    return NGX_HTTP_LLMROUTE_WINDOW - k + 1;
}


/*
 * The client's node, created when new: idle empty nodes expire first, and
 * when the zone is still full the least recently used unpinned nodes go.
 */

static ngx_http_llmroute_client_node_t *
ngx_http_llmroute_client_lookup(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *key, time_t now)
{
    size_t                            size;
    ngx_rbtree_node_t                *node;
    ngx_http_llmroute_client_node_t  *cn;

    cn = ngx_http_llmroute_client_find(lmcf, key);

    if (cn) {
        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&lmcf->sh->lru, &cn->queue);
        return cn;
    }

    ngx_http_llmroute_clients_expire_locked(lmcf, now);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_llmroute_client_node_t, data)
           + ngx_min(key->len, 65535);

    node = ngx_slab_calloc_locked(lmcf->shpool, size);

    /*
     * full: session affinity is only a saving, limits are a promise, so
     * idle sessions go before idle clients (whose spend would be lost)
     */

    while (node == NULL
           && (ngx_http_llmroute_session_evict_locked(lmcf)
               || ngx_http_llmroute_clients_evict_locked(lmcf)))
    {
        node = ngx_slab_calloc_locked(lmcf->shpool, size);
    }

    if (node == NULL) {
        if (ngx_http_llmroute_shm_nomem++ % 1000 == 0) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "llmroute: zone is full of clients in use, client "
                          "limits are not applied (raise llmroute_zone size)");
        }

        return NULL;
    }

    node->key = ngx_crc32_short(key->data, key->len);
    cn = (ngx_http_llmroute_client_node_t *) &node->color;
    cn->len = (u_short) ngx_min(key->len, 65535);
    ngx_memcpy(cn->data, key->data, cn->len);
    cn->remote.last = now;

    ngx_rbtree_insert(&lmcf->sh->clients, node);
    ngx_queue_insert_head(&lmcf->sh->lru, &cn->queue);

    return cn;
}


/*
 * Frees the least recently used client node that no request pins and
 * that has nothing left to push to Redis (the next sync takes it within
 * sync=); one found on the way goes to the head (a long stream does not
 * stand in front of the idle ones).  Returns 0 when there is none.
 */

ngx_uint_t
ngx_http_llmroute_clients_evict_locked(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_llmroute_client_node_t  *cn;

    for (i = 0; i < 64; i++) {
        if (ngx_queue_empty(&lmcf->sh->lru)) {
            return 0;
        }

        q = ngx_queue_last(&lmcf->sh->lru);
        cn = ngx_queue_data(q, ngx_http_llmroute_client_node_t, queue);

        if (cn->count == 0 && !ngx_http_llmroute_client_unsynced(lmcf, cn)) {
            ngx_http_llmroute_client_free_locked(lmcf, cn);
            return 1;
        }

        /* in use, so recently used: the Redis sync keeps it too */
        cn->remote.last = ngx_time();
        ngx_queue_remove(q);
        ngx_queue_insert_head(&lmcf->sh->lru, q);
    }

    return 0;
}


/* at most two idle nodes that hold nothing go per new client */

static void
ngx_http_llmroute_clients_expire_locked(ngx_http_llmroute_main_conf_t *lmcf,
    time_t now)
{
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_llmroute_client_node_t  *cn;

    for (i = 0; i < 2; i++) {
        if (ngx_queue_empty(&lmcf->sh->lru)) {
            return;
        }

        q = ngx_queue_last(&lmcf->sh->lru);
        cn = ngx_queue_data(q, ngx_http_llmroute_client_node_t, queue);

        if (cn->count || now - cn->remote.last < NGX_HTTP_LLMROUTE_CLIENT_IDLE
            || cn->spend || ngx_http_llmroute_client_unsynced(lmcf, cn))
        {
            return;
        }

        ngx_http_llmroute_client_free_locked(lmcf, cn);
    }
}


/* counts the Redis sync has not pushed yet (none without llmroute_redis) */

static ngx_uint_t
ngx_http_llmroute_client_unsynced(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_client_node_t *cn)
{
    return lmcf->redis
           && (cn->remote.ud_req || cn->remote.ud_tok || cn->remote.ud_spend);
}


static void
ngx_http_llmroute_client_free_locked(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_client_node_t *cn)
{
    ngx_rbtree_node_t  *node;

    ngx_queue_remove(&cn->queue);

    node = (ngx_rbtree_node_t *)
               ((u_char *) cn - offsetof(ngx_rbtree_node_t, color));
    ngx_rbtree_delete(&lmcf->sh->clients, node);
    ngx_slab_free_locked(lmcf->shpool, node);
}


/* the client's node if it exists (zone mutex held) */

ngx_http_llmroute_client_node_t *
ngx_http_llmroute_client_find(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *key)
{
    uint32_t                          hash;
    ngx_int_t                         rc;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_llmroute_client_node_t  *cn;

    hash = ngx_crc32_short(key->data, key->len);

    node = lmcf->sh->clients.root;
    sentinel = lmcf->sh->clients.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        cn = (ngx_http_llmroute_client_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, cn->data, key->len, (size_t) cn->len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


void
ngx_http_llmroute_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                **p;
    ngx_http_llmroute_client_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_llmroute_client_node_t *) &node->color;
            cnt = (ngx_http_llmroute_client_node_t *) &temp->color;

            p = (ngx_memn2cmp(cn->data, cnt->data, cn->len, cnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* budget periods in UTC: hours, days or calendar months since the epoch */

ngx_uint_t
ngx_http_llmroute_period(ngx_uint_t kind, time_t now)
{
    ngx_tm_t  tm;

    switch (kind) {
    case 0:
        return now / 3600;
    case 1:
        return now / 86400;
    default:
        ngx_gmtime(now, &tm);
        return tm.ngx_tm_year * 12 + tm.ngx_tm_mon;
    }
}


/*
 * llmroute_client KEY [rpm=N] [tpm=N] [budget=USD/hour|day|month] [degrade]
 *                 [tiers=T,T] [models=M,M] [choose=on|off]
 */

char *
ngx_http_llmroute_client(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    u_char                            *slash;
    ngx_int_t                          n;
    ngx_str_t                         *value, s;
    ngx_uint_t                         i;
    ngx_http_llmroute_client_conf_t   *cc;
    ngx_http_compile_complex_value_t   ccv;

    if (lcf->client) {
        return "is duplicate";
    }

    cc = ngx_pcalloc(cf->pool, sizeof(ngx_http_llmroute_client_conf_t));
    if (cc == NULL) {
        return NGX_CONF_ERROR;
    }

    cc->choose = 1;

    value = cf->args->elts;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &cc->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        s = value[i];

        if (ngx_strncmp(s.data, "rpm=", 4) == 0) {
            n = ngx_atoi(s.data + 4, s.len - 4);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            cc->rpm = n;
            continue;
        }

        if (ngx_strncmp(s.data, "tpm=", 4) == 0) {
            n = ngx_atoi(s.data + 4, s.len - 4);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            cc->tpm = n;
            continue;
        }

        if (ngx_strncmp(s.data, "budget=", 7) == 0) {
            slash = ngx_strlchr(s.data + 7, s.data + s.len, '/');
            if (slash == NULL
                || ngx_http_llmroute_parse_decimal(s.data + 7,
                                                   slash - s.data - 7, 9,
                                                   &cc->budget)
                   != NGX_OK
                || cc->budget == 0)
            {
                goto invalid;
            }

            slash++;
            n = s.data + s.len - slash;

            if (n == 4 && ngx_strncmp(slash, "hour", 4) == 0) {
                cc->period = 0;

            } else if (n == 3 && ngx_strncmp(slash, "day", 3) == 0) {
                cc->period = 1;

            } else if (n == 5 && ngx_strncmp(slash, "month", 5) == 0) {
                cc->period = 2;

            } else {
                goto invalid;
            }

            continue;
        }

        if (s.len == 7 && ngx_strncmp(s.data, "degrade", 7) == 0) {
            cc->degrade = 1;
            continue;
        }

        if (ngx_strncmp(s.data, "tiers=", 6) == 0) {
            if (ngx_http_llmroute_client_list(cf, &s, 6, cc) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "models=", 7) == 0) {
            if (ngx_http_llmroute_client_list(cf, &s, 7, cc) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        if (s.len == 9 && ngx_strncmp(s.data, "choose=on", 9) == 0) {
            cc->choose = 1;
            continue;
        }

        if (s.len == 10 && ngx_strncmp(s.data, "choose=off", 10) == 0) {
            cc->choose = 0;
            continue;
        }

        goto invalid;
    }

    cc->file = cf->conf_file->file.name.data;
    cc->line = cf->conf_file->line;

    lcf->client = cc;

    ngx_http_llmroute_client_used(cf);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" (expected rpm=N, tpm=N, "
                       "budget=USD/hour|day|month, degrade, tiers=T,T, "
                       "models=M,M or choose=on|off)", &value[i]);
    return NGX_CONF_ERROR;
}


/* tiers=simple,moderate (names checked now) or models=a,p/b (at merge) */

static ngx_int_t
ngx_http_llmroute_client_list(ngx_conf_t *cf, ngx_str_t *s, size_t skip,
    ngx_http_llmroute_client_conf_t *cc)
{
    u_char     *p, *last, *comma;
    ngx_int_t   tier;
    ngx_str_t  *name;

    p = s->data + skip;
    last = s->data + s->len;

    if (p == last) {
        return NGX_ERROR;
    }

    if (skip == 7 && cc->models == NULL) {
        cc->models = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (cc->models == NULL) {
            return NGX_ERROR;
        }
    }

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma == p) {
            return NGX_ERROR;
        }

        if (skip == 6) {
            tier = ngx_http_llmroute_tier_by_name(p, comma - p);
            if (tier == NGX_ERROR) {
                return NGX_ERROR;
            }

            cc->tiers |= (ngx_uint_t) 1 << tier;

        } else {
            name = ngx_array_push(cc->models);
            if (name == NULL) {
                return NGX_ERROR;
            }

            name->data = p;
            name->len = comma - p;
        }

        p = comma + 1;
    }

    return s->data[s->len - 1] == ',' ? NGX_ERROR : NGX_OK;
}


/* models= names a catalog model (id or provider/id) */

ngx_int_t
ngx_http_llmroute_client_policy_check(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_client_conf_t *cc)
{
    ngx_uint_t  i;
    ngx_str_t  *name;

    if (cc == NULL || cc->models == NULL) {
        return NGX_OK;
    }

    name = cc->models->elts;

    for (i = 0; i < cc->models->nelts; i++) {
        if (ngx_http_llmroute_client_model(lmcf, &name[i], NULL) < 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown model \"%V\" in \"models=\" of "
                          "\"llmroute_client\" in %s:%ui",
                          &name[i], cc->file, cc->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Marks in allowed[] the models a name means: an id (every provider's) or
 * provider/id.  Returns how many, -1 for none.
 */

static ngx_int_t
ngx_http_llmroute_client_model(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *name, u_char *allowed)
{
    ngx_int_t                   n;
    ngx_uint_t                  i;
    ngx_http_llmroute_model_t  *m;

    n = 0;
    m = lmcf->cat.models;

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        if ((m[i].id.len == name->len
             && ngx_strncmp(m[i].id.data, name->data, name->len) == 0)
            || (m[i].full.len == name->len
                && ngx_strncmp(m[i].full.data, name->data, name->len) == 0))
        {
            if (allowed) {
                allowed[i] = 1;
            }

            n++;
        }
    }

    return n ? n : -1;
}


/*
 * The client's policy on this request: choose=off drops its tier header
 * and its pinned model or floor; tiers= and models= limit the models
 * selection may use.  NGX_DECLINED: a pinned model the client may not use.
 */

ngx_int_t
ngx_http_llmroute_client_policy(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t *use_header)
{
    u_char                           *allowed;
    ngx_uint_t                        i;
    ngx_str_t                        *name;
    ngx_http_llmroute_want_t         *want;
    ngx_http_llmroute_model_t        *m;
    ngx_http_llmroute_loc_conf_t     *lcf;
    ngx_http_llmroute_main_conf_t    *lmcf;
    ngx_http_llmroute_client_conf_t  *cc;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);
    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    cc = lcf->client;
    want = &ctx->want;

    if (cc == NULL) {
        return NGX_OK;
    }

    if (!cc->choose) {
        want->pin = NGX_HTTP_LLMROUTE_PIN_NONE;
        want->tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
        *use_header = 0;
    }

    want->tiers = cc->tiers;
    want->tier = ngx_http_llmroute_client_tier(want, want->tier);

    if (cc->models) {
        allowed = ngx_pcalloc(r->pool, lmcf->cat.nmodels);
        if (allowed == NULL) {
            return NGX_ERROR;
        }

        name = cc->models->elts;

        for (i = 0; i < cc->models->nelts; i++) {
            (void) ngx_http_llmroute_client_model(lmcf, &name[i], allowed);
        }

        want->allowed = allowed;
    }

    if (want->pin == NGX_HTTP_LLMROUTE_PIN_NONE) {
        return NGX_OK;
    }

    m = lmcf->cat.models;

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        if (m[i].id.len == want->pin_id.len
            && ngx_strncmp(m[i].id.data, want->pin_id.data, m[i].id.len) == 0
            && (want->pin != NGX_HTTP_LLMROUTE_PIN_PROVIDER
                || m[i].provider == want->pin_provider)
            && (want->tiers == 0
                || (want->tiers & ((ngx_uint_t) 1 << m[i].tier)))
            && (want->allowed == NULL || want->allowed[i]))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* tiers=: a tier above every allowed one comes down to the highest */

ngx_uint_t
ngx_http_llmroute_client_tier(ngx_http_llmroute_want_t *want, ngx_uint_t tier)
{
    while (want->tiers && tier > 0
           && !(want->tiers & ((ngx_uint_t) 1 << tier)))
    {
        tier--;
    }

    return tier;
}
