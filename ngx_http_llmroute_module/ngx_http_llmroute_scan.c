
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * A validating JSON tokenizer that reads many bytes at a step where JSON
 * has runs: string contents (nearly all of a chat body) and whitespace.
 * Vector code: SSE2 (x86-64) or NEON (arm64), both baseline on their
 * architecture, portable 64-bit SWAR otherwise or when built with
 * -DNGX_HTTP_LLMROUTE_SCAN_SWAR.  A string's first block (16 bytes, 8 with
 * SWAR) ends most member names and short values, the next 32 bytes (AVX2)
 * or block most descriptions; a longer string is read 64 bytes at a step,
 * as one bit mask of its specials, or on x86-64 with AVX2 (chosen when the
 * module is loaded) as two, quotes and controls, and backslashes, whose
 * escaped bytes are known without a walk.  A string in the body's last
 * block is read from the block that ends there.  Structure is read a byte
 * at a time by a small state machine with an explicit stack (no
 * recursion).
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

/*
 * x86-64 with gcc or clang: long strings also have an AVX2 walk, compiled
 * for that target whatever the build's flags and taken when the CPU has
 * AVX2 and BMI1 (decided once, when the module is loaded).
 */
#if (NGX_HTTP_LLMROUTE_SCAN_SSE2) && defined(__x86_64__) && (__GNUC__)
#define NGX_HTTP_LLMROUTE_SCAN_AVX2  1
#include <immintrin.h>
#endif


#if (__GNUC__)
#define ngx_http_llmroute_scan_inline  static inline __attribute__((always_inline))
/* keeps an assignment on its branch: the compiler makes no cmov of it */
#define ngx_http_llmroute_scan_branch(v)  __asm__ ("" : "+r" (v))
#else
#define ngx_http_llmroute_scan_inline  static inline
#define ngx_http_llmroute_scan_branch(v)
#endif

/*
 * The index of the lowest set bit of m, not 0: gcc sign-extends
 * __builtin_ctzll()'s int, an instruction more on each string's way to its
 * end.  "rep bsf" is tzcnt where the CPU has it, bsf where not, the same
 * for any m but 0.
 */

#if (__GNUC__) && defined(__x86_64__)
#define ngx_http_llmroute_scan_ctz(m, i)                                     \
    __asm__ ("rep bsfq %1, %0" : "=r" (i) : "rm" ((uint64_t) (m)) : "cc")
#else
#define ngx_http_llmroute_scan_ctz(m, i)                                     \
    (i) = (size_t) __builtin_ctzll(m)
#endif

#define ngx_http_llmroute_scan_ws(c)                                         \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_http_llmroute_scan_digit(c)  ((u_char) ((c) - '0') < 10)


#ifdef NGX_HTTP_LLMROUTE_STANDALONE
ngx_uint_t  ngx_http_llmroute_scan_off;
#endif

#if (NGX_HTTP_LLMROUTE_SCAN_AVX2)
static ngx_uint_t  ngx_http_llmroute_scan_avx2;
#endif


/*
 * Per architecture, on the block at p: the bytes that end a run of string
 * contents ('"', '\\' or a control character) as a mask of SHIFT bits a
 * byte, first byte lowest; the index of its first byte that is not
 * whitespace, or the block size if there is none.  On the 64 bytes at p
 * (ngx_http_llmroute_scan_chunk()): the same bytes, one bit a byte.
 */

#if (NGX_HTTP_LLMROUTE_SCAN_SSE2)

#define NGX_HTTP_LLMROUTE_SCAN_BLOCK  16
#define NGX_HTTP_LLMROUTE_SCAN_SHIFT  0

const char  *ngx_http_llmroute_scan_kind = "sse2";    /* or "avx2" */


/*
 * The special bytes, as a movemask: v ^ 0x82 is at most -96 (0xa0), that
 * is below -95 (high), exactly when v ^ 2 is at most 0x20 unsigned: bit 1
 * flipped, '"' (0x22) and the control characters are the bytes at most
 * 0x20, and with the sign bit flipped too one signed comparison tells
 * them; or v is a backslash.
 *
 * gcc turns "constant > x" into "!(x > constant - 1)", a copy and a
 * comparison more; a constant it cannot see is compared as written.
 */

