
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * GET /v1/models: the catalog in OpenAI's list format, with the routing
 * aliases ("auto", "auto:<tier>") clients may send; in Anthropic's list
 * format when the request carries "anthropic-version" (Claude Code's model
 * picker), with the models of Anthropic-format providers.
 */


#include <ngx_http_llmroute_module.h>


static ngx_int_t ngx_http_llmroute_models_handler(ngx_http_request_t *r);
static u_char *ngx_http_llmroute_models_entry(u_char *p, ngx_str_t *id,
    ngx_str_t *owner, ngx_uint_t first);
static u_char *ngx_http_llmroute_models_anthropic(u_char *p, ngx_str_t *id,
    ngx_uint_t first);


char *
ngx_http_llmroute_models(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_llmroute_models_handler;

    /* not a chat endpoint, even under "llmroute on" at server level */
    lcf->enable = 0;

    return NGX_CONF_OK;
}


#define NGX_HTTP_LLMROUTE_MODEL_ENTRY                                         \
    ",{\"id\":\"\",\"object\":\"model\",\"created\":0,\"owned_by\":\"\"}"


static ngx_int_t
ngx_http_llmroute_models_handler(ngx_http_request_t *r)
{
    u_char                         *p;
    size_t                          len;
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_str_t                       id, owner;
    ngx_uint_t                      i, j, first, anthropic, json;
    ngx_chain_t                     out;
    ngx_http_llmroute_model_t      *m;
    ngx_http_llmroute_catalog_t    *cat;
    ngx_http_llmroute_main_conf_t  *lmcf;

    static ngx_str_t  gateway = ngx_string("llmroute");
    static ngx_str_t  aliases[] = {
        ngx_string("auto"),
        ngx_string("auto:simple"),
        ngx_string("auto:moderate"),
        ngx_string("auto:complex")
    };

    rc = ngx_http_llmroute_read_only(r, &json);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    cat = &lmcf->cat;
    m = cat->models;

    anthropic = ngx_http_llmroute_find_header(&r->headers_in.headers,
                                              "anthropic-version")
                != NULL;

    len = sizeof("{\"object\":\"list\",\"data\":[]}\n")
          + sizeof(",\"has_more\":false,\"first_id\":\"auto\",\"last_id\":\"\"")
          + (anthropic ? 256 + cat->nmodels * 64 : 0);

    for (i = 0; i < 4; i++) {
        len += sizeof(NGX_HTTP_LLMROUTE_MODEL_ENTRY) + aliases[i].len
               + gateway.len;
    }

    for (i = 0; i < cat->nmodels; i++) {
        len += 2 * (sizeof(NGX_HTTP_LLMROUTE_MODEL_ENTRY) + m[i].full.len
                    + cat->providers[m[i].provider].name.len);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = p;

    if (anthropic) {
        p = ngx_cpymem(p, "{\"data\":[", sizeof("{\"data\":[") - 1);

        for (i = 0; i < 4; i++) {
            p = ngx_http_llmroute_models_anthropic(p, &aliases[i], i == 0);
        }

        id = aliases[0];

        for (i = 0; i < cat->nmodels; i++) {
            if (cat->providers[m[i].provider].format
                != NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC)
            {
                continue;
            }

            p = ngx_http_llmroute_models_anthropic(p, &m[i].full, 0);
            id = m[i].full;
        }

        p = ngx_sprintf(p, "],\"has_more\":false,\"first_id\":\"%V\","
                           "\"last_id\":\"%V\"}\n", &aliases[0], &id);
        goto send;
    }

    p = ngx_cpymem(p, "{\"object\":\"list\",\"data\":[",
                   sizeof("{\"object\":\"list\",\"data\":[") - 1);

    first = 1;

    for (i = 0; i < 4; i++) {
        p = ngx_http_llmroute_models_entry(p, &aliases[i], &gateway, first);
        first = 0;
    }

    /* each id once (owned by its first provider), then provider/id pins */

    for (i = 0; i < cat->nmodels; i++) {
        for (j = 0; j < i; j++) {
            if (m[j].id.len == m[i].id.len
                && ngx_strncmp(m[j].id.data, m[i].id.data, m[i].id.len) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        owner = cat->providers[m[i].provider].name;
        p = ngx_http_llmroute_models_entry(p, &m[i].id, &owner, 0);
    }

    for (i = 0; i < cat->nmodels; i++) {
        id = m[i].full;
        owner = cat->providers[m[i].provider].name;
        p = ngx_http_llmroute_models_entry(p, &id, &owner, 0);
    }

    p = ngx_cpymem(p, "]}\n", 3);

send:

    b->last = p;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_llmroute_models_entry(u_char *p, ngx_str_t *id, ngx_str_t *owner,
    ngx_uint_t first)
{
    if (!first) {
        *p++ = ',';
    }

    return ngx_sprintf(p, "{\"id\":\"%V\",\"object\":\"model\",\"created\":0,"
                          "\"owned_by\":\"%V\"}", id, owner);
}


static u_char *
ngx_http_llmroute_models_anthropic(u_char *p, ngx_str_t *id, ngx_uint_t first)
{
    if (!first) {
        *p++ = ',';
    }

    return ngx_sprintf(p, "{\"type\":\"model\",\"id\":\"%V\","
                          "\"display_name\":\"%V\","
                          "\"created_at\":\"1970-01-01T00:00:00Z\"}",
                       id, id);
}
