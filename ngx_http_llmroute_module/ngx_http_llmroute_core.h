
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The routing core: request parsing, classification and provider selection.
 * It uses no nginx function and allocates nothing itself, so the very same
 * code is compiled into the module, the classifier report, the benchmark and
 * the fuzzers (define NGX_HTTP_LLMROUTE_STANDALONE there).
 */


#ifndef _NGX_HTTP_LLMROUTE_CORE_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_CORE_H_INCLUDED_


#ifndef NGX_HTTP_LLMROUTE_STANDALONE

#include <ngx_config.h>
#include <ngx_core.h>
#include <stdio.h>

#else

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

typedef intptr_t   ngx_int_t;
typedef uintptr_t  ngx_uint_t;

typedef struct {
    size_t      len;
    u_char     *data;
} ngx_str_t;

#define ngx_string(str)     { sizeof(str) - 1, (u_char *) str }
#define ngx_null_string     { 0, NULL }
#define ngx_memzero(p, n)   (void) memset(p, 0, n)
#define ngx_strlen(s)       strlen((const char *) s)
#define ngx_memcpy(d, s, n) (void) memcpy(d, s, n)
#define ngx_cpymem(d, s, n) (((u_char *) memcpy(d, s, n)) + (n))
#define ngx_memcmp(a, b, n) memcmp(a, b, n)

/* same prototype as nginx's, so standalone builds catch type mistakes */
static inline ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    return strncasecmp((const char *) s1, (const char *) s2, n);
}

#define ngx_tolower(c)      (u_char) ((c >= 'A' && c <= 'Z') ? (c | 0x20) : c)
#define ngx_min(a, b)       (((a) < (b)) ? (a) : (b))
#define ngx_max(a, b)       (((a) < (b)) ? (b) : (a))

#define NGX_OK        0
#define NGX_ERROR    -1
#define NGX_DECLINED -5

#endif


/*
 * The module's own functions and globals are hidden: nothing outside the
 * .so calls them (nginx's loader needs only ngx_modules, ngx_module_names
 * and ngx_module_order, generated elsewhere), so calls between its files
 * are direct, not through the PLT, its globals are not read through the
 * GOT, and the compiler may inline within a file.  Each header of the
 * module pushes hidden after its own #includes and pops at its end, so a
 * system or library header included after it keeps default visibility
 * (config's version script checks that nothing else is exported).
 */
#pragma GCC visibility push(hidden)


/*
 * A function only an error or a rare path calls: gcc moves the blocks that
 * lead to its calls out of the hot functions (their .cold parts), so the
 * lines a request runs through hold no code it skips.  Branches that a
 * request never takes are marked with ngx_http_llmroute_unlikely().
 */
#if defined(__GNUC__)
#define ngx_http_llmroute_cold         __attribute__((cold, noinline))
#define ngx_http_llmroute_unlikely(c)  __builtin_expect(!!(c), 0)
#define ngx_http_llmroute_likely(c)    __builtin_expect(!!(c), 1)
#else
#define ngx_http_llmroute_cold
#define ngx_http_llmroute_unlikely(c)  (c)
#define ngx_http_llmroute_likely(c)    (c)
#endif


/* 8 bytes, the first one in the low bits whatever the byte order */

static inline uint64_t
ngx_http_llmroute_le64(const u_char *p)
{
    uint64_t  w;

    ngx_memcpy(&w, p, 8);

#if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    w = __builtin_bswap64(w);
#endif

    return w;
}


/*
 * p[0..n) is lc (lower case) with ASCII letters folded, as
 * ngx_strncasecmp() folds them, inline (a call to it costs ~170
 * instructions on the request path)
 */

static inline ngx_uint_t
ngx_http_llmroute_equal_lc(u_char *p, const char *lc, size_t n)
{
    u_char  c;
    size_t  k;

    for (k = 0; k < n; k++) {
        c = p[k];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (u_char) lc[k]) {
            return 0;
        }
    }

    return 1;
}


