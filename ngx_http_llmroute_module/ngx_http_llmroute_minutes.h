
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The last hour in per-minute buckets (ngx_http_llmroute_minutes.c owns
 * it; llmroute_status reads it).
 */


#ifndef _NGX_HTTP_LLMROUTE_MINUTES_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_MINUTES_H_INCLUDED_


#include <ngx_http_llmroute_module.h>


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


#define NGX_HTTP_LLMROUTE_MINUTES      60
/* model and client names together; past them, "other" rows */
#define NGX_HTTP_LLMROUTE_KEYS         64
#define NGX_HTTP_LLMROUTE_OTHER_MODEL  NGX_HTTP_LLMROUTE_KEYS
#define NGX_HTTP_LLMROUTE_OTHER_CLIENT (NGX_HTTP_LLMROUTE_KEYS + 1)
#define NGX_HTTP_LLMROUTE_KEY_MODEL    1
#define NGX_HTTP_LLMROUTE_KEY_CLIENT   2
#define NGX_HTTP_LLMROUTE_ROW_FIELDS   5


/*
 * NGX_HTTP_LLMROUTE_ROW_FIELDS counters, read as an array; 64-bit on every
 * platform, as the zone's other money and token counters
 */
typedef struct {
    ngx_http_llmroute_counter_t     requests;
    ngx_http_llmroute_counter_t     prompt;
    ngx_http_llmroute_counter_t     completion;
    ngx_http_llmroute_counter_t     cached;
    ngx_http_llmroute_counter_t     cost;           /* nano-USD */
} ngx_http_llmroute_minute_row_t;


typedef struct {
    ngx_atomic_t                    minute;         /* epoch minute */
    ngx_atomic_t                    tiers[NGX_HTTP_LLMROUTE_NTIERS];
    ngx_http_llmroute_counter_t     savings;        /* signed, nano-USD */
    ngx_http_llmroute_minute_row_t  rows[NGX_HTTP_LLMROUTE_KEYS + 2];
} ngx_http_llmroute_minute_t;


typedef struct {
    ngx_atomic_t                    kind;           /* 0: free */
    ngx_atomic_t                    since;          /* minute given */
    /* a client's budget as its last request saw it */
    uint64_t                        budget;         /* nano-USD, 0: none */
    uint64_t                        used;
    ngx_atomic_t                    period;         /* of "used" */
    ngx_atomic_t                    period_kind;    /* hour, day, month */
    size_t                          len;
    u_char                          name[NGX_HTTP_LLMROUTE_KEY_LEN];
} ngx_http_llmroute_key_t;


struct ngx_http_llmroute_minutes_s {
    ngx_uint_t                      recycled;       /* minute, last try */
    ngx_http_llmroute_key_t         keys[NGX_HTTP_LLMROUTE_KEYS];
    ngx_http_llmroute_minute_t      slots[NGX_HTTP_LLMROUTE_MINUTES];
};


/* what a reader gets: the hour per key, and per minute (oldest first) */
typedef struct {
    ngx_http_llmroute_minutes_t    *minutes;        /* NULL: nothing yet */
    ngx_uint_t                      now;            /* epoch minute */
    uint64_t                        tiers[NGX_HTTP_LLMROUTE_NTIERS];
    int64_t                         savings;
    ngx_http_llmroute_minute_row_t  rows[NGX_HTTP_LLMROUTE_KEYS + 2];
    ngx_http_llmroute_minute_row_t  minute[NGX_HTTP_LLMROUTE_MINUTES];
    /* spend per key per minute, oldest first */
    uint64_t                        cost[NGX_HTTP_LLMROUTE_KEYS + 2]
                                        [NGX_HTTP_LLMROUTE_MINUTES];
} ngx_http_llmroute_minutes_view_t;


void ngx_http_llmroute_minutes_sum(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_minutes_view_t *view);


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_MINUTES_H_INCLUDED_ */
