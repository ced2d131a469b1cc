
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Response filters: X-LLMRoute-* headers on routed responses, and nginx's
 * own HTML error pages (413 from client_max_body_size, 400 on a broken
 * chunked body...) turned into OpenAI-style JSON in llmroute locations.
 */


#include <ngx_http_llmroute_module.h>


static ngx_int_t ngx_http_llmroute_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llmroute_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llmroute_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
static ngx_int_t ngx_http_llmroute_json_error_page(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_llmroute_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llmroute_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llmroute_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_header_filter(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_str_t                      v;
    ngx_http_llmroute_ctx_t       *ctx;
    ngx_http_llmroute_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    if (!lcf->enable || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx != NULL && ctx->error_sent) {
        return ngx_http_next_header_filter(r);
    }

    /* nginx's own error pages: no provider response behind them */

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST
        && (r->upstream == NULL || r->upstream->headers_in.status_n == 0))
    {
        ctx = ngx_http_llmroute_get_ctx(r, 1);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_llmroute_json_error_page(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL || !ctx->decided || !lcf->headers) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_llmroute_add_header(r, "X-LLMRoute-Provider",
                                     &ctx->provider->name) != NGX_OK
        || ngx_http_llmroute_add_header(r, "X-LLMRoute-Model",
                                        &ctx->model->id) != NGX_OK
        || ngx_http_llmroute_add_header(r, "X-LLMRoute-Tier",
                                        &ngx_http_llmroute_tier_names[ctx->tier])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%ui", ctx->attempts) - p;

    if (ngx_http_llmroute_add_header(r, "X-LLMRoute-Attempts", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llmroute_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                *b;
    ngx_uint_t                last;
    ngx_chain_t              *cl, out;
    ngx_http_llmroute_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llmroute_module);

    if (ctx == NULL || !ctx->replace_body) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's HTML page, send the JSON body at its end */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    ctx->replace_body = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error.data;
    b->last = ctx->error.data + ctx->error.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_llmroute_json_error_page(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_str_t    msg;
    const char  *code;

    switch (r->headers_out.status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large";
        ngx_str_set(&msg, "request body is larger than this gateway accepts "
                          "(client_max_body_size)");
        break;

    case NGX_HTTP_BAD_REQUEST:
        code = "invalid_request";
        ngx_str_set(&msg, "malformed HTTP request or request body");
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        ngx_str_set(&msg, "the client did not send the request body in time");
        break;

    case NGX_HTTP_NOT_ALLOWED:
        code = "method_not_allowed";
        ngx_str_set(&msg, "method not allowed");
        break;

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        code = "all_providers_failed";
        ngx_str_set(&msg, "the provider could not be reached or did not "
                          "answer in time");
        break;

    default:
        if (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            code = "internal_error";
            ngx_str_set(&msg, "the gateway failed to process the request");

        } else {
            code = "invalid_request";
            ngx_str_set(&msg, "the request was refused");
        }
    }

    if (ngx_http_llmroute_error_json(r, r->headers_out.status, code, &msg,
                                     NULL, &ctx->error)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->replace_body = 1;
    ctx->reject = ngx_http_llmroute_reject_index(code);

    r->headers_out.content_length_n = ctx->error.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}