#define NGX_HTTP_LLMROUTE_TIER_SIMPLE     0
#define NGX_HTTP_LLMROUTE_TIER_MODERATE   1
#define NGX_HTTP_LLMROUTE_TIER_COMPLEX    2
#define NGX_HTTP_LLMROUTE_NTIERS          3
#define NGX_HTTP_LLMROUTE_TIER_UNSET      ((ngx_uint_t) -1)

#define NGX_HTTP_LLMROUTE_ROLE_OTHER      0
#define NGX_HTTP_LLMROUTE_ROLE_SYSTEM     1
#define NGX_HTTP_LLMROUTE_ROLE_USER       2
#define NGX_HTTP_LLMROUTE_ROLE_ASSISTANT  3
#define NGX_HTTP_LLMROUTE_ROLE_TOOL       4

/* wire formats a provider speaks and a location serves */
#define NGX_HTTP_LLMROUTE_FORMAT_OPENAI     0
#define NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC  1
#define NGX_HTTP_LLMROUTE_NFORMATS          2

#define NGX_HTTP_LLMROUTE_OK              0
#define NGX_HTTP_LLMROUTE_INVALID_JSON    1
#define NGX_HTTP_LLMROUTE_INVALID_REQUEST 2
#define NGX_HTTP_LLMROUTE_TOO_COMPLEX     3

/*
 * A body with more JSON values than this is refused (413): the token
 * array of a request is at most 262,144 x 20 bytes = 5 MB, whatever
 * client_max_body_size allows (a 4 MB "[0,0,...]" once needed 40 MB).
 */
#define NGX_HTTP_LLMROUTE_MAX_TOKENS      (1 << 18)

/* a cost (nano-USD) saturates here: it must fit every signed counter */
#define NGX_HTTP_LLMROUTE_COST_MAX        ((uint64_t) 0x7fffffffffffffffLL)

#define NGX_HTTP_LLMROUTE_MAX_FEATURES    32
#define NGX_HTTP_LLMROUTE_MAX_PROVIDERS   64
#define NGX_HTTP_LLMROUTE_REASON_LEN      256

/* a short follow-up is read with up to two asks before it */
#define NGX_HTTP_LLMROUTE_ASK_MAX         3

/* how long a provider keeps a prompt cache unless the model says (ms) */
#define NGX_HTTP_LLMROUTE_CACHE_TTL       300000


typedef void *(*ngx_http_llmroute_alloc_pt)(void *data, size_t size);


/* one chat message; text spans are raw (still JSON-escaped) body bytes */
typedef struct {
    ngx_uint_t                  role;
    size_t                      start;      /* content value, raw */
    size_t                      end;
    size_t                      text;       /* bytes of text in it */
    ngx_uint_t                  images;     /* image parts in content */
    ngx_uint_t                  tool_calls;
} ngx_http_llmroute_msg_t;


typedef struct {
    u_char                     *body;
    size_t                      len;

    /* the top-level "model" member: value token span, quotes included */
    size_t                      model_start;
    size_t                      model_end;
    ngx_str_t                   model;      /* raw value between quotes */
    size_t                      obj_open;   /* offset just past the '{' */
    size_t                      obj_close;  /* offset of the closing '}' */

    /*
     * a stream_options that does not ask for usage: the span to replace
     * with usage_fix so that it does (the module strips it again)
     */
    size_t                      usage_start;
    size_t                      usage_end;
    const char                 *usage_fix;

    int64_t                     max_tokens; /* -1: not given */
    ngx_uint_t                  ntools;
    size_t                      tools_bytes;
    size_t                      tools_start;    /* "tools" value span */
    size_t                      tools_end;

    /* session hints, raw string values (still JSON-escaped) */
    ngx_str_t                   cache_key;      /* prompt_cache_key */
    ngx_str_t                   user_id;        /* metadata.user_id */
    ngx_uint_t                  images;

    ngx_http_llmroute_msg_t    *msgs;
    ngx_uint_t                  nmsgs;

    size_t                      text_bytes; /* all message content bytes */
    size_t                      prompt_tokens;  /* estimate */
    ngx_uint_t                  format;     /* NGX_HTTP_LLMROUTE_FORMAT_* */

    unsigned                    has_model:1;
    unsigned                    model_escaped:1;
    unsigned                    stream:1;
    unsigned                    stream_options:1;
    unsigned                    include_usage:1;
    unsigned                    json_mode:1;
    unsigned                    json_schema:1;

    ngx_uint_t                  error;
    const char                 *error_msg;
    const char                 *error_param;
} ngx_http_llmroute_req_t;


