
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Unit tests of the session key's keyed hash (ngx_http_llmroute_siphash.c),
 * built standalone with ASan/UBSan: OpenSSL's SIPHASH MAC with c-rounds 1,
 * d-rounds 3 and a 16-byte result is the oracle, over every length up to
 * 300 bytes, random keys, the input fed whole, a byte at a time and in
 * random pieces (each a separate exact-size allocation, so ASan sees any
 * read past one).
 *
 * The last line printed is "N passed, N failed"; exit status 1 on failure.
 */


#include <ngx_http_llmroute_siphash.h>

#include <openssl/evp.h>
#include <openssl/params.h>


static int  passed, failed;


static void
oracle(const u_char *key, const u_char *in, size_t len, u_char *out)
{
    size_t         outl;
    EVP_MAC       *mac;
    EVP_MAC_CTX   *ctx;
    unsigned int   c = 1, d = 3, size = 16;
    OSSL_PARAM     params[4];

    params[0] = OSSL_PARAM_construct_uint("size", &size);
    params[1] = OSSL_PARAM_construct_uint("c-rounds", &c);
    params[2] = OSSL_PARAM_construct_uint("d-rounds", &d);
    params[3] = OSSL_PARAM_construct_end();

    mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    ctx = EVP_MAC_CTX_new(mac);

    if (mac == NULL || ctx == NULL
        || !EVP_MAC_init(ctx, key, 16, params)
        || !EVP_MAC_update(ctx, in, len)
        || !EVP_MAC_final(ctx, out, &outl, 16) || outl != 16)
    {
        fprintf(stderr, "OpenSSL SIPHASH failed\n");
        exit(2);
    }

    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}


/* the input in pieces: cut[] lists the piece ends, the last one len */

static void
ours(const u_char *key, const u_char *in, size_t *cut, size_t ncut,
    u_char *out)
{
    u_char                       *piece;
    size_t                        i, from;
    ngx_http_llmroute_siphash_t   sh;

    ngx_http_llmroute_siphash_init(&sh, key);

    for (i = 0, from = 0; i < ncut; from = cut[i++]) {
        piece = malloc(cut[i] - from + 1);
        memcpy(piece, in + from, cut[i] - from);
        ngx_http_llmroute_siphash_update(&sh, piece, cut[i] - from);
        free(piece);
    }

    ngx_http_llmroute_siphash_final(&sh, out);
}


static void
check(const char *how, size_t len, int ok)
{
    if (ok) {
        passed++;
        return;
    }

    failed++;
    printf("FAIL: %s, %zu bytes\n", how, len);
}


int
main(void)
{
    u_char  key[16], in[300], want[16], got[16];
    size_t  len, i, n, cut[301];

    srandom(16);

    /* the published SipHash-1-3 value of key 00..0f over the empty input */

    for (i = 0; i < 16; i++) {
        key[i] = (u_char) i;
    }

    ours(key, in, cut, 0, got);
    check("empty input, key 00..0f",
          0, memcmp(got, "\xe7\x7e\xbc\xb2\x27\x88\xa5\xbe"
                         "\xfd\x62\xdb\x6a\xdd\x30\x30\x01", 16) == 0);

    for (len = 0; len <= sizeof(in); len++) {

        for (i = 0; i < 16; i++) {
            key[i] = (u_char) random();
        }

        for (i = 0; i < len; i++) {
            in[i] = (u_char) random();
        }

        oracle(key, in, len, want);

        cut[0] = len;
        ours(key, in, cut, 1, got);
        check("whole", len, memcmp(got, want, 16) == 0);

        for (i = 0; i < len; i++) {
            cut[i] = i + 1;
        }

        ours(key, in, cut, len, got);
        check("byte by byte", len, memcmp(got, want, 16) == 0);

        for (n = 0, i = 0; i < len; cut[n++] = i) {
            i += 1 + random() % 20;
            i = ngx_min(i, len);
        }

        ours(key, in, cut, n, got);
        check("random pieces", len, memcmp(got, want, 16) == 0);
    }

    printf("%d passed, %d failed\n", passed, failed);

    return failed != 0;
}
