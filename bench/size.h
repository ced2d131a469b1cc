
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Small helpers shared by the bench programs: "64k" -> 65536, a monotonic
 * clock in ns, median of doubles.
 */


#ifndef _BENCH_SIZE_H_INCLUDED_
#define _BENCH_SIZE_H_INCLUDED_


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>


static inline size_t
bench_parse_size(const char *s)
{
    char    *end;
    size_t   n;

    n = strtoul(s, &end, 10);

    switch (*end) {
    case 'k': case 'K': n *= 1024; end++; break;
    case 'm': case 'M': n *= 1024 * 1024; end++; break;
    }

    return *end == '\0' ? n : 0;
}


/*
 * the body sizes named on the command line (2k 64k 1m by default);
 * returns how many, 0 after printing an error about a bad one
 */
static inline int
bench_parse_sizes(const char *prog, int argc, char **argv, int first,
    size_t *sizes, int max)
{
    int     i, n;
    size_t  s;

    n = 0;

    for (i = first; i < argc && n < max; i++) {
        s = bench_parse_size(argv[i]);
        if (s == 0) {
            fprintf(stderr, "%s: bad size \"%s\"\n", prog, argv[i]);
            return 0;
        }

        sizes[n++] = s;
    }

    if (n == 0) {
        sizes[0] = 2 * 1024;
        sizes[1] = 64 * 1024;
        sizes[2] = 1024 * 1024;
        n = 3;
    }

    return n;
}


/*
 * the thread's CPU time by default: on a shared, noisy machine the time a
 * batch spends preempted is not the code's cost (BENCH_WALL=1: wall clock)
 */
static clockid_t  bench_clock = CLOCK_THREAD_CPUTIME_ID;


static inline void
bench_clock_init(void)
{
    const char  *w = getenv("BENCH_WALL");

    if (w != NULL && *w == '1') {
        bench_clock = CLOCK_MONOTONIC;
    }
}


static inline const char *
bench_clock_name(void)
{
    return bench_clock == CLOCK_MONOTONIC ? "wall clock" : "thread CPU time";
}


static inline uint64_t
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(bench_clock, &ts);

    return (uint64_t) ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}


static inline int
bench_cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static inline double
bench_median(double *v, int n)
{
    qsort(v, n, sizeof(double), bench_cmp_double);

    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}


#endif /* _BENCH_SIZE_H_INCLUDED_ */