#define ngx_http_llmroute_scan_special(v)                                     \
    _mm_movemask_epi8(                                                        \
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')),                 \
                     _mm_cmpgt_epi8(                                          \
                         high,                                                \
                         _mm_xor_si128(v, _mm_set1_epi8((char) 0x82)))))

#if (__GNUC__)
#define ngx_http_llmroute_scan_opaque(v)  __asm__ ("" : "+x" (v))
#else
#define ngx_http_llmroute_scan_opaque(v)
#endif


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_specials(u_char *p)
{
    __m128i  v, high;

    v = _mm_loadu_si128((const __m128i *) p);

    high = _mm_set1_epi8((char) 0xa1);
    ngx_http_llmroute_scan_opaque(high);

    return (unsigned) ngx_http_llmroute_scan_special(v);
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


/* the specials of the 64 bytes at p */

ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_chunk(u_char *p)
{
    __m128i  v0, v1, v2, v3, high;

    v0 = _mm_loadu_si128((const __m128i *) p);
    v1 = _mm_loadu_si128((const __m128i *) (p + 16));
    v2 = _mm_loadu_si128((const __m128i *) (p + 32));
    v3 = _mm_loadu_si128((const __m128i *) (p + 48));

    high = _mm_set1_epi8((char) 0xa1);
    ngx_http_llmroute_scan_opaque(high);

    return (uint64_t) (unsigned) ngx_http_llmroute_scan_special(v0)
           | (uint64_t) (unsigned) ngx_http_llmroute_scan_special(v1) << 16
           | (uint64_t) (unsigned) ngx_http_llmroute_scan_special(v2) << 32
           | (uint64_t) (unsigned) ngx_http_llmroute_scan_special(v3) << 48;
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


/* four comparison results as one bit a byte */

ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_bits(uint8x16_t m0, uint8x16_t m1, uint8x16_t m2,
    uint8x16_t m3)
{
    uint8x16_t  w, s0, s1;

    static const uint8_t  weights[16] = {
        1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128
    };

    w = vld1q_u8(weights);

    s0 = vpaddq_u8(vandq_u8(m0, w), vandq_u8(m1, w));
    s1 = vpaddq_u8(vandq_u8(m2, w), vandq_u8(m3, w));
    s0 = vpaddq_u8(s0, s1);
    s0 = vpaddq_u8(s0, s0);

    return vgetq_lane_u64(vreinterpretq_u64_u8(s0), 0);
}


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_chunk(u_char *p)
{
    int         i;
    uint8x16_t  v, m[4];

    for (i = 0; i < 4; i++) {
        v = vld1q_u8(p + 16 * i);
        m[i] = vorrq_u8(vorrq_u8(vceqq_u8(v, vdupq_n_u8('"')),
                                 vceqq_u8(v, vdupq_n_u8('\\'))),
                        vcltq_u8(v, vdupq_n_u8(0x20)));
    }

    return ngx_http_llmroute_scan_bits(m[0], m[1], m[2], m[3]);
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


/* the high bits of a mask as 8 bits, by a multiply that gathers them */

#define ngx_http_llmroute_scan_gather(m)                                     \
    ((((m) >> 7) * 0x0102040810204080ULL) >> 56)


ngx_http_llmroute_scan_inline uint64_t
ngx_http_llmroute_scan_chunk(u_char *p)
{
    int       i;
    uint64_t  m;

    m = 0;

    for (i = 0; i < 64; i += 8) {
        m |= ngx_http_llmroute_scan_gather(
                 ngx_http_llmroute_scan_specials(p + i)) << i;
    }

    return m;
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
 * The last bytes of a string, a block at a step, escapes one by one: p is
 * in a string, not inside an escape, and the BLOCK bytes before end are
 * the body's (the caller read a block at or before p), so fewer than
 * BLOCK bytes left are read as the block that ends at end, its mask
 * shifted to start at p.  The closing quote, or NULL if invalid.  The
 * escapes of a block are taken from its mask, not by reading it again.
 */

static u_char *
ngx_http_llmroute_scan_tail(u_char *p, u_char *end, int *rc)
{
    u_char    *q, *last, *stop;
    size_t     n;
    uint64_t   m;

    last = end - NGX_HTTP_LLMROUTE_SCAN_BLOCK;

    for ( ;; ) {

        if (p <= last) {
            m = ngx_http_llmroute_scan_specials(p);

            if (m == 0) {

                /* a run of plain blocks: the tightest loop of the scan */

                do {
                    p += NGX_HTTP_LLMROUTE_SCAN_BLOCK;
                } while (p <= last
                         && (m = ngx_http_llmroute_scan_specials(p)) == 0);

                if (m == 0) {
                    continue;       /* the last bytes */
                }
            }

            stop = p + NGX_HTTP_LLMROUTE_SCAN_BLOCK;

        } else {

            if (p == end) {
                *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
                return NULL;
            }

            /* end - p is 1 to BLOCK - 1: the shift is below 64 */

            m = ngx_http_llmroute_scan_specials(last)
                >> ((p - last) << NGX_HTTP_LLMROUTE_SCAN_SHIFT);

            if (m == 0) {
                *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
                return NULL;
            }

            stop = end;
        }

        ngx_http_llmroute_scan_ctz(m, n);
        q = p + (n >> NGX_HTTP_LLMROUTE_SCAN_SHIFT);

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

            if (q >= stop) {
                break;
            }

            /* the next special byte of this block past the escape */

            m &= ~0ULL << ((q - p) << NGX_HTTP_LLMROUTE_SCAN_SHIFT);

            if (m == 0) {
                q = stop;
                break;
            }

            ngx_http_llmroute_scan_ctz(m, n);
            q = p + (n >> NGX_HTTP_LLMROUTE_SCAN_SHIFT);
        }

        p = q;
    }
}


/*
 * A string that starts in the last BLOCK bytes of the body: the tail's if
 * the body has a block (last is not 0), else (a body shorter than a block)
 * a byte at a time.
 */

static u_char *
ngx_http_llmroute_scan_end(u_char *p, u_char *end, uintptr_t last, int *rc)
{
    size_t  n;

    if (last) {
        return ngx_http_llmroute_scan_tail(p, end, rc);
    }

    for ( ;; ) {
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) {
            p++;
        }

        if (p == end) {
            *rc = NGX_HTTP_LLMROUTE_SCAN_PART;
            return NULL;
        }

        if (*p == '"') {
            return p;
        }

        if (*p != '\\') {
            *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;        /* a control character */
            return NULL;
        }

        n = ngx_http_llmroute_scan_escape(p, end, rc);
        if (n == 0) {
            return NULL;
        }

        p += n;
    }
}


/* a \uXXXX escape at p */

ngx_http_llmroute_scan_inline ngx_uint_t
ngx_http_llmroute_scan_unicode(u_char *p)
{
    return p[1] == 'u'
           && ngx_http_llmroute_scan_hex(p[2])
           && ngx_http_llmroute_scan_hex(p[3])
           && ngx_http_llmroute_scan_hex(p[4])
           && ngx_http_llmroute_scan_hex(p[5]);
}


/*
 * A string that does not end in its first block: p is past the opening
 * quote, the result as ngx_http_llmroute_scan_string()'s.
 *
 * It is read 64 bytes at a step, as one mask of the chunk's specials, then
 * special by special from the mask: a quote ends the string, a backslash
 * is checked with the byte it escapes, and both bits are cleared (an
 * escaped quote or backslash is no special).  A chunk is only read so with
 * 5 bytes after it (the rest of a \uXXXX at its last byte), so an escape
 * never meets the end of the input: the last bytes go to
 * ngx_http_llmroute_scan_tail(), which tells a cut body from a bad one.
 */

static u_char *
ngx_http_llmroute_scan_long(u_char *p, u_char *end, int *rc)
{
    size_t       n;
    u_char      *q;
    uint64_t     m;
    uintptr_t    last;
    ngx_uint_t   i;

    /*
     * A string that ends in the next block (a description, a schema's
     * member name) is done without a chunk: its first special is its
     * quote.  Else the walk starts past the block, or at its first
     * backslash (no byte before it is escaped).
     */

    if (end - p >= NGX_HTTP_LLMROUTE_SCAN_BLOCK) {
        m = ngx_http_llmroute_scan_specials(p);

        if (m == 0) {
            p += NGX_HTTP_LLMROUTE_SCAN_BLOCK;

        } else {
            ngx_http_llmroute_scan_ctz(m, n);
            p += n >> NGX_HTTP_LLMROUTE_SCAN_SHIFT;

            if (*p != '\\') {
                if (*p == '"') {
                    return p;
                }

                *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;      /* a control */
                return NULL;
            }
        }
    }

    /* the last place a chunk starts, as a number: no pointer before p */

    last = (end - p >= 64 + 5) ? (uintptr_t) end - (64 + 5) : 0;

    while ((uintptr_t) p <= last) {
        m = ngx_http_llmroute_scan_chunk(p);

        /* bit 0 of m is the byte at q */

        for (q = p; m; m >>= 2, q += 2) {
            i = (unsigned) __builtin_ctzll(m);
            q += i;
            m >>= i;

            if (*q != '\\') {
                if (*q == '"') {
                    return q;
                }

                *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;      /* a control */
                return NULL;
            }

            if (ngx_http_llmroute_scan_escapes[q[1]] != 2
                && !ngx_http_llmroute_scan_unicode(q))
            {
                *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;
                return NULL;
            }

            /* the backslash and the byte it escapes go */
        }

        /*
         * The next chunk, or past an escape begun at this one's last byte.
         * A branch, rarely taken, not a conditional move: the next chunk's
         * loads need not wait for the walk through this one's specials.
         */

        p += 64;

        if (q > p) {
            p = q;
            ngx_http_llmroute_scan_branch(p);
        }
    }

    return ngx_http_llmroute_scan_tail(p, end, rc);
}


#if (NGX_HTTP_LLMROUTE_SCAN_AVX2)

#define ngx_http_llmroute_scan_avx2_fn                                       \
    static inline __attribute__((always_inline, target("avx2,bmi")))


/*
 * The walk's constant vectors, each loaded by one instruction: gcc builds
 * a constant it can see from an immediate, in three.
 */

static const u_char  ngx_http_llmroute_scan_avx2_k[3][32]
    __attribute__((aligned(32))) =
{
#define NGX_HTTP_LLMROUTE_SCAN_K8(c)  c, c, c, c, c, c, c, c
#define NGX_HTTP_LLMROUTE_SCAN_K32(c)                                        \
    NGX_HTTP_LLMROUTE_SCAN_K8(c), NGX_HTTP_LLMROUTE_SCAN_K8(c),              \
    NGX_HTTP_LLMROUTE_SCAN_K8(c), NGX_HTTP_LLMROUTE_SCAN_K8(c)

    { NGX_HTTP_LLMROUTE_SCAN_K32(0xa1) },      /* high */
    { NGX_HTTP_LLMROUTE_SCAN_K32(0x82) },      /* flip */
    { NGX_HTTP_LLMROUTE_SCAN_K32('\\') }

#undef NGX_HTTP_LLMROUTE_SCAN_K32
#undef NGX_HTTP_LLMROUTE_SCAN_K8
};

#define NGX_HTTP_LLMROUTE_SCAN_HIGH_K  0
#define NGX_HTTP_LLMROUTE_SCAN_FLIP_K  1
#define NGX_HTTP_LLMROUTE_SCAN_BSL_K   2

#define ngx_http_llmroute_scan_k(v, i)                                       \
    __asm__ ("vmovdqa %1, %0" : "=x" (v)                                     \
             : "m" (ngx_http_llmroute_scan_avx2_k[i]))


/* two comparison results as one bit a byte, the first byte lowest */

ngx_http_llmroute_scan_avx2_fn uint64_t
ngx_http_llmroute_scan_mask_avx2(__m256i m0, __m256i m1)
{
    return (uint64_t) (unsigned) _mm256_movemask_epi8(m0)
           | (uint64_t) (unsigned) _mm256_movemask_epi8(m1) << 32;
}


/*
 * The bytes of v that need no check after a backslash: '"', '\\', '/',
 * 'f', 'n' and 't' (\b, \r and \uXXXX go to the table).  Their low
 * nibbles differ: a table gives each nibble its byte (0xff where none, a
 * byte of another nibble; 0 above 0x7f), and a byte is one of them if it
 * is its nibble's.
 */

ngx_http_llmroute_scan_avx2_fn __m256i
ngx_http_llmroute_scan_simple_avx2(__m256i v)
{
    __m256i  t;

    t = _mm256_setr_epi8(-1, -1, '"', -1, 't', -1, 'f', -1,
                         -1, -1, -1, -1, '\\', -1, 'n', '/',
                         -1, -1, '"', -1, 't', -1, 'f', -1,
                         -1, -1, -1, -1, '\\', -1, 'n', '/');

    return _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, v), v);
}


/*
 * The bytes of a chunk the backslashes bs escape, and in *open the last
 * byte's if it escapes the next chunk's first: a run of backslashes
 * escapes every second byte from its start on, and the byte after it if it
 * is odd.  Odd bits minus the backslashes (shifted to the byte after them)
 * carry through each run and leave the bits of its escaped bytes flipped
 * against the pattern.  The chunk's first byte is never escaped: a chunk
 * after one that ends in an escape's backslash starts at that backslash.
 */

#define NGX_HTTP_LLMROUTE_SCAN_ODD  0xaaaaaaaaaaaaaaaaULL

ngx_http_llmroute_scan_avx2_fn uint64_t
ngx_http_llmroute_scan_escaped(uint64_t bs, uint64_t *open)
{
    uint64_t  code;

    code = (((bs << 1) | NGX_HTTP_LLMROUTE_SCAN_ODD) - bs)
           ^ NGX_HTTP_LLMROUTE_SCAN_ODD;

    *open = (code & bs) >> 63;

    return code ^ bs;
}


/*
 * ngx_http_llmroute_scan_long() with AVX2 from the first chunk on: a
 * chunk's escaped bytes are known from its backslashes alone, so its first
 * quote or control character not escaped is where the string ends (or is
 * invalid), and the bytes escaped before it are checked as a mask, the
 * rare ones by a table, without a walk through the backslashes.
 */

static __attribute__((noinline, target("avx2,bmi"))) u_char *
ngx_http_llmroute_scan_walk_avx2(u_char *p, u_char *end, int *rc)
{
    size_t      n;
    u_char     *q;
    __m256i     v0, v1, high, flip, bsl;
    uint64_t    s, e, bs, open;
    uintptr_t   last;

    last = (end - p >= 64 + 5) ? (uintptr_t) end - (64 + 5) : 0;

    ngx_http_llmroute_scan_k(high, NGX_HTTP_LLMROUTE_SCAN_HIGH_K);
    ngx_http_llmroute_scan_k(flip, NGX_HTTP_LLMROUTE_SCAN_FLIP_K);
    ngx_http_llmroute_scan_k(bsl, NGX_HTTP_LLMROUTE_SCAN_BSL_K);

    while ((uintptr_t) p <= last) {
        v0 = _mm256_loadu_si256((const __m256i *) p);
        v1 = _mm256_loadu_si256((const __m256i *) (p + 32));

        /* quotes and controls, as ngx_http_llmroute_scan_special() */

        s = ngx_http_llmroute_scan_mask_avx2(
                _mm256_cmpgt_epi8(high, _mm256_xor_si256(v0, flip)),
                _mm256_cmpgt_epi8(high, _mm256_xor_si256(v1, flip)));

        bs = ngx_http_llmroute_scan_mask_avx2(_mm256_cmpeq_epi8(v0, bsl),
                                              _mm256_cmpeq_epi8(v1, bsl));

        if (bs) {
            e = ngx_http_llmroute_scan_escaped(bs, &open);
            s &= ~e;

            /* the escaped bytes but the common ones */

            e &= ~ngx_http_llmroute_scan_mask_avx2(
                      ngx_http_llmroute_scan_simple_avx2(v0),
                      ngx_http_llmroute_scan_simple_avx2(v1));

            if (e | s) {
                if (e) {
                    goto rare;
                }

                goto found;
            }

            /*
             * The next chunk, or this one's last byte, an escape's start.
             * A branch, rarely taken, not arithmetic: the next chunk's
             * loads need not wait for this one's masks.
             */

            p += 64;

            if (open) {
                p--;
                ngx_http_llmroute_scan_branch(p);
            }

            continue;
        }

        if (s) {
            goto found;
        }

        p += 64;
    }

    /*
     * The tail is SSE2 code, reached by a jump gcc leaves without
     * vzeroupper: with the upper halves dirty, every SSE instruction after
     * it (the rest of the request) would wait on them.
     */

    _mm256_zeroupper();

    return ngx_http_llmroute_scan_tail(p, end, rc);

found:

    ngx_http_llmroute_scan_ctz(s, n);
    q = p + n;

    if (*q == '"') {
        return q;
    }

    *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;      /* a control */
    return NULL;

rare:

    /*
     * \b, \r, \uXXXX or a bad escape, in this chunk or past the string's
     * end: the chunk and the rest of the string go to the walk that checks
     * each escape by the table (no byte of a chunk's start is escaped).
     * Its registers would cost every chunk here.
     */

    _mm256_zeroupper();

    return ngx_http_llmroute_scan_long(p, end, rc);
}


/*
 * A string that does not end in its first block: one that ends in the
 * next 32 bytes (a description, a schema's member name) is done by one
 * mask of their specials, without the walk's set-up.  Else the walk starts
 * past them, or at their first backslash (no byte before it is escaped).
 */

static __attribute__((target("avx2,bmi"))) u_char *
ngx_http_llmroute_scan_long_avx2(u_char *p, u_char *end, int *rc)
{
    size_t    n;
    __m256i   v, high, flip, bsl;
    uint64_t  s;

    if (end - p >= 32) {
        v = _mm256_loadu_si256((const __m256i *) p);

        ngx_http_llmroute_scan_k(high, NGX_HTTP_LLMROUTE_SCAN_HIGH_K);
        ngx_http_llmroute_scan_k(flip, NGX_HTTP_LLMROUTE_SCAN_FLIP_K);
        ngx_http_llmroute_scan_k(bsl, NGX_HTTP_LLMROUTE_SCAN_BSL_K);

        s = (unsigned) _mm256_movemask_epi8(
                _mm256_or_si256(
                    _mm256_cmpgt_epi8(high, _mm256_xor_si256(v, flip)),
                    _mm256_cmpeq_epi8(v, bsl)));

        if (s == 0) {
            p += 32;

        } else {
            ngx_http_llmroute_scan_ctz(s, n);
            p += n;

            if (*p != '\\') {
                if (*p == '"') {
                    return p;
                }

                *rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;      /* a control */
                return NULL;
            }
        }
    }

    return ngx_http_llmroute_scan_walk_avx2(p, end, rc);
}


/* the CPU and the OS (its saved AVX state) run the AVX2 walk */

static ngx_uint_t
ngx_http_llmroute_scan_has_avx2(void)
{
    __builtin_cpu_init();

    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi");
}


static void __attribute__((constructor))
ngx_http_llmroute_scan_pick(void)
{
    if (ngx_http_llmroute_scan_has_avx2()) {
        ngx_http_llmroute_scan_avx2 = 1;
        ngx_http_llmroute_scan_kind = "avx2";
    }
}

#endif


#ifdef NGX_HTTP_LLMROUTE_STANDALONE

ngx_int_t
ngx_http_llmroute_scan_use(ngx_uint_t avx2)
{
#if (NGX_HTTP_LLMROUTE_SCAN_AVX2)
    if (avx2 && !ngx_http_llmroute_scan_has_avx2()) {
        return NGX_ERROR;
    }

    ngx_http_llmroute_scan_avx2 = avx2;
    ngx_http_llmroute_scan_kind = avx2 ? "avx2" : "sse2";

    return NGX_OK;
#else
    return avx2 ? NGX_ERROR : NGX_OK;
#endif
}

#endif


/* a string's bytes from p on, by the walk the CPU is best at */

ngx_http_llmroute_scan_inline u_char *
ngx_http_llmroute_scan_rest(u_char *p, u_char *end, int *rc)
{
#if (NGX_HTTP_LLMROUTE_SCAN_AVX2)
    if (ngx_http_llmroute_scan_avx2) {
        return ngx_http_llmroute_scan_long_avx2(p, end, rc);
    }
#endif

    return ngx_http_llmroute_scan_long(p, end, rc);
}


/*
 * p is past the opening quote: the closing quote, or NULL if invalid.  A
 * short string (a member name, an enum value) ends in its first block.
 */

ngx_http_llmroute_scan_inline u_char *
ngx_http_llmroute_scan_string(u_char *p, u_char *end, uintptr_t last,
    int *rc)
{
    size_t     n;
    u_char    *q;
    uint64_t   m;

    if ((uintptr_t) p > last) {
        return ngx_http_llmroute_scan_end(p, end, last, rc);
    }

    m = ngx_http_llmroute_scan_specials(p);

    if (m == 0) {
        return ngx_http_llmroute_scan_rest(p + NGX_HTTP_LLMROUTE_SCAN_BLOCK,
                                           end, rc);
    }

    ngx_http_llmroute_scan_ctz(m, n);
    q = p + (n >> NGX_HTTP_LLMROUTE_SCAN_SHIFT);

    if (*q == '"') {
        return q;
    }

    return ngx_http_llmroute_scan_rest(p, end, rc);
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
 * A container at p whose contents are validated, not tokenized: the walk
 * of ngx_http_llmroute_scan_tokens() below with no token, parent or stack
 * to keep (the same checks in the same order: the same error).  The open
 * containers are one word, a bit each from bit 1 up (1 an object), the
 * innermost lowest, over a 1 that marks the bottom; depth (at least 1):
 * the containers open around it.  Past its closer, or NULL with *rc; *size
 * its elements (members), *all the tokens its contents would have been.
 */

static u_char *
ngx_http_llmroute_scan_validate(u_char *p, u_char *end, uintptr_t last,
    int depth, int *size, int *all, int *rc)
{
    int        n, elements;
    u_char    *s;
    uint64_t   open, deep;

    n = 0;
    elements = 0;
    open = 1;

    /* a container is refused when the word holds this many open ones */

    deep = (uint64_t) 1 << (NGX_HTTP_LLMROUTE_SCAN_DEPTH - depth);

#define ngx_http_llmroute_scan_at(c)  (p < end && *p == (c))

#define ngx_http_llmroute_scan_fail(code)                                    \
    *rc = (code);                                                            \
    return NULL

#define ngx_http_llmroute_scan_expect(c)                                     \
    if (!ngx_http_llmroute_scan_at(c)) {                                     \
        p = ngx_http_llmroute_scan_space(p, end);                            \
                                                                             \
        if (p == end) {                                                      \
            ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_PART);        \
        }                                                                    \
                                                                             \
        if (*p != (c)) {                                                     \
            ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);       \
        }                                                                    \
    }

/* the innermost container's closer, as needed: ']' + 0x20 is '}' */
#define ngx_http_llmroute_scan_closer  (']' | (u_char) ((open & 1) << 5))

container:

    /* p is at '{' or '[' */

    if (open >= deep) {
        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_DEEP);
    }

    open = (open << 1) | (*p == '{');

    /*
     * compact JSON, here and below: the quote of a key or of a string
     * element next, read without a test of the end (a block starts at p)
     */

    if ((uintptr_t) p <= last && p[1] == '"') {
        p++;

        if (open & 1) {
            goto member;
        }

        goto value;
    }

    p = ngx_http_llmroute_scan_space(p + 1, end);

    if (p == end) {
        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_PART);
    }

    if (*p == ngx_http_llmroute_scan_closer) {
        goto closed;
    }

    if (open & 1) {
        goto key;
    }

