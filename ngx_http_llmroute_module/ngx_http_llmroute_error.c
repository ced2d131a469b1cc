
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * OpenAI-style error responses:
 * {"error":{"message":"...","type":"...","param":null,"code":"..."}}
 * so that OpenAI SDKs raise their typed errors.
 */


#include <ngx_http_llmroute_module.h>


static const char *ngx_http_llmroute_error_type(ngx_uint_t status);
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


static const char *
ngx_http_llmroute_error_type(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        return "authentication_error";
    case 402:
        return "insufficient_quota";
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}


ngx_int_t
ngx_http_llmroute_error_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message, const char *param, ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    const char  *type;

    type = ngx_http_llmroute_error_type(status);

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":\"\",\"param\":,"
                 "\"code\":\"\"}}\n") - 1
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + ngx_strlen(type) + ngx_strlen(code)
          + (param ? ngx_strlen(param) + 2 : 4);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_sprintf(p, "\",\"type\":\"%s\",\"param\":", type);

    if (param) {
        p = ngx_sprintf(p, "\"%s\"", param);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, ",\"code\":\"%s\"}}\n", code);

    out->len = p - out->data;

    return NGX_OK;
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
