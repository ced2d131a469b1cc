
/*
 * Copyright (C) ngx_http_llmroute_module authors
 */


#ifndef _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ngx_http_llmroute_core.h>


/*
 * nginx's log writer, called on the module's error paths only (a request
 * that succeeds logs nothing): cold, as ngx_http_llmroute_cold says why
 */
#if (NGX_HAVE_VARIADIC_MACROS) && defined(__GNUC__)
void ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...) __attribute__((cold));
#endif


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


/*
 * Provider names are at most 64 bytes, model ids at most 256: the text of
 * one metrics series (every tier and status code) is bounded by them.
 */
#define NGX_HTTP_LLMROUTE_NAME_MAX        64
#define NGX_HTTP_LLMROUTE_MODEL_ID_MAX    256

/* status codes counted one by one; anything else is "other" */
#define NGX_HTTP_LLMROUTE_NCODES          16

/* upstream failure reasons */
#define NGX_HTTP_LLMROUTE_FAIL_CONNECT    0
#define NGX_HTTP_LLMROUTE_FAIL_TIMEOUT    1
#define NGX_HTTP_LLMROUTE_FAIL_429        2
#define NGX_HTTP_LLMROUTE_FAIL_5XX        3
#define NGX_HTTP_LLMROUTE_FAIL_RESET      4
#define NGX_HTTP_LLMROUTE_NFAILS          5

/* requests the module refused itself */
#define NGX_HTTP_LLMROUTE_REJECT_JSON         0
#define NGX_HTTP_LLMROUTE_REJECT_REQUEST      1
#define NGX_HTTP_LLMROUTE_REJECT_MODEL        2
#define NGX_HTTP_LLMROUTE_REJECT_METHOD       3
#define NGX_HTTP_LLMROUTE_REJECT_TOO_LARGE    4
#define NGX_HTTP_LLMROUTE_REJECT_NO_PROVIDER  5
#define NGX_HTTP_LLMROUTE_REJECT_OTHER        6
#define NGX_HTTP_LLMROUTE_REJECT_RATE         7
#define NGX_HTTP_LLMROUTE_REJECT_BUDGET       8
#define NGX_HTTP_LLMROUTE_REJECT_KEY          9
#define NGX_HTTP_LLMROUTE_NREJECTS            10

/* consecutive failures that open a provider's circuit */
#define NGX_HTTP_LLMROUTE_CIRCUIT_FAILS   5

/* a client label on the status page and in $llmroute_client */
#define NGX_HTTP_LLMROUTE_KEY_LEN         64

/*
 * An agent's scaffold (tools and system prompt, shared by its sessions)
 * at levels, and the models it was sent to: ngx_http_llmroute_scaffold.c
 */
#define NGX_HTTP_LLMROUTE_SCAFFOLDS           32
#define NGX_HTTP_LLMROUTE_SCAFFOLD_LEVELS     6

/* 64 bytes: the table is one 2 KB slab chunk */
typedef struct {
    uint32_t                        holder;     /* crc32 provider/model */
    uint32_t                        nlevels;
    uint32_t                        level[NGX_HTTP_LLMROUTE_SCAFFOLD_LEVELS];
    uint32_t                        tokens[NGX_HTTP_LLMROUTE_SCAFFOLD_LEVELS];
    uint64_t                        last;       /* ms since the epoch */
} ngx_http_llmroute_scaffold_t;

/* why a session left the provider and model holding its prompt cache */
#define NGX_HTTP_LLMROUTE_MOVE_TIER_UP        0
#define NGX_HTTP_LLMROUTE_MOVE_INELIGIBLE     1
#define NGX_HTTP_LLMROUTE_MOVE_COOLDOWN       2
#define NGX_HTTP_LLMROUTE_MOVE_LIMIT          3
#define NGX_HTTP_LLMROUTE_MOVE_CHEAPER        4
#define NGX_HTTP_LLMROUTE_MOVE_EXPIRED        5
#define NGX_HTTP_LLMROUTE_MOVE_EVICTED        6
#define NGX_HTTP_LLMROUTE_NMOVES              7

#define NGX_HTTP_LLMROUTE_SESSION_LEN         16  /* keyed hash, bytes */

/* a catalog of at most this many models keeps want.cached in the ctx */
#define NGX_HTTP_LLMROUTE_CACHED_INLINE       8

