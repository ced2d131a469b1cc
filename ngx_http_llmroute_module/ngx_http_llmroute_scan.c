
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * A validating JSON tokenizer that reads a block of bytes at a step where
 * JSON has runs: string contents (nearly all of a chat body) and
 * whitespace.  16 bytes with SSE2 (x86-64) or NEON (arm64), both baseline
 * on their architecture, 8 with portable 64-bit SWAR otherwise or when built
 * with -DNGX_HTTP_LLMROUTE_SCAN_SWAR.  Structure is read a byte at a time
 * by a small state machine with an explicit stack (no recursion).
 *
 * It refuses exactly what jsmn plus the checks of ngx_http_llmroute_json.c
 * refuse (fuzz/fuzz_scan.c holds it to that and to yajl), so the jsmn path
 * only runs to name the error of a refused body.
 */


#include <ngx_http_llmroute_core.h>
#include <ngx_http_llmroute_scan.h>


#ifndef JSMN_PARENT_LINKS
#error "jsmntok_t must have parent links (JSMN_PARENT_LINKS)"
#endif

#if !defined(NGX_HTTP_LLMROUTE_SCAN_SWAR) && defined(__SSE2__)
#define NGX_HTTP_LLMROUTE_SCAN_SSE2  1
#include <emmintrin.h>

#elif !defined(NGX_HTTP_LLMROUTE_SCAN_SWAR) && defined(__aarch64__)         \
      && defined(__ARM_NEON)
#define NGX_HTTP_LLMROUTE_SCAN_NEON  1
#include <arm_neon.h>

#else
#ifndef NGX_HTTP_LLMROUTE_SCAN_SWAR
#define NGX_HTTP_LLMROUTE_SCAN_SWAR  1
#endif
#endif


#if (__GNUC__)
#define ngx_http_llmroute_scan_inline  static inline __attribute__((always_inline))
#else
#define ngx_http_llmroute_scan_inline  static inline
#endif

#define ngx_http_llmroute_scan_ws(c)                                         \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_http_llmroute_scan_digit(c)  ((u_char) ((c) - '0') < 10)


#ifdef NGX_HTTP_LLMROUTE_STANDALONE
ngx_uint_t  ngx_http_llmroute_scan_off;
#endif


/*
 * Per architecture, on the block at p: the bytes that end a run of string
 * contents ('"', '\\' or a control character) as a mask of SHIFT bits a
 * byte, first byte lowest; the index of its first byte that is not
 * whitespace, or the block size if there is none.
 */

#if (NGX_HTTP_LLMROUTE_SCAN_SSE2)

#define NGX_HTTP_LLMROUTE_SCAN_BLOCK  16
#define NGX_HTTP_LLMROUTE_SCAN_SHIFT  0

const char  *ngx_http_llmroute_scan_kind = "sse2";


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_specials(u_char *p)
{
    __m128i  v, x;

    v = _mm_loadu_si128((const __m128i *) p);

    /*
     * v ^ 2 is at most 0x20 exactly for '"' (0x22) and the control
     * characters (bit 1 flipped, they stay below 0x20): one test for both
     */

    x = _mm_xor_si128(v, _mm_set1_epi8(0x02));

    return (unsigned) _mm_movemask_epi8(
               _mm_or_si128(
                   _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x20)), x),
                   _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
}


ngx_http_llmroute_scan_inline ngx_uint_t
ngx_http_llmroute_scan_nonspace(u_char *p)
{
    int      m;
    __m128i  v;

    v = _mm_loadu_si128((const __m128i *) p);

    m = _mm_movemask_epi8(
            _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')),
                             _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))),
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')),
                             _mm_cmpeq_epi8(v, _mm_set1_epi8('\t')))));
    m ^= 0xffff;

    return m ? (ngx_uint_t) __builtin_ctz(m) : 16;
}


#elif (NGX_HTTP_LLMROUTE_SCAN_NEON)

#define NGX_HTTP_LLMROUTE_SCAN_BLOCK  16
#define NGX_HTTP_LLMROUTE_SCAN_SHIFT  2

const char  *ngx_http_llmroute_scan_kind = "neon";


/* a comparison result as 4 bits a byte */

ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_mask(uint8x16_t m)
{
    return vget_lane_u64(vreinterpret_u64_u8(
               vshrn_n_u16(vreinterpretq_u16_u8(m), 4)), 0);
}


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_specials(u_char *p)
{
    uint8x16_t  v;

    v = vld1q_u8(p);

    return ngx_http_llmroute_scan_mask(
               vorrq_u8(vorrq_u8(vceqq_u8(v, vdupq_n_u8('"')),
                                 vceqq_u8(v, vdupq_n_u8('\\'))),
                        vcltq_u8(v, vdupq_n_u8(0x20))));
}