value:

    n++;

counted:

    if (ngx_http_llmroute_scan_at('"')) {
        goto string;
    }

    p = ngx_http_llmroute_scan_space(p, end);

    if (p == end) {
        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_PART);
    }

    switch (*p) {

    case '"':
    string:
        s = ngx_http_llmroute_scan_string(p + 1, end, last, rc);
        if (s == NULL) {
            return NULL;
        }

        p = s + 1;
        goto next;

    case '{':
    case '[':
        goto container;

    case 't':
        if (end - p >= 4 && ngx_memcmp(p, "true", 4) == 0) {
            s = p + 4;
            break;
        }

        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);

    case 'f':
        if (end - p >= 5 && ngx_memcmp(p, "false", 5) == 0) {
            s = p + 5;
            break;
        }

        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);

    case 'n':
        if (end - p >= 4 && ngx_memcmp(p, "null", 4) == 0) {
            s = p + 4;
            break;
        }

        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);

    default:
        s = ngx_http_llmroute_scan_number(p, end);
        if (s == NULL) {
            ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);
        }
    }

    p = s;

next:

    /*
     * after a value, inside a container; the outermost one's elements are
     * counted by its commas (one per value less one)
     */

    if ((uintptr_t) p <= last) {
        if (*p == ',' && p[1] == '"') {
            p++;
            elements += (open < 4);

            if (open & 1) {
                goto member;
            }

            goto value;
        }

        if (*p == ngx_http_llmroute_scan_closer) {
            goto closed;
        }
    }

    if (!ngx_http_llmroute_scan_at(',')) {
        p = ngx_http_llmroute_scan_space(p, end);

        if (p == end) {
            ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_PART);
        }
    }

    if (*p == ',') {
        p++;
        elements += (open < 4);

        if (open & 1) {
            goto key;
        }

        goto value;
    }

    if (*p != ngx_http_llmroute_scan_closer) {
        ngx_http_llmroute_scan_fail(NGX_HTTP_LLMROUTE_SCAN_INVAL);
    }