/* latency histogram: upper bounds in ms, then +Inf */
#define NGX_HTTP_LLMROUTE_NBUCKETS        12

#define NGX_HTTP_LLMROUTE_USAGE_NONE      0
#define NGX_HTTP_LLMROUTE_USAGE_PROVIDER  1
#define NGX_HTTP_LLMROUTE_USAGE_ESTIMATE  2


/*
 * Counters of money (nano-USD), tokens and milliseconds are 64-bit on
 * every platform: ngx_atomic_t is 32-bit on i386 and armhf, where a cost
 * total would wrap at $4.29.  Updated with the compiler's 64-bit atomics
 * (lock-free on x86-64, i586+ and ARMv7, checked at compile time in
 * ngx_http_llmroute_shm.c); money additions saturate.
 */
typedef uint64_t  ngx_http_llmroute_counter_t;

#define ngx_http_llmroute_count(c, n)                                        \
    (void) __atomic_fetch_add(c, (uint64_t) (n), __ATOMIC_RELAXED)

#define ngx_http_llmroute_counter_get(c)                                     \
    __atomic_load_n(c, __ATOMIC_RELAXED)



/* a model's prices, as configured and as Redis publishes them: input,
 * output, cached_input, cache_write (nano-USD per token) */
#define NGX_HTTP_LLMROUTE_PRICES  4

typedef struct {
    ngx_http_llmroute_counter_t     requests[NGX_HTTP_LLMROUTE_NTIERS]
                                            [NGX_HTTP_LLMROUTE_NCODES];
    ngx_http_llmroute_counter_t     prompt_tokens;
    ngx_http_llmroute_counter_t     completion_tokens;
    ngx_http_llmroute_counter_t     cached_tokens;
    ngx_http_llmroute_counter_t     cache_write_tokens;
    ngx_http_llmroute_counter_t     cost;           /* nano-USD */

    /*
     * a live price from Redis (nano-USD per token), under the mutex, and
     * the configured price it was read over: a reload that edits the
     * configured price wins until the Redis price version moves again
     */
    uint64_t                        price[NGX_HTTP_LLMROUTE_PRICES];
    uint64_t                        config[NGX_HTTP_LLMROUTE_PRICES];
    ngx_uint_t                      priced;
} ngx_http_llmroute_model_stats_t;


/*
 * A rolling minute of requests and tokens in one-second buckets: the
 * window is the current second and the 59 before it.
 */
#define NGX_HTTP_LLMROUTE_WINDOW          60

typedef struct {
    time_t                          sec;        /* second of bucket [0] */
    uint32_t                        req[NGX_HTTP_LLMROUTE_WINDOW];
    int64_t                         tok[NGX_HTTP_LLMROUTE_WINDOW];
} ngx_http_llmroute_window_t;


/* what the other nodes counted (from Redis), and what is not pushed yet */
typedef struct {
    int64_t                         ud_req;
    int64_t                         ud_tok;
    int64_t                         ud_spend;
    int64_t                         req;        /* others, last minute */
    int64_t                         tok;
    int64_t                         spend;      /* others, this period */
    ngx_uint_t                      period;
    time_t                          last;       /* last use on this node */
    ngx_uint_t                      synced;     /* a sync reply filled it */
} ngx_http_llmroute_remote_t;


typedef struct {
    ngx_http_llmroute_counter_t     failures[NGX_HTTP_LLMROUTE_NFAILS];
    ngx_http_llmroute_counter_t     ttfb[NGX_HTTP_LLMROUTE_NBUCKETS];
    ngx_http_llmroute_counter_t     total[NGX_HTTP_LLMROUTE_NBUCKETS];
    ngx_http_llmroute_counter_t     ttfb_ms;        /* sums */
    ngx_http_llmroute_counter_t     total_ms;
    ngx_http_llmroute_counter_t     count;
    ngx_http_llmroute_counter_t     tokens;         /* prompt+completion */

    /*
     * Health (cooldown, circuit, limits): read and written only under
     * the zone mutex, and only in ngx_http_llmroute_limits.c (the Redis
     * sync merges the cluster's view under the same mutex).
     */
    uint64_t                        cooldown_until; /* ms since epoch */
    ngx_http_llmroute_window_t      window;
    ngx_uint_t                      inflight;
    ngx_uint_t                      fails;          /* consecutive */
    ngx_uint_t                      probing;        /* half-open probe */
    ngx_uint_t                      disabled;       /* by Redis */
    ngx_http_llmroute_remote_t      remote;
} ngx_http_llmroute_provider_stats_t;


