
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The shared zone: counters every worker updates and that survive a
 * reload.  Series are keyed by provider and model *names* (never by client
 * input), so their number is bounded by the catalogs configured; each
 * worker finds its series once, under the mutex, then updates them with
 * atomics only.
 */


#include <ngx_http_llmroute_module.h>


static ngx_int_t ngx_http_llmroute_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_llmroute_series_t *ngx_http_llmroute_series(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *provider,
    ngx_str_t *model);
static ngx_http_llmroute_series_t *ngx_http_llmroute_series_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *provider,
    ngx_str_t *model);


/* 64-bit counters must be updated without a lock on every platform */
#if !defined(__GCC_ATOMIC_LLONG_LOCK_FREE) || __GCC_ATOMIC_LLONG_LOCK_FREE != 2
#error "llmroute needs lock-free 64-bit atomics (x86-64, i586+, ARMv7+)"
#endif

typedef char ngx_http_llmroute_counter_is_64_bit[
    sizeof(ngx_http_llmroute_counter_t) == 8 ? 1 : -1];


ngx_uint_t  ngx_http_llmroute_codes[NGX_HTTP_LLMROUTE_NCODES] = {
    200, 400, 401, 402, 404, 405, 408, 413, 429, 499, 500, 502, 503, 504,
    0, 0
};

ngx_msec_t  ngx_http_llmroute_buckets[NGX_HTTP_LLMROUTE_NBUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
    NGX_MAX_INT32_VALUE
};


/* llmroute_zone NAME:SIZE; */

