
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The last hour in per-minute buckets, for llmroute_status: requests,
 * tokens and spend per model and per client, the tier mix and the savings.
 * This file owns the structure: it allocates it in the zone (once, when a
 * location has llmroute_status), adds to it at the log phase from the
 * values the accounting already settled, and expires a minute by reusing
 * its slot an hour later.  Keys (model names, client labels) are written
 * once under the zone mutex and never freed, so a reader needs no lock.
 */


#include <ngx_http_llmroute_minutes.h>


static ngx_int_t ngx_http_llmroute_minutes_init(
    ngx_http_llmroute_main_conf_t *lmcf);
static ngx_uint_t ngx_http_llmroute_minutes_key(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_uint_t kind, ngx_str_t *name);
static ngx_http_llmroute_minute_t *ngx_http_llmroute_minutes_slot(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_uint_t minute);
static ngx_uint_t ngx_http_llmroute_minutes_idle(
    ngx_http_llmroute_minutes_t *mn, ngx_uint_t now);


/* this worker's key index of each catalog model, and of recent clients */
static ngx_uint_t                     *ngx_http_llmroute_model_keys;
static ngx_uint_t                      ngx_http_llmroute_client_keys[256];
/* the configuration they were made for (a reload without a master) */
static ngx_http_llmroute_main_conf_t  *ngx_http_llmroute_keys_conf;
static ngx_uint_t                      ngx_http_llmroute_minutes_nomem;


/* first use in this worker: the zone's structure, made by the first one */

