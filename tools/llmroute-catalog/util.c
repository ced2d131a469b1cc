/*
 * llmroute-catalog: messages, exact decimal prices, names, files.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute_catalog.h"


void
lc_err(const char *fmt, ...)
{
    va_list  ap;

    fputs("llmroute-catalog: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


void
lc_warn(const char *fmt, ...)
{
    va_list  ap;

    fputs("llmroute-catalog: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


/*
 * A non-negative decimal ("0.0000004", "4e-07", "15") times 10^9, rounded
 * half up, exactly (no binary floating point): a price per token becomes
 * milli-USD per 1M tokens, the module's 3-decimal unit.  *rounded is set
 * when digits were lost.  Returns -1 on syntax errors, negative values and
 * values above 10^15.
 */

int
lc_parse_decimal_e9(const char *s, uint64_t *out, int *rounded)
{
    int          dot, any, sig, exp10, eneg, shift, lost;
    long         e;
    uint64_t     mant, div, q, r;
    const char  *p;

    p = s;
    mant = 0;
    dot = 0;
    any = 0;
    sig = 0;
    exp10 = 0;
    lost = 0;

    if (*p == '+') {
        p++;
    }

    for ( /* void */ ; *p; p++) {
        if (*p == '.' && !dot) {
            dot = 1;
            continue;
        }

        if (*p < '0' || *p > '9') {
            break;
        }

        any = 1;

        if (mant == 0 && *p == '0') {
            if (dot) {
                exp10--;
            }

            continue;
        }

        if (sig < 18) {
            mant = mant * 10 + (uint64_t) (*p - '0');
            sig++;

            if (dot) {
                exp10--;
            }

        } else {
            /* beyond 18 significant digits: only the magnitude counts */
            if (!dot) {
                exp10++;

            } else if (*p != '0') {
                lost = 1;
            }
        }
    }

    if (!any) {
        return -1;
    }

    if (*p == 'e' || *p == 'E') {
        p++;
        eneg = 0;

        if (*p == '+' || *p == '-') {
            eneg = (*p == '-');
            p++;
        }

        if (*p < '0' || *p > '9') {
            return -1;
        }

        for (e = 0; *p >= '0' && *p <= '9'; p++) {
            if (e < 100000) {
                e = e * 10 + (*p - '0');
            }
        }

        exp10 += eneg ? -(int) e : (int) e;
    }

    if (*p != '\0') {
        return -1;
    }

    shift = exp10 + 9;

    if (mant == 0) {
        *out = 0;
        *rounded = lost;
        return 0;
    }

    if (shift >= 0) {
        while (shift--) {
            if (mant > UINT64_MAX / 10) {
                return -1;
            }

            mant *= 10;
        }

        q = mant;
        r = 0;

    } else if (-shift > 19) {
        q = 0;
        r = 1;

    } else {
        for (div = 1; shift++ < 0; div *= 10) { /* void */ }

        q = mant / div;
        r = mant % div;

        if (r >= div - r) {
            q++;
        }
    }

    if (q > 1000000000000000ULL) {
        return -1;
    }

    *out = q;
    *rounded = lost || r != 0;

    return 0;
}


/* milli-USD -> "1.25", "0.40", "0.025", "15.00" */

void
lc_format_price(uint64_t milli, char *buf, size_t size)
{
    unsigned  frac;

    frac = (unsigned) (milli % 1000);

    if (frac % 10 == 0) {
        snprintf(buf, size, "%llu.%02u", (unsigned long long) (milli / 1000),
                 frac / 10);

    } else {
        snprintf(buf, size, "%llu.%03u", (unsigned long long) (milli / 1000),
                 frac);
    }
}


/* "128k", "1m", "131072" as the module's context= parser reads them */

int
lc_parse_count(const char *s, uint64_t *out)
{
    char      *end;
    uint64_t   mult;
    unsigned long long  v;

    if (*s < '0' || *s > '9') {
        return -1;
    }

    errno = 0;
    v = strtoull(s, &end, 10);
    mult = 1;

    if (*end == 'k' || *end == 'K') {
        mult = 1000;
        end++;

    } else if (*end == 'm' || *end == 'M') {
        mult = 1000000;
        end++;
    }

    if (errno || *end != '\0' || v > (1ULL << 40)) {
        return -1;
    }

    *out = v * mult;

    return 0;
}


/* provider names: as the module's llmroute_provider accepts them */

int
lc_valid_name(const char *s)
{
    size_t  n;

    n = strlen(s);

    if (n == 0 || n > 64) {
        return 0;
    }

    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789-_.") == n;
}


/* model ids: no controls, spaces, quotes, backslashes; not "auto..." */

int
lc_valid_model_id(const char *s)
{
    const unsigned char  *p;

    if (*s == '\0' || strncmp(s, "auto", 4) == 0 || strlen(s) > 256) {
        return 0;
    }

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p <= ' ' || *p == '"' || *p == '\'' || *p == '\\'
            || *p == ';' || *p == '{' || *p == '}' || *p == '#'
            || *p == '$' || *p == 0x7f)
        {
            return 0;
        }
    }

    return 1;
}


/* the whole file, NUL-terminated */

int
lc_read_file(const char *path, char **data, size_t *len)
{
    FILE    *f;
    char    *buf, *nbuf;
    size_t   n, cap, got;

    f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }

    cap = 65536;
    n = 0;
    buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }

    for ( ;; ) {
        if (cap - n < 2) {
            if (cap > (256u << 20)) {
                errno = EFBIG;
                goto failed;
            }

            nbuf = realloc(buf, cap * 2);
            if (nbuf == NULL) {
                goto failed;
            }

            buf = nbuf;
            cap *= 2;
        }

        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;

        if (got == 0) {
            break;
        }
    }

    if (ferror(f)) {
        goto failed;
    }

    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *len = n;

    return 0;

failed:

    free(buf);
    fclose(f);
    return -1;
}