/*
 * two decisions, each a weighted sum of the same features: complex or not
 * (weight, the complex threshold, bias), else at least moderate or simple
 * (moderate_weight, the moderate threshold)
 */
typedef struct {
    double                      weight[NGX_HTTP_LLMROUTE_MAX_FEATURES];
    double                      moderate_weight[
                                    NGX_HTTP_LLMROUTE_MAX_FEATURES];
    double                      moderate;   /* score thresholds */
    double                      complex;
    double                      bias;       /* added to every score */
} ngx_http_llmroute_classifier_t;


/* what decided a classification: $llmroute_reason is printed from it */
typedef struct {
    double                      f[NGX_HTTP_LLMROUTE_MAX_FEATURES];
    double                      score;      /* of the deciding weights */
    size_t                      tokens;
    ngx_uint_t                  msg[NGX_HTTP_LLMROUTE_ASK_MAX];
    ngx_uint_t                  nmsg;       /* the ask's messages */
    ngx_uint_t                  tier;
    unsigned                    moderate:1; /* moderate_weight decided */
    unsigned                    utility:1;  /* an agent's title call */
} ngx_http_llmroute_explain_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   url;
    ngx_str_t                   host;           /* host[:port] of url */
    ngx_str_t                   authorization;  /* "Bearer KEY" or empty */
    ngx_str_t                   key_env;
    uint64_t                    regions;        /* bit per region, 0: all */
    ngx_uint_t                  rpm;
    ngx_uint_t                  tpm;
    ngx_uint_t                  concurrency;
    ngx_uint_t                  index;
    ngx_uint_t                  format;         /* FORMAT_* */
    ngx_uint_t                  count_tokens;   /* has .../count_tokens */
    ngx_str_t                   key;            /* KEY alone (x-api-key) */
} ngx_http_llmroute_provider_t;


typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   full;           /* "provider/id" */
    ngx_uint_t                  provider;
    ngx_uint_t                  tier;
    /* prices in nano-USD per token: USD per 1M tokens x 1000 */
    uint64_t                    input;
    uint64_t                    output;
    uint64_t                    cached_input;
    size_t                      context;
    unsigned                    tools:1;
    unsigned                    json:1;
    unsigned                    vision:1;
    unsigned                    stream_usage:1;
    uint64_t                    cache_write;    /* a prompt-cache write */
    uint64_t                    cache_ttl;      /* ms */
    uint32_t                    holder;         /* crc32 of full, 0: not yet
                                                   (session.c, per worker) */
} ngx_http_llmroute_model_t;


typedef struct {
    ngx_http_llmroute_provider_t   *providers;
    ngx_uint_t                      nproviders;
    ngx_http_llmroute_model_t      *models;
    ngx_uint_t                      nmodels;
    ngx_str_t                      *regions;
    ngx_uint_t                      nregions;
    size_t                          output_budget[NGX_HTTP_LLMROUTE_NTIERS];
    ngx_http_llmroute_classifier_t  classifier;
} ngx_http_llmroute_catalog_t;


/* what the request asks for, after "model" and headers were interpreted */
#define NGX_HTTP_LLMROUTE_PIN_NONE      0
#define NGX_HTTP_LLMROUTE_PIN_MODEL     1
#define NGX_HTTP_LLMROUTE_PIN_PROVIDER  2

#define NGX_HTTP_LLMROUTE_REGION_ANY     -1
#define NGX_HTTP_LLMROUTE_REGION_UNKNOWN -2

