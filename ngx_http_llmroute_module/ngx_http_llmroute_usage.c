
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Usage scanner (see ngx_http_llmroute_usage.h for the contract).
 *
 * Both parsers report what they see through the same three hooks, so SSE
 * chunks (jsmn, a member value at once) and JSON bodies (yajl, events as
 * bytes arrive) are read by one set of rules:
 *
 *   ngx_http_llmroute_usage_open()    a container starts: what is it?
 *   ngx_http_llmroute_usage_scalar()  a string, number, literal
 *   ngx_http_llmroute_usage_close()   a container ends (usage commit)
 *
 * A container is known by its "kind" (root, usage, choices, ...), a value
 * by its "role", found from the container kind and its key in a small
 * table.  Everything else is a container of kind "other", skipped whole.
 * Nothing here calls nginx or allocates but through the caller's alloc.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memrchr() */
#endif

#include <ngx_http_llmroute_usage.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#include <ngx_http_llmroute_scan.h>

#include <yajl/yajl_parse.h>

/* the body tokenizer's choice: SSE2 on x86-64, else 8 bytes in a word */
#if !defined(NGX_HTTP_LLMROUTE_SCAN_SWAR) && defined(__SSE2__)
#define NGX_HTTP_LLMROUTE_USAGE_SSE2  1
#include <emmintrin.h>
#endif


/* container kinds */
#define NGX_HTTP_LLMROUTE_K_OTHER     0
#define NGX_HTTP_LLMROUTE_K_ROOT      1
#define NGX_HTTP_LLMROUTE_K_GROQ      2
#define NGX_HTTP_LLMROUTE_K_USAGE     3
#define NGX_HTTP_LLMROUTE_K_DETAILS   4
#define NGX_HTTP_LLMROUTE_K_CHOICES   5
#define NGX_HTTP_LLMROUTE_K_CHOICE    6
#define NGX_HTTP_LLMROUTE_K_MESSAGE   7
#define NGX_HTTP_LLMROUTE_K_CALLS     8
#define NGX_HTTP_LLMROUTE_K_CALL      9
#define NGX_HTTP_LLMROUTE_K_FUNCTION  10
/* Anthropic Messages API: a message (or an SSE event) and its parts */
#define NGX_HTTP_LLMROUTE_K_AROOT     11
#define NGX_HTTP_LLMROUTE_K_ADELTA    12
#define NGX_HTTP_LLMROUTE_K_ABLOCKS   13
#define NGX_HTTP_LLMROUTE_K_ABLOCK    14
#define NGX_HTTP_LLMROUTE_K_AUSAGE    15

/* value roles */
#define NGX_HTTP_LLMROUTE_R_NONE        0
#define NGX_HTTP_LLMROUTE_R_ROOT        1
#define NGX_HTTP_LLMROUTE_R_USAGE       2
#define NGX_HTTP_LLMROUTE_R_GROQ        3
#define NGX_HTTP_LLMROUTE_R_CHOICES     4
#define NGX_HTTP_LLMROUTE_R_ERROR       5
#define NGX_HTTP_LLMROUTE_R_PROMPT      6
#define NGX_HTTP_LLMROUTE_R_COMPLETION  7
#define NGX_HTTP_LLMROUTE_R_HIT         8
#define NGX_HTTP_LLMROUTE_R_DETAILS     9
#define NGX_HTTP_LLMROUTE_R_CACHED      10
#define NGX_HTTP_LLMROUTE_R_CHOICE      11
#define NGX_HTTP_LLMROUTE_R_MESSAGE     12
#define NGX_HTTP_LLMROUTE_R_FINISH      13
#define NGX_HTTP_LLMROUTE_R_CONTENT     14
#define NGX_HTTP_LLMROUTE_R_REASONING   15
#define NGX_HTTP_LLMROUTE_R_CALLS       16
#define NGX_HTTP_LLMROUTE_R_CALL        17
#define NGX_HTTP_LLMROUTE_R_FCALL       18
#define NGX_HTTP_LLMROUTE_R_FUNCTION    19
#define NGX_HTTP_LLMROUTE_R_ARGUMENTS   20
#define NGX_HTTP_LLMROUTE_R_AUSAGE      21
#define NGX_HTTP_LLMROUTE_R_AMESSAGE    22
#define NGX_HTTP_LLMROUTE_R_ADELTA      23
#define NGX_HTTP_LLMROUTE_R_ABLOCKS     24
#define NGX_HTTP_LLMROUTE_R_ABLOCK      25
#define NGX_HTTP_LLMROUTE_R_ATYPE       26
#define NGX_HTTP_LLMROUTE_R_WRITE       27

/* scalar types */
#define NGX_HTTP_LLMROUTE_T_NULL      0
#define NGX_HTTP_LLMROUTE_T_STRING    1
#define NGX_HTTP_LLMROUTE_T_NUMBER    2
#define NGX_HTTP_LLMROUTE_T_OTHER     3

/* what one SSE chunk had, to recognise the usage-only chunk */
#define NGX_HTTP_LLMROUTE_C_USAGE     1
#define NGX_HTTP_LLMROUTE_C_CHOICES   2
#define NGX_HTTP_LLMROUTE_C_NONEMPTY  4

/* SSE event states: is the event being read one to strip? */
#define NGX_HTTP_LLMROUTE_E_NONE      0   /* between events */
#define NGX_HTTP_LLMROUTE_E_OPEN      1   /* started, no data line yet */
#define NGX_HTTP_LLMROUTE_E_KEEP      2   /* passes to the client */
#define NGX_HTTP_LLMROUTE_E_STRIP     3   /* usage-only so far */

/* the allocation size is kept in front of what yajl gets (realloc) */
#define NGX_HTTP_LLMROUTE_USAGE_HDR   16

/*
 * In a JSON answer only choices[0] decides finish_reason, tool calls and
 * empty content; in a stream any choice does (chunks of n > 1 streams
 * carry one choice each, all at position 0).
 */
#define ngx_http_llmroute_usage_first(u)  ((u)->sse || (u)->index == 0)


typedef struct {
    ngx_uint_t                   role;
    size_t                       len;
    const char                  *name;
} ngx_http_llmroute_usage_key_t;


/*
 * A usage object's shape: its bytes with each number cut out (seg[i]
 * bytes before number i, seg[n] after the last) and each number's role.
 * Providers send the same members in the same order on every answer, only
 * the numbers change; see ngx_http_llmroute_usage_shaped().
 */

#define NGX_HTTP_LLMROUTE_SHAPE_SIZE   512
#define NGX_HTTP_LLMROUTE_SHAPE_NUMS   16

typedef struct {
    ngx_uint_t                   n;          /* numbers; 0: no shape */
    uint16_t                     seg[NGX_HTTP_LLMROUTE_SHAPE_NUMS + 1];
    uint8_t                      role[NGX_HTTP_LLMROUTE_SHAPE_NUMS];
    u_char                       bytes[NGX_HTTP_LLMROUTE_SHAPE_SIZE];
} ngx_http_llmroute_usage_shape_t;

/* the numbers direct() read, where they are; n > NUMS: no shape to keep */

typedef struct {
    ngx_uint_t                   n;
    u_char                      *start[NGX_HTTP_LLMROUTE_SHAPE_NUMS];
    u_char                      *end[NGX_HTTP_LLMROUTE_SHAPE_NUMS];
    uint8_t                      role[NGX_HTTP_LLMROUTE_SHAPE_NUMS];
} ngx_http_llmroute_usage_rec_t;


static size_t ngx_http_llmroute_usage_sse(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len, ngx_uint_t stop);
static void ngx_http_llmroute_usage_overlong(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t n);
static void ngx_http_llmroute_usage_prefix(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t n);
static void ngx_http_llmroute_usage_skipped(ngx_http_llmroute_usage_t *u);
static void ngx_http_llmroute_usage_line(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len);
static void ngx_http_llmroute_usage_emit(ngx_http_llmroute_usage_t *u,
    off_t start, off_t end);
static ngx_uint_t ngx_http_llmroute_usage_chunk(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len);
static ngx_int_t ngx_http_llmroute_usage_members(
    ngx_http_llmroute_usage_t *u, u_char *p, u_char *last);
static ngx_int_t ngx_http_llmroute_usage_members_from(
    ngx_http_llmroute_usage_t *u, u_char *q, u_char *last);
static ngx_int_t ngx_http_llmroute_usage_tail(ngx_http_llmroute_usage_t *u,
    u_char *p, u_char *last);
static ngx_int_t ngx_http_llmroute_usage_member(ngx_http_llmroute_usage_t *u,
    u_char *v, size_t len, ngx_uint_t role);
static u_char *ngx_http_llmroute_usage_shaped(ngx_http_llmroute_usage_t *u,
    u_char *p, u_char *last, ngx_uint_t role);
static u_char *ngx_http_llmroute_usage_again(ngx_http_llmroute_usage_t *u,
    ngx_http_llmroute_usage_shape_t *s, u_char *p, u_char *last,
    ngx_uint_t role);
static ngx_uint_t ngx_http_llmroute_usage_remember(
    ngx_http_llmroute_usage_shape_t *s, ngx_http_llmroute_usage_rec_t *rec,
    u_char *p, u_char *end);
static u_char *ngx_http_llmroute_usage_direct(ngx_http_llmroute_usage_t *u,
    u_char *p, u_char *last, ngx_uint_t role, ngx_uint_t depth,
    ngx_uint_t *tokens, ngx_http_llmroute_usage_rec_t *rec);
static inline ngx_uint_t ngx_http_llmroute_usage_key(ngx_uint_t kind,
    u_char *p, u_char *last, u_char **end);
static inline u_char *ngx_http_llmroute_usage_plain_end(u_char *p,
    u_char *last);
static inline ngx_uint_t ngx_http_llmroute_usage_same(u_char *p,
    const char *name, size_t len);
static u_char *ngx_http_llmroute_usage_ws(u_char *p, u_char *last);
static inline u_char *ngx_http_llmroute_usage_blanks(u_char *p);
static u_char *ngx_http_llmroute_usage_string_end(u_char *p, u_char *last);
static u_char *ngx_http_llmroute_usage_value_end(u_char *p, u_char *last);
static size_t ngx_http_llmroute_usage_backslashes(u_char *start, u_char *q);
static int ngx_http_llmroute_usage_walk(ngx_http_llmroute_usage_t *u,
    u_char *s, jsmntok_t *tok, int n, int i, ngx_uint_t kind);
static int ngx_http_llmroute_usage_value(ngx_http_llmroute_usage_t *u,
    u_char *s, jsmntok_t *tok, int n, int i, ngx_uint_t role);
static int ngx_http_llmroute_usage_skip(jsmntok_t *tok, int n, int i);

static ngx_uint_t ngx_http_llmroute_usage_role(ngx_uint_t kind, u_char *p,
    size_t len);
static inline ngx_uint_t ngx_http_llmroute_usage_open(
    ngx_http_llmroute_usage_t *u, ngx_uint_t role, ngx_uint_t map);
static inline void ngx_http_llmroute_usage_close(
    ngx_http_llmroute_usage_t *u, ngx_uint_t kind);
