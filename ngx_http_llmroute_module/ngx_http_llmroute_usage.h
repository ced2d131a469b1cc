
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Usage scanner: watches a provider's chat-completion response body go by,
 * buffer by buffer as the body filter sees it (split at any byte), and picks
 * out what accounting and escalation need: the provider's "usage" numbers,
 * how much text was generated (the estimate when usage is missing), the
 * finish reason and an empty or non-JSON answer.  It never changes or
 * buffers the body; it keeps at most one SSE line (in a carry buffer the
 * caller supplies) or one JSON token (inside yajl).
 *
 * Two body kinds:
 *
 *   SSE   (text/event-stream) lines are split on "\n" (a "\r" before it is
 *         dropped); comments (": keep-alive"), event:, id: and retry: lines
 *         are ignored, "data: [DONE]" sets done, and every other "data:"
 *         payload (space optional) must be one JSON object.  Its top level
 *         is walked over, strings skipped with memchr(); the values of the
 *         members we read (choices, usage, error, x_groq) are parsed with
 *         jsmn into NGX_HTTP_LLMROUTE_USAGE_TOKENS tokens on the stack.  A
 *         chunk that does not parse or needs more tokens only counts in
 *         bad_events: the stream is never failed.  A line longer than
 *         carry_size is skipped; if it is a data line, all its bytes count
 *         in content_bytes (such a chunk is nearly all text).  Data lines
 *         are not joined: providers send a chunk per line.
 *   JSON  (application/json) the whole body is one chat.completion object,
 *         fed to yajl's incremental parser; yajl's memory comes from the
 *         caller's alloc/free pair (the request pool; free may be NULL).
 *         yajl keeps a pointer to u: u must not move after init.  yajl
 *         does not check every allocation, so alloc must not fail short of
 *         the worker running out of memory.  A body that is not valid JSON
 *         sets malformed; a usage object completed before that still
 *         counts (the provider billed it).  yajl lexes a token cut by a
 *         buffer end again from its start at every call, so a string still
 *         open at the end of a buffer is held back (copied, up to
 *         NGX_HTTP_LLMROUTE_USAGE_STRING_MAX) and given to yajl whole: MBs
 *         of content in 8 KB buffers stay linear.
 *
 * JSON_LAZY (accounting only, without JSON_CHECK): an answer that comes
 *         whole in the first buffer is not given to yajl.  Its members are
 *         walked over as an SSE chunk's are (when the caller set
 *         length and it is the whole body: from the last top-level "usage"
 *         key on, else from the start), and only usage (and error,
 *         x_groq) is parsed.  When usage is found that way it is the only
 *         result: content_bytes, finish_reason and the choice flags stay
 *         unset.  Otherwise, and for a body in several buffers, yajl reads
 *         it all as above.
 *
 * content_bytes counts the decoded UTF-8 bytes of every choice's content,
 * reasoning_content/reasoning and tool-call arguments: what was generated.
 * finish_reason, tool_calls and empty_content (no text but blanks, no tool
 * call) describe choices[0] of a JSON answer, any choice of a stream.
 *
 * USAGE_ANTHROPIC reads Anthropic's Messages API instead: a JSON message
 * or the SSE events message_start (message.usage: input_tokens,
 * cache_read_input_tokens -> cached_tokens, cache_creation_input_tokens
 * -> cache_write_tokens), content_block_* (text, thinking, tool input:
 * content_bytes; a tool_use block: tool_calls) and message_delta
 * (stop_reason, cumulative usage.output_tokens); message_stop sets done.
 * prompt_tokens is then
 * Anthropic's input_tokens, which excludes the cache reads and writes.
 *
 * Usage numbers: each field takes the LAST value seen, never a sum (Gemini
 * repeats cumulative usage in several chunks).  DeepSeek's
 * prompt_cache_hit_tokens is read as cached_tokens, as is
 * prompt_tokens_details.cached_tokens, and Groq's x_groq.usage as usage.
 * A usage object counts only once it is complete and has prompt_tokens or
 * completion_tokens.
 *
 * Stripping the usage-only chunk (SSE).  The module asks every provider
 * for stream_options.include_usage; when the client did not, the extra
 * event it causes ("choices":[] and a non-null "usage") must not reach the
 * client.  A body filter cannot pass on the first bytes of an event before
 * it knows what the event is, so ngx_http_llmroute_usage_feed_sse() tells
 * it, in stream offsets (bytes fed since init):
 *
 *   span     the call stops right after the end of a usage-only event and
 *            returns the number of bytes of p it consumed; *span is then
 *            that event: its first line (event:/id: lines included) up to
 *            and including the blank line closing it.  Otherwise all of p
 *            is consumed and span->end is 0.
 *   u->hold  every byte before hold is decided: it goes to the client
 *            unless a span returned so far covers it.  Bytes from hold on
 *            may still turn out to belong to a span: keep a copy of them
 *            (the upstream buffer is reused) until hold passes them.  At
 *            most 2 * carry_size + 1 bytes are ever undecided.
 *
 * A body filter in strip mode, with "out" the offset up to which it has
 * sent or dropped the stream, does for each buffer b:
 *
 *     for (p = b->pos; p < b->last; p += n) {
 *         n = ngx_http_llmroute_usage_feed_sse(u, p, b->last - p, &span);
 *         if (span.end) {
 *             send [out, span.start); out = span.end;
 *         }
 *     }
 *     send [out, u->hold); out = u->hold;
 *     copy [out, u->offset) aside;
 *
 * where "send [a, b)" takes the stream bytes from its copy, then from b;
 * on the last buffer ngx_http_llmroute_usage_finish(u, &span), the same
 * span handling, then it sends everything left (finish sets hold =
 * offset).  feed_sse() may return 0 together with a span.  An unterminated
 * last line is accounted for but never starts a span.  The spans and all
 * results are the same however the stream is split into buffers.
 */