typedef struct {
    ngx_uint_t                  tier;       /* minimum tier */
    ngx_uint_t                  format;     /* providers of this format */
    ngx_uint_t                  pin;
    ngx_str_t                   pin_id;     /* model id when pinned */
    ngx_uint_t                  pin_provider;
    ngx_int_t                   region;     /* region index or REGION_* */
    uint64_t                    exclude;    /* provider bits to skip */
    ngx_uint_t                  tiers;      /* model tier bits, 0: all */
    const u_char               *allowed;    /* per model, NULL: all */

    /*
     * the session's prompt caches: the holder (model index + 1, 0: none),
     * and per model the prompt tokens it holds (NULL: none anywhere)
     */
    ngx_uint_t                  sticky;
    size_t                     *cached;
    ngx_uint_t                  horizon;    /* turns to come, 0/1: this */
    size_t                      output;     /* tokens a turn answers, 0: ? */
    unsigned                    session:1;  /* a new holder writes */
} ngx_http_llmroute_want_t;


/* how far a model got through the filters, to explain a refusal or a move */
enum {
    ngx_http_llmroute_stage_format = 0,
    ngx_http_llmroute_stage_pin,
    ngx_http_llmroute_stage_tier,
    ngx_http_llmroute_stage_region,
    ngx_http_llmroute_stage_caps,
    ngx_http_llmroute_stage_context,
    ngx_http_llmroute_stage_available,
    ngx_http_llmroute_stage_ok
};


typedef struct {
    ngx_int_t                   model;      /* index, -1: none eligible */
    uint64_t                    est_cost;   /* nano-USD */
    size_t                      output_budget;
    const char                 *why_none;
    ngx_uint_t                  sticky_stage;   /* how far the holder got */
} ngx_http_llmroute_choice_t;


ngx_int_t ngx_http_llmroute_parse(ngx_http_llmroute_req_t *req, u_char *body,
    size_t len, ngx_http_llmroute_alloc_pt alloc, void *data);
ngx_int_t ngx_http_llmroute_parse_anthropic(ngx_http_llmroute_req_t *req,
    u_char *body, size_t len, ngx_http_llmroute_alloc_pt alloc, void *data);
void ngx_http_llmroute_parse_cleanup(void);
ngx_int_t ngx_http_llmroute_tier_by_name(u_char *name, size_t len);
extern ngx_str_t  ngx_http_llmroute_tier_names[];

void ngx_http_llmroute_classifier_init(ngx_http_llmroute_classifier_t *cl);
ngx_int_t ngx_http_llmroute_classifier_set(ngx_http_llmroute_classifier_t *cl,
    ngx_str_t *name, double value);
ngx_uint_t ngx_http_llmroute_classify(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_req_t *req, u_char *reason, size_t size,
    size_t *reason_len);
ngx_uint_t ngx_http_llmroute_classify_explained(
    ngx_http_llmroute_classifier_t *cl, ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_explain_t *ex);
size_t ngx_http_llmroute_classify_explain(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_explain_t *ex, u_char *reason, size_t size);

/* the ask and the scaffolding around it: ngx_http_llmroute_ask.c */
ngx_int_t ngx_http_llmroute_ask_prev(ngx_http_llmroute_req_t *req,
    ngx_uint_t before);
ngx_uint_t ngx_http_llmroute_ask_is_parts(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_msg_t *m);
ngx_uint_t ngx_http_llmroute_ask_has_text(u_char *p, u_char *last);
u_char *ngx_http_llmroute_ask_part(u_char **pp, u_char *last, u_char **e);
u_char *ngx_http_llmroute_ask_block(u_char *p, u_char *last, u_char **end);
ngx_uint_t ngx_http_llmroute_ask_utility(ngx_http_llmroute_req_t *req);

ngx_int_t ngx_http_llmroute_resolve_model(ngx_http_llmroute_catalog_t *cat,
    ngx_str_t *model, ngx_http_llmroute_want_t *want);
void ngx_http_llmroute_select(ngx_http_llmroute_catalog_t *cat,
    ngx_http_llmroute_req_t *req, ngx_http_llmroute_want_t *want,
    ngx_http_llmroute_choice_t *choice);
uint64_t ngx_http_llmroute_cost(ngx_http_llmroute_model_t *m,
    uint64_t prompt, uint64_t cached, uint64_t written, uint64_t completion);


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_CORE_H_INCLUDED_ */
