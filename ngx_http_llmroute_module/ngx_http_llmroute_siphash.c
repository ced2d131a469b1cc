
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * SipHash-1-3, 128-bit result: one round per 8-byte word, three to
 * finalize each half of the result.  Words are little-endian whatever the
 * machine's byte order, so every node of a cluster gets the same hash.
 */


#include <ngx_http_llmroute_siphash.h>


#define ngx_http_llmroute_siphash_rotl(x, b)                                \
    (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_llmroute_siphash_round(v)                                  \
    v[0] += v[1];                                                            \
    v[1] = ngx_http_llmroute_siphash_rotl(v[1], 13);                         \
    v[1] ^= v[0];                                                            \
    v[0] = ngx_http_llmroute_siphash_rotl(v[0], 32);                         \
    v[2] += v[3];                                                            \
    v[3] = ngx_http_llmroute_siphash_rotl(v[3], 16);                         \
    v[3] ^= v[2];                                                            \
    v[0] += v[3];                                                            \
    v[3] = ngx_http_llmroute_siphash_rotl(v[3], 21);                         \
    v[3] ^= v[0];                                                            \
    v[2] += v[1];                                                            \
    v[1] = ngx_http_llmroute_siphash_rotl(v[1], 17);                         \
    v[1] ^= v[2];                                                            \
    v[2] = ngx_http_llmroute_siphash_rotl(v[2], 32)


static void
ngx_http_llmroute_siphash_store(u_char *p, uint64_t w)
{
#if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    w = __builtin_bswap64(w);
#endif

    ngx_memcpy(p, &w, 8);
}


/*
 * n < 8 bytes at p as the low bytes of a word, first lowest: two loads
 * that may overlap (the same bytes land in the same place), not a loop
 */

static inline uint64_t
ngx_http_llmroute_siphash_bytes(const u_char *p, size_t n)
{
    uint32_t  lo, hi;

    if (n >= 4) {
        ngx_memcpy(&lo, p, 4);
        ngx_memcpy(&hi, p + n - 4, 4);

#if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif

        return lo | (uint64_t) hi << (8 * (n - 4));
    }

    if (n == 0) {
        return 0;
    }

    return p[0] | (uint64_t) p[n >> 1] << (8 * (n >> 1))
           | (uint64_t) p[n - 1] << (8 * (n - 1));
}


void
ngx_http_llmroute_siphash_init(ngx_http_llmroute_siphash_t *sh,
    const u_char *key)
{
    uint64_t  k0, k1;

    k0 = ngx_http_llmroute_le64(key);
    k1 = ngx_http_llmroute_le64(key + 8);

    sh->v[0] = k0 ^ 0x736f6d6570736575ULL;
    sh->v[1] = k1 ^ 0x646f72616e646f6dULL ^ 0xee;      /* 128-bit result */
    sh->v[2] = k0 ^ 0x6c7967656e657261ULL;
    sh->v[3] = k1 ^ 0x7465646279746573ULL;
    sh->tail = 0;
    sh->len = 0;
}


void
ngx_http_llmroute_siphash_update(ngx_http_llmroute_siphash_t *sh,
    const void *data, size_t len)
{
    size_t         fill, need, words;
    uint64_t       m, v[4];
    const u_char  *p;

    p = data;
    fill = sh->len & 7;

    if (fill) {

        /* the word a previous piece began: still short of it */

        need = 8 - fill;

        if (len < need) {
            sh->tail |= ngx_http_llmroute_siphash_bytes(p, len) << (8 * fill);
            sh->len += len;
            return;
        }

        /* or completed */

        m = sh->tail | ngx_http_llmroute_siphash_bytes(p, need) << (8 * fill);
        sh->tail = 0;
        sh->len += need;
        p += need;
        len -= need;

        sh->v[3] ^= m;
        ngx_http_llmroute_siphash_round(sh->v);
        sh->v[0] ^= m;
    }

    /* in registers, not stored back a word at a time (p may alias sh) */

    ngx_memcpy(v, sh->v, sizeof(v));

    words = len / 8;
    sh->len += len;

    for ( /* void */ ; words; words--, p += 8) {
        m = ngx_http_llmroute_le64(p);
        v[3] ^= m;
        ngx_http_llmroute_siphash_round(v);
        v[0] ^= m;
    }

    ngx_memcpy(sh->v, v, sizeof(v));

    /* the rest, short of a word (the tail is empty at a word's end) */

    sh->tail = ngx_http_llmroute_siphash_bytes(p, len & 7);
}


void
ngx_http_llmroute_siphash_final(ngx_http_llmroute_siphash_t *sh, u_char *out)
{
    uint64_t  b, *v;

    v = sh->v;
    b = sh->tail | (uint64_t) sh->len << 56;

    v[3] ^= b;
    ngx_http_llmroute_siphash_round(v);
    v[0] ^= b;

    v[2] ^= 0xee;
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_store(out, v[0] ^ v[1] ^ v[2] ^ v[3]);

    v[1] ^= 0xdd;
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_round(v);
    ngx_http_llmroute_siphash_store(out + 8, v[0] ^ v[1] ^ v[2] ^ v[3]);
}