#ifndef _NGX_HTTP_LLMROUTE_USAGE_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_USAGE_H_INCLUDED_


#include <ngx_http_llmroute_core.h>


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


/* ngx_http_llmroute_usage_init() flags */
#define NGX_HTTP_LLMROUTE_USAGE_JSON          0
#define NGX_HTTP_LLMROUTE_USAGE_SSE           1
#define NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK    2   /* set content_is_json */
#define NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY     4   /* usage is all we need */
#define NGX_HTTP_LLMROUTE_USAGE_ANTHROPIC     8   /* Messages API answers */

#define NGX_HTTP_LLMROUTE_FINISH_NONE         0
#define NGX_HTTP_LLMROUTE_FINISH_STOP         1
#define NGX_HTTP_LLMROUTE_FINISH_LENGTH       2
#define NGX_HTTP_LLMROUTE_FINISH_TOOL_CALLS   3
#define NGX_HTTP_LLMROUTE_FINISH_FILTER       4   /* content_filter */
#define NGX_HTTP_LLMROUTE_FINISH_OTHER        5

/* jsmn tokens per member read from an SSE chunk (20 bytes each, stack) */
#define NGX_HTTP_LLMROUTE_USAGE_TOKENS        512

/* keys and values of a usage object read without jsmn (see _usage.c) */
#define NGX_HTTP_LLMROUTE_USAGE_DIRECT_TOKENS 256

/* content_is_json is only computed for an answer shorter than this */
#define NGX_HTTP_LLMROUTE_USAGE_JSON_MAX      (1024 * 1024)

/* a longer JSON string ends the scan (as malformed) */
#define NGX_HTTP_LLMROUTE_USAGE_STRING_MAX    (64 * 1024 * 1024)

/* container nesting the JSON path tells apart; deeper is not looked at */
#define NGX_HTTP_LLMROUTE_USAGE_DEPTH         8


typedef void (*ngx_http_llmroute_free_pt)(void *data, void *p);


typedef struct {
    off_t                        start;
    off_t                        end;
} ngx_http_llmroute_usage_span_t;