static void ngx_http_llmroute_usage_scalar(ngx_http_llmroute_usage_t *u,
    ngx_uint_t role, ngx_uint_t type, u_char *p, size_t len,
    ngx_uint_t raw);
static inline void ngx_http_llmroute_usage_count(
    ngx_http_llmroute_usage_t *u, ngx_uint_t role, int64_t v);
static int64_t ngx_http_llmroute_usage_number(u_char *p, size_t len);
static ngx_int_t ngx_http_llmroute_usage_carry_fit(
    ngx_http_llmroute_usage_t *u, size_t need);
static ngx_uint_t ngx_http_llmroute_usage_finish_reason(u_char *p,
    size_t len);
static size_t ngx_http_llmroute_usage_unescaped(u_char *p, size_t len);
static ngx_uint_t ngx_http_llmroute_usage_blank(u_char *p, size_t len,
    ngx_uint_t raw);
static ngx_uint_t ngx_http_llmroute_usage_hex(u_char *p);

static ngx_int_t ngx_http_llmroute_usage_whole(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len);
static void ngx_http_llmroute_usage_restart(ngx_http_llmroute_usage_t *u);
static ngx_int_t ngx_http_llmroute_usage_yajl_init(
    ngx_http_llmroute_usage_t *u);
static ngx_int_t ngx_http_llmroute_usage_json(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len);
static u_char *ngx_http_llmroute_usage_strings(ngx_http_llmroute_usage_t *u,
    u_char *p, u_char *last);
static ngx_int_t ngx_http_llmroute_usage_jbuf(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t n);
static ngx_int_t ngx_http_llmroute_usage_yajl(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t n);
static ngx_uint_t ngx_http_llmroute_usage_is_json(
    ngx_http_llmroute_usage_t *u, u_char *p, size_t len);
static ngx_uint_t ngx_http_llmroute_usage_y_role(
    ngx_http_llmroute_usage_t *u);
static int ngx_http_llmroute_usage_y_null(void *ctx);
static int ngx_http_llmroute_usage_y_boolean(void *ctx, int v);
static int ngx_http_llmroute_usage_y_number(void *ctx, const char *s,
    size_t len);
