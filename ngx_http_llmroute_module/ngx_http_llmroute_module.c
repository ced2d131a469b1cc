
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Directives, configuration and variables.
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_http_llmroute_scan.h>


#define NGX_HTTP_LLMROUTE_VAR_URL            0
#define NGX_HTTP_LLMROUTE_VAR_HOST           1
#define NGX_HTTP_LLMROUTE_VAR_AUTHORIZATION  2
#define NGX_HTTP_LLMROUTE_VAR_PROVIDER       3
#define NGX_HTTP_LLMROUTE_VAR_MODEL          4
#define NGX_HTTP_LLMROUTE_VAR_TIER           5
#define NGX_HTTP_LLMROUTE_VAR_REASON         6
#define NGX_HTTP_LLMROUTE_VAR_ATTEMPTS       7
#define NGX_HTTP_LLMROUTE_VAR_EST_COST       8
#define NGX_HTTP_LLMROUTE_VAR_EST_TOKENS     9
#define NGX_HTTP_LLMROUTE_VAR_PROMPT        10
#define NGX_HTTP_LLMROUTE_VAR_COMPLETION    11
#define NGX_HTTP_LLMROUTE_VAR_CACHED        12
#define NGX_HTTP_LLMROUTE_VAR_COST          13
#define NGX_HTTP_LLMROUTE_VAR_SAVINGS       14
#define NGX_HTTP_LLMROUTE_VAR_USAGE_SOURCE  15
#define NGX_HTTP_LLMROUTE_VAR_X_API_KEY     16
#define NGX_HTTP_LLMROUTE_VAR_SESSION       17
#define NGX_HTTP_LLMROUTE_VAR_CACHE_HIT     18