ngx_http_llmroute_scan_inline ngx_uint_t
ngx_http_llmroute_scan_nonspace(u_char *p)
{
    uint64_t    m;
    uint8x16_t  v;

    v = vld1q_u8(p);

    m = ngx_http_llmroute_scan_mask(
               vmvnq_u8(vorrq_u8(vorrq_u8(vceqq_u8(v, vdupq_n_u8(' ')),
                                          vceqq_u8(v, vdupq_n_u8('\n'))),
                                 vorrq_u8(vceqq_u8(v, vdupq_n_u8('\r')),
                                          vceqq_u8(v, vdupq_n_u8('\t'))))));

    return m ? (ngx_uint_t) (__builtin_ctzll(m) >> 2) : 16;
}


#else /* SWAR */

#define NGX_HTTP_LLMROUTE_SCAN_BLOCK  8
#define NGX_HTTP_LLMROUTE_SCAN_SHIFT  3

const char  *ngx_http_llmroute_scan_kind = "swar";

#define NGX_HTTP_LLMROUTE_SCAN_ONES  0x0101010101010101ULL
#define NGX_HTTP_LLMROUTE_SCAN_HIGH  0x8080808080808080ULL
#define NGX_HTTP_LLMROUTE_SCAN_LOW7  0x7f7f7f7f7f7f7f7fULL


/*
 * The high bit of each byte of w that equals c, or that is below 0x20:
 * exact for every byte (no carry from one byte into the next, unlike the
 * shorter "has a zero byte" test), so the first one can be counted to.
 */

ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_eq(uint64_t w, u_char c)
{
    uint64_t  x;

    x = w ^ (NGX_HTTP_LLMROUTE_SCAN_ONES * c);

    return ~(((x & NGX_HTTP_LLMROUTE_SCAN_LOW7) + NGX_HTTP_LLMROUTE_SCAN_LOW7)
             | x)
           & NGX_HTTP_LLMROUTE_SCAN_HIGH;
}


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_ctl(uint64_t w)
{
    return ~(((w & NGX_HTTP_LLMROUTE_SCAN_LOW7)
              + NGX_HTTP_LLMROUTE_SCAN_ONES * (0x80 - 0x20))
             | w)
           & NGX_HTTP_LLMROUTE_SCAN_HIGH;
}


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_specials(u_char *p)
{
    uint64_t  w;

    w = ngx_http_llmroute_le64(p);

    return ngx_http_llmroute_scan_eq(w, '"')
           | ngx_http_llmroute_scan_eq(w, '\\')
           | ngx_http_llmroute_scan_ctl(w);
}


ngx_http_llmroute_scan_inline ngx_uint_t
ngx_http_llmroute_scan_nonspace(u_char *p)
{
    uint64_t  w, m;

    w = ngx_http_llmroute_le64(p);

    m = (ngx_http_llmroute_scan_eq(w, ' ')
         | ngx_http_llmroute_scan_eq(w, '\n')
         | ngx_http_llmroute_scan_eq(w, '\r')
         | ngx_http_llmroute_scan_eq(w, '\t'))
        ^ NGX_HTTP_LLMROUTE_SCAN_HIGH;

    return m ? (ngx_uint_t) (__builtin_ctzll(m) >> 3) : 8;
}

#endif


/* the first byte at or after p that is not whitespace, or end */

ngx_http_llmroute_scan_inline u_char *
ngx_http_llmroute_scan_space(u_char *p, u_char *end)
{
    ngx_uint_t  i;

    if (p < end && *p > ' ') {
        return p;       /* compact JSON: no whitespace at all */
    }

    while (end - p >= NGX_HTTP_LLMROUTE_SCAN_BLOCK) {
        i = ngx_http_llmroute_scan_nonspace(p);

        if (i < NGX_HTTP_LLMROUTE_SCAN_BLOCK) {
            return p + i;
        }

        p += NGX_HTTP_LLMROUTE_SCAN_BLOCK;
    }

    while (p < end && ngx_http_llmroute_scan_ws(*p)) {
        p++;
    }

    return p;
}


ngx_http_llmroute_scan_inline ngx_uint_t
ngx_http_llmroute_scan_hex(u_char c)
{
    return ngx_http_llmroute_scan_digit(c)
           || (u_char) ((c | 0x20) - 'a') < 6;
}


/* by the byte after a backslash: 2 a valid escape, 6 \u, 0 invalid */