typedef struct {
    /* results, valid at any time */
    int64_t                      prompt_tokens;     /* -1: not seen */
    int64_t                      completion_tokens; /* -1: not seen */
    int64_t                      cached_tokens;     /* -1: not seen */
    int64_t                      cache_write_tokens; /* -1: not seen */
    size_t                       content_bytes;     /* generated text */
    ngx_uint_t                   finish_reason;     /* FINISH_* */
    ngx_uint_t                   events;            /* SSE JSON chunks */
    ngx_uint_t                   bad_events;        /* ... not understood */
    off_t                        offset;            /* bytes fed */
    off_t                        length;            /* set by the caller:
                                                       the body's length if
                                                       known, else -1 */
    off_t                        hold;              /* see above */

    unsigned                     have_usage:1;
    unsigned                     done:1;            /* [DONE], JSON end */
    unsigned                     error:1;           /* "error" member */
    unsigned                     malformed:1;       /* JSON body invalid */
    unsigned                     tool_calls:1;
    unsigned                     empty_content:1;   /* set by finish */
    unsigned                     content_is_json:1; /* JSON_CHECK only */

    /* private */
    unsigned                     sse:1;
    unsigned                     json_check:1;
    unsigned                     json_lazy:1;
    unsigned                     finished:1;
    unsigned                     skip:1;            /* overlong line */
    unsigned                     skip_pre:3;        /* "data:" matched */
    unsigned                     skip_not:1;        /* ... mismatched */
    unsigned                     text:1;            /* non-blank content */
    unsigned                     choice:1;          /* a choice was seen */
    unsigned                     emit:1;
    unsigned                     event:2;
    unsigned                     chunk:3;
    unsigned                     jstr:1;            /* in a JSON string */
    unsigned                     jesc:1;            /* ... after "\\" */
    unsigned                     lazy:1;            /* choices not read */

    u_char                      *carry;
    size_t                       carry_size;        /* the longest line */
    size_t                       carry_cap;         /* allocated */
    size_t                       carry_len;
    off_t                        line_start;
    size_t                       skip_bytes;
    off_t                        event_start;
    off_t                        event_end;
    ngx_http_llmroute_usage_span_t  span;

    void                        *yajl;
    u_char                      *jbuf;              /* open JSON string */
    size_t                       jbuf_len;
    size_t                       jbuf_size;
    ngx_http_llmroute_alloc_pt   alloc;
    ngx_http_llmroute_free_pt    free;
    void                        *data;
    ngx_uint_t                   depth;
    ngx_uint_t                   index;             /* current choice */
    int64_t                      tmp[4];            /* usage being read */
    ngx_uint_t                   root;              /* kind of the top */
    u_char                       kind[NGX_HTTP_LLMROUTE_USAGE_DEPTH];
    u_char                       key[NGX_HTTP_LLMROUTE_USAGE_DEPTH];
} ngx_http_llmroute_usage_t;


/*
 * flags: USAGE_SSE or USAGE_JSON, optionally | USAGE_JSON_CHECK;
 * SSE needs carry (carry_size >= 256, 64K advised), or carry NULL and
 * alloc: the carry then grows on demand up to carry_size (most streams
 * never need more than a line of a few hundred bytes),
 * JSON needs alloc (free may be NULL for a pool) and no carry;
 * NGX_ERROR: JSON without an allocator (yajl is set up on first use)
 */
ngx_int_t ngx_http_llmroute_usage_init(ngx_http_llmroute_usage_t *u,
    ngx_uint_t flags, u_char *carry, size_t carry_size,
    ngx_http_llmroute_alloc_pt alloc, ngx_http_llmroute_free_pt free,
    void *data);

/* observe only; NGX_DECLINED: JSON complete or invalid, may stop feeding */
ngx_int_t ngx_http_llmroute_usage_feed(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len);

/* observe and report usage-only SSE events; returns bytes consumed */
size_t ngx_http_llmroute_usage_feed_sse(ngx_http_llmroute_usage_t *u,
    u_char *p, size_t len, ngx_http_llmroute_usage_span_t *span);

/*
 * end of body (also when the upstream failed): sets empty_content,
 * releases yajl; span may be NULL when not stripping
 */
void ngx_http_llmroute_usage_finish(ngx_http_llmroute_usage_t *u,
    ngx_http_llmroute_usage_span_t *span);

extern ngx_str_t  ngx_http_llmroute_finish_reasons[];

#ifdef NGX_HTTP_LLMROUTE_STANDALONE
/* 1: usage objects only through the general path (tests compare) */
extern ngx_uint_t  ngx_http_llmroute_usage_no_direct;
extern ngx_uint_t  ngx_http_llmroute_usage_direct_reads;   /* it was used */
extern ngx_uint_t  ngx_http_llmroute_usage_whole_reads;    /* JSON_LAZY's */
extern ngx_uint_t  ngx_http_llmroute_usage_shape_reads;    /* by a shape */
void ngx_http_llmroute_usage_forget(void);                  /* no shape */
#endif


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_USAGE_H_INCLUDED_ */
