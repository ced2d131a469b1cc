
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The module's error responses, in the body shape of the request's wire
 * format (ngx_http_llmroute_format.c), with Retry-After and rate headers.
 */


#include <ngx_http_llmroute_module.h>


static ngx_int_t ngx_http_llmroute_error_header(ngx_http_request_t *r,
    const char *key, ngx_uint_t value);


static ngx_int_t
ngx_http_llmroute_error_header(ngx_http_request_t *r, const char *key,
    ngx_uint_t value)
{
    ngx_str_t  v;

    v.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    v.len = ngx_sprintf(v.data, "%ui", value) - v.data;

    return ngx_http_llmroute_add_header(r, key, &v);
}


/*
 * Sends a module error and finalizes the request; message == NULL sends
 * the body already prepared in ctx->error.  Returns NGX_DONE for phase handlers.
 */

ngx_int_t
ngx_http_llmroute_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param)
{
    ngx_int_t                 rc;
    ngx_str_t                 msg;
    ngx_buf_t                *b;
    ngx_chain_t               out;
    ngx_http_llmroute_ctx_t  *ctx;

    static ngx_str_t  post = ngx_string("POST");

    ctx = ngx_http_llmroute_get_ctx(r, 1);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->reject = ngx_http_llmroute_reject_index(code);

    if (message != NULL) {
        msg.data = (u_char *) message;
        msg.len = ngx_strlen(message);

        if (ngx_http_llmroute_error_json(r, status, code, &msg, param,
                                         &ctx->error)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->error_sent = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = ctx->error.len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE
        || status == NGX_HTTP_TOO_MANY_REQUESTS)
    {
        if (ngx_http_llmroute_error_header(r, "Retry-After",
                                           ngx_max(ctx->retry_after, 1))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (status == NGX_HTTP_TOO_MANY_REQUESTS && ctx->rl_limit) {
        if (ngx_http_llmroute_error_header(r, "x-ratelimit-limit-requests",
                                           ctx->rl_limit)
            != NGX_OK
            || ngx_http_llmroute_error_header(r,
                   "x-ratelimit-remaining-requests", ctx->rl_remaining)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (status == NGX_HTTP_NOT_ALLOWED
        && ngx_http_llmroute_add_header(r, "Allow", &post) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    b->pos = ctx->error.data;
    b->last = ctx->error.data + ctx->error.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}