/* a client of llmroute_client, in the zone's rbtree */
typedef struct {
    u_char                          color;
    u_char                          dummy;
    u_short                         len;
    ngx_queue_t                     queue;          /* LRU */
    ngx_uint_t                      count;          /* requests using it */
    ngx_http_llmroute_window_t      window;
    ngx_uint_t                      period;         /* budget period */
    int64_t                         spend;          /* nano-USD, reserved */
    ngx_http_llmroute_remote_t      remote;
    u_char                          data[1];
} ngx_http_llmroute_client_node_t;


typedef struct {
    ngx_http_complex_value_t        key;
    ngx_uint_t                      rpm;
    ngx_uint_t                      tpm;
    uint64_t                        budget;         /* nano-USD */
    ngx_uint_t                      period;         /* 0 hour, 1 day, 2 month */
    ngx_flag_t                      degrade;
    ngx_uint_t                      tiers;          /* allowed, 0: all */
    ngx_array_t                    *models;         /* allowed, ngx_str_t */
    ngx_flag_t                      choose;         /* header, pins count */
    u_char                         *file;           /* for models= checks */
    ngx_uint_t                      line;
} ngx_http_llmroute_client_conf_t;


typedef struct {
    ngx_queue_t                     queue;
    ngx_str_t                       provider;
    ngx_str_t                       model;          /* empty: a provider */
    union {
        ngx_http_llmroute_model_stats_t     model;
        ngx_http_llmroute_provider_stats_t  provider;
    } s;
} ngx_http_llmroute_series_t;


typedef struct ngx_http_llmroute_minutes_s  ngx_http_llmroute_minutes_t;


/* lives in the zone; survives reloads */
typedef struct {
    ngx_rbtree_t                    clients;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;
    ngx_queue_t                     series;
    ngx_http_llmroute_counter_t     rejected[NGX_HTTP_LLMROUTE_NREJECTS];
    ngx_http_llmroute_counter_t     savings;        /* nano-USD */
    ngx_atomic_t                    redis_up;
    ngx_atomic_t                    prices;         /* version applied */
    ngx_http_llmroute_minutes_t    *minutes;        /* llmroute_status */
    /* hashes client keys when llmroute_client_hash is not configured */
    u_char                          client_secret[32];
    int64_t                         redis_prices;   /* Redis version read */
    void                           *orphans;        /* batches to re-send */

    /* sessions: owned by ngx_http_llmroute_session.c */
    ngx_rbtree_t                    sessions;
    ngx_rbtree_node_t               session_sentinel;
    ngx_queue_t                     session_lru;
    ngx_uint_t                      session_dirty;  /* not pushed yet */
    ngx_atomic_t                    moves[NGX_HTTP_LLMROUTE_NMOVES];
    /* NGX_HTTP_LLMROUTE_SCAFFOLDS of them, from the first agent's on */
    ngx_http_llmroute_scaffold_t   *scaffolds;
} ngx_http_llmroute_shctx_t;


typedef struct {
    ngx_http_llmroute_catalog_t     cat;
    ngx_array_t                     providers;  /* llmroute_provider_t */
    ngx_array_t                     models;     /* llmroute_model_t */
    ngx_array_t                     regions;    /* ngx_str_t */
    ngx_array_t                     aliases;    /* llmroute_alias_t */
    ngx_shm_zone_t                 *shm_zone;
    ngx_str_t                       baseline;   /* llmroute_baseline_model */
    ngx_int_t                       baseline_model;
    ngx_http_llmroute_shctx_t      *sh;
    void                           *redis;      /* llmroute_redis conf */
    ngx_slab_pool_t                *shpool;
    /* this worker's pointers to the zone's series, found on first use */
    ngx_http_llmroute_series_t    **model_series;
    ngx_http_llmroute_series_t    **provider_series;
    ngx_http_llmroute_series_t     *none_series;
    ngx_atomic_uint_t               prices;     /* this worker's copy */
    uint64_t                       *conf_prices;    /* _PRICES per model */
    u_char                         *provider_file;  /* for "no zone" */
    ngx_uint_t                      provider_line;
    ngx_flag_t                      status;     /* llmroute_status used */
    ngx_str_t                       client_secret;  /* llmroute_client_hash */
    u_char                         *client_file;    /* first llmroute_client */
    ngx_uint_t                      client_line;
} ngx_http_llmroute_main_conf_t;