static const u_char  ngx_http_llmroute_scan_escapes[256] = {
    ['"'] = 2, ['\\'] = 2, ['/'] = 2, ['b'] = 2, ['f'] = 2, ['n'] = 2,
    ['r'] = 2, ['t'] = 2, ['u'] = 6
};


/* the length of the escape at p, or 0 with *rc set */

ngx_http_llmroute_scan_inline size_t
ngx_http_llmroute_scan_escape(u_char *p, u_char *end, int *rc)
{
    if (end - p < 2) {
        *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
        return 0;
    }

    switch (ngx_http_llmroute_scan_escapes[p[1]]) {

    case 2:
        return 2;

    case 6:
        if (end - p < 6) {
            *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
            return 0;
        }

        if (ngx_http_llmroute_scan_hex(p[2]) && ngx_http_llmroute_scan_hex(p[3])
            && ngx_http_llmroute_scan_hex(p[4])
            && ngx_http_llmroute_scan_hex(p[5]))
        {
            return 6;
        }

        break;
    }

    *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;
    return 0;
}


/*
 * p is past the opening quote: the closing quote, or NULL if invalid.  The
 * escapes of a block are taken from its mask, not by reading it again.
 */

ngx_http_llmroute_scan_inline u_char *
ngx_http_llmroute_scan_string(u_char *p, u_char *end, int *rc)
{
    u_char    *q, *last;
    size_t     n;
    uint64_t   m;

    for ( ;; ) {

        if (end - p >= NGX_HTTP_LLMROUTE_SCAN_BLOCK) {
            m = ngx_http_llmroute_scan_specials(p);

            if (m == 0) {

                /* a run of plain blocks: the tightest loop of the scan */

                last = end - NGX_HTTP_LLMROUTE_SCAN_BLOCK;

                do {
                    p += NGX_HTTP_LLMROUTE_SCAN_BLOCK;
                } while (p <= last
                         && (m = ngx_http_llmroute_scan_specials(p)) == 0);

                if (m == 0) {
                    continue;       /* the last bytes, one at a time */
                }
            }

            q = p + (__builtin_ctzll(m) >> NGX_HTTP_LLMROUTE_SCAN_SHIFT);

        } else {
            m = 0;

            for (q = p; q < end && *q != '"' && *q != '\\' && *q >= 0x20; q++)
            {
                /* void */
            }

            if (q == end) {
                *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
                return NULL;
            }
        }

        for ( ;; ) {

            if (*q == '"') {
                return q;
            }

            if (*q != '\\') {
                *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;    /* a control character */
                return NULL;
            }

            n = ngx_http_llmroute_scan_escape(q, end, rc);
            if (n == 0) {
                return NULL;
            }

            q += n;

            if (m == 0 || q - p >= NGX_HTTP_LLMROUTE_SCAN_BLOCK) {
                break;
            }

            /* the next special byte of this block past the escape */

            m &= ~0ULL << ((q - p) << NGX_HTTP_LLMROUTE_SCAN_SHIFT);

            if (m == 0) {
                q = p + NGX_HTTP_LLMROUTE_SCAN_BLOCK;
                break;
            }

            q = p + (__builtin_ctzll(m) >> NGX_HTTP_LLMROUTE_SCAN_SHIFT);
        }

        p = q;
    }
}


/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?: its end, or NULL */

ngx_http_llmroute_scan_inline u_char *
ngx_http_llmroute_scan_number(u_char *p, u_char *end)
{
    if (*p == '-') {
        p++;
    }

    if (p == end || !ngx_http_llmroute_scan_digit(*p)) {
        return NULL;
    }

    if (*p++ != '0') {
        while (p < end && ngx_http_llmroute_scan_digit(*p)) {
            p++;
        }
    }

    if (p < end && *p == '.') {
        p++;

        if (p == end || !ngx_http_llmroute_scan_digit(*p)) {
            return NULL;
        }

        while (p < end && ngx_http_llmroute_scan_digit(*p)) {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || !ngx_http_llmroute_scan_digit(*p)) {
            return NULL;
        }

        while (p < end && ngx_http_llmroute_scan_digit(*p)) {
            p++;
        }
    }

    return p;
}


/*
 * The tokens are jsmn's: pre-order; a string's span leaves its quotes out;
 * a key's parent is its object and its size 1, a member value's parent is
 * its key; a container's size counts its elements (members for objects).
 */