char *
ngx_http_llmroute_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (lmcf->shm_zone != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = ngx_strlchr(value[1].data, value[1].data + value[1].len, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected NAME:SIZE",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    lmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_llmroute_module);
    if (lmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (lmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    lmcf->shm_zone->init = ngx_http_llmroute_init_zone;
    lmcf->shm_zone->data = lmcf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llmroute_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llmroute_main_conf_t  *olmcf = data;

    ngx_slab_pool_t                *shpool;
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    lmcf->shpool = shpool;

    /* a full zone is handled (clients evicted, refused) and logged here */
    shpool->log_nomem = 0;

    /* reload: keep the counters of the previous cycle */

    if (olmcf) {
        lmcf->sh = olmcf->sh;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        lmcf->sh = shpool->data;
        return NGX_OK;
    }

    lmcf->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_llmroute_shctx_t));
    if (lmcf->sh == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_llmroute_client_zone_secret(lmcf->sh->client_secret,
                                             sizeof(lmcf->sh->client_secret))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_init(&lmcf->sh->series);
    ngx_queue_init(&lmcf->sh->lru);
    ngx_rbtree_init(&lmcf->sh->clients, &lmcf->sh->sentinel,
                    ngx_http_llmroute_rbtree_insert_value);
    ngx_http_llmroute_session_init_zone(lmcf->sh);

    shpool->data = lmcf->sh;

    shpool->log_ctx = ngx_slab_alloc(shpool,
                                     sizeof(" in llmroute zone \"\"")
                                     + shm_zone->shm.name.len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in llmroute zone \"%V\"%Z",
                &shm_zone->shm.name);

    return NGX_OK;
}


/* the slow paths of the inline lookups in ngx_http_llmroute_module.h */

ngx_http_llmroute_model_stats_t *
ngx_http_llmroute_model_stats_new(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_int_t model)
{
    ngx_str_t                      empty = ngx_null_string;
    ngx_http_llmroute_model_t     *m;
    ngx_http_llmroute_series_t    *s;

    if (lmcf->sh == NULL) {
        return NULL;
    }

    if (model < 0) {
        if (lmcf->none_series == NULL) {
            lmcf->none_series = ngx_http_llmroute_series(lmcf, &empty,
                                                         &empty);
        }

        s = lmcf->none_series;

    } else {
        s = lmcf->model_series[model];

        if (s == NULL) {
            m = &lmcf->cat.models[model];
            s = ngx_http_llmroute_series(lmcf,
                                         &lmcf->cat.providers[m->provider].name,
                                         &m->id);
            lmcf->model_series[model] = s;
        }
    }

    return s ? &s->s.model : NULL;
}


/*
 * The provider's series with the zone mutex already held (admission,
 * release, the circuit breaker): found or made without locking again.
 */

ngx_http_llmroute_provider_stats_t *
ngx_http_llmroute_provider_stats_new_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_uint_t provider)
{
    ngx_str_t                    empty = ngx_null_string;
    ngx_http_llmroute_series_t  *s;

    if (lmcf->sh == NULL) {
        return NULL;
    }

    s = lmcf->provider_series[provider];

    if (s == NULL) {
        s = ngx_http_llmroute_series_locked(lmcf,
                                            &lmcf->cat.providers[provider].name,
                                            &empty);
        lmcf->provider_series[provider] = s;
    }

    return s ? &s->s.provider : NULL;
}


ngx_http_llmroute_provider_stats_t *
ngx_http_llmroute_provider_stats_new(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider)
{
    ngx_http_llmroute_provider_stats_t  *ps;

    if (lmcf->sh == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    ps = ngx_http_llmroute_provider_stats_new_locked(lmcf, provider);
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return ps;
}


static ngx_http_llmroute_series_t *
ngx_http_llmroute_series(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *provider, ngx_str_t *model)
{
    ngx_http_llmroute_series_t  *s;

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    s = ngx_http_llmroute_series_locked(lmcf, provider, model);
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return s;
}


/*
 * Find or create a series (a provider series has an empty model), zone
 * mutex held.  Series are few and bounded by the catalogs: when the zone
 * is full of clients, idle clients make room for them.
 */

static ngx_http_llmroute_series_t *
ngx_http_llmroute_series_locked(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *provider, ngx_str_t *model)
{
    u_char                      *p;
    size_t                       size;
    ngx_queue_t                 *q;
    ngx_http_llmroute_series_t  *s;

    for (q = ngx_queue_head(&lmcf->sh->series);
         q != ngx_queue_sentinel(&lmcf->sh->series);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_http_llmroute_series_t, queue);

        if (s->provider.len == provider->len && s->model.len == model->len
            && ngx_memcmp(s->provider.data, provider->data, provider->len)
               == 0
            && ngx_memcmp(s->model.data, model->data, model->len) == 0)
        {
            return s;
        }
    }

    size = sizeof(ngx_http_llmroute_series_t) + provider->len + model->len;

    s = ngx_slab_calloc_locked(lmcf->shpool, size);

    while (s == NULL && ngx_http_llmroute_clients_evict_locked(lmcf)) {
        s = ngx_slab_calloc_locked(lmcf->shpool, size);
    }

    if (s == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "llmroute: zone is full, no counters for \"%V%s%V\" "
                      "(raise llmroute_zone size)", provider,
                      model->len ? "/" : "", model);
        return NULL;
    }

    p = (u_char *) (s + 1);

    s->provider.data = p;
    s->provider.len = provider->len;
    p = ngx_cpymem(p, provider->data, provider->len);

    s->model.data = p;
    s->model.len = model->len;
    ngx_memcpy(p, model->data, model->len);

    /* model series first, in catalog order: stable metrics output */
    ngx_queue_insert_tail(&lmcf->sh->series, &s->queue);

    return s;
}


/* a money total saturates at NGX_HTTP_LLMROUTE_COST_MAX, never wraps */

void
ngx_http_llmroute_money_counter_add(ngx_http_llmroute_counter_t *c,
    uint64_t n)
{
    uint64_t  old, sum;

    old = __atomic_load_n(c, __ATOMIC_RELAXED);

    do {
        if (__builtin_add_overflow(old, n, &sum)
            || sum > NGX_HTTP_LLMROUTE_COST_MAX)
        {
            sum = NGX_HTTP_LLMROUTE_COST_MAX;
        }

    } while (!__atomic_compare_exchange_n(c, &old, sum, 0, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}


ngx_uint_t
ngx_http_llmroute_code_index(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_llmroute_codes[i]; i++) {
        if (ngx_http_llmroute_codes[i] == status) {
            return i;
        }
    }

    return i;   /* "other" */
}