static int ngx_http_llmroute_usage_y_string(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_http_llmroute_usage_y_start_map(void *ctx);
static int ngx_http_llmroute_usage_y_map_key(void *ctx,
    const unsigned char *s, size_t len);
static int ngx_http_llmroute_usage_y_start_array(void *ctx);
static int ngx_http_llmroute_usage_y_end(void *ctx);
static int ngx_http_llmroute_usage_y_start(ngx_http_llmroute_usage_t *u,
    ngx_uint_t map);
static void ngx_http_llmroute_usage_afs(ngx_http_llmroute_usage_t *u,
    yajl_alloc_funcs *afs);
static void *ngx_http_llmroute_usage_malloc(void *ctx, size_t size);
static void *ngx_http_llmroute_usage_realloc(void *ctx, void *ptr,
    size_t size);
static void ngx_http_llmroute_usage_free(void *ctx, void *ptr);


#ifdef NGX_HTTP_LLMROUTE_STANDALONE

/* the tests and the fuzzer compare direct() with the general path */
ngx_uint_t  ngx_http_llmroute_usage_no_direct;
ngx_uint_t  ngx_http_llmroute_usage_direct_reads;
ngx_uint_t  ngx_http_llmroute_usage_whole_reads;
ngx_uint_t  ngx_http_llmroute_usage_shape_reads;

#define ngx_http_llmroute_usage_direct_read()                                \
    ngx_http_llmroute_usage_direct_reads++
#define ngx_http_llmroute_usage_shape_read()                                 \
    ngx_http_llmroute_usage_shape_reads++
#define ngx_http_llmroute_usage_whole_read()                                 \
    ngx_http_llmroute_usage_whole_reads++

#define ngx_http_llmroute_usage_direct_on()                                  \
    (!ngx_http_llmroute_usage_no_direct)

#else

#define ngx_http_llmroute_usage_direct_on()  1
#define ngx_http_llmroute_usage_direct_read()
#define ngx_http_llmroute_usage_shape_read()
#define ngx_http_llmroute_usage_whole_read()

#endif


/*
 * The last two usage shapes read, OpenAI's and Anthropic's (whose streams
 * carry two: message_start's and message_delta's), and which of the two
 * was used last: per process, only ever compared with what a provider
 * sends, never sent anywhere.
 */
static ngx_http_llmroute_usage_shape_t  ngx_http_llmroute_usage_shapes[2][2];
static ngx_uint_t  ngx_http_llmroute_usage_shape_last[2];


#ifdef NGX_HTTP_LLMROUTE_STANDALONE

/* the tests start a case with no shape kept */

void
ngx_http_llmroute_usage_forget(void)
{
    ngx_memzero(ngx_http_llmroute_usage_shapes,
                sizeof(ngx_http_llmroute_usage_shapes));
}

#endif


ngx_str_t  ngx_http_llmroute_finish_reasons[] = {
    ngx_string(""),
    ngx_string("stop"),
    ngx_string("length"),
    ngx_string("tool_calls"),
    ngx_string("content_filter"),
    ngx_string("other")
};


/*
 * the members we read, by container kind; "delta" and "message" are read
 * alike so that a stream and a JSON answer give the same numbers
 */

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_root[] = {
    { NGX_HTTP_LLMROUTE_R_CHOICES, 7, "choices" },
    { NGX_HTTP_LLMROUTE_R_USAGE, 5, "usage" },
    { NGX_HTTP_LLMROUTE_R_ERROR, 5, "error" },
    { NGX_HTTP_LLMROUTE_R_GROQ, 6, "x_groq" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_groq[] = {
    { NGX_HTTP_LLMROUTE_R_USAGE, 5, "usage" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_usage[] = {
    { NGX_HTTP_LLMROUTE_R_PROMPT, 13, "prompt_tokens" },
    { NGX_HTTP_LLMROUTE_R_COMPLETION, 17, "completion_tokens" },
    { NGX_HTTP_LLMROUTE_R_HIT, 23, "prompt_cache_hit_tokens" },
    { NGX_HTTP_LLMROUTE_R_DETAILS, 21, "prompt_tokens_details" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_details[] = {
    { NGX_HTTP_LLMROUTE_R_CACHED, 13, "cached_tokens" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_choice[] = {
    { NGX_HTTP_LLMROUTE_R_MESSAGE, 5, "delta" },
    { NGX_HTTP_LLMROUTE_R_MESSAGE, 7, "message" },
    { NGX_HTTP_LLMROUTE_R_FINISH, 13, "finish_reason" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_message[] = {
    { NGX_HTTP_LLMROUTE_R_CONTENT, 7, "content" },
    { NGX_HTTP_LLMROUTE_R_REASONING, 17, "reasoning_content" },
    { NGX_HTTP_LLMROUTE_R_REASONING, 9, "reasoning" },
    { NGX_HTTP_LLMROUTE_R_CALLS, 10, "tool_calls" },
    { NGX_HTTP_LLMROUTE_R_FCALL, 13, "function_call" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_call[] = {
    { NGX_HTTP_LLMROUTE_R_FUNCTION, 8, "function" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_function[] = {
    { NGX_HTTP_LLMROUTE_R_ARGUMENTS, 9, "arguments" },
    { 0, 0, NULL }
};

/*
 * Anthropic: a JSON answer is a message; SSE events carry one at
 * "message" (message_start), a "delta" (text, thinking, tool input,
 * stop_reason), a "content_block" or the cumulative "usage"
 * (message_delta).  input_tokens excludes the cache reads and writes.
 */

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_aroot[] = {
    { NGX_HTTP_LLMROUTE_R_ATYPE, 4, "type" },
    { NGX_HTTP_LLMROUTE_R_AUSAGE, 5, "usage" },
    { NGX_HTTP_LLMROUTE_R_ERROR, 5, "error" },
    { NGX_HTTP_LLMROUTE_R_AMESSAGE, 7, "message" },
    { NGX_HTTP_LLMROUTE_R_ADELTA, 5, "delta" },
    { NGX_HTTP_LLMROUTE_R_ABLOCKS, 7, "content" },
    { NGX_HTTP_LLMROUTE_R_ABLOCK, 13, "content_block" },
    { NGX_HTTP_LLMROUTE_R_FINISH, 11, "stop_reason" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_adelta[] = {
    { NGX_HTTP_LLMROUTE_R_CONTENT, 4, "text" },
    { NGX_HTTP_LLMROUTE_R_REASONING, 8, "thinking" },
    { NGX_HTTP_LLMROUTE_R_ARGUMENTS, 12, "partial_json" },
    { NGX_HTTP_LLMROUTE_R_FINISH, 11, "stop_reason" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_ablock[] = {
    { NGX_HTTP_LLMROUTE_R_ATYPE, 4, "type" },
    { NGX_HTTP_LLMROUTE_R_CONTENT, 4, "text" },
    { NGX_HTTP_LLMROUTE_R_REASONING, 8, "thinking" },
    { 0, 0, NULL }
};

static ngx_http_llmroute_usage_key_t  ngx_http_llmroute_usage_ausage[] = {
    { NGX_HTTP_LLMROUTE_R_PROMPT, 12, "input_tokens" },
    { NGX_HTTP_LLMROUTE_R_COMPLETION, 13, "output_tokens" },
    { NGX_HTTP_LLMROUTE_R_CACHED, 23, "cache_read_input_tokens" },
    { NGX_HTTP_LLMROUTE_R_WRITE, 27, "cache_creation_input_tokens" },
    { 0, 0, NULL }
};

/* indexed by kind; arrays and "other" have no keys */
static ngx_http_llmroute_usage_key_t  *ngx_http_llmroute_usage_keys[] = {
    NULL,
    ngx_http_llmroute_usage_root,
    ngx_http_llmroute_usage_groq,
    ngx_http_llmroute_usage_usage,
    ngx_http_llmroute_usage_details,
    NULL,
    ngx_http_llmroute_usage_choice,
    ngx_http_llmroute_usage_message,
    NULL,
    ngx_http_llmroute_usage_call,
    ngx_http_llmroute_usage_function,
    ngx_http_llmroute_usage_aroot,
    ngx_http_llmroute_usage_adelta,
    NULL,
    ngx_http_llmroute_usage_ablock,
    ngx_http_llmroute_usage_ausage
};


static yajl_callbacks  ngx_http_llmroute_usage_callbacks = {
    ngx_http_llmroute_usage_y_null,
    ngx_http_llmroute_usage_y_boolean,
    NULL,
    NULL,
    ngx_http_llmroute_usage_y_number,
    ngx_http_llmroute_usage_y_string,
    ngx_http_llmroute_usage_y_start_map,
    ngx_http_llmroute_usage_y_map_key,
    ngx_http_llmroute_usage_y_end,
    ngx_http_llmroute_usage_y_start_array,
    ngx_http_llmroute_usage_y_end
};


ngx_int_t
ngx_http_llmroute_usage_init(ngx_http_llmroute_usage_t *u, ngx_uint_t flags,
    u_char *carry, size_t carry_size, ngx_http_llmroute_alloc_pt alloc,
    ngx_http_llmroute_free_pt free, void *data)
{
    ngx_memzero(u, sizeof(ngx_http_llmroute_usage_t));

    u->prompt_tokens = -1;
    u->completion_tokens = -1;
    u->cached_tokens = -1;
    u->cache_write_tokens = -1;
    u->length = -1;

    u->sse = (flags & NGX_HTTP_LLMROUTE_USAGE_SSE) ? 1 : 0;
    u->json_check = (flags & NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK) ? 1 : 0;
    u->json_lazy = (flags & NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY) ? 1 : 0;
    u->root = (flags & NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC)
              ? NGX_HTTP_LLMROUTE_K_AROOT : NGX_HTTP_LLMROUTE_K_ROOT;
    u->alloc = alloc;
    u->free = free;
    u->data = data;

    if (u->sse) {
        /* jsmn offsets are ints: a longer line is skipped as overlong */
        u->carry = carry;
        u->carry_size = (carry == NULL && alloc == NULL)
                        ? 0 : ngx_min(carry_size, 1 << 30);
        u->carry_cap = (carry == NULL) ? 0 : u->carry_size;
        return NGX_OK;
    }

    /* yajl is set up on the first buffer that is not a whole answer */

    return (alloc == NULL) ? NGX_ERROR : NGX_OK;
}


/* room for `need` bytes in the carry, grown on demand up to carry_size */

static ngx_int_t
ngx_http_llmroute_usage_carry_fit(ngx_http_llmroute_usage_t *u, size_t need)
{
    u_char  *p;
    size_t   cap;

    if (need <= u->carry_cap) {
        return NGX_OK;
    }

    if (u->alloc == NULL) {
        return NGX_ERROR;
    }

    cap = ngx_max(need, ngx_max(2 * u->carry_cap, 1024));
    cap = ngx_min(cap, u->carry_size);

    p = u->alloc(u->data, cap);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (u->carry_len) {
        ngx_memcpy(p, u->carry, u->carry_len);
    }

    if (u->carry && u->free) {
        u->free(u->data, u->carry);
    }

    u->carry = p;
    u->carry_cap = cap;

    return NGX_OK;
}


ngx_int_t
ngx_http_llmroute_usage_feed(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    if (len == 0) {
        return NGX_OK;
    }

    if (!u->sse) {
        return ngx_http_llmroute_usage_json(u, p, len);
    }

    if (!u->finished) {
        (void) ngx_http_llmroute_usage_sse(u, p, len, 0);
    }

    return NGX_OK;
}


size_t
ngx_http_llmroute_usage_feed_sse(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len, ngx_http_llmroute_usage_span_t *span)
{
    size_t  n;

    span->start = 0;
    span->end = 0;

    /* an empty last buffer of nginx may have NULL pointers */

    if (len == 0) {
        return 0;
    }

    if (!u->sse) {
        (void) ngx_http_llmroute_usage_json(u, p, len);
        return len;
    }

    if (u->finished) {
        return len;
    }

    n = ngx_http_llmroute_usage_sse(u, p, len, 1);

    if (u->emit) {
        *span = u->span;
        u->emit = 0;
    }

    return n;
}


void
ngx_http_llmroute_usage_finish(ngx_http_llmroute_usage_t *u,
    ngx_http_llmroute_usage_span_t *span)
{
    u_char  *p;
    size_t   len;

    if (span != NULL) {
        span->start = 0;
        span->end = 0;
    }

    if (u->finished) {
        return;
    }

    u->finished = 1;

    if (!u->sse) {
        if (u->yajl == NULL && !u->done) {
            u->malformed = 1;      /* no body, or yajl could not be set up */
        }

        if (u->yajl != NULL) {

            /* a string still open: yajl tells the body was cut */

            if (!u->malformed
                && ngx_http_llmroute_usage_yajl(u, u->jbuf, u->jbuf_len)
                   == NGX_OK
                && yajl_complete_parse(u->yajl) != yajl_status_ok)
            {
                u->malformed = 1;
            }

            yajl_free(u->yajl);
            u->yajl = NULL;
        }

        if (u->jbuf != NULL && u->free != NULL) {
            u->free(u->data, u->jbuf);
        }

        u->jbuf = NULL;
        u->jbuf_len = 0;

        u->empty_content = u->done && !u->malformed && u->choice
                           && !u->text && !u->tool_calls;
        return;
    }

    /*
     * the stream ended inside a line: a client would not dispatch that
     * event, but the provider may have closed without the final newline
     * after a complete chunk, so it still counts for accounting
     */

    p = u->carry;
    len = u->skip ? 0 : u->carry_len;

    if (u->skip) {
        ngx_http_llmroute_usage_skipped(u);
    }

    if (len && p[len - 1] == '\r') {
        len--;
    }

    if (u->event == NGX_HTTP_LLMROUTE_E_STRIP) {
        ngx_http_llmroute_usage_emit(u, u->event_start,
                                     len ? u->event_end : u->offset);
    }

    if (len > 5 && ngx_memcmp(p, "data:", 5) == 0) {
        (void) ngx_http_llmroute_usage_chunk(u, p + 5, len - 5);
    }

    u->skip = 0;
    u->carry_len = 0;
    u->event = NGX_HTTP_LLMROUTE_E_NONE;
    u->hold = u->offset;

    if (u->emit) {
        if (span != NULL) {
            *span = u->span;
        }

        u->emit = 0;
    }

    u->empty_content = u->choice && !u->text && !u->tool_calls;
}


/*
 * The SSE line splitter.  A line wholly inside p is read in place; only a
 * line cut by the end of a buffer is copied to the carry buffer.  Whether
 * a line is overlong depends on its length only, never on where buffers
 * end, so any split of a stream gives the same results and spans.
 */

static size_t
ngx_http_llmroute_usage_sse(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len, ngx_uint_t stop)
{
    u_char  *start, *last, *nl, *line;
    size_t   n, size;

    start = p;
    last = p + len;

    while (p < last) {

        if (u->skip) {
            nl = memchr(p, '\n', last - p);
            n = (nl != NULL ? nl : last) - p;

            ngx_http_llmroute_usage_prefix(u, p, n);

            u->skip_bytes += n;
            p += n;
            u->offset += n;

            if (nl == NULL) {
                break;
            }

            p++;
            u->offset++;
            u->line_start = u->offset;
            ngx_http_llmroute_usage_skipped(u);
            continue;
        }

        nl = memchr(p, '\n', last - p);
        n = (nl != NULL ? nl : last) - p;

        if (n > u->carry_size - u->carry_len
            || ((nl == NULL || u->carry_len)
                && ngx_http_llmroute_usage_carry_fit(u, u->carry_len + n)
                   != NGX_OK))
        {
            ngx_http_llmroute_usage_overlong(u, p, n);

            if (u->emit) {
                if (stop) {
                    break;
                }

                u->emit = 0;
            }

            continue;
        }

        if (nl == NULL) {
            ngx_memcpy(u->carry + u->carry_len, p, n);
            u->carry_len += n;
            u->offset += n;
            p = last;
            break;
        }

        if (u->carry_len) {
            ngx_memcpy(u->carry + u->carry_len, p, n);
            line = u->carry;
            size = u->carry_len + n;

        } else {
            line = p;
            size = n;
        }

        p = nl + 1;
        u->offset += n + 1;
        u->carry_len = 0;

        ngx_http_llmroute_usage_line(u, line, size);

        u->line_start = u->offset;

        if (u->emit) {
            if (stop) {
                break;
            }

            u->emit = 0;
        }
    }

    switch (u->event) {

    case NGX_HTTP_LLMROUTE_E_NONE:
        u->hold = u->line_start;
        break;

    case NGX_HTTP_LLMROUTE_E_OPEN:
    case NGX_HTTP_LLMROUTE_E_STRIP:
        u->hold = u->event_start;
        break;

    default: /* NGX_HTTP_LLMROUTE_E_KEEP */
        u->hold = u->offset;
    }

    return p - start;
}


/*
 * A line that does not fit the carry buffer is skipped, and never part of
 * a stripped event.  If it is a data line, its bytes count as generated
 * text (an overlong chunk is almost all content).  Whether it is one is
 * matched byte by byte as they come: with a carry buffer shorter than
 * "data:" the line may turn overlong before its prefix is complete.
 */

static void
ngx_http_llmroute_usage_overlong(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t n)
{
    u->skip = 1;
    u->skip_pre = 0;
    u->skip_not = 0;
    u->skip_bytes = u->carry_len;

    if (u->carry_len) {
        ngx_http_llmroute_usage_prefix(u, u->carry, u->carry_len);
        u->carry_len = 0;
    }

    switch (u->event) {

    case NGX_HTTP_LLMROUTE_E_NONE:
        u->event_start = u->line_start;
        u->event = NGX_HTTP_LLMROUTE_E_KEEP;
        break;

    case NGX_HTTP_LLMROUTE_E_STRIP:
        ngx_http_llmroute_usage_emit(u, u->event_start, u->event_end);
        u->event = NGX_HTTP_LLMROUTE_E_KEEP;
        break;

    default:
        u->event = NGX_HTTP_LLMROUTE_E_KEEP;
    }
}


static void
ngx_http_llmroute_usage_prefix(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t n)
{
    u_char  *last;

    for (last = p + n; p < last && u->skip_pre < 5 && !u->skip_not; p++) {
        if (*p == "data:"[u->skip_pre]) {
            u->skip_pre++;

        } else {
            u->skip_not = 1;
        }
    }
}


/* the end of an overlong line, or of the stream inside one */

static void
ngx_http_llmroute_usage_skipped(ngx_http_llmroute_usage_t *u)
{
    if (u->skip_pre == 5) {
        u->events++;
        u->bad_events++;
        u->content_bytes += u->skip_bytes;
    }

    u->skip = 0;
}


/*
 * One complete line, "\n" removed; u->line_start and u->offset are the
 * stream offsets of its start and of the byte after its "\n".
 */

static void
ngx_http_llmroute_usage_line(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    ngx_uint_t  data, usage_only;

    if (len && p[len - 1] == '\r') {
        len--;
    }

    if (len == 0) {
        if (u->event == NGX_HTTP_LLMROUTE_E_STRIP) {
            ngx_http_llmroute_usage_emit(u, u->event_start, u->offset);
        }

        u->event = NGX_HTTP_LLMROUTE_E_NONE;
        return;
    }

    data = 0;
    usage_only = 0;

    if (p[0] == ':') {

        /* a comment alone starts no event: keep-alives pass at once */

        if (u->event == NGX_HTTP_LLMROUTE_E_NONE) {
            return;
        }

    } else if (len >= 5 && ngx_memcmp(p, "data:", 5) == 0) {
        data = 1;
        usage_only = ngx_http_llmroute_usage_chunk(u, p + 5, len - 5);
    }

    switch (u->event) {

    case NGX_HTTP_LLMROUTE_E_NONE:
        u->event_start = u->line_start;
        u->event = NGX_HTTP_LLMROUTE_E_OPEN;

        /* fall through */

    case NGX_HTTP_LLMROUTE_E_OPEN:

        /* bounds what a stripping filter must hold: 2 * carry_size + 1 */

        if (u->offset - u->event_start > (off_t) u->carry_size + 1) {
            u->event = NGX_HTTP_LLMROUTE_E_KEEP;

        } else if (data) {
            u->event = usage_only ? NGX_HTTP_LLMROUTE_E_STRIP
                                  : NGX_HTTP_LLMROUTE_E_KEEP;
            u->event_end = u->offset;
        }

        break;

    case NGX_HTTP_LLMROUTE_E_STRIP:

        /* more lines in the usage event: cut only up to its data line */

        ngx_http_llmroute_usage_emit(u, u->event_start, u->event_end);
        u->event = NGX_HTTP_LLMROUTE_E_KEEP;
        break;

    default: /* NGX_HTTP_LLMROUTE_E_KEEP */
        break;
    }
}


static void
ngx_http_llmroute_usage_emit(ngx_http_llmroute_usage_t *u, off_t start,
    off_t end)
{
    u->span.start = start;
    u->span.end = end;
    u->emit = 1;
}


/* one "data:" payload; returns 1 for a usage-only chunk */

static ngx_uint_t
ngx_http_llmroute_usage_chunk(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }

    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'
                   || p[len - 1] == '\r'))
    {
        len--;
    }

    if (len == 0) {
        return 0;
    }

    if (len == 6 && ngx_memcmp(p, "[DONE]", 6) == 0) {
        u->done = 1;
        return 0;
    }

    u->events++;
    u->chunk = 0;

    if (ngx_http_llmroute_usage_members(u, p, p + len) != NGX_OK) {
        u->bad_events++;
        return 0;
    }

    return (u->chunk & (NGX_HTTP_LLMROUTE_C_USAGE
                        | NGX_HTTP_LLMROUTE_C_CHOICES
                        | NGX_HTTP_LLMROUTE_C_NONEMPTY))
           == (NGX_HTTP_LLMROUTE_C_USAGE | NGX_HTTP_LLMROUTE_C_CHOICES);
}


/*
 * The members of the chunk object.  jsmn costs about 2 ns a byte, more
 * than half of it on members we never read ("id", "model",
 * "system_fingerprint"...), so the top level is only walked over here,
 * strings skipped with memchr(), and jsmn parses just the values of the
 * members we read: those are fully validated, the others only delimited.
 */

static ngx_int_t
ngx_http_llmroute_usage_members(ngx_http_llmroute_usage_t *u, u_char *p,
    u_char *last)
{
    u_char  *q;

    if (last - p < 2 || p[0] != '{' || last[-1] != '}') {
        return NGX_ERROR;
    }

    q = ngx_http_llmroute_usage_ws(p + 1, last);

    if (*q == '}') {
        return (q + 1 == last) ? NGX_OK : NGX_ERROR;
    }

    return ngx_http_llmroute_usage_members_from(u, q, last);
}


/* the members from the key at q on, up to the "}" that must end at last */

static ngx_int_t
ngx_http_llmroute_usage_members_from(ngx_http_llmroute_usage_t *u, u_char *q,
    u_char *last)
{
    u_char      *key, *v;
    ngx_uint_t   role;

    for ( ;; ) {
        if (*q != '"') {
            return NGX_ERROR;
        }

        key = q + 1;

        role = ngx_http_llmroute_usage_key(u->root, key, last, &q);

        if (q != NULL) {
            q++;

        } else {
            /* not a plain string: escapes, or cut */

            q = ngx_http_llmroute_usage_string_end(key - 1, last);
            if (q == NULL) {
                return NGX_ERROR;
            }

            role = ngx_http_llmroute_usage_role(u->root, key, q - 1 - key);
        }

        q = ngx_http_llmroute_usage_ws(q, last);
        if (q == last || *q != ':') {
            return NGX_ERROR;
        }

        v = ngx_http_llmroute_usage_ws(q + 1, last);
        if (v == last) {
            return NGX_ERROR;
        }

        if ((role == NGX_HTTP_LLMROUTE_R_USAGE
             || role == NGX_HTTP_LLMROUTE_R_AUSAGE)
            && *v == '{' && ngx_http_llmroute_usage_direct_on()
            && (q = ngx_http_llmroute_usage_shaped(u, v, last, role)) != NULL)
        {
            ngx_http_llmroute_usage_direct_read();

        } else {
            q = ngx_http_llmroute_usage_value_end(v, last);
            if (q == NULL) {
                return NGX_ERROR;
            }

            if (role != NGX_HTTP_LLMROUTE_R_NONE
                && !(u->lazy && role == NGX_HTTP_LLMROUTE_R_CHOICES)
                && ngx_http_llmroute_usage_member(u, v, q - v, role)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        q = ngx_http_llmroute_usage_ws(q, last);
        if (q == last) {
            return NGX_ERROR;
        }

        if (*q == '}') {
            return (q + 1 == last) ? NGX_OK : NGX_ERROR;
        }

        if (*q != ',') {
            return NGX_ERROR;
        }

        q = ngx_http_llmroute_usage_ws(q + 1, last);
        if (q == last) {
            return NGX_ERROR;
        }
    }
}


/* a member we read: containers are tokenized, scalars read directly */

static ngx_int_t
ngx_http_llmroute_usage_member(ngx_http_llmroute_usage_t *u, u_char *v,
    size_t len, ngx_uint_t role)
{
    int          n;
    ngx_uint_t   type;
    jsmn_parser  parser;
    jsmntok_t    tok[NGX_HTTP_LLMROUTE_USAGE_TOKENS];

    if (v[0] != '{' && v[0] != '[') {

        switch (v[0]) {

        case '"':
            type = NGX_HTTP_LLMROUTE_T_STRING;
            v++;
            len -= 2;
            break;

        case 'n':
            type = NGX_HTTP_LLMROUTE_T_NULL;
            break;

        case 't':
        case 'f':
            type = NGX_HTTP_LLMROUTE_T_OTHER;
            break;

        default:
            type = NGX_HTTP_LLMROUTE_T_NUMBER;
        }

        ngx_http_llmroute_usage_scalar(u, role, type, v, len, 1);
        return NGX_OK;
    }

    /*
     * the body's scan gives jsmn's tokens at a fraction of its cost; what
     * it refuses (it is stricter, and stops at no NUL) goes to jsmn, which
     * decides as it always did
     */

    n = ngx_http_llmroute_scan(v, len, tok, NGX_HTTP_LLMROUTE_USAGE_TOKENS);

    if (n < 1) {
        jsmn_init(&parser);
        n = jsmn_parse(&parser, (const char *) v, len, tok,
                       NGX_HTTP_LLMROUTE_USAGE_TOKENS);
    }

    /* one value and nothing after it (jsmn also stops at a NUL) */

    if (n < 1 || tok[0].end != (int) len
        || ngx_http_llmroute_usage_value(u, v, tok, n, 0, role) < 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A usage object at p: as one of the last two of its kind if it has its
 * shape (the same bytes around other numbers), else read by direct(),
 * whose shape then replaces the one used least recently.  Same results as
 * direct() either way: an object that matches a shape direct() accepted
 * byte for byte, but for integers where it had integers, is the same JSON
 * with the same members and only other numbers in it, and the numbers go
 * to the same count()s in the same order.  What matches neither costs two
 * compares that fail early.
 */

static u_char *
ngx_http_llmroute_usage_shaped(ngx_http_llmroute_usage_t *u, u_char *p,
    u_char *last, ngx_uint_t role)
{
    u_char                           *q;
    ngx_uint_t                        k, i, tokens;
    ngx_http_llmroute_usage_rec_t     rec;
    ngx_http_llmroute_usage_shape_t  *s;

    k = (role == NGX_HTTP_LLMROUTE_R_AUSAGE);
    i = ngx_http_llmroute_usage_shape_last[k];

    s = &ngx_http_llmroute_usage_shapes[k][i];

    if (s->n && (q = ngx_http_llmroute_usage_again(u, s, p, last, role))) {
        ngx_http_llmroute_usage_shape_read();
        return q;
    }

    i ^= 1;
    s = &ngx_http_llmroute_usage_shapes[k][i];

    if (s->n && (q = ngx_http_llmroute_usage_again(u, s, p, last, role))) {
        ngx_http_llmroute_usage_shape_last[k] = i;
        ngx_http_llmroute_usage_shape_read();
        return q;
    }

    tokens = NGX_HTTP_LLMROUTE_USAGE_DIRECT_TOKENS;
    rec.n = 0;

    q = ngx_http_llmroute_usage_direct(u, p, last, role, 0, &tokens, &rec);

    if (q != NULL && ngx_http_llmroute_usage_remember(s, &rec, p, q)) {
        ngx_http_llmroute_usage_shape_last[k] = i;
    }

    return q;
}


/* the object at p read by its shape s, or NULL if it does not have it */

static u_char *
ngx_http_llmroute_usage_again(ngx_http_llmroute_usage_t *u,
    ngx_http_llmroute_usage_shape_t *s, u_char *p, u_char *last,
    ngx_uint_t role)
{
    u_char      *b, *v;
    size_t       n;
    uint64_t     num, d;
    ngx_uint_t   i, kind;

    /* count() changes u->tmp only, which direct() opens anew after a NULL */

    kind = ngx_http_llmroute_usage_open(u, role, 1);
    b = s->bytes;

    for (i = 0; /* void */ ; i++) {
        n = s->seg[i];

        if ((size_t) (last - p) <= n
            || ngx_http_llmroute_usage_same(p, (const char *) b, n) == 0)
        {
            return NULL;
        }

        p += n;
        b += n;

        if (i == s->n) {
            break;
        }

        /*
         * an integer as direct() reads it, the shape has what ends it; up
         * to 16 digits direct() never reaches its cap, more go to it
         */

        v = p;
        num = (uint64_t) *v - '0';

        if (num > 9 || (num == 0 && v[1] >= '0' && v[1] <= '9')) {
            return NULL;
        }

        for (p = v + 1; (d = (uint64_t) *p - '0') <= 9; p++) {
            num = num * 10 + d;     /* unsigned: more than 16 wrap, unread */
        }

        if (p - v > 16) {
            return NULL;
        }

        ngx_http_llmroute_usage_count(u, s->role[i], (int64_t) num);
    }

    ngx_http_llmroute_usage_close(u, kind);

    return p;
}


/* s becomes the shape of [p, end), which direct() read as rec tells */

static ngx_uint_t
ngx_http_llmroute_usage_remember(ngx_http_llmroute_usage_shape_t *s,
    ngx_http_llmroute_usage_rec_t *rec, u_char *p, u_char *end)
{
    u_char      *b, *from;
    size_t       size;
    ngx_uint_t   i;

    if (rec->n == 0 || rec->n > NGX_HTTP_LLMROUTE_SHAPE_NUMS) {
        return 0;   /* nothing to gain, or more than count()s */
    }

    size = end - p;

    for (i = 0; i < rec->n; i++) {
        size -= rec->end[i] - rec->start[i];
    }

    if (size > NGX_HTTP_LLMROUTE_SHAPE_SIZE) {
        return 0;
    }

    b = s->bytes;
    from = p;

    for (i = 0; i <= rec->n; i++) {
        size = ((i < rec->n) ? rec->start[i] : end) - from;

        b = ngx_cpymem(b, from, size);
        s->seg[i] = (uint16_t) size;

        if (i < rec->n) {
            s->role[i] = rec->role[i];
            from = rec->end[i];
        }
    }

    s->n = rec->n;

    return 1;
}


/*
 * A usage object read in one pass, without delimiting it first and
 * tokenizing it next: the usual shape, members whose values are objects
 * (3 deep at most), strings without escapes or control characters,
 * non-negative integers and literals.  Anything else (an array, an
 * escape, a fraction, more than *tokens keys and values...) returns NULL,
 * and the caller reads the object the general way, which then decides.
 * What this accepts is JSON that the tokenizer reads into the tokens walk()
 * follows, and it calls the hooks as walk() does, in the same order; the
 * only state they change before the usage closes is u->tmp, which opening
 * the usage again sets anew, so a NULL half-way leaves nothing behind.
 *
 * last[-1] is the "}" that ends the members being read (every caller
 * checks it): a run of blanks or digits stops there at the latest, so
 * such runs are followed without comparing with last.  Only the end of a
 * nested object may be last itself.
 */

static u_char *
ngx_http_llmroute_usage_direct(ngx_http_llmroute_usage_t *u, u_char *p,
    u_char *last, ngx_uint_t role, ngx_uint_t depth, ngx_uint_t *tokens,
    ngx_http_llmroute_usage_rec_t *rec)
{
    u_char      *v, *q;
    size_t       n;
    int64_t      num;
    const char  *lit;
    ngx_uint_t   kind, vrole, type;

    kind = ngx_http_llmroute_usage_open(u, role, 1);

    p = ngx_http_llmroute_usage_blanks(p + 1);

    if (*p == '}') {
        ngx_http_llmroute_usage_close(u, kind);
        return p + 1;
    }

    for ( ;; ) {

        /* the key; p < last - 1 here */

        if (*p != '"' || *tokens < 2) {
            return NULL;
        }

        *tokens -= 2;

        vrole = ngx_http_llmroute_usage_key(kind, p + 1, last, &q);
        if (q == NULL) {
            return NULL;
        }

        p = q + 1;

        if (*p != ':') {
            p = ngx_http_llmroute_usage_blanks(p);
            if (*p != ':') {
                return NULL;
            }
        }

        v = ngx_http_llmroute_usage_blanks(p + 1);

        /* the value */

        switch (*v) {

        case '{':
            if (depth == 2) {
                return NULL;
            }

            /* a shape holds no hook but count()s and the usage's own */

            if (vrole != NGX_HTTP_LLMROUTE_R_NONE
                && vrole != NGX_HTTP_LLMROUTE_R_DETAILS)
            {
                rec->n = NGX_HTTP_LLMROUTE_SHAPE_NUMS + 1;
            }

            p = ngx_http_llmroute_usage_direct(u, v, last, vrole, depth + 1,
                                               tokens, rec);
            if (p == NULL || p == last) {
                return NULL;
            }

            goto next;

        case '"':
            q = ngx_http_llmroute_usage_plain_end(v + 1, last);
            if (q == NULL) {
                return NULL;
            }

            type = NGX_HTTP_LLMROUTE_T_STRING;
            v++;
            p = q + 1;
            break;

        case '0':
            if (v[1] >= '0' && v[1] <= '9') {
                return NULL;
            }

            /* fall through */

        case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':

            /* as ngx_http_llmroute_usage_number() reads it */

            num = *v - '0';

            for (q = v + 1; *q >= '0' && *q <= '9'; q++) {
                if (num < 1000000000000000LL) {
                    num = num * 10 + (*q - '0');
                }
            }

            if (*q != ',' && *q != '}' && *q != ' ' && *q != '\t'
                && *q != '\n' && *q != '\r')
            {
                return NULL;
            }

            /* all that scalar() does with it */

            if (vrole == NGX_HTTP_LLMROUTE_R_ERROR) {
                ngx_http_llmroute_usage_scalar(u, vrole,
                                               NGX_HTTP_LLMROUTE_T_NUMBER,
                                               v, q - v, 1);
                rec->n = NGX_HTTP_LLMROUTE_SHAPE_NUMS + 1;

            } else {
                ngx_http_llmroute_usage_count(u, vrole, num);
            }

            if (rec->n < NGX_HTTP_LLMROUTE_SHAPE_NUMS) {
                rec->start[rec->n] = v;
                rec->end[rec->n] = q;
                rec->role[rec->n] = (uint8_t) vrole;
            }

            rec->n++;

            p = q;
            goto next;

        case 'n':
        case 't':
        case 'f':
            lit = (*v == 'n') ? "null" : (*v == 't') ? "true" : "false";
            n = (*v == 'f') ? 5 : 4;

            if ((size_t) (last - v) < n || ngx_memcmp(v, lit, n) != 0) {
                return NULL;
            }

            type = (*v == 'n') ? NGX_HTTP_LLMROUTE_T_NULL
                               : NGX_HTTP_LLMROUTE_T_OTHER;
            q = v + n;
            p = q;
            break;

        default:
            return NULL;
        }

        /* a string or literal must end here, as the tokenizer ends it */

        if (p == last
            || (*p != ',' && *p != '}' && *p != ' ' && *p != '\t'
                && *p != '\n' && *p != '\r'))
        {
            return NULL;
        }

        if (vrole != NGX_HTTP_LLMROUTE_R_NONE) {
            ngx_http_llmroute_usage_scalar(u, vrole, type, v, q - v, 1);
            rec->n = NGX_HTTP_LLMROUTE_SHAPE_NUMS + 1;
        }

    next:

        /* p < last */

        if (*p != ',' && *p != '}') {
            p = ngx_http_llmroute_usage_blanks(p);
        }

        if (*p == '}') {
            ngx_http_llmroute_usage_close(u, kind);
            return p + 1;
        }

        if (*p != ',') {
            return NULL;
        }

        p = ngx_http_llmroute_usage_blanks(p + 1);
    }
}


/* blanks from p on, before a byte that is not one: see direct() */

static inline u_char *
ngx_http_llmroute_usage_blanks(u_char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }

    return p;
}


/*
 * The role of the key starting at p (after its opening quote) in a
 * container of kind, as ngx_http_llmroute_usage_role() gives it, and in
 * *end its closing quote, NULL if it is not a plain string.  One of the
 * kind's names followed by a quote is that key: its end is not looked for.
 */

static inline ngx_uint_t
ngx_http_llmroute_usage_key(ngx_uint_t kind, u_char *p, u_char *last,
    u_char **end)
{
    u_char                          c;
    ngx_http_llmroute_usage_key_t  *k;

    k = ngx_http_llmroute_usage_keys[kind];

    if (k != NULL && p < last) {
        c = p[0];

        for ( /* void */ ; k->name != NULL; k++) {

            /* names seldom share a first letter: it is tested first */

            if ((u_char) k->name[0] == c
                && (size_t) (last - p) > k->len && p[k->len] == '"'
                && ngx_http_llmroute_usage_same(p, k->name, k->len))
            {
                *end = p + k->len;
                return k->role;
            }
        }
    }

    *end = ngx_http_llmroute_usage_plain_end(p, last);

    return NGX_HTTP_LLMROUTE_R_NONE;
}


/*
 * p[0..len) is name, a key's name from the tables: compared in words that
 * may overlap (no call to memcmp() for a dozen bytes, on every key)
 */

static inline ngx_uint_t
ngx_http_llmroute_usage_same(u_char *p, const char *name, size_t len)
{
    size_t    i;
    uint32_t  a, b, c, d;
    uint64_t  x, y;
#if (NGX_HTTP_LLMROUTE_USAGE_SSE2)
    __m128i   v, w;
#endif

    if (len < 4) {
        for (i = 0; i < len; i++) {
            if (p[i] != (u_char) name[i]) {
                return 0;
            }
        }

        return 1;
    }

    if (len < 8) {
        ngx_memcpy(&a, p, 4);
        ngx_memcpy(&b, name, 4);
        ngx_memcpy(&c, p + len - 4, 4);
        ngx_memcpy(&d, name + len - 4, 4);

        return a == b && c == d;
    }

#if (NGX_HTTP_LLMROUTE_USAGE_SSE2)

    /* a shape's spans run to some 50 bytes: 16 at a step */

    if (len >= 16) {
        for (i = 0; i < len - 16; i += 16) {
            v = _mm_loadu_si128((const __m128i *) (p + i));
            w = _mm_loadu_si128((const __m128i *) (name + i));

            if (_mm_movemask_epi8(_mm_cmpeq_epi8(v, w)) != 0xffff) {
                return 0;
            }
        }

        v = _mm_loadu_si128((const __m128i *) (p + len - 16));
        w = _mm_loadu_si128((const __m128i *) (name + len - 16));

        return _mm_movemask_epi8(_mm_cmpeq_epi8(v, w)) == 0xffff;
    }
#endif

    for (i = 0; i < len - 8; i += 8) {
        ngx_memcpy(&x, p + i, 8);
        ngx_memcpy(&y, name + i, 8);

        if (x != y) {
            return 0;
        }
    }

    ngx_memcpy(&x, p + len - 8, 8);
    ngx_memcpy(&y, name + len - 8, 8);

    return x == y;
}


/*
 * p is right after an opening quote: its closing quote, or NULL if a
 * backslash, a control character or last comes first.  16 bytes at a step
 * with SSE2, then 8: m flags each quote, backslash and byte below 0x20,
 * and its lowest flag is always a true one (a borrow only runs upwards
 * from one).
 */

static inline u_char *
ngx_http_llmroute_usage_plain_end(u_char *p, u_char *last)
{
    uint64_t  x, q, b, m;

#if (NGX_HTTP_LLMROUTE_USAGE_SSE2)
    int       k;
    __m128i   v, w;

    /* v ^ 2 is at most 0x20 exactly for '"' and the control characters */

    while (last - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);
        w = _mm_xor_si128(v, _mm_set1_epi8(0x02));

        k = _mm_movemask_epi8(
                _mm_or_si128(
                    _mm_cmpeq_epi8(_mm_min_epu8(w, _mm_set1_epi8(0x20)),
                                   w),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));

        if (k) {
            p += __builtin_ctz(k);
            return (*p == '"') ? p : NULL;
        }

        p += 16;
    }
#endif

    while (last - p >= 8) {
        x = ngx_http_llmroute_le64(p);
        q = x ^ 0x2222222222222222ULL;
        b = x ^ 0x5c5c5c5c5c5c5c5cULL;

        m = (((q - 0x0101010101010101ULL) & ~q)
             | ((b - 0x0101010101010101ULL) & ~b)
             | ((x - 0x2020202020202020ULL) & ~x))
            & 0x8080808080808080ULL;

        if (m) {
            p += __builtin_ctzll(m) >> 3;
            return (*p == '"') ? p : NULL;
        }

        p += 8;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p == '"') {
            return p;
        }

        if (*p == '\\' || *p < 0x20) {
            return NULL;
        }
    }

    return NULL;
}


static u_char *
ngx_http_llmroute_usage_ws(u_char *p, u_char *last)
{
    if (p < last && *p > ' ') {
        return p;           /* the usual case: no blank at all */
    }

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    return p;
}


/* p is at an opening quote: the byte after the closing one, or NULL */

static u_char *
ngx_http_llmroute_usage_string_end(u_char *p, u_char *last)
{
    u_char  *q;

    for (q = p + 1; q < last; q++) {

        q = memchr(q, '"', last - q);
        if (q == NULL) {
            return NULL;
        }

        if ((ngx_http_llmroute_usage_backslashes(p, q) & 1) == 0) {
            return q + 1;
        }
    }

    return NULL;
}


/*
 * The backslashes right before q, not before start: an odd run escapes
 * the character at q
 */

static size_t
ngx_http_llmroute_usage_backslashes(u_char *start, u_char *q)
{
    u_char  *b;

    for (b = q; b > start && b[-1] == '\\'; b--) {
        /* void */
    }

    return q - b;
}


/* the end of the value at p; validated later only if it is read */

static u_char *
ngx_http_llmroute_usage_value_end(u_char *p, u_char *last)
{
    u_char      *q;
    ngx_uint_t   depth;

    switch (*p) {

    case '"':
        return ngx_http_llmroute_usage_string_end(p, last);

    case '{':
    case '[':
        depth = 0;

        for (q = p; q < last; /* void */) {

            switch (*q) {

            case '"':
                q = ngx_http_llmroute_usage_string_end(q, last);
                if (q == NULL) {
                    return NULL;
                }

                continue;

            case '{':
            case '[':
                depth++;
                break;

            case '}':
            case ']':
                if (--depth == 0) {
                    return q + 1;
                }

                break;
            }

            q++;
        }

        return NULL;

    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
    case 't': case 'f': case 'n':
        for (q = p; q < last; q++) {
            if (*q == ',' || *q == '}' || *q == ']' || *q == ' '
                || *q == '\t' || *q == '\n' || *q == '\r')
            {
                break;
            }
        }

        return q;

    default:
        return NULL;
    }
}


/*
 * Token i is a container of a known kind: read its members; returns the
 * index past it, or -1.  Recursion only follows known kinds, which nest
 * at most 7 deep, whatever the input.
 */

static int
ngx_http_llmroute_usage_walk(ngx_http_llmroute_usage_t *u, u_char *s,
    jsmntok_t *tok, int n, int i, ngx_uint_t kind)
{
    int         e, j;
    ngx_uint_t  role;

    j = i + 1;

    for (e = 0; e < tok[i].size; e++) {

        if (j >= n) {
            return -1;
        }

        if (tok[i].type == JSMN_OBJECT) {
            if (tok[j].type != JSMN_STRING || tok[j].size != 1
                || j + 1 >= n)
            {
                return -1;
            }

            role = ngx_http_llmroute_usage_role(kind, s + tok[j].start,
                                                tok[j].end - tok[j].start);
            j++;

        } else if (kind == NGX_HTTP_LLMROUTE_K_CHOICES) {
            role = NGX_HTTP_LLMROUTE_R_CHOICE;

        } else if (kind == NGX_HTTP_LLMROUTE_K_CALLS) {
            role = NGX_HTTP_LLMROUTE_R_CALL;

        } else if (kind == NGX_HTTP_LLMROUTE_K_ABLOCKS) {
            role = NGX_HTTP_LLMROUTE_R_ABLOCK;

        } else {
            role = NGX_HTTP_LLMROUTE_R_NONE;
        }

        j = ngx_http_llmroute_usage_value(u, s, tok, n, j, role);

        if (j < 0) {
            return -1;
        }
    }

    return j;
}


static int
ngx_http_llmroute_usage_value(ngx_http_llmroute_usage_t *u, u_char *s,
    jsmntok_t *tok, int n, int i, ngx_uint_t role)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   kind, type;

    p = s + tok[i].start;
    len = tok[i].end - tok[i].start;

    switch (tok[i].type) {

    case JSMN_OBJECT:
    case JSMN_ARRAY:
        kind = ngx_http_llmroute_usage_open(u, role,
                                            tok[i].type == JSMN_OBJECT);

        if (kind == NGX_HTTP_LLMROUTE_K_OTHER) {
            return ngx_http_llmroute_usage_skip(tok, n, i);
        }

        i = ngx_http_llmroute_usage_walk(u, s, tok, n, i, kind);

        if (i >= 0) {
            ngx_http_llmroute_usage_close(u, kind);
        }

        return i;

    case JSMN_STRING:
        type = NGX_HTTP_LLMROUTE_T_STRING;
        break;

    default:
        if (len == 0) {
            return -1;
        }

        if (p[0] == 'n') {
            type = NGX_HTTP_LLMROUTE_T_NULL;

        } else if (p[0] == '-' || (p[0] >= '0' && p[0] <= '9')) {
            type = NGX_HTTP_LLMROUTE_T_NUMBER;

        } else {
            type = NGX_HTTP_LLMROUTE_T_OTHER;
        }
    }

    if (role != NGX_HTTP_LLMROUTE_R_NONE) {
        ngx_http_llmroute_usage_scalar(u, role, type, p, len, 1);
    }

    return i + 1;
}


/* index of the token after token i and everything nested in it */

static int
ngx_http_llmroute_usage_skip(jsmntok_t *tok, int n, int i)
{
    int  end;

    end = tok[i].end;

    for (i++; i < n && tok[i].start < end; i++) {
        /* void */
    }

    return i;
}


static ngx_uint_t
ngx_http_llmroute_usage_role(ngx_uint_t kind, u_char *p, size_t len)
{
    ngx_http_llmroute_usage_key_t  *k;

    k = ngx_http_llmroute_usage_keys[kind];

    if (k == NULL) {
        return NGX_HTTP_LLMROUTE_R_NONE;
    }

    for ( /* void */ ; k->name != NULL; k++) {
        if (k->len == len && (u_char) k->name[0] == p[0]
            && ngx_http_llmroute_usage_same(p, k->name, len))
        {
            return k->role;
        }
    }

    return NGX_HTTP_LLMROUTE_R_NONE;
}


static inline ngx_uint_t
ngx_http_llmroute_usage_open(ngx_http_llmroute_usage_t *u, ngx_uint_t role,
    ngx_uint_t map)
{
    switch (role) {

    case NGX_HTTP_LLMROUTE_R_ROOT:
        return map ? u->root : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_AMESSAGE:
        return map ? NGX_HTTP_LLMROUTE_K_AROOT : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_ADELTA:
        return map ? NGX_HTTP_LLMROUTE_K_ADELTA : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_ABLOCKS:
        if (map) {
            break;
        }

        u->choice = 1;      /* an answer: its content may be empty */
        return NGX_HTTP_LLMROUTE_K_ABLOCKS;

    case NGX_HTTP_LLMROUTE_R_ABLOCK:
        u->choice = 1;
        return map ? NGX_HTTP_LLMROUTE_K_ABLOCK : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_AUSAGE:
        if (!map) {
            break;
        }

        u->tmp[0] = -1;
        u->tmp[1] = -1;
        u->tmp[2] = -1;
        u->tmp[3] = -1;

        return NGX_HTTP_LLMROUTE_K_AUSAGE;

    case NGX_HTTP_LLMROUTE_R_GROQ:
        return map ? NGX_HTTP_LLMROUTE_K_GROQ : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_USAGE:
        if (!map) {
            break;
        }

        u->tmp[0] = -1;
        u->tmp[1] = -1;
        u->tmp[2] = -1;

        return NGX_HTTP_LLMROUTE_K_USAGE;

    case NGX_HTTP_LLMROUTE_R_DETAILS:
        return map ? NGX_HTTP_LLMROUTE_K_DETAILS : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_CHOICES:
        if (map) {
            break;
        }

        u->chunk |= NGX_HTTP_LLMROUTE_C_CHOICES;
        u->index = (ngx_uint_t) -1;

        return NGX_HTTP_LLMROUTE_K_CHOICES;

    case NGX_HTTP_LLMROUTE_R_CHOICE:
        u->chunk |= NGX_HTTP_LLMROUTE_C_NONEMPTY;
        u->index++;

        if (!map) {
            break;
        }

        if (ngx_http_llmroute_usage_first(u)) {
            u->choice = 1;
        }

        return NGX_HTTP_LLMROUTE_K_CHOICE;

    case NGX_HTTP_LLMROUTE_R_MESSAGE:
        return map ? NGX_HTTP_LLMROUTE_K_MESSAGE : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_CALLS:
        return map ? NGX_HTTP_LLMROUTE_K_OTHER : NGX_HTTP_LLMROUTE_K_CALLS;

    case NGX_HTTP_LLMROUTE_R_CALL:
    case NGX_HTTP_LLMROUTE_R_FCALL:
        if (ngx_http_llmroute_usage_first(u)) {
            u->tool_calls = 1;
        }

        if (!map) {
            break;
        }

        if (role == NGX_HTTP_LLMROUTE_R_CALL) {
            return NGX_HTTP_LLMROUTE_K_CALL;
        }

        return NGX_HTTP_LLMROUTE_K_FUNCTION;

    case NGX_HTTP_LLMROUTE_R_FUNCTION:
        return map ? NGX_HTTP_LLMROUTE_K_FUNCTION : NGX_HTTP_LLMROUTE_K_OTHER;

    case NGX_HTTP_LLMROUTE_R_ERROR:
        u->error = 1;
        break;
    }

    return NGX_HTTP_LLMROUTE_K_OTHER;
}


/* a usage object counts once complete; each field: last value wins */

static inline void
ngx_http_llmroute_usage_close(ngx_http_llmroute_usage_t *u, ngx_uint_t kind)
{
    if ((kind != NGX_HTTP_LLMROUTE_K_USAGE
         && kind != NGX_HTTP_LLMROUTE_K_AUSAGE)
        || (u->tmp[0] < 0 && u->tmp[1] < 0))
    {
        return;
    }

    u->have_usage = 1;
    u->chunk |= NGX_HTTP_LLMROUTE_C_USAGE;

    if (u->tmp[0] >= 0) {
        u->prompt_tokens = u->tmp[0];
    }

    if (u->tmp[1] >= 0) {
        u->completion_tokens = u->tmp[1];
    }

    if (u->tmp[2] >= 0) {
        u->cached_tokens = u->tmp[2];
    }

    if (kind == NGX_HTTP_LLMROUTE_K_AUSAGE && u->tmp[3] >= 0) {
        u->cache_write_tokens = u->tmp[3];
    }
}


/* raw: a JSON string body as jsmn gives it, escapes still in */

static void
ngx_http_llmroute_usage_scalar(ngx_http_llmroute_usage_t *u, ngx_uint_t role,
    ngx_uint_t type, u_char *p, size_t len, ngx_uint_t raw)
{
    if (type == NGX_HTTP_LLMROUTE_T_NUMBER) {
        ngx_http_llmroute_usage_count(u, role,
                                      ngx_http_llmroute_usage_number(p, len));
    }

    if (role == NGX_HTTP_LLMROUTE_R_ERROR && type != NGX_HTTP_LLMROUTE_T_NULL)
    {
        u->error = 1;
        return;
    }

    if (type != NGX_HTTP_LLMROUTE_T_STRING) {
        return;
    }

    switch (role) {

    case NGX_HTTP_LLMROUTE_R_ATYPE:
        if ((len == 8 && ngx_memcmp(p, "tool_use", 8) == 0)
            || (len == 15 && ngx_memcmp(p, "server_tool_use", 15) == 0))
        {
            u->tool_calls = 1;

        } else if (len == 12 && ngx_memcmp(p, "message_stop", 12) == 0) {
            u->done = 1;    /* the stream's end, as [DONE] is OpenAI's */
        }

        break;

    case NGX_HTTP_LLMROUTE_R_FINISH:
        if (ngx_http_llmroute_usage_first(u)) {
            u->finish_reason = ngx_http_llmroute_usage_finish_reason(p, len);
        }

        break;

    case NGX_HTTP_LLMROUTE_R_CONTENT:
        if (ngx_http_llmroute_usage_first(u)) {
            if (!u->text && !ngx_http_llmroute_usage_blank(p, len, raw)) {
                u->text = 1;
            }

            if (!raw && u->json_check) {
                u->content_is_json = len < NGX_HTTP_LLMROUTE_USAGE_JSON_MAX
                               && ngx_http_llmroute_usage_is_json(u, p, len);
            }
        }

        /* fall through */

    case NGX_HTTP_LLMROUTE_R_REASONING:
    case NGX_HTTP_LLMROUTE_R_ARGUMENTS:
        u->content_bytes += raw ? ngx_http_llmroute_usage_unescaped(p, len)
                                : len;
        break;
    }
}


/* a usage number read: the last value wins, a cache count only if valid */

static inline void
ngx_http_llmroute_usage_count(ngx_http_llmroute_usage_t *u, ngx_uint_t role,
    int64_t v)
{
    switch (role) {

    case NGX_HTTP_LLMROUTE_R_PROMPT:
        u->tmp[0] = v;
        break;

    case NGX_HTTP_LLMROUTE_R_COMPLETION:
        u->tmp[1] = v;
        break;

    case NGX_HTTP_LLMROUTE_R_HIT:
    case NGX_HTTP_LLMROUTE_R_CACHED:
        if (v >= 0) {
            u->tmp[2] = v;
        }

        break;

    case NGX_HTTP_LLMROUTE_R_WRITE:
        if (v >= 0) {
            u->tmp[3] = v;
        }

        break;
    }
}


/* a non-negative integer ("12.0" is 12); -1 if it is anything else */

static int64_t
ngx_http_llmroute_usage_number(u_char *p, size_t len)
{
    size_t   i;
    int64_t  v;

    v = 0;

    for (i = 0; i < len && p[i] != '.'; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        if (v < 1000000000000000LL) {
            v = v * 10 + (p[i] - '0');
        }
    }

    return (i == 0) ? -1 : v;
}


static ngx_uint_t
ngx_http_llmroute_usage_finish_reason(u_char *p, size_t len)
{
    switch (len) {

    case 3:
        if (ngx_memcmp(p, "eos", 3) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_STOP;
        }

        break;

    case 4:
        if (ngx_memcmp(p, "stop", 4) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_STOP;
        }

        break;

    case 6:
        if (ngx_memcmp(p, "length", 6) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_LENGTH;
        }

        break;

    case 7:
        if (ngx_memcmp(p, "refusal", 7) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_FILTER;
        }

        break;

    case 8:
        if (ngx_memcmp(p, "end_turn", 8) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_STOP;
        }

        if (ngx_memcmp(p, "tool_use", 8) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS;
        }

        break;

    case 10:
        if (ngx_memcmp(p, "tool_calls", 10) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS;
        }

        if (ngx_memcmp(p, "max_tokens", 10) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_LENGTH;
        }

        break;

    case 13:
        if (ngx_memcmp(p, "function_call", 13) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS;
        }

        if (ngx_memcmp(p, "stop_sequence", 13) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_STOP;
        }

        break;

    case 14:
        if (ngx_memcmp(p, "content_filter", 14) == 0) {
            return NGX_HTTP_LLMROUTE_FINISH_FILTER;
        }

        break;
    }

    return NGX_HTTP_LLMROUTE_FINISH_OTHER;
}


/*
 * Decoded UTF-8 length of a raw JSON string body, so that streams and
 * JSON answers (yajl decodes) count text alike.  Every index is checked:
 * jsmn validates escapes, but this must not trust it.
 */

static size_t
ngx_http_llmroute_usage_unescaped(u_char *p, size_t len)
{
    u_char      *q, *last;
    size_t       n;
    ngx_uint_t   cp;

    n = len;
    last = p + len;

    for (q = memchr(p, '\\', len); q != NULL;
         q = memchr(q, '\\', last - q))
    {
        if (last - q < 2) {
            break;
        }

        if (q[1] != 'u') {
            n -= 1;
            q += 2;
            continue;
        }

        if (last - q < 6) {
            break;
        }

        cp = ngx_http_llmroute_usage_hex(q + 2);

        if (cp >= 0xd800 && cp <= 0xdbff && last - q >= 12
            && q[6] == '\\' && q[7] == 'u')
        {
            n -= 8;     /* 12 bytes of two escapes, 4 of UTF-8 */
            q += 12;
            continue;
        }

        n -= 6 - (cp < 0x80 ? 1 : (cp < 0x800 ? 2 : 3));
        q += 6;
    }

    return n;
}


static ngx_uint_t
ngx_http_llmroute_usage_blank(u_char *p, size_t len, ngx_uint_t raw)
{
    u_char  *last;

    for (last = p + len; p < last; p++) {

        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            continue;
        }

        if (raw && *p == '\\' && p + 1 < last
            && (p[1] == 'n' || p[1] == 'r' || p[1] == 't'))
        {
            p++;
            continue;
        }

        return 0;
    }

    return 1;
}


static ngx_uint_t
ngx_http_llmroute_usage_hex(u_char *p)
{
    u_char      c;
    ngx_uint_t  i, v;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        v <<= 4;

        if (c >= '0' && c <= '9') {
            v |= c - '0';

        } else {
            v |= ((c | 0x20) - 'a' + 10) & 0xf;
        }
    }

    return v;
}


/*
 * The usual non-streamed answer: the whole object in the first buffer.
 * Accounting needs only its usage, so its members are walked over as an
 * SSE chunk's are and only "usage" (and "error", "x_groq") go through
 * jsmn; "choices", most of the bytes, is only delimited.  Used when the
 * choices need not be read (JSON_LAZY) and a usage was found; else
 * every result is put back as it was and yajl reads the body from its
 * start.  A prefix of a valid body that walks as a whole object is the
 * whole body: anything after it could only be blanks.
 */

static ngx_int_t
ngx_http_llmroute_usage_whole(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    u_char     *last;
    ngx_int_t   rc;

    last = p + len;
    p = ngx_http_llmroute_usage_ws(p, last);

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\n' || last[-1] == '\r'))
    {
        last--;
    }

    if (last - p < 2 || *p != '{' || last[-1] != '}') {
        return NGX_DECLINED;
    }

    u->lazy = 1;

    /* from the end only when the end is known to be the body's */

    rc = (u->length == (off_t) len) ? ngx_http_llmroute_usage_tail(u, p, last)
                                    : NGX_DECLINED;

    if (rc != NGX_OK || !u->have_usage) {
        ngx_http_llmroute_usage_restart(u);
        u->lazy = 1;
        rc = ngx_http_llmroute_usage_members(u, p, last);
    }

    u->lazy = 0;

    if (rc != NGX_OK || !u->have_usage) {
        ngx_http_llmroute_usage_restart(u);
        return NGX_DECLINED;
    }

    ngx_http_llmroute_usage_whole_read();
    u->done = 1;

    return NGX_OK;
}


/*
 * What a walk in whole() did undone: u as usage_init() and the feeding of
 * the first buffer left it, which is all the state there is when whole()
 * runs (the first buffer of a JSON_LAZY answer).  Cheaper than a copy of
 * u kept beforehand, on the usual way where nothing needs undoing.
 */

static void
ngx_http_llmroute_usage_restart(ngx_http_llmroute_usage_t *u)
{
    off_t                        length, offset;
    void                        *data;
    ngx_uint_t                   flags;
    ngx_http_llmroute_free_pt    release;
    ngx_http_llmroute_alloc_pt   alloc;

    flags = NGX_HTTP_LLMROUTE_USAGE_JSON | NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY
            | ((u->root == NGX_HTTP_LLMROUTE_K_AROOT)
               ? NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC : 0);

    length = u->length;
    offset = u->offset;
    alloc = u->alloc;
    release = u->free;
    data = u->data;

    (void) ngx_http_llmroute_usage_init(u, flags, NULL, 0, alloc, release,
                                        data);

    u->length = length;
    u->offset = offset;
    u->hold = offset;
}


/*
 * Shorter still: usage comes after choices, near the end.  The last
 * "usage" whose opening quote is not escaped is a key (in a valid body a
 * quote followed by usage" cannot close a string); it is the top-level one
 * if the members from it on end the body, which the walk checks, and if
 * the body really ends there (a cut body may close a nested object).  The
 * members before it are not read: only choices and usage matter here.
 */

static ngx_int_t
ngx_http_llmroute_usage_tail(ngx_http_llmroute_usage_t *u, u_char *p,
    u_char *last)
{
    u_char  *q;

    /*
     * from the end: usage is seldom more than a few hundred bytes away;
     * a 'u' at q with q[-1] and q[5] in the body: p + 2 <= q <= last - 6
     */

    if (last - p < 8) {
        return NGX_DECLINED;
    }

    q = last - 5;

    do {
        q = memrchr(p + 2, 'u', q - (p + 2));
        if (q == NULL) {
            return NGX_DECLINED;
        }

    } while (q[-1] != '"' || ngx_memcmp(q, "usage\"", 6) != 0);

    if (ngx_http_llmroute_usage_backslashes(p, q - 1) & 1) {
        return NGX_DECLINED;    /* \"usage\" inside a string */
    }

    return ngx_http_llmroute_usage_members_from(u, q - 1, last);
}


static ngx_int_t
ngx_http_llmroute_usage_yajl_init(ngx_http_llmroute_usage_t *u)
{
    yajl_handle       h;
    yajl_alloc_funcs  afs;

    ngx_http_llmroute_usage_afs(u, &afs);

    h = yajl_alloc(&ngx_http_llmroute_usage_callbacks, &afs, u);
    if (h == NULL) {
        u->malformed = 1;
        return NGX_ERROR;
    }

    /* we only count bytes; UTF-8 checks would cost on MBs of content */
    yajl_config(h, yajl_dont_validate_strings, 1);

    u->yajl = h;

    return NGX_OK;
}


/*
 * The JSON path.  yajl reports values as they complete; the kind of each
 * open container (up to NGX_HTTP_LLMROUTE_USAGE_DEPTH) and the role of
 * its current key are kept in u->kind[] and u->key[].
 */

static ngx_int_t
ngx_http_llmroute_usage_json(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    u_char      *last, *open, *cut;
    size_t       n;
    ngx_uint_t   held;

    /* nothing is ever held back from the client in a JSON body */

    u->offset += len;
    u->hold = u->offset;

    if (u->malformed || u->finished) {
        return NGX_DECLINED;
    }

    if (u->yajl == NULL && u->done) {

        /* after a whole answer: blanks only, as yajl would insist */

        if (ngx_http_llmroute_usage_ws(p, p + len) != p + len) {
            u->malformed = 1;
        }

        return NGX_DECLINED;
    }

    if (u->yajl == NULL) {
        if ((off_t) len == u->offset && u->json_lazy && !u->json_check
            && ngx_http_llmroute_usage_whole(u, p, len) == NGX_OK)
        {
            return NGX_DECLINED;
        }

        if (ngx_http_llmroute_usage_yajl_init(u) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    last = p + len;
    held = (u->jbuf_len != 0);
    open = ngx_http_llmroute_usage_strings(u, p, last);

    if (held) {
        if (u->jstr && open == NULL) {
            /* the held string goes on through all of this buffer */

            if (ngx_http_llmroute_usage_jbuf(u, p, len) != NGX_OK) {
                return NGX_DECLINED;
            }

            return NGX_OK;
        }

        /* it ended here: yajl gets it whole, with what follows it */

        cut = (open != NULL) ? open : last;

        if (ngx_http_llmroute_usage_jbuf(u, p, cut - p) != NGX_OK) {
            return NGX_DECLINED;
        }

        /* yajl copies what it keeps: jbuf can be reused at once */

        n = u->jbuf_len;
        u->jbuf_len = 0;

        if (ngx_http_llmroute_usage_yajl(u, u->jbuf, n) != NGX_OK) {
            return NGX_DECLINED;
        }

    } else {
        cut = (open != NULL) ? open : last;

        if (ngx_http_llmroute_usage_yajl(u, p, cut - p) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    if (open != NULL
        && ngx_http_llmroute_usage_jbuf(u, open, last - open) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return u->done ? NGX_DECLINED : NGX_OK;
}


/*
 * Follows the strings of [p, last), the state carried between buffers;
 * returns the opening quote of a string left open at last if it opened in
 * [p, last).  Outside strings only a quote matters to find them.
 */

static u_char *
ngx_http_llmroute_usage_strings(ngx_http_llmroute_usage_t *u, u_char *p,
    u_char *last)
{
    u_char  *q, *open;

    open = NULL;

    while (p < last) {

        if (!u->jstr) {
            q = memchr(p, '"', last - p);
            if (q == NULL) {
                break;
            }

            u->jstr = 1;
            open = q;
            p = q + 1;
            continue;
        }

        if (u->jesc) {
            /* the previous buffer ended with an escaping backslash */
            u->jesc = 0;
            p++;
            continue;
        }

        q = memchr(p, '"', last - p);

        if (q == NULL) {
            u->jesc = ngx_http_llmroute_usage_backslashes(p, last) & 1;
            break;
        }

        if ((ngx_http_llmroute_usage_backslashes(p, q) & 1) == 0) {
            u->jstr = 0;
            open = NULL;
        }

        p = q + 1;
    }

    return open;
}


/* holds back the bytes of an open string */

static ngx_int_t
ngx_http_llmroute_usage_jbuf(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t n)
{
    u_char  *b;
    size_t   size;

    if (n > u->jbuf_size - u->jbuf_len) {
        size = ngx_max(2 * u->jbuf_size, u->jbuf_len + n);
        size = ngx_max(size, 4096);

        if (u->jbuf_len + n > NGX_HTTP_LLMROUTE_USAGE_STRING_MAX) {
            u->malformed = 1;
            return NGX_ERROR;
        }

        b = u->alloc(u->data, size);
        if (b == NULL) {
            u->malformed = 1;
            return NGX_ERROR;
        }

        if (u->jbuf_len) {
            ngx_memcpy(b, u->jbuf, u->jbuf_len);
        }

        if (u->jbuf != NULL && u->free != NULL) {
            u->free(u->data, u->jbuf);
        }

        u->jbuf = b;
        u->jbuf_size = size;
    }

    ngx_memcpy(u->jbuf + u->jbuf_len, p, n);
    u->jbuf_len += n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_usage_yajl(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t n)
{
    if (n && yajl_parse(u->yajl, p, n) != yajl_status_ok) {
        u->malformed = 1;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * JSON mode asked for an object: the answer must parse, alone, as one;
 * a separate yajl handle, no callbacks, UTF-8 checked this time
 */

static ngx_uint_t
ngx_http_llmroute_usage_is_json(ngx_http_llmroute_usage_t *u, u_char *p,
    size_t len)
{
    u_char            *last;
    yajl_status        rc;
    yajl_handle        h;
    yajl_alloc_funcs   afs;

    last = p + len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    if (p == last || *p != '{') {
        return 0;
    }

    ngx_http_llmroute_usage_afs(u, &afs);

    h = yajl_alloc(NULL, &afs, NULL);
    if (h == NULL) {
        return 0;
    }

    rc = yajl_parse(h, p, last - p);

    if (rc == yajl_status_ok) {
        rc = yajl_complete_parse(h);
    }

    yajl_free(h);

    return rc == yajl_status_ok;
}


static ngx_uint_t
ngx_http_llmroute_usage_y_role(ngx_http_llmroute_usage_t *u)
{
    ngx_uint_t  kind;

    if (u->depth == 0) {
        return NGX_HTTP_LLMROUTE_R_ROOT;
    }

    if (u->depth > NGX_HTTP_LLMROUTE_USAGE_DEPTH) {
        return NGX_HTTP_LLMROUTE_R_NONE;
    }

    kind = u->kind[u->depth - 1];

    switch (kind) {

    case NGX_HTTP_LLMROUTE_K_OTHER:
        return NGX_HTTP_LLMROUTE_R_NONE;

    case NGX_HTTP_LLMROUTE_K_CHOICES:
        return NGX_HTTP_LLMROUTE_R_CHOICE;

    case NGX_HTTP_LLMROUTE_K_CALLS:
        return NGX_HTTP_LLMROUTE_R_CALL;

    case NGX_HTTP_LLMROUTE_K_ABLOCKS:
        return NGX_HTTP_LLMROUTE_R_ABLOCK;

    default:
        return u->key[u->depth - 1];
    }
}


static int
ngx_http_llmroute_usage_y_null(void *ctx)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    ngx_http_llmroute_usage_scalar(u, ngx_http_llmroute_usage_y_role(u),
                                   NGX_HTTP_LLMROUTE_T_NULL, NULL, 0, 0);
    return 1;
}


static int
ngx_http_llmroute_usage_y_boolean(void *ctx, int v)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    ngx_http_llmroute_usage_scalar(u, ngx_http_llmroute_usage_y_role(u),
                                   NGX_HTTP_LLMROUTE_T_OTHER, NULL, 0, 0);
    return 1;
}


static int
ngx_http_llmroute_usage_y_number(void *ctx, const char *s, size_t len)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    ngx_http_llmroute_usage_scalar(u, ngx_http_llmroute_usage_y_role(u),
                                   NGX_HTTP_LLMROUTE_T_NUMBER, (u_char *) s,
                                   len, 0);
    return 1;
}


static int
ngx_http_llmroute_usage_y_string(void *ctx, const unsigned char *s,
    size_t len)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    ngx_http_llmroute_usage_scalar(u, ngx_http_llmroute_usage_y_role(u),
                                   NGX_HTTP_LLMROUTE_T_STRING, (u_char *) s,
                                   len, 0);
    return 1;
}


static int
ngx_http_llmroute_usage_y_start_map(void *ctx)
{
    return ngx_http_llmroute_usage_y_start(ctx, 1);
}


static int
ngx_http_llmroute_usage_y_start_array(void *ctx)
{
    return ngx_http_llmroute_usage_y_start(ctx, 0);
}


static int
ngx_http_llmroute_usage_y_start(ngx_http_llmroute_usage_t *u, ngx_uint_t map)
{
    ngx_uint_t  kind;

    kind = ngx_http_llmroute_usage_open(u, ngx_http_llmroute_usage_y_role(u),
                                        map);

    if (u->depth < NGX_HTTP_LLMROUTE_USAGE_DEPTH) {
        u->kind[u->depth] = (u_char) kind;
        u->key[u->depth] = NGX_HTTP_LLMROUTE_R_NONE;
    }

    u->depth++;

    return 1;
}


static int
ngx_http_llmroute_usage_y_map_key(void *ctx, const unsigned char *s,
    size_t len)
{
    ngx_uint_t                  d;
    ngx_http_llmroute_usage_t  *u = ctx;

    d = u->depth - 1;

    if (d < NGX_HTTP_LLMROUTE_USAGE_DEPTH
        && u->kind[d] != NGX_HTTP_LLMROUTE_K_OTHER)
    {
        u->key[d] = (u_char) ngx_http_llmroute_usage_role(u->kind[d],
                                                          (u_char *) s, len);
    }

    return 1;
}


static int
ngx_http_llmroute_usage_y_end(void *ctx)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    u->depth--;

    if (u->depth < NGX_HTTP_LLMROUTE_USAGE_DEPTH) {
        ngx_http_llmroute_usage_close(u, u->kind[u->depth]);
    }

    if (u->depth == 0) {
        u->done = 1;
    }

    return 1;
}


/*
 * yajl's realloc has no old size and a pool has no realloc: each block
 * carries its size in a 16-byte header (keeps the pool's alignment)
 */

static void
ngx_http_llmroute_usage_afs(ngx_http_llmroute_usage_t *u,
    yajl_alloc_funcs *afs)
{
    afs->malloc = ngx_http_llmroute_usage_malloc;
    afs->realloc = ngx_http_llmroute_usage_realloc;
    afs->free = ngx_http_llmroute_usage_free;
    afs->ctx = u;
}


static void *
ngx_http_llmroute_usage_malloc(void *ctx, size_t size)
{
    u_char                     *p;
    ngx_http_llmroute_usage_t  *u = ctx;

    if (size > (size_t) -1 - NGX_HTTP_LLMROUTE_USAGE_HDR) {
        return NULL;
    }

    p = u->alloc(u->data, size + NGX_HTTP_LLMROUTE_USAGE_HDR);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, &size, sizeof(size_t));

    return p + NGX_HTTP_LLMROUTE_USAGE_HDR;
}


static void *
ngx_http_llmroute_usage_realloc(void *ctx, void *ptr, size_t size)
{
    u_char  *p;
    size_t   old;

    if (ptr == NULL) {
        return ngx_http_llmroute_usage_malloc(ctx, size);
    }

    ngx_memcpy(&old, (u_char *) ptr - NGX_HTTP_LLMROUTE_USAGE_HDR,
               sizeof(size_t));

    if (size <= old) {
        return ptr;
    }

    p = ngx_http_llmroute_usage_malloc(ctx, size);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, ptr, old);
    ngx_http_llmroute_usage_free(ctx, ptr);

    return p;
}


static void
ngx_http_llmroute_usage_free(void *ctx, void *ptr)
{
    ngx_http_llmroute_usage_t  *u = ctx;

    if (ptr != NULL && u->free != NULL) {
        u->free(u->data, (u_char *) ptr - NGX_HTTP_LLMROUTE_USAGE_HDR);
    }
}
