
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The shared zone: state every worker sees (and that survives a reload).
 */


#include <ngx_http_llmroute_module.h>


typedef struct {
    ngx_atomic_t                    requests;
} ngx_http_llmroute_shctx_t;


static ngx_int_t ngx_http_llmroute_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


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
    ngx_slab_pool_t            *shpool;
    ngx_http_llmroute_shctx_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    /* reload: keep the counters of the previous cycle */

    if (data || shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_llmroute_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}