closed:

    open >>= 1;
    p++;

    if (open == 1) {
        *size = elements + (n > 0);
        *all = n;
        return p;
    }

    goto next;

key:

    ngx_http_llmroute_scan_expect('"');

member:

    /* p is at a key's quote */

    s = ngx_http_llmroute_scan_string(p + 1, end, last, rc);
    if (s == NULL) {
        return NULL;
    }

    if ((uintptr_t) s <= last && s[1] == ':') {

        /* the key and its value counted; a string or a container on */

        p = s + 2;
        n += 2;

        if (*p == '"') {
            goto string;
        }

        if (*p == '{' || *p == '[') {
            goto container;
        }

        goto counted;
    }

    n++;
    p = s + 1;

    ngx_http_llmroute_scan_expect(':');

    p++;
    goto value;

#undef ngx_http_llmroute_scan_closer
#undef ngx_http_llmroute_scan_expect
#undef ngx_http_llmroute_scan_fail
#undef ngx_http_llmroute_scan_at
}


/*
 * The tokens are jsmn's: pre-order; a string's span leaves its quotes out;
 * a key's parent is its object and its size 1, a member value's parent is
 * its key; a container's size counts its elements (members for objects).
 *
 * The innermost open container (its token, its closer, the values it has
 * so far) is kept in locals, the outer ones on a stack; its end and size
 * are written when it closes.  A key is written with size 1: on success it
 * has its value.  Tokens are only whole on success: after an error or NOMEM
 * the array holds nothing to read.
 *
 * A top-level key that shallow() names makes a container value one token,
 * its contents left to ngx_http_llmroute_scan_validate(): the last
 * top-level key is kept (name), shallow() asked only for a container.
 */