#define NGX_HTTP_LLMROUTE_FORMAT_AUTO  NGX_HTTP_LLMROUTE_NFORMATS


/* what differs between wire formats (ngx_http_llmroute_format.c) */
typedef struct {
    ngx_str_t                       name;
    ngx_int_t                     (*parse)(ngx_http_llmroute_req_t *req,
                                      u_char *body, size_t len,
                                      ngx_http_llmroute_alloc_pt alloc,
                                      void *data);
    ngx_int_t                     (*error_json)(ngx_http_request_t *r,
                                      ngx_uint_t status, const char *code,
                                      ngx_str_t *message, const char *param,
                                      ngx_str_t *out);
    ngx_uint_t                      usage_flags;    /* usage scanner */
    ngx_str_t                      *uris;       /* URI ends, for "auto";
                                                   a null string ends them */
    ngx_str_t                       count_tokens;   /* its URI end, or "" */

    unsigned                        bearer:1;   /* key: Authorization, else
                                                   x-api-key */
    unsigned                        ask_usage:1;    /* may add stream_options
                                                       include_usage */
    unsigned                        input_excludes_cache:1;
                                                /* usage's input tokens */
    unsigned                        pass_errors:1;  /* its clients match on
                                                       providers' errors */
    unsigned                        cache_key:1;    /* takes a
                                                       prompt_cache_key */
} ngx_http_llmroute_format_t;


/* llmroute_alias PATTERN TARGET */
typedef struct {
    ngx_str_t                       pattern;    /* without a trailing '*' */
    ngx_uint_t                      prefix;     /* it had one */
    ngx_str_t                       target;
    u_char                         *file;       /* for nginx -t */
    ngx_uint_t                      line;
} ngx_http_llmroute_alias_t;


typedef struct {
    ngx_flag_t                      enable;
    ngx_uint_t                      format;     /* FORMAT_*, or AUTO */
    ngx_flag_t                      headers;
    ngx_flag_t                      escalate;
    ngx_uint_t                      retries;
    ngx_http_complex_value_t       *region;
    ngx_http_llmroute_client_conf_t *client;
    ngx_http_complex_value_t       *session;    /* llmroute_session */
    ngx_flag_t                      session_off;
    ngx_flag_t                      cache_key;  /* llmroute_cache_key */
} ngx_http_llmroute_loc_conf_t;


