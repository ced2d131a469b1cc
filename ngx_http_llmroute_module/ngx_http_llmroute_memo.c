
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * A result is kept with its pieces, each as a 4-byte length and its
 * bytes: a key matches only the same pieces, the same bytes in the same
 * order, so what it returns is what computing it again would give.  The
 * memo is the worker's own (static, one request at a time); its slots
 * take memory only once written.
 */


#include <ngx_http_llmroute_memo.h>


/* the result kept for the same pieces, or NULL */

u_char *
ngx_http_llmroute_memo_find(ngx_http_llmroute_memo_t *memo,
    ngx_http_llmroute_memo_key_t *key)
{
    u_char                         *p;
    uint32_t                        len;
    uint64_t                        a, b;
    ngx_uint_t                      i, k, slot;
    ngx_http_llmroute_memo_slot_t  *s;

    if (key->full || key->n == 0) {
        return NULL;
    }

    /*
     * no two slots keep the same pieces (one is kept only when none had
     * them): the slot found last, the one an agent's next turn finds, is
     * looked at first
     */

    for (i = 0; i < NGX_HTTP_LLMROUTE_MEMO_SLOTS; i++) {
        slot = (memo->last + i) % NGX_HTTP_LLMROUTE_MEMO_SLOTS;
        s = &memo->slot[slot];

        if (s->size != key->size) {
            continue;
        }

        p = s->bytes;

        for (k = 0; k < key->n; k++) {
            ngx_memcpy(&len, p, 4);

            if (len != key->len[k]) {
                break;
            }

            len &= ~NGX_HTTP_LLMROUTE_MEMO_MARK;

            /* a number (a part's length) compared inline, not by a call */

            if (len == sizeof(uint64_t)) {
                ngx_memcpy(&a, p + 4, sizeof(uint64_t));
                ngx_memcpy(&b, key->data[k], sizeof(uint64_t));

                if (a != b) {
                    break;
                }

            } else if (ngx_memcmp(p + 4, key->data[k], len) != 0) {
                break;
            }

            p += 4 + len;
        }

        if (k == key->n) {
            memo->last = slot;
            return s->result;
        }
    }

    return NULL;
}


/* the result computed from the key's pieces, in the oldest slot */

void
ngx_http_llmroute_memo_keep(ngx_http_llmroute_memo_t *memo,
    ngx_http_llmroute_memo_key_t *key, void *result, size_t size)
{
    u_char                         *p;
    uint32_t                        len;
    ngx_uint_t                      k;
    ngx_http_llmroute_memo_slot_t  *s;

    if (key->full || key->n == 0 || size > NGX_HTTP_LLMROUTE_MEMO_RESULT) {
        return;
    }

    s = &memo->slot[memo->next];
    memo->last = memo->next;
    memo->next = (memo->next + 1) % NGX_HTTP_LLMROUTE_MEMO_SLOTS;

    p = s->bytes;

    for (k = 0; k < key->n; k++) {
        ngx_memcpy(p, &key->len[k], 4);

        len = key->len[k] & ~NGX_HTTP_LLMROUTE_MEMO_MARK;
        p = ngx_cpymem(p + 4, key->data[k], len);
    }

    s->size = key->size;
    ngx_memcpy(s->result, result, size);
}
