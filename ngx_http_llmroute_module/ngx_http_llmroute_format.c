
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Wire formats.  A request's body goes to a provider as it came, with only
 * "model" rewritten: so a location routes it only among providers of its
 * own format, and what differs between formats lives here, behind the
 * table the handler, the filters and the accounting call: the body parser,
 * the usage scanner's flavour, the error body, the key header and whether
 * a session's prompt_cache_key may be added.
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_http_llmroute_usage.h>


static ngx_int_t ngx_http_llmroute_openai_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    const char *param, ngx_str_t *out);
static ngx_int_t ngx_http_llmroute_anthropic_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    const char *param, ngx_str_t *out);
static ngx_uint_t ngx_http_llmroute_uri_ends(ngx_str_t *uri, ngx_str_t *end);


/* error "type" by status; a 4xx not listed is an invalid request */
typedef struct {
    ngx_uint_t                      status;
    const char                     *type;
} ngx_http_llmroute_error_type_t;


static ngx_http_llmroute_error_type_t  ngx_http_llmroute_openai_types[] = {
    { NGX_HTTP_UNAUTHORIZED, "authentication_error" },
    { 402, "insufficient_quota" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error" },
    { 0, NULL }
};

/* as Anthropic's API uses them */
static ngx_http_llmroute_error_type_t  ngx_http_llmroute_anthropic_types[] = {
    { NGX_HTTP_UNAUTHORIZED, "authentication_error" },
    { 402, "billing_error" },
    { NGX_HTTP_FORBIDDEN, "permission_error" },
    { NGX_HTTP_NOT_FOUND, "not_found_error" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "request_too_large" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "overloaded_error" },
    { 529, "overloaded_error" },
    { 0, NULL }
};


static const char *
ngx_http_llmroute_error_type(ngx_http_llmroute_error_type_t *t,
    ngx_uint_t status, const char *server)
{
    for ( /* void */ ; t->type; t++) {
        if (t->status == status) {
            return t->type;
        }
    }

    return status >= 500 ? server : "invalid_request_error";
}


static ngx_str_t  ngx_http_llmroute_anthropic_uris[] = {
    ngx_string("/messages"), ngx_string("/messages/count_tokens"),
    ngx_null_string
};


/* indexed by NGX_HTTP_LLMROUTE_FORMAT_*; the first is the default */

ngx_http_llmroute_format_t  ngx_http_llmroute_formats[] = {

    { ngx_string("openai"),
      ngx_http_llmroute_parse,
      ngx_http_llmroute_openai_error,
      0,
      NULL,
      ngx_null_string,
      1, 1, 0, 0, 1 },

    /*
     * usage input_tokens leave the cache reads and writes out; Claude
     * Code's recovery matches on the providers' own errors
     */

    { ngx_string("anthropic"),
      ngx_http_llmroute_parse_anthropic,
      ngx_http_llmroute_anthropic_error,
      NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC,
      ngx_http_llmroute_anthropic_uris,
      ngx_string("/messages/count_tokens"),
      0, 0, 1, 1, 0 }
};


ngx_int_t
ngx_http_llmroute_format_by_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_LLMROUTE_NFORMATS; i++) {
        if (ngx_http_llmroute_formats[i].name.len == name->len
            && ngx_strncmp(ngx_http_llmroute_formats[i].name.data,
                           name->data, name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/*
 * The request's format: "llmroute_format" of the location, else (auto)
 * its URI: Anthropic's Messages API paths end in "/messages" or
 * "/messages/count_tokens"; everything else is OpenAI's.
 */

ngx_uint_t
ngx_http_llmroute_request_format(ngx_http_request_t *r)
{
    ngx_str_t                     *u;
    ngx_uint_t                     f;
    ngx_http_llmroute_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    if (lcf->format != NGX_CONF_UNSET_UINT
        && lcf->format != NGX_HTTP_LLMROUTE_FORMAT_AUTO)
    {
        return lcf->format;
    }

    for (f = 0; f < NGX_HTTP_LLMROUTE_NFORMATS; f++) {
        for (u = ngx_http_llmroute_formats[f].uris; u && u->len; u++) {
            if (ngx_http_llmroute_uri_ends(&r->uri, u)) {
                return f;
            }
        }
    }

    return NGX_HTTP_LLMROUTE_FORMAT_OPENAI;
}


/* a token count request of the format (answered without a provider) */

ngx_uint_t
ngx_http_llmroute_is_count_tokens(ngx_http_request_t *r, ngx_uint_t format)
{
    ngx_str_t  *end;

    end = &ngx_http_llmroute_formats[format].count_tokens;

    return end->len && ngx_http_llmroute_uri_ends(&r->uri, end);
}


static ngx_uint_t
ngx_http_llmroute_uri_ends(ngx_str_t *uri, ngx_str_t *end)
{
    return uri->len >= end->len
           && ngx_memcmp(uri->data + uri->len - end->len, end->data,
                         end->len) == 0;
}


/* the error body of the request's format */

ngx_int_t
ngx_http_llmroute_error_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message, const char *param, ngx_str_t *out)
{
    ngx_uint_t  format;

    format = ngx_http_llmroute_request_format(r);

    return ngx_http_llmroute_formats[format].error_json(r, status, code,
                                                        message, param, out);
}


/*
 * OpenAI: {"error":{"message":"...","type":"...","param":null,
 * "code":"..."}} so that OpenAI SDKs raise their typed errors.
 */

static ngx_int_t
ngx_http_llmroute_openai_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message, const char *param, ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    const char  *type;

    type = ngx_http_llmroute_error_type(ngx_http_llmroute_openai_types,
                                        status, "server_error");

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
 * Anthropic: {"type":"error","error":{"type":"...","message":"..."}},
 * the type by status as Anthropic's API uses them, so that its SDKs raise
 * their typed errors and Claude Code retries what it should.  The
 * module's own code and the member at fault lead the message.
 */

static ngx_int_t
ngx_http_llmroute_anthropic_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message, const char *param, ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    const char  *type;

    type = ngx_http_llmroute_error_type(ngx_http_llmroute_anthropic_types,
                                        status, "api_error");

    len = sizeof("{\"type\":\"error\",\"error\":{\"type\":\"\","
                 "\"message\":\"\"}}\n") - 1
          + ngx_strlen(type) + ngx_strlen(code) + sizeof(": ") - 1
          + (param ? ngx_strlen(param) + sizeof(" ()") - 1 : 0)
          + message->len + ngx_escape_json(NULL, message->data, message->len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_sprintf(p, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                       "\"message\":\"%s", type, code);

    if (param) {
        p = ngx_sprintf(p, " (%s)", param);
    }

    p = ngx_cpymem(p, ": ", 2);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_cpymem(p, "\"}}\n", 4);

    out->len = p - out->data;

    return NGX_OK;
}
