
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * A worker's memo of what was computed from pieces of a request's bytes
 * (the session key's SipHash of a prompt's prefix, the scaffold's levels):
 * the pieces are kept whole, and a request whose pieces are the same bytes
 * gets the result back without hashing them again.  An agent re-sends the
 * same prefix every turn: comparing 4 KB costs a tenth of hashing it.
 * What is kept is the worker's own memory, as the request bodies were:
 * never shared, logged or sent anywhere.
 */


#ifndef _NGX_HTTP_LLMROUTE_MEMO_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_MEMO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


/* pieces of one key, at most; bytes kept per result, at most */
#define NGX_HTTP_LLMROUTE_MEMO_PIECES   48
#define NGX_HTTP_LLMROUTE_MEMO_BYTES    16384

/* results kept per memo; the oldest goes */
#define NGX_HTTP_LLMROUTE_MEMO_SLOTS    16

/* a result's bytes, at most (a larger one is computed, never kept) */
#define NGX_HTTP_LLMROUTE_MEMO_RESULT   128

/* a piece's length with this bit set: a marker, apart from the bytes */
#define NGX_HTTP_LLMROUTE_MEMO_MARK     0x80000000


typedef struct {
    u_char                     *data[NGX_HTTP_LLMROUTE_MEMO_PIECES];
    uint32_t                    len[NGX_HTTP_LLMROUTE_MEMO_PIECES];
    uint64_t                    words[NGX_HTTP_LLMROUTE_MEMO_PIECES];
    ngx_uint_t                  n;
    size_t                      size;       /* as kept: length words too */
    unsigned                    full:1;     /* too many or too long */
} ngx_http_llmroute_memo_key_t;


typedef struct {
    size_t                      size;       /* 0: empty */
    u_char                      result[NGX_HTTP_LLMROUTE_MEMO_RESULT];
    u_char                      bytes[NGX_HTTP_LLMROUTE_MEMO_BYTES];
} ngx_http_llmroute_memo_slot_t;


typedef struct {
    ngx_http_llmroute_memo_slot_t   slot[NGX_HTTP_LLMROUTE_MEMO_SLOTS];
    ngx_uint_t                      next;
    ngx_uint_t                      last;   /* found or kept last: looked
                                               at first */
} ngx_http_llmroute_memo_t;


u_char *ngx_http_llmroute_memo_find(ngx_http_llmroute_memo_t *memo,
    ngx_http_llmroute_memo_key_t *key);
void ngx_http_llmroute_memo_keep(ngx_http_llmroute_memo_t *memo,
    ngx_http_llmroute_memo_key_t *key, void *result, size_t size);


static ngx_inline void
ngx_http_llmroute_memo_start(ngx_http_llmroute_memo_key_t *key)
{
    key->n = 0;
    key->size = 0;
    key->full = 0;
}


/* a piece more for the key; too many or too long: the key is not kept */

static ngx_inline void
ngx_http_llmroute_memo_add(ngx_http_llmroute_memo_key_t *key, u_char *data,
    size_t len, ngx_uint_t mark)
{
    if (key->full) {
        return;
    }

    if (key->n == NGX_HTTP_LLMROUTE_MEMO_PIECES
        || len >= NGX_HTTP_LLMROUTE_MEMO_BYTES
        || key->size + 4 + len > NGX_HTTP_LLMROUTE_MEMO_BYTES)
    {
        key->full = 1;
        return;
    }

    key->data[key->n] = data;
    key->len[key->n] = (uint32_t) len | (mark ? NGX_HTTP_LLMROUTE_MEMO_MARK
                                              : 0);
    key->n++;
    key->size += 4 + len;
}


/* a number as a piece: the key keeps its 8 bytes, so callers need not */

static ngx_inline void
ngx_http_llmroute_memo_add_word(ngx_http_llmroute_memo_key_t *key,
    uint64_t w, ngx_uint_t mark)
{
    if (key->n == NGX_HTTP_LLMROUTE_MEMO_PIECES) {
        key->full = 1;
        return;
    }

    key->words[key->n] = w;
    ngx_http_llmroute_memo_add(key, (u_char *) &key->words[key->n],
                               sizeof(uint64_t), mark);
}


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_MEMO_H_INCLUDED_ */