ngx_http_llmroute_scan_inline int
ngx_http_llmroute_scan_tokens(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok, ngx_http_llmroute_scan_shallow_pt shallow, void *data,
    int *all)
{
    int         n, depth, container, count, closer, cur, rc, size, inside,
                extra;
    u_char     *p, *end, *s, *name, *named;
    uintptr_t   last;
    jsmntok_t  *t, *full;
    int         opened[NGX_HTTP_LLMROUTE_SCAN_DEPTH];
    int         counts[NGX_HTTP_LLMROUTE_SCAN_DEPTH];
    int         closers[NGX_HTTP_LLMROUTE_SCAN_DEPTH];

    p = body;
    end = body + len;
    n = 0;

    /* the last place a block starts, as a number: no pointer before body */
    last = (len >= NGX_HTTP_LLMROUTE_SCAN_BLOCK)
           ? (uintptr_t) end - NGX_HTTP_LLMROUTE_SCAN_BLOCK : 0;

    depth = 0;
    container = -1;
    closer = -1;            /* the top level: no byte closes it */
    count = 0;
    rc = NGX_HTTP_LLMROUTE_SCAN_INVAL;
    name = body;
    named = body;
    extra = 0;              /* the tokens of shallow values' contents */

    if (ntok > 0x7fffffff) {
        ntok = 0x7fffffff;
    }

    /* the next token to write and the end of the array: equal when NULL */

    t = tok;
    full = tok ? tok + ntok : NULL;

/*
 * a new token: NOMEM when tok is full, only counted when tok is NULL (one
 * comparison on the way that writes)
 */
#define ngx_http_llmroute_scan_token(ty, from, to, sz, par)                  \
    if (t < full) {                                                          \
        t->type = (ty);                                                      \
        t->start = (from);                                                   \
        t->end = (to);                                                       \
        t->size = (sz);                                                      \
        t->parent = (par);                                                   \
        t++;                                                                 \
                                                                             \
    } else if (tok) {                                                        \
        return NGX_HTTP_LLMROUTE_SCAN_NOMEM;                                 \
    }                                                                        \
    n++

/*
 * compact JSON has no whitespace: the byte expected next is tried first,
 * the whitespace skip only when it is not there
 */
#define ngx_http_llmroute_scan_at(c)  (p < end && *p == (c))

/* the byte c next, whitespace aside: PART at the end, INVAL on another */
#define ngx_http_llmroute_scan_expect(c)                                     \
    if (!ngx_http_llmroute_scan_at(c)) {                                     \
        p = ngx_http_llmroute_scan_space(p, end);                            \
                                                                             \
        if (p == end) {                                                      \
            return NGX_HTTP_LLMROUTE_SCAN_PART;                              \
        }                                                                    \
                                                                             \
        if (*p != (c)) {                                                     \
            return NGX_HTTP_LLMROUTE_SCAN_INVAL;                             \
        }                                                                    \
    }

value:

    /*
     * a value's parent: in an object its key, the token before it; in an
     * array the array; -1 at the top
     */

#define ngx_http_llmroute_scan_parent  (closer == '}' ? n - 1 : container)

    count++;

    /* a string, the common value of compact JSON: straight to it */

    if (ngx_http_llmroute_scan_at('"')) {
        goto string;
    }

    p = ngx_http_llmroute_scan_space(p, end);

    if (p == end) {
        return NGX_HTTP_LLMROUTE_SCAN_PART;
    }

    switch (*p) {

    case '"':
    string:
        s = ngx_http_llmroute_scan_string(p + 1, end, last, &rc);
        if (s == NULL) {
            return rc;
        }

        ngx_http_llmroute_scan_token(JSMN_STRING, p + 1 - body, s - body, 0,
                                     ngx_http_llmroute_scan_parent);
        p = s + 1;
        goto next;

    case '{':
    case '[':
        if (depth == NGX_HTTP_LLMROUTE_SCAN_DEPTH) {
            return NGX_HTTP_LLMROUTE_SCAN_DEEP;
        }

        if (depth == 1 && closer == '}' && shallow
            && shallow(name, named - name, data))
        {
            s = ngx_http_llmroute_scan_validate(p, end, last, depth, &size,
                                                &inside, &rc);
            if (s == NULL) {
                return rc;
            }

            ngx_http_llmroute_scan_token(*p == '{' ? JSMN_OBJECT : JSMN_ARRAY,
                                         p - body, s - body, size,
                                         ngx_http_llmroute_scan_parent);
            extra += inside;
            p = s;
            goto next;
        }

        cur = n;

        ngx_http_llmroute_scan_token(*p == '{' ? JSMN_OBJECT : JSMN_ARRAY,
                                     p - body, -1, 0,
                                     ngx_http_llmroute_scan_parent);

        opened[depth] = container;
        closers[depth] = closer;
        counts[depth] = count;
        depth++;

        container = cur;
        closer = *p + 2;    /* '{' + 2 == '}', '[' + 2 == ']' */
        count = 0;

        p = ngx_http_llmroute_scan_space(p + 1, end);

        if (p == end) {
            return NGX_HTTP_LLMROUTE_SCAN_PART;
        }

        if (*p == closer) {
            goto closed;
        }

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

    ngx_http_llmroute_scan_token(JSMN_PRIMITIVE, p - body, s - body, 0,
                                 ngx_http_llmroute_scan_parent);
    p = s;

next:

    /* after a value: the end, a comma or the container's closer */

    if (!ngx_http_llmroute_scan_at(',')) {
        p = ngx_http_llmroute_scan_space(p, end);

        if (p == end) {
            if (depth) {
                return NGX_HTTP_LLMROUTE_SCAN_PART;
            }

            *all = n + extra;
            return n;
        }
    }

    if (*p == ',') {
        p++;

        if (closer == '}') {
            goto key;
        }

        if (closer == ']') {
            goto value;
        }

        return NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

    if (*p != closer) {
        return NGX_HTTP_LLMROUTE_SCAN_INVAL;
    }

closed:

    if (tok) {
        tok[container].end = p + 1 - body;
        tok[container].size = count;
    }

    depth--;
    container = opened[depth];
    closer = closers[depth];
    count = counts[depth];

    p++;
    goto next;

key:

    /* in the object container */

    ngx_http_llmroute_scan_expect('"');

    s = ngx_http_llmroute_scan_string(p + 1, end, last, &rc);
    if (s == NULL) {
        return rc;
    }

    ngx_http_llmroute_scan_token(JSMN_STRING, p + 1 - body, s - body, 1,
                                 container);

    if (depth == 1) {
        name = p + 1;
        named = s;
    }

    /*
     * Compact JSON: the ':' and the value's first byte are read without
     * a test of the end (a block starts at s), and a string value, the
     * commonest, is taken here, as is a ',' and the next key's quote
     * after it.
     */

    if ((uintptr_t) s <= last && s[1] == ':') {
        p = s + 2;
        goto value;
    }

    p = s + 1;

    ngx_http_llmroute_scan_expect(':');

    p++;
    goto value;

#undef ngx_http_llmroute_scan_expect
#undef ngx_http_llmroute_scan_at
#undef ngx_http_llmroute_scan_parent
#undef ngx_http_llmroute_scan_token
}


/*
 * the walk twice over: with tokens to write, and only counting them (tok
 * NULL), so neither tests tok at each token
 */

int
ngx_http_llmroute_scan_shallow(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok, ngx_http_llmroute_scan_shallow_pt shallow, void *data,
    int *all)
{
    if (tok) {
        return ngx_http_llmroute_scan_tokens(body, len, tok, ntok, shallow,
                                             data, all);
    }

    return ngx_http_llmroute_scan_tokens(body, len, NULL, 0, shallow, data,
                                         all);
}


int
ngx_http_llmroute_scan(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok)
{
    int  all;

    return ngx_http_llmroute_scan_shallow(body, len, tok, ntok, NULL, NULL,
                                          &all);
}