int
ngx_http_llmroute_scan(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok)
{
    int         n, depth, parent, cur, rc;
    u_char     *p, *end, *s, closer;
    jsmntok_t  *t;
    int         opened[NGX_HTTP_LLMROUTE_SCAN_DEPTH];
    u_char      closers[NGX_HTTP_LLMROUTE_SCAN_DEPTH];

    p = body;
    end = body + len;
    n = 0;
    depth = 0;
    parent = -1;
    rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;

    if (ntok > 0x7fffffff) {
        ntok = 0x7fffffff;
    }

/* a new token: NOMEM when tok is full, nothing written when tok is NULL */
#define ngx_http_llmroute_scan_token(ty, from, to)                           \
    if (tok) {                                                               \
        if ((size_t) n >= ntok) {                                            \
            return NGX_HTTP_LLMROUTE_SCAN_NOMEM;                             \
        }                                                                    \
        t = &tok[n];                                                         \
        t->type = (ty);                                                      \
        t->start = (from);                                                   \
        t->end = (to);                                                       \
        t->size = 0;                                                         \
        t->parent = parent;                                                  \
        if (parent >= 0) {                                                   \
            tok[parent].size++;                                              \
        }                                                                    \
    }                                                                        \
    n++

value:

    p = ngx_http_llmroute_scan_space(p, end);

    if (p == end) {
        return NGX_HTTP_LLMROUTE_SCAN_PART;
    }

    switch (*p) {

    case '"':
        s = ngx_http_llmroute_scan_string(p + 1, end, &rc);
        if (s == NULL) {
            return rc;
        }

        ngx_http_llmroute_scan_token(JSMN_STRING, p + 1 - body, s - body);
        p = s + 1;
        goto next;

    case '{':
    case '[':
        if (depth == NGX_HTTP_LLMROUTE_SCAN_DEPTH) {
            return NGX_HTTP_LLMROUTE_SCAN_DEEP;
        }

        cur = n;
        closer = *p + 2;    /* '{' + 2 == '}', '[' + 2 == ']' */

        ngx_http_llmroute_scan_token(closer == '}' ? JSMN_OBJECT : JSMN_ARRAY,
                                     p - body, -1);

        opened[depth] = cur;
        closers[depth] = closer;
        depth++;

        p = ngx_http_llmroute_scan_space(p + 1, end);

        if (p == end) {
            return NGX_HTTP_LLMROUTE_SCAN_PART;
        }

        if (*p == closer) {
            goto closed;
        }

        parent = cur;

        if (closer == '}') {
            goto key;
        }

        goto value;

    case 't':
        if (end - p >= 4 && ngx_memcmp(p, "true", 4) == 0) {
            s = p + 4;
            break;
        }

        return NGX_HTTP_LLMROUTE_SCAN_INVAL;

    case 'f':
        if (end - p >= 5 && ngx_memcmp(p, "false", 5) == 0) {
            s = p + 5;
            break;
        }

        return NGX_HTTP_LLMROUTE_SCAN_INVAL;

    case 'n':
        if (end - p >= 4 && ngx_memcmp(p, "null", 4) == 0) {
            s = p + 4;
            break;
        }

        return NGX_HTTP_LLMROUTE_SCAN_INVAL;

    default:
        s = ngx_http_llmroute_scan_number(p, end);
        if (s == NULL) {
            return NGX_HTTP_LLMROUTE_SCAN_INVAL;
        }
    }

    /* a literal or a number: what follows it is checked below */

    ngx_http_llmroute_scan_token(JSMN_PRIMITIVE, p - body, s - body);
    p = s;

next:

    /* after a value: the end, a comma or the container's closer */

    p = ngx_http_llmroute_scan_space(p, end);

    if (depth == 0) {
        return p == end ? n : NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

    if (p == end) {
        return NGX_HTTP_LLMROUTE_SCAN_PART;
    }

    if (*p == ',') {
        p++;
        parent = opened[depth - 1];

        if (closers[depth - 1] == '}') {
            goto key;
        }

        goto value;
    }

    if (*p != closers[depth - 1]) {
        return NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

closed:

    depth--;

    if (tok) {
        tok[opened[depth]].end = p + 1 - body;
    }

    p++;
    goto next;

key:

    /* parent is the object */

    p = ngx_http_llmroute_scan_space(p, end);

    if (p == end) {
        return NGX_HTTP_LLMROUTE_SCAN_PART;
    }

    if (*p != '"') {
        return NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

    s = ngx_http_llmroute_scan_string(p + 1, end, &rc);
    if (s == NULL) {
        return rc;
    }

    cur = n;
    ngx_http_llmroute_scan_token(JSMN_STRING, p + 1 - body, s - body);

    p = ngx_http_llmroute_scan_space(s + 1, end);

    if (p == end) {
        return NGX_HTTP_LLMROUTE_SCAN_PART;
    }

    if (*p != ':') {
        return NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

    p++;
    parent = cur;
    goto value;

#undef ngx_http_llmroute_scan_token
}
