
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
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (w >> (8 * i));
    }
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
    size_t         words;
    uint64_t       m, v[4];
    const u_char  *p, *end;

    p = data;
    end = p + len;

    /* in registers, not stored back a word at a time (p may alias sh) */

    ngx_memcpy(v, sh->v, sizeof(v));

    /* complete the word a previous piece began */

    while ((sh->len & 7) && p < end) {
        sh->tail |= (uint64_t) *p++ << (8 * (sh->len & 7));

        if ((++sh->len & 7) == 0) {
            v[3] ^= sh->tail;
            ngx_http_llmroute_siphash_round(v);
            v[0] ^= sh->tail;
            sh->tail = 0;
        }
    }

    words = (end - p) / 8;
    sh->len += words * 8;

    for ( /* void */ ; words; words--, p += 8) {
        m = ngx_http_llmroute_le64(p);
        v[3] ^= m;
        ngx_http_llmroute_siphash_round(v);
        v[0] ^= m;
    }

    ngx_memcpy(sh->v, v, sizeof(v));

    while (p < end) {
        sh->tail |= (uint64_t) *p++ << (8 * (sh->len & 7));
        sh->len++;
    }
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
