
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Placeholder classifier (prompt size only); replaced by the feature-based
 * one.
 */


#include <ngx_http_llmroute_core.h>


void
ngx_http_llmroute_classifier_init(ngx_http_llmroute_classifier_t *cl)
{
    ngx_memzero(cl, sizeof(ngx_http_llmroute_classifier_t));
    cl->moderate = 500;
    cl->complex = 3000;
}


ngx_int_t
ngx_http_llmroute_classifier_set(ngx_http_llmroute_classifier_t *cl,
    ngx_str_t *name, double value)
{
    if (name->len == 8 && ngx_memcmp(name->data, "moderate", 8) == 0) {
        cl->moderate = value;
        return NGX_OK;
    }

    if (name->len == 7 && ngx_memcmp(name->data, "complex", 7) == 0) {
        cl->complex = value;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_uint_t
ngx_http_llmroute_classify(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_req_t *req, u_char *reason, size_t size,
    size_t *reason_len)
{
    double      score;
    ngx_uint_t  tier;

    score = (double) req->prompt_tokens;
    tier = score >= cl->complex ? NGX_HTTP_LLMROUTE_TIER_COMPLEX
           : score >= cl->moderate ? NGX_HTTP_LLMROUTE_TIER_MODERATE
           : NGX_HTTP_LLMROUTE_TIER_SIMPLE;

    *reason_len = snprintf((char *) reason, size, "tokens=%zu",
                           req->prompt_tokens);
    if (*reason_len >= size) {
        *reason_len = size - 1;
    }

    return tier;
}