static ngx_int_t
ngx_http_llmroute_minutes_init(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t                     i;
    ngx_http_llmroute_minutes_t   *mn;

    if (ngx_http_llmroute_keys_conf != lmcf) {
        ngx_free(ngx_http_llmroute_model_keys);
        ngx_http_llmroute_model_keys = NULL;
        ngx_http_llmroute_keys_conf = lmcf;
    }

    if (ngx_http_llmroute_model_keys == NULL) {
        ngx_http_llmroute_model_keys = ngx_alloc(
            (lmcf->cat.nmodels + 1) * sizeof(ngx_uint_t), ngx_cycle->log);
        if (ngx_http_llmroute_model_keys == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i <= lmcf->cat.nmodels; i++) {
            ngx_http_llmroute_model_keys[i] = NGX_HTTP_LLMROUTE_KEYS;
        }
    }

    if (lmcf->sh->minutes) {
        return NGX_OK;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (lmcf->sh->minutes == NULL) {
        mn = ngx_slab_calloc_locked(lmcf->shpool,
                                    sizeof(ngx_http_llmroute_minutes_t));
        if (mn == NULL) {
            ngx_shmtx_unlock(&lmcf->shpool->mutex);

            /* said once per worker; the page shows an empty hour */
            if (!ngx_http_llmroute_minutes_nomem) {
                ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                              "llmroute: no room for llmroute_status in "
                              "the zone (%uz bytes; raise llmroute_zone "
                              "size)", sizeof(ngx_http_llmroute_minutes_t));
            }

            ngx_http_llmroute_minutes_nomem = 1;
            return NGX_ERROR;
        }

        ngx_memory_barrier();
        lmcf->sh->minutes = mn;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return NGX_OK;
}


/*
 * At the log phase, after the accounting settled ctx (every attempt that
 * was billed, as the metrics count it): atomics only, the mutex only the
 * first time a key is seen and once a minute to recycle a slot.
 */

void
ngx_http_llmroute_minutes_add(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx)
{
    u_char                            label[NGX_HTTP_LLMROUTE_KEY_LEN];
    int64_t                           used, cached;
    ngx_str_t                         name;
    ngx_uint_t                        minute, k;
    ngx_http_llmroute_key_t          *key;
    ngx_http_llmroute_model_t        *m;
    ngx_http_llmroute_minute_t       *slot;
    ngx_http_llmroute_minute_row_t   *row;
    ngx_http_llmroute_loc_conf_t     *lcf;
    ngx_http_llmroute_client_node_t  *cn;

    if (!lmcf->status || lmcf->sh == NULL || ctx->choice.model < 0) {
        return;
    }

    if (lmcf->sh->minutes == NULL || ngx_http_llmroute_keys_conf != lmcf
        || ngx_http_llmroute_model_keys == NULL)
    {
        if (ngx_http_llmroute_minutes_nomem && lmcf->sh->minutes == NULL) {
            return;
        }

        if (ngx_http_llmroute_minutes_init(lmcf) != NGX_OK) {
            return;
        }
    }

    /* as billed: a provider reporting more cached than prompt tokens */
    cached = ngx_min(ctx->cached_tokens, ctx->prompt_tokens);

    minute = ngx_time() / 60;

    slot = ngx_http_llmroute_minutes_slot(lmcf, minute);

    (void) ngx_atomic_fetch_add(&slot->tiers[ngx_min(ctx->tier,
                                           NGX_HTTP_LLMROUTE_NTIERS - 1)], 1);
    /* signed: a two's complement addition wraps to the right sum */
    ngx_http_llmroute_count(&slot->savings, (int64_t) ctx->savings);

    /* the model's row */

    /*
     * the cached index, unless its key was given to another name since
     * (an "other" row: asked again, cheap until a key is free)
     */

    m = &lmcf->cat.models[ctx->choice.model];
    k = ngx_http_llmroute_model_keys[ctx->choice.model];
    key = &lmcf->sh->minutes->keys[ngx_min(k, NGX_HTTP_LLMROUTE_KEYS - 1)];

    if (k >= NGX_HTTP_LLMROUTE_KEYS
        || key->kind != NGX_HTTP_LLMROUTE_KEY_MODEL
        || key->len != ngx_min(m->full.len, NGX_HTTP_LLMROUTE_KEY_LEN)
        || ngx_memcmp(key->name, m->full.data, key->len) != 0)
    {
        ngx_http_llmroute_model_keys[ctx->choice.model] =
            ngx_http_llmroute_minutes_key(lmcf, NGX_HTTP_LLMROUTE_KEY_MODEL,
                                          &m->full);
    }

    for (k = 0; k < 2; k++) {

        if (k == 0) {
            row = &slot->rows[ngx_http_llmroute_model_keys[ctx->choice.model]];

        } else {
            /* the client's row, under its label (never a raw key) */

            lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

            if (ngx_http_llmroute_client_label(r, lcf, label, &name.len)
                != NGX_OK)
            {
                break;
            }

            name.data = label;

            row = &slot->rows[ngx_http_llmroute_minutes_key(lmcf,
                                  NGX_HTTP_LLMROUTE_KEY_CLIENT, &name)];

            /* the budget as the admission sees it, as of this request */

            cn = ctx->client;

            if (cn && lcf->client->budget
                && row < slot->rows + NGX_HTTP_LLMROUTE_KEYS)
            {
                key = &lmcf->sh->minutes->keys[row - slot->rows];
                used = cn->spend + (cn->remote.period == cn->period
                                    ? cn->remote.spend : 0);
                key->budget = lcf->client->budget;
                key->period_kind = lcf->client->period;
                key->period = cn->period;
                key->used = used > 0 ? used : 0;
            }
        }

        ngx_http_llmroute_count(&row->requests, 1);
        ngx_http_llmroute_count(&row->prompt, ctx->prompt_tokens);
        ngx_http_llmroute_count(&row->completion, ctx->completion_tokens);
        ngx_http_llmroute_count(&row->cached, cached);
        ngx_http_llmroute_count(&row->cost, ctx->cost);
    }
}


/* the slot of this minute, emptied first if it still holds an old one */

static ngx_http_llmroute_minute_t *
ngx_http_llmroute_minutes_slot(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t minute)
{
    ngx_http_llmroute_minute_t  *slot;

    slot = &lmcf->sh->minutes->slots[minute % NGX_HTTP_LLMROUTE_MINUTES];

    if (slot->minute == minute) {
        return slot;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (slot->minute != minute) {
        ngx_memzero(slot, sizeof(ngx_http_llmroute_minute_t));
        ngx_memory_barrier();
        slot->minute = minute;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return slot;
}


/*
 * A key's index; a key unused for an hour is given to a new name; when
 * none is free, an "other" row.
 */

static ngx_uint_t
ngx_http_llmroute_minutes_key(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t kind, ngx_str_t *name)
{
    size_t                        len;
    uint32_t                      hash;
    ngx_uint_t                    i, now, *cached;
    ngx_http_llmroute_key_t      *key;
    ngx_http_llmroute_minutes_t  *mn;

    /* a name past the key's room is known by its first bytes */
    len = ngx_min(name->len, NGX_HTTP_LLMROUTE_KEY_LEN);

    mn = lmcf->sh->minutes;
    hash = ngx_crc32_short(name->data, len);
    cached = &ngx_http_llmroute_client_keys[(hash ^ kind) % 256];

    now = (ngx_uint_t) ngx_time() / 60;

    if (*cached < NGX_HTTP_LLMROUTE_KEYS) {
        key = &mn->keys[*cached];

        if (key->kind == kind && key->len == len
            && ngx_memcmp(key->name, name->data, len) == 0)
        {
            return *cached;
        }

    } else if (*cached == NGX_HTTP_LLMROUTE_KEYS + kind && mn->recycled == now)
    {
        /* all taken, and a key was looked for this minute already */
        return (kind == NGX_HTTP_LLMROUTE_KEY_MODEL)
               ? NGX_HTTP_LLMROUTE_OTHER_MODEL : NGX_HTTP_LLMROUTE_OTHER_CLIENT;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_LLMROUTE_KEYS; i++) {
        key = &mn->keys[i];

        if (key->kind == 0) {
            key->since = now;
            key->len = len;
            ngx_memcpy(key->name, name->data, len);
            ngx_memory_barrier();
            key->kind = kind;
            break;
        }

        if (key->kind == kind && key->len == len
            && ngx_memcmp(key->name, name->data, len) == 0)
        {
            break;
        }
    }

    /* all taken: a key nothing used for an hour is reused, once a minute */

    if (i == NGX_HTTP_LLMROUTE_KEYS && mn->recycled != now) {
        mn->recycled = now;
        i = ngx_http_llmroute_minutes_idle(mn, mn->recycled);

        if (i < NGX_HTTP_LLMROUTE_KEYS) {
            key = &mn->keys[i];
            key->kind = 0;
            ngx_memory_barrier();
            key->budget = 0;
            key->since = now;
            key->len = len;
            ngx_memcpy(key->name, name->data, len);
            ngx_memory_barrier();
            key->kind = kind;
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    *cached = (i == NGX_HTTP_LLMROUTE_KEYS) ? i + kind : i;

    if (i == NGX_HTTP_LLMROUTE_KEYS) {
        i = (kind == NGX_HTTP_LLMROUTE_KEY_MODEL)
            ? NGX_HTTP_LLMROUTE_OTHER_MODEL : NGX_HTTP_LLMROUTE_OTHER_CLIENT;
    }

    return i;
}


/* a key with no request in any slot of the last hour, or KEYS */

static ngx_uint_t
ngx_http_llmroute_minutes_idle(ngx_http_llmroute_minutes_t *mn,
    ngx_uint_t now)
{
    ngx_uint_t                   i, k;
    ngx_http_llmroute_minute_t  *slot;

    for (k = 0; k < NGX_HTTP_LLMROUTE_KEYS; k++) {

        /* a name given less than an hour ago may not have counted yet */
        if (mn->keys[k].since + NGX_HTTP_LLMROUTE_MINUTES > now) {
            continue;
        }

        for (i = 0; i < NGX_HTTP_LLMROUTE_MINUTES; i++) {
            slot = &mn->slots[i];

            if (slot->minute + NGX_HTTP_LLMROUTE_MINUTES > now
                && slot->rows[k].requests)
            {
                break;
            }
        }

        if (i == NGX_HTTP_LLMROUTE_MINUTES) {
            return k;
        }
    }

    return k;
}


/* the last hour summed per key, and the per-minute totals, for a reader */

void
ngx_http_llmroute_minutes_sum(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_minutes_view_t *view)
{
    ngx_uint_t                       now, i, k, f;
    ngx_http_llmroute_counter_t     *src, *dst;
    ngx_http_llmroute_minute_t      *slot;
    ngx_http_llmroute_minutes_t     *mn;
    ngx_http_llmroute_minute_row_t  *row;

    ngx_memzero(view, sizeof(ngx_http_llmroute_minutes_view_t));

    mn = lmcf->sh ? lmcf->sh->minutes : NULL;
    view->minutes = mn;
    now = ngx_time() / 60;
    view->now = now;

    if (mn == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_LLMROUTE_MINUTES; i++) {
        slot = &mn->slots[(now - i) % NGX_HTTP_LLMROUTE_MINUTES];

        if (slot->minute != now - i) {
            continue;
        }

        for (k = 0; k < NGX_HTTP_LLMROUTE_NTIERS; k++) {
            view->tiers[k] += slot->tiers[k];
        }

        view->savings += (int64_t) ngx_http_llmroute_counter_get(
                                                              &slot->savings);

        for (k = 0; k < NGX_HTTP_LLMROUTE_KEYS + 2; k++) {
            row = &slot->rows[k];
            src = &row->requests;
            dst = &view->rows[k].requests;

            for (f = 0; f < NGX_HTTP_LLMROUTE_ROW_FIELDS; f++) {
                dst[f] += src[f];
            }

            view->cost[k][NGX_HTTP_LLMROUTE_MINUTES - 1 - i] = row->cost;

            /* per minute: the model rows only, so each request once */

            if (k == NGX_HTTP_LLMROUTE_OTHER_MODEL
                || (k < NGX_HTTP_LLMROUTE_KEYS
                    && mn->keys[k].kind == NGX_HTTP_LLMROUTE_KEY_MODEL))
            {
                for (f = 0; f < NGX_HTTP_LLMROUTE_ROW_FIELDS; f++) {
                    (&view->minute[NGX_HTTP_LLMROUTE_MINUTES - 1 - i]
                       .requests)[f] += src[f];
                }
            }
        }
    }
}