static ngx_int_t ngx_http_llmroute_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_llmroute_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_llmroute_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_llmroute_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_llmroute_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_llmroute_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_llmroute_init(ngx_conf_t *cf);
static char *ngx_http_llmroute_provider(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_classifier(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_retries(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_output_budget(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_llmroute_parse_count(u_char *p, size_t len,
    size_t *n);
static ngx_int_t ngx_http_llmroute_region_index(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *name);
static ngx_int_t ngx_http_llmroute_valid_name(ngx_str_t *s);
static ngx_int_t ngx_http_llmroute_failover(ngx_conf_t *cf);
static void ngx_http_llmroute_semi_trusted(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf);
static char *ngx_http_llmroute_format(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_alias(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llmroute_check_aliases(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf);
static ngx_int_t ngx_http_llmroute_init_process(ngx_cycle_t *cycle);
static void ngx_http_llmroute_exit_process(ngx_cycle_t *cycle);


extern ngx_module_t  ngx_http_proxy_module;


static ngx_command_t  ngx_http_llmroute_commands[] = {

    { ngx_string("llmroute_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_llmroute_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_llmroute_provider,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_llmroute_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_llmroute_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_classifier"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_llmroute_classifier,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_output_budget"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_llmroute_output_budget,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llmroute_loc_conf_t, enable),
      NULL },

    { ngx_string("llmroute_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llmroute_format,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_alias"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_llmroute_alias,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llmroute_loc_conf_t, headers),
      NULL },

    { ngx_string("llmroute_escalate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llmroute_loc_conf_t, escalate),
      NULL },

    { ngx_string("llmroute_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llmroute_retries,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_region"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llmroute_loc_conf_t, region),
      NULL },

    { ngx_string("llmroute_client_hash"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_llmroute_client_hash,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_client"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_llmroute_client,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_session"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llmroute_session,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_cache_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llmroute_loc_conf_t, cache_key),
      NULL },

    { ngx_string("llmroute_models"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llmroute_models,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llmroute_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llmroute_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llmroute_baseline_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_llmroute_main_conf_t, baseline),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_llmroute_module_ctx = {
    ngx_http_llmroute_add_variables,       /* preconfiguration */
    ngx_http_llmroute_init,                /* postconfiguration */

    ngx_http_llmroute_create_main_conf,    /* create main configuration */
    ngx_http_llmroute_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_llmroute_create_loc_conf,     /* create location configuration */
    ngx_http_llmroute_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_llmroute_module = {
    NGX_MODULE_V1,
    &ngx_http_llmroute_module_ctx,         /* module context */
    ngx_http_llmroute_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_llmroute_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_llmroute_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * Values change between attempts: never cache them.  They can be found by
 * name (njs, Lua, SSI), except the one that holds a provider key: that
 * one is for proxy_set_header only.
 */
#define NGX_HTTP_LLMROUTE_VAR_FLAGS   NGX_HTTP_VAR_NOCACHEABLE
#define NGX_HTTP_LLMROUTE_SECRET_VAR_FLAGS                                    \
    (NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH)

static ngx_http_variable_t  ngx_http_llmroute_vars[] = {

    { ngx_string("llmroute_url"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_URL, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_host"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_HOST, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_authorization"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_AUTHORIZATION,
      NGX_HTTP_LLMROUTE_SECRET_VAR_FLAGS, 0 },

    { ngx_string("llmroute_x_api_key"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_X_API_KEY, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_provider"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_PROVIDER, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_model"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_MODEL, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_tier"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_TIER, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_reason"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_REASON, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_attempts"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_ATTEMPTS, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_est_cost"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_EST_COST, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_est_prompt_tokens"), NULL,
      ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_EST_TOKENS, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_prompt_tokens"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_PROMPT, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_completion_tokens"), NULL,
      ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_COMPLETION, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_cached_tokens"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_CACHED, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_cost"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_COST, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_savings"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_SAVINGS, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_usage_source"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_USAGE_SOURCE, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_session"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_SESSION, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

    { ngx_string("llmroute_cache_hit"), NULL, ngx_http_llmroute_variable,
      NGX_HTTP_LLMROUTE_VAR_CACHE_HIT, NGX_HTTP_LLMROUTE_VAR_FLAGS, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_llmroute_usage_sources[] = {
    ngx_string("none"),
    ngx_string("provider"),
    ngx_string("estimate")
};


/*
 * The first worker says which walk reads request bodies on this CPU (the
 * scan picks AVX2 at load where the CPU has it), as nginx says which
 * event method it uses: the operator sees what the bench figures assume.
 */

static ngx_int_t
ngx_http_llmroute_init_process(ngx_cycle_t *cycle)
{
    if (ngx_worker == 0 && ngx_process == NGX_PROCESS_WORKER) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "llmroute: request bodies are scanned with %s",
                      ngx_http_llmroute_scan_kind);
    }

    return ngx_http_llmroute_redis_init_process(cycle);
}


static void
ngx_http_llmroute_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_llmroute_redis_exit_process(cycle);
    ngx_http_llmroute_parse_cleanup();
}


static ngx_int_t
ngx_http_llmroute_add_variables(ngx_conf_t *cf)
{
    if (ngx_http_llmroute_register_variables(cf, ngx_http_llmroute_vars)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_llmroute_register_variables(cf,
                                                ngx_http_llmroute_facts_vars);
}


ngx_int_t
ngx_http_llmroute_register_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    ngx_str_t                 s;
    ngx_http_llmroute_ctx_t  *ctx;

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx == NULL || !ctx->decided) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_LLMROUTE_VAR_URL:
        s = ctx->provider->url;

        if (ctx->count_tokens) {
            p = ngx_pnalloc(r->pool, s.len + sizeof("/count_tokens") - 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            s.len = ngx_sprintf(p, "%V/count_tokens", &s) - p;
            s.data = p;
        }

        break;

    case NGX_HTTP_LLMROUTE_VAR_HOST:
        ngx_http_llmroute_pass_errors(r, ctx);
        s = ctx->provider->host;
        break;

    case NGX_HTTP_LLMROUTE_VAR_AUTHORIZATION:
        ngx_http_llmroute_pass_errors(r, ctx);
        s = ctx->provider->authorization;   /* empty for anthropic ones */
        break;

    case NGX_HTTP_LLMROUTE_VAR_X_API_KEY:
        ngx_http_llmroute_pass_errors(r, ctx);

        if (!ngx_http_llmroute_formats[ctx->provider->format].bearer) {
            s = ctx->provider->key;

        } else {
            ngx_str_null(&s);
        }

        break;

    case NGX_HTTP_LLMROUTE_VAR_PROVIDER:
        s = ctx->provider->name;
        break;

    case NGX_HTTP_LLMROUTE_VAR_MODEL:
        s = ctx->model->id;
        break;

    case NGX_HTTP_LLMROUTE_VAR_TIER:
        s = ngx_http_llmroute_tier_names[ctx->tier];
        break;

    case NGX_HTTP_LLMROUTE_VAR_REASON:
        ngx_http_llmroute_reason(r, ctx);
        s.data = ctx->reason;
        s.len = ctx->reason_len;
        break;

    case NGX_HTTP_LLMROUTE_VAR_USAGE_SOURCE:
        if (!ctx->logged) {
            v->not_found = 1;
            return NGX_OK;
        }

        s = ngx_http_llmroute_usage_sources[ctx->usage_source];
        break;

    case NGX_HTTP_LLMROUTE_VAR_SESSION:
        if (!ctx->has_session) {
            v->not_found = 1;
            return NGX_OK;
        }

        s.data = ngx_pnalloc(r->pool, 2 * NGX_HTTP_LLMROUTE_SESSION_LEN);
        if (s.data == NULL) {
            return NGX_ERROR;
        }

        s.len = ngx_http_llmroute_session_hex(s.data, ctx) - s.data;
        break;

    case NGX_HTTP_LLMROUTE_VAR_CACHE_HIT:
        if (!ctx->logged || ctx->prompt_tokens <= 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        s.data = ngx_pnalloc(r->pool, sizeof("1.000") - 1);
        if (s.data == NULL) {
            return NGX_ERROR;
        }

        {
        int64_t  k;

        k = ngx_min(ctx->cached_tokens, ctx->prompt_tokens) * 1000
            / ctx->prompt_tokens;
        s.len = ngx_sprintf(s.data, "%L.%03L", k / 1000, k % 1000) - s.data;
        }

        break;

    default:
        /* the accounting values exist once the log phase settled them */

        if (data >= NGX_HTTP_LLMROUTE_VAR_PROMPT && !ctx->logged) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;

        switch (data) {

        case NGX_HTTP_LLMROUTE_VAR_EST_COST:
            p = ngx_sprintf(p, "%uL.%09uL",
                            ctx->choice.est_cost / 1000000000,
                            ctx->choice.est_cost % 1000000000);
            break;

        case NGX_HTTP_LLMROUTE_VAR_ATTEMPTS:
            p = ngx_sprintf(p, "%ui", ctx->attempts);
            break;

        case NGX_HTTP_LLMROUTE_VAR_EST_TOKENS:
            p = ngx_sprintf(p, "%uz", ctx->req.prompt_tokens);
            break;

        case NGX_HTTP_LLMROUTE_VAR_PROMPT:
            p = ngx_sprintf(p, "%L", ctx->prompt_tokens);
            break;

        case NGX_HTTP_LLMROUTE_VAR_COMPLETION:
            p = ngx_sprintf(p, "%L", ctx->completion_tokens);
            break;

        case NGX_HTTP_LLMROUTE_VAR_CACHED:
            p = ngx_sprintf(p, "%L", ctx->cached_tokens);
            break;

        case NGX_HTTP_LLMROUTE_VAR_COST:
            {
            uint64_t  c;

            /* an escalated request pays for both answers */
            c = ctx->cost + ctx->prior_cost;
            p = ngx_sprintf(p, "%uL.%09uL", c / 1000000000, c % 1000000000);
            }
            break;

        default: /* NGX_HTTP_LLMROUTE_VAR_SAVINGS */
            {
            uint64_t  a;

            if (ctx->savings < 0) {
                *p++ = '-';
                a = (uint64_t) -ctx->savings;

            } else {
                a = (uint64_t) ctx->savings;
            }

            p = ngx_sprintf(p, "%uL.%09uL", a / 1000000000, a % 1000000000);
            }
        }

        s.len = p - s.data;
    }

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static void *
ngx_http_llmroute_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llmroute_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     lmcf->shm_zone = NULL;
     *     lmcf->provider_file = NULL;
     */

    if (ngx_array_init(&lmcf->providers, cf->pool, 4,
                       sizeof(ngx_http_llmroute_provider_t))
        != NGX_OK
        || ngx_array_init(&lmcf->models, cf->pool, 8,
                          sizeof(ngx_http_llmroute_model_t))
           != NGX_OK
        || ngx_array_init(&lmcf->regions, cf->pool, 4, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&lmcf->aliases, cf->pool, 4,
                          sizeof(ngx_http_llmroute_alias_t))
           != NGX_OK)
    {
        return NULL;
    }

    ngx_http_llmroute_classifier_init(&lmcf->cat.classifier);

    lmcf->cat.output_budget[NGX_HTTP_LLMROUTE_TIER_SIMPLE] = 512;
    lmcf->cat.output_budget[NGX_HTTP_LLMROUTE_TIER_MODERATE] = 1024;
    lmcf->cat.output_budget[NGX_HTTP_LLMROUTE_TIER_COMPLEX] = 4096;

    return lmcf;
}


static char *
ngx_http_llmroute_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    uint64_t                   *p;
    ngx_uint_t                  i;
    ngx_http_llmroute_model_t  *m;

    if (lmcf->providers.nelts && lmcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"llmroute_provider\" needs \"llmroute_zone\" at http "
                      "level, in %s:%ui",
                      lmcf->provider_file, lmcf->provider_line);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llmroute_client_hash_check(cf, lmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    lmcf->baseline_model = -1;

    m = lmcf->models.elts;

    if (lmcf->baseline.len) {

        for (i = 0; i < lmcf->models.nelts; i++) {
            if ((m[i].id.len == lmcf->baseline.len
                 && ngx_strncmp(m[i].id.data, lmcf->baseline.data,
                                m[i].id.len) == 0)
                || (m[i].full.len == lmcf->baseline.len
                    && ngx_strncmp(m[i].full.data, lmcf->baseline.data,
                                   m[i].full.len) == 0))
            {
                lmcf->baseline_model = i;
                break;
            }
        }

        if (lmcf->baseline_model < 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"llmroute_baseline_model\" names unknown model "
                          "\"%V\"", &lmcf->baseline);
            return NGX_CONF_ERROR;
        }
    }

    lmcf->model_series = ngx_pcalloc(cf->pool, (lmcf->models.nelts + 1)
                                     * sizeof(ngx_http_llmroute_series_t *));
    lmcf->provider_series = ngx_pcalloc(cf->pool, (lmcf->providers.nelts + 1)
                                        * sizeof(ngx_http_llmroute_series_t *));

    lmcf->conf_prices = ngx_palloc(cf->pool, (lmcf->models.nelts + 1)
                                             * NGX_HTTP_LLMROUTE_PRICES
                                             * sizeof(uint64_t));

    if (lmcf->model_series == NULL || lmcf->provider_series == NULL
        || lmcf->conf_prices == NULL)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < lmcf->models.nelts; i++) {
        p = &lmcf->conf_prices[i * NGX_HTTP_LLMROUTE_PRICES];
        p[0] = m[i].input;
        p[1] = m[i].output;
        p[2] = m[i].cached_input;
        p[3] = m[i].cache_write;
    }

    lmcf->cat.providers = lmcf->providers.elts;
    lmcf->cat.nproviders = lmcf->providers.nelts;
    lmcf->cat.models = lmcf->models.elts;
    lmcf->cat.nmodels = lmcf->models.nelts;
    lmcf->cat.regions = lmcf->regions.elts;
    lmcf->cat.nregions = lmcf->regions.nelts;

    return ngx_http_llmroute_check_aliases(cf, lmcf);
}


static void *
ngx_http_llmroute_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_llmroute_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llmroute_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->region = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->format = NGX_CONF_UNSET_UINT;
    conf->headers = NGX_CONF_UNSET;
    conf->escalate = NGX_CONF_UNSET;
    conf->retries = NGX_CONF_UNSET_UINT;
    conf->session = NGX_CONF_UNSET_PTR;
    conf->session_off = NGX_CONF_UNSET;
    conf->cache_key = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_llmroute_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_llmroute_loc_conf_t *prev = parent;
    ngx_http_llmroute_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_llmroute_main_conf_t  *lmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->headers, prev->headers, 1);
    ngx_conf_merge_uint_value(conf->format, prev->format,
                              NGX_HTTP_LLMROUTE_FORMAT_AUTO);
    ngx_conf_merge_value(conf->escalate, prev->escalate, 0);
    ngx_conf_merge_uint_value(conf->retries, prev->retries, 0);

    if (conf->region == NULL) {
        conf->region = prev->region;
    }

    if (conf->client == NULL) {
        conf->client = prev->client;
    }

    ngx_conf_merge_ptr_value(conf->session, prev->session, NULL);
    ngx_conf_merge_value(conf->session_off, prev->session_off, 0);
    ngx_conf_merge_value(conf->cache_key, prev->cache_key, 0);

    if (conf->enable) {
        lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llmroute_module);

        if (lmcf->models.nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"llmroute on\" needs at least one "
                               "\"llmroute_model\" at http level");
            return NGX_CONF_ERROR;
        }

        if ((conf->retries || conf->escalate)
            && ngx_http_llmroute_failover(cf) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        ngx_http_llmroute_semi_trusted(cf, lmcf);

        if (ngx_http_llmroute_client_policy_check(cf, lmcf, conf->client)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        /*
         * The body is parsed whole: keep it in memory, up to
         * client_max_body_size, rather than read a temp file back with
         * blocking reads.  Only the bytes received take memory (a
         * buffer that large is mmap()ed and touched as it fills).  The
         * core module's settings of this location are merged already.
         */

        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->client_max_body_size == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"llmroute on\" needs a limited "
                               "\"client_max_body_size\" (the request body "
                               "is kept in memory)");
            return NGX_CONF_ERROR;
        }

        if (clcf->client_body_in_file_only) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"llmroute on\" cannot be used with "
                               "\"client_body_in_file_only\"");
            return NGX_CONF_ERROR;
        }

        if ((off_t) clcf->client_body_buffer_size
            < clcf->client_max_body_size)
        {
            clcf->client_body_buffer_size =
                                      (size_t) clcf->client_max_body_size;
        }
    }

    return NGX_CONF_OK;
}


/*
 * Providers are semi-trusted: their X-Accel-* headers (an internal
 * redirect into any location of the gateway, rate limits, buffering)
 * are ignored in llmroute locations, and keys sent over TLS that is not
 * verified are worth a warning.
 */

static void
ngx_http_llmroute_semi_trusted(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t                     i;
    ngx_http_upstream_conf_t      *ucf;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_llmroute_provider_t  *pr;

    /* see ngx_http_llmroute_failover() */
    ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);

    ucf->ignore_headers |= NGX_HTTP_UPSTREAM_IGN_XA_REDIRECT
                           |NGX_HTTP_UPSTREAM_IGN_XA_EXPIRES
                           |NGX_HTTP_UPSTREAM_IGN_XA_LIMIT_RATE
                           |NGX_HTTP_UPSTREAM_IGN_XA_BUFFERING
                           |NGX_HTTP_UPSTREAM_IGN_XA_CHARSET;

#if (NGX_HTTP_SSL)
    if (ucf->ssl_verify) {
        return;
    }
#endif

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    pr = lmcf->providers.elts;

    for (i = 0; i < lmcf->providers.nelts; i++) {
        if (pr[i].url.len > 8
            && ngx_strncasecmp(pr[i].url.data, (u_char *) "https://", 8) == 0
            && pr[i].key.len)       /* in Authorization or x-api-key */
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "llmroute: location \"%V\" sends the key of "
                               "https provider \"%V\" without "
                               "\"proxy_ssl_verify on\" (and "
                               "\"proxy_ssl_trusted_certificate\"): "
                               "anyone on the path can read it",
                               &clcf->name, &pr[i].name);
            return;
        }
    }
}


/*
 * Failover without extra configuration: the location gets
 * "proxy_intercept_errors on", "recursive_error_pages on" and
 * "error_page 429 500 502 503 504 529 = $uri$is_args$args" (for the codes
 * it does not handle itself already).  The failed attempt is redirected to
 * the same location, where the phase handler picks the next provider and
 * restores POST.
 */

static ngx_int_t
ngx_http_llmroute_failover(ngx_conf_t *cf)
{
    ngx_uint_t                         i, j;
    ngx_array_t                       *pages;
    ngx_http_err_page_t               *err, *old;
    ngx_http_upstream_conf_t          *ucf;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    /* the query string too: Claude Code's ?beta=true, Azure's api-version */
    static ngx_str_t   uri = ngx_string("$uri$is_args$args");
    /* 529: Anthropic's "overloaded" */
    static ngx_int_t   codes[] = { 429, 500, 502, 503, 504, 529 };

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /*
     * proxy's location configuration starts with its upstream one (true
     * of every nginx version): the only way to turn interception on here
     */

    ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);
    ucf->intercept_errors = 1;

    clcf->recursive_error_pages = 1;

    /* a fresh array: the current one may be the parent's */

    pages = ngx_array_create(cf->pool, 8, sizeof(ngx_http_err_page_t));
    if (pages == NULL) {
        return NGX_ERROR;
    }

    if (clcf->error_pages) {
        old = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            err = ngx_array_push(pages);
            if (err == NULL) {
                return NGX_ERROR;
            }

            *err = old[i];
        }
    }

    for (j = 0; j < sizeof(codes) / sizeof(codes[0]); j++) {
        old = pages->elts;

        for (i = 0; i < pages->nelts; i++) {
            if (old[i].status == codes[j]) {
                break;
            }
        }

        if (i < pages->nelts) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "\"error_page %i\" of this location replaces "
                               "llmroute failover for that status",
                               codes[j]);
            continue;
        }

        err = ngx_array_push(pages);
        if (err == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(err, sizeof(ngx_http_err_page_t));
        err->status = codes[j];
        err->overwrite = 0;

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &uri;
        ccv.complex_value = &err->value;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    clcf->error_pages = pages;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_init(ngx_conf_t *cf)
{
    ngx_array_t                *a;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* after access checks, before proxy_pass: the body is read here */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_llmroute_handler;

    /*
     * log phase handlers run in array order: accounting goes first, so that
     * access_log sees the settled $llmroute_cost and tokens
     */

    a = &cmcf->phases[NGX_HTTP_LOG_PHASE].handlers;

    h = ngx_array_push(a);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h = a->elts;
    ngx_memmove(&h[1], &h[0], (a->nelts - 1) * sizeof(ngx_http_handler_pt));
    h[0] = ngx_http_llmroute_log_handler;

    return ngx_http_llmroute_filter_init(cf);
}


/*
 * llmroute_provider NAME URL [key_env=VAR] [regions=a,b] [rpm=N] [tpm=N]
 *                   [concurrency=N];
 */

static char *
ngx_http_llmroute_provider(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char                        *p, *last, *start, *key;
    size_t                         n;
    ngx_int_t                      idx;
    ngx_str_t                     *value, s, region;
    ngx_uint_t                     i;
    ngx_http_llmroute_provider_t  *pr, *prs;

    value = cf->args->elts;

    if (ngx_http_llmroute_valid_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid provider name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    prs = lmcf->providers.elts;

    for (i = 0; i < lmcf->providers.nelts; i++) {
        if (prs[i].name.len == value[1].len
            && ngx_strncmp(prs[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate provider \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (lmcf->providers.nelts == NGX_HTTP_LLMROUTE_MAX_PROVIDERS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many providers, at most %d",
                           NGX_HTTP_LLMROUTE_MAX_PROVIDERS);
        return NGX_CONF_ERROR;
    }

    pr = ngx_array_push(&lmcf->providers);
    if (pr == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(pr, sizeof(ngx_http_llmroute_provider_t));

    pr->name = value[1];
    pr->url = value[2];
    pr->index = lmcf->providers.nelts - 1;

    if (lmcf->provider_file == NULL) {
        lmcf->provider_file = cf->conf_file->file.name.data;
        lmcf->provider_line = cf->conf_file->line;
    }

    /* the URL goes to proxy_pass as is; here it only has to be sane */

    p = value[2].data;
    last = p + value[2].len;

    if (value[2].len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        p += 7;

    } else if (value[2].len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        p += 8;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid provider URL \"%V\", "
                           "an http:// or https:// URL was expected",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    start = p;

    while (p < last && *p != '/' && *p != '?' && *p != '#') {
        if (*p <= ' ' || *p == '@' || *p == '"' || *p == '\\') {
            break;
        }

        p++;
    }

    if (p == start || (p < last && *p != '/')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid host in provider URL \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    for (key = p; key < last; key++) {
        if (*key <= ' ' || *key == '"' || *key == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid provider URL \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    pr->host.data = start;
    pr->host.len = p - start;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key_env=", 8) == 0) {
            pr->key_env.data = value[i].data + 8;
            pr->key_env.len = value[i].len - 8;

            /* conf strings are NUL-terminated */
            key = (u_char *) getenv((char *) pr->key_env.data);

            /* "nginx -s reload" parses the configuration too, from a
             * shell that need not hold the keys: it sends no request */

            if (ngx_process == NGX_PROCESS_SIGNALLER
                && (key == NULL || *key == '\0'))
            {
                continue;
            }

            if (pr->key_env.len == 0 || key == NULL || *key == '\0') {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "environment variable \"%V\" in \"%V\" is "
                                   "not set or empty (also declare it with "
                                   "\"env %V;\")",
                                   &pr->key_env, &value[i], &pr->key_env);
                return NGX_CONF_ERROR;
            }

            n = ngx_strlen(key);

            for (p = key; p < key + n; p++) {
                if (*p < ' ' || *p == 0x7f) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "environment variable \"%V\" has a "
                                       "control character",
                                       &pr->key_env);
                    return NGX_CONF_ERROR;
                }
            }

            pr->authorization.len = sizeof("Bearer ") - 1 + n;
            pr->authorization.data = ngx_pnalloc(cf->pool,
                                                 pr->authorization.len);
            if (pr->authorization.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memcpy(ngx_cpymem(pr->authorization.data, "Bearer ", 7),
                       key, n);

            pr->key.data = pr->authorization.data + 7;
            pr->key.len = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "format=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            idx = ngx_http_llmroute_format_by_name(&s);
            if (idx == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid format \"%V\", expected openai "
                                   "or anthropic", &value[i]);
                return NGX_CONF_ERROR;
            }

            pr->format = idx;
            continue;
        }

        if (value[i].len == 15
            && ngx_strncmp(value[i].data, "count_tokens=on", 15) == 0)
        {
            pr->count_tokens = 1;
            continue;
        }

        if (value[i].len == 16
            && ngx_strncmp(value[i].data, "count_tokens=off", 16) == 0)
        {
            pr->count_tokens = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "regions=", 8) == 0) {
            p = value[i].data + 8;
            last = value[i].data + value[i].len;

            while (p < last) {
                region.data = p;

                while (p < last && *p != ',') {
                    p++;
                }

                region.len = p - region.data;
                p++;

                idx = ngx_http_llmroute_region_index(cf, lmcf, &region);
                if (idx == NGX_ERROR) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid region in \"%V\"", &value[i]);
                    return NGX_CONF_ERROR;
                }

                pr->regions |= (uint64_t) 1 << idx;
            }

            if (pr->regions == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty region list \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        s = value[i];

        if (ngx_strncmp(s.data, "rpm=", 4) == 0
            && ngx_http_llmroute_parse_count(s.data + 4, s.len - 4, &n)
               == NGX_OK)
        {
            pr->rpm = n;
            continue;
        }

        if (ngx_strncmp(s.data, "tpm=", 4) == 0
            && ngx_http_llmroute_parse_count(s.data + 4, s.len - 4, &n)
               == NGX_OK)
        {
            pr->tpm = n;
            continue;
        }

        if (ngx_strncmp(s.data, "concurrency=", 12) == 0
            && ngx_http_llmroute_parse_count(s.data + 12, s.len - 12, &n)
               == NGX_OK)
        {
            pr->concurrency = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* a format without Bearer keys: x-api-key ($llmroute_x_api_key) only */

    if (!ngx_http_llmroute_formats[pr->format].bearer) {
        ngx_str_null(&pr->authorization);
    }

    if (pr->count_tokens
        && ngx_http_llmroute_formats[pr->format].count_tokens.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"count_tokens=on\" needs \"format=anthropic\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * llmroute_model PROVIDER ID tier=T input=USD output=USD [cached_input=USD]
 *                [cache_write=USD] [cache_ttl=TIME] [context=N] [tools]
 *                [json] [vision] [stream_usage=on|off];
 */

static char *
ngx_http_llmroute_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char                        *p;
    ngx_int_t                      tier;
    ngx_str_t                     *value, s;
    ngx_uint_t                     i, j, have_input, have_output,
                                   have_cached, have_write;
    ngx_http_llmroute_model_t     *m, *ms;
    ngx_http_llmroute_provider_t  *prs;

    value = cf->args->elts;
    prs = lmcf->providers.elts;

    for (i = 0; i < lmcf->providers.nelts; i++) {
        if (prs[i].name.len == value[1].len
            && ngx_strncmp(prs[i].name.data, value[1].data, value[1].len) == 0)
        {
            break;
        }
    }

    if (i == lmcf->providers.nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown provider \"%V\" (define it with "
                           "\"llmroute_provider\" before its models)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    for (p = value[2].data; p < value[2].data + value[2].len; p++) {
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f) {
            break;
        }
    }

    if (value[2].len == 0 || p < value[2].data + value[2].len
        || (value[2].len >= 4 && ngx_strncmp(value[2].data, "auto", 4) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model id \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (value[2].len > NGX_HTTP_LLMROUTE_MODEL_ID_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model id \"%V\" is longer than %d bytes",
                           &value[2], NGX_HTTP_LLMROUTE_MODEL_ID_MAX);
        return NGX_CONF_ERROR;
    }

    ms = lmcf->models.elts;

    for (j = 0; j < lmcf->models.nelts; j++) {
        if (ms[j].provider == i
            && ms[j].id.len == value[2].len
            && ngx_strncmp(ms[j].id.data, value[2].data, value[2].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate model \"%V\" of provider \"%V\"",
                               &value[2], &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    m = ngx_array_push(&lmcf->models);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(m, sizeof(ngx_http_llmroute_model_t));

    m->provider = i;
    m->id = value[2];
    m->tier = NGX_HTTP_LLMROUTE_TIER_UNSET;
    m->stream_usage = 1;
    m->cache_ttl = NGX_HTTP_LLMROUTE_CACHE_TTL;

    m->full.len = value[1].len + 1 + value[2].len;
    m->full.data = ngx_pnalloc(cf->pool, m->full.len);
    if (m->full.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(m->full.data, "%V/%V", &value[1], &value[2]);

    have_input = 0;
    have_output = 0;
    have_cached = 0;
    have_write = 0;

    for (i = 3; i < cf->args->nelts; i++) {
        s = value[i];

        if (ngx_strncmp(s.data, "tier=", 5) == 0) {
            tier = ngx_http_llmroute_tier_by_name(s.data + 5, s.len - 5);
            if (tier == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid tier \"%V\", expected simple, "
                                   "moderate or complex", &s);
                return NGX_CONF_ERROR;
            }

            m->tier = tier;
            continue;
        }

        if (ngx_strncmp(s.data, "input=", 6) == 0) {
            s.data += 6;
            s.len -= 6;
            have_input = 1;

            if (ngx_http_llmroute_parse_price(&s, &m->input) != NGX_OK) {
                goto invalid_price;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "output=", 7) == 0) {
            s.data += 7;
            s.len -= 7;
            have_output = 1;

            if (ngx_http_llmroute_parse_price(&s, &m->output) != NGX_OK) {
                goto invalid_price;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "cached_input=", 13) == 0) {
            s.data += 13;
            s.len -= 13;
            have_cached = 1;

            if (ngx_http_llmroute_parse_price(&s, &m->cached_input) != NGX_OK)
            {
                goto invalid_price;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "cache_write=", 12) == 0) {
            s.data += 12;
            s.len -= 12;
            have_write = 1;

            if (ngx_http_llmroute_parse_price(&s, &m->cache_write) != NGX_OK)
            {
                goto invalid_price;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "cache_ttl=", 10) == 0) {
            ngx_str_t   t;
            ngx_msec_t  ttl;

            t.data = s.data + 10;
            t.len = s.len - 10;
            ttl = ngx_parse_time(&t, 0);

            if (ttl == (ngx_msec_t) NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid cache_ttl \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            m->cache_ttl = ttl;
            continue;
        }

        if (ngx_strncmp(s.data, "context=", 8) == 0) {
            if (ngx_http_llmroute_parse_count(s.data + 8, s.len - 8,
                                              &m->context)
                != NGX_OK || m->context == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid context \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (s.len == 5 && ngx_strncmp(s.data, "tools", 5) == 0) {
            m->tools = 1;
            continue;
        }

        if (s.len == 4 && ngx_strncmp(s.data, "json", 4) == 0) {
            m->json = 1;
            continue;
        }

        if (s.len == 6 && ngx_strncmp(s.data, "vision", 6) == 0) {
            m->vision = 1;
            continue;
        }

        if (s.len == 16 && ngx_strncmp(s.data, "stream_usage=off", 16) == 0) {
            m->stream_usage = 0;
            continue;
        }

        if (s.len == 15 && ngx_strncmp(s.data, "stream_usage=on", 15) == 0) {
            m->stream_usage = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &s);
        return NGX_CONF_ERROR;
    }

    if (m->tier == NGX_HTTP_LLMROUTE_TIER_UNSET || !have_input || !have_output)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model \"%V\" needs tier=, input= and output=",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (!have_cached) {
        m->cached_input = m->input;
    }

    /* a prompt-cache write costs 1.25 x input unless told (Anthropic's) */

    if (!have_write) {
        m->cache_write = m->input + m->input / 4;
    }

    return NGX_CONF_OK;

invalid_price:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid price \"%V\", expected USD per 1M tokens "
                       "with at most 3 decimals", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_llmroute_retries(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (lcf->retries != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n > 8) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid retries \"%V\", expected 0 to 8",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->retries = n;

    return NGX_CONF_OK;
}


/* llmroute_classifier NAME=VALUE ...; weights and thresholds by name */

static char *
ngx_http_llmroute_classifier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char      *eq;
    char        *end;
    double       v;
    ngx_str_t   *value, name;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL || eq == value[i].data) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;

        /* conf strings are NUL-terminated */
        v = strtod((char *) eq + 1, &end);

        if (end == (char *) eq + 1 || *end != '\0' || v != v) {
            goto invalid;
        }

        if (ngx_http_llmroute_classifier_set(&lmcf->cat.classifier, &name, v)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown classifier feature or threshold "
                               "\"%V\"", &name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid classifier setting \"%V\", "
                       "expected name=number", &value[i]);
    return NGX_CONF_ERROR;
}


/* llmroute_output_budget simple=N moderate=N complex=N; */

static char *
ngx_http_llmroute_output_budget(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char      *eq;
    size_t       n;
    ngx_int_t    tier;
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL) {
            goto invalid;
        }

        tier = ngx_http_llmroute_tier_by_name(value[i].data,
                                              eq - value[i].data);

        if (tier == NGX_ERROR
            || ngx_http_llmroute_parse_count(eq + 1,
                                             value[i].data + value[i].len
                                             - eq - 1, &n)
               != NGX_OK)
        {
            goto invalid;
        }

        lmcf->cat.output_budget[tier] = n;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid output budget \"%V\", expected "
                       "simple=N, moderate=N or complex=N", &value[i]);
    return NGX_CONF_ERROR;
}


/* "0.14" USD per 1M tokens is 140 nano-USD per token */

ngx_int_t
ngx_http_llmroute_parse_price(ngx_str_t *s, uint64_t *price)
{
    return ngx_http_llmroute_parse_decimal(s->data, s->len, 3, price);
}


/*
 * A non-negative decimal with at most "scale" decimals, as an integer in
 * units of 10^-scale: exact, no floating point (money is counted in it).
 */

ngx_int_t
ngx_http_llmroute_parse_decimal(u_char *p, size_t len, ngx_uint_t scale,
    uint64_t *out)
{
    u_char      *last;
    uint64_t     v;
    ngx_uint_t   decimals, dot;

    last = p + len;
    v = 0;
    dot = 0;
    decimals = 0;

    if (p == last) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p == '.' && !dot) {
            dot = 1;
            continue;
        }

        if (*p < '0' || *p > '9' || decimals == scale
            || v > 1000000000000ULL)
        {
            return NGX_ERROR;
        }

        v = v * 10 + (*p - '0');
        decimals += dot;
    }

    if (dot && decimals == 0) {
        return NGX_ERROR;
    }

    while (decimals++ < scale) {
        v *= 10;
    }

    *out = v;

    return NGX_OK;
}


/* 128k = 128000, 1m = 1000000 */

static ngx_int_t
ngx_http_llmroute_parse_count(u_char *p, size_t len, size_t *n)
{
    size_t     mult;
    ngx_int_t  v;

    mult = 1;

    if (len > 1 && (p[len - 1] == 'k' || p[len - 1] == 'K')) {
        mult = 1000;
        len--;

    } else if (len > 1 && (p[len - 1] == 'm' || p[len - 1] == 'M')) {
        mult = 1000000;
        len--;
    }

    v = ngx_atoi(p, len);

    if (v == NGX_ERROR || (size_t) v > (size_t) 1 << 40) {
        return NGX_ERROR;
    }

    *n = (size_t) v * mult;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_region_index(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *name)
{
    ngx_str_t   *r;
    ngx_uint_t   i;

    if (ngx_http_llmroute_valid_name(name) != NGX_OK) {
        return NGX_ERROR;
    }

    r = lmcf->regions.elts;

    for (i = 0; i < lmcf->regions.nelts; i++) {
        if (r[i].len == name->len
            && ngx_strncasecmp(r[i].data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    if (lmcf->regions.nelts == 64) {
        return NGX_ERROR;
    }

    r = ngx_array_push(&lmcf->regions);
    if (r == NULL) {
        return NGX_ERROR;
    }

    *r = *name;

    return lmcf->regions.nelts - 1;
}


static ngx_int_t
ngx_http_llmroute_valid_name(ngx_str_t *s)
{
    u_char  *p, c;

    if (s->len == 0 || s->len > NGX_HTTP_LLMROUTE_NAME_MAX) {
        return NGX_ERROR;
    }

    for (p = s->data; p < s->data + s->len; p++) {
        c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* llmroute_format openai|anthropic|auto; */

static char *
ngx_http_llmroute_format(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    ngx_int_t   idx;
    ngx_str_t  *value;

    if (lcf->format != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 4 && ngx_strncmp(value[1].data, "auto", 4) == 0) {
        lcf->format = NGX_HTTP_LLMROUTE_FORMAT_AUTO;
        return NGX_CONF_OK;
    }

    idx = ngx_http_llmroute_format_by_name(&value[1]);
    if (idx == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid format \"%V\", expected openai, "
                           "anthropic or auto", &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->format = idx;

    return NGX_CONF_OK;
}


/*
 * llmroute_alias PATTERN TARGET; the pattern is a model name, exact or
 * with a trailing "*"; the target is checked against the catalog once all
 * of it is read (ngx_http_llmroute_check_aliases()).
 */

static char *
ngx_http_llmroute_alias(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char                     *p;
    ngx_str_t                  *value;
    ngx_http_llmroute_alias_t  *a;

    value = cf->args->elts;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f
            || (*p == '*' && p != value[1].data + value[1].len - 1))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid alias pattern \"%V\" (a model name, "
                               "a \"*\" only at its end)", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[2].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty alias pattern or "
                           "target");
        return NGX_CONF_ERROR;
    }

    a = ngx_array_push(&lmcf->aliases);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    a->pattern = value[1];
    a->prefix = value[1].data[value[1].len - 1] == '*';
    a->pattern.len -= a->prefix;
    a->target = value[2];
    a->file = cf->conf_file->file.name.data;
    a->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* every alias target must be auto, auto:<tier>, or a catalog model */

static char *
ngx_http_llmroute_check_aliases(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t                  i, f, found;
    ngx_http_llmroute_want_t    want;
    ngx_http_llmroute_alias_t  *a;

    a = lmcf->aliases.elts;

    for (i = 0; i < lmcf->aliases.nelts; i++) {
        found = 0;

        for (f = 0; f < NGX_HTTP_LLMROUTE_NFORMATS && !found; f++) {
            ngx_memzero(&want, sizeof(ngx_http_llmroute_want_t));
            want.format = f;

            if (ngx_http_llmroute_resolve_model(&lmcf->cat, &a[i].target,
                                                &want)
                == NGX_OK)
            {
                found = 1;
            }
        }

        if (!found) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"llmroute_alias\" target \"%V\" is not auto, "
                          "auto:<tier> or a catalog model in %s:%ui",
                          &a[i].target, a[i].file, a[i].line);
            return NGX_CONF_ERROR;
        }

    }

    return NGX_CONF_OK;
}


/* the first alias matching a requested model, or NULL */

ngx_str_t *
ngx_http_llmroute_find_alias(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *model)
{
    ngx_uint_t                  i;
    ngx_http_llmroute_alias_t  *a;

    a = lmcf->aliases.elts;

    for (i = 0; i < lmcf->aliases.nelts; i++) {
        if (a[i].prefix ? model->len >= a[i].pattern.len
                          : model->len == a[i].pattern.len)
        {
            if (ngx_strncmp(model->data, a[i].pattern.data,
                            a[i].pattern.len) == 0)
            {
                return &a[i].target;
            }
        }
    }

    return NULL;
}


/*
 * The last attempt of an Anthropic request: the provider's own error goes
 * to the client unchanged instead of being intercepted for failover.  The
 * interception is a flag of the proxy location's upstream configuration;
 * this request gets a copy of it without.  nginx offers no per-request
 * hook between proxy_pass setting u->conf and reading the response but
 * the evaluation of the proxy_set_header values (Host, the key headers),
 * hence this call from their variables.
 */

void
ngx_http_llmroute_pass_errors(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_upstream_conf_t  *conf;

    if (!ctx->pass_errors || r->upstream == NULL
        || r->upstream->conf == NULL || !r->upstream->conf->intercept_errors)
    {
        return;
    }

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return;     /* the gateway's own 502 then */
    }

    *conf = *r->upstream->conf;
    conf->intercept_errors = 0;
    r->upstream->conf = conf;
}
