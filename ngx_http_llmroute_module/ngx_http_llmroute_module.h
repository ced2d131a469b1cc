
/*
 * Copyright (C) ngx_http_llmroute_module authors
 */


#ifndef _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ngx_http_llmroute_core.h>


typedef struct {
    ngx_http_llmroute_catalog_t     cat;
    ngx_array_t                     providers;  /* llmroute_provider_t */
    ngx_array_t                     models;     /* llmroute_model_t */
    ngx_array_t                     regions;    /* ngx_str_t */
    ngx_shm_zone_t                 *shm_zone;
    u_char                         *provider_file;  /* for "no zone" */
    ngx_uint_t                      provider_line;
} ngx_http_llmroute_main_conf_t;


typedef struct {
    ngx_flag_t                      enable;
    ngx_flag_t                      headers;
    ngx_uint_t                      retries;
    ngx_http_complex_value_t       *region;
} ngx_http_llmroute_loc_conf_t;


typedef struct {
    ngx_http_llmroute_req_t         req;
    ngx_http_llmroute_want_t        want;
    ngx_http_llmroute_choice_t      choice;

    ngx_uint_t                      tier;       /* the request's tier */
    ngx_http_llmroute_model_t      *model;
    ngx_http_llmroute_provider_t   *provider;
    ngx_uint_t                      attempts;

    u_char                          reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    size_t                          reason_len;

    ngx_str_t                       error;      /* our JSON error body */

    unsigned                        waiting_body:1;
    unsigned                        body_done:1;
    unsigned                        decided:1;
    unsigned                        error_sent:1;
    unsigned                        replace_body:1;
} ngx_http_llmroute_ctx_t;


ngx_http_llmroute_ctx_t *ngx_http_llmroute_get_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
ngx_int_t ngx_http_llmroute_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_llmroute_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *param);
ngx_int_t ngx_http_llmroute_error_json(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    const char *param, ngx_str_t *out);
ngx_int_t ngx_http_llmroute_filter_init(ngx_conf_t *cf);

char *ngx_http_llmroute_models(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

char *ngx_http_llmroute_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


extern ngx_module_t  ngx_http_llmroute_module;


#endif /* _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_ */
