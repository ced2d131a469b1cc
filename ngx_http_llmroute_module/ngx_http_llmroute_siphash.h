
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * SipHash-1-3 with a 128-bit result (Aumasson and Bernstein; 1-3 is the
 * variant Rust's and CPython's hash tables use): a keyed hash fed in
 * pieces, about three times cheaper than MD5 per byte.
 */


#ifndef _NGX_HTTP_LLMROUTE_SIPHASH_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_SIPHASH_H_INCLUDED_


#include <ngx_http_llmroute_core.h>


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


#define NGX_HTTP_LLMROUTE_SIPHASH_KEY  16
#define NGX_HTTP_LLMROUTE_SIPHASH_LEN  16


typedef struct {
    uint64_t  v[4];
    uint64_t  tail;         /* the bytes short of a word, first lowest */
    size_t    len;          /* bytes fed so far */
} ngx_http_llmroute_siphash_t;


void ngx_http_llmroute_siphash_init(ngx_http_llmroute_siphash_t *sh,
    const u_char *key);
void ngx_http_llmroute_siphash_update(ngx_http_llmroute_siphash_t *sh,
    const void *data, size_t len);
void ngx_http_llmroute_siphash_final(ngx_http_llmroute_siphash_t *sh,
    u_char *out);


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_SIPHASH_H_INCLUDED_ */