typedef struct {
    ngx_http_llmroute_req_t         req;
    ngx_http_llmroute_want_t        want;
    ngx_http_llmroute_choice_t      choice;

    ngx_uint_t                      tier;       /* the request's tier */
    ngx_http_llmroute_model_t      *model;
    ngx_http_llmroute_provider_t   *provider;
    ngx_uint_t                      attempts;
    ngx_uint_t                      http_version;   /* the client's */
    ngx_uint_t                      failure_noted;  /* attempt number */
    ngx_uint_t                      uri_changes;    /* at the decision */
    int64_t                         est_tokens;     /* admitted estimate */
    int64_t                         reserved;       /* budget, nano-USD */
    int64_t                         client_est;     /* client's tokens */
    /* pinned (count) from admission until the request pool goes */
    ngx_http_llmroute_client_node_t *client;
    ngx_http_llmroute_main_conf_t  *lmcf;       /* of the request's cycle */
    ngx_int_t                       admitted;       /* provider, or -1 */
    time_t                          retry_after;
    ngx_uint_t                      rl_limit;
    ngx_uint_t                      rl_remaining;
    uint64_t                        tried;          /* provider bits */
    ngx_str_t                       failures;       /* for the 502 */
    ngx_msec_t                      sync_until;     /* first-sync wait */

    /* the session: its keyed hash, the pinned zone entry (session.c) */
    u_char                          session[NGX_HTTP_LLMROUTE_SESSION_LEN];
    void                           *session_node;
    ngx_int_t                       session_holder; /* model, -1: none */
    ngx_uint_t                      session_tier;
    ngx_http_llmroute_scaffold_t    scaffold;       /* the agent's */
    size_t                          cached[NGX_HTTP_LLMROUTE_CACHED_INLINE];
                                                    /* want.cached, small
                                                       catalogs */

    /* the header buffer while it is lent a block (body_in_place()) */
    ngx_buf_t                      *lent;
    u_char                         *lent_start;
    u_char                         *lent_last;
    u_char                         *lent_end;
    u_char                         *lent_block;     /* the worker's */
    ngx_uint_t                      lent_class;     /* its size: 8 KB << */

    /*
     * $llmroute_reason, printed when read (ngx_http_llmroute_reason()):
     * the classifier's explanation, then "; floor T", "; session T"
     */
    u_char                          reason[NGX_HTTP_LLMROUTE_REASON_LEN];
    size_t                          reason_len;
    ngx_http_llmroute_explain_t     explain;
    const char                     *reason_why[2];
    ngx_uint_t                      reason_tiers[2];
    ngx_uint_t                      reason_suffixes;
    unsigned                        reason_pending:1;   /* not printed */
    unsigned                        reason_explain:1;   /* from explain */

    ngx_str_t                       error;      /* our JSON error body */

    /* the client's header list while a copy without credentials is used */
    ngx_list_t                      client_headers;

    /* headers the decision reads, found in one walk (read_headers()) */
    ngx_table_elt_t                *tier_header;       /* X-LLMRoute-Tier */
    ngx_table_elt_t                *session_header[2]; /* X-Claude-Code-
                                                          Session-Id,
                                                          X-Session-Id */

    ngx_chain_t                    *held;       /* escalation: the answer */
    ngx_chain_t                   **held_last;
    size_t                          held_size;
    uint64_t                        prior_cost; /* escalated attempt */

    void                           *usage;      /* response scanner */
    u_char                         *stash;      /* strip mode */
    size_t                          stash_size;
    off_t                           stash_start;
    ngx_chain_t                    *free;       /* strip mode's buffers */
    ngx_chain_t                    *busy;
    off_t                           out;
    ngx_uint_t                      reject;     /* REJECT_* of that error */

    /* accounting, from the provider's usage or estimated */
    int64_t                         prompt_tokens;
    int64_t                         completion_tokens;
    int64_t                         cached_tokens;
    int64_t                         cache_write_tokens;
    size_t                          content_bytes;
    ngx_uint_t                      usage_source;
    uint64_t                        cost;       /* nano-USD */
    int64_t                         savings;

    unsigned                        waiting_body:1;
    unsigned                        body_done:1;
    unsigned                        decided:1;
    unsigned                        error_sent:1;
    unsigned                        replace_body:1;
    unsigned                        have_usage:1;
    unsigned                        strip_usage:1;
    unsigned                        strip:1;
    unsigned                        degraded:1;
    unsigned                        hold:1;         /* answer withheld */
    unsigned                        escalating:1;
    unsigned                        escalated:1;
    unsigned                        logged:1;
    unsigned                        sync_wait:1;    /* admission waits */
    unsigned                        headers_hidden:1;
    unsigned                        encoded:1;      /* unreadable answer */
    unsigned                        no_answer:1;    /* escalation refused */
    unsigned                        has_session:1;
    unsigned                        session_seen:1; /* session_tier set */
    unsigned                        session_expired:1;
    unsigned                        count_tokens:1; /* .../count_tokens */
    unsigned                        pass_errors:1;  /* last attempt */
    unsigned                        probe:1;        /* the half-open probe */
} ngx_http_llmroute_ctx_t;


