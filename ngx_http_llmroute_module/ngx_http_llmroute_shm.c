
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


ngx_http_llmroute_model_stats_t *
ngx_http_llmroute_model_stats(ngx_http_llmroute_main_conf_t *lmcf,
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


ngx_http_llmroute_provider_stats_t *
ngx_http_llmroute_provider_stats(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider)
{
    ngx_str_t                    empty = ngx_null_string;
    ngx_http_llmroute_series_t  *s;

    if (lmcf->sh == NULL) {
        return NULL;
    }

    s = lmcf->provider_series[provider];

    if (s == NULL) {
        s = ngx_http_llmroute_series(lmcf, &lmcf->cat.providers[provider].name,
                                     &empty);
        lmcf->provider_series[provider] = s;
    }

    return s ? &s->s.provider : NULL;
}


/*
 * Every provider's series, found or made: code about to hold the zone's
 * mutex calls this first, since finding a series takes the mutex itself.
 */

void
ngx_http_llmroute_provider_series(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t  i;

    for (i = 0; i < lmcf->cat.nproviders; i++) {
        (void) ngx_http_llmroute_provider_stats(lmcf, i);
    }
}


/* find or create a series; a provider series has an empty model */

static ngx_http_llmroute_series_t *
ngx_http_llmroute_series(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *provider, ngx_str_t *model)
{
    u_char                      *p;
    ngx_queue_t                 *q;
    ngx_http_llmroute_series_t  *s;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

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
            goto done;
        }
    }

    s = ngx_slab_calloc_locked(lmcf->shpool,
                               sizeof(ngx_http_llmroute_series_t)
                               + provider->len + model->len);
    if (s == NULL) {
        goto done;
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

done:

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return s;
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