ngx_http_llmroute_ctx_t *ngx_http_llmroute_find_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
ngx_int_t ngx_http_llmroute_handler(ngx_http_request_t *r);
void ngx_http_llmroute_reason(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
void ngx_http_llmroute_client_headers(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
void ngx_http_llmroute_note_failure(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
ngx_int_t ngx_http_llmroute_read_only(ngx_http_request_t *r,
    ngx_uint_t *json);
ngx_table_elt_t *ngx_http_llmroute_find_header(ngx_list_t *headers,
    const char *name);

/* hex of the first 16 bytes of HMAC-SHA256(secret, client key) */
#define NGX_HTTP_LLMROUTE_CLIENT_ID_LEN  32

char *ngx_http_llmroute_client_hash(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_llmroute_client_used(ngx_conf_t *cf);
ngx_int_t ngx_http_llmroute_client_hash_check(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf);
ngx_int_t ngx_http_llmroute_client_zone_secret(u_char *secret, size_t len);
ngx_int_t ngx_http_llmroute_client_policy_check(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_client_conf_t *cc);
ngx_int_t ngx_http_llmroute_client_policy(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t *use_header);
ngx_uint_t ngx_http_llmroute_client_tier(ngx_http_llmroute_want_t *want,
    ngx_uint_t tier);
ngx_int_t ngx_http_llmroute_client_id(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *value, ngx_str_t *id);

char *ngx_http_llmroute_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_llmroute_parse_price(ngx_str_t *s, uint64_t *price);
ngx_int_t ngx_http_llmroute_parse_decimal(u_char *p, size_t len,
    ngx_uint_t scale, uint64_t *out);
void ngx_http_llmroute_prices_refresh(ngx_http_llmroute_main_conf_t *lmcf);
ngx_int_t ngx_http_llmroute_redis_init_process(ngx_cycle_t *cycle);
ngx_msec_t ngx_http_llmroute_redis_first_sync(
    ngx_http_llmroute_main_conf_t *lmcf);
void ngx_http_llmroute_redis_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_llmroute_register_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);
extern ngx_http_variable_t  ngx_http_llmroute_facts_vars[];
ngx_int_t ngx_http_llmroute_client_label(ngx_http_request_t *r,
    ngx_http_llmroute_loc_conf_t *lcf, u_char *label, size_t *len);
void ngx_http_llmroute_minutes_add(ngx_http_request_t *r,
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx);
char *ngx_http_llmroute_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_uint_t ngx_http_llmroute_period(ngx_uint_t kind, time_t now);
u_char *ngx_http_llmroute_usd(u_char *p, uint64_t nano);
ngx_int_t ngx_http_llmroute_send_buf(ngx_http_request_t *r, ngx_buf_t *b);
ngx_http_llmroute_client_node_t *ngx_http_llmroute_client_find(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_str_t *key);

ngx_int_t ngx_http_llmroute_admit(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
void ngx_http_llmroute_release(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t settle);
void ngx_http_llmroute_settle(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t ok, ngx_uint_t end);
void ngx_http_llmroute_provider_result(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider, ngx_uint_t ok);
void ngx_http_llmroute_cool_down(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider, uint64_t until);
void ngx_http_llmroute_request_done(ngx_http_llmroute_ctx_t *ctx);
ngx_uint_t ngx_http_llmroute_clients_evict_locked(
    ngx_http_llmroute_main_conf_t *lmcf);
char *ngx_http_llmroute_client(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_llmroute_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);

char *ngx_http_llmroute_session(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_llmroute_session_init_zone(ngx_http_llmroute_shctx_t *sh);
void ngx_http_llmroute_session_unpin(ngx_http_llmroute_ctx_t *ctx);
ngx_int_t ngx_http_llmroute_session_begin(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
ngx_uint_t ngx_http_llmroute_session_evict_locked(
    ngx_http_llmroute_main_conf_t *lmcf);
void ngx_http_llmroute_session_admitted(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx,
    uint64_t cooling);
void ngx_http_llmroute_session_settle(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
void ngx_http_llmroute_session_settle_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx);
ngx_uint_t ngx_http_llmroute_session_changed(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_pool_t *pool, ngx_str_t *out,
    ngx_uint_t max);
void ngx_http_llmroute_session_unpushed(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *pairs, ngx_uint_t n);
void ngx_http_llmroute_session_learn(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *hex, ngx_str_t *value);
u_char *ngx_http_llmroute_session_hex(u_char *p, ngx_http_llmroute_ctx_t *ctx);
void ngx_http_llmroute_scaffold_of(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_scaffold_t *sc);
ngx_uint_t ngx_http_llmroute_scaffold_held_locked(
    ngx_http_llmroute_shctx_t *sh, ngx_http_llmroute_scaffold_t *sc,
    uint32_t *holder, uint64_t *tokens, uint64_t *last, ngx_uint_t max);
void ngx_http_llmroute_scaffold_seen_locked(
    ngx_http_llmroute_main_conf_t *lmcf, uint32_t holder,
    ngx_http_llmroute_scaffold_t *sc, uint64_t now);
extern const char  *ngx_http_llmroute_move_names[];

ngx_int_t ngx_http_llmroute_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *param) ngx_http_llmroute_cold;
ngx_int_t ngx_http_llmroute_error_json(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    const char *param, ngx_str_t *out) ngx_http_llmroute_cold;
ngx_int_t ngx_http_llmroute_filter_init(ngx_conf_t *cf);

extern ngx_http_llmroute_format_t  ngx_http_llmroute_formats[];
ngx_int_t ngx_http_llmroute_format_by_name(ngx_str_t *name);
ngx_uint_t ngx_http_llmroute_request_format(ngx_http_request_t *r);
ngx_uint_t ngx_http_llmroute_is_count_tokens(ngx_http_request_t *r,
    ngx_uint_t format);
void ngx_http_llmroute_pass_errors(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
ngx_str_t *ngx_http_llmroute_find_alias(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *model);
ngx_int_t ngx_http_llmroute_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);

char *ngx_http_llmroute_models(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llmroute_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_llmroute_log_handler(ngx_http_request_t *r);
void ngx_http_llmroute_account_attempt(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
ngx_uint_t ngx_http_llmroute_reject_index(const char *code);
extern const char  *ngx_http_llmroute_reject_codes[];

char *ngx_http_llmroute_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_llmroute_model_stats_t *ngx_http_llmroute_model_stats_new(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_int_t model);
ngx_http_llmroute_provider_stats_t *ngx_http_llmroute_provider_stats_new(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_uint_t provider);
ngx_http_llmroute_provider_stats_t *ngx_http_llmroute_provider_stats_new_locked(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_uint_t provider);
void ngx_http_llmroute_money_counter_add(ngx_http_llmroute_counter_t *c,
    uint64_t n);
ngx_uint_t ngx_http_llmroute_code_index(ngx_uint_t status);
extern ngx_uint_t  ngx_http_llmroute_codes[];
extern ngx_msec_t  ngx_http_llmroute_buckets[];


extern ngx_module_t  ngx_http_llmroute_module;


/*
 * The request's ctx: inline when r->ctx holds it, as it does for every
 * call but the first and those after an internal redirect (the handler,
 * the filters and the variables ask for it about ten times a request)
 */

static ngx_inline ngx_http_llmroute_ctx_t *
ngx_http_llmroute_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_http_llmroute_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llmroute_module);

    return ctx ? ctx : ngx_http_llmroute_find_ctx(r, create);
}


/*
 * n in decimal at p, what ngx_sprintf(p, "%uL", n) writes, without its
 * format parsing (~180 instructions a call on the request path)
 */

static ngx_inline u_char *
ngx_http_llmroute_decimal(u_char *p, uint64_t n)
{
    u_char  tmp[NGX_INT64_LEN], *t;

    t = tmp + NGX_INT64_LEN;

    do {
        *--t = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, t, tmp + NGX_INT64_LEN - t);
}


/*
 * A model's or provider's series in the zone (NULL without a zone, or when
 * it is full): a worker keeps the pointer once found, so all but the first
 * lookup are inline; _locked with the zone mutex held.  Model -1: none.
 */

static ngx_inline ngx_http_llmroute_model_stats_t *
ngx_http_llmroute_model_stats(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_int_t model)
{
    if (lmcf->sh != NULL && model >= 0 && lmcf->model_series[model] != NULL)
    {
        return &lmcf->model_series[model]->s.model;
    }

    return ngx_http_llmroute_model_stats_new(lmcf, model);
}


static ngx_inline ngx_http_llmroute_provider_stats_t *
ngx_http_llmroute_provider_stats_in(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_uint_t provider, ngx_uint_t locked)
{
    if (lmcf->sh != NULL && lmcf->provider_series[provider] != NULL) {
        return &lmcf->provider_series[provider]->s.provider;
    }

    return locked ? ngx_http_llmroute_provider_stats_new_locked(lmcf, provider)
                  : ngx_http_llmroute_provider_stats_new(lmcf, provider);
}

#define ngx_http_llmroute_provider_stats(lmcf, provider)                     \
    ngx_http_llmroute_provider_stats_in(lmcf, provider, 0)
#define ngx_http_llmroute_provider_stats_locked(lmcf, provider)              \
    ngx_http_llmroute_provider_stats_in(lmcf, provider, 1)


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_MODULE_H_INCLUDED_ */
